//! The train stage's synchronous core: one window's training sets and retraining schedules
//! ([`WindowLearning`]: the learned layer's, the course forest's with SEISMIC's correction,
//! and the intervals' calibration residuals), and a training run as a pure job
//! ([`WindowJob`]) that can run on another thread.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tweetoscope_model::forest::{Features, Forest};
use tweetoscope_model::predictive::{self, PredictiveError, PredictiveModel};
use tweetoscope_model::seismic::{fit_correction, CorrectedSeismic, SeismicPrediction};

use crate::config::{ForestConfig, PredictorMode, SeismicConfig};
use crate::dataflow::PredictorSettings;
use crate::records::{CourseModel, CourseSample, LearnedModel, Model, Sample};
use crate::{mix64, Time};

/// What the train stage needs to plan runs: the learned layer's, the course forest's and the
/// SEISMIC correction's settings.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The learned layer (and which predictor is the default).
    pub predictor: PredictorSettings,
    /// The course forest.
    pub forest: ForestConfig,
    /// SEISMIC's correction.
    pub seismic: SeismicConfig,
}

/// One window's training: the learned layer's samples, the course forest's, and the
/// calibration residuals of its intervals.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WindowLearning {
    /// The learned layer's samples and schedule.
    learned: predictive::WindowTrainer,
    /// The course forest's samples and schedule, with SEISMIC's correction.
    course: CourseTrainer,
    /// A learned model read back at start (warm start): a candidate of this window's
    /// training runs until a model trained on this stream validates better.
    warm: Option<PredictiveModel>,
    /// The model of the window's last run that searched the hyper-parameters: the runs
    /// between two searches refit its choice.
    searched: Option<PredictiveModel>,
    /// Log-ratio residuals of the default predictions of the window's last ended cascades.
    calibration: VecDeque<f64>,
    /// Residuals received so far, and that count at the last update sent to predict.
    #[serde(default)]
    residuals_seen: usize,
    #[serde(default)]
    residuals_sent: usize,
}

/// A window sends its calibration to predict (with a model update, or alone) once this many
/// new residuals arrived: intervals follow the stream between two trainings.
const CALIBRATION_EVERY: usize = 5;

impl WindowLearning {
    /// A window continuing from the models read back at start, applied in order.
    pub fn resume<'a>(models: impl IntoIterator<Item = &'a Model>) -> Self {
        let mut w = Self::default();
        for m in models {
            if let Some(c) = &m.course {
                w.course = CourseTrainer::resume(c);
            }
            if let Some(l) = &m.learned {
                w.warm = Some(l.model.clone());
            }
        }
        w
    }

    /// Adds the samples of an ended cascade.
    pub fn push(&mut self, sample: &Sample, settings: &TrainSettings) {
        if let Some(l) = &sample.learned {
            // Refusals (N_true < n) are counted by the trainer; the outcome stage already
            // counted them as excluded.
            let _ = self.learned.push(l.features, l.n_obs, l.n_true, settings.predictor.trainer.max_samples());
        }
        self.course.push(sample.course, sample.seismic, settings.forest.max_samples);
        if let Some(r) = sample.residual {
            self.residuals_seen += 1;
            self.calibration.push_back(r);
            while self.calibration.len() > settings.predictor.calibration_size {
                self.calibration.pop_front();
            }
        }
    }

    /// Whether the next run would refit the last search's choice: the caller must then have
    /// received every run in flight (the last search's result is part of the plan, so the
    /// plan does not depend on when the training thread finished).
    pub fn next_run_refits(&self, settings: &TrainSettings) -> bool {
        settings.predictor.mode == PredictorMode::Learned && self.learned.next_run_refits(&settings.predictor.trainer)
    }

    /// The run due at `now` for window `t_obs`, if any: the learned model (default mode)
    /// and/or the course forest (when on), each on its own schedule; the run carries the
    /// window's current calibration.
    pub fn plan(&mut self, settings: &TrainSettings, t_obs: Time, now: Time) -> Option<WindowJob> {
        // A warm-started window keeps the earlier run's model until it has as many samples
        // of its own as that model was trained on: a model trained on a handful of new
        // samples, chosen on a handful of validation samples, would replace it on noise.
        let warm_holds = self.warm.as_ref().is_some_and(|w| self.learned.seen() < w.n_samples());
        let learned = (settings.predictor.mode == PredictorMode::Learned && !warm_holds)
            .then(|| self.learned.plan(&settings.predictor.trainer, t_obs))
            .flatten()
            .map(|job| LearnedJob {
                last: (!job.searches()).then(|| self.searched.clone()).flatten(),
                job,
                samples_seen: self.learned.seen(),
                warm: self.warm.clone(),
            });
        let course = settings.forest.enabled.then(|| self.course.plan(&settings.forest, &settings.seismic, t_obs)).flatten();
        let calibrate = self.residuals_seen >= self.residuals_sent + CALIBRATION_EVERY;
        if learned.is_none() && course.is_none() && !calibrate {
            return None;
        }
        self.residuals_sent = self.residuals_seen;
        Some(WindowJob { t_obs, now, learned, course, calibration: self.calibration.iter().copied().collect() })
    }

    /// Takes a finished run back: the model update it makes (models that could not be
    /// trained are missing from it: the previous ones stay in use).
    pub fn finish(&mut self, result: WindowResult) -> Option<Model> {
        let learned = result.learned.and_then(|(model, samples_seen, searched)| match model {
            Ok(model) => {
                if self.warm.as_ref() != Some(&model) {
                    self.warm = None; // a model trained here validated better: it takes over
                }
                if searched {
                    self.searched = Some(model.clone());
                }
                Some(LearnedModel { samples_seen, model })
            }
            Err(e) => {
                tracing::warn!(t_obs = result.t_obs, error = %e, "learned model training failed; keeping the previous model");
                None
            }
        });
        let course = result.course.and_then(|r| self.course.finish(r));
        // An update without a new model still carries the window's newer calibration.
        Some(Model { t_obs: result.t_obs, version: result.now, course, learned, calibration: result.calibration })
    }
}

/// A learned model's training run.
#[derive(Debug)]
pub struct LearnedJob {
    /// The training set, learner and seed.
    job: predictive::TrainJob,
    /// Samples of the window seen when it was planned (the model carries it).
    samples_seen: usize,
    /// The warm-started model, a candidate.
    warm: Option<PredictiveModel>,
    /// A refitting run: the model of the window's last searching run.
    last: Option<PredictiveModel>,
}

/// One training run of a window, planned at event time `now`: everything it needs, owned,
/// so that it can run on another thread.
#[derive(Debug)]
pub struct WindowJob {
    /// The window.
    t_obs: Time,
    /// The event time it was planned at (the model's version).
    now: Time,
    /// The learned model's run, if due.
    learned: Option<LearnedJob>,
    /// The course forest's run, if due.
    course: Option<CourseJob>,
    /// The window's calibration residuals at `now`.
    calibration: Vec<f64>,
}

/// What a [`WindowJob`] produced.
#[derive(Debug)]
pub struct WindowResult {
    /// The window.
    t_obs: Time,
    /// The model's version.
    now: Time,
    /// The learned model (or why not), the samples seen, and whether the run searched.
    learned: Option<(Result<PredictiveModel, PredictiveError>, usize, bool)>,
    /// The course forest.
    course: Option<CourseResult>,
    /// The calibration residuals.
    calibration: Vec<f64>,
}

impl WindowResult {
    /// The window the run trained.
    pub fn t_obs(&self) -> Time {
        self.t_obs
    }
}

impl WindowJob {
    /// Trains what is due: a pure function of the job, so the result does not depend on the
    /// thread or the moment it runs. The learned model and the course forest are independent,
    /// so they train side by side on rayon's pool (the dataflow waits for both: see the
    /// `train` stage's `model_delay`).
    pub fn run(self) -> WindowResult {
        let (learned, course) = rayon::join(
            || {
                self.learned.map(|l| {
                    let searched = l.job.searches() || l.last.is_none();
                    (l.job.run_with(l.last.as_ref(), l.warm.as_ref()), l.samples_seen, searched)
                })
            },
            || self.course.map(CourseJob::run),
        );
        WindowResult { t_obs: self.t_obs, now: self.now, learned, course, calibration: self.calibration }
    }
}

/// The course forest's training set and schedule of one window, with SEISMIC's correction.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CourseTrainer {
    /// The most recent samples, at most `max_samples`.
    samples: VecDeque<(Features, f64)>,
    /// Samples seen so far (not only kept): drives the retraining schedule.
    seen: usize,
    /// `seen` at the last training run.
    trained_at: usize,
    /// SEISMIC correction samples (features, true size) of the most recent samples that had
    /// them, at most the forest's `max_samples` (the fit uses the last `seismic.max_samples`).
    seismic: VecDeque<(SeismicPrediction, f64)>,
    /// Samples with SEISMIC features seen so far, and that count at the last correction fit.
    seismic_seen: usize,
    seismic_fitted_at: usize,
    /// The last fitted correction, carried by every model until the next fit.
    correction: Option<CorrectedSeismic>,
}

impl CourseTrainer {
    /// A trainer that continues from a model read back at start (warm start).
    pub fn resume(model: &CourseModel) -> Self {
        Self {
            samples: model.training.iter().map(|r| ([r[0], r[1], r[2]], r[3])).collect(),
            seen: model.samples_seen,
            trained_at: model.samples_seen,
            // The models topic carries (α, γ), not their training set: after a warm start the
            // correction is refitted from new samples only (the old one stays in use until then).
            seismic: VecDeque::new(),
            seismic_seen: 0,
            seismic_fitted_at: 0,
            correction: model.seismic,
        }
    }

    /// Adds a cascade's course sample and SEISMIC correction sample (either may be missing),
    /// forgetting the oldest beyond `max_samples`.
    pub fn push(&mut self, course: Option<CourseSample>, seismic: Option<(SeismicPrediction, f64)>, max_samples: usize) {
        if let Some(c) = course {
            self.samples.push_back((c.x, c.w));
            while self.samples.len() > max_samples {
                self.samples.pop_front();
            }
            self.seen += 1;
        }
        if let Some(s) = seismic {
            self.seismic_seen += 1;
            self.seismic.push_back(s);
            while self.seismic.len() > max_samples {
                self.seismic.pop_front();
            }
        }
    }

    /// [`Self::maybe_train`], plus the window's SEISMIC correction (α, γ): when
    /// `seismic.correction` is on, refitted at a retraining once the samples with SEISMIC
    /// features (cascades that ended before `now`) number at least `seismic.min_samples` and
    /// have grown by `seismic.refit_growth` since the last fit, on the last
    /// `seismic.max_samples` of them; otherwise the last correction is carried. A failed fit
    /// keeps the previous correction (logged); the forest is unaffected.
    ///
    /// The same as [`Self::plan`], [`CourseJob::run`] and [`Self::finish`] in a row.
    pub fn maybe_train_with_seismic(
        &mut self,
        config: &ForestConfig,
        seismic: &SeismicConfig,
        t_obs: Time,
    ) -> Option<CourseModel> {
        let job = self.plan(config, seismic, t_obs)?;
        self.finish(job.run())
    }

    /// Retrains the forest when `max(retrain_every, retrain_growth × samples at the last
    /// run)` samples arrived since the last run (no SEISMIC correction); `None` otherwise or
    /// when training fails (the previous model stays in use).
    pub fn maybe_train(&mut self, config: &ForestConfig, t_obs: Time) -> Option<CourseModel> {
        let off = SeismicConfig { correction: false, ..SeismicConfig::default() };
        self.maybe_train_with_seismic(config, &off, t_obs)
    }

    /// Decides whether a training run is due at `now` and, if so, takes what it needs (the
    /// training set, the seed, the SEISMIC samples when a refit is due) and advances the
    /// schedule. The run itself ([`CourseJob::run`]) is pure, so it can go to another thread;
    /// its result must come back to [`Self::finish`] in planning order.
    pub fn plan(&mut self, config: &ForestConfig, seismic: &SeismicConfig, t_obs: Time) -> Option<CourseJob> {
        let due = config.retrain_every.max((config.retrain_growth * self.trained_at as f64).ceil() as usize);
        if self.seen - self.trained_at < due {
            return None;
        }
        self.trained_at = self.seen;
        let (x, y): (Vec<Features>, Vec<f64>) = self.samples.iter().copied().unzip();
        let seed = mix64(config.seed ^ mix64(t_obs ^ mix64(self.seen as u64)));
        let mut seismic_samples = None;
        if seismic.correction {
            let due = seismic.min_samples.max((seismic.refit_growth * self.seismic_fitted_at as f64).ceil() as usize);
            if self.seismic.len() >= seismic.min_samples && self.seismic_seen - self.seismic_fitted_at >= due {
                self.seismic_fitted_at = self.seismic_seen;
                let skip = self.seismic.len().saturating_sub(seismic.max_samples);
                seismic_samples = Some(self.seismic.iter().skip(skip).copied().collect());
            }
        }
        Some(CourseJob {
            t_obs,
            samples_seen: self.seen,
            params: config.params(),
            seed,
            x,
            y,
            seismic_samples,
            carry_correction: seismic.correction,
        })
    }

    /// Takes a finished run back: updates the window's SEISMIC correction and returns the
    /// model (`None` when the forest could not be trained: the previous model stays in use).
    pub fn finish(&mut self, result: CourseResult) -> Option<CourseModel> {
        let CourseResult { job, forest, correction } = result;
        match correction {
            Some(Ok(c)) if c.alpha.is_finite() && c.gamma.is_finite() => self.correction = Some(c),
            Some(Ok(c)) => {
                tracing::warn!(t_obs = job.t_obs, ?c, "non-finite SEISMIC correction ignored; keeping the previous one")
            }
            Some(Err(e)) => {
                tracing::warn!(t_obs = job.t_obs, error = %e, "SEISMIC correction fit failed; keeping the previous one")
            }
            None => {}
        }
        let forest = match forest {
            Ok(forest) => forest,
            Err(e) => {
                tracing::warn!(t_obs = job.t_obs, error = %e, "forest training failed; keeping the previous model");
                return None;
            }
        };
        let training = job.x.iter().zip(&job.y).map(|(x, y)| [x[0], x[1], x[2], *y]).collect();
        Some(CourseModel {
            n_samples: job.x.len(),
            samples_seen: job.samples_seen,
            forest,
            training,
            seismic: if job.carry_correction { self.correction } else { None },
        })
    }
}

/// One course-forest training run of a window, planned at event time `now`: everything it
/// needs, owned, so that it can run on another thread.
#[derive(Debug)]
pub struct CourseJob {
    /// The window.
    t_obs: Time,
    /// Samples of the window seen so far (carried by the model for warm starts).
    samples_seen: usize,
    /// Forest hyper-parameters.
    params: tweetoscope_model::forest::ForestParams,
    /// Seed of the run, derived from (seed, window, samples seen).
    seed: u64,
    /// The training set.
    x: Vec<Features>,
    y: Vec<f64>,
    /// SEISMIC (features, true size) samples when a correction refit is due.
    seismic_samples: Option<Vec<(SeismicPrediction, f64)>>,
    /// Whether models carry the window's correction (`seismic.correction`).
    carry_correction: bool,
}

/// What a [`CourseJob`] produced.
#[derive(Debug)]
pub struct CourseResult {
    job: CourseJob,
    forest: Result<Forest, tweetoscope_model::forest::ForestError>,
    correction: Option<Result<CorrectedSeismic, tweetoscope_model::seismic::SeismicError>>,
}

impl CourseJob {
    /// Trains the forest and, when due, fits the SEISMIC correction: a pure function of the
    /// job, so the result does not depend on the thread or the moment it runs.
    pub fn run(self) -> CourseResult {
        let forest = Forest::train(&self.x, &self.y, &self.params, self.seed);
        let correction = self.seismic_samples.as_deref().map(fit_correction);
        CourseResult { job: self, forest, correction }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: f64) -> Option<CourseSample> {
        Some(CourseSample { x: [0.001, 0.5, 10.0], w })
    }

    #[test]
    fn retrains_every_k_samples_on_the_most_recent_ones() {
        let config =
            ForestConfig { retrain_every: 3, retrain_growth: 0.0, max_samples: 4, n_trees: 5, ..ForestConfig::default() };
        let mut t = CourseTrainer::default();
        let mut versions = Vec::new();
        for i in 0..7 {
            t.push(sample(i as f64), None, config.max_samples);
            if let Some(m) = t.maybe_train(&config, 600) {
                versions.push((100 + i, m.n_samples));
            }
        }
        assert_eq!(versions, vec![(102, 3), (105, 4)]);
    }

    #[test]
    fn retraining_becomes_geometric_on_long_streams() {
        let config = ForestConfig { retrain_every: 10, retrain_growth: 0.5, n_trees: 2, ..ForestConfig::default() };
        let mut t = CourseTrainer::default();
        let mut at = Vec::new();
        for i in 0..100u64 {
            t.push(sample(i as f64), None, config.max_samples);
            if t.maybe_train(&config, 600).is_some() {
                at.push(i + 1);
            }
        }
        assert_eq!(at, vec![10, 20, 30, 45, 68], "10, +10, +10, then +50 %");
    }

    #[test]
    fn the_seismic_correction_is_fitted_from_ended_cascades_only_when_enough() {
        // Samples generated by a known correction (α, γ) = (0.5, 30): the fit recovers it.
        let truth = CorrectedSeismic { alpha: 0.5, gamma: 30.0 };
        let config = ForestConfig { retrain_every: 10, retrain_growth: 0.0, n_trees: 2, ..ForestConfig::default() };
        let seismic = SeismicConfig { correction: true, min_samples: 20, max_samples: 500, refit_growth: 0.5 };
        let mut t = CourseTrainer::default();
        let mut models = Vec::new();
        for i in 0..40u64 {
            let x = i as f64;
            let f = SeismicPrediction {
                r_t: 10.0 + x,
                f_t: 5.0 + 2.0 * x,
                p_hat: 0.001 + 0.0005 * (x % 7.0),
                n_hat: None,
                final_size: None,
            };
            let n_true = truth.final_size(&f).unwrap();
            t.push(sample(1.0), Some((f, n_true)), config.max_samples);
            if let Some(m) = t.maybe_train_with_seismic(&config, &seismic, 600) {
                models.push(m);
            }
        }
        let corrections: Vec<Option<CorrectedSeismic>> = models.iter().map(|m| m.seismic).collect();
        assert_eq!(corrections.len(), 4, "retrained at 10, 20, 30, 40 samples");
        assert_eq!(corrections[0], None, "10 < min_samples");
        assert!(corrections[1].is_some(), "fitted at 20 samples");
        assert_eq!(corrections[2], corrections[1], "30 < 20 × 1.5: carried, not refitted");
        let c = corrections[3].expect("refitted at 40 samples");
        assert!((c.alpha - 0.5).abs() < 1e-3 && (c.gamma - 30.0).abs() < 0.1, "{c:?}");
        // Off: never fitted.
        let mut off = CourseTrainer::default();
        for _ in 0..30 {
            let f = SeismicPrediction { r_t: 3.0, f_t: 2.0, p_hat: 0.001, n_hat: None, final_size: None };
            off.push(sample(1.0), Some((f, 9.0)), config.max_samples);
        }
        let m = off.maybe_train_with_seismic(&config, &SeismicConfig { correction: false, ..seismic }, 600).unwrap();
        assert_eq!(m.seismic, None);
    }
}
