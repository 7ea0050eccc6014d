//! Command-line flags and `RINHA_*` environment variables, parsed into one `Config`.
//!
//! Every limit the server enforces lives here so that it is explicit and tunable;
//! a flag on the command line wins over its environment variable.

mod flags;

use std::fmt;
use std::time::Duration;

pub use crate::addr::Addr;
pub use flags::usage;
use flags::FLAGS;

/// The PEM files of the peer link's mutual TLS (`--peer-tls-*`), read at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTlsFiles {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

/// Tunables of the routing policy (see `router`).
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Default is "slow" above this latency; fallback is then preferred if much faster.
    pub slow_ms: u64,
    /// Fallback must be this many times faster than a slow default to take its traffic.
    pub speedup: u64,
    /// A payment waits at most this long for a failing default before fallback may pay it.
    pub max_defer_ms: u64,
    /// Minimum spacing between probe payments sent to a processor believed failing.
    pub probe_interval_ms: u64,
    /// No probe to a processor slower than this: its answer would land in the window.
    pub max_probe_latency_ms: u64,
    /// The health poll period (copied from `Config::health_interval` by `parse`): how
    /// long the recovery of a processor too slow to probe may take to be seen.
    pub health_interval_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Vec<Addr>,
    pub default_url: String,
    pub fallback_url: String,
    pub workers: usize,
    /// The event loop's time slice in the fair scheduler, in µs (0: the kernel's).
    pub loop_slice_us: u64,
    pub queue: usize,
    pub max_conns: usize,
    pub max_header: usize,
    pub max_body: usize,
    pub idle_timeout: Duration,
    /// A request must be complete this long after its first byte (slowloris bound).
    pub request_timeout: Duration,
    pub client_timeout: Duration,
    pub connect_timeout: Duration,
    pub summary_wait: Duration,
    /// Summaries also wait for payments in flight with requestedAt <= `to`: right when a
    /// checker asks the processors after us, wrong when it asks them at the same time
    /// (the official k6 scripts do: a payment stored while we wait counts for us only).
    pub summary_settle: bool,
    pub health_interval: Duration,
    pub instance_id: u32,
    /// `instance_id` was derived (`identity`), not set with `--instance-id`.
    pub id_derived: bool,
    pub peer_listen: Option<Addr>,
    pub peers: Vec<Addr>,
    pub peer_token: String,
    /// Mutual TLS on TCP peer links: certificate chain, key and CA (PEM paths).
    pub peer_tls: Option<PeerTlsFiles>,
    /// A plain TCP peer link to a non-loopback address is allowed (`--peer-plaintext`).
    pub peer_plaintext: bool,
    pub purge_token: Option<String>,
    pub tls_ca: Option<String>,
    pub journal: Option<String>,
    /// Attempts per second at most this many times the arrivals (`pace`; 0: unpaced)...
    pub pace_multiple: u32,
    /// ...and always at least this many.
    pub pace_floor: u32,
    pub router: RouterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            default_url: "http://127.0.0.1:8001".into(),
            fallback_url: "http://127.0.0.1:8002".into(),
            workers: 256,
            loop_slice_us: 100,
            queue: 65_536,
            max_conns: 16_384,
            max_header: 8_192,
            max_body: 4_096,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            client_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_millis(1_000),
            summary_wait: Duration::from_millis(1_000),
            summary_settle: false,
            health_interval: Duration::from_millis(5_100),
            instance_id: 1,
            id_derived: false,
            peer_listen: None,
            peers: Vec::new(),
            peer_token: String::new(),
            peer_tls: None,
            peer_plaintext: false,
            purge_token: None,
            tls_ca: None,
            journal: None,
            pace_multiple: 6,
            pace_floor: 250,
            router: RouterConfig {
                slow_ms: 600,
                speedup: 3,
                max_defer_ms: 8_000,
                probe_interval_ms: 250,
                max_probe_latency_ms: 1_200,
                health_interval_ms: 5_100,
            },
        }
    }
}

/// What `parse` asks `main` to do.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// Flags that take no value on the command line (`--flag=off` still works).
const SWITCHES: [&str; 1] = ["peer-plaintext"];

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("--{name}: invalid number {v:?}"))
}

fn switch(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("--{name}: expected on or off, got {v:?}")),
    }
}

fn ms(name: &str, v: &str) -> Result<Duration, String> {
    num::<u64>(name, v).map(Duration::from_millis)
}

fn apply(cfg: &mut Config, name: &str, v: &str) -> Result<(), String> {
    match name {
        "port" => cfg
            .listen
            .push(Addr::Tcp(format!("0.0.0.0:{}", num::<u16>(name, v)?))),
        "listen" => cfg.listen.push(Addr::parse(v)?),
        "unix" => cfg.listen.push(Addr::Unix(v.to_string())),
        "default-url" => cfg.default_url = v.to_string(),
        "fallback-url" => cfg.fallback_url = v.to_string(),
        "workers" => cfg.workers = num(name, v)?,
        "loop-slice-us" => cfg.loop_slice_us = num(name, v)?,
        "queue" => cfg.queue = num(name, v)?,
        "max-conns" => cfg.max_conns = num(name, v)?,
        "max-header" => cfg.max_header = num(name, v)?,
        "max-body" => cfg.max_body = num(name, v)?,
        "idle-timeout-ms" => cfg.idle_timeout = ms(name, v)?,
        "request-timeout-ms" => cfg.request_timeout = ms(name, v)?,
        "client-timeout-ms" => cfg.client_timeout = ms(name, v)?,
        "connect-timeout-ms" => cfg.connect_timeout = ms(name, v)?,
        "summary-wait-ms" => cfg.summary_wait = ms(name, v)?,
        "summary-settle" => cfg.summary_settle = switch(name, v)?,
        "health-interval-ms" => cfg.health_interval = ms(name, v)?,
        "instance-id" => cfg.instance_id = num(name, v)?,
        "peer-listen" => cfg.peer_listen = Some(Addr::parse(v)?),
        "peer" => {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                cfg.peers.push(Addr::parse(p)?);
            }
        }
        "peer-token" => cfg.peer_token = v.to_string(),
        "peer-tls-cert" => cfg.peer_tls.get_or_insert_with(Default::default).cert = v.into(),
        "peer-tls-key" => cfg.peer_tls.get_or_insert_with(Default::default).key = v.into(),
        "peer-tls-ca" => cfg.peer_tls.get_or_insert_with(Default::default).ca = v.into(),
        "peer-plaintext" => cfg.peer_plaintext = switch(name, v)?,
        "purge-token" => cfg.purge_token = Some(v.to_string()).filter(|t| !t.is_empty()),
        "tls-ca" => cfg.tls_ca = Some(v.to_string()),
        "journal" => cfg.journal = Some(v.to_string()).filter(|p| !p.is_empty()),
        "pace-multiple" => cfg.pace_multiple = num(name, v)?,
        "pace-floor" => cfg.pace_floor = num(name, v)?,
        "slow-ms" => cfg.router.slow_ms = num(name, v)?,
        "speedup" => cfg.router.speedup = num(name, v)?,
        "max-defer-ms" => cfg.router.max_defer_ms = num(name, v)?,
        "probe-interval-ms" => cfg.router.probe_interval_ms = num(name, v)?,
        "max-probe-latency-ms" => cfg.router.max_probe_latency_ms = num(name, v)?,
        _ => return Err(format!("unknown flag --{name} (see --help)")),
    }
    Ok(())
}

fn validate(cfg: &mut Config, id_set: bool) -> Result<(), String> {
    if cfg.listen.is_empty() {
        cfg.listen.push(Addr::Tcp("0.0.0.0:9999".into()));
    }
    if !id_set {
        let host = crate::identity::hostname();
        cfg.instance_id = crate::identity::derive(&host, cfg.peer_listen.as_ref(), &cfg.listen);
        cfg.id_derived = true;
    }
    for (what, v) in [
        ("workers", cfg.workers),
        ("queue", cfg.queue),
        ("max-conns", cfg.max_conns),
        ("pace-floor", cfg.pace_floor as usize),
    ] {
        if v == 0 {
            return Err(format!("--{what} must be at least 1"));
        }
    }
    if cfg.loop_slice_us != 0 && !(100..=100_000).contains(&cfg.loop_slice_us) {
        return Err("--loop-slice-us must be 0 or 100..=100000".into());
    }
    if cfg.max_header < 256 || cfg.max_body < 64 {
        return Err("--max-header must be >= 256 and --max-body >= 64".into());
    }
    if cfg.health_interval < Duration::from_secs(5) {
        return Err("--health-interval-ms must be >= 5000 (processor rate limit)".into());
    }
    cfg.router.health_interval_ms = cfg.health_interval.as_millis() as u64;
    if cfg.router.speedup == 0 {
        return Err("--speedup must be at least 1".into());
    }
    if (!cfg.peers.is_empty() || cfg.peer_listen.is_some()) && cfg.peer_token.is_empty() {
        return Err("peers need a shared secret: set --peer-token or RINHA_PEER_TOKEN".into());
    }
    validate_peer_tls(cfg)
}

/// Mutual TLS needs all three files; without it, a TCP peer link may only reach a
/// loopback address unless `--peer-plaintext` says otherwise.
fn validate_peer_tls(cfg: &Config) -> Result<(), String> {
    if let Some(t) = &cfg.peer_tls {
        if t.cert.is_empty() || t.key.is_empty() || t.ca.is_empty() {
            return Err(
                "mutual TLS needs all of --peer-tls-cert, --peer-tls-key and \
                        --peer-tls-ca (RINHA_PEER_TLS_CERT, _KEY, _CA)"
                    .into(),
            );
        }
        return Ok(());
    }
    if cfg.peer_plaintext {
        return Ok(());
    }
    let open = cfg.peer_listen.iter().chain(&cfg.peers).find(|a| match a {
        Addr::Tcp(hp) => !is_loopback(hp),
        Addr::Unix(_) => false,
    });
    match open {
        Some(a) => Err(format!(
            "the peer link to/at {a} would carry payments and --peer-token in clear over a \
             non-loopback network: set --peer-tls-cert, --peer-tls-key and --peer-tls-ca \
             (RINHA_PEER_TLS_CERT, _KEY, _CA; make certs), use a unix socket, or accept the \
             risk with --peer-plaintext (RINHA_PEER_PLAINTEXT=1)"
        )),
        None => Ok(()),
    }
}

/// The host part of `HOST:PORT` (IPv6 brackets removed).
pub fn host_of(host_port: &str) -> &str {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A loopback IP literal or `localhost`; any other name counts as non-loopback (no DNS
/// lookup at start: what a name resolves to can change).
fn is_loopback(host_port: &str) -> bool {
    let host = host_of(host_port);
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    }
}

/// Parses `args` (without the program name) over `env` (a lookup of `RINHA_*`).
pub fn parse<I, E>(args: I, env: E) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut cfg = Config::default();
    let mut id_set = false;
    for f in FLAGS {
        if let Some(v) = env(f.env).filter(|v| !v.is_empty()) {
            apply(&mut cfg, f.name, &v).map_err(|e| format!("{}: {e}", f.env))?;
            id_set |= f.name == "instance-id";
        }
    }
    let mut cli = Config {
        listen: Vec::new(),
        peers: Vec::new(),
        ..cfg.clone()
    };
    let (mut cli_listen, mut cli_peers) = (false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?} (see --help)"));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None if SWITCHES.contains(&flag) => (flag.to_string(), "on".to_string()),
            None => {
                let v = it.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_string(), v)
            }
        };
        cli_listen |= matches!(name.as_str(), "port" | "listen" | "unix");
        cli_peers |= name == "peer";
        id_set |= name == "instance-id";
        apply(&mut cli, &name, &value)?;
    }
    if !cli_listen {
        cli.listen = cfg.listen;
    }
    if !cli_peers {
        cli.peers = cfg.peers;
    }
    validate(&mut cli, id_set)?;
    Ok(Command::Run(Box::new(cli)))
}

impl fmt::Display for Config {
    /// The one start-up log line: the effective config, secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen: Vec<String> = self.listen.iter().map(Addr::to_string).collect();
        let peers: Vec<String> = self.peers.iter().map(Addr::to_string).collect();
        let r = &self.router;
        write!(
            f,
            "listen=[{}] default={} fallback={} workers={} loop_slice_us={} queue={} max_conns={} max_header={} \
             max_body={} idle_timeout={:?} client_timeout={:?} summary_wait={:?} summary_settle={} instance={}{} \
             peer_listen={} peers=[{}] peer_token={} peer_tls={} purge_token={} journal={} pace={}x/{}s slow_ms={} speedup={} \
             max_defer_ms={} probe_interval_ms={} max_probe_latency_ms={}",
            listen.join(","),
            self.default_url,
            self.fallback_url,
            self.workers,
            self.loop_slice_us,
            self.queue,
            self.max_conns,
            self.max_header,
            self.max_body,
            self.idle_timeout,
            self.client_timeout,
            self.summary_wait,
            self.summary_settle,
            self.instance_id,
            if self.id_derived { " (derived)" } else { "" },
            self.peer_listen
                .as_ref()
                .map_or("-".to_string(), Addr::to_string),
            peers.join(","),
            if self.peer_token.is_empty() {
                "unset"
            } else {
                "set"
            },
            match (&self.peer_tls, self.peer_plaintext) {
                (Some(_), _) => "mutual",
                (None, true) => "off(plaintext allowed)",
                (None, false) => "off",
            },
            if self.purge_token.is_some() {
                "set"
            } else {
                "unset"
            },
            self.journal.as_deref().unwrap_or("-"),
            self.pace_multiple,
            self.pace_floor,
            r.slow_ms,
            r.speedup,
            r.max_defer_ms,
            r.probe_interval_ms,
            r.max_probe_latency_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(args.iter().map(|s| s.to_string()), lookup)? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_listen_on_9999() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.listen, vec![Addr::Tcp("0.0.0.0:9999".into())]);
        assert_eq!(c.default_url, "http://127.0.0.1:8001");
    }

    #[test]
    fn pacing_defaults_and_off() {
        let c = run(&[], &[]).unwrap();
        assert_eq!((c.pace_multiple, c.pace_floor), (6, 250));
        let c = run(&["--pace-floor", "100"], &[("RINHA_PACE_MULTIPLE", "0")]).unwrap();
        assert_eq!((c.pace_multiple, c.pace_floor), (0, 100));
    }

    #[test]
    fn flag_wins_over_env() {
        let c = run(
            &["--port", "19999", "--workers=8"],
            &[("RINHA_PORT", "1"), ("RINHA_WORKERS", "3")],
        )
        .unwrap();
        assert_eq!(c.listen, vec![Addr::Tcp("0.0.0.0:19999".into())]);
        assert_eq!(c.workers, 8);
    }

    #[test]
    fn env_peers_are_comma_separated() {
        let c = run(
            &[],
            &[
                ("RINHA_PEERS", "a:1, unix:/tmp/p"),
                ("RINHA_PEER_TOKEN", "s"),
                ("RINHA_PEER_PLAINTEXT", "1"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.peers,
            vec![Addr::Tcp("a:1".into()), Addr::Unix("/tmp/p".into())]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(run(&["--port", "x"], &[]).is_err());
        assert!(run(&["--nope", "1"], &[]).is_err());
        assert!(run(&["--workers"], &[]).is_err());
        assert!(run(&["--workers", "0"], &[]).is_err());
        assert!(run(&["--pace-floor", "0"], &[]).is_err());
        assert!(run(&["--pace-multiple", "-1"], &[]).is_err());
        assert!(
            run(&["--peer", "a:1"], &[]).is_err(),
            "peers without a token"
        );
        assert!(run(&["--health-interval-ms", "1000"], &[]).is_err());
        assert!(run(&["--summary-settle", "maybe"], &[]).is_err());
        assert!(run(&["--loop-slice-us", "99"], &[]).is_err());
        assert!(run(&["--loop-slice-us", "100001"], &[]).is_err());
        assert_eq!(run(&[], &[]).unwrap().loop_slice_us, 100);
        assert_eq!(
            run(&[], &[("RINHA_LOOP_SLICE_US", "0")])
                .unwrap()
                .loop_slice_us,
            0
        );
        assert!(
            run(&["--summary-settle", "on"], &[])
                .unwrap()
                .summary_settle
        );
        assert!(Addr::parse("nohost").is_err());
        assert!(Addr::parse("unix:").is_err());
    }

    #[test]
    fn instance_id_is_derived_unless_set() {
        let a = run(
            &["--peer-listen", "127.0.0.1:7001", "--peer-token", "t"],
            &[],
        )
        .unwrap();
        let b = run(
            &["--peer-listen", "127.0.0.1:7002", "--peer-token", "t"],
            &[],
        )
        .unwrap();
        assert!(a.id_derived && b.id_derived);
        assert_ne!(a.instance_id, b.instance_id);
        assert!(a.instance_id >= crate::identity::DERIVED_BASE);
        let again = run(
            &["--peer-listen", "127.0.0.1:7001", "--peer-token", "t"],
            &[],
        )
        .unwrap();
        assert_eq!(a.instance_id, again.instance_id, "stable across restarts");
        let set = run(&["--instance-id", "7"], &[]).unwrap();
        assert_eq!((set.instance_id, set.id_derived), (7, false));
        let env = run(&[], &[("RINHA_INSTANCE_ID", "8")]).unwrap();
        assert_eq!((env.instance_id, env.id_derived), (8, false));
        assert!(set.to_string().contains("instance=7 "));
        assert!(a.to_string().contains(" (derived)"));
    }

    #[test]
    fn plaintext_tcp_peers_must_be_loopback_unless_allowed() {
        let t = ["--peer-token", "t"];
        let with = |extra: &[&str]| run(&[&t[..], extra].concat(), &[]);
        assert!(with(&["--peer", "127.0.0.1:1", "--peer-listen", "[::1]:2"]).is_ok());
        assert!(with(&["--peer", "localhost:1", "--peer-listen", "unix:/x"]).is_ok());
        let e = with(&["--peer", "10.1.2.3:7000"]).unwrap_err();
        assert!(
            e.contains("--peer-tls-cert") && e.contains("--peer-plaintext"),
            "{e}"
        );
        assert!(with(&["--peer-listen", "0.0.0.0:7000"]).is_err());
        assert!(
            with(&["--peer", "api2:7000"]).is_err(),
            "names are not resolved"
        );
        let c = with(&["--peer", "10.1.2.3:7000", "--peer-plaintext"]).unwrap();
        assert!(c.peer_plaintext && c.to_string().contains("peer_tls=off(plaintext"));
        let env = [("RINHA_PEER_PLAINTEXT", "1"), ("RINHA_PEER_TOKEN", "t")];
        assert!(run(&["--peer", "10.1.2.3:7000"], &env).is_ok());
        assert!(with(&["--peer", "10.1.2.3:7000", "--peer-plaintext=off"]).is_err());
    }

    #[test]
    fn peer_tls_needs_all_three_files() {
        let t = ["--peer-token", "t", "--peer", "10.1.2.3:7000"];
        let with = |extra: &[&str]| run(&[&t[..], extra].concat(), &[]);
        assert!(with(&["--peer-tls-cert", "c.pem", "--peer-tls-key", "k.pem"]).is_err());
        let c = with(&[
            "--peer-tls-cert",
            "c.pem",
            "--peer-tls-key",
            "k.pem",
            "--peer-tls-ca",
            "ca.pem",
        ])
        .unwrap();
        let want = PeerTlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: "ca.pem".into(),
        };
        assert_eq!(c.peer_tls, Some(want));
        assert!(c.to_string().contains("peer_tls=mutual"));
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("api-2.local:7000"), "api-2.local");
    }

    #[test]
    fn display_redacts_secrets() {
        let c = run(&["--peer-token", "hunter2", "--peer", "127.0.0.1:1"], &[]).unwrap();
        let line = c.to_string();
        assert!(!line.contains("hunter2"));
        assert!(line.contains("peer_token=set"));
    }
}
