//! The `window` and `terminate` stages: one operator around [`CascadeTracker`], exchanged
//! by cascade id, holding one capability at its earliest pending time.
//!
//! Checkpoints: at each boundary F the part is the tracker (everything before F) plus the
//! stashed events that were stamped before F but are timed at or after F — the source's
//! offsets at F already count them as read, so they are state, not input to replay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

pub mod tracker;

use super::Builder;
use crate::dataflow::window::tracker::{CascadeTracker, TrackerOutput, TrackerSettings, TrackerSnapshot};
use crate::checkpoint::{owns, Checkpointing, PartKind, SharedSourceCuts, SourcePart, StageCheckpoints};
use crate::records::TweetEvent;
use crate::{shard_of, Time};

/// The window stage's part of a checkpoint at F.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowPart {
    /// Open cascades, timers and tombstones: every event before F.
    pub tracker: TrackerSnapshot,
    /// Events stamped before F but timed at or after F (read before the cut, not yet due).
    pub in_flight: Vec<TweetEvent>,
    /// This worker's source offsets at F.
    pub source: SourcePart,
}

/// Events waiting for their time to complete, by event time, with the stamp of the message
/// that brought them.
type Stash = BTreeMap<Time, Vec<(Time, TweetEvent)>>;

/// The part at boundary F, after firing the deadlines before F; `None` when the source did
/// not stop at F (this worker then skips it).
fn part_at(f: Time, tracker: &mut CascadeTracker, stash: &Stash, cuts: &SharedSourceCuts, out: &mut Vec<(Time, TrackerOutput)>) -> Option<WindowPart> {
    tracker.fire_before(f, out);
    let Some(source) = cuts.borrow_mut().take(f) else {
        tracing::debug!(time = f, "the source did not stop at this boundary; no checkpoint part");
        return None;
    };
    let in_flight = stash.values().flatten().filter(|(stamp, e)| *stamp < f && e.time >= f).map(|(_, e)| e.clone()).collect();
    Some(WindowPart { tracker: tracker.snapshot(), in_flight, source })
}

/// Routes events to the worker that owns their cascade, and tracks cascades there.
///
/// Events are processed per second of event time, but outputs are stamped with the last
/// second of their `granularity`-second granule (see `pipeline.granularity`): one timestamp
/// per granule instead of one per second is what keeps progress tracking cheap downstream.
///
/// When the input ends, the frontier empties: event time has in effect gone to infinity, so
/// every open cascade fires its remaining windows and terminates with the size seen so far
/// (a bounded replay counts every cascade). If `shutdown` is set instead (a live run being
/// stopped), open cascades are abandoned rather than reported with sizes they never
/// reached; their count is logged.
pub fn window_terminate<'s>(
    events: StreamVec<'s, Time, TweetEvent>,
    settings: TrackerSettings,
    granularity: Time,
    shutdown: Arc<AtomicBool>,
    checkpoint: Option<(Checkpointing, SharedSourceCuts)>,
) -> StreamVec<'s, Time, TrackerOutput> {
    let pact = Exchange::new(|e: &TweetEvent| shard_of(e.cascade));
    let granularity = granularity.max(1);
    // The last second of t's granule: never earlier than t (so the capability that holds t
    // can emit it), and before a boundary F that granules divide iff t is (so checkpoint
    // cuts at F mean the same in seconds and in granules).
    let granule = move |t: Time| (t - t % granularity).saturating_add(granularity - 1);
    let (worker, peers) = (events.scope().index(), events.scope().peers());
    events.unary_frontier::<Builder<TrackerOutput>, _, _, _>(pact, "WindowTerminate", move |cap, _info| {
        let mut tracker = CascadeTracker::new(settings);
        // Events wait here until their time is complete, then are fed in (cascade, seq) order.
        let mut stash: Stash = BTreeMap::new();
        let mut held: Option<Capability<Time>> = None;
        let mut out: Vec<(Time, TrackerOutput)> = Vec::new();
        let (mut stage, cuts) = match checkpoint {
            Some((c, cuts)) => (Some(StageCheckpoints::new(c, PartKind::Window, worker, peers)), cuts),
            None => (None, SharedSourceCuts::default()),
        };
        if let Some(restored) = stage.as_ref().and_then(StageCheckpoints::restored) {
            let mine = |c| owns(shard_of(c), worker, peers);
            for part in &restored.window {
                tracker.restore(part.tracker.clone(), mine);
                for e in part.in_flight.iter().filter(|e| mine(e.cascade)) {
                    stash.entry(e.time).or_default().push((restored.time, e.clone()));
                }
            }
            // The initial capability (time 0) lets the restored state emit at its own times.
            held = Some(cap);
        }
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
                    stash.entry(e.time.max(time)).or_default().push((time, e));
                }
            });
            // Checkpoints only while event time is finite: once the input has ended the run
            // is finishing, and state "at F" would mean nothing to the other stages.
            let finite = !frontier.frontier().is_empty();
            while let Some(time) = stash.first_key_value().map(|(t, _)| *t) {
                if frontier.less_equal(&time) {
                    break;
                }
                if let Some(s) = stage.as_mut().filter(|_| finite) {
                    s.upto(time, |f| part_at(f, &mut tracker, &stash, &cuts, &mut out));
                }
                let mut batch: Vec<TweetEvent> =
                    stash.remove(&time).expect("just seen").into_iter().map(|(_, e)| e).collect();
                batch.sort_by_key(|e| (e.cascade, e.seq));
                tracker.fire_before(time, &mut out);
                for event in batch {
                    tracker.on_event(event, &mut out);
                }
            }
            // Every time before the frontier is complete: fire what is due before it.
            match frontier.frontier().first().copied() {
                Some(complete_before) => {
                    if let Some(s) = stage.as_mut() {
                        s.upto(complete_before, |f| part_at(f, &mut tracker, &stash, &cuts, &mut out));
                    }
                    tracker.fire_before(complete_before, &mut out)
                }
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
                    let stamp = granule(time);
                    let at = cap.delayed(&stamp);
                    let mut session = output.session(&at);
                    while let Some((_, o)) = rest.next_if(|(t, _)| granule(*t) == stamp) {
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
                Some(t) => held.as_mut().expect("pending work holds a capability").downgrade(&granule(t)),
                None => held = None,
            }
        }
    })
}
