//! The `predict` stage: applies each window's latest model to the estimates, in event time.
//!
//! An estimate at time `t` is predicted once the models' frontier has passed `t`, with the
//! models whose (delayed) time is ≤ `t`: a model trained at event time `v` arrives through the
//! feedback loop at `v + δ`, so predictions depend on event time only, never on scheduling.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;
use tweetoscope_model::seismic::SeismicPrediction;

use super::stash::{both_finite, both_first, passed, Hold, TimeStash};
use super::{Builder, Checkpoint};
use crate::checkpoint::{StageCheckpoints, StagePart};
use crate::records::{Estimate, Model, Prediction};
use crate::Time;

/// The predict stage's part of a checkpoint at F: the model in use per window once every
/// model timed before F is applied (models timed at or after F come back from the train
/// stage's part). Every worker holds the same models, so only worker 0's part has them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PredictPart {
    /// The latest model of each window.
    pub models: Vec<Model>,
}

impl StagePart for PredictPart {
    const STAGE: &'static str = "predict";
}

/// The prediction for one estimate given the window's current model, if any.
///
/// N = n + ω·G1/(1 − n*) with ω from the forest (1 without a model). A non-finite or
/// negative ω falls back to 1 and the prediction never goes below n.
pub fn predict_one(estimate: Estimate, model: Option<&Model>) -> Prediction {
    let n = estimate.n as f64;
    let (n_hawkes, n_pred, omega, version) = match (&estimate.fit, model) {
        (None, _) => (n, n, 1.0, None),
        (Some(fit), model) => {
            let omega = model
                .map(|m| m.forest.predict(&[fit.beta, fit.n_star, fit.g1]))
                .filter(|w| w.is_finite() && *w >= 0.0)
                .unwrap_or(1.0);
            let tail = fit.g1 / (1.0 - fit.n_star);
            let n_pred = n + omega * tail;
            let n_pred = if n_pred.is_finite() { n_pred } else { fit.n_hawkes };
            (fit.n_hawkes, n_pred, omega, model.map(|m| m.version))
        }
    };
    Prediction {
        cascade: estimate.cascade,
        t_obs: estimate.t_obs,
        msg: estimate.msg,
        n: estimate.n,
        fit: estimate.fit,
        n_hawkes,
        n_seismic: estimate.n_seismic,
        seismic: estimate.seismic,
        n_seismic_corrected: seismic_corrected(estimate.seismic.as_ref(), model),
        n_pred,
        omega,
        model_version: version,
        model_samples: if version.is_some() { model.map_or(0, |m| m.n_samples) } else { 0 },
    }
}

/// SEISMIC with the window's learned correction (α, γ): N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T).
/// `None` without features, without a correction in the model, or when γ·p̂_T ≥ 1 (the
/// corrected model calls the cascade supercritical); never NaN or infinite.
pub fn seismic_corrected(features: Option<&SeismicPrediction>, model: Option<&Model>) -> Option<f64> {
    let correction = model?.seismic?;
    correction.final_size(features?).filter(|n| n.is_finite())
}

/// The predict stage of one worker: the model in use per window, the models not yet due,
/// and the estimates waiting for the models' frontier.
struct PredictStage {
    /// The latest model of each window.
    current: HashMap<Time, Model>,
    /// Models by the (delayed) time from which they apply.
    models: TimeStash<Model>,
    /// Estimates by time, with a capability to emit their predictions then.
    estimates: TimeStash<Estimate>,
    /// This stage's checkpoint parts, when checkpointing.
    checkpoints: Option<StageCheckpoints<PredictPart>>,
    /// This worker (worker 0 writes the models into its part).
    index: usize,
}

impl PredictStage {
    /// Applies every pending model timed at or before `upto`, in (window, version) order.
    fn apply_models(&mut self, upto: Time) {
        while let Some((_, pending)) = self.models.pop_if(|t| t <= upto) {
            let mut models = pending.records;
            models.sort_by_key(|m| (m.t_obs, m.version));
            for m in models {
                self.current.insert(m.t_obs, m);
            }
        }
    }

    /// The part at boundary F: every model timed before F applied (worker 0 writes them).
    fn part_at(&mut self, f: Time) -> PredictPart {
        self.apply_models(f - 1);
        let mut models: Vec<Model> = if self.index == 0 { self.current.values().cloned().collect() } else { Vec::new() };
        models.sort_by_key(|m| m.t_obs);
        PredictPart { models }
    }

    /// Writes the parts of the boundaries up to `upto`.
    fn checkpoint_upto(&mut self, upto: Time) {
        if let Some(mut c) = self.checkpoints.take() {
            c.upto(upto, |f| Some(self.part_at(f)));
            self.checkpoints = Some(c);
        }
    }

    /// Predicts every estimate whose time both frontiers have passed, with the models due
    /// by then, in (cascade, window) order.
    fn predict_complete_times(
        &mut self,
        est_frontier: &MutableAntichain<Time>,
        model_frontier: &MutableAntichain<Time>,
        output: &mut OutputBuilderSession<'_, Time, Builder<Prediction>>,
    ) {
        let ready = |t: Time| passed(est_frontier, t) && passed(model_frontier, t);
        while let Some(time) = self.estimates.first_time().filter(|t| ready(*t)) {
            if both_finite(est_frontier, model_frontier) {
                self.checkpoint_upto(time);
            }
            self.apply_models(time);
            let pending = self.estimates.take(time).expect("just seen");
            let mut batch = pending.records;
            batch.sort_by_key(|e| (e.cascade, e.t_obs));
            let mut session = output.session(pending.capability.as_ref().expect("estimates hold a capability"));
            for estimate in batch {
                let model = self.current.get(&estimate.t_obs);
                session.give(predict_one(estimate, model));
            }
        }
        if let Some(upto) = both_first(est_frontier, model_frontier) {
            self.checkpoint_upto(upto);
        }
    }
}

/// Joins estimates with the models stream (broadcast to every worker).
pub fn predict<'s>(
    estimates: StreamVec<'s, Time, Estimate>,
    models: StreamVec<'s, Time, Model>,
    initial: Vec<Model>,
    checkpoint: Option<Checkpoint>,
) -> StreamVec<'s, Time, Prediction> {
    let (index, peers) = (estimates.scope().index(), estimates.scope().peers());
    estimates.binary_frontier::<_, Builder<Prediction>, _, _, _, _>(models, Pipeline, Pipeline, "Predict", move |_cap, _info| {
        // Warm start: the latest model of each window read back from the models topic; a
        // restored checkpoint's models take precedence.
        let mut current: HashMap<Time, Model> = initial.into_iter().map(|m| (m.t_obs, m)).collect();
        if let Some(restored) = checkpoint.as_ref().and_then(|c| c.restored.as_ref()) {
            current.clear();
            for m in restored.predict.iter().flat_map(|p| p.models.iter()) {
                if current.get(&m.t_obs).is_none_or(|old| old.version < m.version) {
                    current.insert(m.t_obs, m.clone());
                }
            }
        }
        let mut stage = PredictStage {
            current,
            models: TimeStash::new(),
            estimates: TimeStash::new(),
            checkpoints: checkpoint.map(|c| StageCheckpoints::new(c.checkpointing, index, peers)),
            index,
        };
        move |(est_in, est_frontier), (model_in, model_frontier), output| {
            stage.models.absorb(model_in, Hold::Nothing);
            stage.estimates.absorb(est_in, Hold::Capability);
            stage.predict_complete_times(est_frontier, model_frontier, output);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_model::forest::{Forest, ForestParams};
    use tweetoscope_model::seismic::CorrectedSeismic;

    fn model(seismic: Option<CorrectedSeismic>) -> Model {
        let x = vec![[0.001, 0.5, 10.0]; 4];
        let y = vec![1.0; 4];
        let forest = Forest::train(&x, &y, &ForestParams { n_trees: 2, ..ForestParams::default() }, 1).unwrap();
        Model { t_obs: 600, version: 10, n_samples: 4, samples_seen: 4, forest, training: vec![], seismic }
    }

    #[test]
    fn the_corrected_seismic_prediction_needs_a_correction_and_stays_finite() {
        let f = SeismicPrediction { r_t: 10.0, f_t: 4.0, p_hat: 0.01, n_hat: Some(90.0), final_size: Some(91.0) };
        let c = CorrectedSeismic { alpha: 0.5, gamma: 50.0 };
        // 10 + 1 + 0.5·4/(1 − 0.5) = 15.
        assert_eq!(seismic_corrected(Some(&f), Some(&model(Some(c)))), Some(15.0));
        assert_eq!(seismic_corrected(Some(&f), Some(&model(None))), None, "no correction learned yet");
        assert_eq!(seismic_corrected(Some(&f), None), None, "no model yet");
        assert_eq!(seismic_corrected(None, Some(&model(Some(c)))), None, "no features");
        let supercritical = CorrectedSeismic { alpha: 0.5, gamma: 100.0 };
        assert_eq!(seismic_corrected(Some(&f), Some(&model(Some(supercritical)))), None, "γ·p̂ = 1");
    }
}
