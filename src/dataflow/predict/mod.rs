//! The `predict` stage: applies each window's latest model to the estimates, in event time.
//!
//! An estimate at time `t` is predicted once the models' frontier has passed `t`, with the
//! models whose (delayed) time is ≤ `t`: a model trained at event time `v` arrives through the
//! feedback loop at `v + δ`, so predictions depend on event time only, never on scheduling.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::Builder;
use crate::checkpoint::{Checkpointing, PartKind, StageCheckpoints};
use tweetoscope_model::seismic::SeismicPrediction;

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

/// The part at boundary F: every model timed before F applied (worker 0 writes them).
fn part_at(f: Time, index: usize, pending: &mut BTreeMap<Time, Vec<Model>>, current: &mut HashMap<Time, Model>) -> PredictPart {
    apply_models(pending, current, f - 1);
    let mut models: Vec<Model> = if index == 0 { current.values().cloned().collect() } else { Vec::new() };
    models.sort_by_key(|m| m.t_obs);
    PredictPart { models }
}

/// Applies every pending model timed at or before `upto` (in (window, version) order).
fn apply_models(pending: &mut BTreeMap<Time, Vec<Model>>, current: &mut HashMap<Time, Model>, upto: Time) {
    while let Some(models) = pending.first_entry() {
        if *models.key() > upto {
            break;
        }
        let mut models = models.remove();
        models.sort_by_key(|m| (m.t_obs, m.version));
        for m in models {
            current.insert(m.t_obs, m);
        }
    }
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

/// Joins estimates with the models stream (broadcast to every worker).
pub fn predict<'s>(
    estimates: StreamVec<'s, Time, Estimate>,
    models: StreamVec<'s, Time, Model>,
    initial: Vec<Model>,
    checkpoint: Option<Checkpointing>,
) -> StreamVec<'s, Time, Prediction> {
    let (index, peers) = (estimates.scope().index(), estimates.scope().peers());
    estimates.binary_frontier::<_, Builder<Prediction>, _, _, _, _>(
        models,
        Pipeline,
        Pipeline,
        "Predict",
        move |_cap, _info| {
            // Warm start: the latest model of each window read back from the models topic;
            // a restored checkpoint's models take precedence.
            let mut current: HashMap<Time, Model> = initial.into_iter().map(|m| (m.t_obs, m)).collect();
            let mut stage = checkpoint.map(|c| StageCheckpoints::new(c, PartKind::Predict, index, peers));
            if let Some(restored) = stage.as_ref().and_then(StageCheckpoints::restored) {
                current.clear();
                for m in restored.predict.iter().flat_map(|p| p.models.iter()) {
                    if current.get(&m.t_obs).is_none_or(|old| old.version < m.version) {
                        current.insert(m.t_obs, m.clone());
                    }
                }
            }
            let mut pending_models: BTreeMap<Time, Vec<Model>> = BTreeMap::new();
            let mut stash: BTreeMap<Time, (Capability<Time>, Vec<Estimate>)> = BTreeMap::new();
            move |(est_in, est_frontier), (model_in, model_frontier), output| {
                model_in.for_each_stamp(|cap, data| {
                    let time = *cap.least().expect("a message has a time");
                    let pending = pending_models.entry(time).or_default();
                    for d in data {
                        pending.append(d);
                    }
                });
                est_in.for_each_stamp(|cap, data| {
                    let time = *cap.least().expect("a message has a time");
                    let entry = stash
                        .entry(time)
                        .or_insert_with(|| (cap.retain_least(0).expect("output 0 exists"), Vec::new()));
                    for d in data {
                        entry.1.append(d);
                    }
                });
                while let Some(time) = stash.first_key_value().map(|(t, _)| *t) {
                    if model_frontier.less_equal(&time) || est_frontier.less_equal(&time) {
                        break; // a model (or an estimate) for this time may still arrive
                    }
                    if let Some(s) = stage.as_mut().filter(|_| !est_frontier.frontier().is_empty() && !model_frontier.frontier().is_empty()) {
                        s.upto(time, |f| Some(part_at(f, index, &mut pending_models, &mut current)));
                    }
                    apply_models(&mut pending_models, &mut current, time);
                    let (cap, mut batch) = stash.remove(&time).expect("just seen");
                    batch.sort_by_key(|e| (e.cascade, e.t_obs));
                    let mut session = output.session(&cap);
                    for estimate in batch {
                        let model = current.get(&estimate.t_obs);
                        session.give(predict_one(estimate, model));
                    }
                }
                let upto = [est_frontier.frontier().first().copied(), model_frontier.frontier().first().copied()];
                if let ([Some(a), Some(b)], Some(s)) = (upto, stage.as_mut()) {
                    s.upto(a.min(b), |f| Some(part_at(f, index, &mut pending_models, &mut current)));
                }
            }
        },
    )
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
