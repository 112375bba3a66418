//! The `tweetoscope` binary: parses the command line and dispatches to the library's
//! commands; an error becomes one line on stderr and exit code 1 (usage errors: 2, from
//! clap; SIGINT/SIGTERM: 130/143, from the command).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tweetoscope::commands::{dispatch, error_line, Cli};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in a redirected log.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}
