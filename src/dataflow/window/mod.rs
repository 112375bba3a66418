//! The `window` and `terminate` stages: one operator around [`CascadeTracker`] (the I/O-free
//! core, in [`tracker`]), exchanged by cascade id, holding one capability at its earliest
//! pending time.
//!
//! Checkpoints: at each boundary F the part is the tracker (everything before F) plus the
//! stashed events that were stamped before F but are timed at or after F — the source's
//! offsets at F already count them as read, so they are state, not input to replay.

pub mod tracker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::communication::Pull;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::{InputHandleCore, OutputBuilderSession};
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use self::tracker::{CascadeTracker, TrackerOutput, TrackerSettings, TrackerSnapshot};
use super::source::{SharedSourceCuts, SourcePart};
use super::stash::{passed, TimeStash};
use super::{Builder, Checkpoint};
use crate::checkpoint::{StageCheckpoints, StagePart};
use crate::records::TweetEvent;
use crate::{owns, shard_of, Time};

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

impl StagePart for WindowPart {
    const STAGE: &'static str = "window";
}

/// The last second of `t`'s granule of `granularity` seconds: never earlier than `t` (so the
/// capability that holds `t` can emit it), and before a boundary F that granules divide iff
/// `t` is (so checkpoint cuts at F mean the same in seconds and in granules).
fn granule(t: Time, granularity: Time) -> Time {
    (t - t % granularity).saturating_add(granularity - 1)
}

/// The window stage of one worker: the tracker, the events waiting for their time, and the
/// one capability at the earliest pending time.
struct WindowStage {
    /// Open cascades, timers and tombstones (the I/O-free core).
    tracker: CascadeTracker,
    /// Events by their own event time, with the stamp of the message that brought them.
    stash: TimeStash<(Time, TweetEvent)>,
    /// The one capability, at the earliest time an output may still be emitted.
    held: Option<Capability<Time>>,
    /// Outputs of this activation, with their event times.
    out: Vec<(Time, TrackerOutput)>,
    /// This stage's checkpoint parts, when checkpointing.
    checkpoints: Option<StageCheckpoints<WindowPart>>,
    /// The source's offsets at each boundary, written with this stage's part.
    cuts: SharedSourceCuts,
    /// Seconds per output timestamp (`pipeline.granularity`).
    granularity: Time,
    /// Set when a live run is being stopped: open cascades are then abandoned.
    shutdown: Arc<AtomicBool>,
    /// This worker (the open-cascades gauge is per worker).
    worker: usize,
}

impl WindowStage {
    /// Restores the cascades and in-flight events this worker owns from every part, and
    /// keeps the initial capability so the restored state can emit at its own times.
    fn restore(&mut self, parts: &[WindowPart], at: Time, cap: Capability<Time>, peers: usize) {
        let worker = self.worker;
        let mine = move |c| owns(shard_of(c), worker, peers);
        for part in parts {
            self.tracker.restore(part.tracker.clone(), mine);
            for e in part.in_flight.iter().filter(|e| mine(e.cascade)) {
                self.stash.insert(e.time, (at, e.clone()));
            }
        }
        self.held = Some(cap);
    }

    /// Stashes each event at its own time (a message's stamp is a lower bound of its
    /// records' times: sources batch several seconds in one message), and holds a capability
    /// at the earliest stamp seen.
    fn absorb<P: Pull<Message<Time, Vec<TweetEvent>>>>(&mut self, input: &mut InputHandleCore<Time, Vec<TweetEvent>, P>) {
        input.for_each_stamp(|cap, data| {
            let time = *cap.least().expect("a message has a time");
            if self.held.as_ref().is_none_or(|h| time < *h.time()) {
                self.held = cap.retain_least(0);
            }
            for e in data.flat_map(|d| d.drain(..)) {
                debug_assert!(e.time >= time, "a record is never earlier than its message");
                self.stash.insert(e.time.max(time), (time, e));
            }
        });
    }

    /// The part at boundary F, after firing the deadlines before F; `None` when the source
    /// did not stop at F (this worker then skips it).
    fn part_at(&mut self, f: Time) -> Option<WindowPart> {
        self.tracker.fire_before(f, &mut self.out);
        let Some(source) = self.cuts.borrow_mut().take(f) else {
            tracing::debug!(time = f, "the source did not stop at this boundary; no checkpoint part");
            return None;
        };
        let in_flight =
            self.stash.iter().filter(|(time, (stamp, _))| *stamp < f && *time >= f).map(|(_, (_, e))| e.clone()).collect();
        Some(WindowPart { tracker: self.tracker.snapshot(), in_flight, source })
    }

    /// Writes the parts of the boundaries up to `upto` (all times before it are done).
    fn checkpoint_upto(&mut self, upto: Time) {
        if let Some(mut c) = self.checkpoints.take() {
            c.upto(upto, |f| self.part_at(f));
            self.checkpoints = Some(c);
        }
    }

    /// Feeds every complete time's events to the tracker, in (cascade, seq) order.
    fn process_complete_times(&mut self, frontier: &MutableAntichain<Time>) {
        // Checkpoints only while event time is finite: once the input has ended the run is
        // finishing, and state "at F" would mean nothing to the other stages.
        let finite = !frontier.frontier().is_empty();
        while let Some(time) = self.stash.first_time().filter(|t| passed(frontier, *t)) {
            if finite {
                self.checkpoint_upto(time);
            }
            let pending = self.stash.take(time).expect("just seen");
            let mut batch: Vec<TweetEvent> = pending.records.into_iter().map(|(_, e)| e).collect();
            batch.sort_by_key(|e| (e.cascade, e.seq));
            self.tracker.fire_before(time, &mut self.out);
            for event in batch {
                self.tracker.on_event(event, &mut self.out);
            }
        }
    }

    /// Fires what is due before the frontier. When the input has ended, event time has in
    /// effect gone to infinity: every open cascade fires and terminates, unless the run is
    /// being stopped, which abandons them instead.
    fn fire_deadlines(&mut self, frontier: &MutableAntichain<Time>) {
        match frontier.frontier().first().copied() {
            Some(complete_before) => {
                self.checkpoint_upto(complete_before);
                self.tracker.fire_before(complete_before, &mut self.out)
            }
            None if self.shutdown.load(Ordering::Relaxed) => {
                if self.tracker.open_cascades() > 0 {
                    tracing::info!(open = self.tracker.open_cascades(), "shutdown: open cascades abandoned");
                }
                self.tracker = CascadeTracker::new(self.tracker.settings().clone());
            }
            None => self.tracker.fire_before(Time::MAX, &mut self.out),
        }
    }

    /// Emits this activation's outputs, one session per granule.
    fn emit(&mut self, output: &mut OutputBuilderSession<'_, Time, Builder<TrackerOutput>>) {
        if self.out.is_empty() {
            return;
        }
        let cap = self.held.as_ref().expect("outputs are never earlier than the held capability");
        self.out.sort_by_key(|(t, _)| *t); // stable: keeps the tracker's order within a time
        let mut rest = self.out.drain(..).peekable();
        while let Some(&(time, _)) = rest.peek() {
            let stamp = granule(time, self.granularity);
            let at = cap.delayed(&stamp);
            let mut session = output.session(&at);
            while let Some((_, o)) = rest.next_if(|(t, _)| granule(*t, self.granularity) == stamp) {
                session.give(o);
            }
        }
    }

    /// Moves the capability to the next pending time (an event or a deadline), or drops it.
    fn hold_next(&mut self) {
        let next = match (self.stash.first_time(), self.tracker.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(t) => self.held.as_mut().expect("pending work holds a capability").downgrade(&granule(t, self.granularity)),
            None => self.held = None,
        }
    }
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
    checkpoint: Option<(Checkpoint, SharedSourceCuts)>,
) -> StreamVec<'s, Time, TrackerOutput> {
    let pact = Exchange::new(|e: &TweetEvent| shard_of(e.cascade));
    let (worker, peers) = (events.scope().index(), events.scope().peers());
    events.unary_frontier::<Builder<TrackerOutput>, _, _, _>(pact, "WindowTerminate", move |cap, _info| {
        let (checkpoint, cuts) = checkpoint.map_or((None, SharedSourceCuts::default()), |(c, cuts)| (Some(c), cuts));
        let mut stage = WindowStage {
            tracker: CascadeTracker::new(settings),
            stash: TimeStash::new(),
            held: None,
            out: Vec::new(),
            checkpoints: checkpoint.as_ref().map(|c| StageCheckpoints::new(c.checkpointing.clone(), worker, peers)),
            cuts,
            granularity: granularity.max(1),
            shutdown,
            worker,
        };
        if let Some(restored) = checkpoint.and_then(|c| c.restored) {
            stage.restore(&restored.window, restored.time, cap, peers);
        }
        move |(input, frontier), output| {
            stage.absorb(input);
            stage.process_complete_times(frontier);
            stage.fire_deadlines(frontier);
            stage.emit(output);
            crate::telemetry::open_cascades(stage.worker, stage.tracker.open_cascades());
            stage.hold_next();
        }
    })
}
