//! Puts recorded cascades on one event-time axis, as the course generator did.
//!
//! Each cascade starts at its recorded post time when the layout has one (SEISMIC), else at
//! a seeded pseudo-random offset in `[0, random_start_range)`. The offset depends only on
//! (seed, cascade id), never on the number of workers, so every worker and process computes
//! the same timeline; each source worker then replays its own share of the cascades.

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

/// The events of one cascade on the global timeline, original tweet first.
pub fn cascade_events(cascade: &RecordedCascade, start: Time) -> impl Iterator<Item = TweetEvent> + '_ {
    cascade.events.iter().enumerate().map(move |(i, &(t, m))| TweetEvent {
        cascade: cascade.id,
        time: start + t,
        seq: i as u64,
        magnitude: m,
        kind: if i == 0 { EventKind::Tweet } else { EventKind::Retweet },
        msg: String::new(),
    })
}

/// The share of source worker `index` of `peers`: the cascades that worker owns in the
/// window stage (same hash as its exchange), merged in (time, cascade, seq) order. Replayed
/// events then stay on their worker: with `-n 2`, sharding by id instead sent half of them
/// through the network between processes.
pub fn worker_timeline(dataset: &Dataset, random_start_range: Time, seed: u64, index: usize, peers: usize) -> Vec<TweetEvent> {
    let mut events: Vec<TweetEvent> = dataset
        .cascades
        .iter()
        .filter(|c| replays(c, index, peers))
        .flat_map(|c| cascade_events(c, start_time(c, random_start_range, seed)))
        .collect();
    // The key is unique (seq numbers a cascade's events), so an unstable sort gives the same
    // order as a stable one, faster (this sort was an eighth of a NEWS-sized replay).
    events.sort_unstable_by_key(|e| (e.time, e.cascade, e.seq));
    events
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
    fn random_starts_are_seeded_and_in_range() {
        let ds = dataset();
        let a = start_time(&ds.cascades[1], 600, 1);
        assert_eq!(a, start_time(&ds.cascades[1], 600, 1));
        assert!(a < 600);
        assert_eq!(start_time(&ds.cascades[0], 600, 1), 100);
    }
}
