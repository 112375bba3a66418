//! Golden test of the Hawkes estimator against `tests/data/hawkes-map.json` (324 cases on real
//! cascades; see `tests/data/hawkes-map.README.md` for the formulas and the tolerances used
//! here).
//!
//! - `evaluation`: the formulas at the stored parameters, to 1e−10 relative.
//! - `optimiser`: our optimum against the stored best, for the three priors.
//! - `against_course_powell`: how often we beat the course's own Powell fit.
//! - `grid_margin`: how small the search grid could be, and that a much finer one finds
//!   nothing better (the justification of the default grid size).
//! - `grid_study` (`--ignored`, ~10 s): the same on 5,832 fits of all real cascades at
//!   T = 5…120 min.

use serde_json::Value;
use std::fmt::Write as _;
use tweetoscope_model::hawkes::{BoundHit, Event, HawkesModel, HawkesSettings, PriorKind};

mod support;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// One golden case with its events.
struct Case {
    json: Value,
    dataset: String,
    cascade: usize,
    t: f64,
    events: std::sync::Arc<Vec<Event>>,
}

impl Case {
    fn label(&self) -> String {
        format!("{} cascade {} T={} (n={})", self.dataset, self.cascade, self.t, self.json["n"])
    }
}

/// Reads a course-layout dataset: every cascade's events, in file order.
fn read_dataset(dir: &str) -> Vec<std::sync::Arc<Vec<Event>>> {
    support::read_course_dataset(dir).into_iter().map(std::sync::Arc::new).collect()
}

fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{ROOT}/tests/data/hawkes-map.json")).expect("golden file");
    let golden: Value = serde_json::from_str(&text).expect("golden JSON");
    let tideh = read_dataset(&format!("{ROOT}/data/seismic-tideh100"));
    let rtweet = read_dataset(&format!("{ROOT}/tests/data/seismic-r-tweet"));
    assert_eq!(tideh.len(), 80);
    assert_eq!(rtweet.len(), 1);
    let cases: Vec<Case> = golden["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let dataset = c["dataset"].as_str().unwrap().to_string();
            let cascade = c["cascade"].as_u64().unwrap() as usize;
            let events = match dataset.as_str() {
                "seismic-tideh100" => tideh[cascade - 1].clone(),
                "seismic-r-tweet" => rtweet[cascade - 1].clone(),
                other => panic!("unknown dataset {other}"),
            };
            Case { t: c["T"].as_f64().unwrap(), json: c.clone(), dataset, cascade, events }
        })
        .collect();
    assert_eq!(cases.len(), 324);
    for c in &cases {
        let n = c.events.iter().take_while(|e| e.t <= c.t).count();
        assert_eq!(n as u64, c.json["n"].as_u64().unwrap(), "{}", c.label());
    }
    cases
}

/// The three variants of the golden file and the model of each.
fn variants() -> [(&'static str, HawkesModel); 3] {
    let model = |prior| HawkesModel::new(HawkesSettings { prior, ..HawkesSettings::course() }).unwrap();
    [("map_course", model(PriorKind::Course)), ("map_lognormal", model(PriorKind::LogNormal)), ("mle", model(PriorKind::Flat))]
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Prints every failure, then fails if there was any.
fn finish(name: &str, checked: usize, failures: &[String]) {
    for line in failures.iter().take(60) {
        eprintln!("{line}");
    }
    println!("{name}: {} of {checked} checks pass", checked - failures.len());
    assert!(failures.is_empty(), "{name}: {} of {checked} checks fail (listed above)", failures.len());
}

#[test]
fn prior_matches_reference() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/tests/data/hawkes-map.json")).unwrap()).unwrap();
    let prior = &golden["model"]["prior"];
    let model = HawkesModel::new(HawkesSettings::course()).unwrap();
    let p = model.prior();
    for i in 0..2 {
        assert!(rel(p.mean[i], f(&prior["mean"][i])) < 1e-14);
        for j in 0..2 {
            assert!(rel(p.sigma[i][j], f(&prior["Sigma"][i][j])) < 1e-14);
            assert!(rel(p.sigma_inv[i][j], f(&prior["Sigma_inverse"][i][j])) < 1e-14);
        }
    }
    assert_eq!(model.expected_magnitude(), f(&golden["model"]["marks"]["E_m"]));
    assert_eq!(model.p_bounds().1, 0.028571418571428565);
    assert_eq!(model.beta_bounds(), (1.1574074074074074e-06, 0.016666666666666666));
}

#[test]
fn evaluation() {
    let cases = load();
    let models = variants();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for c in &cases {
        for (name, model) in &models {
            let g = &c.json[*name];
            let (p, beta) = (f(&g["p"]), f(&g["beta"]));
            let ll = model.log_likelihood(&c.events, c.t, p, beta).unwrap();
            let lp = model.log_prior(p, beta).unwrap();
            let obj = model.objective(&c.events, c.t, p, beta).unwrap();
            let (want_ll, want_lp, want_obj) = if *name == "mle" {
                (f(&g["loglik"]), 0.0, f(&g["loglik"]))
            } else {
                (f(&g["loglik"]), f(&g["log_prior"]), f(&g["objective"]))
            };
            for (what, got, want) in [("loglik", ll, want_ll), ("log_prior", lp, want_lp), ("objective", obj, want_obj)] {
                checked += 1;
                let r = if want == 0.0 { got.abs() } else { rel(got, want) };
                worst = worst.max(r);
                if r > 1e-10 {
                    failures.push(format!("{} {name} {what}: got {got:e}, want {want:e} (rel {r:e})", c.label()));
                }
            }
        }
        let g = &c.json["map_course"];
        let (g1, n_pred) = models[0].1.predict(&c.events, c.t, f(&g["p"]), f(&g["beta"])).unwrap();
        for (what, got, want) in [("G1", g1, f(&c.json["G1"])), ("N_pred", n_pred, f(&c.json["N_pred"]))] {
            checked += 1;
            let r = rel(got, want);
            worst = worst.max(r);
            if r > 1e-10 {
                failures.push(format!("{} map_course {what}: got {got:e}, want {want:e} (rel {r:e})", c.label()));
            }
        }
    }
    println!("evaluation: worst relative difference {worst:e}");
    finish("evaluation", checked, &failures);
}

/// Pass counts of each check of the optimiser test, and the failure messages.
#[derive(Default)]
struct Tally {
    /// (check name, checked, passed), in first-use order.
    counts: Vec<(String, usize, usize)>,
    failures: Vec<String>,
    /// Worst (best − ours)/|best| and largest (ours − best)/|best| seen.
    worst_shortfall: f64,
    largest_excess: f64,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool, failure: impl FnOnce() -> String) {
        let i = match self.counts.iter().position(|(n, _, _)| n == name) {
            Some(i) => i,
            None => {
                self.counts.push((name.to_string(), 0, 0));
                self.counts.len() - 1
            }
        };
        self.counts[i].1 += 1;
        if ok {
            self.counts[i].2 += 1;
        } else {
            self.failures.push(failure());
        }
    }
}

/// Checks one fit of one variant against the golden best (README "Tolerances", items 2–4).
fn check_fit(c: &Case, name: &str, model: &HawkesModel, fit: &tweetoscope_model::hawkes::Fit, tally: &mut Tally) {
    let g = &c.json[name];
    let best = if name == "mle" { f(&g["loglik"]) } else { f(&g["objective"]) };
    let ours = model.objective(&c.events, c.t, fit.p, fit.beta).unwrap();
    let label = format!("{} {name}", c.label());
    tally.worst_shortfall = tally.worst_shortfall.max((best - ours) / best.abs());
    tally.largest_excess = tally.largest_excess.max((ours - best) / best.abs());
    tally.check(&format!("{name}: f(θ̂) ≥ best − 1e-6·|best|"), ours >= best - 1e-6 * best.abs(), || {
        format!("{label}: objective {ours:.12e} below best {best:.12e} by {:e}", best - ours)
    });
    tally.check(&format!("{name}: f(θ̂) ≤ best + 1e-9·|best|"), ours <= best + 1e-9 * best.abs(), || {
        format!("{label}: objective {ours:.12e} above best {best:.12e} by {:e}", ours - best)
    });
    tally.check(&format!("{name}: Fit.objective = formula at θ̂ (1e-10)"), rel(fit.objective, ours) <= 1e-10, || {
        format!("{label}: reported objective {:e} differs from the formula {ours:e}", fit.objective)
    });
    let want_hits: Vec<&str> = g["bounds_hit"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    let got_hits: Vec<&str> = fit
        .bounds_hit
        .iter()
        .map(|h| match h {
            BoundHit::PMin => "p_min",
            BoundHit::PMax => "p_max",
            BoundHit::BetaMin => "beta_min",
            BoundHit::BetaMax => "beta_max",
        })
        .collect();
    tally.check(&format!("{name}: bounds_hit as the reference"), want_hits == got_hits, || {
        format!("{label}: bounds hit {got_hits:?}, want {want_hits:?}")
    });
    let well = g["params_well_identified"].as_bool().unwrap();
    let (p_max, beta_max) = (model.p_bounds().1, model.beta_bounds().1);
    for (what, got, want) in [("p", fit.p, f(&g["p"])), ("beta", fit.beta, f(&g["beta"]))] {
        let on_bound = (what == "p" && want_hits.contains(&"p_max")) || (what == "beta" && want_hits.contains(&"beta_max"));
        if on_bound {
            let bound = if what == "p" { p_max } else { beta_max };
            tally.check(&format!("{name}: bound coordinate on the bound (1e-9)"), (got - bound).abs() <= 1e-9 * bound, || {
                format!("{label}: {what} = {got:e} should be on the bound {bound:e}")
            });
        } else if well {
            tally.check(&format!("{name}: {what} within 1e-3 (well identified)"), rel(got, want) <= 1e-3, || {
                format!("{label}: {what} = {got:e}, want {want:e} (rel {:e})", rel(got, want))
            });
        }
    }
}

#[test]
fn optimiser() {
    let cases = load();
    let models = variants();
    let mut tally = Tally::default();
    let mut sweeps = Vec::new();
    for c in &cases {
        for (name, model) in &models {
            let fit = model.fit(&c.events, c.t).unwrap_or_else(|e| panic!("{} {name}: fit failed: {e}", c.label()));
            sweeps.push(fit.sweeps);
            check_fit(c, name, model, &fit, &mut tally);
        }
    }
    sweeps.sort_unstable();
    println!(
        "optimiser: sweeps per fit: median {}, max {}, mean {:.1}; worst (best − ours)/|best| = {:e}, \
         largest (ours − best)/|best| = {:e}",
        sweeps[sweeps.len() / 2],
        sweeps[sweeps.len() - 1],
        sweeps.iter().sum::<usize>() as f64 / sweeps.len() as f64,
        tally.worst_shortfall,
        tally.largest_excess,
    );
    for (name, checked, passed) in &tally.counts {
        println!("  {passed:>3} of {checked:>3} pass: {name}");
    }
    let checked = tally.counts.iter().map(|c| c.1).sum();
    finish("optimiser (all checks)", checked, &tally.failures);
}

#[test]
fn against_course_powell() {
    let cases = load();
    let model = &variants()[0].1;
    let (mut beat_abs, mut beat_rel, mut beat_1) = (0, 0, 0);
    let mut failures = Vec::new();
    for c in &cases {
        let fit = model.fit(&c.events, c.t).unwrap();
        let ours = model.objective(&c.events, c.t, fit.p, fit.beta).unwrap();
        let powell = f(&c.json["course_powell"]["objective"]);
        if ours > powell + 1e-6 {
            beat_abs += 1;
        }
        if ours > powell + 1e-6 * powell.abs() {
            beat_rel += 1;
        }
        if ours > powell + 1.0 {
            beat_1 += 1;
        }
        if ours < powell - 1e-6 * powell.abs() {
            failures.push(format!("{} map_course: ours {ours:e} worse than course Powell {powell:e}", c.label()));
        }
    }
    println!(
        "against course Powell: we beat it by > 1e-6 absolute in {beat_abs} of {} cases, by > 1e-6 relative in \
         {beat_rel}, by > 1 objective unit in {beat_1}",
        cases.len()
    );
    finish("not worse than course Powell", cases.len(), &failures);
}

/// The grid size: for each candidate size, how many of the 972 fits miss the golden best
/// (test 2 of the README), and that a 20× finer grid finds nothing better than the default.
#[test]
fn grid_margin() {
    let cases = load();
    let models = variants();
    let mut report = String::new();
    let default_sweeps_ok = {
        let mut failures = Vec::new();
        for c in &cases {
            for (name, model) in &models {
                let ours = model.fit(&c.events, c.t).unwrap();
                let fine = model.fit_with_grid(&c.events, c.t, 240).unwrap();
                if fine.objective > ours.objective + 1e-9 * ours.objective.abs() {
                    failures.push(format!(
                        "{} {name}: 240-point grid finds {:e} > default {:e}",
                        c.label(),
                        fine.objective,
                        ours.objective
                    ));
                }
            }
        }
        failures
    };
    for k in [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 20] {
        let mut missed = 0;
        let mut first = None;
        for c in &cases {
            for (name, model) in &models {
                let fit = model.fit_with_grid(&c.events, c.t, k).unwrap();
                let g = &c.json[*name];
                let best = if *name == "mle" { f(&g["loglik"]) } else { f(&g["objective"]) };
                let ours = model.objective(&c.events, c.t, fit.p, fit.beta).unwrap();
                if ours < best - 1e-6 * best.abs() {
                    missed += 1;
                    first.get_or_insert_with(|| format!("{} {name}: {ours:e} < {best:e}", c.label()));
                }
            }
        }
        let _ = writeln!(
            report,
            "  grid {k:>2}: {missed:>3} of 972 fits miss the best{}",
            first.map(|s| format!(" (e.g. {s})")).unwrap_or_default()
        );
    }
    println!("grid_margin:\n{report}");
    finish("default grid vs 240-point grid", cases.len() * 3, &default_sweeps_ok);
}

/// A wider study of the grid size than the golden cases: every cascade of both datasets at
/// T = 5, 10, …, 120 minutes, three priors, each fit compared with a 240-point grid.
/// Slow (about a minute); run with `--ignored`.
#[test]
#[ignore]
fn grid_study() {
    let mut cascades = read_dataset(&format!("{ROOT}/data/seismic-tideh100"));
    cascades.extend(read_dataset(&format!("{ROOT}/tests/data/seismic-r-tweet")));
    let models = variants();
    let sizes = [6usize, 7, 8, 9, 10, 11, 12];
    let mut missed = vec![0usize; sizes.len()];
    let mut worst = vec![0.0f64; sizes.len()];
    let mut fits = 0;
    for c in &cascades {
        for minutes in (5..=120).step_by(5) {
            let t = minutes as f64 * 60.0;
            if c.iter().take_while(|e| e.t <= t).count() < 2 {
                continue;
            }
            for (_, model) in &models {
                fits += 1;
                let fine = model.fit_with_grid(c, t, 240).unwrap().objective;
                for (i, &k) in sizes.iter().enumerate() {
                    let ours = model.fit_with_grid(c, t, k).unwrap().objective;
                    let short = (fine - ours) / fine.abs().max(1.0);
                    worst[i] = worst[i].max(short);
                    if short > 1e-6 {
                        missed[i] += 1;
                        if k >= 10 {
                            let a = model.fit_with_grid(c, t, k).unwrap();
                            let b = model.fit_with_grid(c, t, 240).unwrap();
                            println!("  grid {k}: cascade of {} events, T = {t}, {:?}: ours p {:e} beta {:e} f {}, fine p {:e} beta {:e} f {}",
                                c.len(), model.settings().prior, a.p, a.beta, a.objective, b.p, b.beta, b.objective);
                        }
                    }
                }
            }
        }
    }
    for (i, k) in sizes.iter().enumerate() {
        println!("grid {k:>2}: {:>4} of {fits} fits more than 1e-6 below the 240-point grid (worst {:e})", missed[i], worst[i]);
    }
}
