//! Accuracy statistics: the absolute relative error of a prediction and summaries of many.
//!
//! Summaries report means *and* order statistics, because the mean ARE of this problem is
//! dominated by a few huge over-predictions (see SPEC §4.3).

use serde::{Deserialize, Serialize};

/// Absolute relative error |predicted − truth| / truth, or `None` when it is undefined
/// (truth ≤ 0 or a non-finite input), so that no NaN or infinity ever leaves this function.
pub fn are(predicted: f64, truth: f64) -> Option<f64> {
    if !(predicted.is_finite() && truth.is_finite()) || truth <= 0.0 {
        return None;
    }
    Some((predicted - truth).abs() / truth)
}

/// Summary of a sample of finite values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Number of values summarised.
    pub count: usize,
    /// Arithmetic mean (0 when empty).
    pub mean: f64,
    /// Median, the 0.5 quantile (0 when empty).
    pub median: f64,
    /// 0.9 quantile (0 when empty).
    pub p90: f64,
}

impl Summary {
    /// Summarises `values`; non-finite values are ignored (they must not exist, but a
    /// summary never propagates them).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Self { count: v.len(), mean, median: quantile_sorted(&v, 0.5), p90: quantile_sorted(&v, 0.9) }
    }
}

/// Quantile of sorted finite values with linear interpolation between order statistics
/// (type 7 of Hyndman & Fan, the default of R and NumPy), so that figures compare with
/// the peers' Python and R numbers.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        len => {
            let h = (len - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(len - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn are_is_undefined_for_zero_truth_and_non_finite_inputs() {
        assert_eq!(are(5.0, 0.0), None);
        assert_eq!(are(f64::NAN, 3.0), None);
        assert_eq!(are(f64::INFINITY, 3.0), None);
        assert_eq!(are(15.0, 10.0), Some(0.5));
        assert_eq!(are(5.0, 10.0), Some(0.5));
    }

    #[test]
    fn quantiles_match_numpy_linear_interpolation() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert!((quantile_sorted(&v, 0.9) - 3.7).abs() < 1e-12);
        let s = Summary::of(&[4.0, f64::NAN, 1.0, 3.0, 2.0]);
        assert_eq!(s.count, 4);
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn empty_summary_is_zero_not_nan() {
        let s = Summary::of(&[]);
        assert_eq!(s, Summary::default());
    }
}
