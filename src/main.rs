//! The `tweetoscope` binary: parses the command line and dispatches to the library's
//! commands; an error becomes one line on stderr and exit code 1, or 128 + the signal when
//! the cluster start-up was stopped by one (usage errors: 2, from clap; a run stopped by
//! SIGINT/SIGTERM prints its summary marked interrupted and exits 130/143, from the command).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tweetoscope::commands::{dispatch, error_line, exit_code, Cli};

/// The global allocator: mimalloc (measured against glibc's malloc in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in a redirected log.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tweetoscope::commands::signals::start_fit_pool();
    match dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(u8::try_from(exit_code(&e)).unwrap_or(1))
        }
    }
}
