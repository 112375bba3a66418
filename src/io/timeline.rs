//! Puts recorded cascades on one event-time axis, as the course generator did.
//!
//! Each cascade starts at its recorded post time when the layout has one (SEISMIC), else at
//! a seeded pseudo-random offset in `[0, random_start_range)`. The offset depends only on
//! (seed, cascade id), never on the number of workers, so every worker and process computes
//! the same timeline; each source worker then replays its own share of the cascades.

use std::sync::Arc;

use crate::io::files::{Dataset, RecordedCascade};
use crate::records::{EventKind, TweetEvent};
use crate::{mix64, Time};

/// Where a cascade starts on the global timeline.
pub fn start_time(cascade: &RecordedCascade, random_start_range: Time, seed: u64) -> Time {
    match cascade.post_time {
        Some(t) => t,
        None if random_start_range == 0 => 0,
        None => mix64(seed ^ mix64(cascade.id)) % random_start_range,
    }
}

/// Event `i` of `cascade`, at `time` on the global timeline (the original tweet is event 0).
fn event(cascade: &RecordedCascade, time: Time, i: usize) -> TweetEvent {
    TweetEvent {
        cascade: cascade.id,
        time,
        seq: i as u64,
        magnitude: cascade.events[i].1,
        kind: if i == 0 { EventKind::Tweet } else { EventKind::Retweet },
        msg: String::new(),
    }
}

/// One event of a worker's share, by reference into the dataset: 24 bytes where a
/// [`TweetEvent`] is 64. A NEWS-sized replay built and sorted 3.2 M events before the first
/// one left; as `TweetEvent`s that was 205 MB of fresh pages (a tenth of the worker's samples
/// in perf were the kernel zeroing them), and the sort moved 64-byte elements.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Time on the global timeline.
    time: Time,
    /// The cascade's id (the order's second key).
    cascade: u64,
    /// The event's position in its cascade (the third key).
    seq: u32,
    /// The cascade's position in the dataset.
    index: u32,
}

impl Slot {
    /// The event this slot stands for.
    fn event(&self, dataset: &Dataset) -> TweetEvent {
        event(&dataset.cascades[self.index as usize], self.time, self.seq as usize)
    }
}

/// The share of source worker `index` of `peers` (see [`worker_timeline`]), as slots in
/// (time, cascade, seq) order.
fn worker_slots(dataset: &Dataset, random_start_range: Time, seed: u64, index: usize, peers: usize) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(worker_share(dataset, index, peers));
    for (k, c) in dataset.cascades.iter().enumerate().filter(|(_, c)| replays(c, index, peers)) {
        let start = start_time(c, random_start_range, seed);
        slots.extend(c.events.iter().enumerate().map(|(i, &(t, _))| Slot {
            time: start + t,
            cascade: c.id,
            seq: i as u32,
            index: k as u32,
        }));
    }
    // The key is unique (seq numbers a cascade's events), so an unstable sort gives the same
    // order as a stable one, faster (this sort was an eighth of a NEWS-sized replay). The
    // dataset position only breaks ties between cascades that share an id.
    slots.sort_unstable_by_key(|s| (s.time, s.cascade, s.seq, s.index));
    slots
}

/// The share of source worker `index` of `peers`: the cascades that worker owns in the
/// window stage (same hash as its exchange), merged in (time, cascade, seq) order. Replayed
/// events then stay on their worker: with `-n 2`, sharding by id instead sent half of them
/// through the network between processes.
pub fn worker_timeline(dataset: &Dataset, random_start_range: Time, seed: u64, index: usize, peers: usize) -> Vec<TweetEvent> {
    let slots = worker_slots(dataset, random_start_range, seed, index, peers);
    slots.iter().map(|s| s.event(dataset)).collect()
}

/// [`worker_timeline`] as an iterator that makes each event when it is replayed: the replay
/// source's input, so that a worker holds 24 bytes per event it has still to send.
pub struct Timeline {
    /// The dataset the slots point into.
    dataset: Arc<Dataset>,
    /// The events still to replay, in order.
    slots: std::vec::IntoIter<Slot>,
}

impl Timeline {
    /// The share of source worker `index` of `peers`.
    pub fn new(dataset: Arc<Dataset>, random_start_range: Time, seed: u64, index: usize, peers: usize) -> Self {
        let slots = worker_slots(&dataset, random_start_range, seed, index, peers).into_iter();
        Self { dataset, slots }
    }
}

impl Iterator for Timeline {
    type Item = TweetEvent;

    fn next(&mut self) -> Option<TweetEvent> {
        self.slots.next().map(|s| s.event(&self.dataset))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

/// Whether source worker `index` of `peers` replays `cascade`: the worker that owns it.
fn replays(cascade: &RecordedCascade, index: usize, peers: usize) -> bool {
    crate::owns(crate::shard_of(cascade.id), index, peers)
}

/// Number of events worker `index` of `peers` replays.
pub fn worker_share(dataset: &Dataset, index: usize, peers: usize) -> usize {
    dataset.cascades.iter().filter(|c| replays(c, index, peers)).map(|c| c.events.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Dataset {
        let c = |id, post_time, events: Vec<(Time, f64)>| RecordedCascade { id, post_time, events };
        Dataset {
            cascades: vec![
                c(1, Some(100), vec![(0, 1.0), (5, 2.0)]),
                c(2, None, vec![(0, 3.0), (1, 4.0)]),
                c(3, Some(0), vec![(0, 5.0)]),
            ],
        }
    }

    #[test]
    fn shares_partition_the_events_and_are_time_ordered() {
        let ds = dataset();
        let all: usize = (0..2).map(|i| worker_timeline(&ds, 600, 1, i, 2).len()).sum();
        assert_eq!(all, 5);
        for i in 0..2 {
            let tl = worker_timeline(&ds, 600, 1, i, 2);
            assert!(tl.windows(2).all(|w| w[0].time <= w[1].time));
            assert_eq!(tl.len(), worker_share(&ds, i, 2));
        }
    }

    #[test]
    fn the_replay_iterator_yields_the_worker_timeline() {
        let ds = Arc::new(dataset());
        for i in 0..2 {
            let tl: Vec<TweetEvent> = Timeline::new(ds.clone(), 600, 1, i, 2).collect();
            assert_eq!(tl, worker_timeline(&ds, 600, 1, i, 2));
        }
        let all: Vec<TweetEvent> = Timeline::new(ds.clone(), 600, 1, 0, 1).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all.iter().filter(|e| e.kind == EventKind::Tweet).count(), 3);
        assert!(all.iter().all(|e| (e.seq == 0) == (e.kind == EventKind::Tweet)));
    }

    #[test]
    fn random_starts_are_seeded_and_in_range() {
        let ds = dataset();
        let a = start_time(&ds.cascades[1], 600, 1);
        assert_eq!(a, start_time(&ds.cascades[1], 600, 1));
        assert!(a < 600);
        assert_eq!(start_time(&ds.cascades[0], 600, 1), 100);
    }
}
