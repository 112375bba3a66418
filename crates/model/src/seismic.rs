//! SEISMIC, the baseline predictor of final cascade sizes (`/work/shared/SEISMIC.md`).
//!
//! SEISMIC ("Self-Exciting Model of Information Cascades", Q. Zhao, M. A. Erdogdu, H. Y. He,
//! A. Rajaraman and J. Leskovec, *SEISMIC: A Self-Exciting Point Process Model for Predicting
//! Tweet Popularity*, KDD 2015, arXiv:1506.02594) models reshares as a self-exciting point
//! process with intensity λ(t) = p(t)·Σ_{tᵢ ≤ t} dᵢ·φ(t − tᵢ): every post exposes its author's
//! dᵢ followers, who react after a delay drawn from a *fixed*, universal memory kernel φ
//! (constant for 5 minutes, then a power law), and reshare with a time-varying probability
//! p(t), the infectiousness. Nothing is fitted per cascade except p, which is estimated
//! locally in time by a triangular kernel smoother; the final size then follows from a
//! branching-process argument with n* followers per future resharer.
//!
//! This module reproduces what the reference R package `seismic` 1.1 (CRAN, H. He,
//! M. Erdogdu, Q. Zhao; functions `get.infectiousness` and `pred.cascade`) computes, with its
//! defaults ([`SeismicParams::default`]):
//!
//! - [`memory_pdf`] / [`memory_ccdf`]: φ and its survival function Φ̄ (SEISMIC.md §3);
//! - [`infectiousness`] / [`infectiousness_detail`]: p̂_T with the triangular window, the
//!   `min.count` fallback and the closed-form exposure integrals Jᵢ (§4). It is causal: it
//!   only uses the events with tᵢ < T;
//! - [`prediction`]: R_T, F_T, p̂_T and N̂_T = R_T + F_T/(1 − p̂_T·n*) (§5), plus one for the
//!   original post ([`SeismicPrediction::final_size`]);
//! - [`CorrectedSeismic`] and [`fit_correction`]: the paper's global correction
//!   N̂ = R_T + α·F_T/(1 − γ·p̂_T), which the package does not ship (§6), fitted on training
//!   samples only.
//!
//! The reference values of SEISMIC.md §7 are reproduced to ~1e−12 relative
//! (`tests/seismic_reference.rs`).
//!
//! Events are `(time in seconds, follower count)` pairs, sorted by time (ties allowed), the
//! first one being the original post (normally at t = 0). No input makes these functions
//! panic or return NaN or infinities: invalid input is a [`SeismicError`], and the
//! package's +∞ prediction of a supercritical cascade (p̂_T·n* ≥ 1) is `None`.

use serde::{Deserialize, Serialize};

/// Largest accepted event or observation time, in seconds (the same cap as the Hawkes
/// module's `MAX_TIME`): it keeps every power of a lag far from overflow.
pub const MAX_TIME: f64 = 1e12;

/// Largest accepted follower count (the same cap as the Hawkes module's `MAX_MAGNITUDE`):
/// sums of follower counts stay finite for any number of events.
pub const MAX_FOLLOWERS: f64 = 1e15;

/// Parameters of SEISMIC; `Default` gives the defaults of the R package `seismic` 1.1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeismicParams {
    /// Height c of the memory kernel on [0, s₀), in 1/s (package: 6.265725e−4).
    pub c: f64,
    /// Power-law exponent θ of the kernel tail φ ∝ u^−(1+θ), in (0, 1) (package: 0.2314843).
    pub theta: f64,
    /// Cutoff s₀ of the flat part of the kernel, in seconds (package: 300).
    pub s0: f64,
    /// Largest half-width of the triangular smoothing window, in seconds (package: 7200).
    pub max_window: f64,
    /// Smallest width of the triangular smoothing window, in seconds (package: 300).
    pub min_window: f64,
    /// Fewer events than this in the window trigger the fallback window (package: 5).
    pub min_count: usize,
    /// Mean follower count n* of a future resharer (package: 100).
    pub n_star: f64,
}

impl Default for SeismicParams {
    fn default() -> Self {
        Self { c: 6.265725e-4, theta: 0.2314843, s0: 300.0, max_window: 7200.0, min_window: 300.0, min_count: 5, n_star: 100.0 }
    }
}

impl SeismicParams {
    /// Checks the parameters: c, s₀, the windows and n* finite and positive, θ in (0, 1)
    /// (the closed-form integrals divide by θ and by 1 − θ), c·s₀ < 1 (so that Φ̄ stays
    /// positive on [0, s₀]), `min_window ≤ max_window`, and both windows ≤ [`MAX_TIME`].
    ///
    /// The kernel is not required to be exactly a density (the paper's c and θ integrate to
    /// 0.965); Φ̄ is computed as the package does, from c, θ and s₀ as given.
    pub fn validate(&self) -> Result<(), SeismicError> {
        let bad = |msg: String| Err(SeismicError::InvalidParams(msg));
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.c) {
            return bad(format!("c = {} is not a finite positive number", self.c));
        }
        if !(self.theta.is_finite() && self.theta > 0.0 && self.theta < 1.0) {
            return bad(format!("theta = {} is not in (0, 1)", self.theta));
        }
        if !(positive(self.s0) && self.s0 <= MAX_TIME) {
            return bad(format!("s0 = {} is not in (0, {MAX_TIME:e}] s", self.s0));
        }
        if self.c * self.s0 >= 1.0 {
            return bad(format!("c·s0 = {} ≥ 1: the kernel has more than unit mass before s0", self.c * self.s0));
        }
        if !(positive(self.min_window) && self.min_window <= MAX_TIME) {
            return bad(format!("min_window = {} is not in (0, {MAX_TIME:e}] s", self.min_window));
        }
        if !(positive(self.max_window) && self.max_window <= MAX_TIME) {
            return bad(format!("max_window = {} is not in (0, {MAX_TIME:e}] s", self.max_window));
        }
        if self.min_window > self.max_window {
            return bad(format!("min_window = {} > max_window = {}", self.min_window, self.max_window));
        }
        if !positive(self.n_star) {
            return bad(format!("n_star = {} is not a finite positive number", self.n_star));
        }
        Ok(())
    }

    /// Memory kernel φ(u): 0 for u < 0, c on [0, s₀), c·(u/s₀)^−(1+θ) beyond (SEISMIC.md §3).
    ///
    /// Never NaN: a NaN argument gives 0, as does u = +∞.
    pub fn memory_pdf(&self, u: f64) -> f64 {
        if u.is_nan() || u < 0.0 {
            0.0
        } else if u < self.s0 {
            self.c
        } else {
            self.c * (u / self.s0).powf(-(1.0 + self.theta))
        }
    }

    /// Survival function Φ̄(u) = ∫_u^∞ φ of the memory kernel, as the package computes it:
    /// 1 for u ≤ 0 (negative lags are clamped to 0), 1 − c·u on [0, s₀], and
    /// (c·s₀/θ)·(u/s₀)^−θ beyond (SEISMIC.md §3).
    ///
    /// Never NaN: a NaN argument gives 0, as does u = +∞.
    pub fn memory_ccdf(&self, u: f64) -> f64 {
        if u.is_nan() {
            0.0
        } else if u <= 0.0 {
            1.0
        } else if u <= self.s0 {
            1.0 - self.c * u
        } else {
            self.c * self.s0 / self.theta * (u / self.s0).powf(-self.theta)
        }
    }

    /// Width w of the triangular window at T before the fallback:
    /// min(max(T/2, `min_window`), `max_window`).
    fn default_window(&self, t: f64) -> f64 {
        (t / 2.0).max(self.min_window).min(self.max_window)
    }
}

/// Memory kernel φ(u) with the package defaults (see [`SeismicParams::memory_pdf`]).
pub fn memory_pdf(u: f64) -> f64 {
    SeismicParams::default().memory_pdf(u)
}

/// Survival function Φ̄(u) of the memory kernel with the package defaults (see
/// [`SeismicParams::memory_ccdf`]).
pub fn memory_ccdf(u: f64) -> f64 {
    SeismicParams::default().memory_ccdf(u)
}

/// Why a SEISMIC computation has no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeismicError {
    /// A parameter is out of range (see [`SeismicParams::validate`]).
    #[error("invalid SEISMIC parameters: {0}")]
    InvalidParams(String),
    /// An event or the observation time is invalid (non-finite, negative, beyond the caps,
    /// or out of time order); the message names the event.
    #[error("invalid cascade: {0}")]
    InvalidInput(String),
    /// Reshares were seen in the window but every follower count is zero, so the exposure
    /// D_T is zero and p̂_T = N_T/0 (the package returns +∞).
    #[error("{weighted_reshares} weighted reshares with zero exposure (all follower counts are 0)")]
    ZeroExposure {
        /// The weighted reshare count N_T.
        weighted_reshares: f64,
    },
    /// An intermediate result overflowed (only for extreme inputs, e.g. a reshare a few
    /// nanoseconds before T with a follower count near zero); names the quantity.
    #[error("{0} is not finite")]
    NonFinite(&'static str),
    /// [`fit_correction`] was given no training sample.
    #[error("cannot fit the SEISMIC correction on zero samples")]
    NoSamples,
    /// A training sample of [`fit_correction`] is invalid.
    #[error("training sample {index}: {reason}")]
    InvalidSample {
        /// Index of the sample in the training set.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks the events (finite, in [0, `MAX_TIME`], follower counts in [0, `MAX_FOLLOWERS`],
/// sorted by time) and the observation time (finite, ≤ `MAX_TIME`). The whole slice is
/// checked, so that an unsorted tail cannot silently change which events are "before T".
fn check(events: &[(f64, f64)], t: f64) -> Result<(), SeismicError> {
    if !(t.is_finite() && t <= MAX_TIME) {
        return Err(SeismicError::InvalidInput(format!("observation time {t} is not a finite time ≤ {MAX_TIME:e} s")));
    }
    let mut prev = f64::NEG_INFINITY;
    for (i, &(ti, di)) in events.iter().enumerate() {
        if !(ti.is_finite() && (0.0..=MAX_TIME).contains(&ti)) {
            return Err(SeismicError::InvalidInput(format!("event {i}: time {ti} is not in [0, {MAX_TIME:e}] s")));
        }
        if !(di.is_finite() && (0.0..=MAX_FOLLOWERS).contains(&di)) {
            return Err(SeismicError::InvalidInput(format!("event {i}: follower count {di} is not in [0, {MAX_FOLLOWERS:e}]")));
        }
        if ti < prev {
            return Err(SeismicError::InvalidInput(format!("event {i}: time {ti} is before the previous event ({prev})")));
        }
        prev = ti;
    }
    Ok(())
}

/// Neumaier-compensated sum, so that long cascades lose no precision.
#[derive(Default)]
struct Sum {
    s: f64,
    c: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.s + x;
        if self.s.abs() >= x.abs() {
            self.c += (self.s - t) + x;
        } else {
            self.c += (x - t) + self.s;
        }
        self.s = t;
    }

    fn value(&self) -> f64 {
        self.s + self.c
    }
}

/// The estimate p̂_T and the intermediate quantities of SEISMIC.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Infectiousness {
    /// The infectiousness p̂_T = N_T / D_T (0 when N_T = 0).
    pub p_hat: f64,
    /// Width w of the triangular window actually used, in seconds (after the fallback).
    pub window: f64,
    /// Whether the `min_count` fallback widened (or narrowed) the window.
    pub fallback: bool,
    /// Weighted reshare count N_T = Σ_{i ≥ 2, T − w ≤ tᵢ < T} K(tᵢ).
    pub weighted_reshares: f64,
    /// Weighted exposure D_T = Σ_{i: tᵢ < T} dᵢ·Jᵢ.
    pub weighted_exposure: f64,
    /// Unweighted number of reshares in the window (the r of the package's confidence band).
    pub reshares_in_window: usize,
}

/// Jᵢ = ∫_{max(tᵢ, T−w)}^{T} φ(τ − tᵢ)·K(τ) dτ with K(τ) = 1 − (T − τ)/w, in closed form
/// (SEISMIC.md §4): a flat piece on [tᵢ, tᵢ + s₀] and a power piece beyond. Requires
/// tᵢ < T and w > 0; the result is clamped at 0 against rounding.
fn exposure_integral(ti: f64, t: f64, w: f64, p: &SeismicParams) -> f64 {
    let k = |x: f64| 1.0 - (t - x) / w;
    let a = ti.max(t - w);
    let brk = ti + p.s0;
    let mut j = 0.0;
    if a < brk {
        let y = t.min(brk);
        j += p.c * (y - a) * (k(a) + k(y)) / 2.0;
    }
    if t > brk {
        let ux = a.max(brk) - ti;
        let uy = t - ti;
        let th = p.theta;
        let big_a = 1.0 - (t - ti) / w;
        let scale = p.c * p.s0.powf(1.0 + th);
        j += scale * (big_a * (ux.powf(-th) - uy.powf(-th)) / th + (uy.powf(1.0 - th) - ux.powf(1.0 - th)) / ((1.0 - th) * w));
    }
    j.max(0.0)
}

/// The infectiousness p̂_T of SEISMIC.md §4 (the package's `get.infectiousness` at one T),
/// with its intermediate quantities.
///
/// Causal: only the events with tᵢ < T are used (an event at exactly T is not); events after
/// T may be present in `events` and change nothing. The first event is the original post:
/// its followers count in the exposure but it never counts as a reshare.
///
/// Errors: invalid parameters or events ([`SeismicError::InvalidParams`],
/// [`SeismicError::InvalidInput`]); reshares in the window with zero total exposure
/// ([`SeismicError::ZeroExposure`], the package's +∞); an overflow
/// ([`SeismicError::NonFinite`]).
pub fn infectiousness_detail(events: &[(f64, f64)], t: f64, params: &SeismicParams) -> Result<Infectiousness, SeismicError> {
    params.validate()?;
    check(events, t)?;
    let before = &events[..events.partition_point(|e| e.0 < t)];
    let mut w = params.default_window(t);
    if before.is_empty() {
        return Ok(Infectiousness {
            p_hat: 0.0,
            window: w,
            fallback: false,
            weighted_reshares: 0.0,
            weighted_exposure: 0.0,
            reshares_in_window: 0,
        });
    }
    // Events (the original post included) in [T − w, T).
    let in_window = before.len() - before.partition_point(|e| e.0 < t - w);
    let fallback = in_window < params.min_count;
    if fallback {
        // j = max(L − min.count, 1) in 1-based indexing: the (min.count+1)-th most recent
        // earlier event, or the original post; it sits at the window's edge (weight 0).
        let j = before.len().saturating_sub(params.min_count).max(1);
        w = t - before[j - 1].0;
    }
    let lo = t - w;
    let mut n_t = Sum::default();
    let mut reshares = 0;
    for &(ti, _) in before.iter().skip(1) {
        if ti >= lo {
            n_t.add((1.0 - (t - ti) / w).max(0.0));
            reshares += 1;
        }
    }
    let mut d_t = Sum::default();
    for &(ti, di) in before {
        if di > 0.0 {
            d_t.add(di * exposure_integral(ti, t, w, params));
        }
    }
    let (n_t, d_t) = (n_t.value(), d_t.value());
    if !d_t.is_finite() {
        return Err(SeismicError::NonFinite("exposure D_T"));
    }
    let p_hat = if n_t > 0.0 {
        if d_t <= 0.0 {
            return Err(SeismicError::ZeroExposure { weighted_reshares: n_t });
        }
        n_t / d_t
    } else {
        0.0
    };
    if !p_hat.is_finite() {
        return Err(SeismicError::NonFinite("infectiousness p̂_T"));
    }
    Ok(Infectiousness {
        p_hat,
        window: w,
        fallback,
        weighted_reshares: n_t,
        weighted_exposure: d_t,
        reshares_in_window: reshares,
    })
}

/// The infectiousness p̂_T of SEISMIC.md §4; see [`infectiousness_detail`] for the rules,
/// the causality guarantee and the errors.
pub fn infectiousness(events: &[(f64, f64)], t: f64, params: &SeismicParams) -> Result<f64, SeismicError> {
    infectiousness_detail(events, t, params).map(|i| i.p_hat)
}

/// SEISMIC's prediction at T (the package's `pred.cascade`, with its features).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeismicPrediction {
    /// R_T: the number of reshares (events after the first) with tᵢ ≤ T.
    pub r_t: f64,
    /// F_T = p̂_T·Σ_{tᵢ ≤ T} dᵢ·Φ̄(T − tᵢ): expected direct reshares still to come.
    pub f_t: f64,
    /// The infectiousness p̂_T (from the events with tᵢ < T).
    pub p_hat: f64,
    /// N̂_T = R_T + F_T/(1 − p̂_T·n*), the predicted final number of *reshares*; `None` when
    /// the cascade is supercritical (p̂_T·n* ≥ 1, where the package returns +∞ or NaN), or in
    /// the extreme case where the quotient overflows `f64`.
    pub n_hat: Option<f64>,
    /// N̂_T + 1: the predicted final size counting the original post (the project's sizes);
    /// `None` exactly when `n_hat` is.
    pub final_size: Option<f64>,
}

/// SEISMIC's final-size prediction at T (SEISMIC.md §5), from the events with tᵢ ≤ T (for
/// R_T and F_T) and tᵢ < T (for p̂_T); later events in `events` are ignored.
///
/// Errors: as [`infectiousness_detail`].
pub fn prediction(events: &[(f64, f64)], t: f64, params: &SeismicParams) -> Result<SeismicPrediction, SeismicError> {
    let p_hat = infectiousness(events, t, params)?;
    let seen = &events[..events.partition_point(|e| e.0 <= t)];
    let r_t = seen.len().saturating_sub(1) as f64;
    let mut exposure = Sum::default();
    for &(ti, di) in seen {
        exposure.add(di * params.memory_ccdf(t - ti));
    }
    let f_t = p_hat * exposure.value();
    if !f_t.is_finite() {
        return Err(SeismicError::NonFinite("F_T"));
    }
    let branching = p_hat * params.n_star;
    let n_hat = if p_hat == 0.0 {
        Some(r_t)
    } else if branching < 1.0 {
        Some(r_t + f_t / (1.0 - branching)).filter(|n| n.is_finite())
    } else {
        None
    };
    Ok(SeismicPrediction { r_t, f_t, p_hat, n_hat, final_size: n_hat.map(|n| n + 1.0) })
}

/// The paper's corrected predictor N̂ = R_T + α·F_T/(1 − γ·p̂_T) (SEISMIC.md §6), with global
/// scalars α and γ fitted on training cascades by [`fit_correction`] (one pair per
/// observation time T, as in the paper). The package's plain prediction is α = 1, γ = n*
/// ([`CorrectedSeismic::plain`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CorrectedSeismic {
    /// Multiplier α of the expected future reshares F_T.
    pub alpha: f64,
    /// Effective follower count γ of future resharers (replaces n*).
    pub gamma: f64,
}

impl CorrectedSeismic {
    /// The package's uncorrected prediction: α = 1, γ = n*.
    pub fn plain(n_star: f64) -> Self {
        Self { alpha: 1.0, gamma: n_star }
    }

    /// Predicted final number of reshares R_T + α·F_T/(1 − γ·p̂_T); `None` when γ·p̂_T ≥ 1
    /// (supercritical under the corrected model) or when a value is not finite.
    pub fn reshares(&self, pred: &SeismicPrediction) -> Option<f64> {
        let branching = self.gamma * pred.p_hat;
        if !(branching.is_finite() && branching < 1.0) {
            return None;
        }
        Some(pred.r_t + self.alpha * pred.f_t / (1.0 - branching)).filter(|n| n.is_finite())
    }

    /// Predicted final size counting the original post: [`CorrectedSeismic::reshares`] + 1.
    pub fn final_size(&self, pred: &SeismicPrediction) -> Option<f64> {
        self.reshares(pred).map(|n| n + 1.0)
    }

    /// The fitting criterion of [`fit_correction`]: the mean over `samples` of
    /// |ln(N̂/N_true)|, N̂ = [`CorrectedSeismic::final_size`]; `None` if `samples` is empty or
    /// some sample has no finite prediction or a true size that is not a finite number ≥ 1.
    pub fn mean_abs_log_error(&self, samples: &[(SeismicPrediction, f64)]) -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let mut sum = Sum::default();
        for (pred, truth) in samples {
            if !(truth.is_finite() && *truth >= 1.0) {
                return None;
            }
            sum.add((self.final_size(pred)? / truth).ln().abs());
        }
        Some(sum.value() / samples.len() as f64)
    }
}

/// Upper end of the γ search range of [`fit_correction`] (10 × the package's n* = 100).
pub const GAMMA_MAX: f64 = 1000.0;

/// Largest branching factor γ·p̂ that [`fit_correction`] allows for any training sample: the
/// training predictions stay at most 1000 × their direct part, far from the pole at 1.
pub const MAX_TRAINING_BRANCHING: f64 = 0.999;

/// Search range of α in [`fit_correction`]: log₁₀ α ∈ [−4, 3].
const LOG10_ALPHA_RANGE: (f64, f64) = (-4.0, 3.0);
/// Number of points of the α grid (steps of 0.2 in log₁₀ α; the golden section then refines
/// within ±1 step).
const ALPHA_GRID: usize = 36;
/// Number of points of the γ grid on [0, γ_hi].
const GAMMA_GRID: usize = 51;
/// Golden-section iterations of each refinement (the bracket shrinks by 0.618⁴⁰ ≈ 4e−9).
const GOLDEN_ITERS: usize = 40;

/// Training data of the fit, as plain vectors: a = R_T + 1, F_T, p̂_T, ln N_true.
struct Training {
    a: Vec<f64>,
    f: Vec<f64>,
    p: Vec<f64>,
    ln_truth: Vec<f64>,
}

impl Training {
    /// Mean |ln(a + α·F/(1 − γp)) − ln N_true| (γ·p < 1 for every sample by construction).
    fn objective(&self, alpha: f64, gamma: f64) -> f64 {
        let mut sum = Sum::default();
        for i in 0..self.a.len() {
            let n = self.a[i] + alpha * self.f[i] / (1.0 - gamma * self.p[i]);
            sum.add((n.ln() - self.ln_truth[i]).abs());
        }
        sum.value() / self.a.len() as f64
    }

    /// Best α for a given γ: log grid, then golden section around the best grid point.
    /// Returns (α, objective).
    fn best_alpha(&self, gamma: f64) -> (f64, f64) {
        let (lo, hi) = LOG10_ALPHA_RANGE;
        let step = (hi - lo) / (ALPHA_GRID - 1) as f64;
        let f = |x: f64| self.objective(10f64.powf(x), gamma);
        let (x, v) = grid_then_golden(lo, step, ALPHA_GRID, f);
        (10f64.powf(x), v)
    }
}

/// Minimises `f` on the grid x_k = lo + k·step (k < n, first minimum wins), then by golden
/// section in [x_{k−1}, x_{k+1}]; keeps the refined point only if it is strictly better.
/// Returns (x, f(x)).
fn grid_then_golden(lo: f64, step: f64, n: usize, f: impl Fn(f64) -> f64) -> (f64, f64) {
    let mut best = (lo, f(lo));
    let mut best_k = 0;
    for k in 1..n {
        let x = lo + k as f64 * step;
        let v = f(x);
        if v < best.1 {
            best = (x, v);
            best_k = k;
        }
    }
    let mut a = lo + best_k.saturating_sub(1) as f64 * step;
    let mut b = lo + (best_k + 1).min(n - 1) as f64 * step;
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - r * (b - a);
    let mut d = a + r * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..GOLDEN_ITERS {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - r * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    let (x, v) = if fc <= fd { (c, fc) } else { (d, fd) };
    if v < best.1 {
        (x, v)
    } else {
        best
    }
}

/// Fits the correction (α, γ) of SEISMIC.md §6 on training samples: pairs of a
/// [`prediction`] (only its `r_t`, `f_t`, `p_hat` are used) and the true final size of the
/// cascade (counting the original post, ≥ 1). Use samples of *training* cascades only, and
/// one fit per observation time T, as the paper does.
///
/// Criterion: minimise the mean over the samples of |ln(N̂/N_true)| with
/// N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T) (see [`CorrectedSeismic::mean_abs_log_error`]). The log
/// error treats over- and under-prediction by the same factor alike, and a few enormous
/// errors cannot dominate it as they dominate a mean relative error.
///
/// Search (deterministic, no randomness, no starting point): γ on a grid of 51 points over
/// [0, γ_hi], with γ_hi = min([`GAMMA_MAX`], [`MAX_TRAINING_BRANCHING`]/max p̂); for each γ,
/// α on a grid of log₁₀ α ∈ [−4, 3] in steps of 0.2; the best grid cell is refined by
/// golden section, first in α, then in γ (with α re-optimised at each γ). The first minimum
/// wins ties.
///
/// Supercritical samples: γ_hi makes γ·p̂ ≤ 0.999 < 1 for *every* training sample, so no
/// training prediction is ever infinite — including samples that the plain model calls
/// supercritical (p̂·n* ≥ 1). Consequently one training sample with a very large p̂ (a
/// cascade observed on a handful of reshares) caps γ for all; filter such samples before the
/// fit if that is not wanted. At prediction time, a new cascade with γ·p̂ ≥ 1 gets `None`
/// from [`CorrectedSeismic::final_size`].
///
/// Degenerate data: if every p̂ is 0, γ does not matter and is set to min(100, γ_hi) (the
/// package's n*); if every F_T is 0, neither α nor γ matters: α = 1 and γ = min(100, γ_hi).
///
/// Errors: no samples ([`SeismicError::NoSamples`]); a non-finite or negative R_T, F_T or
/// p̂_T, or a true size that is not a finite number ≥ 1 ([`SeismicError::InvalidSample`]).
pub fn fit_correction(samples: &[(SeismicPrediction, f64)]) -> Result<CorrectedSeismic, SeismicError> {
    if samples.is_empty() {
        return Err(SeismicError::NoSamples);
    }
    let mut data = Training { a: vec![], f: vec![], p: vec![], ln_truth: vec![] };
    for (index, (pred, truth)) in samples.iter().enumerate() {
        let bad = |reason: String| Err(SeismicError::InvalidSample { index, reason });
        for (name, x) in [("r_t", pred.r_t), ("f_t", pred.f_t), ("p_hat", pred.p_hat)] {
            if !(x.is_finite() && x >= 0.0) {
                return bad(format!("{name} = {x} is not a finite non-negative number"));
            }
        }
        if !(truth.is_finite() && *truth >= 1.0) {
            return bad(format!("true final size {truth} is not a finite number ≥ 1"));
        }
        data.a.push(pred.r_t + 1.0);
        data.f.push(pred.f_t);
        data.p.push(pred.p_hat);
        data.ln_truth.push(truth.ln());
    }
    let p_max = data.p.iter().copied().fold(0.0, f64::max);
    let gamma_hi = if p_max > 0.0 { GAMMA_MAX.min(MAX_TRAINING_BRANCHING / p_max) } else { GAMMA_MAX };
    let default_gamma = SeismicParams::default().n_star.min(gamma_hi);
    if data.f.iter().all(|&f| f == 0.0) {
        return Ok(CorrectedSeismic { alpha: 1.0, gamma: default_gamma });
    }
    if p_max == 0.0 {
        let (alpha, _) = data.best_alpha(default_gamma);
        return Ok(CorrectedSeismic { alpha, gamma: default_gamma });
    }
    let step = gamma_hi / (GAMMA_GRID - 1) as f64;
    let (gamma, _) = grid_then_golden(0.0, step, GAMMA_GRID, |g| data.best_alpha(g.clamp(0.0, gamma_hi)).1);
    let gamma = gamma.clamp(0.0, gamma_hi);
    let (alpha, _) = data.best_alpha(gamma);
    Ok(CorrectedSeismic { alpha, gamma })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn kernel_matches_the_reference_values() {
        for (u, v) in
            [(60.0, 0.96240565), (300.0, 0.81202825), (600.0, 0.6916515041), (3600.0, 0.4568330631), (86400.0, 0.2189073255)]
        {
            assert!(close(memory_ccdf(u), v, 1e-9), "Φ̄({u}) = {} ≠ {v}", memory_ccdf(u));
        }
        assert!(close(memory_pdf(600.0), 2.668441071e-4, 1e-9), "φ(600) = {}", memory_pdf(600.0));
        assert_eq!(memory_pdf(-1.0), 0.0);
        assert_eq!(memory_pdf(0.0), 6.265725e-4);
        assert_eq!(memory_ccdf(-5.0), 1.0);
        assert_eq!(memory_ccdf(f64::NAN), 0.0);
        assert_eq!(memory_pdf(f64::NAN), 0.0);
        assert_eq!(memory_ccdf(f64::INFINITY), 0.0);
        assert_eq!(memory_pdf(f64::INFINITY), 0.0);
        // Continuity at s₀ and unit mass: c·s₀·(1 + 1/θ) = 1 to the 7 digits of c.
        let p = SeismicParams::default();
        assert!(close(p.c * p.s0 * (1.0 + 1.0 / p.theta), 1.0, 1e-6));
    }

    #[test]
    fn exposure_integral_matches_quadrature() {
        let p = SeismicParams::default();
        // Composite Simpson on a fine grid, split at the kink tᵢ + s₀.
        let simpson = |f: &dyn Fn(f64) -> f64, a: f64, b: f64| {
            if b <= a {
                return 0.0;
            }
            let n = 20_000;
            let h = (b - a) / n as f64;
            let mut s = f(a) + f(b);
            for k in 1..n {
                s += f(a + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
            }
            s * h / 3.0
        };
        for &(ti, t, w) in &[
            (0.0, 300.0, 300.0),
            (0.0, 600.0, 300.0),
            (100.0, 5000.0, 2500.0),
            (0.0, 86_400.0, 7200.0),
            (4000.0, 5000.0, 2500.0),
            (4900.0, 5000.0, 50.0),
            (10.0, 20_000.0, 19_990.0),
        ] {
            let integrand = |tau: f64| p.memory_pdf(tau - ti) * (1.0 - (t - tau) / w);
            let a = ti.max(t - w);
            let brk = (ti + p.s0).clamp(a, t);
            let q = simpson(&integrand, a, brk) + simpson(&integrand, brk, t);
            let j = exposure_integral(ti, t, w, &p);
            assert!(close(j, q, 1e-9), "J({ti}, {t}, {w}) = {j}, quadrature {q}");
        }
    }

    #[test]
    fn parameters_are_validated() {
        assert!(SeismicParams::default().validate().is_ok());
        let d = SeismicParams::default();
        for bad in [
            SeismicParams { c: 0.0, ..d },
            SeismicParams { c: f64::NAN, ..d },
            SeismicParams { theta: 1.0, ..d },
            SeismicParams { theta: 0.0, ..d },
            SeismicParams { s0: -1.0, ..d },
            SeismicParams { c: 0.01, ..d }, // c·s0 = 3
            SeismicParams { min_window: 8000.0, ..d },
            SeismicParams { max_window: f64::INFINITY, ..d },
            SeismicParams { n_star: 0.0, ..d },
        ] {
            assert!(matches!(bad.validate(), Err(SeismicError::InvalidParams(_))), "{bad:?}");
            assert!(matches!(prediction(&[(0.0, 1.0)], 10.0, &bad), Err(SeismicError::InvalidParams(_))));
        }
    }

    #[test]
    fn invalid_events_are_errors() {
        let p = SeismicParams::default();
        for ev in [
            vec![(0.0, 1.0), (5.0, 1.0), (3.0, 1.0)],
            vec![(0.0, f64::NAN)],
            vec![(-1.0, 1.0)],
            vec![(0.0, -1.0)],
            vec![(f64::INFINITY, 1.0)],
        ] {
            assert!(matches!(infectiousness(&ev, 10.0, &p), Err(SeismicError::InvalidInput(_))), "{ev:?}");
        }
        assert!(matches!(infectiousness(&[(0.0, 1.0)], f64::NAN, &p), Err(SeismicError::InvalidInput(_))));
    }

    #[test]
    fn zero_followers_is_a_typed_outcome() {
        let p = SeismicParams::default();
        let ev: Vec<(f64, f64)> = (0..10).map(|i| (i as f64 * 10.0, 0.0)).collect();
        assert!(matches!(infectiousness(&ev, 200.0, &p), Err(SeismicError::ZeroExposure { .. })));
        // No reshare before T: p̂ = 0 and the prediction is R_T.
        let pred = prediction(&[(0.0, 0.0)], 200.0, &p).unwrap();
        assert_eq!((pred.p_hat, pred.f_t, pred.n_hat, pred.final_size), (0.0, 0.0, Some(0.0), Some(1.0)));
    }

    #[test]
    fn empty_and_early_observations() {
        let p = SeismicParams::default();
        let pred = prediction(&[], 100.0, &p).unwrap();
        assert_eq!((pred.r_t, pred.f_t, pred.p_hat, pred.n_hat), (0.0, 0.0, 0.0, Some(0.0)));
        // T = 0: nothing strictly before T, the original post at T is seen (R = 0).
        let pred = prediction(&[(0.0, 100.0), (1.0, 5.0)], 0.0, &p).unwrap();
        assert_eq!((pred.r_t, pred.p_hat, pred.n_hat), (0.0, 0.0, Some(0.0)));
    }

    fn sample(r: f64, f: f64, p: f64, truth: f64) -> (SeismicPrediction, f64) {
        (SeismicPrediction { r_t: r, f_t: f, p_hat: p, n_hat: None, final_size: None }, truth)
    }

    #[test]
    fn correction_recovers_known_alpha_gamma() {
        let (alpha, gamma) = (0.6, 40.0);
        let mut samples = vec![];
        for i in 0..60 {
            let x = i as f64;
            let p = 0.0005 + 0.0003 * ((x * 0.7).sin() + 1.0) * 10.0; // up to ~0.0065
            let f = 5.0 + 3.0 * x;
            let r = 10.0 + (x * 1.3).cos().abs() * 50.0;
            let truth = r + 1.0 + alpha * f / (1.0 - gamma * p);
            samples.push(sample(r, f, p, truth));
        }
        let fit = fit_correction(&samples).unwrap();
        assert!(close(fit.alpha, alpha, 1e-4) && close(fit.gamma, gamma, 1e-3), "{fit:?}");
        assert!(fit.mean_abs_log_error(&samples).unwrap() < 1e-6);
        // Deterministic.
        assert_eq!(fit, fit_correction(&samples).unwrap());
    }

    #[test]
    fn correction_stays_subcritical_on_training_points() {
        // One plainly supercritical sample (p̂·100 = 5) and truths that would want γ large.
        let mut samples = vec![sample(3.0, 10.0, 0.05, 5.0)];
        for i in 0..20 {
            samples.push(sample(10.0, 10.0, 0.008 + i as f64 * 1e-5, 500.0));
        }
        let fit = fit_correction(&samples).unwrap();
        for (pred, _) in &samples {
            assert!(fit.gamma * pred.p_hat < 1.0, "{fit:?}");
            assert!(fit.final_size(pred).is_some_and(f64::is_finite));
        }
        assert!(fit.mean_abs_log_error(&samples).is_some_and(f64::is_finite));
    }

    #[test]
    fn correction_degenerate_and_invalid_inputs() {
        assert_eq!(fit_correction(&[]), Err(SeismicError::NoSamples));
        assert!(matches!(fit_correction(&[sample(1.0, 1.0, 0.01, 0.5)]), Err(SeismicError::InvalidSample { index: 0, .. })));
        assert!(matches!(
            fit_correction(&[sample(1.0, 1.0, 0.01, 3.0), sample(1.0, f64::NAN, 0.01, 3.0)]),
            Err(SeismicError::InvalidSample { index: 1, .. })
        ));
        let fit = fit_correction(&[sample(1.0, 0.0, 0.0, 3.0), sample(4.0, 0.0, 0.0, 9.0)]).unwrap();
        assert_eq!(fit, CorrectedSeismic { alpha: 1.0, gamma: 100.0 });
        // p̂ = 0 everywhere but F > 0 cannot happen from `prediction`, but is handled.
        let fit = fit_correction(&[sample(1.0, 4.0, 0.0, 4.0)]).unwrap();
        assert!(close(fit.alpha, 0.5, 1e-6) && fit.gamma == 100.0, "{fit:?}");
    }

    #[test]
    fn plain_correction_is_the_package_prediction() {
        let ev: Vec<(f64, f64)> = (0..40).map(|i| (i as f64 * 30.0, 20_000.0 + i as f64)).collect();
        let pred = prediction(&ev, 1000.0, &SeismicParams::default()).unwrap();
        assert!(pred.p_hat > 0.0 && pred.n_hat.is_some());
        let plain = CorrectedSeismic::plain(100.0);
        assert_eq!(plain.reshares(&pred), pred.n_hat);
        assert_eq!(plain.final_size(&pred), pred.final_size);
    }
}
