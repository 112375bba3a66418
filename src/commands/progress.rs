//! What a long command shows: a progress bar on stderr (signals: `signals.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a bar estimates what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as possible: the rate so far predicts the rest (an ETA is shown).
    Max,
    /// Paced on event time: events come in bursts, so an ETA from the event rate is
    /// meaningless (it said 8 h for a two-minute replay); the elapsed time is shown instead.
    Paced,
}

/// A progress bar on stderr fed from a counter (hidden when stderr is not a terminal).
pub struct Progress {
    /// Set when dropped: the ticker thread ends.
    done: Arc<AtomicBool>,
    /// The thread copying the counter into the bar ten times a second.
    ticker: Option<std::thread::JoinHandle<()>>,
    /// The bar.
    bar: indicatif::ProgressBar,
}

/// A rate for people: `8.3/s`, `412/s`, `10.6k/s`, `1.25M/s` (indicatif's own `{per_sec}`
/// prints `10,634.2786/s`).
pub fn human_rate(per_second: f64) -> String {
    match per_second {
        r if !r.is_finite() || r <= 0.0 => "0/s".to_owned(),
        r if r < 10.0 => format!("{r:.1}/s"),
        r if r < 1_000.0 => format!("{r:.0}/s"),
        r if r < 1_000_000.0 => format!("{:.1}k/s", r / 1e3),
        r => format!("{:.2}M/s", r / 1e6),
    }
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human_rate(s.per_sec()));
        })
        .progress_chars("=> ")
}

impl Progress {
    /// A bar for `what`, out of `total` events when known (else a spinner), following `counter`.
    pub fn start(what: &str, total: Option<u64>, pace: Pace, counter: Arc<AtomicU64>) -> Self {
        let time = match pace {
            Pace::Max => "{eta} left",
            Pace::Paced => "{elapsed}",
        };
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t).with_style(style(&format!(
                "{{spinner}} {what} [{{bar:40}}] {{human_pos}}/{{human_len}} events ({{rate}}, {time})"
            ))),
            None => indicatif::ProgressBar::new_spinner()
                .with_style(style(&format!("{{spinner}} {what}: {{human_pos}} events ({{rate}}, {{elapsed}})"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_rates() {
        assert_eq!(human_rate(9.9526), "10.0/s");
        assert_eq!(human_rate(412.4), "412/s");
        assert_eq!(human_rate(10_634.278_6), "10.6k/s");
        assert_eq!(human_rate(1_254_000.0), "1.25M/s");
        assert_eq!(human_rate(0.0), "0/s");
        assert_eq!(human_rate(f64::NAN), "0/s");
    }
}
