//! The Kafka source's read-ahead bound: how many events it may have emitted that the
//! dataflow has not completed yet. Pure (the completed frontier comes in as an argument),
//! so the rule is unit-tested here.
//!
//! Why: a source that reads as fast as Kafka delivers runs ahead of a slower dataflow (a
//! model training on the worker's training thread holds the frontier back while the worker
//! goes on windowing and fitting), and everything read meanwhile waits in the stages'
//! stashes: memory then grows with the backlog, i.e. without bound in a live run behind a
//! fast producer or on a long backtest. Kafka keeps the backlog instead.
//!
//! The rule never deadlocks: the source pauses only while the dataflow's completed frontier
//! is behind the source's own capability. Every time below that capability has all of its
//! input, so every stage can finish it (windows whose deadline it passed fire, training
//! runs end) without another message, and the frontier reaches the capability, or a
//! deadline at or beyond it, after which the source reads again. With several workers the
//! frontier is shared and at most the smallest of their capabilities: every time below that
//! one can be completed without new input, so the frontier reaches it and its worker reads
//! again (the others may wait longer, never for ever).
//!
//! Measured (BENCHMARKS.md, issue 18): on the NEWS backtest with the forest off the bound
//! lowered the peak resident set (117 MiB vs 137 MiB without); on a 10 M-message backtest
//! with the forest on it did not (238–242 MiB vs 218–221 MiB), and neither was flat.

use std::collections::BTreeMap;

use crate::Time;

/// Events emitted per timestamp, until the dataflow completes that timestamp.
#[derive(Debug, Clone, Default)]
pub struct ReadAhead {
    /// Most events in flight before the source pauses (0: no bound).
    limit: u64,
    /// Events emitted, by the time they were stamped with.
    by_time: BTreeMap<Time, u64>,
    /// Sum of `by_time`.
    in_flight: u64,
}

impl ReadAhead {
    /// A bound of `limit` events in flight (0: unbounded).
    pub fn new(limit: u64) -> Self {
        Self { limit, by_time: BTreeMap::new(), in_flight: 0 }
    }

    /// `n` events went out stamped `time`.
    pub fn emitted(&mut self, time: Time, n: u64) {
        if n > 0 {
            *self.by_time.entry(time).or_default() += n;
            self.in_flight += n;
        }
    }

    /// The dataflow's completed frontier is `frontier` (`None`: everything is complete):
    /// events stamped before it have left the dataflow.
    pub fn completed(&mut self, frontier: Option<Time>) {
        let kept = match frontier {
            Some(f) => self.by_time.split_off(&f),
            None => BTreeMap::new(),
        };
        self.in_flight = kept.values().sum();
        self.by_time = kept;
    }

    /// Events emitted and not yet completed.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Whether the source should pause: the bound is reached and the dataflow can still
    /// complete times below the source's capability `capability` without new input.
    pub fn should_pause(&self, frontier: Option<Time>, capability: Time) -> bool {
        self.limit > 0 && self.in_flight >= self.limit && frontier.is_some_and(|f| f < capability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_pauses_at_the_bound_only_while_the_dataflow_is_behind_it() {
        let mut r = ReadAhead::new(100);
        r.emitted(10, 60);
        r.emitted(20, 50);
        r.completed(Some(5));
        assert_eq!(r.in_flight(), 110);
        assert!(r.should_pause(Some(5), 20), "over the bound, frontier behind the capability");
        assert!(!r.should_pause(Some(20), 20), "the frontier reached the capability: only new input moves it");
        assert!(!r.should_pause(Some(30), 20), "a deadline beyond the capability holds the frontier");
        r.completed(Some(11));
        assert_eq!(r.in_flight(), 50, "time 10 is complete");
        assert!(!r.should_pause(Some(11), 20));
        r.completed(None);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn no_bound_never_pauses() {
        let mut r = ReadAhead::new(0);
        r.emitted(1, 1_000_000);
        assert!(!r.should_pause(Some(0), 5));
        r.emitted(2, 0);
        r.completed(Some(2));
        assert_eq!(r.in_flight(), 0);
    }
}
