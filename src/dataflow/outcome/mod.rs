//! Joins predictions with final sizes: the accuracy of each prediction and, from it, a
//! training sample for the window's forest (SPEC §4.2).
//!
//! Both inputs are sharded by cascade, so the join is local. A timely operator with a hash
//! map that deletes on match is used rather than a differential `join`: each cascade has
//! exactly one final size and no revisions, so an arrangement would only add memory.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;
use tweetoscope_model::stats::are;

use super::stash::{both_finite, both_first, complete_before, Hold, TimeStash};
use super::{Builder, Checkpoint};
use crate::checkpoint::{StageCheckpoints, StagePart};
use crate::records::{json, CascadeId, Exclusion, FinalSize, Outcome, OutputRecord, Prediction, Sample, StatRecord, Topic};
use crate::telemetry::SummaryEvent;
use crate::{owns, shard_of, Time};

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


/// The outcome stage's part of a checkpoint at F: predictions made before F whose cascade
/// had not terminated before F.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutcomePart {
    /// Predictions waiting for their cascade's final size.
    pub waiting: Vec<Prediction>,
}

impl StagePart for OutcomePart {
    const STAGE: &'static str = "outcome";
}

/// The outcome stage of one worker: the predictions waiting for their cascade's final size.
struct OutcomeStage {
    /// Predictions by (cascade, window), waiting for the final size.
    waiting: HashMap<(CascadeId, Time), Prediction>,
    /// Predictions by time, until their time is complete.
    predicted: TimeStash<Prediction>,
    /// Final sizes by time, with a capability to emit the outcomes then.
    terminated: TimeStash<FinalSize>,
    /// This stage's checkpoint parts, when checkpointing.
    checkpoints: Option<StageCheckpoints<OutcomePart>>,
    /// Outcomes of the final sizes being processed.
    out: Vec<Outcome>,
}

impl OutcomeStage {
    /// The part (the same at every boundary crossed in one step).
    fn part(&self) -> OutcomePart {
        let mut waiting: Vec<Prediction> = self.waiting.values().cloned().collect();
        waiting.sort_by_key(|p| (p.cascade, p.t_obs));
        OutcomePart { waiting }
    }

    /// Writes the parts of the boundaries up to `upto`.
    fn checkpoint_upto(&mut self, upto: Time) {
        if let Some(mut c) = self.checkpoints.take() {
            c.upto(upto, |_| Some(self.part()));
            self.checkpoints = Some(c);
        }
    }

    /// Processes every complete time in order: its predictions start waiting, then its final
    /// sizes (by cascade) take their predictions and emit the outcomes.
    fn join_complete_times(
        &mut self,
        pred_frontier: &MutableAntichain<Time>,
        final_frontier: &MutableAntichain<Time>,
        output: &mut OutputBuilderSession<'_, Time, Builder<Outcome>>,
    ) {
        let upto = complete_before(pred_frontier, final_frontier);
        let complete = |t: Time| upto.is_none_or(|u| t < u);
        loop {
            let next = [self.predicted.first_time(), self.terminated.first_time()];
            let Some(time) = next.into_iter().flatten().min().filter(|t| complete(*t)) else { break };
            if both_finite(pred_frontier, final_frontier) {
                self.checkpoint_upto(time);
            }
            for p in self.predicted.take(time).map(|p| p.records).unwrap_or_default() {
                self.waiting.insert((p.cascade, p.t_obs), p);
            }
            if let Some(pending) = self.terminated.take(time) {
                let mut finals = pending.records;
                finals.sort_by_key(|f| f.cascade);
                for f in finals {
                    for w in &f.windows {
                        if let Some(p) = self.waiting.remove(&(f.cascade, *w)) {
                            outcomes_of(&p, f.n_tot, &mut self.out);
                        }
                    }
                }
                let cap = pending.capability.expect("final sizes hold a capability");
                output.session(&cap).give_iterator(self.out.drain(..));
            }
        }
        if let Some(upto) = both_first(pred_frontier, final_frontier) {
            self.checkpoint_upto(upto);
        }
    }
}

/// The join of predictions and final sizes, per cascade, in event-time order.
///
/// A cascade's final size comes at its termination, never before any of its predictions
/// (every window ≤ t_end), so processing times in order — predictions of a time before its
/// final sizes — always finds the predictions waiting; outcomes are emitted at the final
/// size's time.
pub fn outcome<'s>(
    predictions: StreamVec<'s, Time, Prediction>,
    finals: StreamVec<'s, Time, FinalSize>,
    checkpoint: Option<Checkpoint>,
) -> StreamVec<'s, Time, Outcome> {
    let (index, peers) = (predictions.scope().index(), predictions.scope().peers());
    predictions.binary_frontier::<_, Builder<Outcome>, _, _, _, _>(finals, Pipeline, Pipeline, "Outcome", move |_cap, _info| {
        let mut waiting = HashMap::new();
        for p in checkpoint.iter().flat_map(|c| c.restored.iter()).flat_map(|r| r.outcome.iter()).flat_map(|o| o.waiting.iter()) {
            if owns(shard_of(p.cascade), index, peers) {
                waiting.insert((p.cascade, p.t_obs), p.clone());
            }
        }
        let mut stage = OutcomeStage {
            waiting,
            predicted: TimeStash::new(),
            terminated: TimeStash::new(),
            checkpoints: checkpoint.map(|c| StageCheckpoints::new(c.checkpointing, index, peers)),
            out: Vec::new(),
        };
        move |(pred_in, pred_frontier), (final_in, final_frontier), output| {
            stage.predicted.absorb(pred_in, Hold::Nothing);
            stage.terminated.absorb(final_in, Hold::Capability);
            stage.join_complete_times(pred_frontier, final_frontier, output);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::FitSummary;

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
