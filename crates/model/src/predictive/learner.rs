//! The learners, their time-ordered hyper-parameter choice, the fallback and the model.

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

use super::boost::{BoostParams, BoostedTrees, Loss};
use super::features::{FeatureVector, FEATURE_SET, LOG_RATIO_CAP, N_FEATURES};
use super::{size_from_log_ratio, PredictiveError, MAX_LOG_RATIO};

/// Index of `log_seismic_ratio` in the feature vector.
const SEISMIC_RATIO: usize = 5;

/// The training-free prediction, used before a window has a model (and a candidate of every
/// hyper-parameter choice, so a model is only used when it validates better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// N = n: the cascade is over.
    NoGrowth,
    /// SEISMIC's final size, at least n and at most n·e^`max_log_ratio`; n when SEISMIC has
    /// no prediction (a supercritical SEISMIC is capped like any other).
    Seismic {
        /// Cap of ln(N/n).
        max_log_ratio: f64,
    },
    /// N = n·e^`log_ratio`.
    ConstantRatio {
        /// ln(N/n), ≥ 0.
        log_ratio: f64,
    },
}

impl Default for Fallback {
    /// The measured choice (PREDICTIVE.md, "Fallback"): SEISMIC capped at 5× the observed
    /// size.
    fn default() -> Self {
        Fallback::Seismic { max_log_ratio: 5f64.ln() }
    }
}

impl Fallback {
    /// Checks the parameter (finite, in [0, [`MAX_LOG_RATIO`]]).
    pub fn validate(&self) -> Result<(), PredictiveError> {
        let x = match self {
            Fallback::NoGrowth => return Ok(()),
            Fallback::Seismic { max_log_ratio } => *max_log_ratio,
            Fallback::ConstantRatio { log_ratio } => *log_ratio,
        };
        if x.is_finite() && (0.0..=MAX_LOG_RATIO).contains(&x) {
            Ok(())
        } else {
            Err(PredictiveError::InvalidParams(format!("fallback parameter {x} is not in [0, {MAX_LOG_RATIO}]")))
        }
    }

    /// The predicted ln(N/n) from the features (SEISMIC's is one of them), in
    /// [0, [`MAX_LOG_RATIO`]].
    pub fn log_ratio(&self, x: &FeatureVector) -> f64 {
        let y = match self {
            Fallback::NoGrowth => 0.0,
            Fallback::Seismic { max_log_ratio } => x[SEISMIC_RATIO].max(0.0).min(*max_log_ratio),
            Fallback::ConstantRatio { log_ratio } => *log_ratio,
        };
        clamp_log_ratio(y)
    }

    /// The predicted final size for a partial of `n_obs` events.
    pub fn predict(&self, x: &FeatureVector, n_obs: usize) -> f64 {
        size_from_log_ratio(n_obs, self.log_ratio(x))
    }
}

/// ŷ clamped to [0, MAX_LOG_RATIO], NaN → 0 (the same as the size computation).
fn clamp_log_ratio(y: f64) -> f64 {
    if y.is_nan() {
        0.0
    } else {
        y.clamp(0.0, MAX_LOG_RATIO)
    }
}

/// The base prediction the trees correct (the trees fit y − offset). With zero trees a
/// model *is* its offset plus a constant, so the hyper-parameter choice also weighs the
/// trivial baselines honestly, on the same validation samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetKind {
    /// 0: with the constant of the boosting, a constant ratio N = n·e^c.
    Zero,
    /// ln(S) − ln n with S the median final size of the training samples: a constant size.
    /// Strong on a selected sample (every cascade large), useless on an unselected one.
    ConstantSize,
    /// The fallback's prediction (e.g. SEISMIC), corrected by the trees.
    Fallback,
}

/// A fitted offset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offset {
    /// 0.
    Zero,
    /// ln(size) − ln n.
    ConstantSize {
        /// ln S, the median of ln N_true over the training samples.
        log_size: f64,
    },
    /// The fallback's log-ratio.
    Fallback(Fallback),
}

impl Offset {
    /// Fits the offset of `kind` on training rows and targets.
    fn fit(kind: OffsetKind, x: &[FeatureVector], y: &[f64], fallback: Fallback) -> Self {
        match kind {
            OffsetKind::Zero => Offset::Zero,
            OffsetKind::Fallback => Offset::Fallback(fallback),
            OffsetKind::ConstantSize => {
                let log_sizes: Vec<f64> = x.iter().zip(y).map(|(r, t)| r[LOG_N] + t).collect();
                let log_size = super::features::median(&log_sizes);
                Offset::ConstantSize { log_size: if log_size.is_finite() { log_size } else { 0.0 } }
            }
        }
    }

    /// The offset of one row.
    pub fn value(&self, x: &FeatureVector) -> f64 {
        match self {
            Offset::Zero => 0.0,
            Offset::ConstantSize { log_size } => log_size - x[LOG_N],
            Offset::Fallback(f) => f.log_ratio(x),
        }
    }
}

/// The numbers of trees a boosting candidate is scored at (plus `max_trees`): a coarse
/// grid, so that a small validation set chooses among few candidates.
const STAGES: [usize; 10] = [0, 5, 10, 20, 40, 70, 100, 150, 200, 300];

/// Below this many samples the validation uses `folds` rolling-origin blocks; from it on,
/// one block (measured: 3 s → 1.1 s per training run at 5,000 samples).
pub const MULTI_FOLD_BELOW: usize = 1000;

/// Index of `log_n` in the feature vector.
const LOG_N: usize = 0;

/// Which learner a window trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnerKind {
    /// Gradient-boosted trees ([`super::boost`]) with this loss on y.
    Boosted(Loss),
    /// smartcore's random forest (squared loss), depth-bounded.
    Forest,
}

/// The validation metric of the hyper-parameter choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median ARE of the sizes, |e^{ŷ−y} − 1| (what the project reports).
    MedianAre,
    /// Mean |ŷ − y| (smoother on small validation sets).
    MeanAbsLog,
}

impl Metric {
    /// [`Metric::score`] and its standard error: sd/√m of the absolute log errors for
    /// [`Metric::MeanAbsLog`]; 0 for [`Metric::MedianAre`] (no one-SE rule).
    pub fn score_with_se(&self, y_hat: impl Iterator<Item = f64> + Clone, y: &[f64]) -> (f64, f64) {
        let score = self.score(y_hat.clone(), y);
        let se = match self {
            Metric::MedianAre => 0.0,
            Metric::MeanAbsLog => {
                let errs: Vec<f64> = y_hat.zip(y).map(|(p, t)| (clamp_log_ratio(p) - t).abs()).collect();
                let m = errs.len() as f64;
                if errs.len() < 2 {
                    0.0
                } else {
                    let var = errs.iter().map(|e| (e - score) * (e - score)).sum::<f64>() / (m - 1.0);
                    (var / m).sqrt()
                }
            }
        };
        (score, if se.is_finite() { se } else { 0.0 })
    }

    /// The metric of predictions `y_hat` (clamped like real predictions) for targets `y`.
    pub fn score(&self, y_hat: impl Iterator<Item = f64>, y: &[f64]) -> f64 {
        let errs = y_hat.zip(y).map(|(p, t)| (clamp_log_ratio(p), *t));
        match self {
            Metric::MeanAbsLog => {
                let (s, k) = errs.fold((0.0, 0usize), |(s, k), (p, t)| (s + (p - t).abs(), k + 1));
                if k == 0 {
                    f64::INFINITY
                } else {
                    s / k as f64
                }
            }
            Metric::MedianAre => {
                let v: Vec<f64> = errs.map(|(p, t)| ((p - t).exp() - 1.0).abs()).collect();
                if v.is_empty() {
                    return f64::INFINITY;
                }
                super::features::median(&v)
            }
        }
    }
}

/// What a window trains and how it chooses hyper-parameters; build with
/// [`LearnerSettings::new`] or take [`Default`] (the measured choice), then adjust with the
/// validated `with_*` methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerSettings {
    kind: LearnerKind,
    /// Tree depths tried.
    depths: Vec<u8>,
    /// Leaf sizes tried.
    min_leaves: Vec<usize>,
    /// Boosting: most trees (the number is chosen on the validation set, 0 included).
    max_trees: usize,
    /// Boosting: shrinkage.
    learning_rate: f64,
    /// Forest: number of trees.
    forest_trees: usize,
    /// Fraction of the newest samples held out for validation.
    validation_fraction: f64,
    /// Number of consecutive validation blocks (rolling origin), below
    /// [`MULTI_FOLD_BELOW`] samples.
    folds: usize,
    /// One-standard-error rule: the simplest candidate within this many standard errors
    /// of the best validation score is chosen (0: the best).
    se_rule: f64,
    /// Validation metric.
    metric: Metric,
    /// The fallback, also a candidate of the choice.
    fallback: Fallback,
    /// The features used (indices into the feature vector), all by default.
    features: Vec<usize>,
    /// The offsets tried (boosting only; the forest always uses [`OffsetKind::Zero`]).
    offsets: Vec<OffsetKind>,
}

impl Default for LearnerSettings {
    fn default() -> Self {
        Self {
            kind: LearnerKind::Boosted(Loss::Absolute),
            depths: vec![2, 3],
            min_leaves: vec![5, 20],
            max_trees: 300,
            learning_rate: 0.05,
            forest_trees: 100,
            validation_fraction: 0.3,
            folds: 3,
            se_rule: 0.0,
            metric: Metric::MeanAbsLog,
            fallback: Fallback::default(),
            features: (0..N_FEATURES).collect(),
            offsets: vec![OffsetKind::Zero, OffsetKind::ConstantSize],
        }
    }
}

impl LearnerSettings {
    /// Validated settings. Requires non-empty grids of depths in 1..=12 and leaf sizes ≥ 1,
    /// `max_trees` ≤ 10,000 and `forest_trees` in 1..=10,000, a learning rate in (0, 1], a
    /// validation fraction in (0, 0.5], a valid fallback, and non-empty, distinct, in-range
    /// feature indices.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: LearnerKind,
        depths: Vec<u8>,
        min_leaves: Vec<usize>,
        max_trees: usize,
        learning_rate: f64,
        forest_trees: usize,
        validation_fraction: f64,
        metric: Metric,
        fallback: Fallback,
        features: Vec<usize>,
    ) -> Result<Self, PredictiveError> {
        let s = Self {
            kind,
            depths,
            min_leaves,
            max_trees,
            learning_rate,
            forest_trees,
            validation_fraction,
            folds: 3,
            se_rule: 0.0,
            metric,
            fallback,
            features,
            offsets: vec![OffsetKind::Zero, OffsetKind::ConstantSize],
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks every field (also for deserialized settings).
    pub fn validate(&self) -> Result<(), PredictiveError> {
        let bad = |m: String| Err(PredictiveError::InvalidParams(m));
        if self.depths.is_empty() || self.depths.iter().any(|d| !(1..=super::boost::MAX_DEPTH).contains(d)) {
            return bad(format!("depths {:?} must be a non-empty list of 1..=12", self.depths));
        }
        if self.min_leaves.is_empty() || self.min_leaves.contains(&0) {
            return bad(format!("min_leaves {:?} must be a non-empty list of values ≥ 1", self.min_leaves));
        }
        for &leaf in &self.min_leaves {
            BoostParams::new(Loss::Squared, self.max_trees, self.learning_rate, 1, leaf, 1.0, 64)?;
        }
        if !(1..=super::boost::MAX_TREES).contains(&self.forest_trees) {
            return bad(format!("forest_trees = {} is not in 1..=10000", self.forest_trees));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return bad(format!("validation_fraction = {} is not in (0, 0.5]", self.validation_fraction));
        }
        self.fallback.validate()?;
        if !(self.se_rule.is_finite() && (0.0..=5.0).contains(&self.se_rule)) {
            return bad(format!("se_rule = {} is not in [0, 5]", self.se_rule));
        }
        if !(1..=10).contains(&self.folds) {
            return bad(format!("folds = {} is not in 1..=10", self.folds));
        }
        if self.offsets.is_empty() {
            return bad("offsets must not be empty".into());
        }
        let mut f = self.features.clone();
        f.sort_unstable();
        f.dedup();
        if f.is_empty() || f.len() != self.features.len() || f.iter().any(|&i| i >= N_FEATURES) {
            return bad(format!("features {:?} must be distinct indices below {N_FEATURES}", self.features));
        }
        Ok(())
    }

    /// The learner.
    pub fn kind(&self) -> LearnerKind {
        self.kind
    }
    /// The fallback.
    pub fn fallback(&self) -> Fallback {
        self.fallback
    }
    /// The features used.
    pub fn features(&self) -> &[usize] {
        &self.features
    }
    /// The validation metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The same settings with another learner.
    pub fn with_kind(mut self, kind: LearnerKind) -> Self {
        self.kind = kind;
        self
    }
    /// The same settings with another fallback (validated).
    pub fn with_fallback(mut self, fallback: Fallback) -> Result<Self, PredictiveError> {
        fallback.validate()?;
        self.fallback = fallback;
        Ok(self)
    }
    /// The same settings with another metric.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }
    /// The same settings on a subset of the features (validated).
    pub fn with_features(mut self, features: Vec<usize>) -> Result<Self, PredictiveError> {
        self.features = features;
        self.validate()?;
        Ok(self)
    }
    /// The same settings with another grid (validated).
    pub fn with_grid(
        mut self,
        depths: Vec<u8>,
        min_leaves: Vec<usize>,
        max_trees: usize,
        learning_rate: f64,
    ) -> Result<Self, PredictiveError> {
        self.depths = depths;
        self.min_leaves = min_leaves;
        self.max_trees = max_trees;
        self.learning_rate = learning_rate;
        self.validate()?;
        Ok(self)
    }
    /// The same settings with other offsets (validated: not empty).
    pub fn with_offsets(mut self, offsets: Vec<OffsetKind>) -> Result<Self, PredictiveError> {
        self.offsets = offsets;
        self.validate()?;
        Ok(self)
    }
    /// The same settings with another number of validation folds (validated: 1..=10).
    pub fn with_folds(mut self, folds: usize) -> Result<Self, PredictiveError> {
        self.folds = folds;
        self.validate()?;
        Ok(self)
    }
    /// The same settings with another one-standard-error factor (validated: in [0, 5]).
    pub fn with_se_rule(mut self, se_rule: f64) -> Result<Self, PredictiveError> {
        self.se_rule = se_rule;
        self.validate()?;
        Ok(self)
    }
    /// The offsets tried.
    pub fn offsets(&self) -> &[OffsetKind] {
        &self.offsets
    }
    /// The same settings with another number of forest trees (validated).
    pub fn with_forest_trees(mut self, n: usize) -> Result<Self, PredictiveError> {
        self.forest_trees = n;
        self.validate()?;
        Ok(self)
    }

    /// Rows projected on the used features, row-major.
    fn project(&self, rows: &[FeatureVector]) -> Vec<f64> {
        rows.iter().flat_map(|r| self.features.iter().map(move |&i| r[i])).collect()
    }
}

/// The smartcore forest type used by [`LearnerKind::Forest`].
type SmartForest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// Serde of the shared forest as its contents.
mod arc_forest {
    use super::SmartForest;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(f: &Arc<SmartForest>, s: S) -> Result<S::Ok, S::Error> {
        f.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<SmartForest>, D::Error> {
        SmartForest::deserialize(d).map(Arc::new)
    }
}

/// A trained regressor of y = ln(N/n).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regressor {
    /// Boosted trees.
    Boosted(BoostedTrees),
    /// A random forest (shared: cloning a model is cheap).
    Forest(#[serde(with = "arc_forest")] Arc<SmartForest>),
    /// The fallback validated best.
    Fallback(Fallback),
}

/// The hyper-parameters a training run chose, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The offset the trees correct.
    pub offset: OffsetKind,
    /// Tree depth.
    pub depth: u8,
    /// Leaf size.
    pub min_leaf: usize,
    /// Number of trees (boosting: chosen on validation, 0 = the constant model).
    pub n_trees: usize,
    /// Validation score of the choice (lower is better).
    pub score: f64,
    /// Validation score of the fallback.
    pub fallback_score: f64,
    /// Training size.
    pub n_train: usize,
    /// Validation size.
    pub n_validation: usize,
    /// The fallback validated at least as well as every candidate: the model is the fallback.
    pub fallback_won: bool,
}

/// A window's model: a regressor of ln(N/n) over [`FEATURE_SET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictiveModel {
    feature_set: String,
    features: Vec<usize>,
    offset: Offset,
    regressor: Regressor,
    selection: Selection,
    n_samples: usize,
}

fn forest_params(depth: u8, leaf: usize, trees: usize, seed: u64, n_features: usize) -> RandomForestRegressorParameters {
    RandomForestRegressorParameters {
        max_depth: Some(depth as u16),
        min_samples_leaf: leaf,
        min_samples_split: 2 * leaf,
        n_trees: trees,
        m: Some(n_features),
        keep_samples: false,
        seed,
    }
}

fn forest_fit(
    x: &[f64],
    n_features: usize,
    y: &[f64],
    depth: u8,
    leaf: usize,
    trees: usize,
    seed: u64,
) -> Result<SmartForest, PredictiveError> {
    let m = DenseMatrix::new(y.len(), n_features, x.to_vec(), false).map_err(|e| PredictiveError::Forest(e.to_string()))?;
    SmartForest::fit(&m, &y.to_vec(), forest_params(depth, leaf, trees, seed, n_features))
        .map_err(|e| PredictiveError::Forest(e.to_string()))
}

fn forest_predict(f: &SmartForest, x: &[f64], n_features: usize) -> Vec<f64> {
    let n = x.len() / n_features;
    DenseMatrix::new(n, n_features, x.to_vec(), false)
        .ok()
        .and_then(|m| f.predict(&m).ok())
        .filter(|v| v.len() == n)
        .unwrap_or_else(|| vec![0.0; n])
}

impl PredictiveModel {
    /// Trains on samples in time order (oldest first): the hyper-parameters of the grid,
    /// and the fallback, are scored on the newest `validation_fraction` of the samples after
    /// training on the older ones; the best (lowest score; the first on ties, the grid being
    /// ordered from simple to complex, the fallback last) is retrained on all samples.
    ///
    /// Errors: fewer than 2 samples, ragged input, non-finite values, invalid settings.
    pub fn train(x: &[FeatureVector], y: &[f64], settings: &LearnerSettings, seed: u64) -> Result<Self, PredictiveError> {
        Self::train_against(x, y, settings, seed, None)
    }

    /// [`PredictiveModel::train`], with one more candidate: `incumbent`, a model trained
    /// elsewhere (a warm start from an earlier run), scored on the same validation samples
    /// as it is. It is returned unchanged when it validates best, so a cold window of a
    /// warm-started run keeps the earlier model until one trained on the new stream does
    /// better. Give no incumbent that saw the validation samples (its score would be biased).
    pub fn train_against(
        x: &[FeatureVector],
        y: &[f64],
        settings: &LearnerSettings,
        seed: u64,
        incumbent: Option<&PredictiveModel>,
    ) -> Result<Self, PredictiveError> {
        settings.validate()?;
        if x.len() != y.len() {
            return Err(PredictiveError::LengthMismatch { rows: x.len(), targets: y.len() });
        }
        if y.len() < 2 {
            return Err(PredictiveError::TooFewSamples { have: y.len(), need: 2 });
        }
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(PredictiveError::NonFinite { row, what: "target" });
        }
        if let Some(row) = x.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(PredictiveError::NonFinite { row, what: "feature" });
        }
        let nf = settings.features.len();
        let n = y.len();
        let all = settings.project(x);
        let metric = settings.metric;
        // Time-ordered validation: the newest `validation_fraction` of the samples, cut into
        // `folds` consecutive blocks; each block is predicted by candidates trained on every
        // sample before it (rolling origin), and a candidate's score is its metric over all
        // blocks together.
        let n_val_total = ((settings.validation_fraction * n as f64).round() as usize).clamp(1, n - 1);
        // Several folds only where validation noise matters: with ≥ MULTI_FOLD_BELOW samples
        // one block is precise enough, and the training cost is divided by `folds`.
        let folds = if n < MULTI_FOLD_BELOW { settings.folds.min(n_val_total).max(1) } else { 1 };
        let first_val = n - n_val_total;
        let cuts: Vec<usize> = (0..=folds).map(|j| first_val + (n_val_total * j) / folds).collect();
        let y_val_all = &y[first_val..];
        let fallback_score = metric.score(x[first_val..].iter().map(|r| settings.fallback.log_ratio(r)), y_val_all);
        let offsets: &[OffsetKind] = match settings.kind {
            LearnerKind::Boosted(_) => &settings.offsets,
            LearnerKind::Forest => &[OffsetKind::Zero],
        };
        let stages: Vec<usize> = match settings.kind {
            LearnerKind::Boosted(_) => {
                STAGES.iter().copied().filter(|&k| k < settings.max_trees).chain([settings.max_trees]).collect()
            }
            LearnerKind::Forest => vec![settings.forest_trees],
        };
        // Candidate (offset, depth, leaf, stage) → its validation predictions, fold after fold.
        let mut keys: Vec<(OffsetKind, u8, usize, usize)> = Vec::new();
        for &offset in offsets {
            for &depth in &settings.depths {
                for &leaf in &settings.min_leaves {
                    for &k in &stages {
                        keys.push((offset, depth, leaf, k));
                    }
                }
            }
        }
        // The fits of the search are independent (one per fold, offset, depth and leaf size),
        // so they run in parallel on rayon's pool: a search is over four fifths of the
        // training time, and the dataflow waits for each model (`model_delay`), so a search
        // on one core left the others idle. Each fit is seeded as before and the results are
        // gathered in grid order: the chosen model does not depend on the number of threads.
        let folds_offsets: Vec<(usize, usize, OffsetKind)> =
            cuts.windows(2).filter(|w| w[1] > w[0]).flat_map(|w| offsets.iter().map(move |&o| (w[0], w[1], o))).collect();
        // Per (fold, offset): the residual targets and the offset's validation values.
        let residuals: Vec<(Vec<f64>, Vec<f64>)> = folds_offsets
            .iter()
            .map(|&(n_tr, hi, offset)| {
                let off = Offset::fit(offset, &x[..n_tr], &y[..n_tr], settings.fallback);
                let r_tr = x[..n_tr].iter().zip(&y[..n_tr]).map(|(r, t)| t - off.value(r)).collect();
                (r_tr, x[n_tr..hi].iter().map(|r| off.value(r)).collect())
            })
            .collect();
        let fits: Vec<(usize, u8, usize)> = (0..folds_offsets.len())
            .flat_map(|k| settings.depths.iter().flat_map(move |&d| settings.min_leaves.iter().map(move |&l| (k, d, l))))
            .collect();
        // Each fit's validation predictions, one vector per stage (one for a forest).
        let fitted: Vec<Result<Vec<Vec<f64>>, PredictiveError>> = fits
            .par_iter()
            .map(|&(k, depth, leaf)| {
                let (n_tr, hi, _) = folds_offsets[k];
                let (r_tr, off_val) = &residuals[k];
                let x_tr = &all[..n_tr * nf];
                let x_val = &all[n_tr * nf..hi * nf];
                let shifted = |pred: &[f64]| pred.iter().zip(off_val).map(|(a, b)| a + b).collect::<Vec<f64>>();
                match settings.kind {
                    LearnerKind::Boosted(loss) => {
                        let p = BoostParams::new(loss, settings.max_trees, settings.learning_rate, depth, leaf, 1.0, 64)?;
                        let (_, staged) = BoostedTrees::train_staged(x_tr, nf, r_tr, x_val, &p, seed)?;
                        Ok(stages.iter().map(|&s| shifted(&staged[s])).collect())
                    }
                    LearnerKind::Forest => {
                        let f = forest_fit(x_tr, nf, r_tr, depth, leaf, settings.forest_trees, seed)?;
                        Ok(vec![shifted(&forest_predict(&f, x_val, nf))])
                    }
                }
            })
            .collect();
        // Candidate (offset, depth, leaf, stage) → its validation predictions, fold after
        // fold: the fits come fold-major, so candidate c of each fold is at the same place.
        let per_fold = keys.len();
        let mut preds: Vec<Vec<f64>> = vec![Vec::with_capacity(n_val_total); per_fold];
        let mut c = 0;
        for stages_of_fit in fitted {
            for p in stages_of_fit? {
                preds[c % per_fold].extend(p);
                c += 1;
            }
        }
        // Scores, then the "one-standard-error rule" (Breiman et al., CART, 1984): the
        // simplest candidate whose score is within `se_rule` standard errors of the best
        // one wins. On a handful of validation samples that is a trivial model (a constant
        // ratio or size); with many, the best one.
        let scored: Vec<(f64, f64)> = preds.iter().map(|p| metric.score_with_se(p.iter().copied(), y_val_all)).collect();
        let (best_i, &(best_score, best_se)) = scored
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(a.0.cmp(&b.0)))
            .ok_or_else(|| PredictiveError::InvalidParams("empty grid".into()))?;
        let bar = best_score + settings.se_rule * best_se;
        // Simplicity order: fewer trees, then shallower, then bigger leaves; among equally
        // simple candidates (e.g. the offsets alone), the better score, then the grid order.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&i, &j| {
            let (_, di, li, ki) = keys[i];
            let (_, dj, lj, kj) = keys[j];
            let depth_i = if ki == 0 { 0 } else { di };
            let depth_j = if kj == 0 { 0 } else { dj };
            let leaf_i = if ki == 0 { usize::MAX } else { li };
            let leaf_j = if kj == 0 { usize::MAX } else { lj };
            (ki, depth_i, std::cmp::Reverse(leaf_i))
                .cmp(&(kj, depth_j, std::cmp::Reverse(leaf_j)))
                .then(scored[i].0.total_cmp(&scored[j].0))
                .then(i.cmp(&j))
        });
        let chosen = order.into_iter().find(|&i| scored[i].0 <= bar).unwrap_or(best_i);
        let (offset, depth, min_leaf, n_trees) = keys[chosen];
        let sel = Selection {
            offset,
            depth,
            min_leaf,
            n_trees,
            score: scored[chosen].0,
            fallback_score,
            n_train: first_val,
            n_validation: n_val_total,
            fallback_won: false,
        };
        if let Some(incumbent) = incumbent {
            let score = metric.score(x[first_val..].iter().map(|r| incumbent.predict_log_ratio(r)), y_val_all);
            if score <= best_score && score <= fallback_score {
                return Ok(incumbent.clone());
            }
        }
        // The fallback is not "simpler" than a fitted constant: it must validate best (`fit`).
        let sel = Selection { fallback_won: fallback_score <= best_score, ..sel };
        Self::fit(x, y, settings, seed, sel)
    }

    /// Trains the configuration `selection` (an earlier [`PredictiveModel::train`]'s choice)
    /// on all the samples, without a new hyper-parameter search: the cheap run between two
    /// searches (`TrainJob::run_with`). The fallback if it validated best then.
    ///
    /// Errors: as [`PredictiveModel::train`].
    pub fn refit(
        x: &[FeatureVector],
        y: &[f64],
        settings: &LearnerSettings,
        seed: u64,
        selection: &Selection,
    ) -> Result<Self, PredictiveError> {
        settings.validate()?;
        if x.len() != y.len() {
            return Err(PredictiveError::LengthMismatch { rows: x.len(), targets: y.len() });
        }
        if y.is_empty() {
            return Err(PredictiveError::TooFewSamples { have: 0, need: 1 });
        }
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(PredictiveError::NonFinite { row, what: "target" });
        }
        if let Some(row) = x.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(PredictiveError::NonFinite { row, what: "feature" });
        }
        Self::fit(x, y, settings, seed, *selection)
    }

    /// Fits the chosen configuration on all samples (or takes the fallback when it validated
    /// best: `selection.fallback_won`).
    fn fit(
        x: &[FeatureVector],
        y: &[f64],
        settings: &LearnerSettings,
        seed: u64,
        sel: Selection,
    ) -> Result<Self, PredictiveError> {
        let nf = settings.features.len();
        let all = settings.project(x);
        let (offset, regressor) = if sel.fallback_won {
            (Offset::Zero, Regressor::Fallback(settings.fallback))
        } else {
            let off = Offset::fit(sel.offset, x, y, settings.fallback);
            let r: Vec<f64> = x.iter().zip(y).map(|(row, t)| t - off.value(row)).collect();
            let regressor = match settings.kind {
                LearnerKind::Boosted(loss) => {
                    let p = BoostParams::new(loss, sel.n_trees, settings.learning_rate, sel.depth, sel.min_leaf, 1.0, 64)?;
                    Regressor::Boosted(BoostedTrees::train(&all, nf, &r, &p, seed)?)
                }
                LearnerKind::Forest => {
                    Regressor::Forest(Arc::new(forest_fit(&all, nf, &r, sel.depth, sel.min_leaf, settings.forest_trees, seed)?))
                }
            };
            (off, regressor)
        };
        Ok(Self {
            feature_set: FEATURE_SET.to_string(),
            features: settings.features.clone(),
            offset,
            regressor,
            selection: sel,
            n_samples: y.len(),
        })
    }

    /// The predicted ln(N/n), in [0, [`MAX_LOG_RATIO`]], never NaN.
    pub fn predict_log_ratio(&self, x: &FeatureVector) -> f64 {
        let row: Vec<f64> = self.features.iter().map(|&i| x.get(i).copied().unwrap_or(f64::NAN)).collect();
        let y = match &self.regressor {
            Regressor::Boosted(b) => self.offset.value(x) + b.predict(&row),
            Regressor::Forest(f) => self.offset.value(x) + forest_predict(f, &row, row.len().max(1))[0],
            Regressor::Fallback(fb) => fb.log_ratio(x),
        };
        clamp_log_ratio(y)
    }

    /// The predicted final size of a partial of `n_obs` events: ≥ n_obs, finite.
    pub fn predict(&self, x: &FeatureVector, n_obs: usize) -> f64 {
        size_from_log_ratio(n_obs, self.predict_log_ratio(x))
    }

    /// The regressor.
    pub fn regressor(&self) -> &Regressor {
        &self.regressor
    }
    /// The offset the trees correct.
    pub fn offset(&self) -> &Offset {
        &self.offset
    }
    /// What the hyper-parameter choice chose.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }
    /// Number of training samples.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }
    /// The model's feature set (see [`PredictiveModel::check_feature_set`]).
    pub fn feature_set(&self) -> &str {
        &self.feature_set
    }

    /// Refuses a model (e.g. read back for a warm start) of another feature set, or whose
    /// feature indices do not fit this build's feature vector.
    pub fn check_feature_set(&self) -> Result<(), PredictiveError> {
        if self.feature_set != FEATURE_SET || self.features.iter().any(|&i| i >= N_FEATURES) || self.features.is_empty() {
            return Err(PredictiveError::FeatureSet { found: self.feature_set.clone(), expected: FEATURE_SET.to_string() });
        }
        Ok(())
    }
}

/// Keep the substitute in sync: the SEISMIC fallback reads the capped log-ratio feature.
const _: () = assert!(LOG_RATIO_CAP == MAX_LOG_RATIO);

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic samples: y depends on log_n (feature 0) and one mark feature, with noise.
    fn samples(n: usize, seed: u64) -> (Vec<FeatureVector>, Vec<f64>) {
        let mut s = seed;
        let mut u = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for _ in 0..n {
            let mut x = [0.0; N_FEATURES];
            for v in x.iter_mut() {
                *v = u();
            }
            x[0] = 5.0 * u();
            ys.push((3.0 - 0.5 * x[0] + x[10] + 0.2 * (u() - 0.5)).max(0.0));
            xs.push(x);
        }
        (xs, ys)
    }

    #[test]
    fn a_learnable_target_beats_the_fallback_and_training_is_reproducible() {
        let (x, y) = samples(400, 1);
        let s = LearnerSettings::default();
        let m = PredictiveModel::train(&x, &y, &s, 9).unwrap();
        assert!(matches!(m.regressor(), Regressor::Boosted(_)));
        assert!(m.selection().score < m.selection().fallback_score);
        let (xt, yt) = samples(200, 2);
        let err: f64 = xt.iter().zip(&yt).map(|(r, t)| (m.predict_log_ratio(r) - t).abs()).sum::<f64>() / 200.0;
        assert!(err < 0.2, "{err}");
        let again = PredictiveModel::train(&x, &y, &s, 9).unwrap();
        assert_eq!(m, again);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.len() < 200_000, "compact: {} bytes", json.len());
        let back: PredictiveModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        back.check_feature_set().unwrap();
    }

    #[test]
    fn the_parallel_search_chooses_the_same_model_on_any_number_of_threads() {
        // The search's fits run on rayon's pool: the model must not depend on its size
        // (fits seeded alike, gathered in grid order), with several folds (< 500 samples)
        // and with one, and for both learners.
        let on = |threads: usize, x: &[FeatureVector], y: &[f64], s: &LearnerSettings| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| PredictiveModel::train(x, y, s, 3).unwrap())
        };
        for n in [60, 700] {
            let (x, y) = samples(n, 11);
            for s in [LearnerSettings::default(), LearnerSettings::default().with_kind(LearnerKind::Forest)] {
                let one = on(1, &x, &y, &s);
                assert_eq!(one, on(3, &x, &y, &s), "n = {n}, {:?}", s.kind());
                assert_eq!(one, on(8, &x, &y, &s), "n = {n}, {:?}", s.kind());
            }
        }
    }

    #[test]
    fn a_warm_incumbent_is_kept_until_a_model_trained_here_validates_better() {
        let s = LearnerSettings::default();
        let (x, y) = samples(400, 4);
        let incumbent = PredictiveModel::train(&x, &y, &s, 1).unwrap();
        // Twelve new samples of the same law: too few to beat a model trained on 400.
        let (x_new, y_new) = samples(12, 5);
        let kept = PredictiveModel::train_against(&x_new, &y_new, &s, 2, Some(&incumbent)).unwrap();
        assert_eq!(kept, incumbent);
        // A stream where nothing grows: the incumbent is wrong there and loses.
        let zeros = vec![0.0; 12];
        let replaced = PredictiveModel::train_against(&x_new, &zeros, &s, 2, Some(&incumbent)).unwrap();
        assert_ne!(replaced, incumbent);
        assert!(replaced.predict_log_ratio(&x_new[0]) < 0.1);
    }

    #[test]
    fn pure_noise_selects_a_constant_or_the_fallback() {
        let (x, _) = samples(200, 3);
        let y = vec![0.0; 200];
        let s = LearnerSettings::default().with_fallback(Fallback::NoGrowth).unwrap();
        let m = PredictiveModel::train(&x, &y, &s, 1).unwrap();
        // "no growth" is exact here and wins (ties go to the fallback).
        assert_eq!(m.regressor(), &Regressor::Fallback(Fallback::NoGrowth));
        assert_eq!(m.predict(&x[0], 10), 10.0);
        // With the default fallback (SEISMIC, which the random features make wrong), the
        // constant model wins, with no tree.
        let m = PredictiveModel::train(&x, &y, &LearnerSettings::default(), 1).unwrap();
        assert!(matches!(m.regressor(), Regressor::Boosted(b) if b.n_trees() == 0));
        assert_eq!(m.predict(&x[0], 10), 10.0);
    }

    #[test]
    fn forest_learner_trains_too() {
        let (x, y) = samples(200, 4);
        let s = LearnerSettings::default().with_kind(LearnerKind::Forest).with_forest_trees(20).unwrap();
        let m = PredictiveModel::train(&x, &y, &s, 3).unwrap();
        assert!(matches!(m.regressor(), Regressor::Forest(_)));
        assert!(m.predict(&x[0], 5) >= 5.0);
    }

    #[test]
    fn invalid_settings_and_data_are_errors() {
        let d = LearnerSettings::default();
        assert!(d.clone().with_features(vec![]).is_err());
        assert!(d.clone().with_features(vec![0, 0]).is_err());
        assert!(d.clone().with_features(vec![N_FEATURES]).is_err());
        assert!(d.clone().with_grid(vec![], vec![5], 10, 0.1).is_err());
        assert!(d.clone().with_grid(vec![2], vec![0], 10, 0.1).is_err());
        assert!(d.clone().with_fallback(Fallback::ConstantRatio { log_ratio: f64::NAN }).is_err());
        let (x, y) = samples(10, 5);
        assert!(PredictiveModel::train(&x[..1], &y[..1], &d, 0).is_err());
        assert!(PredictiveModel::train(&x, &y[..5], &d, 0).is_err());
        let mut bad = x.clone();
        bad[3][2] = f64::NAN;
        assert!(matches!(PredictiveModel::train(&bad, &y, &d, 0), Err(PredictiveError::NonFinite { row: 3, .. })));
    }

    #[test]
    fn a_model_of_another_feature_set_is_refused() {
        let (x, y) = samples(50, 6);
        let m = PredictiveModel::train(&x, &y, &LearnerSettings::default(), 0).unwrap();
        let json = serde_json::to_string(&m).unwrap().replace(FEATURE_SET, "predictive-v0");
        let other: PredictiveModel = serde_json::from_str(&json).unwrap();
        assert!(matches!(other.check_feature_set(), Err(PredictiveError::FeatureSet { .. })));
    }

    #[test]
    fn fallbacks_read_the_seismic_feature() {
        let mut x = [0.0; N_FEATURES];
        x[SEISMIC_RATIO] = 2.0;
        assert_eq!(Fallback::NoGrowth.predict(&x, 10), 10.0);
        assert!((Fallback::Seismic { max_log_ratio: 5.0 }.predict(&x, 10) - 10.0 * 2f64.exp()).abs() < 1e-9);
        assert!((Fallback::Seismic { max_log_ratio: 1.0 }.predict(&x, 10) - 10.0 * 1f64.exp()).abs() < 1e-9);
        x[SEISMIC_RATIO] = super::super::MISSING;
        assert_eq!(Fallback::Seismic { max_log_ratio: 5.0 }.predict(&x, 10), 10.0);
        assert!((Fallback::ConstantRatio { log_ratio: 1.0 }.predict(&x, 10) - 10.0 * 1f64.exp()).abs() < 1e-9);
    }
}
