//! `rinha`: parse the flags, log the effective config once, serve until stopped.
//!
//! SIGTERM or SIGINT (`docker compose stop`, Ctrl-C) starts a drain: the instance keeps
//! serving while its queued and in-flight payments settle and its own records reach the
//! linked peers, for at most `STOP_GRACE`, then exits: 0 if nothing was left open, 1
//! otherwise (what is left is in the journal, when there is one). A second signal
//! during the drain is ignored.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rinha::config::{self, Command};
use rinha::server::Drain;
use rinha::signals::StopSignals;

/// The longest drain: inside `docker compose stop`'s default 10 s.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a draining instance looks at what is left (only while it stops).
const DRAIN_CHECK: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = StopSignals::block()
        .map_err(|e| eprintln!("rinha: SIGTERM will not drain: {e}"))
        .ok();
    let cmd = config::parse(std::env::args().skip(1), |k| std::env::var(k).ok());
    let cfg = match cmd {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rinha {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rinha: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("rinha {}: {cfg}", env!("CARGO_PKG_VERSION"));
    let journal = cfg.journal.is_some();
    let result = rinha::node::build(&cfg).and_then(|server| {
        if let Some(port) = server.local_port() {
            eprintln!("rinha: listening on tcp port {port}");
        }
        if let Some(signals) = signals {
            let drain = server.drain_handle();
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || stop_on_signal(&signals, &drain, journal))?;
        }
        server.run()
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rinha: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for a stop signal, drains, exits the process.
fn stop_on_signal(signals: &StopSignals, drain: &Drain, journal: bool) {
    let name = match signals.wait() {
        Ok(name) => name,
        Err(e) => return eprintln!("rinha: sigwait: {e}; SIGTERM will not drain"),
    };
    let started = Instant::now();
    let (mut payments, mut records) = drain.open();
    eprintln!(
        "rinha: {name}: stopping after {payments} open payments and {records} unreplicated \
         records (at most {STOP_GRACE:?})"
    );
    while (payments, records) != (0, 0) && started.elapsed() < STOP_GRACE {
        std::thread::sleep(DRAIN_CHECK);
        (payments, records) = drain.open();
    }
    if (payments, records) == (0, 0) {
        eprintln!("rinha: stopped in {:?}", started.elapsed());
        std::process::exit(0);
    }
    let kept = if journal {
        "the journal resumes them on restart"
    } else {
        "no journal: they are lost"
    };
    eprintln!(
        "rinha: stopped with {payments} payments open and {records} records unreplicated; {kept}"
    );
    std::process::exit(1);
}
