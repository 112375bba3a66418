//! The Kafka source's clock: per-partition positions, newest event times, idleness and the
//! watermark. Pure (the wall clock comes in as `now`), so the rules are unit-tested here and
//! the rdkafka runner around it only polls and emits.
//!
//! - An event more than `lateness` behind its own partition's newest event is late; more
//!   than `max_ahead` ahead of it is invalid ([`judge_time`]). Judged per partition, this
//!   depends only on Kafka's order, so a backtest is deterministic.
//! - The watermark is the minimum over the partitions that still hold it back of their
//!   newest event time, minus the lateness. A bounded run's partition holds it until its
//!   end offset; a live partition silent for `idle` stops holding it, and when all are
//!   silent the watermark reaches the oldest of their newest events (wall-clock rules: live
//!   mode trades determinism for progress).
//! - A stream that resumes after every partition was idle gives every partition a fresh
//!   idle timeout: otherwise the first one to deliver would push the watermark past the
//!   others' events, which would all be late.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::dataflow::source::SourcePart;
use crate::io::wire::{judge_time, DecodeError};
use crate::Time;

/// The clock's rules (from `[kafka.source]` and the command).
#[derive(Debug, Clone, PartialEq)]
pub struct ClockSettings {
    /// Stop at the end offsets (backtest); else run until told to stop (live).
    pub bounded: bool,
    /// Allowed lateness (event-time seconds).
    pub lateness: u64,
    /// Largest jump ahead of a partition's newest event (event-time seconds).
    pub max_ahead: u64,
    /// Live: a partition silent this long stops holding the watermark back.
    pub idle: Duration,
    /// Live: the input ends once no message arrived for this long (`--until-idle`).
    pub idle_exit: Option<Duration>,
}

/// One partition's position and clock.
#[derive(Debug, Clone)]
struct Partition {
    /// Newest event time seen.
    max_time: Option<Time>,
    /// Bounded mode: offset one past the last message to read.
    end: Option<i64>,
    /// Reached its end (bounded), or the input ended: no longer holds the watermark.
    done: bool,
    /// Last time a message arrived (live idleness rule).
    last_message: Instant,
    /// Offset of the next message to read (the checkpoint cut, the consumer lag).
    next_offset: i64,
}

/// The clock of one worker's partitions.
#[derive(Debug, Clone)]
pub struct SourceClock {
    /// The rules.
    settings: ClockSettings,
    /// This worker's partitions.
    partitions: BTreeMap<i32, Partition>,
    /// Last time any message (or a client error) arrived: the `--until-idle` rule.
    last_any_message: Instant,
    /// Every live partition was idle when this poll round began.
    all_idle: bool,
}

impl SourceClock {
    /// A clock with no partitions yet.
    pub fn new(settings: ClockSettings, now: Instant) -> Self {
        Self { settings, partitions: BTreeMap::new(), last_any_message: now, all_idle: false }
    }

    /// Adds a partition read from `start` (up to `end` in a bounded run), whose newest event
    /// time is `max_time` (restored from a checkpoint).
    pub fn add_partition(&mut self, partition: i32, start: i64, end: Option<i64>, max_time: Option<Time>, now: Instant) {
        let done = end.is_some_and(|e| start >= e);
        self.partitions.insert(partition, Partition { max_time, end, done, last_message: now, next_offset: start });
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }

    /// Starts a poll round at `now`.
    pub fn begin_round(&mut self, now: Instant) {
        let idle = self.settings.idle;
        self.all_idle = !self.settings.bounded
            && self.partitions.values().filter(|s| !s.done).all(|s| now.duration_since(s.last_message) >= idle);
    }

    /// A message at `offset` of `partition` was polled at `now`: whether to decode it
    /// (`false`: not this worker's partition, or past a bounded run's end).
    pub fn admit(&mut self, partition: i32, offset: i64, now: Instant) -> bool {
        if std::mem::take(&mut self.all_idle) {
            for state in self.partitions.values_mut() {
                state.last_message = now;
            }
        }
        let Some(state) = self.partitions.get_mut(&partition) else { return false };
        if state.done {
            return false; // past the snapshot end of a bounded run
        }
        state.last_message = now;
        state.next_offset = offset + 1;
        if state.end.is_some_and(|e| offset + 1 >= e) {
            state.done = true;
        }
        state.end.is_none_or(|e| offset < e)
    }

    /// Judges a decoded event's time against its partition's newest event (late, or too far
    /// ahead) and, when it is accepted, advances that partition's clock.
    pub fn judge(&mut self, partition: i32, time: Time) -> Result<(), DecodeError> {
        let Some(state) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let newest = judge_time(time, state.max_time, self.settings.lateness, self.settings.max_ahead)?;
        state.max_time = Some(newest);
        Ok(())
    }

    /// The source did not read at `now` (it waits for the dataflow: see `readahead`): what
    /// it has not read says nothing of the partitions' idleness, so none of them turns idle
    /// and `--until-idle` does not fire meanwhile (a live partition seen as idle would let
    /// the watermark pass its unread events, which would then all be late).
    pub fn hold(&mut self, now: Instant) {
        for state in self.partitions.values_mut() {
            state.last_message = now;
        }
        self.last_any_message = now;
    }

    /// A client error at `now`: an unreachable broker is not a quiet input.
    pub fn on_error(&mut self, now: Instant) {
        self.last_any_message = now;
    }

    /// Ends a poll round that read `polled` messages: with `--until-idle`, a quiet input ends.
    pub fn end_round(&mut self, polled: usize, now: Instant) {
        if polled > 0 {
            self.last_any_message = now;
        } else if self.settings.idle_exit.is_some_and(|d| now.duration_since(self.last_any_message) > d) {
            tracing::info!("no message for the --until-idle time: the input has ended");
            for state in self.partitions.values_mut() {
                state.done = true;
            }
        }
    }

    /// Whether every partition is done (the source then finishes).
    pub fn all_done(&self) -> bool {
        self.partitions.values().all(|s| s.done)
    }

    /// The watermark at `now`, lateness subtracted: `None` while a partition that holds it
    /// back has no event yet.
    pub fn watermark(&self, now: Instant) -> Option<Time> {
        let idle = self.settings.idle;
        let live = || self.partitions.values().filter(|s| !s.done);
        let holding: Vec<Option<Time>> =
            live().filter(|s| self.settings.bounded || now.duration_since(s.last_message) < idle).map(|s| s.max_time).collect();
        // When every live partition is idle, what was read is all there is for now: let the
        // watermark reach it, so that a quiet stream's last events are processed.
        let watermark = if holding.is_empty() {
            live().filter_map(|s| s.max_time).min()
        } else if holding.iter().all(Option::is_some) {
            holding.iter().flatten().min().copied()
        } else {
            None
        };
        watermark.map(|w| w.saturating_sub(self.settings.lateness))
    }

    /// The newest event time of any partition.
    pub fn newest(&self) -> Option<Time> {
        self.partitions.values().filter_map(|s| s.max_time).max()
    }

    /// Messages left per partition: to the bounded end, else to `end_of(partition)`.
    pub fn lag(&self, end_of: impl Fn(i32) -> Option<i64>) -> Vec<(i32, i64)> {
        self.partitions.iter().filter_map(|(p, s)| s.end.or_else(|| end_of(*p)).map(|end| (*p, end - s.next_offset))).collect()
    }

    /// The positions and newest times: this worker's source state at a checkpoint cut.
    pub fn cut(&self) -> SourcePart {
        SourcePart { partitions: self.partitions.iter().map(|(p, s)| (*p, (s.next_offset, s.max_time))).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RejectReason;

    fn settings(bounded: bool) -> ClockSettings {
        ClockSettings { bounded, lateness: 10, max_ahead: 1000, idle: Duration::from_secs(2), idle_exit: None }
    }

    /// Reads `(partition, offset, time)` messages at `now`, as the runner does.
    fn read(clock: &mut SourceClock, messages: &[(i32, i64, Time)], now: Instant) -> Vec<Result<Time, RejectReason>> {
        clock.begin_round(now);
        let mut out = Vec::new();
        for &(p, offset, t) in messages {
            if clock.admit(p, offset, now) {
                out.push(clock.judge(p, t).map(|()| t).map_err(|e| e.reason));
            }
        }
        clock.end_round(messages.len(), now);
        out
    }

    #[test]
    fn the_watermark_waits_for_every_partition_then_trails_the_slowest_by_the_lateness() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(settings(true), t0);
        c.add_partition(0, 0, Some(100), None, t0);
        c.add_partition(1, 0, Some(100), None, t0);
        read(&mut c, &[(0, 0, 500)], t0);
        assert_eq!(c.watermark(t0), None, "partition 1 has no event yet");
        read(&mut c, &[(1, 0, 300), (0, 1, 600)], t0);
        assert_eq!(c.watermark(t0), Some(290), "min(600, 300) − lateness");
        assert_eq!(c.newest(), Some(600));
    }

    #[test]
    fn lateness_and_jumps_are_judged_per_partition() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(settings(true), t0);
        c.add_partition(0, 0, Some(100), None, t0);
        c.add_partition(1, 0, Some(100), None, t0);
        let got = read(&mut c, &[(0, 0, 500), (0, 1, 489), (0, 2, 490), (1, 0, 100), (0, 3, 5000)], t0);
        assert_eq!(got, vec![Ok(500), Err(RejectReason::Late), Ok(490), Ok(100), Err(RejectReason::InvalidValue)]);
        assert_eq!(c.cut().partitions[&0], (4, Some(500)), "offsets advance, rejected times do not move the clock");
    }

    #[test]
    fn a_bounded_run_stops_at_the_end_offsets() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(settings(true), t0);
        c.add_partition(0, 5, Some(7), None, t0);
        c.add_partition(1, 3, Some(3), None, t0);
        assert!(!c.all_done(), "partition 0 has two messages left");
        c.begin_round(t0);
        assert!(c.admit(0, 5, t0));
        assert!(c.admit(0, 6, t0));
        assert!(!c.admit(0, 7, t0), "past the end");
        assert!(!c.admit(2, 0, t0), "not this worker's partition");
        assert!(c.all_done());
        assert_eq!(c.lag(|_| None), vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn an_idle_live_partition_stops_holding_the_watermark_and_a_resuming_stream_rearms_all() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(settings(false), t0);
        c.add_partition(0, 0, None, None, t0);
        c.add_partition(1, 0, None, None, t0);
        read(&mut c, &[(0, 0, 500), (1, 0, 400)], t0);
        let t1 = t0 + Duration::from_secs(1);
        read(&mut c, &[(0, 1, 800)], t1);
        assert_eq!(c.watermark(t1), Some(390), "partition 1 still holds it");
        let t2 = t0 + Duration::from_millis(2500);
        assert_eq!(c.watermark(t2), Some(790), "partition 1 idle: only partition 0 holds it");
        let t3 = t0 + Duration::from_secs(10);
        assert_eq!(c.watermark(t3), Some(390), "all idle: the oldest newest event");
        // The stream resumes on partition 0 only: partition 1 gets a fresh timeout and holds
        // the watermark again, so its coming events are not late.
        read(&mut c, &[(0, 2, 900)], t3);
        assert_eq!(c.watermark(t3), Some(390));
    }

    #[test]
    fn a_source_holding_back_keeps_its_partitions_from_turning_idle() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(ClockSettings { idle_exit: Some(Duration::from_secs(5)), ..settings(false) }, t0);
        c.add_partition(0, 0, None, None, t0);
        c.add_partition(1, 0, None, None, t0);
        read(&mut c, &[(0, 0, 500), (1, 0, 400)], t0);
        let t1 = t0 + Duration::from_secs(3);
        c.hold(t1);
        assert_eq!(c.watermark(t1 + Duration::from_secs(1)), Some(390), "both partitions still hold the watermark");
        c.end_round(0, t1 + Duration::from_secs(4));
        assert!(!c.all_done(), "not a quiet input");
    }

    #[test]
    fn until_idle_ends_a_quiet_live_input() {
        let t0 = Instant::now();
        let mut c = SourceClock::new(ClockSettings { idle_exit: Some(Duration::from_secs(5)), ..settings(false) }, t0);
        c.add_partition(0, 0, None, None, t0);
        read(&mut c, &[(0, 0, 10)], t0);
        c.end_round(0, t0 + Duration::from_secs(4));
        assert!(!c.all_done());
        c.on_error(t0 + Duration::from_secs(4));
        c.end_round(0, t0 + Duration::from_secs(8));
        assert!(!c.all_done(), "a client error is not a quiet input");
        c.end_round(0, t0 + Duration::from_secs(10));
        assert!(c.all_done());
    }
}
