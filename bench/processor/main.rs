//! Payment-processor emulator for the bench: the official Rinha 2025 processor's
//! HTTP API with in-memory storage. `main` parses flags and accepts
//! connections, one small-stack thread each; `http` frames requests like
//! Kestrel, `app` routes them; `store`, `limiter`, `json`, `decimal`, `time`
//! and `guid` hold the rules they share.
#![forbid(unsafe_code)]

mod app;
mod decimal;
mod guid;
mod http;
mod json;
mod limiter;
mod store;
mod time;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use app::{App, Settings};

const USAGE: &str = "\
usage: processor --port N [--listen HOST:PORT] [--fee 0.05] [--token 123] [--rate-limit-seconds 5]

Emulates the Rinha de Backend 2025 payment processor in memory.
  --port N                 listen on 0.0.0.0:N (0 = any free port; the start-up line shows it)
  --listen HOST:PORT       listen on this address instead
  --fee DECIMAL            fee per transaction reported by /admin/payments-summary (0.05)
  --token TEXT             initial X-Rinha-Token of the admin endpoints (123)
  --rate-limit-seconds N   service-health window: 1 call per N s, 2 queued (5)
  --help                   this text";

/// Connection threads do little: a small stack lets thousands coexist.
const CONN_STACK: usize = 128 * 1024;
/// Kestrel's keep-alive timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(130);

struct Cli {
    listen: SocketAddr,
    settings: Settings,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Cli>, String> {
    let mut listen = None;
    let mut fee = decimal::Decimal {
        mantissa: 5,
        scale: 2,
    };
    let mut token = "123".to_string();
    let mut rate_limit = 5u64;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        const FLAGS: [&str; 5] = [
            "--port",
            "--listen",
            "--fee",
            "--token",
            "--rate-limit-seconds",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}"));
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => {
                let port: u16 = value.parse().map_err(|_| format!("bad --port {value:?}"))?;
                listen.get_or_insert(SocketAddr::from(([0, 0, 0, 0], port)));
            }
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad --listen {value:?}"))?,
                )
            }
            "--fee" => {
                fee = decimal::parse_exact(&value).ok_or_else(|| format!("bad --fee {value:?}"))?
            }
            "--token" => token = value,
            "--rate-limit-seconds" => {
                rate_limit = value
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("bad {flag} {value:?}"))?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let listen = listen.ok_or("--port or --listen is required")?;
    let settings = Settings {
        fee,
        rate_limit: Duration::from_secs(rate_limit),
        token,
    };
    Ok(Some(Cli { listen, settings }))
}

fn serve_connection(app: Arc<App>, stream: TcpStream) {
    // Best effort: a socket that refuses these options still works.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let spawned = thread::Builder::new()
        .name("conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || http::Conn::new(stream).serve(|req, gone| app.serve(req, gone)));
    if let Err(e) = spawned {
        eprintln!("processor: cannot start a connection thread: {e}");
    }
}

fn run(cli: Cli) -> std::io::Result<()> {
    let fee = decimal::scaled(cli.settings.fee.mantissa, cli.settings.fee.scale);
    let window = cli.settings.rate_limit.as_secs();
    let app = Arc::new(App::new(cli.settings));
    let listener = TcpListener::bind(cli.listen)?;
    let ticker = Arc::clone(&app);
    thread::Builder::new()
        .name("replenish".into())
        .stack_size(CONN_STACK)
        .spawn(move || loop {
            thread::sleep(limiter::REPLENISH_TICK);
            ticker.tick(Instant::now());
        })?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "processor listening on {} (fee {fee}, health window {window} s)",
        listener.local_addr()?
    )?;
    out.flush()?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => serve_connection(Arc::clone(&app), stream),
            // Out of descriptors or a reset before accept: back off, go on.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(None) => {
            // A closed stdout (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(cli)) => match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("processor: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("processor: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(String::from)
    }

    #[test]
    fn flags() {
        let cli = parse_args(args(
            "--port 8001 --fee 0.15 --token t --rate-limit-seconds 1",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(cli.listen, "0.0.0.0:8001".parse().unwrap());
        assert_eq!(
            cli.settings.fee,
            decimal::Decimal {
                mantissa: 15,
                scale: 2
            }
        );
        assert_eq!(cli.settings.token, "t");
        assert_eq!(cli.settings.rate_limit, Duration::from_secs(1));
        let cli = parse_args(args("--listen 127.0.0.1:0 --port 9"))
            .unwrap()
            .unwrap();
        assert_eq!(cli.listen, "127.0.0.1:0".parse().unwrap());
        assert!(parse_args(args("--help")).unwrap().is_none());
    }

    #[test]
    fn bad_flags() {
        for bad in [
            "",
            "--port",
            "--port x",
            "--fee abc --port 1",
            "--rate-limit-seconds 0 --port 1",
            "--what 1",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?}");
        }
    }
}
