//! What a long command shows and listens to: a progress bar on stderr, and SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// A progress bar on stderr fed from a counter (hidden when stderr is not a terminal).
pub struct Progress {
    /// Set when dropped: the ticker thread ends.
    done: Arc<AtomicBool>,
    /// The thread copying the counter into the bar ten times a second.
    ticker: Option<std::thread::JoinHandle<()>>,
    /// The bar.
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar for `what`, out of `total` events when known (else a spinner), following `counter`.
    pub fn start(what: &str, total: Option<u64>, counter: Arc<AtomicU64>) -> Self {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t).with_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, {{eta}})"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(&format!("{{spinner}} {what}: {{pos}} events ({{per_sec}})"))
                    .expect("valid template"),
            ),
        };
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (bar, done) = (bar.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(counter.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self { done, ticker: Some(ticker), bar }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Sets `shutdown` on SIGINT/SIGTERM (the pipeline then drains and finishes).
pub fn stop_on_signals(shutdown: Arc<AtomicBool>) -> Result<()> {
    ctrlc::set_handler(move || shutdown.store(true, Ordering::Relaxed)).context("installing the signal handler")
}
