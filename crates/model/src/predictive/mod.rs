//! The default-mode predictive layer (SPEC §4.2): a learned correction of the final-size
//! prediction, designed for real cascades, selected (every cascade large) or not.
//!
//! Per (partial cascade, observation window):
//! 1. [`features`] turns the partial cascade's events, its Hawkes fit summary and SEISMIC's
//!    prediction into a finite [`FeatureVector`] (formulas in `crates/model/PREDICTIVE.md`);
//! 2. the window's [`PredictiveModel`] predicts ŷ ≈ y = ln(N_true/n) and
//!    [`size_from_log_ratio`] turns it into N = n·e^ŷ ≥ n, never NaN or ∞; before a window
//!    has a model, the training-free [`Fallback`] predicts;
//! 3. once the cascade has ended, its sample (features, [`log_ratio_target`]) goes to the
//!    window's [`WindowTrainer`], which retrains on a schedule and chooses its
//!    hyper-parameters by time-ordered validation ([`TrainJob::run`]);
//! 4. [`conformal_interval`] turns the residuals of a window's ended cascades into a
//!    prediction interval for a new prediction.
//!
//! Everything is synchronous, single-threaded and deterministic: the same samples in the
//! same order with the same settings give the same models, bit for bit.
//!
//! The learner ([`boost`], gradient-boosted trees with the absolute loss), its
//! hyper-parameter grid, the fallback and the mark law of the Hawkes stage were chosen by
//! the measurements of `examples/eval_predictive.rs`, reported in `PREDICTIVE.md`.

pub mod boost;
mod features;
mod interval;
mod learner;
mod trainer;

pub use features::{
    features, FeatureVector, HawkesSummary, BRANCHING_CAP, FEATURE_NAMES, FEATURE_SET, LOG_RATIO_CAP, MISSING, MISSING_LOG_BETA,
    N_FEATURES, RECENT_SECONDS,
};
pub use interval::{conformal_interval, Interval};
pub use learner::{
    Fallback, LearnerKind, LearnerSettings, Metric, Offset, OffsetKind, PredictiveModel, Regressor, Selection, MULTI_FOLD_BELOW,
};
pub use trainer::{TrainJob, TrainerSettings, WindowTrainer, SEARCH_ALWAYS_BELOW};

/// Largest predicted log-ratio ŷ = ln(N/n) that [`size_from_log_ratio`] honours: a growth
/// of e^12 ≈ 160,000× (beyond any observed cascade; it keeps N finite for any n).
pub const MAX_LOG_RATIO: f64 = LOG_RATIO_CAP;

/// Errors of the predictive layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictiveError {
    /// A hyper-parameter or setting is out of range; the message says which.
    #[error("invalid predictive-layer parameter: {0}")]
    InvalidParams(String),
    /// Too few samples to train.
    #[error("too few samples to train: {have} (need {need})")]
    TooFewSamples {
        /// Samples available.
        have: usize,
        /// Samples needed.
        need: usize,
    },
    /// Rows and targets differ in number.
    #[error("{rows} feature rows but {targets} targets")]
    LengthMismatch {
        /// Number of rows.
        rows: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A feature or a target is NaN or infinite.
    #[error("non-finite {what} in row {row}")]
    NonFinite {
        /// Index of the row.
        row: usize,
        /// "feature" or "target".
        what: &'static str,
    },
    /// A sample whose true size is below its observed size (the partial saw events that the
    /// final count does not have): excluded from training and counted.
    #[error("true size {n_true} is below the observed size {n_obs}")]
    Shrunk {
        /// Events observed in the window.
        n_obs: usize,
        /// The final size.
        n_true: usize,
    },
    /// A sample with no observed event.
    #[error("a sample needs at least one observed event")]
    Empty,
    /// The random-forest learner failed (smartcore's message).
    #[error("random forest: {0}")]
    Forest(String),
    /// A model of another feature set or version.
    #[error("model of feature set {found:?}, this build uses {expected:?}")]
    FeatureSet {
        /// The model's feature set.
        found: String,
        /// This build's [`FEATURE_SET`].
        expected: String,
    },
}

/// The training target y = ln(N_true/n_obs) ≥ 0 of a sample.
///
/// Errors: n_obs = 0 ([`PredictiveError::Empty`]); N_true < n_obs
/// ([`PredictiveError::Shrunk`]; such samples are excluded from training and counted).
pub fn log_ratio_target(n_obs: usize, n_true: usize) -> Result<f64, PredictiveError> {
    if n_obs == 0 {
        return Err(PredictiveError::Empty);
    }
    if n_true < n_obs {
        return Err(PredictiveError::Shrunk { n_obs, n_true });
    }
    Ok((n_true as f64 / n_obs as f64).ln())
}

/// The predicted final size N = n_obs·e^ŷ, with ŷ clamped to [0, [`MAX_LOG_RATIO`]] (a NaN
/// ŷ counts as 0): never below n_obs (at least 1), never NaN or infinite.
pub fn size_from_log_ratio(n_obs: usize, y_hat: f64) -> f64 {
    let n = n_obs.max(1) as f64;
    let y = if y_hat.is_nan() { 0.0 } else { y_hat.clamp(0.0, MAX_LOG_RATIO) };
    let size = n * y.exp();
    if size.is_finite() {
        size
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn target_and_prediction_round_trip() {
        assert_eq!(log_ratio_target(10, 10), Ok(0.0));
        assert!((log_ratio_target(10, 25).unwrap() - 2.5f64.ln()).abs() < 1e-15);
        assert_eq!(log_ratio_target(10, 9), Err(PredictiveError::Shrunk { n_obs: 10, n_true: 9 }));
        assert_eq!(log_ratio_target(0, 9), Err(PredictiveError::Empty));
        let y = log_ratio_target(7, 300).unwrap();
        assert!((size_from_log_ratio(7, y) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn prediction_is_clamped() {
        assert_eq!(size_from_log_ratio(10, -3.0), 10.0);
        assert_eq!(size_from_log_ratio(10, f64::NAN), 10.0);
        assert_eq!(size_from_log_ratio(10, f64::NEG_INFINITY), 10.0);
        assert_eq!(size_from_log_ratio(10, f64::INFINITY), 10.0 * MAX_LOG_RATIO.exp());
        assert_eq!(size_from_log_ratio(0, 0.0), 1.0);
        assert!(size_from_log_ratio(usize::MAX, 1e300).is_finite());
    }

    proptest! {
        #[test]
        fn prediction_is_finite_and_at_least_n(n in 0usize..10_000_000, y in proptest::num::f64::ANY) {
            let size = size_from_log_ratio(n, y);
            prop_assert!(size.is_finite());
            prop_assert!(size >= n.max(1) as f64);
        }
    }
}
