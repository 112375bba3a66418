//! The feature vector of one (partial cascade, observation window): see `PREDICTIVE.md` for
//! the formula of every feature and the measurements behind the list.
//!
//! Every feature is a finite number whatever the input: a missing or non-finite input (no
//! Hawkes fit, no SEISMIC prediction, a supercritical SEISMIC, fewer than two events) is
//! replaced by a documented substitute value chosen *outside* the feature's natural range,
//! so that a tree can split "missing" apart, and every feature is clamped to a documented
//! range.

use serde::{Deserialize, Serialize};

use crate::hawkes::{Event, Fit};
use crate::seismic::SeismicPrediction;

/// Number of features.
pub const N_FEATURES: usize = 15;

/// The feature vector: a fixed-size array, in the order of [`FEATURE_NAMES`].
pub type FeatureVector = [f64; N_FEATURES];

/// Names of the features, in order (stable: they are part of a model's identity, see
/// [`FEATURE_SET`]).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "log_n",
    "log_hawkes_ratio",
    "n_star",
    "log_beta",
    "log1p_g1",
    "log_seismic_ratio",
    "seismic_branching",
    "rate_ratio",
    "log1p_recent_120",
    "log1p_since_last",
    "log1p_sum_marks",
    "log1p_median_mark",
    "log1p_first_mark",
    "log1p_first_gap",
    "log1p_marks_recent",
];

/// Identifier of this feature set (name + version). A model records it, and a model of
/// another feature set is refused.
pub const FEATURE_SET: &str = "predictive-v1";

/// Substitute of the features whose natural range is ≥ 0 when their input is missing.
pub const MISSING: f64 = -1.0;

/// Substitute of `log_beta` when there is no fit (log β of a fit is in
/// [log(1/864000), log(1/60)] ≈ [−13.7, −4.1]).
pub const MISSING_LOG_BETA: f64 = 0.0;

/// Cap of the log-ratio features (`log_hawkes_ratio`, `log_seismic_ratio`): a predicted growth
/// beyond e^12 ≈ 160,000× is treated as that; a supercritical (infinite) SEISMIC prediction
/// takes this value.
pub const LOG_RATIO_CAP: f64 = 12.0;

/// Cap of `seismic_branching` = p̂·n*: supercritical values all look alike beyond it.
pub const BRANCHING_CAP: f64 = 5.0;

/// Length of the "recent" part of the window, in seconds.
pub const RECENT_SECONDS: f64 = 120.0;

/// What the features need of a Hawkes fit: a copy of the numbers of [`Fit`] (the dataflow
/// carries them in its own message type).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HawkesSummary {
    /// p.
    pub p: f64,
    /// β, in 1/s.
    pub beta: f64,
    /// Branching factor n*.
    pub n_star: f64,
    /// G1, the expected number of direct children still to come.
    pub g1: f64,
    /// The plain Hawkes prediction N = n + G1/(1 − n*).
    pub n_hawkes: f64,
}

impl From<&Fit> for HawkesSummary {
    fn from(fit: &Fit) -> Self {
        Self { p: fit.p, beta: fit.beta, n_star: fit.n_star, g1: fit.g1, n_hawkes: fit.n_pred }
    }
}

/// `x` if finite and within [lo, hi] after clamping, else `missing`.
fn finite_or(x: f64, lo: f64, hi: f64, missing: f64) -> f64 {
    if x.is_nan() {
        missing
    } else {
        x.clamp(lo, hi)
    }
}

/// ln(1 + max(x, 0)), clamped to [0, 50]; `MISSING` for NaN.
fn log1p_pos(x: f64) -> f64 {
    if x.is_nan() {
        MISSING
    } else {
        x.max(0.0).ln_1p().min(50.0)
    }
}

/// The features of the events with `t ≤ t_obs` (times relative to the original tweet,
/// magnitudes = follower counts), the Hawkes fit of that partial cascade (`None` if it
/// failed) and SEISMIC's prediction (`None` if it failed).
///
/// Total: any input gives finite features. Events need not be valid: non-finite or negative
/// times and magnitudes are skipped, and the events are not required to be sorted (the
/// "first" and "last" events are the earliest and latest times). An empty partial behaves
/// like a single event (n is at least 1 in `log_n`).
pub fn features(events: &[Event], t_obs: f64, fit: Option<&HawkesSummary>, seismic: Option<&SeismicPrediction>) -> FeatureVector {
    let t_obs = if t_obs.is_finite() && t_obs > 0.0 { t_obs } else { 1.0 };
    let mut times = Vec::with_capacity(events.len());
    let mut marks = Vec::with_capacity(events.len());
    for e in events {
        if e.t.is_finite() && e.t >= 0.0 && e.t <= t_obs && e.m.is_finite() && e.m >= 0.0 {
            times.push(e.t);
            marks.push(e.m);
        }
    }
    let n = times.len().max(1) as f64;
    let log_n = n.ln();

    // Hawkes.
    let (log_hawkes_ratio, n_star, log_beta, log1p_g1) = match fit {
        Some(f) => (
            finite_or((f.n_hawkes / n).ln(), 0.0, LOG_RATIO_CAP, MISSING),
            finite_or(f.n_star, 0.0, 1.0, MISSING),
            finite_or(f.beta.ln(), -30.0, -1e-9, MISSING_LOG_BETA),
            log1p_pos(f.g1),
        ),
        None => (MISSING, MISSING, MISSING_LOG_BETA, MISSING),
    };

    // SEISMIC.
    let (log_seismic_ratio, seismic_branching) = match seismic {
        Some(s) => {
            let ratio = match s.final_size {
                Some(size) => finite_or((size / n).ln(), 0.0, LOG_RATIO_CAP, MISSING),
                None => LOG_RATIO_CAP,
            };
            let branching = finite_or(s.p_hat * crate::seismic::SeismicParams::default().n_star, 0.0, BRANCHING_CAP, MISSING);
            (ratio, branching)
        }
        None => (MISSING, MISSING),
    };

    // Shape of the arrivals inside the window (retweets only: the original tweet is at 0).
    let half = t_obs / 2.0;
    let (mut early, mut late, mut recent) = (0.0f64, 0.0f64, 0.0f64);
    let mut first = f64::INFINITY;
    let mut last = 0.0f64;
    let mut first_index = 0;
    for (i, &t) in times.iter().enumerate() {
        if t < first {
            first = t;
            first_index = i;
        }
        last = last.max(t);
    }
    let mut second = f64::INFINITY;
    let mut marks_recent = 0.0;
    for (i, (&t, &m)) in times.iter().zip(&marks).enumerate() {
        if i != first_index {
            if t <= half {
                early += 1.0;
            } else {
                late += 1.0;
            }
            second = second.min(t);
        }
        if t > t_obs - RECENT_SECONDS {
            if i != first_index {
                recent += 1.0;
            }
            marks_recent += m;
        }
    }
    let rate_ratio = ((late + 1.0) / (early + 1.0)).ln();
    let log1p_recent = recent.ln_1p();
    let log1p_since_last = if times.is_empty() { t_obs.ln_1p() } else { (t_obs - last).max(0.0).ln_1p() };
    let log1p_first_gap = if second.is_finite() { log1p_pos(second - first) } else { MISSING };

    // Marks.
    let sum_marks: f64 = marks.iter().sum();
    let median_mark = median(&marks);
    let first_mark = if times.is_empty() { f64::NAN } else { marks[first_index] };

    [
        log_n,
        log_hawkes_ratio,
        n_star,
        log_beta,
        log1p_g1,
        log_seismic_ratio,
        seismic_branching,
        rate_ratio,
        log1p_recent,
        log1p_since_last,
        log1p_pos(sum_marks),
        log1p_pos(median_mark),
        log1p_pos(first_mark),
        log1p_first_gap,
        log1p_pos(marks_recent),
    ]
}

/// Median of finite values (NaN when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        0.5 * (v[k / 2 - 1] + v[k / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pairs: &[(f64, f64)]) -> Vec<Event> {
        pairs.iter().map(|&(t, m)| Event { t, m }).collect()
    }

    #[test]
    fn names_match_the_vector_length() {
        assert_eq!(FEATURE_NAMES.len(), N_FEATURES);
        let mut names = FEATURE_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_FEATURES, "feature names are unique");
    }

    #[test]
    fn hand_computed_features() {
        let events = ev(&[(0.0, 100.0), (10.0, 50.0), (400.0, 10.0), (550.0, 30.0), (700.0, 1e6)]);
        let fit = HawkesSummary { p: 0.01, beta: 0.001, n_star: 0.35, g1: 2.0, n_hawkes: 8.0 };
        let x = features(&events, 600.0, Some(&fit), None);
        let f = |name: &str| x[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()];
        assert!((f("log_n") - 4f64.ln()).abs() < 1e-15);
        assert!((f("log_hawkes_ratio") - 2f64.ln()).abs() < 1e-15);
        assert_eq!(f("n_star"), 0.35);
        assert!((f("log_beta") - 0.001f64.ln()).abs() < 1e-15);
        assert!((f("log1p_g1") - 3f64.ln()).abs() < 1e-15);
        assert_eq!(f("log_seismic_ratio"), MISSING);
        assert_eq!(f("seismic_branching"), MISSING);
        // retweets at 10 (early), 400 and 550 (late): ln(3/2)
        assert!((f("rate_ratio") - 1.5f64.ln()).abs() < 1e-15);
        // the last 120 s (t > 480): one retweet, marks 30
        assert!((f("log1p_recent_120") - 2f64.ln()).abs() < 1e-15);
        assert!((f("log1p_marks_recent") - 31f64.ln()).abs() < 1e-15);
        assert!((f("log1p_since_last") - 51f64.ln()).abs() < 1e-15);
        assert!((f("log1p_sum_marks") - 191f64.ln()).abs() < 1e-12);
        assert!((f("log1p_median_mark") - 41f64.ln()).abs() < 1e-15);
        assert!((f("log1p_first_mark") - 101f64.ln()).abs() < 1e-15);
        assert!((f("log1p_first_gap") - 11f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn missing_and_degenerate_inputs_give_documented_finite_values() {
        let s = SeismicPrediction { r_t: 3.0, f_t: 1.0, p_hat: 0.5, n_hat: None, final_size: None };
        for events in [vec![], ev(&[(0.0, 0.0)]), ev(&[(f64::NAN, f64::INFINITY), (-1.0, 3.0)])] {
            for t in [600.0, 0.0, f64::NAN, f64::INFINITY] {
                let x = features(&events, t, None, Some(&s));
                assert!(x.iter().all(|v| v.is_finite()), "{x:?}");
                assert_eq!(x[5], LOG_RATIO_CAP, "supercritical SEISMIC is the cap");
                assert_eq!(x[6], BRANCHING_CAP);
                assert_eq!(x[13], MISSING, "no second event");
            }
        }
        let bad = HawkesSummary { p: f64::NAN, beta: -1.0, n_star: f64::INFINITY, g1: f64::NAN, n_hawkes: f64::INFINITY };
        let x = features(&ev(&[(0.0, 1.0), (5.0, 2.0)]), 600.0, Some(&bad), None);
        assert!(x.iter().all(|v| v.is_finite()), "{x:?}");
        assert_eq!(x[1], LOG_RATIO_CAP);
        assert_eq!(x[2], 1.0);
        assert_eq!(x[3], MISSING_LOG_BETA);
        assert_eq!(x[4], MISSING);
    }

    #[test]
    fn events_after_the_window_are_ignored() {
        let a = ev(&[(0.0, 10.0), (100.0, 20.0)]);
        let mut b = a.clone();
        b.push(Event { t: 601.0, m: 5.0 });
        assert_eq!(features(&a, 600.0, None, None), features(&b, 600.0, None, None));
    }
}
