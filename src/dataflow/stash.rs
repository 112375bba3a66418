//! [`TimeStash`]: records waiting until event time has passed their time.
//!
//! Every stage of the pipeline acts on a time only once its input frontier has passed it
//! (then all of that time's records are in, and processing in time order is what makes the
//! outputs independent of workers and scheduling). This is the one place that idiom lives:
//! messages go in by time, with a capability when the operator will emit at that time, and
//! come out earliest first once the caller says the time is complete.

use std::collections::BTreeMap;

use timely::communication::Pull;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

use crate::Time;

/// The records of one time, and the capability to emit at that time (when held).
#[derive(Debug)]
pub struct Pending<D> {
    /// Held when the stash was asked to ([`Hold::Capability`]): outputs at this time use it.
    pub capability: Option<Capability<Time>>,
    /// The records, in arrival order (callers sort them: arrival order is not deterministic).
    pub records: Vec<D>,
}

/// Whether [`TimeStash::absorb`] keeps a capability per pending time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The operator emits at the records' time: keep a capability for it.
    Capability,
    /// The operator emits nothing at that time (a sink, or an input whose results go out at
    /// another input's times).
    Nothing,
}

/// Records by event time, released earliest first once complete.
#[derive(Debug)]
pub struct TimeStash<D> {
    /// Pending times, with their records and (maybe) a capability.
    pending: BTreeMap<Time, Pending<D>>,
}

impl<D> Default for TimeStash<D> {
    fn default() -> Self {
        Self { pending: BTreeMap::new() }
    }
}

impl<D> TimeStash<D> {
    /// An empty stash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves every message of `input` into the stash at its time (the least time of its
    /// stamp), retaining a capability for that time when `hold` says so.
    pub fn absorb<P: Pull<Message<Time, Vec<D>>>>(&mut self, input: &mut InputHandleCore<Time, Vec<D>, P>, hold: Hold) {
        input.for_each_stamp(|cap, data| {
            let time = *cap.least().expect("a message has a time");
            let pending = self.pending.entry(time).or_insert_with(|| Pending { capability: None, records: Vec::new() });
            if hold == Hold::Capability && pending.capability.is_none() {
                pending.capability = cap.retain_least(0);
            }
            for d in data {
                pending.records.append(d);
            }
        });
    }

    /// Adds one record at `time` (without a capability).
    pub fn insert(&mut self, time: Time, record: D) {
        self.pending.entry(time).or_insert_with(|| Pending { capability: None, records: Vec::new() }).records.push(record);
    }

    /// The earliest pending time.
    pub fn first_time(&self) -> Option<Time> {
        self.pending.first_key_value().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest pending time if `ready(time)` says it is complete.
    pub fn pop_if(&mut self, ready: impl FnOnce(Time) -> bool) -> Option<(Time, Pending<D>)> {
        let time = self.first_time().filter(|t| ready(*t))?;
        self.pending.remove_entry(&time)
    }

    /// Removes and returns the records of `time`, if any.
    pub fn take(&mut self, time: Time) -> Option<Pending<D>> {
        self.pending.remove(&time)
    }

    /// Every pending record with its time, earliest first (for checkpoint parts).
    pub fn iter(&self) -> impl Iterator<Item = (Time, &D)> {
        self.pending.iter().flat_map(|(t, p)| p.records.iter().map(move |d| (*t, d)))
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops everything pending (and the capabilities held for it).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Whether `frontier` has passed `time`: no record at `time` can arrive any more.
pub fn passed(frontier: &MutableAntichain<Time>, time: Time) -> bool {
    !frontier.less_equal(&time)
}

/// The earliest time of either frontier (`None` when both are empty: event time has ended),
/// before which every time is complete on both inputs.
pub fn complete_before(a: &MutableAntichain<Time>, b: &MutableAntichain<Time>) -> Option<Time> {
    match (a.frontier().first(), b.frontier().first()) {
        (Some(x), Some(y)) => Some(*x.min(y)),
        (x, y) => x.or(y).copied(),
    }
}

/// Both frontiers still hold finite times (event time has not ended): checkpoints are taken
/// only then, since state "at F" means nothing once a bounded input has run to its end.
pub fn both_finite(a: &MutableAntichain<Time>, b: &MutableAntichain<Time>) -> bool {
    !a.frontier().is_empty() && !b.frontier().is_empty()
}

/// Both frontiers' earliest times, when both are finite (for checkpoint boundaries).
pub fn both_first(a: &MutableAntichain<Time>, b: &MutableAntichain<Time>) -> Option<Time> {
    Some(*a.frontier().first()?.min(b.frontier().first()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_times_in_order_only_when_ready() {
        let mut s: TimeStash<&str> = TimeStash::new();
        s.insert(20, "b");
        s.insert(10, "a");
        s.insert(20, "c");
        assert_eq!(s.first_time(), Some(10));
        assert!(s.pop_if(|t| t < 10).is_none(), "10 is not complete yet");
        let (t, p) = s.pop_if(|t| t < 15).unwrap();
        assert_eq!((t, p.records), (10, vec!["a"]));
        assert!(s.pop_if(|t| t < 15).is_none());
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(20, &"b"), (20, &"c")]);
        let (t, p) = s.pop_if(|_| true).unwrap();
        assert_eq!((t, p.records, p.capability.is_none()), (20, vec!["b", "c"], true));
        assert!(s.is_empty());
    }
}
