//! The per-window online trainer: samples in time order, a retraining schedule, and training
//! runs that are pure functions of what they were given (so they can run on another thread
//! of the caller's choosing). A run that searches the hyper-parameters spreads its fits over
//! rayon's global pool ([`super::learner::PredictiveModel::train`]); its result does not
//! depend on the pool's size.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::features::FeatureVector;
use super::learner::{LearnerSettings, PredictiveModel};
use super::{log_ratio_target, PredictiveError};

/// The schedule and training window of a [`WindowTrainer`]; build with
/// [`TrainerSettings::new`] or take [`Default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerSettings {
    learner: LearnerSettings,
    min_samples: usize,
    retrain_every: usize,
    retrain_growth: f64,
    max_samples: usize,
    seed: u64,
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            learner: LearnerSettings::default(),
            min_samples: 10,
            retrain_every: 5,
            retrain_growth: 0.1,
            max_samples: 5000,
            seed: 7,
        }
    }
}

impl TrainerSettings {
    /// Validated settings: the first model once `min_samples` (≥ 4) samples arrived, then a
    /// retraining whenever max(`retrain_every` (≥ 1), ⌈`retrain_growth` (in [0, 10]) × samples
    /// at the last run⌉) new samples arrived; each run trains on the last `max_samples`
    /// (≥ `min_samples`) samples; runs are seeded from (`seed`, window, samples seen).
    pub fn new(
        learner: LearnerSettings,
        min_samples: usize,
        retrain_every: usize,
        retrain_growth: f64,
        max_samples: usize,
        seed: u64,
    ) -> Result<Self, PredictiveError> {
        let s = Self { learner, min_samples, retrain_every, retrain_growth, max_samples, seed };
        s.validate()?;
        Ok(s)
    }

    /// Checks every field (also for deserialized settings).
    pub fn validate(&self) -> Result<(), PredictiveError> {
        self.learner.validate()?;
        let bad = |m: String| Err(PredictiveError::InvalidParams(m));
        if self.min_samples < 4 {
            return bad(format!("min_samples = {} must be ≥ 4", self.min_samples));
        }
        if self.retrain_every == 0 {
            return bad("retrain_every must be ≥ 1".into());
        }
        if !(self.retrain_growth.is_finite() && (0.0..=10.0).contains(&self.retrain_growth)) {
            return bad(format!("retrain_growth = {} is not in [0, 10]", self.retrain_growth));
        }
        if self.max_samples < self.min_samples {
            return bad(format!("max_samples = {} < min_samples = {}", self.max_samples, self.min_samples));
        }
        Ok(())
    }

    /// The learner settings.
    pub fn learner(&self) -> &LearnerSettings {
        &self.learner
    }
    /// Samples needed for the first model.
    pub fn min_samples(&self) -> usize {
        self.min_samples
    }
    /// Most samples kept and trained on (pass it to [`WindowTrainer::push`]).
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }
}

/// Below this many samples every run searches the hyper-parameters (see
/// [`WindowTrainer::plan`]).
pub const SEARCH_ALWAYS_BELOW: usize = 200;

/// Once a search has seen a full training set (`max_samples`), the next one waits until the
/// samples seen have grown this many times (see [`WindowTrainer::plan`]).
pub const SEARCH_GROWTH_WHEN_FULL: usize = 8;

/// splitmix64 finaliser, to derive run seeds.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The samples and schedule of one observation window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowTrainer {
    /// The most recent samples (features, y), oldest first.
    samples: VecDeque<(FeatureVector, f64)>,
    /// Samples accepted so far.
    seen: usize,
    /// `seen` at the last planned run (0: none yet).
    trained_at: usize,
    /// `seen` at the last run that searched the hyper-parameters (0: none yet).
    #[serde(default)]
    searched_at: usize,
    /// Samples refused (true size below the observed size, or non-finite features).
    excluded: usize,
}

impl WindowTrainer {
    /// An empty trainer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the sample of an ended cascade (in the order the cascades ended): its features at
    /// this window, the events observed in the window and the final size. A sample with
    /// N_true < n_obs, no observed event, or a non-finite feature is refused, counted in
    /// [`WindowTrainer::excluded`], and the error says why.
    pub fn push(&mut self, x: FeatureVector, n_obs: usize, n_true: usize, max_samples: usize) -> Result<(), PredictiveError> {
        let y = match log_ratio_target(n_obs, n_true) {
            Ok(y) => y,
            Err(e) => {
                self.excluded += 1;
                return Err(e);
            }
        };
        if x.iter().any(|v| !v.is_finite()) {
            self.excluded += 1;
            return Err(PredictiveError::NonFinite { row: self.seen, what: "feature" });
        }
        self.samples.push_back((x, y));
        while self.samples.len() > max_samples.max(1) {
            self.samples.pop_front();
        }
        self.seen += 1;
        Ok(())
    }

    /// Samples accepted so far.
    pub fn seen(&self) -> usize {
        self.seen
    }
    /// Samples kept for training.
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    /// Whether no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
    /// Samples refused so far.
    pub fn excluded(&self) -> usize {
        self.excluded
    }

    /// Whether a run is due, and if so the run (its training set copied, its seed derived
    /// from (`settings.seed`, `window`, samples seen)); the schedule advances. Run it with
    /// [`TrainJob::run`] or [`TrainJob::run_with`].
    ///
    /// A run searches the hyper-parameters while the window has fewer than
    /// [`SEARCH_ALWAYS_BELOW`] samples, then when they have doubled since the last search
    /// ([`TrainJob::searches`]); the runs between refit the last search's choice on the new
    /// samples, about ten times cheaper (measured: `PREDICTIVE.md`, "Cost").
    pub fn plan(&mut self, settings: &TrainerSettings, window: u64) -> Option<TrainJob> {
        if !self.due(settings) {
            return None;
        }
        self.trained_at = self.seen;
        let search = self.searches_next(settings);
        if search {
            self.searched_at = self.seen;
        }
        let skip = self.samples.len().saturating_sub(settings.max_samples);
        let (x, y) = self.samples.iter().skip(skip).copied().unzip();
        let seed = mix64(settings.seed ^ mix64(window ^ mix64(self.seen as u64)));
        Some(TrainJob { x, y, learner: settings.learner.clone(), seed, search })
    }

    /// Whether a run is due now (what [`WindowTrainer::plan`] would plan).
    pub fn due(&self, settings: &TrainerSettings) -> bool {
        if self.seen < settings.min_samples || self.samples.len() < settings.min_samples {
            return false;
        }
        let due = settings.retrain_every.max((settings.retrain_growth * self.trained_at as f64).ceil() as usize);
        self.trained_at == 0 || self.seen - self.trained_at >= due
    }

    /// Whether the next due run would refit an earlier search's choice (so it needs the
    /// model of the last searching run: see [`TrainJob::run_with`]).
    pub fn next_run_refits(&self, settings: &TrainerSettings) -> bool {
        self.due(settings) && !self.searches_next(settings)
    }

    /// Whether the next run searches: always while the window has fewer than
    /// [`SEARCH_ALWAYS_BELOW`] samples (a choice made on a few dozen samples is a poor guide,
    /// and searching them is cheap), then whenever the samples have doubled since the last
    /// search while the training set still grows, and once it is full (`max_samples`) only
    /// every [`SEARCH_GROWTH_WHEN_FULL`]-fold: a search on a full set costs about as much as
    /// a dozen refits; on the NEWS-sized stream (forest off, -w 1) the medians of ARE did
    /// not change and the file replay went from 8.8–9.1 s to 7.7–8.8 s (3 runs each, one
    /// session; training stays the largest cost, see `PREDICTIVE.md`).
    fn searches_next(&self, settings: &TrainerSettings) -> bool {
        let growth = if self.searched_at < settings.max_samples { 2 } else { SEARCH_GROWTH_WHEN_FULL };
        self.searched_at == 0 || self.seen < SEARCH_ALWAYS_BELOW || self.seen >= growth * self.searched_at
    }
}

/// One training run: everything it needs, owned, so it is a pure function.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    x: Vec<FeatureVector>,
    y: Vec<f64>,
    learner: LearnerSettings,
    seed: u64,
    /// Search the hyper-parameters (else refit the last search's choice).
    search: bool,
}

impl TrainJob {
    /// Trains ([`PredictiveModel::train`]).
    pub fn run(&self) -> Result<PredictiveModel, PredictiveError> {
        PredictiveModel::train(&self.x, &self.y, &self.learner, self.seed)
    }

    /// Trains with a warm-started model as one more candidate
    /// ([`PredictiveModel::train_against`]).
    pub fn run_against(&self, incumbent: Option<&PredictiveModel>) -> Result<PredictiveModel, PredictiveError> {
        PredictiveModel::train_against(&self.x, &self.y, &self.learner, self.seed, incumbent)
    }

    /// Whether this run searches the hyper-parameters.
    pub fn searches(&self) -> bool {
        self.search
    }

    /// The run as planned: a searching run trains with `incumbent` (a warm-started model)
    /// as one more candidate; a refitting run trains the configuration chosen by `last`, the
    /// model of the window's last searching run (a full search when there is none).
    pub fn run_with(
        &self,
        last: Option<&PredictiveModel>,
        incumbent: Option<&PredictiveModel>,
    ) -> Result<PredictiveModel, PredictiveError> {
        match last.filter(|_| !self.search) {
            Some(last) => PredictiveModel::refit(&self.x, &self.y, &self.learner, self.seed, last.selection()),
            None => self.run_against(incumbent),
        }
    }
    /// Number of training samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// Whether there is no sample (never, for a planned job).
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictive::N_FEATURES;

    fn x(i: usize) -> FeatureVector {
        let mut x = [0.0; N_FEATURES];
        x[0] = (i % 7) as f64;
        x[10] = (i % 3) as f64;
        x
    }

    #[test]
    fn schedule_first_model_at_min_samples_then_every_k_or_growth() {
        let s = TrainerSettings::new(LearnerSettings::default(), 20, 10, 0.5, 100, 1).unwrap();
        let mut t = WindowTrainer::new();
        let mut runs = Vec::new();
        for i in 0..200 {
            t.push(x(i), 10, 10 + i % 13, s.max_samples).unwrap();
            if let Some(job) = t.plan(&s, 600) {
                runs.push((t.seen(), job.len()));
            }
        }
        // 20, then +10 (30), then +15 (45), +23 (68), +34 (102), +51 (153)
        assert_eq!(runs, vec![(20, 20), (30, 30), (45, 45), (68, 68), (102, 100), (153, 100)]);
    }

    #[test]
    fn searches_below_200_then_on_doubling_then_every_8_fold_once_the_set_is_full() {
        let s = TrainerSettings::new(LearnerSettings::default(), 20, 10, 0.5, 250, 1).unwrap();
        let mut t = WindowTrainer::new();
        let mut searches = Vec::new();
        for i in 0..5000 {
            t.push(x(i), 10, 10 + i % 13, s.max_samples).unwrap();
            if let Some(job) = t.plan(&s, 600) {
                if job.searches() {
                    searches.push(t.seen());
                }
            }
        }
        // Runs at 20, 30, 45, 68, 102, 153 (all search: < 200), 230 (refit: < 2 × 153),
        // 345 (search: the set was not full at 153), then 518 … 2,624 refit (< 8 × 345,
        // the set being full since 250), and 3,936 searches.
        assert_eq!(searches, vec![20, 30, 45, 68, 102, 153, 345, 3936]);
    }

    #[test]
    fn shrunk_samples_are_excluded_and_counted() {
        let mut t = WindowTrainer::new();
        assert!(t.push(x(0), 10, 9, 100).is_err());
        let mut bad = x(1);
        bad[3] = f64::NAN;
        assert!(t.push(bad, 10, 12, 100).is_err());
        assert!(t.push(x(2), 10, 12, 100).is_ok());
        assert_eq!((t.seen(), t.excluded(), t.len()), (1, 2, 1));
    }

    #[test]
    fn runs_are_deterministic_and_independent_of_when_they_execute() {
        let s = TrainerSettings::new(LearnerSettings::default(), 30, 10, 0.0, 100, 5).unwrap();
        let mut a = WindowTrainer::new();
        let mut b = WindowTrainer::new();
        let mut ma = None;
        let mut jobs = Vec::new();
        for i in 0..40 {
            a.push(x(i), 5, 5 + (i * 7) % 11, 100).unwrap();
            b.push(x(i), 5, 5 + (i * 7) % 11, 100).unwrap();
            if let Some(j) = a.plan(&s, 1200) {
                ma = Some(j.run().unwrap());
            }
            if let Some(j) = b.plan(&s, 1200) {
                jobs.push(j);
            }
        }
        let mb = jobs.last().unwrap().run().unwrap();
        assert_eq!(ma.unwrap(), mb);
        // another window gets another seed
        let mut c = WindowTrainer::new();
        for i in 0..30 {
            c.push(x(i), 5, 5 + (i * 7) % 11, 100).unwrap();
        }
        assert_ne!(c.clone().plan(&s, 600).unwrap().seed(), c.plan(&s, 1200).unwrap().seed());
    }

    #[test]
    fn invalid_settings_are_errors() {
        let l = LearnerSettings::default();
        assert!(TrainerSettings::new(l.clone(), 3, 10, 0.1, 100, 0).is_err());
        assert!(TrainerSettings::new(l.clone(), 20, 0, 0.1, 100, 0).is_err());
        assert!(TrainerSettings::new(l.clone(), 20, 10, f64::NAN, 100, 0).is_err());
        assert!(TrainerSettings::new(l, 20, 10, 0.1, 10, 0).is_err());
    }
}
