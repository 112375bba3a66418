//! The `tweetoscope` binary: parses the command line and dispatches to the library's
//! commands; an error becomes a message on stderr and a non-zero exit (128 + the signal when
//! a signal stopped the run).

use clap::Parser;
use tweetoscope::commands::{dispatch, exit_code, Cli};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = dispatch(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(exit_code(&e));
    }
}
