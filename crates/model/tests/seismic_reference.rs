//! SEISMIC against the reference values of `/work/shared/SEISMIC.md` §7 (R package `seismic`
//! 1.1), on the `seismic-r-tweet` cascade and cascades #1 and #26 of `data/seismic-tideh100`;
//! plus causality and a property test that every output is finite.
//!
//! The tests sit in a `seismic` module so that `cargo test -p tweetoscope-model seismic` runs them.

mod seismic {
    use proptest::prelude::*;
    use tweetoscope_model::seismic::{
        fit_correction, infectiousness, infectiousness_detail, prediction, SeismicError, SeismicParams,
    };

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    /// The course-layout `seismic-r-tweet` cascade (`time,magnitude`).
    fn r_tweet() -> Vec<(f64, f64)> {
        let data =
            std::fs::read_to_string(format!("{ROOT}/tests/data/seismic-r-tweet/cascades-data.csv")).expect("cascades-data.csv");
        data.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (t, m) = l.split_once(',').expect("time,magnitude");
                (t.trim().parse().expect("time"), m.trim().parse().expect("magnitude"))
            })
            .collect()
    }

    /// A SEISMIC raw-layout cascade: header `<retweets> <post day>`, then `<seconds> <followers>`.
    fn raw(k: usize) -> Vec<(f64, f64)> {
        let data = std::fs::read_to_string(format!("{ROOT}/data/seismic-tideh100/raw/training/RT{k}.txt")).expect("RT<k>.txt");
        let mut lines = data.lines();
        let n: usize = lines.next().expect("header").split_whitespace().next().expect("count").parse().expect("count");
        let ev: Vec<(f64, f64)> = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut it = l.split_whitespace();
                (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
            })
            .collect();
        assert_eq!(ev.len(), n + 1, "RT{k}: header says {n} retweets");
        ev
    }

    fn assert_rel(what: &str, got: f64, want: f64, rel: f64) {
        let err = if got == want { 0.0 } else { (got - want).abs() / want.abs() };
        println!("{what}: got {got:.15e}, want {want:.15e}, relative error {err:.1e}");
        assert!(err <= rel, "{what}: got {got:.15e}, want {want:.15e}");
    }

    /// One row of SEISMIC.md §7: (label, events, T, events ≤ T, p̂_T, F_T, N̂_T or None for +∞).
    type Row<'a> = (&'a str, &'a [(f64, f64)], f64, usize, f64, f64, Option<f64>);

    /// SEISMIC.md §7.
    #[test]
    fn reference_table() {
        let rt = r_tweet();
        let c1 = raw(1);
        let c26 = raw(26);
        let rows: [Row; 7] = [
            ("r-tweet", &rt, 300.0, 23, 0.0185962452831, 129.223053855, None),
            ("r-tweet", &rt, 600.0, 33, 0.00752178875753, 57.2381906728, Some(262.965745341)),
            ("r-tweet", &rt, 1200.0, 42, 0.00507273646343, 36.1927649573, Some(114.454088032)),
            ("r-tweet", &rt, 3600.0, 907, 0.00790884330317, 1395.8030817, Some(7580.78952591)),
            ("tideh #1", &c1, 300.0, 2, 0.000452362248279, 195.078917533, Some(205.321657991)),
            ("tideh #1", &c1, 600.0, 208, 0.00210058498655, 862.123011309, Some(1298.37576623)),
            ("tideh #26", &c26, 300.0, 9, 0.011035225946, 48.3774760232, None),
        ];
        let params = SeismicParams::default();
        // The table's values have 12 significant digits.
        let rel = 1e-10;
        for (label, events, t, seen, p, f, n) in rows {
            let what = format!("{label} T={t}");
            assert_eq!(events.iter().filter(|e| e.0 <= t).count(), seen, "{what}: events ≤ T");
            // Whole history and truncated history give the same numbers.
            let truncated: Vec<(f64, f64)> = events.iter().copied().filter(|e| e.0 <= t).collect();
            for input in [events, &truncated[..]] {
                let pred = prediction(input, t, &params).unwrap();
                assert_rel(&format!("{what} p̂"), pred.p_hat, p, rel);
                assert_rel(&format!("{what} F"), pred.f_t, f, rel);
                assert_eq!(pred.r_t, (seen - 1) as f64, "{what}: R_T");
                match n {
                    Some(n) => {
                        assert_rel(&format!("{what} N̂"), pred.n_hat.unwrap(), n, rel);
                        assert_rel(&format!("{what} N̂+1"), pred.final_size.unwrap(), n + 1.0, rel);
                    }
                    None => {
                        assert!(pred.p_hat * params.n_star >= 1.0, "{what}: not supercritical");
                        assert_eq!((pred.n_hat, pred.final_size), (None, None), "{what}");
                    }
                }
            }
        }
    }

    /// Cascade #1 at T = 300 s has two events before T: the `min_count` fallback reaches back to
    /// the original post, w = 300 s.
    #[test]
    fn fallback_window() {
        let c1 = raw(1);
        let d = infectiousness_detail(&c1, 300.0, &SeismicParams::default()).unwrap();
        assert!(d.fallback);
        assert_eq!(d.window, 300.0);
        assert_eq!(d.reshares_in_window, 1);
        assert_rel("p̂", d.p_hat, 0.000452362248279, 1e-10);
        // N_T is the weight of the single reshare at 292 s.
        assert_rel("N_T", d.weighted_reshares, 1.0 - 8.0 / 300.0, 1e-15);
        // With min_count = 1 there is no fallback: same w here, but the flag is off.
        let p1 = SeismicParams { min_count: 1, ..SeismicParams::default() };
        let d1 = infectiousness_detail(&c1, 300.0, &p1).unwrap();
        assert!(!d1.fallback);
        assert_eq!(d1.p_hat, d.p_hat);
        // A fallback that widens the window beyond max_window: 6 sparse events, T = 40000.
        let sparse = [(0.0, 10.0), (100.0, 20.0), (200.0, 30.0), (5000.0, 40.0), (9000.0, 50.0), (30000.0, 60.0)];
        let d = infectiousness_detail(&sparse, 40000.0, &SeismicParams::default()).unwrap();
        assert!(d.fallback);
        // L = 6, j = max(6 − 5, 1) = 1: back to the original post.
        assert_eq!(d.window, 40000.0);
        assert_eq!(d.reshares_in_window, 5);
    }

    /// p̂_T uses only the events with tᵢ < T: events at or after T change nothing, whatever they
    /// are; the prediction uses those at exactly T (R_T, F_T) but not later ones.
    #[test]
    fn estimator_is_causal() {
        let params = SeismicParams::default();
        for events in [r_tweet(), raw(1), raw(26)] {
            for t in [60.0, 300.0, 600.0, 1200.0, 3600.0, 20_000.0] {
                let before: Vec<(f64, f64)> = events.iter().copied().filter(|e| e.0 < t).collect();
                let p_before = infectiousness(&before, t, &params).unwrap();
                assert_eq!(infectiousness(&events, t, &params).unwrap(), p_before, "T={t}");
                let mut more = before.clone();
                more.extend([(t, 1e9), (t, 0.0), (t + 1.0, 5e6), (t + 1e5, 3.0)]);
                assert_eq!(infectiousness(&more, t, &params).unwrap(), p_before, "T={t}");
                let seen: Vec<(f64, f64)> = events.iter().copied().filter(|e| e.0 <= t).collect();
                let mut later = seen.clone();
                later.extend([(t + 1.0, 5e6), (t + 1e5, 3.0)]);
                assert_eq!(prediction(&later, t, &params).unwrap(), prediction(&seen, t, &params).unwrap(), "T={t}");
            }
        }
    }

    /// The §4 window rules on a whole grid of T, against an independent direct evaluation (the
    /// integrals Jᵢ by fine quadrature): guards the fallback and window edges, not just 7 points.
    #[test]
    fn infectiousness_matches_quadrature_on_a_grid() {
        let params = SeismicParams::default();
        let ev = r_tweet();
        for t in (1..=60).map(|k| k as f64 * 60.0).chain([7.0, 33.0, 14_400.0, 21_600.0]) {
            let d = infectiousness_detail(&ev, t, &params).unwrap();
            let w = d.window;
            let k = |x: f64| 1.0 - (t - x) / w;
            let before: Vec<&(f64, f64)> = ev.iter().filter(|e| e.0 < t).collect();
            let n_t: f64 = before.iter().skip(1).filter(|e| e.0 >= t - w).map(|e| k(e.0)).sum();
            let mut d_t = 0.0;
            for &&(ti, di) in &before {
                let a = ti.max(t - w);
                let brk = (ti + params.s0).clamp(a, t);
                let f = |tau: f64| params.memory_pdf(tau - ti) * k(tau);
                let simpson = |a: f64, b: f64| {
                    if b <= a {
                        return 0.0;
                    }
                    let n = 2000;
                    let h = (b - a) / n as f64;
                    let s: f64 = (1..n).map(|i| f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
                    (s + f(a) + f(b)) * h / 3.0
                };
                d_t += di * (simpson(a, brk) + simpson(brk, t));
            }
            let p = if n_t > 0.0 { n_t / d_t } else { 0.0 };
            assert_rel(&format!("N_T at T={t}"), d.weighted_reshares, n_t, 1e-12);
            assert!((d.p_hat - p).abs() <= 1e-8 * p, "T={t}: p̂ {} vs quadrature {p}", d.p_hat);
        }
    }

    /// The correction fitted on training cascades of `seismic-tideh100` at T = 600 s: valid,
    /// deterministic, subcritical on every training sample, and no worse than the plain package
    /// on its own criterion.
    #[test]
    fn correction_fit_on_training_cascades() {
        let params = SeismicParams::default();
        let mut samples = vec![];
        for k in 1..=40 {
            let path = format!("{ROOT}/data/seismic-tideh100/raw/training/RT{k}.txt");
            if !std::path::Path::new(&path).exists() {
                continue;
            }
            let ev = raw(k);
            let pred = prediction(&ev, 600.0, &params).unwrap();
            samples.push((pred, ev.len() as f64));
        }
        assert!(samples.len() >= 20, "{} training cascades", samples.len());
        let fit = fit_correction(&samples).unwrap();
        assert_eq!(fit, fit_correction(&samples).unwrap());
        assert!(fit.alpha.is_finite() && fit.alpha > 0.0 && fit.gamma.is_finite() && fit.gamma >= 0.0);
        for (pred, _) in &samples {
            assert!(fit.gamma * pred.p_hat < 1.0);
        }
        let corrected = fit.mean_abs_log_error(&samples).unwrap();
        // The plain model has infinite predictions for supercritical samples: compare on the rest.
        let sub: Vec<_> = samples.iter().copied().filter(|(p, _)| p.final_size.is_some()).collect();
        let plain = tweetoscope_model::seismic::CorrectedSeismic::plain(100.0).mean_abs_log_error(&sub).unwrap();
        let corrected_sub = fit.mean_abs_log_error(&sub).unwrap();
        println!(
            "fit on {} samples at T=600: alpha = {:.6}, gamma = {:.4}; mean |ln ratio| = {corrected:.4} \
             (subcritical subset of {}: corrected {corrected_sub:.4}, plain {plain:.4})",
            samples.len(),
            fit.alpha,
            fit.gamma,
            sub.len()
        );
        assert!(corrected.is_finite());
    }

    fn cascade() -> impl Strategy<Value = Vec<(f64, f64)>> {
        let gap = prop_oneof![Just(0.0), 0.0..5.0f64, 0.0..2000.0f64, 0.0..1e6f64];
        let followers = prop_oneof![Just(0.0), 0.0..1e3f64, 0.0..1e9f64, Just(1e15)];
        prop::collection::vec((gap, followers), 0..80).prop_map(|v| {
            let mut t = 0.0;
            v.into_iter()
                .enumerate()
                .map(|(i, (g, d))| {
                    if i > 0 {
                        t += g;
                    }
                    (t, d)
                })
                .collect()
        })
    }

    fn params() -> impl Strategy<Value = SeismicParams> {
        (1e-5..3e-3f64, 0.01..0.99f64, 1.0..1000.0f64, 1.0..1e4f64, 1.0..20.0f64, 0usize..12, 1.0..1e3f64).prop_filter_map(
            "valid params",
            |(c, theta, s0, min_window, ratio, min_count, n_star)| {
                let p = SeismicParams { c, theta, s0, min_window, max_window: min_window * ratio, min_count, n_star };
                p.validate().ok().map(|_| p)
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// No panic, no NaN, no infinity: either finite outputs or a typed error, and the only
        /// errors on valid input are the zero-exposure and overflow outcomes.
        #[test]
        fn outputs_are_finite(events in cascade(), t in prop_oneof![0.0..1e7f64, Just(300.0), Just(0.0)], p in params()) {
            match prediction(&events, t, &p) {
                Ok(pred) => {
                    prop_assert!(pred.r_t.is_finite() && pred.f_t.is_finite() && pred.p_hat.is_finite());
                    prop_assert!(pred.p_hat >= 0.0 && pred.f_t >= 0.0);
                    if let Some(n) = pred.n_hat {
                        prop_assert!(n.is_finite() && n >= pred.r_t);
                        prop_assert_eq!(pred.final_size, Some(n + 1.0));
                    } else {
                        prop_assert!(pred.final_size.is_none());
                    }
                    let d = infectiousness_detail(&events, t, &p).unwrap();
                    prop_assert!(d.window.is_finite() && d.window > 0.0);
                    prop_assert!(d.weighted_reshares.is_finite() && d.weighted_exposure.is_finite());
                }
                Err(e) => prop_assert!(
                    matches!(e, SeismicError::ZeroExposure { .. } | SeismicError::NonFinite(_)),
                    "unexpected error {e:?}"
                ),
            }
            for u in [t, -t, t * 1e5] {
                prop_assert!(p.memory_ccdf(u).is_finite() && p.memory_pdf(u).is_finite());
            }
        }
    }
}
