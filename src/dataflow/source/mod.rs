//! The sources: the replay of a recorded dataset (here) and the Kafka source ([`kafka`]),
//! and what a source hands to its worker's window stage at each checkpoint boundary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

pub mod kafka;

use serde::{Deserialize, Serialize};

use super::Builder;
use crate::records::TweetEvent;
use crate::Time;

/// The source's state at a cut: per partition, the next offset to read and the newest
/// event time seen (the per-partition lateness rule needs it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourcePart {
    /// partition → (next offset, newest event time seen).
    pub partitions: BTreeMap<i32, (i64, Option<Time>)>,
}

/// The source's states at the boundaries it crossed, handed to the window stage of the same
/// worker (same thread), which writes them in its part: the source passes F (and records
/// its offsets) before the window stage's frontier can.
#[derive(Debug, Default)]
pub struct SourceCuts {
    /// Offsets at each boundary crossed and not yet written.
    pub at: BTreeMap<Time, SourcePart>,
    /// The source's state at every later boundary once it has stopped reading (a finished
    /// backtest partition set, or a worker without partitions).
    pub finished: Option<SourcePart>,
}

impl SourceCuts {
    /// The source's state at boundary `f`, forgetting earlier ones; `None` when the source
    /// did not stop at `f` (the checkpoint at `f` is then skipped by this worker).
    pub fn take(&mut self, f: Time) -> Option<SourcePart> {
        self.at = self.at.split_off(&f);
        self.at.remove(&f).or_else(|| self.finished.clone())
    }
}

/// Shared by the source and the window stage of one worker.
pub type SharedSourceCuts = std::rc::Rc<std::cell::RefCell<SourceCuts>>;

/// How many events one activation emits at most, so that a source never starves the other
/// operators of its worker (timely schedules cooperatively).
const BATCH: usize = 8192;

/// Replay pacing: `None` replays as fast as possible; `Some(f)` replays at `f` × real time
/// (event-time seconds per wall-clock second), for watching a live page.
pub type Pace = Option<f64>;

/// A source that replays `events` (sorted by time), holding one capability at the time of
/// the next event, and releases it at the end (or on shutdown).
pub fn replay<'s>(
    scope: Scope<'s, Time>,
    events: impl IntoIterator<Item = TweetEvent, IntoIter: 'static>,
    pace: Pace,
    progress: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
) -> StreamVec<'s, Time, TweetEvent> {
    source::<_, Builder<TweetEvent>, _, _>(scope, "ReplaySource", move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut events = events.into_iter().peekable();
        let first_time = events.peek().map(|e| e.time).unwrap_or(0);
        let mut cap = events.peek().is_some().then_some(capability);
        let started = Instant::now();
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            if shutdown.load(Ordering::Relaxed) {
                cap = None;
                return;
            }
            // With pacing, only event times up to first + elapsed × pace are due.
            let due = pace.map(|f| first_time + (started.elapsed().as_secs_f64() * f) as Time);
            // One message per activation, stamped with the batch's earliest time: records carry
            // their own event time (≥ the stamp), and downstream stages order by it. Stamping
            // each second separately would multiply progress-tracking traffic for nothing.
            let mut sent = 0;
            if let Some(first) = events.peek().map(|e| e.time).filter(|t| due.is_none_or(|d| *t <= d)) {
                c.downgrade(&first);
                let mut session = output.session(c);
                while let Some(e) = events.next_if(|e| due.is_none_or(|d| e.time <= d)) {
                    session.give(e);
                    sent += 1;
                    if sent == BATCH {
                        break;
                    }
                }
            }
            progress.fetch_add(sent as u64, Ordering::Relaxed);
            crate::telemetry::newest_event(*c.time());
            match events.peek() {
                None => cap = None,
                Some(next) => {
                    // Nothing before the next event can come any more: let time advance.
                    c.downgrade(&next.time);
                    if pace.is_some() && sent == 0 {
                        activator.activate_after(Duration::from_millis(20));
                    } else {
                        activator.activate();
                    }
                }
            }
        }
    })
}
