//! The live page's state: the top cascades by predicted final size, the latest alerts, and
//! the median ARE per window over event time. Bounded in memory whatever the stream length.
//!
//! A [`LiveView`] is a handle: the command creates it, the pipeline feeds it and the HTTP
//! server reads it. Each process keeps the state of the cascades its workers own (the page
//! of a cluster member shows that member's shard; the metrics give the global view).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::records::Outcome;
use crate::records::{CascadeId, Prediction};
use crate::Time;

/// Rows kept at most (the largest predictions); the page shows the top 20.
const MAX_ROWS: usize = 2000;
/// Alerts kept.
const MAX_ALERTS: usize = 50;
/// Points kept per window's ARE series.
const MAX_POINTS: usize = 500;
/// Recent ARE values per window from which the running median is taken.
const ARE_WINDOW: usize = 200;

/// One cascade at one window.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Cascade id.
    pub cascade: String,
    /// Observation window (s).
    pub window: Time,
    /// Events seen by the window.
    pub events: usize,
    /// Predicted final size (corrected).
    pub predicted: f64,
    /// Plain Hawkes prediction.
    pub hawkes: f64,
    /// True final size, once the cascade has terminated.
    pub true_size: Option<usize>,
    /// ARE, once known.
    pub are: Option<f64>,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    /// Cascade id.
    pub cascade: String,
    /// Window.
    pub window: Time,
    /// Predicted size.
    pub predicted: f64,
    /// Event time of the alert.
    pub time: Time,
}

/// What `/api/state` returns.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// Top cascades by predicted size.
    pub top: Vec<Row>,
    /// Latest alerts, newest first.
    pub alerts: Vec<AlertRow>,
    /// Per window: (event time, running median ARE of the corrected prediction) points.
    pub are_series: BTreeMap<Time, Vec<(Time, f64)>>,
    /// Predictions seen.
    pub predictions: u64,
    /// Newest event time seen by the page's state.
    pub event_time: Time,
}

#[derive(Default)]
struct State {
    rows: HashMap<(CascadeId, Time), Row>,
    alerts: VecDeque<AlertRow>,
    recent_are: BTreeMap<Time, VecDeque<f64>>,
    series: BTreeMap<Time, VecDeque<(Time, f64)>>,
    predictions: u64,
    event_time: Time,
}

/// The live page's state, shared by the pipeline (which feeds it) and the HTTP server (which
/// reads it). Cloning gives another handle on the same state.
#[derive(Clone)]
pub struct LiveView {
    /// The state behind the page.
    state: Arc<Mutex<State>>,
    /// Predictions above this size are listed as alerts.
    alert_threshold: f64,
}

impl LiveView {
    /// An empty view listing predictions above `alert_threshold` as alerts.
    pub fn new(alert_threshold: f64) -> Self {
        Self { state: Arc::default(), alert_threshold }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A prediction made at event time `time`.
    pub fn prediction(&self, time: Time, p: &Prediction) {
        let mut s = self.state();
        s.predictions += 1;
        s.event_time = s.event_time.max(time);
        if p.n_pred > self.alert_threshold {
            s.alerts.push_front(AlertRow { cascade: p.cascade.to_string(), window: p.t_obs, predicted: p.n_pred, time });
            s.alerts.truncate(MAX_ALERTS);
        }
        s.rows.insert(
            (p.cascade, p.t_obs),
            Row {
                cascade: p.cascade.to_string(),
                window: p.t_obs,
                events: p.n,
                predicted: p.n_pred,
                hawkes: p.n_hawkes,
                true_size: None,
                are: None,
            },
        );
        if s.rows.len() > MAX_ROWS {
            // Evict the smallest prediction: the page shows the largest.
            if let Some(key) = s.rows.iter().min_by(|a, b| a.1.predicted.total_cmp(&b.1.predicted)).map(|(k, _)| *k) {
                s.rows.remove(&key);
            }
        }
    }

    /// An outcome (true size known) at event time `time`.
    pub fn outcome(&self, time: Time, o: &Outcome) {
        let Outcome::Stat(crate::records::StatRecord { cascade, t_obs, n_true, are, .. }) = o else { return };
        let mut s = self.state();
        s.event_time = s.event_time.max(time);
        if let Some(row) = s.rows.get_mut(&(*cascade, *t_obs)) {
            row.true_size = Some(*n_true);
            row.are = Some(*are);
        }
        let recent = s.recent_are.entry(*t_obs).or_default();
        recent.push_back(*are);
        if recent.len() > ARE_WINDOW {
            recent.pop_front();
        }
        let mut sorted: Vec<f64> = recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = tweetoscope_model::stats::quantile_sorted(&sorted, 0.5);
        let series = s.series.entry(*t_obs).or_default();
        series.push_back((time, median));
        if series.len() > MAX_POINTS {
            series.pop_front();
        }
    }

    /// The current snapshot for the page.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        let mut top: Vec<Row> = s.rows.values().cloned().collect();
        top.sort_by(|a, b| b.predicted.total_cmp(&a.predicted).then(a.cascade.cmp(&b.cascade)));
        top.truncate(20);
        Snapshot {
            top,
            alerts: s.alerts.iter().cloned().collect(),
            are_series: s.series.iter().map(|(w, v)| (*w, v.iter().copied().collect())).collect(),
            predictions: s.predictions,
            event_time: s.event_time,
        }
    }
}
