//! The run summary: per observation window, how many cascades, predictions and alerts, and
//! the accuracy of plain Hawkes and of the corrected prediction.
//!
//! Stages emit small [`SummaryEvent`]s; one accumulator (on worker 0) folds them. Statistics
//! are computed from sorted values, so the figures do not depend on arrival order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tweetoscope_model::stats::Summary;

use crate::records::RejectReason;
use crate::telemetry::SummaryEvent;
use crate::Time;

/// Accumulated figures of one window.
#[derive(Debug, Clone, Default)]
struct WindowAcc {
    partials: u64,
    too_small: u64,
    predictions: u64,
    fits_failed: u64,
    at_bound: u64,
    alerts: u64,
    are: Vec<f64>,
    are_hawkes: Vec<f64>,
    are_course: Vec<f64>,
    are_seismic: Vec<f64>,
    seismic_infinite: u64,
    are_seismic_corrected: Vec<f64>,
    seismic_uncorrected: u64,
    samples: u64,
    excluded: u64,
    models: u64,
    /// Predictions with an interval whose true size is known, and how many it covered.
    with_interval: u64,
    covered: u64,
}

/// Folds summary events.
#[derive(Debug, Clone)]
pub struct SummaryAccumulator {
    windows: BTreeMap<Time, WindowAcc>,
    terminated: u64,
    rejected: BTreeMap<RejectReason, u64>,
    events: u64,
    /// Nominal coverage of the intervals (`predictor.interval_level`), for the report.
    interval_level: f64,
}

impl Default for SummaryAccumulator {
    fn default() -> Self {
        Self::new(0.8)
    }
}

impl SummaryAccumulator {
    /// An empty summary of a run whose intervals have nominal coverage `interval_level`.
    pub fn new(interval_level: f64) -> Self {
        Self { windows: BTreeMap::new(), terminated: 0, rejected: BTreeMap::new(), events: 0, interval_level }
    }

    /// Folds one event.
    pub fn add(&mut self, e: SummaryEvent) {
        match e {
            SummaryEvent::Input { events } => self.events += events,
            SummaryEvent::Partial { t_obs } => self.windows.entry(t_obs).or_default().partials += 1,
            SummaryEvent::TooSmall { t_obs } => self.windows.entry(t_obs).or_default().too_small += 1,
            SummaryEvent::Terminated => self.terminated += 1,
            SummaryEvent::Rejected { reason, count } => *self.rejected.entry(reason).or_default() += count,
            SummaryEvent::Prediction { t_obs, fit_ok, alert, at_bound } => {
                let w = self.windows.entry(t_obs).or_default();
                w.predictions += 1;
                w.at_bound += u64::from(at_bound);
                w.fits_failed += u64::from(!fit_ok);
                w.alerts += u64::from(alert.is_some());
            }
            SummaryEvent::Accuracy { t_obs, are, are_hawkes, are_course, are_seismic, are_seismic_corrected, covered } => {
                let w = self.windows.entry(t_obs).or_default();
                w.are.push(are);
                w.are_hawkes.push(are_hawkes);
                w.are_course.push(are_course);
                if let Some(c) = covered {
                    w.with_interval += 1;
                    w.covered += u64::from(c);
                }
                match are_seismic {
                    Some(a) => w.are_seismic.push(a),
                    None => w.seismic_infinite += 1,
                }
                match are_seismic_corrected {
                    Some(a) => w.are_seismic_corrected.push(a),
                    None => w.seismic_uncorrected += 1,
                }
            }
            SummaryEvent::SampleMade { t_obs } => self.windows.entry(t_obs).or_default().samples += 1,
            SummaryEvent::SampleExcluded { t_obs, .. } => self.windows.entry(t_obs).or_default().excluded += 1,
            SummaryEvent::ModelTrained { t_obs, .. } => self.windows.entry(t_obs).or_default().models += 1,
        }
    }

    /// The report, given the run's wall time.
    pub fn report(&self, seconds: f64) -> RunReport {
        let events = self.events;
        let windows = self
            .windows
            .iter()
            .map(|(t_obs, w)| WindowReport {
                t_obs: *t_obs,
                cascades: w.partials,
                too_small: w.too_small,
                predictions: w.predictions,
                fits_failed: w.fits_failed,
                fits_at_bound: w.at_bound,
                are_hawkes: Summary::of(&w.are_hawkes).into(),
                are: Summary::of(&w.are).into(),
                are_course: Summary::of(&w.are_course).into(),
                interval: IntervalReport {
                    level: self.interval_level,
                    coverage: (w.with_interval > 0).then(|| w.covered as f64 / w.with_interval as f64),
                    count: w.with_interval,
                },
                are_seismic: Summary::of(&w.are_seismic).into(),
                seismic_infinite: w.seismic_infinite,
                are_seismic_corrected: Summary::of(&w.are_seismic_corrected).into(),
                seismic_uncorrected: w.seismic_uncorrected,
                alerts: w.alerts,
                samples: w.samples,
                samples_excluded: w.excluded,
                models_trained: w.models,
            })
            .collect();
        RunReport {
            windows,
            terminated: self.terminated,
            rejected: self.rejected.iter().map(|(r, n)| (r.as_str().to_owned(), *n)).collect(),
            events,
            seconds,
        }
    }
}

/// ARE statistics of one model at one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AreReport {
    /// Predictions with a known true size.
    pub count: usize,
    /// Mean ARE.
    pub mean: f64,
    /// Median ARE.
    pub median: f64,
    /// 90th percentile of ARE.
    pub p90: f64,
}

impl From<Summary> for AreReport {
    fn from(s: Summary) -> Self {
        Self { count: s.count, mean: s.mean, median: s.median, p90: s.p90 }
    }
}

/// The measured coverage of the prediction intervals at one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    /// Nominal coverage.
    pub level: f64,
    /// Share of the true sizes inside their interval (`null` without any interval yet).
    pub coverage: Option<f64>,
    /// Predictions with an interval whose true size is known.
    pub count: u64,
}

/// The figures of one window (the `--summary` JSON schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// The observation window (s).
    pub t_obs: Time,
    /// Partial cascades emitted (at least `min_cascade_size` events).
    pub cascades: u64,
    /// Cascades too small to estimate at this window.
    pub too_small: u64,
    /// Predictions made.
    pub predictions: u64,
    /// Fits that failed (prediction = observed size).
    pub fits_failed: u64,
    /// Fits whose optimum is on a bound of (p, β).
    pub fits_at_bound: u64,
    /// Accuracy of plain Hawkes.
    pub are_hawkes: AreReport,
    /// Accuracy of the default prediction (the learned layer, or the course forest in
    /// course mode).
    pub are: AreReport,
    /// Accuracy of Hawkes + the course forest.
    pub are_course: AreReport,
    /// How often the default prediction's interval held the true size.
    pub interval: IntervalReport,
    /// Accuracy of the SEISMIC baseline (package defaults, n* = 100), over the predictions
    /// it made finite.
    pub are_seismic: AreReport,
    /// Predictions SEISMIC made infinite (supercritical: p̂·n* ≥ 1), left out of `are_seismic`.
    pub seismic_infinite: u64,
    /// Accuracy of SEISMIC with the paper's correction (α, γ learned online per window from
    /// cascades that had ended), over the predictions it made finite.
    pub are_seismic_corrected: AreReport,
    /// Predictions without a corrected SEISMIC figure (no correction learned yet for the
    /// window, correction off, or γ·p̂ ≥ 1), left out of `are_seismic_corrected`.
    pub seismic_uncorrected: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Training samples made.
    pub samples: u64,
    /// Predictions excluded from training (degenerate).
    pub samples_excluded: u64,
    /// Models trained.
    pub models_trained: u64,
}

/// The whole run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Per window.
    pub windows: Vec<WindowReport>,
    /// Cascades terminated.
    pub terminated: u64,
    /// Rejected events by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Input events replayed.
    pub events: u64,
    /// Wall time of the run (s).
    pub seconds: f64,
}

/// A median ARE for the table: "—" when no prediction of that model has a known outcome
/// (0 would read as perfect).
fn median_cell(a: &AreReport) -> String {
    if a.count == 0 {
        "—".to_owned()
    } else {
        format!("{:.3}", a.median)
    }
}

impl RunReport {
    /// The human-readable table printed at the end of a run (under 100 columns), with a
    /// legend and the notes that explain its cells.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:>5} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>14} {:>6}\n",
            "T_obs", "cascades", "predicted", "default", "Hawkes", "course", "SEISMIC", "SEISMIC+c", "in interval", "alerts"
        );
        let mut notes = Vec::new();
        for w in &self.windows {
            let interval = match w.interval.coverage {
                Some(c) => format!("{:.0} % of {}", 100.0 * c, w.interval.count),
                None => "—".to_owned(),
            };
            s.push_str(&format!(
                "{:>5} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>14} {:>6}\n",
                w.t_obs,
                w.cascades,
                w.predictions,
                median_cell(&w.are),
                median_cell(&w.are_hawkes),
                median_cell(&w.are_course),
                median_cell(&w.are_seismic),
                median_cell(&w.are_seismic_corrected),
                interval,
                w.alerts
            ));
            if w.seismic_infinite > 0 {
                let sizes = if w.seismic_infinite == 1 { "size" } else { "sizes" };
                notes.push(format!("at {} s SEISMIC predicted {} {sizes} infinite (left out)", w.t_obs, w.seismic_infinite));
            }
        }
        s.push_str("median ARE = |predicted − true| / true, per model, once cascades end (— : none yet);\n");
        s.push_str(&format!(
            "default = the run's predictor; in interval = true sizes inside the default's {:.0} % interval\n",
            100.0 * self.windows.first().map_or(0.8, |w| w.interval.level)
        ));
        for note in notes {
            s.push_str(&format!("{note}\n"));
        }
        s.push_str(&self.totals());
        s
    }

    /// The run's totals line, with the rejections explained.
    fn totals(&self) -> String {
        let rate = if self.seconds > 0.0 { self.events as f64 / self.seconds } else { 0.0 };
        let cascades = if self.terminated == 1 { "cascade" } else { "cascades" };
        let mut s = format!(
            "{} events in {:.2} s ({:.0} events/s); {} {cascades} ended",
            self.events, self.seconds, rate, self.terminated
        );
        let rejected: u64 = self.rejected.values().sum();
        if rejected > 0 {
            let reasons: Vec<String> = self.rejected.iter().map(|(r, n)| format!("{n} {}", r.replace('_', " "))).collect();
            s.push_str(&format!(
                "; {rejected} events rejected ({}): retweets after their cascade ended (idle for t_end) or of \
                 a tweet never seen are not part of any cascade",
                reasons.join(", ")
            ));
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_independent_of_event_order() {
        let events = [
            SummaryEvent::Accuracy {
                t_obs: 600,
                are: 0.1,
                are_hawkes: 0.3,
                are_course: 0.3,
                are_seismic: Some(0.5),
                are_seismic_corrected: None,
                covered: Some(true),
            },
            SummaryEvent::Accuracy {
                t_obs: 600,
                are: 0.7,
                are_hawkes: 0.2,
                are_course: 0.2,
                are_seismic: None,
                are_seismic_corrected: Some(0.3),
                covered: Some(false),
            },
            SummaryEvent::Accuracy {
                t_obs: 600,
                are: 0.2,
                are_hawkes: 0.9,
                are_course: 0.9,
                are_seismic: Some(0.4),
                are_seismic_corrected: Some(0.1),
                covered: None,
            },
            SummaryEvent::Prediction {
                t_obs: 600,
                fit_ok: true,
                alert: Some(crate::records::Severity::Warning),
                at_bound: false,
            },
        ];
        let mut a = SummaryAccumulator::default();
        let mut b = SummaryAccumulator::default();
        events.iter().cloned().for_each(|e| a.add(e));
        events.iter().rev().cloned().for_each(|e| b.add(e));
        assert_eq!(a.report(1.0), b.report(1.0));
        let r = a.report(1.0);
        assert_eq!(r.windows[0].are.median, 0.2);
        assert_eq!(r.windows[0].alerts, 1);
        assert_eq!((r.windows[0].are_seismic_corrected.count, r.windows[0].seismic_uncorrected), (2, 1));
        assert_eq!((r.windows[0].interval.count, r.windows[0].interval.coverage), (2, Some(0.5)));
        let table = r.table();
        assert!(table.contains("SEISMIC+c") && table.contains("600") && table.contains("50 % of 2"), "{table}");
        assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    }

    #[test]
    fn an_empty_window_shows_a_dash_not_a_perfect_zero() {
        let mut a = SummaryAccumulator::default();
        a.add(SummaryEvent::Prediction { t_obs: 1200, fit_ok: true, alert: None, at_bound: false });
        let table = a.report(1.0).table();
        let row = table.lines().find(|l| l.trim_start().starts_with("1200")).unwrap();
        assert!(row.contains('—') && !row.contains("0.000"), "{row}");
    }
}
