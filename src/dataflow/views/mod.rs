//! The live views as dataflow outputs, on differential dataflow: every process's page shows
//! the same cluster-wide state.
//!
//! - **Cascades.** Each worker keeps the rows of the cascades it owns ([`CascadeBook`], fed
//!   by the predictions, the outcomes and the partial cascades' curves, exchanged by
//!   cascade): a revision at 1200 s replaces the 600 s row, termination turns it into the
//!   final size with its error. Its collection is the worker's own top, the [`TOP`] largest
//!   plus the [`LATEST_ALERTS`] latest alerted ([`select_top`]'s choice, kept current with
//!   ordered indexes), so a revision of a cascade that cannot be listed never reaches
//!   differential. The workers' tops are reduced once more ([`select_top`] over at most
//!   `workers × (TOP + LATEST_ALERTS)` rows, on one worker): the exact top of all cascades
//!   however they are sharded.
//! - **Health and accuracy.** Summary events become records whose multiplicity is the count
//!   (events in, rejections by reason, predictions, alerts by severity, ARE buckets and
//!   interval coverage per window and model), consolidated: a handful of keys.
//! - **Gathering.** Both are coarsened to [`VIEW_GRANULE`] seconds of event time (a reduce
//!   runs per key and changed time: per-granule is cheap, per-second was not), consolidated,
//!   and sent to the first worker of every process (`sink::serve_views`), which applies a
//!   time's updates once the frontier has passed it. Every process thus holds the same
//!   collection at the same completed times.
//!
//! The views are built only when the job asks for them (`Job::views`, agreed by every
//! process): `--metrics-addr off` on every process runs without them.

pub mod rows;

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Concatenate, Operator};
use timely::dataflow::StreamVec;

pub use self::rows::{
    are_bucket, curve_of, fixed, select_top, CascadeBook, CascadeRow, Fixed, Health, ModelName, ViewRecord, WindowRow,
    ARE_BUCKET, ARE_BUCKETS,
};
use super::stash::{passed, Hold, TimeStash};
use super::{Builder, LiveEvent};
use crate::records::{AlertThresholds, Outcome};
use crate::telemetry::SummaryEvent;
use crate::Time;

/// Event-time granule of the views (s): their updates are stamped with the end of it.
pub const VIEW_GRANULE: Time = 60;
/// Cascades listed by rank.
pub const TOP: usize = 100;
/// Cascades listed because they alerted most recently (beyond the top).
pub const LATEST_ALERTS: usize = 30;

/// One update of the views: a record, the (granule) time it changed at, and the change.
pub type ViewUpdate = (ViewRecord, Time, isize);

/// What the views need from the job.
#[derive(Debug, Clone, Copy)]
pub struct ViewSettings {
    /// The alert predicate's thresholds.
    pub thresholds: AlertThresholds,
    /// Whether this worker is the first of its process (it samples the process's counters).
    pub first_of_process: bool,
}

/// The views' consolidated updates, on the worker each record hashes to (to be gathered).
pub fn live_views<'s>(
    live: StreamVec<'s, Time, LiveEvent>,
    summary: StreamVec<'s, Time, SummaryEvent>,
    settings: ViewSettings,
) -> StreamVec<'s, Time, ViewUpdate> {
    let scope = live.scope();
    let rows = coarsen(cascade_rows(live, settings.thresholds).as_collection());
    let top = top_rows(rows.map(|r| ((), r)), "ViewTop").map(ViewRecord::Cascade);
    // Already summed per granule and stamped with its end.
    let counts = health_records(summary, settings.first_of_process).as_collection().consolidate();
    scope.concatenate(vec![top.inner, counts.inner])
}

/// Stamps updates with the end of their granule.
fn coarsen<'s, D: differential_dataflow::Data>(c: VecCollection<'s, Time, D, isize>) -> VecCollection<'s, Time, D, isize> {
    c.delay(|t| t.div_ceil(VIEW_GRANULE).saturating_mul(VIEW_GRANULE))
}

/// The top-N reduction over the workers' tops: per key, the rows [`select_top`] keeps.
fn top_rows<'s, K: differential_dataflow::ExchangeData + differential_dataflow::hashable::Hashable>(
    keyed: VecCollection<'s, Time, (K, CascadeRow), isize>,
    name: &str,
) -> VecCollection<'s, Time, CascadeRow, isize> {
    keyed
        .reduce_named(name, |_key, input, output: &mut Vec<(CascadeRow, isize)>| {
            let present = input.iter().filter(|(_, count)| *count > 0).map(|(row, _)| *row);
            output.extend(select_top(present, TOP, LATEST_ALERTS).into_iter().map(|r| (r.clone(), 1)));
        })
        .map(|(_, row)| row)
}

/// The cascade of a live event.
fn cascade_of(e: &LiveEvent) -> u64 {
    match e {
        LiveEvent::Prediction(p) => p.cascade,
        LiveEvent::Curve { cascade, .. } => *cascade,
        LiveEvent::Outcome(Outcome::Stat(s)) => s.cascade,
        LiveEvent::Outcome(_) => 0,
    }
}

/// The updates of this worker's top (its [`CascadeBook`]): each time is processed once complete,
/// in (cascade, kind, window) order, so the updates are the same however the events arrive.
fn cascade_rows<'s>(
    live: StreamVec<'s, Time, LiveEvent>,
    thresholds: AlertThresholds,
) -> StreamVec<'s, Time, (CascadeRow, Time, isize)> {
    let mut stash = TimeStash::new();
    let mut book = CascadeBook::new(thresholds, TOP, LATEST_ALERTS);
    let pact = Exchange::new(|e: &LiveEvent| crate::shard_of(cascade_of(e)));
    live.unary_frontier::<Builder<(CascadeRow, Time, isize)>, _, _, _>(pact, "ViewRows", move |_cap, _info| {
        move |(input, frontier), output| {
            stash.absorb(input, Hold::Capability);
            while let Some((time, pending)) = stash.pop_if(|t| passed(frontier, t)) {
                let Some(cap) = pending.capability else { continue };
                let mut events = pending.records;
                events.sort_by_key(|e| (cascade_of(e), order_of(e)));
                for e in &events {
                    match e {
                        LiveEvent::Curve { cascade, curve, .. } => book.curve(*cascade, curve),
                        LiveEvent::Prediction(p) => book.prediction(time, p),
                        LiveEvent::Outcome(Outcome::Stat(s)) => book.stat(s),
                        LiveEvent::Outcome(_) => {}
                    }
                }
                let mut out = Vec::new();
                book.flush(&mut out);
                output.session(&cap).give_iterator(out.into_iter().map(|(row, diff)| (row, time, diff)));
            }
        }
    })
}

/// Curves, then predictions by window, then outcomes by window: the order of a time's events.
fn order_of(e: &LiveEvent) -> (u8, Time) {
    match e {
        LiveEvent::Curve { t_obs, .. } => (0, *t_obs),
        LiveEvent::Prediction(p) => (1, p.t_obs),
        LiveEvent::Outcome(Outcome::Stat(s)) => (2, s.t_obs),
        LiveEvent::Outcome(_) => (3, 0),
    }
}

/// The end of the view granule of `t`.
fn granule_end(t: Time) -> Time {
    t.div_ceil(VIEW_GRANULE).saturating_mul(VIEW_GRANULE)
}

/// One view granule's counts of a worker, summed until the granule is complete.
struct Tally {
    /// A capability at the granule's end.
    capability: Capability<Time>,
    counts: BTreeMap<ViewRecord, isize>,
    /// The newest input time of the granule.
    newest: Time,
}

/// A worker's health and accuracy counts per granule, and what it reported last.
struct HealthTally {
    worker: u32,
    first_of_process: bool,
    pending: BTreeMap<Time, Tally>,
    newest: Option<Time>,
    parts_seen: u64,
}

impl HealthTally {
    /// Adds the records of summary events at `time` to its granule's tally.
    fn add<'a>(
        &mut self,
        time: Time,
        capability: impl FnOnce(Time) -> Capability<Time>,
        events: impl Iterator<Item = &'a SummaryEvent>,
    ) {
        let granule = granule_end(time);
        let tally = self.pending.entry(granule).or_insert_with(|| Tally {
            capability: capability(granule),
            counts: BTreeMap::new(),
            newest: time,
        });
        tally.newest = tally.newest.max(time);
        let mut records = Vec::new();
        for e in events {
            rows::summary_records(e, &mut records);
        }
        for (r, d) in records {
            *tally.counts.entry(r).or_default() += d;
        }
    }

    /// The updates of a complete granule: its counts, this worker's newest input time (the
    /// old one retracted) and, on the first worker of a process, the checkpoint parts the
    /// process wrote since the last granule.
    fn complete(&mut self, tally: Tally) -> (Capability<Time>, Vec<(ViewRecord, isize)>) {
        let Tally { capability, mut counts, newest } = tally;
        if self.newest.is_none_or(|n| n < newest) {
            if let Some(old) = self.newest.replace(newest) {
                *counts.entry(ViewRecord::Newest { worker: self.worker, time: old }).or_default() -= 1;
            }
            *counts.entry(ViewRecord::Newest { worker: self.worker, time: newest }).or_default() += 1;
        }
        if self.first_of_process {
            let parts = crate::telemetry::checkpoint_totals(super::STAGES).0;
            let delta = isize::try_from(parts.saturating_sub(self.parts_seen)).unwrap_or(isize::MAX);
            self.parts_seen = self.parts_seen.max(parts);
            *counts.entry(ViewRecord::Health(Health::CheckpointParts)).or_default() += delta;
        }
        (capability, counts.into_iter().filter(|(_, d)| *d != 0).collect())
    }
}

/// The health and accuracy records of this worker's summary events, summed per view granule
/// and sent once the granule is complete (a few dozen updates per granule, whatever the
/// event rate), with this worker counted once and its newest input time.
fn health_records<'s>(summary: StreamVec<'s, Time, SummaryEvent>, first_of_process: bool) -> StreamVec<'s, Time, ViewUpdate> {
    let worker = summary.scope().index() as u32;
    summary.unary_frontier::<Builder<ViewUpdate>, _, _, _>(Pipeline, "ViewHealth", move |cap, _info| {
        // The worker's own record goes out at the first activation (every operator gets one).
        let mut first = Some(cap);
        let mut tally = HealthTally { worker, first_of_process, pending: BTreeMap::new(), newest: None, parts_seen: 0 };
        move |(input, frontier), output| {
            if let Some(cap) = first.take() {
                output.session(&cap).give((ViewRecord::Health(Health::Workers), *cap.time(), 1));
            }
            input.for_each_stamp(|cap, data| {
                let time = *cap.least().expect("a message has a time");
                let at = |granule| cap.retain_least(0).expect("an input capability").delayed(&granule);
                tally.add(time, at, data.flat_map(|d| d.iter()));
            });
            while let Some(granule) = tally.pending.first_key_value().map(|(g, _)| *g).filter(|g| passed(frontier, *g)) {
                let Some(pending) = tally.pending.remove(&granule) else { break };
                let (cap, updates) = tally.complete(pending);
                output.session(&cap).give_iterator(updates.into_iter().map(|(r, d)| (r, granule, d)));
            }
        }
    })
}

/// Partial cascades whose prediction is awaited at most (a bound on the latency table; the
/// predict stage follows the window stage on the same worker, so entries leave quickly).
const LATENCY_PENDING: usize = 1 << 16;

/// Measures, on each worker, the latency from a window's close to its prediction: in event
/// time (the prediction's timestamp minus start + T_obs) and on the wall clock (from the
/// partial's curve leaving the window stage to the prediction leaving predict: both are
/// made on the worker that owns the cascade).
pub fn prediction_latency(live: StreamVec<'_, Time, LiveEvent>) {
    use std::collections::HashMap;
    let mut closed: HashMap<(u64, Time), std::time::Instant> = HashMap::new();
    live.sink(Pipeline, "PredictionLatency", move |(input, _frontier)| {
        let now = std::time::Instant::now();
        input.for_each_stamp(|cap, data| {
            let time = *cap.least().expect("a message has a time");
            for e in data.flat_map(|d| d.iter()) {
                match e {
                    LiveEvent::Curve { cascade, t_obs, .. } => {
                        if closed.len() >= LATENCY_PENDING {
                            closed.clear();
                        }
                        closed.insert((*cascade, *t_obs), now);
                    }
                    LiveEvent::Prediction(p) if !p.training_only => {
                        let wall = closed.remove(&(p.cascade, p.t_obs)).map(|t| now.saturating_duration_since(t));
                        let event = time.saturating_sub(p.start.saturating_add(p.t_obs));
                        crate::telemetry::prediction_latency(p.t_obs, event, wall);
                    }
                    _ => {}
                }
            }
        });
    });
}
