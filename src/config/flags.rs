//! The flag table: every flag's name, environment variable, value hint and help line,
//! and `--help` rendered from it.

/// One flag: its name, env var, value hint and help line.
pub(super) struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    hint: &'static str,
    help: &'static str,
}

pub(super) const FLAGS: &[Flag] = &[
    Flag {
        name: "port",
        env: "RINHA_PORT",
        hint: "N",
        help: "listen on 0.0.0.0:N (HTTP)",
    },
    Flag {
        name: "listen",
        env: "RINHA_LISTEN",
        hint: "ADDR",
        help: "listen on HOST:PORT or unix:PATH (repeatable)",
    },
    Flag {
        name: "unix",
        env: "RINHA_UNIX",
        hint: "PATH",
        help: "listen on a unix socket (for nginx)",
    },
    Flag {
        name: "default-url",
        env: "RINHA_DEFAULT_URL",
        hint: "URL",
        help: "default processor [http://127.0.0.1:8001]",
    },
    Flag {
        name: "fallback-url",
        env: "RINHA_FALLBACK_URL",
        hint: "URL",
        help: "fallback processor [http://127.0.0.1:8002]",
    },
    Flag {
        name: "workers",
        env: "RINHA_WORKERS",
        hint: "N",
        help: "processor client threads [256]",
    },
    Flag {
        name: "loop-slice-us",
        env: "RINHA_LOOP_SLICE_US",
        hint: "US",
        help: "event loop's CPU slice (Linux 6.12+; 100-100000, 0 = kernel default) [100]",
    },
    Flag {
        name: "queue",
        env: "RINHA_QUEUE",
        hint: "N",
        help: "accepted payments waiting for a worker; full => 503 [65536]",
    },
    Flag {
        name: "max-conns",
        env: "RINHA_MAX_CONNS",
        hint: "N",
        help: "open HTTP connections; beyond => closed at accept [16384]",
    },
    Flag {
        name: "max-header",
        env: "RINHA_MAX_HEADER",
        hint: "BYTES",
        help: "request head size; beyond => 431 [8192]",
    },
    Flag {
        name: "max-body",
        env: "RINHA_MAX_BODY",
        hint: "BYTES",
        help: "request body size; beyond => 413 [4096]",
    },
    Flag {
        name: "idle-timeout-ms",
        env: "RINHA_IDLE_TIMEOUT_MS",
        hint: "MS",
        help: "close idle client connections [60000]",
    },
    Flag {
        name: "request-timeout-ms",
        env: "RINHA_REQUEST_TIMEOUT_MS",
        hint: "MS",
        help: "a request must arrive whole within this of its first byte; else 408 [5000]",
    },
    Flag {
        name: "client-timeout-ms",
        env: "RINHA_CLIENT_TIMEOUT_MS",
        hint: "MS",
        help: "processor response timeout [10000]",
    },
    Flag {
        name: "connect-timeout-ms",
        env: "RINHA_CONNECT_TIMEOUT_MS",
        hint: "MS",
        help: "processor connect timeout [1000]",
    },
    Flag {
        name: "summary-wait-ms",
        env: "RINHA_SUMMARY_WAIT_MS",
        hint: "MS",
        help: "longest wait of a summary for peers (and in-flight payments) [1000]",
    },
    Flag {
        name: "summary-settle",
        env: "RINHA_SUMMARY_SETTLE",
        hint: "on|off",
        help: "summary waits for in-flight payments with requestedAt <= to [off]",
    },
    Flag {
        name: "health-interval-ms",
        env: "RINHA_HEALTH_INTERVAL_MS",
        hint: "MS",
        help: "health poll period per processor, >= 5000 [5100]",
    },
    Flag {
        name: "instance-id",
        env: "RINHA_INSTANCE_ID",
        hint: "N",
        help: "unique id in the cluster [derived from hostname + --peer-listen]",
    },
    Flag {
        name: "peer-listen",
        env: "RINHA_PEER_LISTEN",
        hint: "ADDR",
        help: "accept peers on HOST:PORT or unix:PATH",
    },
    Flag {
        name: "peer",
        env: "RINHA_PEERS",
        hint: "ADDR",
        help: "connect to a peer (repeatable; env: comma-separated)",
    },
    Flag {
        name: "peer-token",
        env: "RINHA_PEER_TOKEN",
        hint: "SECRET",
        help: "shared secret of the peer handshake",
    },
    Flag {
        name: "peer-tls-cert",
        env: "RINHA_PEER_TLS_CERT",
        hint: "PEM",
        help: "peer link over mutual TLS 1.3: this instance's certificate chain",
    },
    Flag {
        name: "peer-tls-key",
        env: "RINHA_PEER_TLS_KEY",
        hint: "PEM",
        help: "the private key of --peer-tls-cert",
    },
    Flag {
        name: "peer-tls-ca",
        env: "RINHA_PEER_TLS_CA",
        hint: "PEM",
        help: "the CA every peer's certificate must chain to",
    },
    Flag {
        name: "peer-plaintext",
        env: "RINHA_PEER_PLAINTEXT",
        hint: "",
        help: "allow a plain TCP peer link to a non-loopback address (no value)",
    },
    Flag {
        name: "purge-token",
        env: "RINHA_PURGE_TOKEN",
        hint: "SECRET",
        help: "if set, purge needs header X-Purge-Token",
    },
    Flag {
        name: "tls-ca",
        env: "RINHA_TLS_CA",
        hint: "PEM",
        help: "extra CA certificates for https processors",
    },
    Flag {
        name: "journal",
        env: "RINHA_JOURNAL",
        hint: "PATH",
        help: "crash journal: a restarted instance finishes what it accepted",
    },
    Flag {
        name: "pace-multiple",
        env: "RINHA_PACE_MULTIPLE",
        hint: "X",
        help: "attempts/s at most X times arrivals/s; 0: unpaced [6]",
    },
    Flag {
        name: "pace-floor",
        env: "RINHA_PACE_FLOOR",
        hint: "N",
        help: "attempts/s always allowed, whatever arrives [250]",
    },
    Flag {
        name: "slow-ms",
        env: "RINHA_SLOW_MS",
        hint: "MS",
        help: "router: default counts as slow above this latency [600]",
    },
    Flag {
        name: "speedup",
        env: "RINHA_SPEEDUP",
        hint: "X",
        help: "router: fallback must be X times faster than slow default [3]",
    },
    Flag {
        name: "max-defer-ms",
        env: "RINHA_MAX_DEFER_MS",
        hint: "MS",
        help: "router: longest wait for a failing default [8000]",
    },
    Flag {
        name: "probe-interval-ms",
        env: "RINHA_PROBE_INTERVAL_MS",
        hint: "MS",
        help: "router: spacing of probes to a failing processor [250]",
    },
    Flag {
        name: "max-probe-latency-ms",
        env: "RINHA_MAX_PROBE_LATENCY_MS",
        hint: "MS",
        help: "router: no probes to a processor slower than this (health tells) [1200]",
    },
];

pub fn usage() -> String {
    let mut s = String::from(
        "rinha: Rinha de Backend 2025 payment intermediary\n\nUSAGE: rinha [FLAGS]\n\nFLAGS (each also read from its env var):\n",
    );
    for f in FLAGS {
        let left = format!("  --{} {}", f.name, f.hint);
        s.push_str(&format!("{left:<30} {:<26} {}\n", f.env, f.help));
    }
    s.push_str("  --help, -h                   print this help\n  --version, -V                print the version\n");
    s
}
