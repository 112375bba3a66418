//! The live page's state: the cluster-wide views, as the dataflow delivers them to this
//! process (`dataflow::views`: every process gets the same updates at the same completed
//! times), and what `/api/state` returns ([`Snapshot`], documented in `docs/api-state.md`
//! with its JSON schema `docs/api-state.schema.json`).
//!
//! A [`LiveView`] is a handle: the command creates it, the pipeline applies the views'
//! updates to it and the HTTP server reads it. Bounded in memory: the views hold at most
//! `TOP + LATEST_ALERTS` cascades and a few hundred counters, and the series here keep
//! [`MAX_POINTS`] points.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dataflow::views::{CascadeRow, Health, ModelName, ViewRecord, ARE_BUCKET, ARE_BUCKETS};
use crate::records::{AlertThresholds, Severity};
use crate::Time;

/// The version of `/api/state`'s layout (bumped on any incompatible change).
pub const SCHEMA: u32 = 1;
/// Points kept per series.
pub const MAX_POINTS: usize = 500;
/// Event time between two points of a window's ARE series (s).
const ARE_STEP: Time = 3600;
/// Wall time between two points of the throughput series.
const WALL_STEP: std::time::Duration = std::time::Duration::from_millis(500);

/// How the job reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A bounded input (a file, or a Kafka backtest) replayed to its end.
    Replay,
    /// A live Kafka stream.
    Live,
}

/// The job as the views see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobState {
    /// `replaying`, `live` or `finished`.
    pub state: &'static str,
    /// Event time up to which the views are complete (None before the first update).
    pub watermark: Option<Time>,
    /// The newest input event time seen by any worker.
    pub newest_event: Option<Time>,
    /// `newest_event − watermark` (s).
    pub lag: Option<Time>,
    /// Workers in the computation.
    pub workers: i64,
    /// Input events accepted.
    pub events_in: i64,
    /// Input events rejected, by reason.
    pub rejected: BTreeMap<&'static str, i64>,
    /// Predictions made.
    pub predictions: i64,
    /// Alerts raised, by severity.
    pub alerts: BTreeMap<&'static str, i64>,
    /// Cascades terminated.
    pub terminated: i64,
    /// Checkpoint parts written by the cluster.
    pub checkpoint_parts: i64,
}

/// The alert thresholds, for the page's legend.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Thresholds {
    /// Warning above this predicted size.
    pub warning: f64,
    /// Critical above this one.
    pub critical: f64,
}

/// A prediction interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IntervalJson {
    /// Low end.
    pub low: f64,
    /// High end.
    pub high: f64,
}

/// One window's prediction of a cascade, every model side by side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowJson {
    /// Observation window (s).
    pub window: Time,
    /// Events seen by it.
    pub events: u64,
    /// Event time of the prediction.
    pub made_at: Time,
    /// Who made the default prediction (`learned`, `fallback`, `course`, `hawkes`).
    pub predictor: &'static str,
    /// The default prediction's interval.
    pub interval: Option<IntervalJson>,
    /// Every model's prediction: `default`, `hawkes`, `course`, `seismic`, `seismic_corrected`
    /// (absent when it made none).
    pub models: BTreeMap<&'static str, f64>,
    /// The alert it raised.
    pub severity: Option<Severity>,
    /// The default prediction's absolute relative error, once the final size is known.
    pub are: Option<f64>,
}

/// One cascade, latest prediction first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CascadeJson {
    /// Cascade id (a string: ids exceed JavaScript's exact integers).
    pub cascade: String,
    /// Event time of the original tweet.
    pub start: Time,
    /// The start of the tweet's text.
    pub msg: String,
    /// The latest window predicted.
    pub window: Time,
    /// Events seen by it.
    pub events: u64,
    /// Its default prediction.
    pub predicted: f64,
    /// Its interval.
    pub interval: Option<IntervalJson>,
    /// Who made it.
    pub predictor: &'static str,
    /// The highest alert it raised.
    pub severity: Option<Severity>,
    /// Event time of its latest alert.
    pub alerted_at: Option<Time>,
    /// Its final size, once it ended.
    pub final_size: Option<u64>,
    /// When it ended.
    pub ended_at: Option<Time>,
    /// The latest prediction's error, once ended.
    pub are: Option<f64>,
    /// Every window's prediction.
    pub windows: Vec<WindowJson>,
    /// Events over time: (seconds after the tweet, events so far).
    pub curve: Vec<(Time, u64)>,
}

/// One latest alert.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertJson {
    /// Cascade id.
    pub cascade: String,
    /// The window of its latest alert... (the cascade's latest window).
    pub window: Time,
    /// Its highest severity.
    pub severity: Option<Severity>,
    /// Its latest prediction.
    pub predicted: f64,
    /// Event time of its latest alert.
    pub time: Time,
}

/// Accuracy of one model at one window so far.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelAccuracy {
    /// Predictions whose true size is known.
    pub count: i64,
    /// Their median ARE (to ±0.01).
    pub median_are: Option<f64>,
}

/// Accuracy of one window so far.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowAccuracy {
    /// By model name.
    pub models: BTreeMap<&'static str, ModelAccuracy>,
    /// Predictions with an interval whose true size is known.
    pub with_interval: i64,
    /// Share of those whose true size fell in the interval.
    pub coverage: Option<f64>,
}

/// This process (not part of the cluster-wide views: it differs between processes).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessState {
    /// Wall-clock samples: [unix ms, events in (cluster), watermark, lag].
    pub series: Vec<(u64, i64, Option<Time>, Option<Time>)>,
    /// Seconds since the view was created.
    pub uptime_seconds: f64,
}

/// What `/api/state` returns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The job's health.
    pub job: JobState,
    /// The alert thresholds.
    pub thresholds: Thresholds,
    /// The cascades of the views, largest first (final size once ended, else prediction).
    pub cascades: Vec<CascadeJson>,
    /// The latest alerted cascades, newest first.
    pub alerts: Vec<AlertJson>,
    /// Per window (as a string key): accuracy so far.
    pub accuracy: BTreeMap<String, WindowAccuracy>,
    /// Per window: (event time, median ARE of the default prediction so far) points.
    pub are_series: BTreeMap<String, Vec<(Time, f64)>>,
    /// This process.
    pub process: ProcessState,
}

#[derive(Default)]
struct State {
    /// The views' collection: each record's multiplicity.
    counts: BTreeMap<ViewRecord, isize>,
    watermark: Option<Time>,
    finished: bool,
    are_series: BTreeMap<Time, VecDeque<(Time, f64)>>,
    wall: VecDeque<(u64, i64, Option<Time>, Option<Time>)>,
    last_wall: Option<Instant>,
}

impl State {
    fn health(&self, h: Health) -> i64 {
        self.counts.get(&ViewRecord::Health(h)).copied().unwrap_or(0) as i64
    }

    fn newest(&self) -> Option<Time> {
        self.counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .filter_map(|(r, _)| match r {
                ViewRecord::Newest { time, .. } => Some(*time),
                _ => None,
            })
            .max()
    }

    fn lag(&self) -> Option<Time> {
        Some(self.newest()?.saturating_sub(self.watermark?))
    }

    /// The ARE histogram of (window, model): bucket → count.
    fn are_buckets(&self, window: Time, model: ModelName) -> Vec<(u16, i64)> {
        let lo = ViewRecord::Are { window, model, bucket: 0 };
        let hi = ViewRecord::Are { window, model, bucket: ARE_BUCKETS };
        self.counts
            .range(lo..=hi)
            .map(|(r, c)| match r {
                ViewRecord::Are { bucket, .. } => (*bucket, *c as i64),
                _ => (0, 0),
            })
            .collect()
    }

    fn windows(&self) -> Vec<Time> {
        let mut w: Vec<Time> = self
            .counts
            .keys()
            .filter_map(|r| match r {
                ViewRecord::Are { window, .. } | ViewRecord::Coverage { window, .. } => Some(*window),
                _ => None,
            })
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    }

    fn sample_wall(&mut self, force: bool) {
        if !force && self.last_wall.is_some_and(|t| t.elapsed() < WALL_STEP) {
            return;
        }
        self.last_wall = Some(Instant::now());
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let point = (ms, self.health(Health::EventsIn), self.watermark, self.lag());
        self.wall.push_back(point);
        if self.wall.len() > MAX_POINTS {
            self.wall.pop_front();
        }
    }
}

/// The median of a bucketed histogram (bucket midpoints), None when empty.
fn median(buckets: &[(u16, i64)]) -> Option<f64> {
    let total: i64 = buckets.iter().map(|(_, c)| c).sum();
    if total <= 0 {
        return None;
    }
    let mut seen = 0;
    for (b, c) in buckets {
        seen += c;
        if 2 * seen >= total {
            return Some(((f64::from(*b) + 0.5) * ARE_BUCKET * 1e4).round() / 1e4);
        }
    }
    None
}

/// The live page's state, shared by the pipeline (which applies the views' updates) and
/// the HTTP server (which reads it). Cloning gives another handle on the same state.
#[derive(Clone)]
pub struct LiveView {
    state: Arc<Mutex<State>>,
    kind: JobKind,
    thresholds: AlertThresholds,
    created: Instant,
}

impl LiveView {
    /// An empty view of a job of `kind`.
    pub fn new(kind: JobKind, thresholds: AlertThresholds) -> Self {
        Self { state: Arc::default(), kind, thresholds, created: Instant::now() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The views' updates of the completed time `time` (times come in increasing order).
    pub fn apply(&self, time: Time, updates: Vec<(ViewRecord, isize)>) {
        let mut s = self.state();
        // The windows whose default model's ARE histogram changed (their median is recomputed).
        let mut changed = std::collections::BTreeSet::new();
        for (record, diff) in updates {
            if let ViewRecord::Are { model: ModelName::Default, window, .. } = record {
                changed.insert(window);
            }
            let count = *s.counts.entry(record.clone()).and_modify(|c| *c += diff).or_insert(diff);
            if count == 0 {
                s.counts.remove(&record);
            }
        }
        s.watermark = Some(time);
        for window in changed {
            let Some(m) = median(&s.are_buckets(window, ModelName::Default)) else { continue };
            let series = s.are_series.entry(window).or_default();
            if series.back().is_none_or(|(t, _)| time >= t.saturating_add(ARE_STEP)) {
                series.push_back((time, m));
            } else if let Some(last) = series.back_mut() {
                *last = (last.0, m);
            }
            if series.len() > MAX_POINTS {
                series.pop_front();
            }
        }
        s.sample_wall(false);
    }

    /// The views are complete: the run ended (or was stopped).
    pub fn finish(&self) {
        let mut s = self.state();
        s.finished = true;
        s.sample_wall(true);
    }

    /// The current snapshot for the page.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.state();
        s.sample_wall(false);
        let mut rows: Vec<&CascadeRow> = s
            .counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .filter_map(|(r, _)| match r {
                ViewRecord::Cascade(row) => Some(row),
                _ => None,
            })
            .collect();
        rows.sort_by_key(|r| (std::cmp::Reverse(r.rank), r.cascade));
        let mut alerted: Vec<&CascadeRow> = rows.iter().filter(|r| r.alerted_at.is_some()).copied().collect();
        alerted.sort_by_key(|r| (std::cmp::Reverse(r.alerted_at), r.cascade));
        Snapshot {
            schema: SCHEMA,
            job: self.job_state(&s),
            thresholds: Thresholds { warning: self.thresholds.warning, critical: self.thresholds.critical },
            cascades: rows.iter().map(|r| cascade_json(r)).collect(),
            alerts: alerted
                .iter()
                .map(|r| AlertJson {
                    cascade: r.cascade.to_string(),
                    window: r.latest().map_or(0, |w| w.window),
                    severity: r.severity,
                    predicted: r.latest().map_or(0.0, |w| unfix(w.default)),
                    time: r.alerted_at.unwrap_or(0),
                })
                .collect(),
            accuracy: s.windows().into_iter().map(|w| (w.to_string(), window_accuracy(&s, w))).collect(),
            are_series: s.are_series.iter().map(|(w, v)| (w.to_string(), v.iter().copied().collect())).collect(),
            process: ProcessState {
                series: s.wall.iter().copied().collect(),
                uptime_seconds: self.created.elapsed().as_secs_f64(),
            },
        }
    }

    fn job_state(&self, s: &State) -> JobState {
        let state = match (s.finished, self.kind) {
            (true, _) => "finished",
            (false, JobKind::Replay) => "replaying",
            (false, JobKind::Live) => "live",
        };
        let rejected = crate::records::RejectReason::ALL.iter().map(|r| (r.as_str(), s.health(Health::Rejected(*r)))).collect();
        let alerts = Severity::ALL.iter().map(|v| (v.as_str(), s.health(Health::Alerts(*v)))).collect();
        JobState {
            state,
            watermark: s.watermark,
            newest_event: s.newest(),
            lag: s.lag(),
            workers: s.health(Health::Workers),
            events_in: s.health(Health::EventsIn),
            rejected,
            predictions: s.health(Health::Predictions),
            alerts,
            terminated: s.health(Health::Terminated),
            checkpoint_parts: s.health(Health::CheckpointParts),
        }
    }
}

fn unfix(x: i64) -> f64 {
    x as f64 / 100.0
}

fn window_accuracy(s: &State, window: Time) -> WindowAccuracy {
    let models = ModelName::ALL
        .iter()
        .map(|m| {
            let buckets = s.are_buckets(window, *m);
            (m.as_str(), ModelAccuracy { count: buckets.iter().map(|(_, c)| c).sum(), median_are: median(&buckets) })
        })
        .collect();
    let count = |covered| s.counts.get(&ViewRecord::Coverage { window, covered }).copied().unwrap_or(0) as i64;
    let (inside, outside) = (count(true), count(false));
    let with_interval = inside + outside;
    WindowAccuracy { models, with_interval, coverage: (with_interval > 0).then(|| inside as f64 / with_interval as f64) }
}

fn cascade_json(r: &CascadeRow) -> CascadeJson {
    let windows: Vec<WindowJson> = r
        .windows
        .iter()
        .map(|w| {
            let mut models = BTreeMap::new();
            models.insert(ModelName::Default.as_str(), unfix(w.default));
            models.insert(ModelName::Hawkes.as_str(), unfix(w.hawkes));
            models.insert(ModelName::Course.as_str(), unfix(w.course));
            if let Some(x) = w.seismic {
                models.insert(ModelName::Seismic.as_str(), unfix(x));
            }
            if let Some(x) = w.seismic_corrected {
                models.insert(ModelName::SeismicCorrected.as_str(), unfix(x));
            }
            WindowJson {
                window: w.window,
                events: w.events,
                made_at: w.made_at,
                predictor: w.predictor.as_str(),
                interval: w.interval.map(|(low, high)| IntervalJson { low: unfix(low), high: unfix(high) }),
                models,
                severity: w.severity,
                are: w.are.map(unfix),
            }
        })
        .collect();
    let latest = windows.last().cloned();
    CascadeJson {
        cascade: r.cascade.to_string(),
        start: r.start,
        msg: r.msg.clone(),
        window: latest.as_ref().map_or(0, |w| w.window),
        events: latest.as_ref().map_or(0, |w| w.events),
        predicted: latest.as_ref().and_then(|w| w.models.get("default").copied()).unwrap_or(0.0),
        interval: latest.as_ref().and_then(|w| w.interval.clone()),
        predictor: latest.as_ref().map_or("fallback", |w| w.predictor),
        severity: r.severity,
        alerted_at: r.alerted_at,
        final_size: r.final_size,
        ended_at: r.ended_at,
        are: latest.as_ref().and_then(|w| w.are),
        windows,
        curve: r.curve.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_come_from_bucket_midpoints_and_empty_is_none() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[(5, 1), (10, 3)]), Some(0.21));
        assert_eq!(median(&[(0, 2), (50, 1)]), Some(0.01));
    }

    #[test]
    fn updates_add_up_and_the_job_finishes() {
        let v = LiveView::new(JobKind::Replay, AlertThresholds { warning: 1.0, critical: 2.0 });
        v.apply(60, vec![(ViewRecord::Health(Health::EventsIn), 10), (ViewRecord::Newest { worker: 0, time: 100 }, 1)]);
        v.apply(120, vec![(ViewRecord::Health(Health::EventsIn), 5)]);
        let s = v.snapshot();
        assert_eq!((s.job.state, s.job.events_in, s.job.watermark, s.job.lag), ("replaying", 15, Some(120), Some(0)));
        v.apply(180, vec![(ViewRecord::Newest { worker: 0, time: 100 }, -1), (ViewRecord::Newest { worker: 0, time: 400 }, 1)]);
        v.finish();
        let s = v.snapshot();
        assert_eq!((s.job.state, s.job.newest_event, s.job.lag), ("finished", Some(400), Some(220)));
    }
}
