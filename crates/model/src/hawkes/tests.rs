//! Unit tests of the Hawkes module: the O(n) sweeps against naive O(n²) double sums, the
//! analytic derivatives against finite differences, settings validation, edge cases, and the
//! optimiser against a much finer search.

use super::kernel::{reference, Sums};
use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// Cascade `k` (1-based) of data/seismic-tideh100.
fn cascade(k: usize) -> Vec<Event> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/seismic-tideh100");
    let data = std::fs::read_to_string(format!("{root}/cascades-data.csv")).unwrap();
    let rows: Vec<Event> = data
        .lines()
        .skip(1)
        .map(|l| {
            let (t, m) = l.split_once(',').unwrap();
            Event { t: t.parse().unwrap(), m: m.parse().unwrap() }
        })
        .collect();
    let idx = std::fs::read_to_string(format!("{root}/cascades-index.csv")).unwrap();
    let (a, b) = idx.lines().nth(k).unwrap().split_once(',').unwrap();
    rows[a.parse::<usize>().unwrap() - 1..b.parse().unwrap()].to_vec()
}

fn model(prior: PriorKind) -> HawkesModel {
    HawkesModel::new(HawkesSettings { prior, ..HawkesSettings::course() }).unwrap()
}

fn ev(pairs: &[(f64, f64)]) -> Vec<Event> {
    pairs.iter().map(|&(t, m)| Event { t, m }).collect()
}

/// log Σ exp(x_j), robust for any range.
fn log_sum_exp(xs: &[f64]) -> f64 {
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + xs.iter().map(|x| (x - hi).exp()).sum::<f64>().ln()
}

/// The sums of the kernel by the O(n²) definitions, in log space so that any β works.
fn naive_sums(ev: &[Event], t_obs: f64, beta: f64) -> Sums {
    let (mut l, mut l1, mut l2) = (0.0, 0.0, 0.0);
    for i in 1..ev.len() {
        let logw: Vec<f64> = (0..i).map(|j| ev[j].m.ln() - beta * (ev[i].t - ev[j].t)).collect();
        let log_s = log_sum_exp(&logw);
        let pi: Vec<f64> = logw.iter().map(|x| (x - log_s).exp()).collect();
        let mean: f64 = (0..i).map(|j| pi[j] * (ev[i].t - ev[j].t)).sum();
        let var: f64 = (0..i).map(|j| pi[j] * (ev[i].t - ev[j].t - mean).powi(2)).sum();
        l += log_s;
        l1 -= mean;
        l2 += var;
    }
    let (mut c, mut c1, mut c2, mut a_end) = (0.0, 0.0, 0.0, 0.0);
    for e in ev {
        let lag = t_obs - e.t;
        let decay = (-beta * lag).exp();
        c += e.m * -(-beta * lag).exp_m1();
        c1 += e.m * lag * decay;
        c2 -= e.m * lag * lag * decay;
        a_end += e.m * decay;
    }
    Sums { l, l1, l2, c, c1, c2, a_end }
}

fn close(got: f64, want: f64, tol: f64, scale: f64) -> bool {
    (got - want).abs() <= tol * scale.max(want.abs())
}

fn assert_sums_close(got: &Sums, want: &Sums, n: usize, span: f64, what: &str) {
    let n = n as f64;
    // Rounding floors: lags are up to `span`, and terms of L' and L'' are of order lag and
    // lag², so their sums carry absolute errors of about ε·n·span and ε·n·span².
    let span = span.max(1.0);
    // The sweep's C is M − A_T: its absolute error is a few ε·M (see Kernel::finish).
    let m_total = want.c + want.a_end;
    let checks = [
        ("l", got.l, want.l, n),
        ("l1", got.l1, want.l1, 1e-6 * n * span),
        ("l2", got.l2, want.l2, 1e-6 * n * span * span),
        ("c", got.c, want.c, 1e-6 * m_total),
        ("c1", got.c1, want.c1, 1e-300),
        ("c2", got.c2, want.c2, 1e-300),
        ("a_end", got.a_end, want.a_end, 1e-300),
    ];
    for (name, g, w, scale) in checks {
        // Relative 1e-9: both sides are sums of up to n positive terms (c is M − A_T in the
        // sweep: see its comment), computed in different orders.
        assert!(close(g, w, 1e-9, scale), "{what}: {name} = {g:e}, naive {w:e}\n{got:?}\n{want:?}");
    }
}

/// Random cascades: gaps with many ties, whole and fractional seconds, a few long silences;
/// magnitudes from 0 to 1e7 with zeros (m_1 > 0).
fn cascades(max_n: usize) -> impl Strategy<Value = Vec<Event>> {
    let gap = prop_oneof![
        3 => Just(0.0),
        4 => (1u32..60).prop_map(f64::from),
        1 => 60.0..3000.0f64,
        1 => (3000u32..40_000).prop_map(f64::from),
    ];
    let mag = prop_oneof![1 => Just(0.0), 4 => (0.0..7.0f64).prop_map(|x| 10f64.powf(x).round())];
    (1.0..1e6f64, prop::collection::vec((gap, mag), 1..max_n)).prop_map(|(m1, rest)| {
        let mut t = 0.0;
        let mut out = vec![Event { t, m: m1.round() }];
        for (g, m) in rest {
            t += g;
            out.push(Event { t, m });
        }
        out
    })
}

// ---------------------------------------------------------------------------------------
// The sweeps against the naive double sums

proptest! {
    // No failure persistence: the regression files would land outside this module. A fixed
    // seed keeps CI reproducible (a case it once found is now a named regression test);
    // explore other cases by changing the seed locally.
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7EE7_0001),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sweep_matches_naive_double_sum(ev in cascades(60), log_beta in -14.0..0.0f64, extra in 0.0..5000.0f64) {
        let beta = log_beta.exp();
        let t_obs = ev[ev.len() - 1].t + extra;
        let want = naive_sums(&ev, t_obs, beta);
        let mut kernel = Kernel::new(&ev, t_obs);
        let span = t_obs - ev[0].t;
        assert_sums_close(&kernel.sums(beta), &want, ev.len(), span, "auto");
        assert_sums_close(&kernel.sums_log_space(beta), &want, ev.len(), span, "log space");
        // The linear sweep where it cannot underflow (see LINEAR_LAG_LIMIT).
        let max_gap = ev.windows(2).map(|w| w[1].t - w[0].t).fold(0.0, f64::max);
        let all_positive = ev.iter().all(|e| e.m >= 1.0);
        if all_positive && beta * max_gap < 600.0 {
            assert_sums_close(&kernel.sums_linear_space(beta), &want, ev.len(), span, "linear");
        }
        // The reference log-likelihood uses its own (linear or log) recursion.
        let p = 0.01;
        let ll = reference::log_likelihood(&ev, t_obs, p, beta);
        let ll_naive = (ev.len() - 1) as f64 * (p * beta).ln() + want.l - p * want.c;
        prop_assert!(close(ll, ll_naive, 1e-10, ev.len() as f64), "LL {ll:e} naive {ll_naive:e}");
    }

    #[test]
    fn fit_is_never_worse_than_a_fine_grid(ev in cascades(200), extra in 0.0..3600.0f64, kind in 0..3usize) {
        let prior = [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat][kind];
        let m = model(prior);
        let t_obs = ev[ev.len() - 1].t + extra;
        let fit = m.fit(&ev, t_obs).unwrap();
        let fine = m.fit_with_grid(&ev, t_obs, 400).unwrap();
        prop_assert!(
            fit.objective >= fine.objective - 1e-9 * fine.objective.abs().max(1.0),
            "default grid {} < 400-point grid {} ({:?} vs {:?})", fit.objective, fine.objective, fit, fine
        );
        // The reported objective is the formula's, at the reported parameters.
        let formula = m.objective(&ev, t_obs, fit.p, fit.beta).unwrap();
        prop_assert!(close(fit.objective, formula, 1e-10, 1.0), "{} vs {formula}", fit.objective);
        let (g1, n_pred) = m.predict(&ev, t_obs, fit.p, fit.beta).unwrap();
        prop_assert!(close(fit.g1, g1, 1e-10, 1e-300) && close(fit.n_pred, n_pred, 1e-10, 1.0));
    }

    /// Whatever the input, the fit returns a finite result or a typed error, never panics.
    #[test]
    fn fit_never_panics_or_returns_non_finite(
        raw in prop::collection::vec((prop_oneof![Just(f64::NAN), Just(-1.0), Just(f64::INFINITY), 0.0..1e13f64],
                                      prop_oneof![Just(f64::NAN), Just(-1.0), Just(0.0), Just(1e300), 0.0..1e16f64]), 0..20),
        t_obs in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), 0.0..2e12f64],
        sort in any::<bool>(),
    ) {
        let mut ev: Vec<Event> = raw.into_iter().map(|(t, m)| Event { t, m }).collect();
        if sort {
            ev.sort_by(|a, b| a.t.total_cmp(&b.t));
        }
        for prior in [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat] {
            if let Ok(fit) = model(prior).fit(&ev, t_obs) {
                let all = [fit.p, fit.beta, fit.n_star, fit.g1, fit.n_pred, fit.objective, fit.log_likelihood, fit.log_prior];
                prop_assert!(all.iter().all(|x| x.is_finite()) && fit.n_star < 1.0, "{fit:?}");
            }
        }
    }
}

#[test]
fn linear_and_log_sweeps_agree_on_real_cascades() {
    for k in [1, 9, 30] {
        let ev = cascade(k);
        let ev = &ev[..ev.partition_point(|e| e.t <= 3600.0)];
        let mut kernel = Kernel::new(ev, 3600.0);
        for beta in [1.2e-6, 1e-4, 1e-2, 0.0166] {
            let a = kernel.sums_linear_space(beta);
            let b = kernel.sums_log_space(beta);
            assert_sums_close(&a, &b, ev.len(), 3600.0, &format!("cascade {k} beta {beta}"));
        }
    }
}

#[test]
fn naive_double_sum_on_a_real_cascade_with_ties() {
    // Cascade 9 has 79% zero gaps in its first 1,000 events: the file-order tie convention.
    let ev = cascade(9);
    let ev = &ev[..300];
    let t_obs = ev[299].t + 10.0;
    let mut kernel = Kernel::new(ev, t_obs);
    for beta in [2e-6, 3e-4, 0.016] {
        assert_sums_close(&kernel.sums(beta), &naive_sums(ev, t_obs, beta), ev.len(), t_obs, "cascade 9");
    }
}

// ---------------------------------------------------------------------------------------
// Analytic derivatives against central finite differences

#[test]
fn kernel_derivatives_match_finite_differences() {
    for k in [1, 3, 30] {
        let ev = cascade(k);
        let t_obs = 1200.0;
        let ev = &ev[..ev.partition_point(|e| e.t <= t_obs)];
        let mut kernel = Kernel::new(ev, t_obs);
        for beta in [3e-6, 1e-4, 3e-3] {
            let h = beta * 1e-4;
            let (lo, mid, hi) = (kernel.sums(beta - h), kernel.sums(beta), kernel.sums(beta + h));
            let fd = |a: f64, b: f64| (b - a) / (2.0 * h);
            for (name, analytic, numeric) in [
                ("L'", mid.l1, fd(lo.l, hi.l)),
                ("L''", mid.l2, fd(lo.l1, hi.l1)),
                ("C'", mid.c1, fd(lo.c, hi.c)),
                ("C''", mid.c2, fd(lo.c1, hi.c1)),
            ] {
                assert!(close(analytic, numeric, 1e-5, 1e-12), "cascade {k} beta {beta}: {name} = {analytic:e}, FD {numeric:e}");
            }
        }
    }
}

#[test]
fn profile_derivatives_match_finite_differences() {
    for prior in [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat] {
        let m = model(prior);
        for k in [1, 3, 13, 30, 77] {
            let all = cascade(k);
            for t_obs in [600.0, 3600.0] {
                let ev = &all[..all.partition_point(|e| e.t <= t_obs)];
                let mut profile = Profile::new(Kernel::new(ev, t_obs), m.terms, m.bounds);
                for j in 1..20 {
                    let v = m.bounds.v_min + (m.bounds.v_max - m.bounds.v_min) * j as f64 / 20.0;
                    let h = 1e-4;
                    let at = |profile: &mut Profile, v: f64| profile.at(v.exp(), v, f64::NAN);
                    let (lo, mid, hi) = (at(&mut profile, v - h), at(&mut profile, v), at(&mut profile, v + h));
                    if lo.p_bound != hi.p_bound {
                        continue; // f'' jumps where u* reaches a p bound
                    }
                    let fd1 = (hi.f - lo.f) / (2.0 * h);
                    let fd2 = (hi.df - lo.df) / (2.0 * h);
                    let label = format!("{prior:?} cascade {k} T {t_obs} v {v}");
                    // FD error ≈ h²|f'''|/6 + ε|f|/h.
                    let slack = 1e-11 * mid.f.abs() / h;
                    assert!(close(mid.df, fd1, 1e-6, 1.0) || (mid.df - fd1).abs() < slack, "{label}: f' {} FD {fd1}", mid.df);
                    assert!(close(mid.d2f, fd2, 1e-5, 1.0), "{label}: f'' {} FD {fd2}", mid.d2f);
                    // And F_u = 0 at an interior u*: the profile is the maximum over u.
                    if mid.p_bound.is_none() {
                        let pr = PriorTerms::new(&m.prior, prior);
                        let s = Kernel::new(ev, t_obs).sums(mid.beta);
                        let f_u = (ev.len() - 1) as f64 - mid.p * s.c + pr.du(mid.u, mid.v);
                        assert!(f_u.abs() < 1e-9 * ev.len() as f64, "{label}: F_u = {f_u}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Settings

#[test]
fn default_settings_are_the_course_values() {
    let m = HawkesModel::new(HawkesSettings::course()).unwrap();
    assert_eq!(m.expected_magnitude(), 35.00000000000001);
    assert_eq!(m.p_bounds(), (1e-8, 0.028571418571428565));
    assert_eq!(m.beta_bounds(), (1.1574074074074074e-06, 0.016666666666666666));
    assert_eq!(m.settings().prior, PriorKind::Course);
    let p = m.prior();
    assert!((p.sigma_inv[0][0] - 5.057096704901506).abs() < 1e-14);
    assert!((p.mean[1] - -10.14624146042698).abs() < 1e-13);
}

#[test]
fn invalid_settings_are_rejected() {
    let d = HawkesSettings::course();
    let bad = [
        HawkesSettings { alpha: 2.0, ..d.clone() },
        HawkesSettings { alpha: f64::NAN, ..d.clone() },
        HawkesSettings { mu: 0.0, ..d.clone() },
        HawkesSettings { mu: f64::INFINITY, ..d.clone() },
        HawkesSettings { prior_mean_p: -0.02, ..d.clone() },
        HawkesSettings { prior_mean_beta: 0.0, ..d.clone() },
        HawkesSettings { prior_sd_p: 0.0, ..d.clone() },
        HawkesSettings { prior_sd_beta: -1.0, ..d.clone() },
        HawkesSettings { prior_corr: 1.0, ..d.clone() },
        HawkesSettings { prior_corr: -1.5, ..d.clone() },
        HawkesSettings { beta_min: 0.0, ..d.clone() },
        HawkesSettings { beta_min: 0.1, beta_max: 0.01, ..d.clone() },
        HawkesSettings { beta_max: f64::INFINITY, ..d.clone() },
        // E[m] so large that the p interval is empty
        HawkesSettings { mu: 1e9, ..d.clone() },
        // corr −0.99 with large coefficients of variation: Q/(m mᵀ) + 1 ≤ 0 off the diagonal
        HawkesSettings { prior_corr: -0.99, prior_sd_p: 0.2, prior_sd_beta: 0.1, ..d.clone() },
    ];
    for s in bad {
        assert!(matches!(HawkesModel::new(s.clone()), Err(SettingsError::Invalid(_))), "{s:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Edge cases

#[test]
fn too_few_events() {
    let m = model(PriorKind::Course);
    assert_eq!(m.fit(&[], 100.0), Err(FitError::TooFewEvents { n: 0 }));
    assert_eq!(m.fit(&ev(&[(0.0, 10.0)]), 100.0), Err(FitError::TooFewEvents { n: 1 }));
    // the second event is after T
    assert_eq!(m.fit(&ev(&[(0.0, 10.0), (200.0, 5.0)]), 100.0), Err(FitError::TooFewEvents { n: 1 }));
    assert!(matches!(m.log_likelihood(&ev(&[(0.0, 10.0)]), 100.0, 0.01, 1e-3), Err(FitError::TooFewEvents { n: 1 })));
}

#[test]
fn no_excitation() {
    let m = model(PriorKind::Course);
    let e = ev(&[(0.0, 0.0), (10.0, 5.0), (20.0, 3.0)]);
    assert_eq!(m.fit(&e, 100.0), Err(FitError::NoExcitation));
    assert_eq!(m.log_likelihood(&e, 100.0, 0.01, 1e-3), Err(FitError::NoExcitation));
    // later zeros are fine
    assert!(m.fit(&ev(&[(0.0, 5.0), (10.0, 0.0), (20.0, 0.0)]), 100.0).is_ok());
}

#[test]
fn invalid_input() {
    let m = model(PriorKind::Course);
    let cases = [
        (ev(&[(0.0, 1.0), (f64::NAN, 1.0)]), 10.0),
        (ev(&[(0.0, 1.0), (-1.0, 1.0)]), 10.0),
        (ev(&[(-1.0, 1.0), (1.0, 1.0)]), 10.0),
        (ev(&[(0.0, 1.0), (f64::INFINITY, 1.0)]), 10.0),
        (ev(&[(0.0, 1.0), (1.0, f64::NAN)]), 10.0),
        (ev(&[(0.0, 1.0), (1.0, -2.0)]), 10.0),
        (ev(&[(0.0, 1.0), (1.0, f64::INFINITY)]), 10.0),
        (ev(&[(0.0, 1.0), (5.0, 1.0), (3.0, 1.0)]), 10.0),
        // unsorted after T still counts: the prefix would be wrong
        (ev(&[(0.0, 1.0), (5.0, 1.0), (30.0, 1.0), (20.0, 1.0)]), 10.0),
        (ev(&[(0.0, 1.0), (5.0, 1.0)]), f64::NAN),
        (ev(&[(0.0, 1.0), (5.0, 1.0)]), f64::INFINITY),
    ];
    for (e, t) in cases {
        assert!(matches!(m.fit(&e, t), Err(FitError::InvalidInput(_))), "{e:?} T={t}");
    }
    let e = ev(&[(0.0, 1.0), (5.0, 1.0)]);
    for (p, beta) in [(0.0, 1e-3), (-0.01, 1e-3), (f64::NAN, 1e-3), (0.01, 0.0), (0.01, f64::INFINITY)] {
        assert!(matches!(m.log_likelihood(&e, 10.0, p, beta), Err(FitError::InvalidInput(_))));
        assert!(matches!(m.log_prior(p, beta), Err(FitError::InvalidInput(_))));
        assert!(matches!(m.predict(&e, 10.0, p, beta), Err(FitError::InvalidInput(_))));
    }
    // n* ≥ 1: no finite prediction
    assert!(matches!(m.predict(&e, 10.0, 0.03, 1e-3), Err(FitError::InvalidInput(_))));
}

#[test]
fn events_after_t_obs_are_ignored() {
    let m = model(PriorKind::Course);
    let all = cascade(2);
    let cut = all.partition_point(|e| e.t <= 600.0);
    let a = m.fit(&all, 600.0).unwrap();
    let b = m.fit(&all[..cut], 600.0).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.n, cut);
}

#[test]
fn mle_on_the_p_bound_is_exactly_the_bound() {
    // Golden case tideh100 cascade 1, T = 300: two events, the MLE is at p = p_max.
    let m = model(PriorKind::Flat);
    let fit = m.fit(&ev(&[(0.0, 90.0), (292.0, 433344.0)]), 300.0).unwrap();
    assert_eq!(fit.p, m.p_bounds().1);
    assert_eq!(fit.bounds_hit, vec![BoundHit::PMax]);
    assert!((fit.beta - 9.989687902028348e-06).abs() < 1e-3 * 9.989687902028348e-06);
}

#[test]
fn optimum_on_a_beta_bound() {
    // All retweets right after their parent: the fastest kernel wins.
    let e: Vec<Event> = (0..30).map(|i| Event { t: i as f64, m: 100.0 }).collect();
    let m = model(PriorKind::Flat);
    let fit = m.fit(&e, 3600.0).unwrap();
    assert!(fit.bounds_hit.contains(&BoundHit::BetaMax), "{fit:?}");
    assert_eq!(fit.beta, m.beta_bounds().1);
    // An observation long after the last event pulls β down instead, but never past β_min.
    let slow = ev(&[(0.0, 1e6), (100_000.0, 1.0), (200_000.0, 1.0)]);
    let fit = m.fit(&slow, 200_000.0).unwrap();
    assert!(fit.beta >= m.beta_bounds().0);
}

#[test]
fn degenerate_cascades_give_finite_fits() {
    for prior in [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat] {
        let m = model(prior);
        let cases = [
            // every event at t = 0 and T = 0: C(β) = 0, the likelihood grows with p and β
            (ev(&[(0.0, 5.0), (0.0, 5.0), (0.0, 5.0)]), 0.0),
            // tiny and huge magnitudes, huge gaps (log-space sweeps)
            (ev(&[(0.0, 1e-30), (1e6, 1e15), (2e6, 0.0), (9e11, 1e-3)]), 1e12),
            (ev(&[(0.0, 1e15), (0.5, 1e15), (0.75, 1e15)]), 1.0),
            (ev(&[(0.0, 1.0), (1e11, 1.0)]), 1e11),
        ];
        for (e, t) in cases {
            let fit = m.fit(&e, t).unwrap_or_else(|err| panic!("{prior:?} {e:?}: {err}"));
            let all = [fit.p, fit.beta, fit.g1, fit.n_pred, fit.objective];
            assert!(all.iter().all(|x| x.is_finite()), "{prior:?} {e:?}: {fit:?}");
        }
    }
}

#[test]
fn extreme_settings_give_finite_fits_or_errors() {
    let e = cascade(5);
    let settings = [
        HawkesSettings { beta_min: 1e-300, beta_max: 1e300, ..HawkesSettings::course() },
        HawkesSettings { beta_min: 1e-12, beta_max: 1e6, prior: PriorKind::LogNormal, ..HawkesSettings::course() },
        HawkesSettings { alpha: 2.001, prior: PriorKind::Flat, ..HawkesSettings::course() },
    ];
    for s in settings {
        let m = HawkesModel::new(s.clone()).unwrap();
        if let Ok(fit) = m.fit(&e, 3600.0) {
            let all = [fit.p, fit.beta, fit.g1, fit.n_pred, fit.objective];
            assert!(all.iter().all(|x| x.is_finite()), "{s:?}: {fit:?}");
        }
    }
}

#[test]
fn objective_is_loglik_plus_prior() {
    let e = cascade(4);
    for prior in [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat] {
        let m = model(prior);
        let (p, beta) = (0.012, 3e-4);
        let ll = m.log_likelihood(&e, 600.0, p, beta).unwrap();
        let lp = m.log_prior(p, beta).unwrap();
        assert_eq!(m.objective(&e, 600.0, p, beta).unwrap(), ll + lp);
        let course = model(PriorKind::Course).log_prior(p, beta).unwrap();
        match prior {
            PriorKind::Course => assert_eq!(lp, course),
            PriorKind::LogNormal => assert!((lp - (course - p.ln() - beta.ln())).abs() < 1e-12),
            PriorKind::Flat => assert_eq!(lp, 0.0),
        }
    }
}

#[test]
fn fit_is_consistent_with_the_evaluation_functions() {
    for prior in [PriorKind::Course, PriorKind::LogNormal, PriorKind::Flat] {
        let m = model(prior);
        for k in [1, 7, 28] {
            let e = cascade(k);
            let fit = m.fit(&e, 1200.0).unwrap();
            let obj = m.objective(&e, 1200.0, fit.p, fit.beta).unwrap();
            let (g1, n_pred) = m.predict(&e, 1200.0, fit.p, fit.beta).unwrap();
            assert!(close(fit.objective, obj, 1e-11, 1.0), "{} vs {obj}", fit.objective);
            assert!(close(fit.g1, g1, 1e-11, 1e-300) && close(fit.n_pred, n_pred, 1e-11, 1.0));
            assert!(close(fit.log_likelihood + fit.log_prior, fit.objective, 1e-14, 1.0));
            assert!((fit.n_star - fit.p * m.expected_magnitude()).abs() < 1e-15);
        }
    }
}

/// Regression: a random 53-event cascade whose MLE (flat prior) a 12-point grid in log β
/// missed by 0.22 in log-likelihood (found by `fit_is_never_worse_than_a_fine_grid` in CI).
#[test]
fn fit_finds_the_mle_a_12_point_grid_missed() {
    let raw: &[(f64, f64)] = &[
        (0.0, 812263.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),
        (1292.3096631591277, 0.0),
        (3441.872606574453, 18522.0),
        (3441.872606574453, 0.0),
        (3441.872606574453, 0.0),
        (5824.014959712604, 0.0),
        (5824.014959712604, 376762.0),
        (5824.014959712604, 440782.0),
        (5824.014959712604, 739605.0),
        (33301.0149597126, 8.0),
        (33301.0149597126, 207455.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (33301.0149597126, 0.0),
        (35520.21391476948, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 3045107.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 5216264.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
        (38234.29771698675, 0.0),
    ];
    let ev: Vec<Event> = raw.iter().map(|&(t, m)| Event { t, m }).collect();
    let t_obs = ev[ev.len() - 1].t + 2720.9277797968725;
    let m = model(PriorKind::Flat);
    let fit = m.fit(&ev, t_obs).unwrap();
    let fine = m.fit_with_grid(&ev, t_obs, 400).unwrap();
    assert!(fit.objective >= fine.objective - 1e-9 * fine.objective.abs(), "{} < {}", fit.objective, fine.objective);
}

// ---------------------------------------------------------------------------------------
// Mark law from the data (MarkLaw::CascadeMedian)

fn median_model() -> HawkesModel {
    HawkesModel::new(HawkesSettings { mark_law: MarkLaw::CascadeMedian, ..HawkesSettings::course() }).unwrap()
}

#[test]
fn the_course_mark_law_is_fixed_and_the_default_takes_the_cascades_scale() {
    assert_eq!(HawkesSettings::course().mark_law, MarkLaw::Fixed);
    assert_eq!(HawkesSettings::default(), HawkesSettings { mark_law: MarkLaw::CascadeMedian, ..HawkesSettings::course() });
    let m = model(PriorKind::Course);
    let c = cascade(3);
    assert_eq!(m.mark_scale(&c, 600.0).unwrap(), 1.0);
    assert_eq!(m.cascade_expected_magnitude(&c, 600.0).unwrap(), m.expected_magnitude());
    // the law's median μ·2^{1/(α−1)}
    assert!((m.law_median() - 10.0 * 2f64.powf(1.0 / 1.4)).abs() < 1e-12);
}

#[test]
fn cascade_median_law_is_invariant_to_the_units_of_the_marks() {
    let m = median_model();
    let c = cascade(5);
    let t = 1200.0;
    let a = m.fit(&c, t).unwrap();
    let scaled: Vec<Event> = c.iter().map(|e| Event { t: e.t, m: e.m * 1000.0 }).collect();
    let b = m.fit(&scaled, t).unwrap();
    let rel = |x: f64, y: f64| (x - y).abs() / x.abs().max(1e-300);
    assert!(rel(a.n_star, b.n_star) < 1e-9, "{} {}", a.n_star, b.n_star);
    assert!(rel(a.g1, b.g1) < 1e-9);
    assert!(rel(a.n_pred, b.n_pred) < 1e-9);
    assert!(rel(a.beta, b.beta) < 1e-9);
    assert!(rel(a.p, 1000.0 * b.p) < 1e-9, "p is in raw units");
}

#[test]
fn cascade_median_law_is_consistent_with_objective_and_predict() {
    let m = median_model();
    for k in [1, 7, 26] {
        let c = cascade(k);
        let t = 600.0;
        let fit = m.fit(&c, t).unwrap();
        let obj = m.objective(&c, t, fit.p, fit.beta).unwrap();
        assert!((obj - fit.objective).abs() <= 1e-9 * fit.objective.abs().max(1.0), "{obj} {}", fit.objective);
        let (g1, n) = m.predict(&c, t, fit.p, fit.beta).unwrap();
        assert!((g1 - fit.g1).abs() <= 1e-9 * fit.g1.max(1.0));
        assert!((n - fit.n_pred).abs() <= 1e-9 * fit.n_pred);
        let em = m.cascade_expected_magnitude(&c, t).unwrap();
        assert!((fit.p * em - fit.n_star).abs() < 1e-12);
    }
}

#[test]
fn cascade_median_scale_follows_the_observed_median() {
    let m = median_model();
    // marks 100, 300, 900 (and a zero, ignored): median 300
    let c = ev(&[(0.0, 100.0), (5.0, 0.0), (10.0, 900.0), (20.0, 300.0)]);
    let s = m.mark_scale(&c, 600.0).unwrap();
    assert!((s - m.law_median() / 300.0).abs() < 1e-15);
    // only events with t ≤ T count
    let s2 = m.mark_scale(&c, 12.0).unwrap();
    assert!((s2 - m.law_median() / 500.0).abs() < 1e-15);
    // all zero marks: scale 1; extreme marks stay within MAX_MAGNITUDE after rescaling
    assert_eq!(m.mark_scale(&ev(&[(0.0, 0.0), (1.0, 0.0)]), 5.0).unwrap(), 1.0);
    let extreme = ev(&[(0.0, 1e-300), (1.0, 1e-300), (2.0, MAX_MAGNITUDE)]);
    let s3 = m.mark_scale(&extreme, 5.0).unwrap();
    assert!(s3 * MAX_MAGNITUDE <= MAX_MAGNITUDE * (1.0 + 1e-12));
    assert!(m.fit(&extreme, 5.0).is_ok() || m.fit(&extreme, 5.0).is_err());
}

#[test]
fn cascade_median_law_tames_small_real_cascades() {
    // On small real cascades (first 10 events of the bundled ones, observed to their 10th
    // event), the course law's fit explodes far more often than the per-cascade law's.
    let fixed = model(PriorKind::Course);
    let median = median_model();
    let (mut fixed_big, mut median_big) = (0, 0);
    for k in 1..=40 {
        let c = cascade(k);
        let part = &c[..10];
        let t = part[9].t + 1.0;
        let total = c.len() as f64;
        if fixed.fit(part, t).is_ok_and(|f| f.n_pred > 10.0 * total) {
            fixed_big += 1;
        }
        if median.fit(part, t).is_ok_and(|f| f.n_pred > 10.0 * total) {
            median_big += 1;
        }
    }
    assert!(median_big <= fixed_big, "{median_big} > {fixed_big}");
}

proptest! {
    #[test]
    fn cascade_median_fits_are_finite_or_typed_errors(
        marks in proptest::collection::vec(0.0f64..1e7, 2..40),
        gaps in proptest::collection::vec(0.0f64..500.0, 40),
    ) {
        let m = median_model();
        let mut t = 0.0;
        let events: Vec<Event> = marks.iter().zip(&gaps).enumerate().map(|(i, (&mk, &g))| {
            if i > 0 { t += g; }
            Event { t, m: mk }
        }).collect();
        if let Ok(fit) = m.fit(&events, t + 10.0) {
            prop_assert!(fit.n_pred.is_finite() && fit.n_pred >= fit.n as f64);
            prop_assert!(fit.p.is_finite() && fit.p > 0.0 && fit.n_star < 1.0);
        }
    }
}
