//! The per-cascade state machine behind the `window` and `terminate` stages: no timely, no I/O.
//!
//! The tracker is fed events in event-time order (the operator around it guarantees that by
//! processing a time only once the input frontier has passed it) and is told how far event
//! time is complete. From that it emits, deterministically:
//! - a [`Partial`] when a cascade's observation window `start + T_obs` has passed (events
//!   with relative time ≤ T_obs; none if fewer than `min_cascade_size`),
//! - a [`FinalSize`] when a cascade has been idle for more than `t_end` seconds,
//! - a [`Rejection`] for an event that cannot belong to an open cascade.
//!
//! Timers: one termination entry per cascade, re-armed lazily when it fires early (so a
//! cascade with k events costs O(span / t_end) timer operations, not O(k)), and one entry
//! for the next window. State is evicted at termination; a tombstone remembers the id for
//! `tombstone_ttl` seconds so that late retweets are classified correctly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tweetoscope_model::hawkes::Event;

pub use crate::records::RejectReason;
use crate::records::{CascadeId, EventKind, FinalSize, Partial, TweetEvent};
use crate::Time;

/// A rejected event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The cascade the event claimed to belong to.
    pub cascade: CascadeId,
    /// Its event time.
    pub time: Time,
    /// Why.
    pub reason: RejectReason,
}

/// What the tracker emits, each at an event time (the output's timestamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrackerOutput {
    /// A partial cascade, at `start + T_obs`.
    Partial(Partial),
    /// A terminated cascade, at `last event + t_end`.
    Final(FinalSize),
    /// A rejected event, at its own time.
    Rejected(Rejection),
    /// A window of a cascade that had too few events to be estimated (fewer than
    /// `min_training_size`), at `start + T_obs`.
    TooSmall {
        /// The cascade.
        cascade: CascadeId,
        /// The observation window (s).
        t_obs: Time,
    },
}

/// Why tracker settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerSettingsError {
    /// No window, windows not strictly increasing, a zero window, or one after `t_end`.
    #[error("windows {windows:?} must be strictly increasing, positive and ≤ t_end ({t_end} s)")]
    Windows {
        /// The windows given.
        windows: Vec<Time>,
        /// The termination idle time.
        t_end: Time,
    },
    /// Sizes out of order: 2 ≤ `min_training_size` ≤ `min_cascade_size`.
    #[error("need 2 ≤ min_training_size ({training}) ≤ min_cascade_size ({predicted})")]
    Sizes {
        /// Smallest predicted partial.
        predicted: usize,
        /// Smallest training partial.
        training: usize,
    },
}

/// The tracker's settings, built by [`TrackerSettings::new`] (so always consistent).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    /// Observation windows, increasing, all ≤ `t_end`.
    windows: Vec<Time>,
    /// Idle time that terminates a cascade.
    t_end: Time,
    /// Smallest partial cascade that is predicted.
    min_cascade_size: usize,
    /// Smallest partial cascade that is emitted (for training only below `min_cascade_size`).
    min_training_size: usize,
    /// How long a terminated id is remembered.
    tombstone_ttl: Time,
}

impl TrackerSettings {
    /// Windows `windows` (strictly increasing, positive, ≤ `t_end`); termination after
    /// `t_end` idle seconds; partials of at least `min_cascade_size` events predicted, of at
    /// least `min_training_size` (2 ≤ it ≤ `min_cascade_size`) emitted for training only;
    /// terminated ids remembered `tombstone_ttl` seconds.
    pub fn new(
        windows: Vec<Time>,
        t_end: Time,
        min_cascade_size: usize,
        min_training_size: usize,
        tombstone_ttl: Time,
    ) -> Result<Self, TrackerSettingsError> {
        let ordered = windows.windows(2).all(|w| w[0] < w[1]);
        if windows.is_empty() || !ordered || windows[0] == 0 || windows[windows.len() - 1] > t_end {
            return Err(TrackerSettingsError::Windows { windows, t_end });
        }
        if min_training_size < 2 || min_training_size > min_cascade_size {
            return Err(TrackerSettingsError::Sizes { predicted: min_cascade_size, training: min_training_size });
        }
        Ok(Self { windows, t_end, min_cascade_size, min_training_size, tombstone_ttl })
    }

    /// The observation windows.
    pub fn windows(&self) -> &[Time] {
        &self.windows
    }

    /// Idle time that terminates a cascade.
    pub fn t_end(&self) -> Time {
        self.t_end
    }

    /// Smallest partial cascade that is predicted.
    pub fn min_cascade_size(&self) -> usize {
        self.min_cascade_size
    }

    /// Smallest partial cascade that is emitted (for training only below `min_cascade_size`).
    pub fn min_training_size(&self) -> usize {
        self.min_training_size
    }

    /// How long a terminated id is remembered.
    pub fn tombstone_ttl(&self) -> Time {
        self.tombstone_ttl
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenCascade {
    start: Time,
    msg: String,
    /// Events so far, relative times; dropped once the last window has fired.
    events: Vec<Event>,
    n: usize,
    last: Time,
    /// Index of the next window to fire.
    next_window: usize,
    /// Windows whose partial was emitted.
    emitted: Vec<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Timer {
    Window,
    Terminate,
}

/// A tracker's state as plain lists (checkpoints): records are keyed by cascade, so a
/// restart with another number of workers can split or merge snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackerSnapshot {
    /// Open cascades with their events.
    open: Vec<(CascadeId, OpenCascade)>,
    /// Pending window and termination timers.
    timers: Vec<(Time, CascadeId, Timer)>,
    /// Terminated ids still remembered, with their expiry.
    tombstones: Vec<(CascadeId, Time)>,
}

/// Window + terminate state for the cascades of one shard.
#[derive(Debug)]
pub struct CascadeTracker {
    settings: TrackerSettings,
    open: HashMap<CascadeId, OpenCascade>,
    timers: BTreeMap<Time, Vec<(CascadeId, Timer)>>,
    tombstones: HashMap<CascadeId, Time>,
    tombstone_expiry: BTreeMap<Time, Vec<CascadeId>>,
}

impl CascadeTracker {
    /// A tracker with no cascades.
    pub fn new(settings: TrackerSettings) -> Self {
        Self {
            settings,
            open: HashMap::new(),
            timers: BTreeMap::new(),
            tombstones: HashMap::new(),
            tombstone_expiry: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &TrackerSettings {
        &self.settings
    }

    /// Number of open cascades (state held).
    pub fn open_cascades(&self) -> usize {
        self.open.len()
    }

    /// Number of remembered terminated ids.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// The earliest time at which an output may be emitted, if any: the operator holds one
    /// capability there. (Tombstone expiries emit nothing, so they hold no capability and are
    /// processed whenever time passes them.)
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.first_key_value().map(|(t, _)| *t)
    }

    /// The state, for a checkpoint (sorted, so equal states give equal bytes).
    pub fn snapshot(&self) -> TrackerSnapshot {
        let mut open: Vec<(CascadeId, OpenCascade)> = self.open.iter().map(|(c, o)| (*c, o.clone())).collect();
        open.sort_unstable_by_key(|(c, _)| *c);
        let timers = self.timers.iter().flat_map(|(t, due)| due.iter().map(move |(c, k)| (*t, *c, *k))).collect();
        let mut tombstones: Vec<(CascadeId, Time)> = self.tombstones.iter().map(|(c, t)| (*c, *t)).collect();
        tombstones.sort_unstable();
        TrackerSnapshot { open, timers, tombstones }
    }

    /// Adds the cascades of `snapshot` for which `keep` holds (the ones this shard owns).
    pub fn restore(&mut self, snapshot: TrackerSnapshot, keep: impl Fn(CascadeId) -> bool) {
        for (cascade, open) in snapshot.open.into_iter().filter(|(c, _)| keep(*c)) {
            self.open.insert(cascade, open);
        }
        for (time, cascade, timer) in snapshot.timers.into_iter().filter(|(_, c, _)| keep(*c)) {
            self.timers.entry(time).or_default().push((cascade, timer));
        }
        for (cascade, expiry) in snapshot.tombstones.into_iter().filter(|(c, _)| keep(*c)) {
            self.tombstones.insert(cascade, expiry);
            self.tombstone_expiry.entry(expiry).or_default().push(cascade);
        }
    }

    /// Feeds one event. Events must come in non-decreasing time, and every deadline before
    /// the event's time must have been fired with [`Self::fire_before`] first.
    pub fn on_event(&mut self, ev: TweetEvent, out: &mut Vec<(Time, TrackerOutput)>) {
        let reject = |reason| (ev.time, TrackerOutput::Rejected(Rejection { cascade: ev.cascade, time: ev.time, reason }));
        match ev.kind {
            EventKind::Tweet => {
                if self.open.contains_key(&ev.cascade) || self.tombstones.contains_key(&ev.cascade) {
                    out.push(reject(RejectReason::DuplicateTweet));
                    return;
                }
                let first_window = self.settings.windows[0];
                self.open.insert(
                    ev.cascade,
                    OpenCascade {
                        start: ev.time,
                        msg: ev.msg,
                        events: vec![Event { t: 0.0, m: ev.magnitude }],
                        n: 1,
                        last: ev.time,
                        next_window: 0,
                        emitted: Vec::new(),
                    },
                );
                self.timers.entry(ev.time + first_window).or_default().push((ev.cascade, Timer::Window));
                self.timers.entry(ev.time + self.settings.t_end).or_default().push((ev.cascade, Timer::Terminate));
            }
            EventKind::Retweet => {
                let Some(c) = self.open.get_mut(&ev.cascade) else {
                    let reason = if self.tombstones.contains_key(&ev.cascade) {
                        RejectReason::TerminatedCascade
                    } else {
                        RejectReason::UnknownCascade
                    };
                    out.push(reject(reason));
                    return;
                };
                c.n += 1;
                c.last = c.last.max(ev.time);
                if c.next_window < self.settings.windows.len() {
                    c.events.push(Event { t: (ev.time - c.start) as f64, m: ev.magnitude });
                }
            }
        }
    }

    /// Fires every deadline strictly before `time`: all events before `time` have been fed.
    pub fn fire_before(&mut self, time: Time, out: &mut Vec<(Time, TrackerOutput)>) {
        while let Some(entry) = self.timers.first_entry() {
            let deadline = *entry.key();
            if deadline >= time {
                break;
            }
            let mut due = entry.remove();
            // Deterministic order within a deadline, whatever the insertion order.
            due.sort_unstable_by_key(|(c, timer)| (*c, *timer == Timer::Terminate));
            for (cascade, timer) in due {
                match timer {
                    Timer::Window => self.fire_window(cascade, deadline, out),
                    Timer::Terminate => self.fire_terminate(cascade, deadline, out),
                }
            }
        }
        while let Some(entry) = self.tombstone_expiry.first_entry() {
            if *entry.key() >= time {
                break;
            }
            for cascade in entry.remove() {
                self.tombstones.remove(&cascade);
            }
        }
    }

    fn fire_window(&mut self, cascade: CascadeId, deadline: Time, out: &mut Vec<(Time, TrackerOutput)>) {
        let windows = &self.settings.windows;
        let Some(c) = self.open.get_mut(&cascade) else { return };
        let t_obs = windows[c.next_window];
        debug_assert_eq!(c.start + t_obs, deadline);
        let n = c.events.len();
        if n >= self.settings.min_training_size {
            c.emitted.push(t_obs);
            let training_only = n < self.settings.min_cascade_size;
            let partial = Partial { cascade, t_obs, msg: c.msg.clone(), events: c.events.clone(), start: c.start, training_only };
            out.push((deadline, TrackerOutput::Partial(partial)));
        } else {
            out.push((deadline, TrackerOutput::TooSmall { cascade, t_obs }));
        }
        c.next_window += 1;
        match windows.get(c.next_window) {
            Some(next) => self.timers.entry(c.start + next).or_default().push((cascade, Timer::Window)),
            None => c.events = Vec::new(),
        }
    }

    fn fire_terminate(&mut self, cascade: CascadeId, deadline: Time, out: &mut Vec<(Time, TrackerOutput)>) {
        let Some(c) = self.open.get(&cascade) else { return };
        let due = c.last + self.settings.t_end;
        if due > deadline {
            // The cascade saw events since this timer was armed: re-arm it.
            self.timers.entry(due).or_default().push((cascade, Timer::Terminate));
            return;
        }
        let c = self.open.remove(&cascade).expect("checked above");
        // Windows cannot be pending here: every window ≤ t_end and the last event ≥ start.
        debug_assert_eq!(c.next_window, self.settings.windows.len());
        out.push((
            deadline,
            TrackerOutput::Final(FinalSize {
                cascade,
                n_tot: c.n,
                t_end: c.last - c.start,
                windows: c.emitted,
                ended_at: deadline,
            }),
        ));
        let expiry = deadline + self.settings.tombstone_ttl;
        self.tombstones.insert(cascade, expiry);
        self.tombstone_expiry.entry(expiry).or_default().push(cascade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TrackerSettings {
        TrackerSettings::new(vec![10, 20], 30, 2, 2, 100).unwrap()
    }

    fn ev(cascade: CascadeId, time: Time, kind: EventKind) -> TweetEvent {
        TweetEvent { cascade, time, seq: time, magnitude: 1.0, kind, msg: String::new() }
    }

    /// Feeds events in order, firing deadlines before each, then everything.
    fn run(events: Vec<TweetEvent>) -> Vec<(Time, TrackerOutput)> {
        let mut t = CascadeTracker::new(settings());
        let mut out = Vec::new();
        for e in events {
            t.fire_before(e.time, &mut out);
            t.on_event(e, &mut out);
        }
        t.fire_before(Time::MAX, &mut out);
        out
    }

    #[test]
    fn windows_include_events_at_the_window_edge_and_termination_needs_more_than_t_end_idle() {
        use EventKind::*;
        let out = run(vec![ev(1, 100, Tweet), ev(1, 110, Retweet), ev(1, 140, Retweet), ev(1, 171, Retweet)]);
        let partials: Vec<_> = out
            .iter()
            .filter_map(|(t, o)| match o {
                TrackerOutput::Partial(p) => Some((*t, p.t_obs, p.events.len())),
                _ => None,
            })
            .collect();
        assert_eq!(partials, vec![(110, 10, 2), (120, 20, 2)]);
        // Idle from 140 for exactly 30 s is not termination; 171 arrives after 31 s idle.
        let finals: Vec<_> = out
            .iter()
            .filter_map(|(t, o)| if let TrackerOutput::Final(f) = o { Some((*t, f.n_tot, f.t_end)) } else { None })
            .collect();
        assert_eq!(finals, vec![(170, 3, 40)]);
        assert!(matches!(
            out.last(),
            Some((171, TrackerOutput::Rejected(Rejection { reason: RejectReason::TerminatedCascade, .. })))
        ));
    }

    #[test]
    fn unknown_and_duplicate_events_are_rejected_without_touching_other_cascades() {
        use EventKind::*;
        let out = run(vec![ev(1, 0, Tweet), ev(2, 1, Retweet), ev(1, 2, Tweet), ev(1, 3, Retweet)]);
        let reasons: Vec<_> =
            out.iter().filter_map(|(_, o)| if let TrackerOutput::Rejected(r) = o { Some(r.reason) } else { None }).collect();
        assert_eq!(reasons, vec![RejectReason::UnknownCascade, RejectReason::DuplicateTweet]);
        let final_size = out.iter().find_map(|(_, o)| if let TrackerOutput::Final(f) = o { Some(f.n_tot) } else { None });
        assert_eq!(final_size, Some(2));
    }

    #[test]
    fn a_snapshot_split_over_two_shards_and_restored_continues_identically() {
        use EventKind::*;
        let events =
            [ev(1, 0, Tweet), ev(2, 1, Tweet), ev(1, 5, Retweet), ev(3, 6, Tweet), ev(2, 12, Retweet), ev(1, 15, Retweet)];
        let (before, after) = events.split_at(4);
        let mut whole = CascadeTracker::new(settings());
        let mut out = Vec::new();
        for e in before.iter().cloned() {
            whole.fire_before(e.time, &mut out);
            whole.on_event(e, &mut out);
        }
        whole.fire_before(10, &mut out);
        let snapshot = whole.snapshot();
        // Two shards (even and odd ids), restored from the same snapshot.
        let mut shards: Vec<CascadeTracker> = (0..2u64)
            .map(|s| {
                let mut t = CascadeTracker::new(settings());
                t.restore(snapshot.clone(), |c| c % 2 == s);
                t
            })
            .collect();
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        for e in after.iter().cloned() {
            whole.fire_before(e.time, &mut expected);
            whole.on_event(e.clone(), &mut expected);
            let shard = &mut shards[(e.cascade % 2) as usize];
            shard.fire_before(e.time, &mut got);
            shard.on_event(e, &mut got);
        }
        whole.fire_before(Time::MAX, &mut expected);
        for s in &mut shards {
            s.fire_before(Time::MAX, &mut got);
        }
        let key = |o: &(Time, TrackerOutput)| format!("{o:?}");
        let (mut expected, mut got): (Vec<_>, Vec<_>) = (expected.iter().map(key).collect(), got.iter().map(key).collect());
        expected.sort();
        got.sort();
        assert_eq!(expected, got);
        assert!(expected.len() > 4, "the continuation did something: {expected:?}");
    }

    #[test]
    fn small_windows_are_reported_not_emitted_and_state_is_evicted() {
        use EventKind::*;
        let mut t = CascadeTracker::new(settings());
        let mut out = Vec::new();
        t.on_event(ev(7, 0, Tweet), &mut out);
        t.fire_before(1000, &mut out);
        assert!(out.iter().all(|(_, o)| !matches!(o, TrackerOutput::Partial(_))));
        assert_eq!(out.iter().filter(|(_, o)| matches!(o, TrackerOutput::TooSmall { .. })).count(), 2);
        assert_eq!(t.open_cascades(), 0);
        assert_eq!(t.tombstones(), 0, "tombstone expired at 30 + 100");
        assert_eq!(t.next_deadline(), None);
    }
}
