//! The `predict` stage: applies each window's latest models to the estimates, in event time:
//! the default prediction (the learned layer, or the course forest in course mode) with its
//! interval, and every other model beside it.
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
use tweetoscope_model::predictive::conformal_interval;
use tweetoscope_model::seismic::SeismicPrediction;

use super::stash::{both_finite, both_first, passed, Hold, TimeStash};
use super::{Builder, Checkpoint, PredictorSettings};
use crate::checkpoint::{StageCheckpoints, StagePart};
use crate::config::PredictorMode;
use crate::records::{CourseModel, Estimate, LearnedModel, Model, Prediction, Predictor};
use crate::Time;

/// The predict stage's part of a checkpoint at F: the models in use per window once every
/// model timed before F is applied (models timed at or after F come back from the train
/// stage's part). Every worker holds the same models, so only worker 0's part has them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PredictPart {
    /// Each window's models.
    pub models: Vec<(Time, WindowModels)>,
}

impl StagePart for PredictPart {
    const STAGE: &'static str = "predict";
}

/// What the predict stage holds for one window: the latest model of each kind, with the
/// event time it was trained at, and the calibration residuals of the intervals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowModels {
    /// The latest course forest (and SEISMIC correction).
    pub course: Option<(Time, CourseModel)>,
    /// The latest learned model.
    pub learned: Option<(Time, LearnedModel)>,
    /// Log-ratio residuals of the default predictions of the window's last ended cascades.
    pub calibration: Vec<f64>,
}

impl WindowModels {
    /// Applies a model update: what it retrained replaces the window's model of that kind,
    /// and its calibration replaces the window's.
    pub fn apply(&mut self, m: Model) {
        if let Some(c) = m.course {
            self.course = Some((m.version, c));
        }
        if let Some(l) = m.learned {
            self.learned = Some((m.version, l));
        }
        self.calibration = m.calibration;
    }

    /// The version of the newest model in the window (warm start and restore keep the newest).
    pub fn newest(&self) -> Option<Time> {
        self.course.as_ref().map(|c| c.0).max(self.learned.as_ref().map(|l| l.0))
    }
}

/// The course's prediction: Hawkes corrected by the window's forest, N = n + ω·G1/(1 − n*)
/// (ω = 1 without a forest: plain Hawkes). A non-finite or negative ω falls back to 1 and
/// a non-finite N to plain Hawkes. Returns (N, ω, the forest's version when it applied).
fn course_prediction(estimate: &Estimate, course: Option<&(Time, CourseModel)>) -> (f64, f64, Option<Time>) {
    let Some(fit) = &estimate.fit else { return (estimate.n as f64, 1.0, None) };
    let omega = course.map(|(_, m)| m.forest.predict(&[fit.beta, fit.n_star, fit.g1])).filter(|w| w.is_finite() && *w >= 0.0);
    let n_course = estimate.n as f64 + omega.unwrap_or(1.0) * fit.g1 / (1.0 - fit.n_star);
    let n_course = if n_course.is_finite() { n_course } else { fit.n_hawkes };
    (n_course, omega.unwrap_or(1.0), omega.and(course.map(|(v, _)| *v)))
}

/// The default prediction and who made it, with the version and training size of the model
/// that made it: the learned model (or the fallback before it) in the default mode, the
/// course forest (or plain Hawkes before it) in course mode.
fn default_prediction(
    estimate: &Estimate,
    models: &WindowModels,
    settings: &PredictorSettings,
    n_course: f64,
    course_version: Option<Time>,
) -> (f64, Predictor, Option<Time>, usize) {
    match settings.mode {
        PredictorMode::Course => {
            let samples = models.course.as_ref().map_or(0, |(_, m)| m.n_samples);
            match course_version {
                Some(v) => (n_course, Predictor::Course, Some(v), samples),
                None => (estimate.fit.map_or(estimate.n as f64, |f| f.n_hawkes), Predictor::Hawkes, None, 0),
            }
        }
        PredictorMode::Learned => match &models.learned {
            Some((version, l)) => {
                (l.model.predict(&estimate.features, estimate.n), Predictor::Learned, Some(*version), l.model.n_samples())
            }
            None => {
                let fallback = settings.trainer.learner().fallback();
                (fallback.predict(&estimate.features, estimate.n), Predictor::Fallback, None, 0)
            }
        },
    }
}

/// The prediction for one estimate given the window's models: the default prediction with
/// its interval, and every other model beside it (plain Hawkes, the course forest, SEISMIC
/// plain and corrected). Every size is finite and at least n where a model promises it.
pub fn predict_one(estimate: Estimate, models: &WindowModels, settings: &PredictorSettings) -> Prediction {
    let n_hawkes = estimate.fit.map_or(estimate.n as f64, |f| f.n_hawkes);
    let (n_course, omega, course_version) = course_prediction(&estimate, models.course.as_ref());
    let (n_pred, predictor, model_version, model_samples) =
        default_prediction(&estimate, models, settings, n_course, course_version);
    let n_pred = if n_pred.is_finite() { n_pred.max(estimate.n as f64) } else { estimate.n as f64 };
    let y_hat = (n_pred / estimate.n.max(1) as f64).ln();
    let interval = conformal_interval(&models.calibration, y_hat, estimate.n, settings.interval_level).ok();
    let n_seismic_corrected = seismic_corrected(estimate.seismic.as_ref(), models.course.as_ref().map(|(_, m)| m));
    Prediction {
        cascade: estimate.cascade,
        t_obs: estimate.t_obs,
        msg: estimate.msg,
        n: estimate.n,
        start: estimate.start,
        training_only: estimate.training_only,
        fit: estimate.fit,
        features: estimate.features,
        n_pred,
        predictor,
        interval,
        model_version,
        model_samples,
        n_hawkes,
        n_course,
        omega,
        n_seismic: estimate.n_seismic,
        seismic: estimate.seismic,
        n_seismic_corrected,
    }
}

/// SEISMIC with the window's learned correction (α, γ): N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T).
/// `None` without features, without a correction in the model, or when γ·p̂_T ≥ 1 (the
/// corrected model calls the cascade supercritical); never NaN or infinite.
pub fn seismic_corrected(features: Option<&SeismicPrediction>, model: Option<&CourseModel>) -> Option<f64> {
    let correction = model?.seismic?;
    correction.final_size(features?).filter(|n| n.is_finite())
}

/// The predict stage of one worker: the model in use per window, the models not yet due,
/// and the estimates waiting for the models' frontier.
struct PredictStage {
    /// Each window's models.
    current: HashMap<Time, WindowModels>,
    /// Mode, fallback and interval level.
    settings: PredictorSettings,
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
                self.current.entry(m.t_obs).or_default().apply(m);
            }
        }
    }

    /// The part at boundary F: every model timed before F applied (worker 0 writes them).
    fn part_at(&mut self, f: Time) -> PredictPart {
        self.apply_models(f - 1);
        let mut models: Vec<(Time, WindowModels)> =
            if self.index == 0 { self.current.iter().map(|(w, m)| (*w, m.clone())).collect() } else { Vec::new() };
        models.sort_by_key(|(w, _)| *w);
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
            let none = WindowModels::default();
            for estimate in batch {
                let models = self.current.get(&estimate.t_obs).unwrap_or(&none);
                session.give(predict_one(estimate, models, &self.settings));
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
    settings: PredictorSettings,
    initial: Vec<Model>,
    checkpoint: Option<Checkpoint>,
) -> StreamVec<'s, Time, Prediction> {
    let (index, peers) = (estimates.scope().index(), estimates.scope().peers());
    estimates.binary_frontier::<_, Builder<Prediction>, _, _, _, _>(models, Pipeline, Pipeline, "Predict", move |_cap, _info| {
        // Warm start: the models read back at start, in order; a restored checkpoint's
        // models take precedence.
        let mut current: HashMap<Time, WindowModels> = HashMap::new();
        for m in initial {
            current.entry(m.t_obs).or_default().apply(m);
        }
        if let Some(restored) = checkpoint.as_ref().and_then(|c| c.restored.as_ref()) {
            current.clear();
            for (w, m) in restored.predict.iter().flat_map(|p| p.models.iter()) {
                if current.get(w).is_none_or(|old| old.newest() < m.newest()) {
                    current.insert(*w, m.clone());
                }
            }
        }
        let mut stage = PredictStage {
            current,
            settings,
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
    use crate::config::PredictorConfig;
    use crate::records::FitSummary;
    use tweetoscope_model::forest::{Forest, ForestParams};
    use tweetoscope_model::predictive::{features, HawkesSummary, PredictiveModel, N_FEATURES};
    use tweetoscope_model::seismic::CorrectedSeismic;

    fn course(seismic: Option<CorrectedSeismic>) -> CourseModel {
        let x = vec![[0.001, 0.5, 10.0]; 4];
        let y = vec![1.0; 4];
        let forest = Forest::train(&x, &y, &ForestParams { n_trees: 2, ..ForestParams::default() }, 1).unwrap();
        CourseModel { n_samples: 4, samples_seen: 4, forest, training: vec![], seismic }
    }

    fn settings(mode: PredictorMode) -> PredictorSettings {
        let c = PredictorConfig::default();
        PredictorSettings { mode, trainer: c.trainer().unwrap(), model_delay: 60, interval_level: 0.8, calibration_size: 200 }
    }

    /// A 20-event partial whose Hawkes fit explodes (a very slow kernel: N_hawkes = 10⁵) while
    /// SEISMIC predicts 30.
    fn degenerate() -> Estimate {
        let events: Vec<tweetoscope_model::hawkes::Event> =
            (0..20).map(|i| tweetoscope_model::hawkes::Event { t: 10.0 * i as f64, m: 500.0 }).collect();
        let fit = FitSummary { p: 1e-4, beta: 1.2e-6, n_star: 0.999, g1: 99.9, n_hawkes: 1e5, at_bound: true };
        let seismic = SeismicPrediction { r_t: 19.0, f_t: 5.0, p_hat: 0.002, n_hat: Some(29.0), final_size: Some(30.0) };
        let summary = HawkesSummary { p: fit.p, beta: fit.beta, n_star: fit.n_star, g1: fit.g1, n_hawkes: fit.n_hawkes };
        Estimate {
            cascade: 1,
            t_obs: 600,
            msg: String::new(),
            n: 20,
            start: 0,
            training_only: false,
            fit: Some(fit),
            n_seismic: Some(30.0),
            seismic: Some(seismic),
            features: features(&events, 600.0, Some(&summary), Some(&seismic)),
        }
    }

    #[test]
    fn the_corrected_seismic_prediction_needs_a_correction_and_stays_finite() {
        let f = SeismicPrediction { r_t: 10.0, f_t: 4.0, p_hat: 0.01, n_hat: Some(90.0), final_size: Some(91.0) };
        let c = CorrectedSeismic { alpha: 0.5, gamma: 50.0 };
        // 10 + 1 + 0.5·4/(1 − 0.5) = 15.
        assert_eq!(seismic_corrected(Some(&f), Some(&course(Some(c)))), Some(15.0));
        assert_eq!(seismic_corrected(Some(&f), Some(&course(None))), None, "no correction learned yet");
        assert_eq!(seismic_corrected(Some(&f), None), None, "no model yet");
        assert_eq!(seismic_corrected(None, Some(&course(Some(c)))), None, "no features");
        let supercritical = CorrectedSeismic { alpha: 0.5, gamma: 100.0 };
        assert_eq!(seismic_corrected(Some(&f), Some(&course(Some(supercritical)))), None, "γ·p̂ = 1");
    }

    /// Regression (degenerate_hawkes_fit_predicted_100x_the_truth): before the learned layer,
    /// the default prediction of a window without a model was plain Hawkes, here 10⁵ for a
    /// cascade the features say is over. Now the fallback (SEISMIC, at most 5 × n) predicts,
    /// and plain Hawkes stays a column beside it.
    #[test]
    fn a_degenerate_hawkes_fit_no_longer_makes_the_default_prediction() {
        let p = predict_one(degenerate(), &WindowModels::default(), &settings(PredictorMode::Learned));
        assert_eq!((p.predictor, p.n_pred), (Predictor::Fallback, 30.0));
        assert_eq!(p.n_hawkes, 1e5);
        assert!(p.interval.is_none(), "no calibration residuals yet");
    }

    #[test]
    fn a_learned_model_predicts_what_its_samples_taught_it_not_the_hawkes_tail() {
        // Every training cascade with these features grew by 10 %: the model says ~22, the
        // Hawkes fit 10⁵.
        let x = vec![degenerate().features; 40];
        let y = vec![1.1f64.ln(); 40];
        let model = PredictiveModel::train(&x, &y, settings(PredictorMode::Learned).trainer.learner(), 3).unwrap();
        let models = WindowModels {
            learned: Some((500, LearnedModel { samples_seen: 40, model })),
            calibration: vec![-0.2, -0.1, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
            ..WindowModels::default()
        };
        let p = predict_one(degenerate(), &models, &settings(PredictorMode::Learned));
        assert_eq!(p.predictor, Predictor::Learned);
        assert!((p.n_pred - 22.0).abs() < 1.0, "{}", p.n_pred);
        assert_eq!((p.model_version, p.model_samples), (Some(500), 40));
        let iv = p.interval.expect("10 residuals calibrate an 80 % interval");
        assert!(iv.low >= 20.0 && iv.low <= p.n_pred && p.n_pred <= iv.high && iv.high.is_finite(), "{iv:?}");
    }

    #[test]
    fn course_mode_is_plain_hawkes_until_the_window_has_a_forest() {
        let mut e = degenerate();
        e.fit = Some(FitSummary { p: 0.01, beta: 0.001, n_star: 0.5, g1: 5.0, n_hawkes: 30.0, at_bound: false });
        let plain = predict_one(e.clone(), &WindowModels::default(), &settings(PredictorMode::Course));
        assert_eq!((plain.predictor, plain.n_pred, plain.n_course), (Predictor::Hawkes, 30.0, 30.0));
        let models = WindowModels { course: Some((100, course(None))), ..WindowModels::default() };
        let corrected = predict_one(e, &models, &settings(PredictorMode::Course));
        // ω = 1 (the forest learned W = 1): N = 20 + 1 · 5/(1 − 0.5) = 30.
        assert_eq!((corrected.predictor, corrected.n_pred, corrected.model_version), (Predictor::Course, 30.0, Some(100)));
    }

    #[test]
    fn predictions_are_finite_and_never_below_n_whatever_the_features() {
        let mut e = degenerate();
        e.features = [f64::NAN; N_FEATURES];
        e.seismic = None;
        e.n_seismic = None;
        for mode in [PredictorMode::Learned, PredictorMode::Course] {
            let p = predict_one(e.clone(), &WindowModels::default(), &settings(mode));
            assert!(p.n_pred.is_finite() && p.n_pred >= 20.0, "{mode:?}: {}", p.n_pred);
        }
    }
}
