//! Joins predictions with final sizes: the accuracy of each prediction and, from it, a
//! training sample for the window's forest (SPEC §4.2).
//!
//! Both inputs are sharded by cascade, so the join is local. A timely operator with hash
//! maps that delete on match is used rather than a differential `join`: each cascade has
//! exactly one final size and no revisions, so an arrangement would only add memory.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use tweetoscope_model::stats::are;

use super::Builder;
use crate::messages::{json, CascadeId, FinalSize, OutputRecord, Prediction, Sample, StatRecord, Topic};
use crate::summary::SummaryEvent;
use crate::Time;

/// Why a prediction gave no training sample (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Exclusion {
    /// The fit failed, so there are no features.
    FitFailed,
    /// G1 = 0: the target W is undefined.
    ZeroG1,
    /// n* ≥ 1: the Hawkes tail diverges.
    Supercritical,
    /// The true size is below the observed count (W < 0).
    NegativeTarget,
    /// A non-finite feature or target.
    NonFinite,
}

impl Exclusion {
    /// Stable name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::FitFailed => "fit_failed",
            Exclusion::ZeroG1 => "zero_g1",
            Exclusion::Supercritical => "supercritical",
            Exclusion::NegativeTarget => "negative_target",
            Exclusion::NonFinite => "non_finite",
        }
    }
}

/// What the join emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The accuracy of one prediction.
    Stat(StatRecord),
    /// A training sample.
    Sample(Sample),
    /// A prediction that gives no sample, and why.
    Excluded { t_obs: Time, reason: Exclusion },
}

impl Outcome {
    /// The summary event of this outcome.
    pub fn summary_event(&self) -> Option<SummaryEvent> {
        match self {
            Outcome::Stat(s) => Some(SummaryEvent::Accuracy {
                t_obs: s.t_obs,
                are: s.are,
                are_hawkes: s.are_hawkes,
                are_seismic: s.are_seismic,
                are_seismic_corrected: s.are_seismic_corrected,
            }),
            Outcome::Excluded { t_obs, reason } => Some(SummaryEvent::SampleExcluded { t_obs: *t_obs, reason: *reason }),
            Outcome::Sample(s) => Some(SummaryEvent::SampleMade { t_obs: s.t_obs }),
        }
    }

    /// The `stats` record of this outcome, if it is one.
    pub fn stat_record(self) -> Option<OutputRecord> {
        match self {
            Outcome::Stat(s) => Some(OutputRecord {
                sort_key: (Topic::Stats, s.cascade, s.t_obs, 0),
                key: None,
                value: json::stat(&s),
            }),
            _ => None,
        }
    }
}

/// The outcomes of one prediction once the true size is known.
pub fn outcomes_of(prediction: &Prediction, n_true: usize, out: &mut Vec<Outcome>) {
    let truth = n_true as f64;
    let (cascade, t_obs) = (prediction.cascade, prediction.t_obs);
    if let (Some(are), Some(are_hawkes)) = (are(prediction.n_pred, truth), are(prediction.n_hawkes, truth)) {
        let are_seismic = prediction.n_seismic.and_then(|n| tweetoscope_model::stats::are(n, truth));
        out.push(Outcome::Stat(StatRecord {
            cascade,
            t_obs,
            n_obs: prediction.n,
            n_true,
            n_pred: prediction.n_pred,
            are,
            n_hawkes: prediction.n_hawkes,
            are_hawkes,
            n_seismic: prediction.n_seismic,
            are_seismic,
            n_seismic_corrected: prediction.n_seismic_corrected,
            are_seismic_corrected: prediction.n_seismic_corrected.and_then(|n| tweetoscope_model::stats::are(n, truth)),
            omega: prediction.omega,
            model_samples: prediction.model_samples,
        }));
    }
    let Some(fit) = prediction.fit else {
        out.push(Outcome::Excluded { t_obs, reason: Exclusion::FitFailed });
        return;
    };
    let n = prediction.n as f64;
    let reason = if fit.n_star >= 1.0 {
        Some(Exclusion::Supercritical)
    } else if !(fit.g1 > 1e-12) {
        Some(Exclusion::ZeroG1)
    } else if truth < n {
        Some(Exclusion::NegativeTarget)
    } else {
        None
    };
    if let Some(reason) = reason {
        out.push(Outcome::Excluded { t_obs, reason });
        return;
    }
    let x = [fit.beta, fit.n_star, fit.g1];
    let w = (truth - n) * (1.0 - fit.n_star) / fit.g1;
    if x.iter().chain([&w]).all(|v| v.is_finite()) {
        out.push(Outcome::Sample(Sample { cascade, t_obs, x, w, seismic: seismic_sample(prediction, n_true) }));
    } else {
        out.push(Outcome::Excluded { t_obs, reason: Exclusion::NonFinite });
    }
}

/// The SEISMIC correction's training sample of a prediction whose true size is known: its
/// features (R_T, F_T, p̂_T, all finite and ≥ 0) and the true size (≥ 1).
pub fn seismic_sample(prediction: &Prediction, n_true: usize) -> Option<(tweetoscope_model::seismic::SeismicPrediction, f64)> {
    let f = prediction.seismic?;
    let ok = [f.r_t, f.f_t, f.p_hat].iter().all(|v| v.is_finite() && *v >= 0.0) && n_true >= 1;
    ok.then_some((f, n_true as f64))
}

/// The join of predictions and final sizes, per cascade.
pub fn outcome<'s>(
    predictions: StreamVec<'s, Time, Prediction>,
    finals: StreamVec<'s, Time, FinalSize>,
) -> StreamVec<'s, Time, Outcome> {
    predictions.binary::<_, Builder<Outcome>, _, _, _, _>(finals, Pipeline, Pipeline, "Outcome", |_cap, _info| {
        // Predictions waiting for their cascade's final size.
        let mut waiting: HashMap<(CascadeId, Time), Prediction> = HashMap::new();
        // Final sizes waiting for predictions: (size, its time, windows still expected).
        let mut sizes: HashMap<CascadeId, (usize, Time, Vec<Time>)> = HashMap::new();
        let mut out = Vec::new();
        // Outcomes are emitted at the final size's time, which is never earlier than the
        // prediction's (termination comes after every window): the same time whichever
        // input arrives first, so that downstream training does not depend on scheduling.
        move |pred_in, final_in, output| {
            final_in.for_each_stamp(|cap, data| {
                for f in data.flat_map(|d| d.drain(..)) {
                    let mut pending = Vec::new();
                    for w in f.windows {
                        match waiting.remove(&(f.cascade, w)) {
                            Some(p) => outcomes_of(&p, f.n_tot, &mut out),
                            None => pending.push(w),
                        }
                    }
                    if !pending.is_empty() {
                        let time = *cap.least().expect("a message has a time");
                        sizes.insert(f.cascade, (f.n_tot, time, pending));
                    }
                }
                output.session(&cap).give_iterator(out.drain(..));
            });
            pred_in.for_each_stamp(|cap, data| {
                for p in data.flat_map(|d| d.drain(..)) {
                    match sizes.get_mut(&p.cascade) {
                        Some((n_tot, final_time, windows)) if windows.contains(&p.t_obs) => {
                            outcomes_of(&p, *n_tot, &mut out);
                            let at = cap.delayed(final_time, 0);
                            output.session(&at).give_iterator(out.drain(..));
                            windows.retain(|w| *w != p.t_obs);
                            if windows.is_empty() {
                                sizes.remove(&p.cascade);
                            }
                        }
                        _ => {
                            waiting.insert((p.cascade, p.t_obs), p);
                        }
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::FitSummary;

    fn prediction(fit: Option<FitSummary>) -> Prediction {
        Prediction {
            cascade: 1,
            t_obs: 600,
            msg: String::new(),
            n: 10,
            fit,
            n_hawkes: 20.0,
            n_seismic: None,
            seismic: None,
            n_seismic_corrected: None,
            n_pred: 20.0,
            omega: 1.0,
            model_version: None,
            model_samples: 0,
        }
    }

    #[test]
    fn sample_target_follows_the_formula() {
        let fit = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 20.0, at_bound: false };
        let mut out = Vec::new();
        outcomes_of(&prediction(Some(fit)), 30, &mut out);
        assert!(matches!(&out[0], Outcome::Stat(s) if (s.are - 1.0 / 3.0).abs() < 1e-12 && s.n_true == 30));
        assert!(matches!(&out[1], Outcome::Sample(s) if s.w == (30.0 - 10.0) * 0.5 / 5.0));
    }

    #[test]
    fn samples_carry_the_seismic_features_and_the_stat_its_corrected_are() {
        use tweetoscope_model::seismic::SeismicPrediction;
        let fit = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 20.0, at_bound: false };
        let f = SeismicPrediction { r_t: 9.0, f_t: 3.0, p_hat: 0.002, n_hat: Some(12.0), final_size: Some(13.0) };
        let p = Prediction { seismic: Some(f), n_seismic_corrected: Some(24.0), ..prediction(Some(fit)) };
        let mut out = Vec::new();
        outcomes_of(&p, 30, &mut out);
        assert!(matches!(&out[0], Outcome::Stat(s) if s.are_seismic_corrected == Some(0.2)));
        assert!(matches!(&out[1], Outcome::Sample(s) if s.seismic == Some((f, 30.0))));
        let bad = SeismicPrediction { f_t: f64::NAN, ..f };
        assert_eq!(seismic_sample(&Prediction { seismic: Some(bad), ..prediction(Some(fit)) }, 30), None);
    }

    #[test]
    fn degenerate_cases_are_excluded_not_sampled() {
        let mut out = Vec::new();
        let zero = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 0.0, n_hawkes: 10.0, at_bound: false };
        outcomes_of(&prediction(Some(zero)), 30, &mut out);
        outcomes_of(&prediction(None), 30, &mut out);
        let shrunk = FitSummary { g1: 3.0, ..zero };
        outcomes_of(&prediction(Some(shrunk)), 5, &mut out);
        let reasons: Vec<_> =
            out.iter().filter_map(|o| if let Outcome::Excluded { reason, .. } = o { Some(*reason) } else { None }).collect();
        assert_eq!(reasons, vec![Exclusion::ZeroG1, Exclusion::FitFailed, Exclusion::NegativeTarget]);
    }
}
