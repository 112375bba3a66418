//! SIGINT, SIGTERM and SIGHUP for the commands that run the dataflow (`run`, `backtest`,
//! `live` and the embedded default) and for `generate`.
//!
//! The first signal stops the run ([`RunHandles::stop`]): the sources stop, the pipeline
//! drains, and in a cluster the stop is passed on to every process; the command then prints
//! its summary marked interrupted (see `replay::report`). A second signal, or a stop that has
//! not finished after [`STOP_GRACE`], ends the process at once. Either way the exit code is
//! 128 + the signal (130 for SIGINT, 143 for SIGTERM), `live` included: a run a signal
//! stopped is an interrupted run, whatever the command. `generate` uses the same handler.
//!
//! The signals are blocked in the calling thread before any other thread exists (threads
//! inherit the mask, librdkafka's included) and taken with `sigwait` on a thread of their
//! own, which is how we learn which signal came without process-global state.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::pipeline::{RunHandles, StopCause};

/// How long a stop may take before the process ends anyway: every process of a cluster is
/// gone within 5 s of a signal (the stop reaches the peers within a tenth of a second).
pub const STOP_GRACE: Duration = Duration::from_secs(4);

/// Takes SIGINT, SIGTERM and SIGHUP for `handles` (this process being `process`). Call it
/// first, before any thread is started: a thread started earlier would not block them, and
/// the kernel could deliver a signal there, killing the process without a word.
pub fn install(handles: &RunHandles, process: usize) -> Result<()> {
    let set = stop_signals();
    set.thread_block().context("blocking the stop signals")?;
    let waiter = handles.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            loop {
                let Ok(signal) = set.wait() else { continue };
                if stopping {
                    eprintln!("error: {} again while stopping: exiting now", signal.as_str());
                    std::process::exit(128 + signal as i32);
                }
                stopping = true;
                waiter.stop(StopCause { signal: signal as i32, process });
            }
        })
        .context("starting the signal thread")?;
    let watched = handles.clone();
    std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || watchdog(&watched))
        .context("starting the stop watchdog")?;
    Ok(())
}

/// The stop signals, as one set.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Starts rayon's global pool (training runs spread their fits over it) with named threads,
/// `fit-N`, which show as such in `top -H`, perf and `scripts/thread-timeline`. The binary
/// calls it first, before [`install`] can run: so every pool thread blocks the stop signals
/// itself, or the kernel could deliver SIGTERM there and end the process without its summary
/// (`tests/cluster.rs` caught exactly that). An error only means a pool already exists.
pub fn start_fit_pool() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("fit-{i}"))
        .start_handler(|_| {
            let _ = stop_signals().thread_block();
        })
        .build_global();
}

/// Ends the process `STOP_GRACE` after a stop (here or from a peer) began, if it still runs.
fn watchdog(handles: &RunHandles) {
    while !handles.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let since = Instant::now();
    std::thread::sleep(STOP_GRACE);
    let cause = handles.stop_cause();
    let what = cause.map_or_else(|| "a stop request".to_owned(), |c| c.to_string());
    eprintln!("error: still stopping {:.0} s after {what}: exiting now", since.elapsed().as_secs_f64());
    std::process::exit(cause.map_or(1, |c| c.exit_code()));
}
