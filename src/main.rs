//! `rinha`: parse the flags, log the effective config once, serve until killed.

use std::process::ExitCode;

use rinha::config::{self, Command};

fn main() -> ExitCode {
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
    let result = rinha::node::build(&cfg).and_then(|server| {
        if let Some(port) = server.local_port() {
            eprintln!("rinha: listening on tcp port {port}");
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
