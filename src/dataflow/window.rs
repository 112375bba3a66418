//! The `window` and `terminate` stages: one operator around [`CascadeTracker`], exchanged
//! by cascade id, holding one capability at its earliest pending time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::Builder;
use crate::cascade::{CascadeTracker, TrackerOutput, TrackerSettings};
use crate::messages::TweetEvent;
use crate::{shard_of, Time};

/// Routes events to the worker that owns their cascade, and tracks cascades there.
///
/// When the input ends, the frontier empties: event time has in effect gone to infinity, so
/// every open cascade fires its remaining windows and terminates with the size seen so far
/// (a bounded replay counts every cascade). If `shutdown` is set instead (a live run being
/// stopped), open cascades are abandoned rather than reported with sizes they never
/// reached; their count is logged.
pub fn window_terminate<'s>(
    events: StreamVec<'s, Time, TweetEvent>,
    settings: TrackerSettings,
    shutdown: Arc<AtomicBool>,
) -> StreamVec<'s, Time, TrackerOutput> {
    let pact = Exchange::new(|e: &TweetEvent| shard_of(e.cascade));
    let worker = events.scope().index();
    events.unary_frontier::<Builder<TrackerOutput>, _, _, _>(pact, "WindowTerminate", move |_cap, _info| {
        let mut tracker = CascadeTracker::new(settings);
        // Events wait here until their time is complete, then are fed in (cascade, seq) order.
        let mut stash: BTreeMap<Time, Vec<TweetEvent>> = BTreeMap::new();
        let mut held: Option<Capability<Time>> = None;
        let mut out: Vec<(Time, TrackerOutput)> = Vec::new();
        move |(input, frontier), output| {
            // A message's stamp is a lower bound of its records' event times (sources batch
            // several seconds in one message); records are stashed at their own time, which is
            // complete once the frontier has passed it.
            input.for_each_stamp(|cap, data| {
                let time = *cap.least().expect("a message has a time");
                if held.as_ref().is_none_or(|h| time < *h.time()) {
                    held = cap.retain_least(0);
                }
                for e in data.flat_map(|d| d.drain(..)) {
                    debug_assert!(e.time >= time, "a record is never earlier than its message");
                    stash.entry(e.time.max(time)).or_default().push(e);
                }
            });
            while let Some(entry) = stash.first_entry() {
                let time = *entry.key();
                if frontier.less_equal(&time) {
                    break;
                }
                let mut batch = entry.remove();
                batch.sort_by_key(|e| (e.cascade, e.seq));
                tracker.fire_before(time, &mut out);
                for event in batch {
                    tracker.on_event(event, &mut out);
                }
            }
            // Every time before the frontier is complete: fire what is due before it.
            match frontier.frontier().first().copied() {
                Some(complete_before) => tracker.fire_before(complete_before, &mut out),
                None if shutdown.load(Ordering::Relaxed) => {
                    if tracker.open_cascades() > 0 {
                        tracing::info!(open = tracker.open_cascades(), "shutdown: open cascades abandoned");
                    }
                    tracker = CascadeTracker::new(tracker.settings().clone());
                }
                None => tracker.fire_before(Time::MAX, &mut out),
            }

            if !out.is_empty() {
                let cap = held.as_ref().expect("outputs are never earlier than the held capability");
                out.sort_by_key(|(t, _)| *t); // stable: keeps the tracker's order within a time
                let mut rest = out.drain(..).peekable();
                while let Some(&(time, _)) = rest.peek() {
                    let at = cap.delayed(&time);
                    let mut session = output.session(&at);
                    while let Some((_, o)) = rest.next_if(|(t, _)| *t == time) {
                        session.give(o);
                    }
                }
            }
            crate::telemetry::open_cascades(worker, tracker.open_cascades());
            let next = match (stash.first_key_value().map(|(t, _)| *t), tracker.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(t) => held.as_mut().expect("pending work holds a capability").downgrade(&t),
                None => held = None,
            }
        }
    })
}
