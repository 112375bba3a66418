//! The global maximisation of the objective over the bounds.
//!
//! Work in (u, v) = (log p, log β), where the objective is
//! F(u, v) = (n−1)(u+v) + L(β) − e^u C(β) + prior(u, v), with L = Σ log A_i.
//!
//! - **p is profiled out.** For fixed v, F is strictly concave in u (the prior is a concave
//!   quadratic in u and −e^u C is concave), so u*(v) is the root of
//!   g(u) = k − s11·u − C e^u, found by bracketed Newton steps (a few exponentials, no
//!   sweep over the events), or clamped to the p bounds. For the flat prior it is the closed
//!   form p = (n−1)/C.
//! - **The profile f(v) = F(u*(v), v)** costs one O(n) sweep per v and comes with exact
//!   derivatives: f' = F_v (envelope theorem) and f'' = F_vv − F_uv²/F_uu (F_vv where u is
//!   clamped, since u* is then locally constant).
//! - **Global search.** f is evaluated on a grid of [`GRID_POINTS`] points equally spaced in v
//!   over [log β_min, log β_max] (the ends are the exact bounds). Every interval where f'
//!   goes from + to − brackets a local maximum, which is refined by safeguarded Newton steps
//!   on f' from the root of the cubic Hermite interpolant of f' (bisection when a step leaves
//!   the bracket). An end point where f' points outwards is a maximum on the β bound.
//! - **Hidden maxima.** Two extrema (a maximum and a minimum) can fall between two nodes, or
//!   next to the maximum found in a bracket. Where the cubic Hermite interpolant of f'
//!   (known from f' and f'' at both ends, so free) crosses zero, f is evaluated there and
//!   both parts are searched again. The cubic is a rough model where f' bends sharply, so
//!   most of these checks are false alarms, but they are cheap: on the 81 real cascades at
//!   T = 5…120 min, one fit in five pays one or two extra sweeps (0.3 sweeps per fit on
//!   average), and the wider grid study below needs them.
//! - The best of all candidates (grid nodes included) wins.
//!
//! The grid size was chosen on real cascades: see [`GRID_POINTS`].

use super::kernel::Kernel;
use super::prior::PriorTerms;
use super::BoundHit;

/// Number of grid points in log β (spacing 0.87, i.e. a factor 2.4 in β, over the course
/// bounds). Each costs one O(n) sweep: with ~3 refinement sweeps this is most of a fit.
///
/// How it was chosen (`tests/golden_hawkes.rs`: `grid_margin` and the `--ignored`
/// `grid_study`): on the 324 golden cases × 3 priors every grid of 5 or more points finds
/// the reference optimum; on a wider set, the 81 real cascades at T = 5, 10, …, 120 minutes
/// × 3 priors (5,832 fits) compared with a 240-point grid, 6 and 9 points each miss one fit
/// (by 1.3e−5 relative: two maxima 0.73 apart in log β, 0.003 apart in objective), 7, 8, 10,
/// 11 and 12 points miss none. But the random-cascade property test
/// (`fit_is_never_worse_than_a_fine_grid`) later found an MLE of a 53-event cascade that 12
/// points miss by 0.22 (two maxima a factor 1.8 apart in β) and 16 find; 24 points (a
/// factor 1.55 in β between nodes) keep a margin, for ~10 more sweeps per fit (regression
/// test `fit_finds_the_mle_a_12_point_grid_missed`).
pub(crate) const GRID_POINTS: usize = 24;

/// How many times an interval may be split to look for a hidden maximum (see
/// `Profile::search_interval`).
const HIDDEN_SPLITS: usize = 2;

/// Newton on f' stops once the next step in v = log β would be below this: β is then within
/// ~1e−6 relative of the local maximum (p within about as much), and the objective within
/// ½|f''|·step² of it, far below the 1e−9 relative that parameter agreement needs.
const V_TOL: f64 = 1e-6;

/// Safety cap on the refinement steps of one bracket (bisection alone needs ~30 to shrink a
/// bracket of width 1 to 1e−9; Newton usually needs 3 to 5).
const MAX_REFINE_STEPS: usize = 100;

/// The Newton step on f' at a point, or NaN where f is not concave (no meaningful step).
fn newton_step(pt: &Point) -> f64 {
    if pt.d2f < 0.0 {
        -pt.df / pt.d2f
    } else {
        f64::NAN
    }
}

/// Keeps the better (higher f) of `best` and `p`.
fn keep_better(best: &mut Option<Point>, p: Point) {
    if best.as_ref().is_none_or(|b| p.f > b.f) {
        *best = Some(p);
    }
}

/// The cubic Hermite interpolant of f' on [lo, hi] from f' and f'' at both ends, as a
/// function of s ∈ [0, 1]; also its derivative in s.
fn hermite_df(lo: &Point, hi: &Point) -> impl Fn(f64) -> (f64, f64) {
    let h = hi.v - lo.v;
    let (g0, g1, d0, d1) = (lo.df, hi.df, lo.d2f * h, hi.d2f * h);
    move |s: f64| {
        let (s2, s3) = (s * s, s * s * s);
        let value = (2.0 * s3 - 3.0 * s2 + 1.0) * g0 + (s3 - 2.0 * s2 + s) * d0 + (-2.0 * s3 + 3.0 * s2) * g1 + (s3 - s2) * d1;
        let slope = (6.0 * s2 - 6.0 * s) * (g0 - g1) + (3.0 * s2 - 4.0 * s + 1.0) * d0 + (3.0 * s2 - 2.0 * s) * d1;
        (value, slope)
    }
}

/// Where f' has the sign `sign` at (or next to) both ends of [lo, hi] but its cubic Hermite
/// interpolant takes the other sign in between (a hidden maximum–minimum pair), the v where
/// the cubic is most extreme; `None` otherwise.
fn hidden_turn(lo: &Point, hi: &Point, sign: f64) -> Option<f64> {
    // Stationary points of the cubic: roots of its derivative in s, the quadratic
    // (6s² − 6s)(g0 − g1) + (3s² − 4s + 1) d0 + (3s² − 2s) d1 = a s² + b s + c.
    let h = hi.v - lo.v;
    let (g0, g1, d0, d1) = (lo.df, hi.df, lo.d2f * h, hi.d2f * h);
    let (a, b, c) = (6.0 * (g0 - g1) + 3.0 * (d0 + d1), -6.0 * (g0 - g1) - 4.0 * d0 - 2.0 * d1, d0);
    let mut roots = [f64::NAN; 2];
    if a != 0.0 {
        let disc = b * b - 4.0 * a * c;
        if disc >= 0.0 {
            let r = disc.sqrt();
            roots = [(-b - r) / (2.0 * a), (-b + r) / (2.0 * a)];
        }
    } else if b != 0.0 {
        roots[0] = -c / b;
    }
    let p = hermite_df(lo, hi);
    roots
        .into_iter()
        .filter(|s| *s > 0.0 && *s < 1.0)
        .map(|s| (s, p(s).0))
        .filter(|&(_, value)| value * sign < 0.0)
        .min_by(|x, y| (x.1 * sign).total_cmp(&(y.1 * sign)))
        .map(|(s, _)| lo.v + s * (hi.v - lo.v))
}

/// First guess for the root of f' in a bracket: the root of the cubic Hermite interpolant of
/// f' from f' and f'' at both ends (bisection on the cubic: no sweep needed). On the coarse
/// grid this is much closer than the secant, saving Newton steps.
fn hermite_root(lo: &Point, hi: &Point) -> f64 {
    let h = hi.v - lo.v;
    let p = hermite_df(lo, hi);
    let cubic = |s: f64| p(s).0;
    // cubic(0) = g0 > 0 > g1 = cubic(1)
    let (mut a, mut b) = (0.0f64, 1.0f64);
    for _ in 0..40 {
        let mid = 0.5 * (a + b);
        if cubic(mid) > 0.0 {
            a = mid;
        } else {
            b = mid;
        }
    }
    lo.v + 0.5 * (a + b) * h
}

/// The box the parameters live in, in both natural and log coordinates. The log bounds are
/// the logarithms of the natural ones, but a clamped coordinate is reported as the exact
/// natural bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub p_min: f64,
    pub p_max: f64,
    pub beta_min: f64,
    pub beta_max: f64,
    pub u_min: f64,
    pub u_max: f64,
    pub v_min: f64,
    pub v_max: f64,
}

/// The profile evaluated at one v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// log β.
    pub v: f64,
    /// β (exactly the bound at the ends of the grid).
    pub beta: f64,
    /// u*(v) = log p.
    pub u: f64,
    /// p = e^{u*} (exactly the bound when clamped).
    pub p: f64,
    /// The p bound u* is clamped to, if any.
    pub p_bound: Option<BoundHit>,
    /// f(v), the objective.
    pub f: f64,
    /// f'(v).
    pub df: f64,
    /// f''(v).
    pub d2f: f64,
    /// The log-likelihood part of f.
    pub ll: f64,
    /// The log-prior part of f.
    pub lp: f64,
    /// A_T = Σ m_i e^{−β(T−t_i)} (G1 = p A_T).
    pub a_end: f64,
}

/// The profile of one cascade under one prior.
pub(crate) struct Profile {
    kernel: Kernel,
    prior: PriorTerms,
    bounds: Bounds,
    /// n − 1.
    n1: f64,
    /// Number of O(n) sweeps done so far.
    pub sweeps: usize,
}

impl Profile {
    /// A profile over the prepared cascade.
    pub fn new(kernel: Kernel, prior: PriorTerms, bounds: Bounds) -> Self {
        let n1 = (kernel.len() - 1) as f64;
        Self { kernel, prior, bounds, n1, sweeps: 0 }
    }

    /// u*(v): the maximiser in u of F(·, v), given k = (n−1) + (the u-independent part of
    /// ∂prior/∂u) and C(β). Returns (u, p, bound).
    fn solve_u(&self, k: f64, c: f64, hint: f64) -> (f64, f64, Option<BoundHit>) {
        let b = &self.bounds;
        let s11 = self.prior.s11;
        // g = ∂F/∂u, strictly decreasing in u.
        let g = |u: f64, p: f64| k - s11 * u - c * p;
        if g(b.u_max, b.p_max) >= 0.0 {
            return (b.u_max, b.p_max, Some(BoundHit::PMax));
        }
        if g(b.u_min, b.p_min) <= 0.0 {
            return (b.u_min, b.p_min, Some(BoundHit::PMin));
        }
        // From here g(u_min) > 0 > g(u_max), hence c > 0 and k > 0: one root inside.
        if s11 == 0.0 {
            let p = (k / c).clamp(b.p_min, b.p_max);
            return (p.ln(), p, None);
        }
        let (mut lo, mut hi) = (b.u_min, b.u_max);
        let mut u = if hint > lo && hint < hi {
            hint
        } else {
            // One fixed-point step of C e^u = k − s11 u from the middle of the box.
            let mid = 0.5 * (lo + hi);
            let r = k - s11 * mid;
            if r > 0.0 {
                (r / c).ln().clamp(lo, hi)
            } else {
                mid
            }
        };
        for _ in 0..200 {
            let p = u.exp();
            let gu = g(u, p);
            if gu > 0.0 {
                lo = u;
            } else if gu < 0.0 {
                hi = u;
            } else {
                return (u, p, None);
            }
            // Newton: g' = −(s11 + C e^u) < 0. Its error after a step of size h is
            // about h²/2, so a step below 1e−8 lands on the root to rounding.
            let step = gu / (s11 + c * p);
            let next = u + step;
            if step.abs() <= 1e-8 * u.abs().max(1.0) && next >= lo && next <= hi {
                return (next, next.exp(), None);
            }
            u = if next > lo && next < hi { next } else { 0.5 * (lo + hi) };
            if hi - lo <= 4.0 * f64::EPSILON * u.abs().max(1.0) {
                break;
            }
        }
        (u, u.exp(), None)
    }

    /// The profile at (β, v = log β), warm-starting u* from `hint` (NaN for none).
    pub fn at(&mut self, beta: f64, v: f64, hint: f64) -> Point {
        self.sweeps += 1;
        let s = self.kernel.sums(beta);
        let pr = self.prior;
        // ∂F/∂u = (n−1) − e^u C − s11 (u − m1) − s12 (v − m2) − lin =: k − s11 u − e^u C.
        let k = self.n1 - pr.s12 * (v - pr.m2) + pr.s11 * pr.m1 - pr.lin;
        let (u, p, p_bound) = self.solve_u(k, s.c, hint);
        let b2 = beta * beta;
        let bc1 = beta * s.c1;
        let ll = self.n1 * (u + v) + s.l - p * s.c;
        let lp = pr.value(u, v);
        let df = self.n1 + beta * s.l1 - p * bc1 + pr.dv(u, v);
        let f_uu = -p * s.c - pr.s11;
        let f_uv = -p * bc1 - pr.s12;
        let f_vv = beta * s.l1 + b2 * s.l2 - p * (bc1 + b2 * s.c2) - pr.s22;
        let d2f = if p_bound.is_none() && f_uu < 0.0 { f_vv - f_uv * f_uv / f_uu } else { f_vv };
        Point { v, beta, u, p, p_bound, f: ll + lp, df, d2f, ll, lp, a_end: s.a_end }
    }

    /// The grid node j of `points` nodes: the ends are the exact β bounds.
    fn node(&self, j: usize, points: usize) -> (f64, f64) {
        let b = &self.bounds;
        if j == 0 {
            (b.beta_min, b.v_min)
        } else if j + 1 == points {
            (b.beta_max, b.v_max)
        } else {
            let v = b.v_min + (b.v_max - b.v_min) * (j as f64 / (points - 1) as f64);
            (v.exp(), v)
        }
    }

    /// The global maximum using a grid of `points` (at least 2) nodes.
    pub fn maximise_with(&mut self, points: usize) -> Point {
        let points = points.max(2);
        let (beta, v) = self.node(0, points);
        let mut prev = self.at(beta, v, f64::NAN);
        // Grid points are candidates themselves: the ends are the β-bound maxima when f'
        // points outwards, and the best node is a safe fallback.
        let mut best = Some(prev);
        for j in 1..points {
            let (beta, v) = self.node(j, points);
            let pt = self.at(beta, v, prev.u);
            keep_better(&mut best, pt);
            self.search_interval(prev, pt, HIDDEN_SPLITS, &mut best);
            prev = pt;
        }
        best.unwrap_or(prev)
    }

    /// Finds the local maxima of f between two evaluated points and keeps the best in `best`.
    ///
    /// A sign change of f' from + to − brackets a maximum, which is refined. Extrema can also
    /// hide from the grid in pairs (a maximum and a minimum between two nodes where f' has
    /// the same sign, or beside the maximum found in a bracket): the cubic Hermite
    /// interpolant of f' (from f' and f'' at the ends) tells. If it crosses zero, f is
    /// evaluated where the cubic is most extreme and both parts are searched again, up to
    /// `splits` levels deep.
    fn search_interval(&mut self, lo: Point, hi: Point, splits: usize, best: &mut Option<Point>) {
        if lo.df > 0.0 && hi.df <= 0.0 {
            let r = self.refine(lo, hi);
            keep_better(best, r);
            if splits > 0 {
                // The bracket may hold maximum, minimum, maximum: look on both sides of the
                // maximum found, where f' leaves it (f' = 0) positive on the left and
                // negative on the right.
                let top = Point { df: 0.0, ..r };
                if r.v > lo.v {
                    self.split_if_hidden(lo, top, 1.0, splits - 1, best);
                }
                if r.v < hi.v {
                    self.split_if_hidden(top, hi, -1.0, splits - 1, best);
                }
            }
        } else if splits > 0 && lo.df != 0.0 && lo.df.signum() == hi.df.signum() {
            self.split_if_hidden(lo, hi, lo.df.signum(), splits - 1, best);
        }
    }

    /// Splits [lo, hi] and searches both parts if the Hermite cubic of f', of sign `sign` at
    /// the ends, crosses zero inside.
    fn split_if_hidden(&mut self, lo: Point, hi: Point, sign: f64, splits: usize, best: &mut Option<Point>) {
        if let Some(x) = hidden_turn(&lo, &hi, sign) {
            let mid = self.at(x.exp(), x, lo.u);
            keep_better(best, mid);
            self.search_interval(lo, mid, splits, best);
            self.search_interval(mid, hi, splits, best);
        }
    }

    /// Refines a bracket lo.v < hi.v with f'(lo) > 0 ≥ f'(hi) to the local maximum inside.
    fn refine(&mut self, mut lo: Point, mut hi: Point) -> Point {
        let mut best = if lo.f >= hi.f { lo } else { hi };
        if hi.df == 0.0 {
            return hi;
        }
        let mut x = hermite_root(&lo, &hi);
        let mut hint = lo.u;
        for _ in 0..MAX_REFINE_STEPS {
            if !(x > lo.v && x < hi.v) {
                x = 0.5 * (lo.v + hi.v);
            }
            let pt = self.at(x.exp(), x, hint);
            hint = pt.u;
            if pt.f > best.f {
                best = pt;
            }
            if pt.df > 0.0 {
                lo = pt;
            } else if pt.df < 0.0 {
                hi = pt;
            } else {
                return pt;
            }
            let step = newton_step(&pt);
            if step.abs() <= V_TOL {
                return pt;
            }
            if hi.v - lo.v <= V_TOL {
                return best;
            }
            // Newton from the new point; if that leaves the bracket, Newton from the other
            // end. The second case is a kink of f'': where u* reaches a p bound, f'' jumps
            // (for the MLE from about −2e−4 on the flat ridge to −300 on the bound), and
            // only the steps taken from the side that holds the root converge.
            let other = if pt.df > 0.0 { hi } else { lo };
            x = pt.v + step;
            if !(x > lo.v && x < hi.v) {
                x = other.v + newton_step(&other); // NaN or outside: bisection above
            }
        }
        best
    }
}
