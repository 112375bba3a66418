//! The train stage's synchronous core: one window's training set and retraining schedule
//! ([`WindowTrainer`]), and a training run as a pure job ([`TrainJob`]) that can run on
//! another thread.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tweetoscope_model::forest::{Features, Forest};
use tweetoscope_model::seismic::{fit_correction, CorrectedSeismic, SeismicPrediction};

use crate::config::{ForestConfig, SeismicConfig};
use crate::records::{Model, Sample};
use crate::{mix64, Time};

/// The training set and schedule of one window (the stage's synchronous core).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WindowTrainer {
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

impl WindowTrainer {
    /// A trainer that continues from a model read back at start (warm start).
    pub fn resume(model: &Model) -> Self {
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

    /// Adds a sample, forgetting the oldest beyond `max_samples`.
    pub fn push(&mut self, sample: &Sample, max_samples: usize) {
        self.samples.push_back((sample.x, sample.w));
        while self.samples.len() > max_samples {
            self.samples.pop_front();
        }
        self.seen += 1;
        if let Some(s) = sample.seismic {
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
    /// The same as [`Self::plan`], [`TrainJob::run`] and [`Self::finish`] in a row.
    pub fn maybe_train_with_seismic(
        &mut self,
        config: &ForestConfig,
        seismic: &SeismicConfig,
        t_obs: Time,
        now: Time,
    ) -> Option<Model> {
        let job = self.plan(config, seismic, t_obs, now)?;
        self.finish(job.run())
    }

    /// Retrains the forest when `max(retrain_every, retrain_growth × samples at the last
    /// run)` samples arrived since the last run (no SEISMIC correction); `None` otherwise or
    /// when training fails (the previous model stays in use).
    pub fn maybe_train(&mut self, config: &ForestConfig, t_obs: Time, now: Time) -> Option<Model> {
        let off = SeismicConfig { correction: false, ..SeismicConfig::default() };
        self.maybe_train_with_seismic(config, &off, t_obs, now)
    }

    /// Decides whether a training run is due at `now` and, if so, takes what it needs (the
    /// training set, the seed, the SEISMIC samples when a refit is due) and advances the
    /// schedule. The run itself ([`TrainJob::run`]) is pure, so it can go to another thread;
    /// its result must come back to [`Self::finish`] in planning order.
    pub fn plan(&mut self, config: &ForestConfig, seismic: &SeismicConfig, t_obs: Time, now: Time) -> Option<TrainJob> {
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
        Some(TrainJob {
            t_obs,
            now,
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
    pub fn finish(&mut self, result: TrainResult) -> Option<Model> {
        let TrainResult { job, forest, correction } = result;
        match correction {
            Some(Ok(c)) if c.alpha.is_finite() && c.gamma.is_finite() => self.correction = Some(c),
            Some(Ok(c)) => tracing::warn!(t_obs = job.t_obs, ?c, "non-finite SEISMIC correction ignored; keeping the previous one"),
            Some(Err(e)) => tracing::warn!(t_obs = job.t_obs, error = %e, "SEISMIC correction fit failed; keeping the previous one"),
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
        Some(Model {
            t_obs: job.t_obs,
            version: job.now,
            n_samples: job.x.len(),
            samples_seen: job.samples_seen,
            forest,
            training,
            seismic: if job.carry_correction { self.correction } else { None },
        })
    }
}

/// One training run of a window, planned at event time `now`: everything it needs, owned,
/// so that it can run on another thread.
#[derive(Debug)]
pub struct TrainJob {
    /// The window.
    t_obs: Time,
    /// The event time it was planned at (the model's version).
    now: Time,
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

/// What a [`TrainJob`] produced.
#[derive(Debug)]
pub struct TrainResult {
    job: TrainJob,
    forest: Result<Forest, tweetoscope_model::forest::ForestError>,
    correction: Option<Result<CorrectedSeismic, tweetoscope_model::seismic::SeismicError>>,
}

impl TrainResult {
    /// The window the run trained.
    pub fn t_obs(&self) -> Time {
        self.job.t_obs
    }
}

impl TrainJob {
    /// Trains the forest and, when due, fits the SEISMIC correction: a pure function of the
    /// job, so the result does not depend on the thread or the moment it runs.
    pub fn run(self) -> TrainResult {
        let forest = Forest::train(&self.x, &self.y, &self.params, self.seed);
        let correction = self.seismic_samples.as_deref().map(fit_correction);
        TrainResult { job: self, forest, correction }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: f64) -> Sample {
        Sample { cascade: 1, t_obs: 600, x: [0.001, 0.5, 10.0], w, seismic: None }
    }

    #[test]
    fn retrains_every_k_samples_on_the_most_recent_ones() {
        let config =
            ForestConfig { retrain_every: 3, retrain_growth: 0.0, max_samples: 4, n_trees: 5, ..ForestConfig::default() };
        let mut t = WindowTrainer::default();
        let mut versions = Vec::new();
        for i in 0..7 {
            t.push(&sample(i as f64), config.max_samples);
            if let Some(m) = t.maybe_train(&config, 600, 100 + i) {
                versions.push((m.version, m.n_samples));
            }
        }
        assert_eq!(versions, vec![(102, 3), (105, 4)]);
    }

    #[test]
    fn retraining_becomes_geometric_on_long_streams() {
        let config = ForestConfig { retrain_every: 10, retrain_growth: 0.5, n_trees: 2, ..ForestConfig::default() };
        let mut t = WindowTrainer::default();
        let mut at = Vec::new();
        for i in 0..100u64 {
            t.push(&sample(i as f64), config.max_samples);
            if t.maybe_train(&config, 600, i).is_some() {
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
        let mut t = WindowTrainer::default();
        let mut models = Vec::new();
        for i in 0..40u64 {
            let x = i as f64;
            let f = SeismicPrediction { r_t: 10.0 + x, f_t: 5.0 + 2.0 * x, p_hat: 0.001 + 0.0005 * (x % 7.0), n_hat: None, final_size: None };
            let n_true = truth.final_size(&f).unwrap();
            t.push(&Sample { seismic: Some((f, n_true)), ..sample(1.0) }, config.max_samples);
            if let Some(m) = t.maybe_train_with_seismic(&config, &seismic, 600, i) {
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
        let mut off = WindowTrainer::default();
        for _ in 0..30 {
            let f = SeismicPrediction { r_t: 3.0, f_t: 2.0, p_hat: 0.001, n_hat: None, final_size: None };
            off.push(&Sample { seismic: Some((f, 9.0)), ..sample(1.0) }, config.max_samples);
        }
        let m = off.maybe_train_with_seismic(&config, &SeismicConfig { correction: false, ..seismic }, 600, 1).unwrap();
        assert_eq!(m.seismic, None);
    }
}
