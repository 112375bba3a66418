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
use crate::io::schema::{self, StatRecordJson};
use crate::records::{
    CascadeId, CourseSample, Exclusion, FinalSize, LearnedSample, Outcome, OutputRecord, Prediction, Sample, StatRecord, Topic,
};
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
                are_course: s.are_course,
                are_seismic: s.are_seismic,
                are_seismic_corrected: s.are_seismic_corrected,
                covered: s.interval.map(|i| i.low <= s.n_true as f64 && s.n_true as f64 <= i.high),
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
                value: schema::to_json(&StatRecordJson::of(&s)),
            }),
            _ => None,
        }
    }
}

/// The accuracy of a prediction whose cascade ended as `f` (`None` for a training-only
/// partial, or when a size is not finite).
fn stat_of(p: &Prediction, f: &FinalSize) -> Option<StatRecord> {
    if p.training_only {
        return None;
    }
    let truth = f.n_tot as f64;
    Some(StatRecord {
        cascade: p.cascade,
        t_obs: p.t_obs,
        n_obs: p.n,
        n_true: f.n_tot,
        predicted_at: p.start + p.t_obs,
        ended_at: f.ended_at,
        n_pred: p.n_pred,
        are: are(p.n_pred, truth)?,
        predictor: p.predictor,
        interval: p.interval,
        n_hawkes: p.n_hawkes,
        are_hawkes: are(p.n_hawkes, truth)?,
        n_course: p.n_course,
        are_course: are(p.n_course, truth)?,
        n_seismic: p.n_seismic,
        are_seismic: p.n_seismic.and_then(|n| are(n, truth)),
        n_seismic_corrected: p.n_seismic_corrected,
        are_seismic_corrected: p.n_seismic_corrected.and_then(|n| are(n, truth)),
        omega: p.omega,
        model_samples: p.model_samples,
    })
}

/// The course forest's sample of a prediction (SPEC §4.2): X = (β, n*, G1),
/// W = (N_true − n)(1 − n*)/G1, or why there is none.
fn course_sample(p: &Prediction, n_true: usize) -> Result<CourseSample, Exclusion> {
    let fit = p.fit.ok_or(Exclusion::FitFailed)?;
    let (n, truth) = (p.n as f64, n_true as f64);
    if fit.n_star >= 1.0 {
        return Err(Exclusion::Supercritical);
    }
    if fit.g1.is_nan() || fit.g1 <= 1e-12 {
        return Err(Exclusion::ZeroG1);
    }
    if truth < n {
        return Err(Exclusion::NegativeTarget);
    }
    let x = [fit.beta, fit.n_star, fit.g1];
    let w = (truth - n) * (1.0 - fit.n_star) / fit.g1;
    if x.iter().chain([&w]).all(|v| v.is_finite()) {
        Ok(CourseSample { x, w })
    } else {
        Err(Exclusion::NonFinite)
    }
}

/// The outcomes of one prediction once its cascade ended as `f`: its accuracy (not for a
/// training-only partial), its training sample (the learned layer's, the course forest's and
/// SEISMIC's correction's), and why the course forest got none, if it did not.
pub fn outcomes_of(p: &Prediction, f: &FinalSize, out: &mut Vec<Outcome>) {
    let n_true = f.n_tot;
    if let Some(stat) = stat_of(p, f) {
        out.push(Outcome::Stat(stat));
    }
    let course = match course_sample(p, n_true) {
        Ok(sample) => Some(sample),
        Err(reason) => {
            out.push(Outcome::Excluded { t_obs: p.t_obs, reason });
            None
        }
    };
    let learned = (n_true >= p.n && p.features.iter().all(|v| v.is_finite())).then_some(LearnedSample {
        features: p.features,
        n_obs: p.n,
        n_true,
    });
    let residual = (!p.training_only && n_true >= 1)
        .then(|| (n_true as f64 / p.n.max(1) as f64).ln() - p.log_ratio())
        .filter(|r| r.is_finite());
    let seismic = seismic_sample(p, n_true);
    if learned.is_some() || course.is_some() || seismic.is_some() {
        out.push(Outcome::Sample(Sample { cascade: p.cascade, t_obs: p.t_obs, learned, course, seismic, residual }));
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
                            outcomes_of(&p, &f, &mut self.out);
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
    use crate::records::{FitSummary, Predictor};
    use tweetoscope_model::predictive::{Interval, N_FEATURES};

    fn prediction(fit: Option<FitSummary>) -> Prediction {
        Prediction {
            cascade: 1,
            t_obs: 600,
            msg: String::new(),
            n: 10,
            start: 1000,
            training_only: false,
            fit,
            features: [0.5; N_FEATURES],
            n_pred: 20.0,
            predictor: Predictor::Fallback,
            interval: Some(Interval { low: 12.0, high: 40.0 }),
            model_version: None,
            model_samples: 0,
            n_hawkes: 20.0,
            n_course: 20.0,
            omega: 1.0,
            n_seismic: None,
            seismic: None,
            n_seismic_corrected: None,
        }
    }

    fn ended(n_tot: usize) -> FinalSize {
        FinalSize { cascade: 1, n_tot, t_end: 900, windows: vec![600], ended_at: 3700 }
    }

    #[test]
    fn a_stat_and_both_samples_follow_the_formulas() {
        let fit = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 20.0, at_bound: false };
        let mut out = Vec::new();
        outcomes_of(&prediction(Some(fit)), &ended(30), &mut out);
        let Outcome::Stat(s) = &out[0] else { panic!("{out:?}") };
        assert!((s.are - 1.0 / 3.0).abs() < 1e-12 && s.n_true == 30);
        assert_eq!((s.predicted_at, s.ended_at), (1600, 3700));
        let Outcome::Sample(x) = &out[1] else { panic!("{out:?}") };
        assert_eq!(x.course.unwrap().w, (30.0 - 10.0) * 0.5 / 5.0);
        assert_eq!(x.learned.unwrap().n_true, 30);
        // y − ŷ = ln 3 − ln 2.
        assert!((x.residual.unwrap() - 1.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn samples_carry_the_seismic_features_and_the_stat_its_corrected_are() {
        use tweetoscope_model::seismic::SeismicPrediction;
        let fit = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 20.0, at_bound: false };
        let f = SeismicPrediction { r_t: 9.0, f_t: 3.0, p_hat: 0.002, n_hat: Some(12.0), final_size: Some(13.0) };
        let p = Prediction { seismic: Some(f), n_seismic_corrected: Some(24.0), ..prediction(Some(fit)) };
        let mut out = Vec::new();
        outcomes_of(&p, &ended(30), &mut out);
        assert!(matches!(&out[0], Outcome::Stat(s) if s.are_seismic_corrected == Some(0.2)));
        assert!(matches!(&out[1], Outcome::Sample(s) if s.seismic == Some((f, 30.0))));
        let bad = SeismicPrediction { f_t: f64::NAN, ..f };
        assert_eq!(seismic_sample(&Prediction { seismic: Some(bad), ..prediction(Some(fit)) }, 30), None);
    }

    #[test]
    fn degenerate_fits_give_no_course_sample_but_still_a_learned_one() {
        let mut out = Vec::new();
        let zero = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 0.0, n_hawkes: 10.0, at_bound: false };
        outcomes_of(&prediction(Some(zero)), &ended(30), &mut out);
        outcomes_of(&prediction(None), &ended(30), &mut out);
        let shrunk = FitSummary { g1: 3.0, ..zero };
        outcomes_of(&prediction(Some(shrunk)), &ended(5), &mut out);
        let reasons: Vec<_> =
            out.iter().filter_map(|o| if let Outcome::Excluded { reason, .. } = o { Some(*reason) } else { None }).collect();
        assert_eq!(reasons, vec![Exclusion::ZeroG1, Exclusion::FitFailed, Exclusion::NegativeTarget]);
        let learned = out.iter().filter(|o| matches!(o, Outcome::Sample(s) if s.learned.is_some())).count();
        assert_eq!(learned, 2, "a shrunk cascade (5 < 10 observed) gives no learned sample");
    }

    #[test]
    fn a_training_only_partial_gives_a_sample_and_nothing_else() {
        let fit = FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 20.0, at_bound: false };
        let mut out = Vec::new();
        outcomes_of(&Prediction { training_only: true, ..prediction(Some(fit)) }, &ended(30), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(&out[0], Outcome::Sample(s) if s.learned.is_some() && s.residual.is_none()));
    }
}
