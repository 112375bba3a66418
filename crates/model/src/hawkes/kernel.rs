//! The O(n) sums over a cascade that the likelihood needs, at one decay rate β.
//!
//! Two implementations on purpose:
//! - [`reference`](mod@reference): straight from the formulas (SPEC §4.1 and the golden README), with
//!   compensated sums and `-expm1(-x)` for 1 − e^{−x}; this is what the public evaluation
//!   functions use, and what the golden values are checked against.
//! - [`Kernel`]: the fast pass of the optimiser. One sweep gives Σ log A_i, C(β) and their
//!   first and second β-derivatives, with one division per event, one logarithm per sweep and
//!   one exponential per *distinct* whole-second inter-event gap.
//!
//! Notation: A_i = Σ_{j<i} m_j e^{−β(t_i−t_j)} (file order), B_i = −dA_i/dβ,
//! D_i = d²A_i/dβ². The sweep keeps the ratios b_i = B_i/A_i (the A-weighted mean lag) and
//! V_i = D_i/A_i − b_i² (the weighted variance of the lags), whose recursions only add
//! non-negative terms, so that the second derivative Σ V_i has no cancellation:
//!
//! with s = A_{i−1} + m_{i−1}, w = A_{i−1}/s, Δ = t_i − t_{i−1}:
//! A_i = e^{−βΔ} s, b_i = Δ + w b_{i−1}, V_i = w (V_{i−1} + (1 − w) b_{i−1}²).

use super::Event;

/// Largest β·lag for which the linear-space recursion is used. Every A_i is at least
/// m_j e^{−β(t_i − t_j)} for any earlier anchor j with m_j ≥ [`ANCHOR_MAGNITUDE`], so if
/// β·(t_i − t_j) ≤ 600 for the latest such anchor, A_i ≥ 1e−40·e^{−600} ≈ 2.7e−301 stays a
/// normal float. Beyond, the log-space form is used (same sums, but two logarithms and two
/// exponentials per event). With the course's β ≤ 1/60 s this only happens after a silence of
/// 10 hours.
const LINEAR_LAG_LIMIT: f64 = 600.0;

/// Magnitude an event needs to anchor the bound above.
const ANCHOR_MAGNITUDE: f64 = 1e-40;

/// Inter-event gaps that are whole numbers below this many seconds share one exponential per
/// distinct value (real data has one-second resolution: 1,000 events of a real cascade have
/// 3 to 240 distinct gaps, and 16% of all gaps are 0).
const SMALL_GAP_TABLE: usize = 1024;

/// The longest lag from an anchor event (m ≥ [`ANCHOR_MAGNITUDE`]) to the next events before
/// the next anchor: max over i ≥ 2 of t_i − t_{j(i)}, j(i) the latest anchor before i; +∞ if
/// some event has no anchor before it. The linear recursion is safe iff β × this ≤ 600.
fn anchor_lag(ev: &[Event]) -> f64 {
    if ev[0].m < ANCHOR_MAGNITUDE {
        return f64::INFINITY;
    }
    // Branch-free (zero magnitudes come at random): the lag of every event to the latest
    // anchor before it, then the event becomes the anchor if it qualifies.
    let mut anchor_t = ev[0].t;
    let mut worst: f64 = 0.0;
    for e in &ev[1..] {
        let lag = e.t - anchor_t;
        worst = if lag > worst { lag } else { worst }; // one maxsd (`f64::max` handles NaN)
        anchor_t = if e.m >= ANCHOR_MAGNITUDE { e.t } else { anchor_t };
    }
    worst
}

/// x = f·2^k with f in [1, 2), for a positive normal x (bit manipulation, no libm).
#[inline(always)]
fn split(x: f64) -> (f64, i64) {
    const MANTISSA: u64 = 0x000f_ffff_ffff_ffff;
    const ONE: u64 = 0x3ff0_0000_0000_0000;
    let bits = x.to_bits();
    (f64::from_bits((bits & MANTISSA) | ONE), (bits >> 52) as i64 - 1023)
}

/// Whether the linear-space recursion is safe at β, given [`anchor_lag`].
fn linear_is_safe(anchor_lag: f64, beta: f64) -> bool {
    beta * anchor_lag <= LINEAR_LAG_LIMIT
}

/// log(e^x + e^y) without overflow; −∞ terms are allowed.
fn log_add_exp(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x >= y { (x, y) } else { (y, x) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// Neumaier (improved Kahan) summation, so that long sums do not lose digits to order.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sum {
    sum: f64,
    comp: f64,
}

impl Sum {
    /// Adds one term.
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }
    /// The compensated total.
    pub fn total(&self) -> f64 {
        self.sum + self.comp
    }
}

/// A sum accurate to a few ulps of the total for any order of magnitudes of the terms:
/// plain sums of 32-term blocks (four interleaved accumulators, so it pipelines), added with
/// Neumaier compensation.
fn accurate_sum(xs: &[f64]) -> f64 {
    let mut acc = Sum::default();
    for block in xs.chunks(32) {
        let mut lanes = [0.0f64; 4];
        let mut quads = block.chunks_exact(4);
        for q in &mut quads {
            for (lane, x) in lanes.iter_mut().zip(q) {
                *lane += x;
            }
        }
        let rest: f64 = quads.remainder().iter().sum();
        acc.add((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + rest);
    }
    acc.total()
}

/// Reference evaluation, straight from the formulas.
pub(crate) mod reference {
    use super::*;

    /// Σ_{i≥2} log A_i (−∞ when some A_i is 0). `ev` must be non-empty and sorted.
    pub fn sum_log_a(ev: &[Event], beta: f64) -> f64 {
        let mut acc = Sum::default();
        if linear_is_safe(anchor_lag(ev), beta) {
            let mut a = 0.0;
            for w in ev.windows(2) {
                a = (-beta * (w[1].t - w[0].t)).exp() * (w[0].m + a);
                acc.add(a.ln());
            }
        } else {
            let mut la = f64::NEG_INFINITY;
            for w in ev.windows(2) {
                la = log_add_exp(la, w[0].m.ln()) - beta * (w[1].t - w[0].t);
                acc.add(la);
            }
        }
        acc.total()
    }

    /// C(β) = Σ_i m_i (1 − e^{−β(T − t_i)}), the compensator's integral per unit p.
    pub fn compensator(ev: &[Event], t_obs: f64, beta: f64) -> f64 {
        let mut acc = Sum::default();
        for e in ev {
            acc.add(e.m * -(-beta * (t_obs - e.t)).exp_m1());
        }
        acc.total()
    }

    /// Σ_i m_i e^{−β(T − t_i)}: the remaining excitation at T per unit p (G1 = p × this).
    pub fn residual_excitation(ev: &[Event], t_obs: f64, beta: f64) -> f64 {
        let mut acc = Sum::default();
        for e in ev {
            acc.add(e.m * (-beta * (t_obs - e.t)).exp());
        }
        acc.total()
    }

    /// The log-likelihood LL(p, β) of SPEC §4.1 (n ≥ 1 events with t ≤ t_obs).
    pub fn log_likelihood(ev: &[Event], t_obs: f64, p: f64, beta: f64) -> f64 {
        let n1 = (ev.len() - 1) as f64;
        let pb = p * beta;
        // log(pβ) as written, unless the product leaves the normal range.
        let log_pb = if pb.is_normal() { pb.ln() } else { p.ln() + beta.ln() };
        let mut acc = Sum::default();
        acc.add(n1 * log_pb);
        acc.add(sum_log_a(ev, beta));
        acc.add(-p * compensator(ev, t_obs, beta));
        acc.total()
    }
}

/// Σ log A_i, C and their β-derivatives at one β (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sums {
    /// L = Σ_{i≥2} log A_i.
    pub l: f64,
    /// dL/dβ = −Σ b_i.
    pub l1: f64,
    /// d²L/dβ² = Σ V_i.
    pub l2: f64,
    /// C = Σ m_i (1 − e^{−β(T−t_i)}) = M − A_T.
    pub c: f64,
    /// dC/dβ = B_T.
    pub c1: f64,
    /// d²C/dβ² = −D_T.
    pub c2: f64,
    /// A_T = Σ m_i e^{−β(T−t_i)}, so that G1 = p A_T.
    pub a_end: f64,
}

/// A cascade prepared for many fast sweeps at different β.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// Magnitudes m_1..m_n.
    m: Vec<f64>,
    /// Gaps Δ = t_{i+1} − t_i (n − 1 of them), kept for the log-space fallback.
    gaps: Vec<f64>,
    /// For each gap, its slot in `gap_values` / `gap_exps`.
    gap_slot: Vec<u32>,
    /// The gap values that need an exponential at each β: each distinct whole-second gap
    /// below [`SMALL_GAP_TABLE`] s once, every other gap on its own.
    gap_values: Vec<f64>,
    /// Scratch: e^{−β·gap} for each slot at the current β.
    gap_exps: Vec<f64>,
    /// T − t_n.
    dt_end: f64,
    /// M = Σ m_i (compensated).
    m_total: f64,
    /// See [`anchor_lag`].
    anchor_lag: f64,
}

impl Kernel {
    /// Prepares the events (validated, n ≥ 2, m_1 > 0) observed at `t_obs`.
    pub fn new(ev: &[Event], t_obs: f64) -> Self {
        let n = ev.len();
        let m: Vec<f64> = ev.iter().map(|e| e.m).collect();
        let gaps: Vec<f64> = ev.windows(2).map(|w| w[1].t - w[0].t).collect();
        // Distinct small whole gaps share a slot, in order of first use; other gaps get one
        // each.
        let mut small_slot = [u32::MAX; SMALL_GAP_TABLE];
        let mut gap_values = Vec::new();
        let gap_slot: Vec<u32> = gaps
            .iter()
            .map(|&g| {
                // `as u32` truncates and saturates (`f64::trunc` would be a libm call on
                // baseline x86-64); the round trip tells whole numbers apart.
                let k = g as u32;
                if (k as usize) < SMALL_GAP_TABLE && k as f64 == g {
                    let entry = &mut small_slot[k as usize];
                    if *entry == u32::MAX {
                        *entry = gap_values.len() as u32;
                        gap_values.push(g);
                    }
                    *entry
                } else {
                    gap_values.push(g);
                    (gap_values.len() - 1) as u32
                }
            })
            .collect();
        let gap_exps = vec![0.0; gap_values.len()];
        Self {
            m_total: accurate_sum(&m),
            m,
            gaps,
            gap_slot,
            gap_values,
            gap_exps,
            dt_end: t_obs - ev[n - 1].t,
            anchor_lag: anchor_lag(ev),
        }
    }

    /// Fills `gap_exps` with e^{−β·gap} for every slot.
    ///
    /// (Tables of powers, e^{−βk} = (e^{−32β})^h·(e^{−β})^l for k = 32h + l, would need two
    /// exponentials per sweep instead of one per distinct gap, and make the slowest real
    /// cascades 30% faster. It was tried and dropped: the powers' rounding errors are the same
    /// for every gap, so they add up coherently along the recursion, and C = M − A_T then
    /// loses up to 1e−10 (relative) of the objective where exact exponentials lose 1e−13.)
    fn fill_exps(&mut self, beta: f64) {
        for (e, &g) in self.gap_exps.iter_mut().zip(&self.gap_values) {
            *e = (-beta * g).exp();
        }
    }

    /// Number of events n.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    /// The sums at β (> 0).
    pub fn sums(&mut self, beta: f64) -> Sums {
        if linear_is_safe(self.anchor_lag, beta) {
            self.sums_linear(beta)
        } else {
            self.sums_log(beta)
        }
    }

    /// Closes the sweep: from b_n, V_n (with w = A_n/(A_n + m_n)) and A_T to b_T, V_T and
    /// the C-terms.
    #[allow(clippy::too_many_arguments)]
    fn finish(&self, a_end: f64, w: f64, q: f64, b: f64, v: f64, l: f64, l1: f64, l2: f64) -> Sums {
        let b_end = self.dt_end + w * b;
        let v_end = w * (v + q * b * b);
        Sums {
            l,
            l1,
            l2,
            // Cancellation here costs at most p·M·ε in the objective (≈ 1e−9 absolute for
            // M = 1e9), far below the optimiser's tolerance.
            c: (self.m_total - a_end).max(0.0),
            c1: a_end * b_end,
            c2: -a_end * (v_end + b_end * b_end),
            a_end,
        }
    }

    /// The linear-space sweep (the common case).
    fn sums_linear(&mut self, beta: f64) -> Sums {
        self.fill_exps(beta);
        let m = &self.m;
        let n = m.len();
        let exps = &self.gap_exps;
        let (mut a, mut b, mut v) = (0.0f64, 0.0f64, 0.0f64);
        // Σ log A_i as the log of a product: each A_i is split into its binary exponent
        // (summed as an integer) and its mantissa in [1, 2) (multiplied), so there is one
        // logarithm per sweep instead of n. The split only depends on A_i, so it stays off
        // the loop-carried dependency chains; 512 mantissas multiply to < 2^512, so the
        // product is renormalised once per chunk of 512 steps.
        const CHUNK: usize = 512;
        let mut mant = 1.0f64;
        let mut expo: i64 = 0;
        let (mut sb, mut sv) = (0.0f64, 0.0f64);
        let chunks = m[..n - 1].chunks(CHUNK).zip(self.gaps.chunks(CHUNK)).zip(self.gap_slot.chunks(CHUNK));
        for ((mc, gc), sc) in chunks {
            for ((&mi, &dt), &slot) in mc.iter().zip(gc).zip(sc) {
                let s = a + mi;
                let r = 1.0 / s;
                let w = a * r;
                let q = mi * r; // 1 − w, without cancellation
                v = w * (v + q * b * b);
                b = dt + w * b;
                a = exps[slot as usize] * s;
                sb += b;
                sv += v;
                let (x, k) = split(a);
                expo += k;
                mant *= x;
            }
            let (x, k) = split(mant);
            expo += k;
            mant = x;
        }
        let l = mant.ln() + expo as f64 * std::f64::consts::LN_2;
        let s = a + m[n - 1];
        let a_end = (-beta * self.dt_end).exp() * s;
        self.finish(a_end, a / s, m[n - 1] / s, b, v, l, -sb, sv)
    }

    /// The log-space sweep, for when the linear one could underflow (see [`LINEAR_LAG_LIMIT`]).
    fn sums_log(&mut self, beta: f64) -> Sums {
        let m = &self.m;
        let n = m.len();
        let mut la = f64::NEG_INFINITY; // log A_{i}
        let (mut b, mut v) = (0.0f64, 0.0f64);
        let (mut sl, mut sb, mut sv) = (Sum::default(), 0.0f64, 0.0f64);
        // weights w = A/(A+m) and 1 − w = m/(A+m) from logs
        let weights = |la: f64, mi: f64| -> (f64, f64, f64) {
            let lm = mi.ln();
            let ls = log_add_exp(la, lm);
            ((la - ls).exp(), (lm - ls).exp(), ls)
        };
        for (&mi, &dt) in m[..n - 1].iter().zip(&self.gaps) {
            let (w, q, ls) = weights(la, mi);
            v = w * (v + q * b * b);
            b = dt + w * b;
            la = ls - beta * dt;
            sl.add(la);
            sb += b;
            sv += v;
        }
        let (w, q, ls) = weights(la, m[n - 1]);
        let a_end = (ls - beta * self.dt_end).exp();
        self.finish(a_end, w, q, b, v, sl.total(), -sb, sv)
    }

    /// Forces the log-space sweep (tests compare both).
    #[cfg(test)]
    pub fn sums_log_space(&mut self, beta: f64) -> Sums {
        self.sums_log(beta)
    }

    /// Forces the linear-space sweep (tests compare both).
    #[cfg(test)]
    pub fn sums_linear_space(&mut self, beta: f64) -> Sums {
        self.sums_linear(beta)
    }
}
