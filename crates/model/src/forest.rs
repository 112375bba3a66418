//! Random-forest "predictive layer" (SPEC §4.2; Mishra, Rizoiu & Xie, CIKM 2016).
//!
//! The Hawkes estimate of a cascade's final size is corrected by a regressor trained per
//! observation window: from the features X = (β, n*, G1) it predicts the factor ω that
//! multiplies the expected number of future retweets, N = n + ω·G1/(1−n*). The training
//! target of a finished cascade is W = (N_true − n)(1 − n*)/G1.
//!
//! The regressor is smartcore 0.7's [`RandomForestRegressor`] (bootstrap + best split on the
//! MSE criterion, i.e. scikit-learn's `RandomForestRegressor`, which the course used), wrapped
//! so that:
//! - inputs are validated (non-finite values are rejected with the offending row, empty input
//!   and inconsistent hyper-parameters are errors, never panics inside smartcore);
//! - training is a pure function of (samples in order, [`ForestParams`], seed): smartcore
//!   draws the bootstraps from a `SmallRng` seeded with our seed and gives tree `i` the seed
//!   `seed + i`, single-threaded, so the trees, the predictions and the serialized JSON are
//!   bitwise reproducible whatever the number of timely workers;
//! - [`Forest::predict`] never returns NaN or infinity (fallback ω = 1, plain Hawkes);
//! - the model is `Clone` (cheaply, behind an [`Arc`]) and `serde`-serializable, so it can be
//!   broadcast between workers and written to the `models` output.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// Features of a sample: (β, n*, G1), in that order.
pub type Features = [f64; 3];

/// Number of features in [`Features`].
pub const N_FEATURES: usize = 3;

/// The smartcore model type we wrap (f64 features in a dense matrix, f64 targets).
type Model = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// Hyper-parameters of the forest.
///
/// Defaults are scikit-learn's `RandomForestRegressor` defaults, which the course used:
/// 100 fully grown trees, every feature considered at every split, bootstrap samples.
/// Missing fields take their default when deserialized (so a config can set only some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// Number of trees averaged. More trees lower the variance of ω at a linear cost in
    /// training time, prediction time and model size. Must be ≥ 1.
    pub n_trees: usize,
    /// Maximum depth of each tree (`None` = grow until leaves are pure or too small).
    /// Bounds tree size, hence training time and the size of the serialized model.
    /// Must be ≥ 1 when set.
    pub max_depth: Option<u16>,
    /// Minimum number of (bootstrap) samples in a leaf. Larger values smooth ω and shrink
    /// the trees; the target W is noisy, so 5 is a reasonable value. Must be ≥ 1.
    pub min_samples_leaf: usize,
    /// Minimum number of samples a node needs to be split. Must be ≥ 2.
    pub min_samples_split: usize,
    /// Number of features tried at each split (`None` = all 3, like scikit-learn's regressor
    /// default; smartcore's own default would be ⌊√3⌋ = 1). Must be in 1..=3 when set.
    pub m: Option<usize>,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self { n_trees: 100, max_depth: None, min_samples_leaf: 1, min_samples_split: 2, m: None }
    }
}

impl ForestParams {
    /// Checks the hyper-parameters, so that bad configuration is reported as
    /// [`ForestError::InvalidParams`] rather than as a panic or a degenerate model.
    pub fn validate(&self) -> Result<(), ForestError> {
        let bad = |msg: String| Err(ForestError::InvalidParams(msg));
        if self.n_trees == 0 {
            return bad("n_trees must be >= 1".into());
        }
        if self.max_depth == Some(0) {
            return bad("max_depth must be >= 1 (or None)".into());
        }
        if self.min_samples_leaf == 0 {
            return bad("min_samples_leaf must be >= 1".into());
        }
        if self.min_samples_split < 2 {
            return bad(format!("min_samples_split must be >= 2, got {}", self.min_samples_split));
        }
        if let Some(m) = self.m {
            if m == 0 || m > N_FEATURES {
                return bad(format!("m must be in 1..={N_FEATURES}, got {m}"));
            }
        }
        Ok(())
    }

    /// Translation to smartcore's parameters (with `m = None` made explicit as "all features").
    fn to_smartcore(&self, seed: u64) -> RandomForestRegressorParameters {
        RandomForestRegressorParameters {
            max_depth: self.max_depth,
            min_samples_leaf: self.min_samples_leaf,
            min_samples_split: self.min_samples_split,
            n_trees: self.n_trees,
            m: Some(self.m.unwrap_or(N_FEATURES)),
            keep_samples: false,
            seed,
        }
    }
}

/// Training failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    /// Not enough samples to train (currently: zero samples).
    #[error("cannot train on {0} samples")]
    TooFewSamples(usize),
    /// `x` and `y` do not have the same number of rows.
    #[error("{x} feature rows but {y} targets")]
    LengthMismatch {
        /// Number of feature rows.
        x: usize,
        /// Number of targets.
        y: usize,
    },
    /// A feature or target is NaN or infinite; `row` is its index in the training set, so
    /// that the upstream sample filter (SPEC §4.2 degenerate cases) can be fixed.
    #[error("non-finite {what} in training row {row}")]
    NonFinite {
        /// Index of the offending row.
        row: usize,
        /// Which value: "feature β", "feature n*", "feature G1" or "target W".
        what: &'static str,
    },
    /// Hyper-parameters out of range (see [`ForestParams::validate`]).
    #[error("invalid forest parameters: {0}")]
    InvalidParams(String),
    /// The underlying library failed (should not happen after validation).
    #[error("training failed: {0}")]
    Training(String),
}

/// A trained forest predicting the correction factor ω from features.
///
/// `Clone` is cheap (the trees are shared behind an [`Arc`]). Serialized, it records the
/// parameters, the seed and the number of samples it was trained on, plus smartcore's trees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forest {
    /// Hyper-parameters used for training (provenance for the `models` output).
    params: ForestParams,
    /// Seed used for training (provenance; retraining with it reproduces the model).
    seed: u64,
    /// Number of samples the forest was trained on.
    n_samples: usize,
    /// The smartcore trees.
    #[serde(with = "arc_serde")]
    model: Arc<Model>,
}

impl PartialEq for Forest {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params && self.seed == other.seed && self.n_samples == other.n_samples && *self.model == *other.model
    }
}

impl Forest {
    /// ω returned when the forest's output is not finite: 1 means "plain Hawkes" (SPEC §4.2).
    pub const FALLBACK: f64 = 1.0;

    /// Trains a forest on rows `x` with targets `y` (W values). Deterministic: the same
    /// `(x, y, params, seed)` always gives the same trees, bit for bit.
    ///
    /// Errors: empty input → [`ForestError::TooFewSamples`]; different lengths →
    /// [`ForestError::LengthMismatch`]; a NaN/∞ value → [`ForestError::NonFinite`] with its row;
    /// bad hyper-parameters → [`ForestError::InvalidParams`].
    pub fn train(x: &[Features], y: &[f64], params: &ForestParams, seed: u64) -> Result<Self, ForestError> {
        params.validate()?;
        if x.len() != y.len() {
            return Err(ForestError::LengthMismatch { x: x.len(), y: y.len() });
        }
        if y.is_empty() {
            return Err(ForestError::TooFewSamples(0));
        }
        const NAMES: [&str; N_FEATURES] = ["feature β", "feature n*", "feature G1"];
        for (row, (features, target)) in x.iter().zip(y).enumerate() {
            if let Some(j) = features.iter().position(|v| !v.is_finite()) {
                return Err(ForestError::NonFinite { row, what: NAMES[j] });
            }
            if !target.is_finite() {
                return Err(ForestError::NonFinite { row, what: "target W" });
            }
        }
        let matrix = to_matrix(x)?;
        let model =
            Model::fit(&matrix, &y.to_vec(), params.to_smartcore(seed)).map_err(|e| ForestError::Training(e.to_string()))?;
        Ok(Self { params: params.clone(), seed, n_samples: y.len(), model: Arc::new(model) })
    }

    /// Predicts ω for one feature row. Never NaN or infinite: if the forest's output is not
    /// finite (or smartcore reports an error), returns [`Forest::FALLBACK`] = 1.0, i.e. the
    /// plain Hawkes prediction. Non-finite features are not rejected here; they simply follow
    /// the "greater than threshold" branch of every split, so the result is still a finite
    /// average of leaf values.
    pub fn predict(&self, x: &Features) -> f64 {
        match DenseMatrix::new(1, N_FEATURES, x.to_vec(), false) {
            Ok(m) => match self.model.predict(&m) {
                Ok(out) => sanitize(out.first().copied().unwrap_or(Self::FALLBACK)),
                Err(_) => Self::FALLBACK,
            },
            Err(_) => Self::FALLBACK,
        }
    }

    /// Predicts ω for many rows at once (one matrix, one call into smartcore); same values
    /// and same fallback as calling [`Forest::predict`] on each row.
    pub fn predict_batch(&self, xs: &[Features]) -> Vec<f64> {
        if xs.is_empty() {
            return Vec::new();
        }
        match to_matrix(xs).ok().and_then(|m| self.model.predict(&m).ok()) {
            Some(out) if out.len() == xs.len() => out.into_iter().map(sanitize).collect(),
            _ => xs.iter().map(|x| self.predict(x)).collect(),
        }
    }

    /// Hyper-parameters the forest was trained with.
    pub fn params(&self) -> &ForestParams {
        &self.params
    }

    /// Seed the forest was trained with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of training samples.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }
}

/// Replaces a non-finite forest output by the plain-Hawkes fallback.
fn sanitize(w: f64) -> f64 {
    if w.is_finite() {
        w
    } else {
        Forest::FALLBACK
    }
}

/// Row-major dense matrix of the rows.
fn to_matrix(x: &[Features]) -> Result<DenseMatrix<f64>, ForestError> {
    let values: Vec<f64> = x.iter().flat_map(|r| r.iter().copied()).collect();
    DenseMatrix::new(x.len(), N_FEATURES, values, false).map_err(|e| ForestError::Training(e.to_string()))
}

/// Serde for `Arc<Model>` without enabling serde's `rc` feature workspace-wide: the model is
/// written as its contents, and read back into a fresh `Arc`.
mod arc_serde {
    use super::Model;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(model: &Arc<Model>, s: S) -> Result<S::Ok, S::Error> {
        model.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Model>, D::Error> {
        Model::deserialize(d).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [0, 1) for test data (splitmix64).
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` rows shaped like real features (β ~ 1e-4..1e-2, n* in 0..1, G1 in 0..100).
    fn features(n: usize, seed: u64) -> Vec<Features> {
        let mut s = seed;
        (0..n).map(|_| [1e-4 + 1e-2 * uniform(&mut s), uniform(&mut s), 100.0 * uniform(&mut s)]).collect()
    }

    /// Noisy non-linear target, for determinism and timing tests.
    fn noisy_target(x: &[Features], seed: u64) -> Vec<f64> {
        let mut s = seed;
        x.iter().map(|r| 1.0 + r[1] * r[1] + 0.01 * r[2] + 0.3 * uniform(&mut s)).collect()
    }

    #[test]
    fn forest_fits_simple_function() {
        let mut s = 7;
        let x: Vec<Features> = (0..500).map(|_| [uniform(&mut s), uniform(&mut s), uniform(&mut s)]).collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 + r[0]).collect();
        let forest = Forest::train(&x, &y, &ForestParams::default(), 1).unwrap();
        let test: Vec<Features> = (0..200).map(|_| [uniform(&mut s), uniform(&mut s), uniform(&mut s)]).collect();
        let pred = forest.predict_batch(&test);
        let mae = test.iter().zip(&pred).map(|(r, p)| (p - (2.0 + r[0])).abs()).sum::<f64>() / 200.0;
        assert!(mae < 0.03, "held-out MAE {mae}");
        for (r, p) in test.iter().zip(&pred) {
            assert_eq!(p.to_bits(), forest.predict(r).to_bits(), "batch == single");
        }
    }

    #[test]
    fn forest_constant_target_predicts_constant() {
        let x = features(50, 3);
        let y = vec![1.7; 50];
        let forest = Forest::train(&x, &y, &ForestParams::default(), 9).unwrap();
        // Each leaf holds exactly 1.7; the mean over 100 trees may be off by a few ulps.
        for r in features(20, 4) {
            assert!((forest.predict(&r) - 1.7).abs() < 1e-12);
        }
    }

    #[test]
    fn forest_single_sample() {
        let forest = Forest::train(&[[0.1, 0.5, 3.0]], &[2.5], &ForestParams::default(), 0).unwrap();
        assert_eq!(forest.predict(&[0.0, 0.0, 0.0]), 2.5);
        assert_eq!(forest.n_samples(), 1);
    }

    #[test]
    fn forest_validation_errors() {
        let p = ForestParams::default();
        assert_eq!(Forest::train(&[], &[], &p, 0).unwrap_err(), ForestError::TooFewSamples(0));
        assert_eq!(Forest::train(&[[1.0; 3]], &[], &p, 0).unwrap_err(), ForestError::LengthMismatch { x: 1, y: 0 });
        let x = vec![[1.0, 0.5, 2.0], [1.0, f64::NAN, 2.0]];
        assert_eq!(Forest::train(&x, &[1.0, 1.0], &p, 0).unwrap_err(), ForestError::NonFinite { row: 1, what: "feature n*" });
        let x = vec![[1.0, 0.5, 2.0]; 3];
        assert_eq!(
            Forest::train(&x, &[1.0, 1.0, f64::INFINITY], &p, 0).unwrap_err(),
            ForestError::NonFinite { row: 2, what: "target W" }
        );
        let e = Forest::train(&x, &[1.0; 3], &ForestParams { n_trees: 0, ..p.clone() }, 0);
        assert!(matches!(e, Err(ForestError::InvalidParams(_))), "{e:?}");
        for bad in [
            ForestParams { max_depth: Some(0), ..p.clone() },
            ForestParams { min_samples_leaf: 0, ..p.clone() },
            ForestParams { min_samples_split: 1, ..p.clone() },
            ForestParams { m: Some(0), ..p.clone() },
            ForestParams { m: Some(4), ..p.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(ForestError::InvalidParams(_))), "{bad:?}");
        }
        let msg = ForestError::NonFinite { row: 1, what: "feature n*" }.to_string();
        assert!(msg.contains("row 1"), "{msg}");
    }

    #[test]
    fn forest_is_deterministic() {
        let x = features(300, 11);
        let y = noisy_target(&x, 12);
        let p = ForestParams { n_trees: 30, ..ForestParams::default() };
        let a = Forest::train(&x, &y, &p, 42).unwrap();
        let b = Forest::train(&x, &y, &p, 42).unwrap();
        assert_eq!(a, b);
        let (ja, jb) = (serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_eq!(ja, jb);
        for r in features(100, 13) {
            assert_eq!(a.predict(&r).to_bits(), b.predict(&r).to_bits());
        }
    }

    #[test]
    fn forest_seeds_differ() {
        let x = features(300, 11);
        let y = noisy_target(&x, 12);
        let p = ForestParams { n_trees: 30, ..ForestParams::default() };
        let a = Forest::train(&x, &y, &p, 1).unwrap();
        let b = Forest::train(&x, &y, &p, 2).unwrap();
        assert_ne!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        let test = features(100, 13);
        assert_ne!(a.predict_batch(&test), b.predict_batch(&test));
    }

    #[test]
    fn forest_serde_round_trip_predicts_identically() {
        let x = features(300, 21);
        let y = noisy_target(&x, 22);
        let p = ForestParams { n_trees: 20, min_samples_leaf: 2, ..ForestParams::default() };
        let a = Forest::train(&x, &y, &p, 5).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        let b: Forest = serde_json::from_str(&json).unwrap();
        assert_eq!(b.params(), &p);
        assert_eq!((b.seed(), b.n_samples()), (5, 300));
        for r in features(200, 23) {
            assert_eq!(a.predict(&r).to_bits(), b.predict(&r).to_bits());
        }
        assert_eq!(serde_json::to_string(&b).unwrap(), json);
    }

    #[test]
    fn forest_predict_is_finite() {
        let x = features(100, 31);
        let y = noisy_target(&x, 32);
        let forest = Forest::train(&x, &y, &ForestParams::default(), 0).unwrap();
        for r in [[f64::NAN; 3], [f64::INFINITY, f64::NEG_INFINITY, 0.0], [1e300, -1e300, 0.0]] {
            assert!(forest.predict(&r).is_finite());
        }
        assert_eq!(sanitize(f64::NAN), 1.0);
        assert_eq!(sanitize(f64::INFINITY), 1.0);
    }

    #[test]
    fn forest_params_partial_deserialize() {
        let p: ForestParams = serde_json::from_str(r#"{"n_trees": 10}"#).unwrap();
        assert_eq!(p, ForestParams { n_trees: 10, ..ForestParams::default() });
    }

    /// Training time and model size for 100 / 1,000 / 5,000 samples. Run with
    /// `cargo test -p tweetoscope-model --release forest_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn forest_timing() {
        let configs = [
            ("default (100 trees, leaf 1)", ForestParams::default()),
            ("100 trees, leaf 5", ForestParams { min_samples_leaf: 5, ..ForestParams::default() }),
            ("100 trees, depth 8", ForestParams { max_depth: Some(8), ..ForestParams::default() }),
            ("30 trees, leaf 5", ForestParams { n_trees: 30, min_samples_leaf: 5, ..Default::default() }),
        ];
        for (name, p) in &configs {
            for n in [100usize, 1_000, 5_000] {
                let x = features(n, n as u64);
                let y = noisy_target(&x, 1 + n as u64);
                let reps = if n <= 1_000 { 5 } else { 2 };
                let mut best = f64::INFINITY;
                let mut forest = None;
                for _ in 0..reps {
                    let t = std::time::Instant::now();
                    let f = Forest::train(&x, &y, p, 3).unwrap();
                    best = best.min(t.elapsed().as_secs_f64());
                    forest = Some(f);
                }
                let f = forest.unwrap();
                let test = features(1_000, 99);
                let t = std::time::Instant::now();
                let s: f64 = test.iter().map(|r| f.predict(r)).sum();
                let per_pred = t.elapsed().as_secs_f64() / 1_000.0;
                let json = serde_json::to_string(&f).unwrap().len();
                println!(
                    "{name:28} n={n:5}: train {:8.2} ms, predict {:6.2} µs, json {:8.1} kB (sum {s:.3})",
                    best * 1e3,
                    per_pred * 1e6,
                    json as f64 / 1e3
                );
            }
        }
    }
}
