//! The records of the live views and their synchronous cores (no timely, no differential):
//! what one cascade's row is, how a worker's [`CascadeBook`] turns predictions, outcomes and
//! partial cascades into row retractions and insertions, which rows a top-N reduction keeps
//! ([`select_top`]), and what the summary events add to the health and accuracy views.
//!
//! Differential dataflow needs `Ord` data: sizes and errors are fixed-point integers
//! ([`Fixed`], hundredths) rather than floats, so equal rows compare equal on every process.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::records::{AlertThresholds, CascadeId, Partial, Prediction, Predictor, RejectReason, Severity, StatRecord};
use crate::telemetry::SummaryEvent;
use crate::Time;

/// A size or an error in hundredths (`123.456` → `12346`): floats are not `Ord`.
pub type Fixed = i64;

/// Hundredths of `x`, rounded; 0 for a non-finite `x` (never NaN or ∞ in a view).
pub fn fixed(x: f64) -> Fixed {
    if x.is_finite() {
        (x * 100.0).round().clamp(i64::MIN as f64, i64::MAX as f64) as Fixed
    } else {
        0
    }
}

/// Characters of the original tweet kept in a row.
const MSG_CHARS: usize = 140;
/// Points of a cascade's events-over-time curve at most.
pub const CURVE_POINTS: usize = 24;

/// One window's prediction of a cascade, from every model, and its error once the final
/// size is known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowRow {
    /// Observation window (s).
    pub window: Time,
    /// Events seen by the window.
    pub events: u64,
    /// Event time at which the prediction was made.
    pub made_at: Time,
    /// The default prediction.
    pub default: Fixed,
    /// Who made it.
    pub predictor: Predictor,
    /// Its interval's low and high ends, if the window had calibration residuals.
    pub interval: Option<(Fixed, Fixed)>,
    /// Plain Hawkes.
    pub hawkes: Fixed,
    /// Hawkes corrected by the course forest.
    pub course: Fixed,
    /// SEISMIC (None: it predicted an infinite size or could not estimate).
    pub seismic: Option<Fixed>,
    /// SEISMIC with its learned correction.
    pub seismic_corrected: Option<Fixed>,
    /// The alert it raised.
    pub severity: Option<Severity>,
    /// Absolute relative error of the default prediction, once the final size is known.
    pub are: Option<Fixed>,
}

/// One cascade: its latest prediction, its alert state and, once it ended, its final size.
/// Field order is the order rows compare in (rank first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CascadeRow {
    /// What the list is ranked by: the final size once known, else the latest prediction
    /// (so that a known over-prediction does not top the list).
    pub rank: Fixed,
    /// The cascade.
    pub cascade: CascadeId,
    /// Event time of the original tweet.
    pub start: Time,
    /// The start of the original tweet's text.
    pub msg: String,
    /// The highest severity any of its predictions raised.
    pub severity: Option<Severity>,
    /// Event time of its latest alert.
    pub alerted_at: Option<Time>,
    /// The final size, once it ended.
    pub final_size: Option<u64>,
    /// Event time at which it ended.
    pub ended_at: Option<Time>,
    /// Every window's prediction, by window (the last one is the latest).
    pub windows: Vec<WindowRow>,
    /// Events over time: (seconds after the original tweet, events so far), at most
    /// [`CURVE_POINTS`] points of its largest partial cascade, then its final size.
    pub curve: Vec<(Time, u64)>,
}

impl CascadeRow {
    /// The latest window's prediction.
    pub fn latest(&self) -> Option<&WindowRow> {
        self.windows.last()
    }

    fn rerank(&mut self) {
        self.rank = match (self.final_size, self.latest()) {
            (Some(n), _) => (n as Fixed).saturating_mul(100),
            (None, Some(w)) => w.default,
            (None, None) => 0,
        };
        self.severity = self.windows.iter().filter_map(|w| w.severity).max();
    }
}

/// The model names of the other outputs (stats, metrics): a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelName {
    /// The default prediction (learned, or its fallback).
    Default,
    /// Plain Hawkes.
    Hawkes,
    /// Hawkes + the course forest.
    Course,
    /// SEISMIC.
    Seismic,
    /// SEISMIC with its learned correction.
    SeismicCorrected,
}

impl ModelName {
    /// Every model, in the order the outputs list them.
    pub const ALL: [ModelName; 5] =
        [ModelName::Default, ModelName::Hawkes, ModelName::Course, ModelName::Seismic, ModelName::SeismicCorrected];

    /// The name in the stats records and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Default => "default",
            ModelName::Hawkes => "hawkes",
            ModelName::Course => "course",
            ModelName::Seismic => "seismic",
            ModelName::SeismicCorrected => "seismic_corrected",
        }
    }
}

/// Width of an ARE bucket of the accuracy view: medians are read to ±0.01.
pub const ARE_BUCKET: f64 = 0.02;
/// The last ARE bucket (ARE ≥ 10 lands there).
pub const ARE_BUCKETS: u16 = 500;

/// A counted fact of the job: the record's multiplicity in the collection is its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Workers in the computation (each worker adds 1).
    Workers,
    /// Input events accepted.
    EventsIn,
    /// Input events rejected, by reason.
    Rejected(RejectReason),
    /// Predictions made.
    Predictions,
    /// Alerts raised, by severity.
    Alerts(Severity),
    /// Cascades terminated.
    Terminated,
    /// Checkpoint parts written (sampled from each process's counters).
    CheckpointParts,
}

/// One record of the views, as gathered to the serving workers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ViewRecord {
    /// A cascade of the list (top by rank, or among the latest alerts).
    Cascade(CascadeRow),
    /// A health counter (multiplicity = count).
    Health(Health),
    /// An ARE bucket of a window and model (multiplicity = predictions in it).
    Are {
        /// The window.
        window: Time,
        /// The model.
        model: ModelName,
        /// The ARE bucket ([`are_bucket`]).
        bucket: u16,
    },
    /// Predictions of a window whose true size fell in / out of their interval.
    Coverage {
        /// The window.
        window: Time,
        /// Whether the true size fell in the interval.
        covered: bool,
    },
    /// The newest input time a worker has seen (one per worker, replaced as it grows).
    Newest {
        /// The worker's index.
        worker: u32,
        /// Its newest input event time.
        time: Time,
    },
}

/// The ARE bucket of `are` (non-finite: the last one).
pub fn are_bucket(are: f64) -> u16 {
    if are.is_finite() && are >= 0.0 {
        ((are / ARE_BUCKET) as u64).min(u64::from(ARE_BUCKETS)) as u16
    } else {
        ARE_BUCKETS
    }
}

/// The view records a summary event adds (each with its multiplicity).
pub fn summary_records(e: &SummaryEvent, out: &mut Vec<(ViewRecord, isize)>) {
    let count = |n: u64| isize::try_from(n).unwrap_or(isize::MAX);
    match e {
        SummaryEvent::Input { events } => out.push((ViewRecord::Health(Health::EventsIn), count(*events))),
        SummaryEvent::Rejected { reason, count: n } => out.push((ViewRecord::Health(Health::Rejected(*reason)), count(*n))),
        SummaryEvent::Terminated => out.push((ViewRecord::Health(Health::Terminated), 1)),
        SummaryEvent::Prediction { alert, .. } => {
            out.push((ViewRecord::Health(Health::Predictions), 1));
            if let Some(s) = alert {
                out.push((ViewRecord::Health(Health::Alerts(*s)), 1));
            }
        }
        SummaryEvent::Accuracy { t_obs, are, are_hawkes, are_course, are_seismic, are_seismic_corrected, covered } => {
            let window = *t_obs;
            let models = [
                (ModelName::Default, Some(*are)),
                (ModelName::Hawkes, Some(*are_hawkes)),
                (ModelName::Course, Some(*are_course)),
                (ModelName::Seismic, *are_seismic),
                (ModelName::SeismicCorrected, *are_seismic_corrected),
            ];
            for (model, a) in models {
                if let Some(a) = a {
                    out.push((ViewRecord::Are { window, model, bucket: are_bucket(a) }, 1));
                }
            }
            if let Some(c) = covered {
                out.push((ViewRecord::Coverage { window, covered: *c }, 1));
            }
        }
        _ => {}
    }
}

/// Which rows of a group a top-N reduction keeps: the `top` largest by rank and the
/// `alerts` latest alerted, each once, largest rank first. Used at both levels of the
/// hierarchical reduction (per bucket of cascades, then over the buckets' survivors), so
/// the result is the exact top of all cascades however they are sharded.
pub fn select_top<'a>(rows: impl Iterator<Item = &'a CascadeRow>, top: usize, alerts: usize) -> Vec<&'a CascadeRow> {
    let mut all: Vec<&CascadeRow> = rows.collect();
    all.sort_by_key(|r| (Reverse(r.rank), r.cascade));
    let mut kept: Vec<&CascadeRow> = all.iter().take(top).copied().collect();
    let mut alerted: Vec<&CascadeRow> = all.iter().skip(top).filter(|r| r.alerted_at.is_some()).copied().collect();
    alerted.sort_by_key(|r| (Reverse(r.alerted_at), r.cascade));
    kept.extend(alerted.into_iter().take(alerts));
    kept
}

/// The events-over-time curve of a partial cascade: at most [`CURVE_POINTS`] points
/// (seconds after the original tweet, events so far), the last event included.
pub fn curve_of(p: &Partial) -> Vec<(Time, u64)> {
    let n = p.events.len();
    let step = n.div_ceil(CURVE_POINTS).max(1);
    let mut curve: Vec<(Time, u64)> = (0..n)
        .step_by(step)
        .chain(n.checked_sub(1))
        .filter_map(|i| p.events.get(i).map(|e| (if e.t.is_finite() { e.t.max(0.0).round() as Time } else { 0 }, i as u64 + 1)))
        .collect();
    curve.dedup();
    curve
}

/// One cascade as a worker knows it.
#[derive(Debug, Default)]
struct Entry {
    /// Its row (None until its first prediction).
    row: Option<CascadeRow>,
    /// Events over time of its largest partial so far.
    curve: Vec<(Time, u64)>,
}

/// The index keys of a row: (rank order, alert order, ended).
type Keys = ((Reverse<Fixed>, CascadeId), Option<(Reverse<Time>, CascadeId)>, bool);

fn keys_of(row: &CascadeRow) -> Keys {
    ((Reverse(row.rank), row.cascade), row.alerted_at.map(|t| (Reverse(t), row.cascade)), row.ended_at.is_some())
}

/// The rows of the cascades a worker owns, and the updates that keep the collection equal to
/// this worker's own top: its `top` largest and, beyond them, its `alerts` latest alerted
/// ([`select_top`]'s choice, kept current with ordered indexes). The global top is within the
/// union of the workers' tops (a row among the global top `top` is among its worker's; a row
/// among the global latest alerts beyond the top is among its worker's), so the collection
/// reduced over all workers is exact, and only rows that can be listed ever reach
/// differential: a revision of a small cascade costs an index update here, nothing more.
/// Open cascades are held until they end; ended ones only while they can still be listed, so
/// memory is bounded by the open cascades.
#[derive(Debug)]
pub struct CascadeBook {
    entries: HashMap<CascadeId, Entry>,
    /// Every row, largest first (ties by cascade id, as `select_top`).
    by_rank: BTreeSet<(Reverse<Fixed>, CascadeId)>,
    /// Every alerted row, latest alert first.
    by_alert: BTreeSet<(Reverse<Time>, CascadeId)>,
    /// Ended rows, largest first.
    ended_by_rank: BTreeSet<(Reverse<Fixed>, CascadeId)>,
    /// Ended alerted rows, latest alert first.
    ended_by_alert: BTreeSet<(Reverse<Time>, CascadeId)>,
    /// The rows in the collection, as they were emitted.
    emitted: BTreeMap<CascadeId, CascadeRow>,
    /// Rows changed since the last [`CascadeBook::flush`].
    dirty: BTreeSet<CascadeId>,
    thresholds: AlertThresholds,
    top: usize,
    alerts: usize,
}

impl CascadeBook {
    /// An empty book whose collection is its `top` largest and `alerts` latest alerted rows.
    pub fn new(thresholds: AlertThresholds, top: usize, alerts: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_rank: BTreeSet::new(),
            by_alert: BTreeSet::new(),
            ended_by_rank: BTreeSet::new(),
            ended_by_alert: BTreeSet::new(),
            emitted: BTreeMap::new(),
            dirty: BTreeSet::new(),
            thresholds,
            top,
            alerts,
        }
    }

    /// Cascades held (open, or ended and still listable).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The events-over-time curve of a cascade's latest partial cascade.
    pub fn curve(&mut self, cascade: CascadeId, curve: &[(Time, u64)]) {
        let entry = self.entries.entry(cascade).or_default();
        entry.curve = curve.to_vec();
        self.update(cascade, |row| {
            let last = row.curve.last().copied();
            row.curve = curve.to_vec();
            // Keep the final size's point when it is already there.
            if let Some(p) = last.filter(|(_, n)| curve.last().is_none_or(|(_, m)| m < n)) {
                row.curve.push(p);
            }
        });
    }

    /// A prediction made at event time `time`.
    pub fn prediction(&mut self, time: Time, p: &Prediction) {
        if p.training_only {
            return;
        }
        let severity = p.alert_severity(&self.thresholds);
        let w = WindowRow {
            window: p.t_obs,
            events: p.n as u64,
            made_at: time,
            default: fixed(p.n_pred),
            predictor: p.predictor,
            interval: p.interval.map(|i| (fixed(i.low), fixed(i.high))),
            hawkes: fixed(p.n_hawkes),
            course: fixed(p.n_course),
            seismic: p.n_seismic.filter(|x| x.is_finite()).map(fixed),
            seismic_corrected: p.n_seismic_corrected.filter(|x| x.is_finite()).map(fixed),
            severity,
            are: None,
        };
        let entry = self.entries.entry(p.cascade).or_default();
        if entry.row.is_none() {
            entry.row = Some(CascadeRow {
                rank: 0,
                cascade: p.cascade,
                start: p.start,
                msg: p.msg.chars().take(MSG_CHARS).collect(),
                severity: None,
                alerted_at: None,
                final_size: None,
                ended_at: None,
                windows: Vec::new(),
                curve: entry.curve.clone(),
            });
            self.by_rank.insert((Reverse(0), p.cascade));
        }
        self.update(p.cascade, move |row| {
            row.windows.retain(|x| x.window != w.window);
            row.windows.push(w);
            row.windows.sort_by_key(|x| x.window);
            if severity.is_some() {
                row.alerted_at = Some(time);
            }
        });
    }

    /// The accuracy of one of its predictions: the cascade has ended.
    pub fn stat(&mut self, s: &StatRecord) {
        self.update(s.cascade, |row| {
            row.final_size = Some(s.n_true as u64);
            row.ended_at = Some(s.ended_at);
            if let Some(w) = row.windows.iter_mut().find(|w| w.window == s.t_obs) {
                w.are = Some(fixed(s.are));
            }
            let last = row.start.max(s.ended_at).saturating_sub(row.start);
            if row.curve.last().is_none_or(|(_, n)| *n < s.n_true as u64) {
                row.curve.push((last, s.n_true as u64));
            }
        });
    }

    /// Applies `change` to a cascade's row (if it has one) and keeps the indexes current.
    fn update(&mut self, cascade: CascadeId, change: impl FnOnce(&mut CascadeRow)) {
        let Some(row) = self.entries.get_mut(&cascade).and_then(|e| e.row.as_mut()) else { return };
        let old = keys_of(row);
        change(row);
        row.rerank();
        let new = keys_of(row);
        if old != new {
            self.unindex(old);
            self.index(new);
        }
        self.dirty.insert(cascade);
    }

    fn index(&mut self, (rank, alert, ended): Keys) {
        self.by_rank.insert(rank);
        if ended {
            self.ended_by_rank.insert(rank);
        }
        if let Some(a) = alert {
            self.by_alert.insert(a);
            if ended {
                self.ended_by_alert.insert(a);
            }
        }
    }

    fn unindex(&mut self, (rank, alert, _): Keys) {
        self.by_rank.remove(&rank);
        self.ended_by_rank.remove(&rank);
        if let Some(a) = alert {
            self.by_alert.remove(&a);
            self.ended_by_alert.remove(&a);
        }
    }

    /// The cascades of this worker's top ([`select_top`]'s choice).
    fn selection(&self) -> BTreeSet<CascadeId> {
        let mut kept: BTreeSet<CascadeId> = self.by_rank.iter().take(self.top).map(|(_, c)| *c).collect();
        let alerted: Vec<CascadeId> =
            self.by_alert.iter().map(|(_, c)| *c).filter(|c| !kept.contains(c)).take(self.alerts).collect();
        kept.extend(alerted);
        kept
    }

    /// The collection's updates since the last call: rows leaving this worker's top, rows
    /// entering it, and the retraction and new version of the rows in it that changed.
    pub fn flush(&mut self, out: &mut Vec<(CascadeRow, isize)>) {
        let selected = self.selection();
        let gone: Vec<CascadeId> = self.emitted.keys().filter(|c| !selected.contains(c)).copied().collect();
        for c in gone {
            if let Some(row) = self.emitted.remove(&c) {
                out.push((row, -1));
            }
        }
        for c in &selected {
            let Some(row) = self.entries.get(c).and_then(|e| e.row.as_ref()) else { continue };
            match self.emitted.get_mut(c) {
                None => {
                    out.push((row.clone(), 1));
                    self.emitted.insert(*c, row.clone());
                }
                Some(old) if self.dirty.contains(c) && old != row => {
                    out.push((std::mem::replace(old, row.clone()), -1));
                    out.push((row.clone(), 1));
                }
                Some(_) => {}
            }
        }
        self.dirty.clear();
        self.prune();
    }

    /// Forgets the ended cascades that can never be listed again: beyond the `top` largest
    /// ended ones (at least `top` ended rows, which never change, outrank them) and beyond
    /// the `top + alerts` latest alerted ended ones (of those, at most `top` are in the top,
    /// so at least `alerts` later alerts stay beyond it).
    fn prune(&mut self) {
        if self.ended_by_rank.len() <= self.top {
            return;
        }
        let keep: BTreeSet<CascadeId> = self.ended_by_alert.iter().take(self.top + self.alerts).map(|(_, c)| *c).collect();
        let drop: Vec<CascadeId> = self
            .ended_by_rank
            .iter()
            .skip(self.top)
            .map(|(_, c)| *c)
            .filter(|c| !keep.contains(c) && !self.emitted.contains_key(c))
            .collect();
        for c in drop {
            if let Some(row) = self.entries.remove(&c).and_then(|e| e.row) {
                self.unindex(keys_of(&row));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(cascade: CascadeId, t_obs: Time, n_pred: f64) -> Prediction {
        let mut p: Prediction = serde_json::from_value(serde_json::json!({
            "cascade": cascade, "t_obs": t_obs, "msg": "hello", "n": 12, "start": 1000,
            "training_only": false, "fit": null, "features": vec![0.0; tweetoscope_model::predictive::N_FEATURES],
            "n_pred": n_pred, "predictor": "learned", "interval": null, "model_version": null, "model_samples": 0,
            "n_hawkes": n_pred, "n_course": n_pred, "omega": 1.0, "n_seismic": null, "seismic": null,
            "n_seismic_corrected": null
        }))
        .expect("a prediction");
        p.n_pred = n_pred;
        p
    }

    fn stat(cascade: CascadeId, t_obs: Time, n_true: usize) -> StatRecord {
        serde_json::from_value(serde_json::json!({
            "cascade": cascade, "t_obs": t_obs, "n_obs": 12, "n_true": n_true, "predicted_at": 1600, "ended_at": 9000,
            "n_pred": 100.0, "are": 0.5, "predictor": "learned", "interval": null, "n_hawkes": 1.0, "are_hawkes": 0.1,
            "n_course": 1.0, "are_course": 0.1, "n_seismic": null, "are_seismic": null, "n_seismic_corrected": null,
            "are_seismic_corrected": null, "omega": 1.0, "model_samples": 0
        }))
        .expect("a stat")
    }

    const T: AlertThresholds = AlertThresholds { warning: 500.0, critical: 5000.0 };

    /// The collection the updates add up to.
    fn collection(updates: &[(CascadeRow, isize)]) -> Vec<CascadeRow> {
        let mut counts: std::collections::BTreeMap<CascadeRow, isize> = Default::default();
        for (r, d) in updates {
            *counts.entry(r.clone()).or_default() += d;
        }
        assert!(counts.values().all(|c| *c == 0 || *c == 1), "a row counted twice or negatively: {counts:?}");
        counts.into_iter().filter(|(_, c)| *c == 1).map(|(r, _)| r).collect()
    }

    #[test]
    fn a_revision_replaces_the_row_and_termination_gives_the_final_size_and_error() {
        let mut book = CascadeBook::new(T, 10, 10);
        let mut out = Vec::new();
        book.prediction(1600, &prediction(7, 600, 800.0));
        book.flush(&mut out);
        book.prediction(2200, &prediction(7, 1200, 300.0));
        book.flush(&mut out);
        let rows = collection(&out);
        assert_eq!(rows.len(), 1, "one row per cascade: {rows:?}");
        assert_eq!(rows[0].latest().map(|w| w.window), Some(1200));
        assert_eq!(rows[0].rank, 30_000, "ranked by the latest prediction");
        assert_eq!(rows[0].severity, Some(Severity::Warning), "the 600 s alert stays in the cascade's state");
        book.stat(&stat(7, 1200, 450));
        book.flush(&mut out);
        let rows = collection(&out);
        assert_eq!((rows.len(), rows[0].final_size, rows[0].rank), (1, Some(450), 45_000));
        assert_eq!(rows[0].windows[1].are, Some(50));
    }

    #[test]
    fn the_collection_is_the_workers_top_and_unlistable_ended_cascades_are_forgotten() {
        let mut book = CascadeBook::new(T, 2, 1);
        let mut out = Vec::new();
        for c in 0..6u64 {
            // Cascade 0 alerts (900 > 500) but ends small; the others grow with their id.
            let predicted = if c == 0 { 900.0 } else { 10.0 * c as f64 };
            book.prediction(1600 + c, &prediction(c, 600, predicted));
            book.flush(&mut out);
            book.stat(&stat(c, 600, if c == 0 { 1 } else { 10 * c as usize }));
            book.flush(&mut out);
        }
        let kept: Vec<CascadeId> = collection(&out).iter().map(|r| r.cascade).collect();
        assert_eq!(kept, vec![0, 4, 5], "the 2 largest and the latest alert");
        assert_eq!(book.len(), 3, "the rest is forgotten");
    }

    #[test]
    fn open_cascades_outside_the_top_stay_out_of_the_collection_until_they_enter_it() {
        let mut book = CascadeBook::new(T, 2, 0);
        let mut out = Vec::new();
        for c in 0..5u64 {
            book.prediction(1600, &prediction(c, 600, 10.0 * (c + 1) as f64));
        }
        book.flush(&mut out);
        let ids = |out: &[(CascadeRow, isize)]| collection(out).iter().map(|r| r.cascade).collect::<Vec<_>>();
        assert_eq!((ids(&out), out.len()), (vec![3, 4], 2), "only the top reaches the collection");
        // A revision of a small cascade outside the top emits nothing; one into the top swaps.
        book.prediction(2200, &prediction(0, 1200, 20.0));
        book.flush(&mut out);
        assert_eq!(out.len(), 2);
        book.prediction(2200, &prediction(1, 1200, 1000.0));
        book.flush(&mut out);
        assert_eq!(ids(&out), vec![4, 1], "by rank");
        assert_eq!(book.len(), 5, "open cascades are all held");
    }

    #[test]
    fn the_top_selection_is_the_same_whatever_the_grouping() {
        let rows: Vec<CascadeRow> = (0..40u64)
            .map(|c| {
                let mut out = Vec::new();
                let mut book = CascadeBook::new(T, 100, 100);
                book.prediction(1000 + c, &prediction(c, 600, ((c * 37) % 23) as f64 * 100.0));
                book.flush(&mut out);
                out.pop().unwrap().0
            })
            .collect();
        let direct: Vec<CascadeId> = select_top(rows.iter(), 5, 3).iter().map(|r| r.cascade).collect();
        let per_group: Vec<&CascadeRow> =
            (0..4u64).flat_map(|g| select_top(rows.iter().filter(move |r| r.cascade % 4 == g), 5, 3)).collect();
        let hierarchical: Vec<CascadeId> = select_top(per_group.into_iter(), 5, 3).iter().map(|r| r.cascade).collect();
        assert_eq!(direct, hierarchical);
        assert_eq!(direct.len(), 8);
    }

    #[test]
    fn fixed_point_never_carries_nan_or_infinity() {
        assert_eq!((fixed(f64::NAN), fixed(f64::INFINITY), fixed(1.234)), (0, 0, 123));
        assert_eq!((are_bucket(f64::NAN), are_bucket(0.05), are_bucket(1e9)), (ARE_BUCKETS, 2, ARE_BUCKETS));
    }
}
