//! Split-conformal prediction intervals on the log-ratio scale.
//!
//! Given the residuals r = y − ŷ of a window's ended cascades (y = ln(N_true/n), ŷ the
//! log-ratio that was predicted for them *before* they ended, so the residuals are
//! out-of-sample), the interval for a new prediction ŷ is
//! [n·e^{ŷ + r_(k_lo)}, n·e^{ŷ + r_(k_hi)}] with the order statistics
//! k_lo = ⌊(m+1)·a/2⌋ and k_hi = ⌈(m+1)(1 − a/2)⌉ of the m residuals, a = 1 − level: for
//! exchangeable residuals it covers N_true with probability ≥ level (and each side misses
//! with probability ≤ a/2). The sizes are clamped like point predictions
//! ([`super::size_from_log_ratio`]): never below n, never infinite.

use serde::{Deserialize, Serialize};

use super::{size_from_log_ratio, PredictiveError};

/// A prediction interval of the final size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end, ≥ n.
    pub low: f64,
    /// Upper end, ≥ `low`.
    pub high: f64,
}

/// The split-conformal interval of nominal coverage `level` (e.g. 0.8) for a prediction
/// ŷ = `y_hat` of a partial cascade of `n_obs` events, from the out-of-sample log-ratio
/// residuals of the window's ended cascades (any order; they are sorted here).
///
/// Errors: `level` not in (0, 1), or a non-finite `y_hat` or residual
/// ([`PredictiveError::InvalidParams`]); fewer residuals than the level needs, i.e.
/// ⌈(m+1)(1 − a/2)⌉ > m ([`PredictiveError::TooFewSamples`]: 9 for 80%, 39 for 95%).
pub fn conformal_interval(residuals: &[f64], y_hat: f64, n_obs: usize, level: f64) -> Result<Interval, PredictiveError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(PredictiveError::InvalidParams(format!("level = {level} is not in (0, 1)")));
    }
    if !y_hat.is_finite() || residuals.iter().any(|r| !r.is_finite()) {
        return Err(PredictiveError::InvalidParams("non-finite prediction or residual".into()));
    }
    let m = residuals.len();
    let a = 1.0 - level;
    // The 1e−9 absorbs the rounding of a = 1 − level (1 − 0.8 = 0.19999999999999996).
    let k_hi = ((m as f64 + 1.0) * (1.0 - a / 2.0) - 1e-9).ceil() as usize;
    if k_hi > m || m == 0 {
        let need = ((1.0 - a / 2.0) / (a / 2.0) - 1e-9).ceil() as usize;
        return Err(PredictiveError::TooFewSamples { have: m, need });
    }
    let mut r = residuals.to_vec();
    r.sort_unstable_by(f64::total_cmp);
    let k_lo = ((m as f64 + 1.0) * a / 2.0 + 1e-9).floor() as usize;
    let lo = if k_lo >= 1 { r[k_lo - 1] } else { f64::NEG_INFINITY };
    let hi = r[k_hi.max(1) - 1];
    let low = size_from_log_ratio(n_obs, y_hat + lo);
    let high = size_from_log_ratio(n_obs, y_hat + hi).max(low);
    Ok(Interval { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_of_a_known_sample() {
        // 19 residuals −0.9, −0.8, …, 0.9: a = 0.2, k_lo = ⌊20·0.1⌋ = 2, k_hi = ⌈20·0.9⌉ = 18.
        let r: Vec<f64> = (0..19).map(|i| (i as f64 - 9.0) / 10.0).rev().collect();
        let iv = conformal_interval(&r, 1.0, 10, 0.8).unwrap();
        assert!((iv.low - 10.0 * (1.0f64 - 0.8).exp()).abs() < 1e-9);
        assert!((iv.high - 10.0 * (1.0f64 + 0.8).exp()).abs() < 1e-9);
    }

    #[test]
    fn too_few_residuals_and_bad_input_are_errors() {
        assert!(matches!(conformal_interval(&[0.1; 8], 0.0, 5, 0.8), Err(PredictiveError::TooFewSamples { have: 8, need: 9 })));
        assert!(conformal_interval(&[0.1; 9], 0.0, 5, 0.8).is_ok());
        assert!(conformal_interval(&[], 0.0, 5, 0.8).is_err());
        assert!(conformal_interval(&[0.1; 20], 0.0, 5, 1.0).is_err());
        assert!(conformal_interval(&[0.1; 20], f64::NAN, 5, 0.8).is_err());
        assert!(conformal_interval(&[f64::INFINITY; 20], 0.0, 5, 0.8).is_err());
    }

    #[test]
    fn the_interval_never_goes_below_n_and_stays_finite() {
        let r = vec![-50.0; 30];
        let iv = conformal_interval(&r, 0.0, 7, 0.8).unwrap();
        assert_eq!(iv, Interval { low: 7.0, high: 7.0 });
        let r = vec![1e6; 30];
        let iv = conformal_interval(&r, 3.0, 7, 0.8).unwrap();
        assert!(iv.high.is_finite() && iv.low <= iv.high);
    }

    #[test]
    fn coverage_of_exchangeable_residuals_is_at_least_nominal() {
        // Calibration and test residuals from the same deterministic pseudo-random law.
        let mut s = 11u64;
        let mut u = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut covered = 0;
        let trials = 2000;
        for _ in 0..trials {
            let cal: Vec<f64> = (0..50).map(|_| (u() * 2.0 - 1.0).powi(3)).collect();
            let truth_r = (u() * 2.0 - 1.0).powi(3);
            // ŷ = 3 with n = 100: the truth is 100·e^{3 + r}, clamped at ≥ n like predictions.
            let iv = conformal_interval(&cal, 3.0, 100, 0.8).unwrap();
            let truth = 100.0 * (3.0 + truth_r).exp();
            if iv.low <= truth && truth <= iv.high {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!(rate > 0.78 && rate < 0.87, "coverage {rate}");
    }
}
