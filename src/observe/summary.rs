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
    are_seismic: Vec<f64>,
    seismic_infinite: u64,
    are_seismic_corrected: Vec<f64>,
    seismic_uncorrected: u64,
    samples: u64,
    excluded: u64,
    models: u64,
}

/// Folds summary events.
#[derive(Debug, Clone, Default)]
pub struct SummaryAccumulator {
    windows: BTreeMap<Time, WindowAcc>,
    terminated: u64,
    rejected: BTreeMap<RejectReason, u64>,
    events: u64,
}

impl SummaryAccumulator {
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
                w.alerts += u64::from(alert);
            }
            SummaryEvent::Accuracy { t_obs, are, are_hawkes, are_seismic, are_seismic_corrected } => {
                let w = self.windows.entry(t_obs).or_default();
                w.are.push(are);
                w.are_hawkes.push(are_hawkes);
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
    /// Accuracy of the corrected prediction.
    pub are: AreReport,
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

impl RunReport {
    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:>6} {:>9} {:>11} {:>15} {:>15} {:>15} {:>15} {:>15} {:>17} {:>7}\n",
            "T_obs",
            "cascades",
            "predictions",
            "ARE hawkes mean",
            "ARE hawkes med",
            "ARE RF mean",
            "ARE RF med",
            "ARE SEISMIC med",
            "ARE SEISMIC+c med",
            "alerts"
        ));
        for w in &self.windows {
            s.push_str(&format!(
                "{:>6} {:>9} {:>11} {:>15.3} {:>15.3} {:>15.3} {:>15.3} {:>15} {:>17} {:>7}\n",
                w.t_obs,
                w.cascades,
                w.predictions,
                w.are_hawkes.mean,
                w.are_hawkes.median,
                w.are.mean,
                w.are.median,
                format!("{:.3}{}", w.are_seismic.median, if w.seismic_infinite > 0 { format!(" (+{}∞)", w.seismic_infinite) } else { String::new() }),
                format!(
                    "{:.3}{}",
                    w.are_seismic_corrected.median,
                    if w.seismic_uncorrected > 0 { format!(" (+{}–)", w.seismic_uncorrected) } else { String::new() }
                ),
                w.alerts
            ));
        }
        let rate = if self.seconds > 0.0 { self.events as f64 / self.seconds } else { 0.0 };
        s.push_str(&format!(
            "{} events in {:.3} s ({:.0} events/s); {} cascades terminated",
            self.events, self.seconds, rate, self.terminated
        ));
        let rejected: u64 = self.rejected.values().sum();
        if rejected > 0 {
            s.push_str(&format!("; {rejected} events rejected {:?}", self.rejected));
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
        let events = vec![
            SummaryEvent::Accuracy { t_obs: 600, are: 0.1, are_hawkes: 0.3, are_seismic: Some(0.5), are_seismic_corrected: None },
            SummaryEvent::Accuracy { t_obs: 600, are: 0.7, are_hawkes: 0.2, are_seismic: None, are_seismic_corrected: Some(0.3) },
            SummaryEvent::Accuracy { t_obs: 600, are: 0.2, are_hawkes: 0.9, are_seismic: Some(0.4), are_seismic_corrected: Some(0.1) },
            SummaryEvent::Prediction { t_obs: 600, fit_ok: true, alert: true, at_bound: false },
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
        assert!(r.table().contains("ARE SEISMIC+c med"));
        assert!(r.table().contains("600"));
    }
}
