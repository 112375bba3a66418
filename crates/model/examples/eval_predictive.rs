//! Offline, prequential evaluation of the default-mode predictive layer against honest
//! baselines (PREDICTIVE.md reports its output).
//!
//! ```text
//! cargo run -p tweetoscope-model --release --example eval_predictive -- [options]
//!   --data bundled,auspol,sim     data sets (default: all three)
//!   --shared DIR                  the shared data folder (default /work/shared/data)
//!   --news-index FILE             sizes for the simulated stream
//!                                 (default /work/main/tests/data/tweetoscope-news-index/news-index.csv)
//!   --sim-cascades N              simulated cascades (default 3000)
//!   --min-size N                  smallest partial predicted (default 10, the engine's default)
//!   --train-min-size N            smallest partial whose sample trains (default: --min-size)
//!   --min-samples N               samples before a window's first model (default 10)
//!   --retrain-every N             retrain every N samples (default 5; growth 10%)
//!   --fallback F                  no-growth | seismicR (SEISMIC capped at R×) | R (ratio);
//!                                 default seismic5
//!   --seed S                      timelines and simulation (default 1)
//!   --variants LIST               learned variants (default: all)
//!   --timing                      training time and model size at 100/1,000/5,000 samples
//!   --dump DIR                    also write every data set's samples (in end order) to DIR
//! ```
//!
//! Course semantics (mirroring `src/cascade.rs`): a cascade terminates once idle for more
//! than 1800 s, N_true = its events up to the last one before that gap; its partial at T has
//! the events with t ≤ T (always before termination, since T ≤ 1800); partials with fewer
//! than `--min-size` events are not predicted. Prequential: the prediction of cascade c at
//! window T happens at start_c + T and may only use the samples of cascades that ended
//! (start + last event + 1800) strictly before that time, in the order they ended.

use std::collections::BTreeMap;
use std::time::Instant;

use tweetoscope_model::hawkes::{Event, HawkesModel, HawkesSettings, MarkLaw};
use tweetoscope_model::predictive::boost::Loss;
use tweetoscope_model::predictive::{
    conformal_interval, features, Fallback, FeatureVector, HawkesSummary, LearnerKind, LearnerSettings, Metric, OffsetKind,
    PredictiveModel, TrainerSettings, WindowTrainer,
};
use tweetoscope_model::seismic::{self, SeismicParams};
use tweetoscope_model::simulate::{
    seeded_rng, MatchStrategy, PriorMoments, PriorSampler, SimulationParams, SizeMatcher, SizeTarget,
};

const T_END: f64 = 1800.0;
const WINDOWS: [f64; 2] = [600.0, 1200.0];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One cascade on a timeline.
struct Cascade {
    start: f64,
    /// Events of the terminated prefix (up to the first gap > T_END).
    events: Vec<Event>,
}

impl Cascade {
    fn n_true(&self) -> usize {
        self.events.len()
    }
    fn end(&self) -> f64 {
        self.start + self.events.last().map_or(0.0, |e| e.t) + T_END
    }
}

/// Cuts a full event list at its first idle gap > T_END.
fn terminated_prefix(events: &[(f64, f64)]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    for &(t, m) in events {
        if let Some(last) = out.last() {
            if t - last.t > T_END {
                break;
            }
        }
        out.push(Event { t, m });
    }
    out
}

fn read_course_layout(data: &str, index: &str) -> Res<Vec<Vec<(f64, f64)>>> {
    let text = std::fs::read_to_string(data)?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let mut it = line.split(',');
        let t: f64 = it.next().ok_or("no time")?.trim().parse()?;
        let m: f64 = it.next().ok_or("no magnitude")?.trim().parse()?;
        rows.push((t, m));
    }
    let idx = std::fs::read_to_string(index)?;
    let mut out = Vec::new();
    for line in idx.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let (a, b) = line.split_once(',').ok_or("bad index row")?;
        let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
        if a == 0 || b < a || b > rows.len() {
            return Err(format!("bad index range {a},{b}").into());
        }
        out.push(rows[a - 1..b].to_vec());
    }
    Ok(out)
}

/// SEISMIC raw layout: one file per cascade, `<n> <post time in days>` then `<t> <followers>`.
/// A raw SEISMIC cascade: its post time (s) and its (time, followers) events.
type RawCascade = (f64, Vec<(f64, f64)>);

fn read_seismic_raw(dir: &str) -> Res<Vec<RawCascade>> {
    let mut files: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let k = name.strip_prefix("RT")?.strip_suffix(".txt")?.parse().ok()?;
            Some((k, e.path()))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (_, path) in files {
        let text = std::fs::read_to_string(&path)?;
        let mut lines = text.lines();
        let head: Vec<f64> = lines.next().ok_or("empty")?.split_whitespace().map(|x| x.parse()).collect::<Result<_, _>>()?;
        let day = *head.get(1).ok_or("no post time")?;
        let mut ev = Vec::new();
        for l in lines {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse()).collect::<Result<_, _>>()?;
            if v.len() >= 2 {
                ev.push((v[0], v[1]));
            }
        }
        out.push((day * 86_400.0, ev));
    }
    Ok(out)
}

/// SplitMix64 uniform in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn random_timeline(cascades: Vec<Vec<(f64, f64)>>, days: f64, seed: u64) -> Vec<Cascade> {
    let mut s = seed ^ 0xA5A5_5A5A;
    cascades
        .into_iter()
        .map(|ev| Cascade { start: (uniform(&mut s) * days * 86_400.0).floor(), events: terminated_prefix(&ev) })
        .collect()
}

fn load_bundled(shared: &str) -> Res<Vec<Cascade>> {
    let raw = read_seismic_raw(&format!("{shared}/seismic-tideh100/raw/training"))?;
    // Cross-check with the course layout of the same cascades.
    let course = read_course_layout(
        &format!("{shared}/seismic-tideh100/cascades-data.csv"),
        &format!("{shared}/seismic-tideh100/cascades-index.csv"),
    )?;
    if course.len() != raw.len() || course.iter().zip(&raw).any(|(c, r)| c.len() != r.1.len()) {
        return Err("seismic-tideh100: raw files and course layout disagree".into());
    }
    Ok(raw.into_iter().map(|(start, ev)| Cascade { start, events: terminated_prefix(&ev) }).collect())
}

fn load_auspol(shared: &str, seed: u64) -> Res<Vec<Cascade>> {
    let c = read_course_layout(
        &format!("{shared}/evently-auspol/cascades-data.csv"),
        &format!("{shared}/evently-auspol/cascades-index.csv"),
    )?;
    Ok(random_timeline(c, 14.0, seed))
}

/// NEWS-size-matched cascades as `tweetoscope simulate --match-sizes` makes them (n* = 0.2,
/// β from the course prior per cascade, horizon 1 day, at most 5,000 events).
fn load_sim(index: &str, n: usize, seed: u64) -> Res<Vec<Cascade>> {
    let text = std::fs::read_to_string(index)?;
    let target = SizeTarget::from_sizes(&SizeTarget::parse_course_index(&text)?)?;
    let h = HawkesSettings::course();
    let moments = PriorMoments {
        mean_p: h.prior_mean_p,
        mean_beta: h.prior_mean_beta,
        sd_p: h.prior_sd_p,
        sd_beta: h.prior_sd_beta,
        corr: h.prior_corr,
    };
    let mut base = SimulationParams::course(h.prior_mean_p, h.prior_mean_beta);
    base.horizon = 86_400.0;
    base.max_events = Some(5_000);
    let prior = PriorSampler::new(&moments, base.mark_mean())?.with_beta_bounds(h.beta_min, h.beta_max)?;
    let mut rng = seeded_rng(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, beta) = prior.sample(&mut rng);
        let m =
            SizeMatcher::new(target.clone(), SimulationParams { beta, ..base }, MatchStrategy::FixedBranching { n_star: 0.2 })?;
        out.push(m.simulate(&mut rng).cascade.events);
    }
    // NEWS: 20,093 cascades in about 30 days; keep that density.
    let days = 30.0 * n as f64 / 20_093.0;
    Ok(random_timeline(out, days.max(1.0), seed))
}

/// Everything known about one (cascade, window) partial.
struct Partial {
    /// Whether it is predicted and scored (n ≥ `--min-size`); smaller ones only train.
    scored: bool,
    start: f64,
    end: f64,
    n_obs: usize,
    n_true: usize,
    x: FeatureVector,
    hawkes_course: f64,
    hawkes_data: f64,
    seismic: Option<f64>,
}

fn partials(cascades: &[Cascade], t_obs: f64, min_size: usize, train_min_size: usize) -> Res<Vec<Partial>> {
    let course = HawkesModel::new(HawkesSettings::course())?;
    let data = HawkesModel::new(HawkesSettings { mark_law: MarkLaw::CascadeMedian, ..HawkesSettings::default() })?;
    let sp = SeismicParams::default();
    let mut out = Vec::new();
    for c in cascades {
        let k = c.events.partition_point(|e| e.t <= t_obs);
        if k < min_size.min(train_min_size).max(1) {
            continue;
        }
        let ev = &c.events[..k];
        let fit_course = course.fit(ev, t_obs).ok();
        let fit_data = data.fit(ev, t_obs).ok();
        let pairs: Vec<(f64, f64)> = ev.iter().map(|e| (e.t, e.m)).collect();
        let s = seismic::prediction(&pairs, t_obs, &sp).ok();
        let summary = fit_data.as_ref().map(HawkesSummary::from);
        let x = features(ev, t_obs, summary.as_ref(), s.as_ref());
        out.push(Partial {
            scored: k >= min_size,
            start: c.start,
            end: c.end(),
            n_obs: k,
            n_true: c.n_true(),
            x,
            hawkes_course: fit_course.map_or(k as f64, |f| f.n_pred),
            hawkes_data: fit_data.map_or(k as f64, |f| f.n_pred),
            seismic: s.map(|s| s.final_size.unwrap_or(f64::INFINITY)),
        });
    }
    Ok(out)
}

/// ARE, +∞ for an infinite prediction.
fn are(pred: f64, truth: f64) -> f64 {
    if pred.is_finite() {
        (pred - truth).abs() / truth
    } else {
        f64::INFINITY
    }
}

/// Quantile with linear interpolation; infinities sort last and propagate.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let frac = h - lo as f64;
    if frac == 0.0 || s[lo] == s[hi] {
        s[lo]
    } else if s[hi].is_infinite() {
        f64::INFINITY
    } else {
        s[lo] + frac * (s[hi] - s[lo])
    }
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// A learned variant.
struct Variant {
    name: &'static str,
    settings: TrainerSettings,
}

fn variants(filter: Option<&str>, min_samples: usize, every: usize, fallback: Fallback) -> Res<Vec<Variant>> {
    let base = LearnerSettings::default().with_fallback(fallback)?;
    let t = |l: LearnerSettings| TrainerSettings::new(l, min_samples, every, 0.1, 5000, 7);
    let all = vec![
        Variant { name: "gbdt-abs", settings: t(base.clone())? },
        Variant { name: "gbdt-sq", settings: t(base.clone().with_kind(LearnerKind::Boosted(Loss::Squared)))? },
        Variant {
            name: "rf",
            settings: t(base.clone().with_kind(LearnerKind::Forest).with_grid(vec![4, 8], vec![5, 20], 300, 0.05)?)?,
        },
        Variant { name: "gbdt-abs-mare", settings: t(base.clone().with_metric(Metric::MedianAre))? },
        Variant { name: "log-n-only", settings: t(base.clone().with_features(vec![0])?)? },
        Variant { name: "gbdt-abs-se1", settings: t(base.clone().with_se_rule(1.0)?)? },
        Variant { name: "gbdt-abs-se05", settings: t(base.clone().with_se_rule(0.5)?)? },
        Variant { name: "gbdt-abs-1fold", settings: t(base.clone().with_folds(1)?)? },
        Variant { name: "gbdt-abs-zero", settings: t(base.clone().with_offsets(vec![OffsetKind::Zero])?)? },
        Variant {
            name: "gbdt-abs-fb",
            settings: t(base.clone().with_offsets(vec![OffsetKind::Zero, OffsetKind::ConstantSize, OffsetKind::Fallback])?)?,
        },
    ];
    Ok(match filter {
        None => all,
        Some(f) => {
            let want: Vec<&str> = f.split(',').collect();
            all.into_iter().filter(|v| want.contains(&v.name)).collect()
        }
    })
}

/// Per-predictor AREs, with the final sizes for the buckets.
#[derive(Default)]
struct Scores {
    rows: BTreeMap<String, Vec<(f64, usize)>>,
}

impl Scores {
    fn add(&mut self, name: &str, are: f64, n_true: usize) {
        self.rows.entry(name.to_string()).or_default().push((are, n_true));
    }

    /// Median ARE of each predictor over its last half of predictions (in time order).
    fn late_half(&self) -> String {
        let mut v: Vec<(f64, &String)> =
            self.rows.iter().map(|(k, r)| (median(&r[r.len() / 2..].iter().map(|x| x.0).collect::<Vec<_>>()), k)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.iter().take(8).map(|(m, k)| format!("{k} {m:.3}")).collect::<Vec<_>>().join(", ")
    }
}

/// Prequential run of one window: returns the scores and some diagnostics.
fn prequential(parts: &[Partial], vars: &[Variant], window: u64, fallback: Fallback) -> Res<(Scores, Vec<String>)> {
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[a].start.total_cmp(&parts[b].start).then(a.cmp(&b)));
    let mut ended: Vec<usize> = (0..parts.len()).collect();
    ended.sort_by(|&a, &b| parts[a].end.total_cmp(&parts[b].end).then(a.cmp(&b)));
    let mut trainers: Vec<WindowTrainer> = vars.iter().map(|_| WindowTrainer::new()).collect();
    let mut models: Vec<Option<PredictiveModel>> = vars.iter().map(|_| None).collect();
    let mut train_ms: Vec<f64> = vec![0.0; vars.len()];
    let mut runs: Vec<usize> = vec![0; vars.len()];
    let mut fallback_chosen: Vec<usize> = vec![0; vars.len()];
    // Residuals (y − ŷ at prediction time) of the first variant, for the conformal interval.
    let mut predicted_y: Vec<Option<f64>> = vec![None; parts.len()];
    let mut residuals: Vec<f64> = Vec::new();
    let (mut covered, mut with_interval, mut width) = (0usize, 0usize, Vec::new());
    let mut sizes: Vec<f64> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    let mut next_end = 0;
    let mut scores = Scores::default();
    for &i in &order {
        let p = &parts[i];
        let now = p.start + WINDOWS.iter().copied().find(|w| *w as u64 == window).unwrap_or(0.0);
        while next_end < ended.len() && parts[ended[next_end]].end < now {
            let j = ended[next_end];
            let q = &parts[j];
            next_end += 1;
            sizes.push(q.n_true as f64);
            ratios.push(q.n_true as f64 / q.n_obs as f64);
            if let Some(yh) = predicted_y[j] {
                residuals.push((q.n_true as f64 / q.n_obs as f64).ln() - yh);
            }
            for (k, v) in vars.iter().enumerate() {
                let _ = trainers[k].push(q.x, q.n_obs, q.n_true, v.settings.max_samples());
                if let Some(job) = trainers[k].plan(&v.settings, window) {
                    let t0 = Instant::now();
                    if let Ok(m) = job.run() {
                        if matches!(m.regressor(), tweetoscope_model::predictive::Regressor::Fallback(_)) {
                            fallback_chosen[k] += 1;
                        }
                        models[k] = Some(m);
                    }
                    train_ms[k] += t0.elapsed().as_secs_f64() * 1e3;
                    runs[k] += 1;
                }
            }
        }
        if !p.scored {
            continue;
        }
        let truth = p.n_true as f64;
        let n = p.n_obs;
        for (k, v) in vars.iter().enumerate() {
            let pred = match &models[k] {
                Some(m) => m.predict(&p.x, n),
                None => fallback.predict(&p.x, n),
            };
            if k == 0 {
                let yh = match &models[k] {
                    Some(m) => m.predict_log_ratio(&p.x),
                    None => fallback.log_ratio(&p.x),
                };
                predicted_y[i] = Some(yh);
                let recent = &residuals[residuals.len().saturating_sub(1000)..];
                if let Ok(iv) = conformal_interval(recent, yh, n, 0.8) {
                    with_interval += 1;
                    if iv.low <= truth && truth <= iv.high {
                        covered += 1;
                    }
                    width.push(iv.high / iv.low);
                }
            }
            scores.add(v.name, are(pred, truth), p.n_true);
        }
        let nf = n as f64;
        scores.add("hawkes-course", are(p.hawkes_course, truth), p.n_true);
        scores.add("hawkes-data", are(p.hawkes_data, truth), p.n_true);
        scores.add("seismic", p.seismic.map_or(f64::INFINITY, |s| are(s, truth)), p.n_true);
        scores.add("seismic-capped", are(Fallback::Seismic { max_log_ratio: 20f64.ln() }.predict(&p.x, n), truth), p.n_true);
        scores.add("no-growth", are(nf, truth), p.n_true);
        let const_size = if sizes.is_empty() { fallback.predict(&p.x, n) } else { median(&sizes).max(nf) };
        scores.add("const-size", are(const_size, truth), p.n_true);
        let const_size_raw = if sizes.is_empty() { nf } else { median(&sizes) };
        scores.add("const-size-unclamped", are(const_size_raw, truth), p.n_true);
        let const_ratio = if ratios.is_empty() { fallback.predict(&p.x, n) } else { nf * median(&ratios) };
        scores.add("const-ratio", are(const_ratio, truth), p.n_true);
        scores.add("fallback", are(fallback.predict(&p.x, n), truth), p.n_true);
        for (name, fb) in [
            ("fb-seismic-cap2", Fallback::Seismic { max_log_ratio: 2f64.ln() }),
            ("fb-seismic-cap5", Fallback::Seismic { max_log_ratio: 5f64.ln() }),
            ("fb-ratio-1.5", Fallback::ConstantRatio { log_ratio: 1.5f64.ln() }),
            ("fb-ratio-2", Fallback::ConstantRatio { log_ratio: 2f64.ln() }),
        ] {
            scores.add(name, are(fb.predict(&p.x, n), truth), p.n_true);
        }
    }
    let mut notes = vec![format!("second half of the predictions (more training data): {}", scores.late_half())];
    for (k, v) in vars.iter().enumerate() {
        notes.push(format!(
            "{}: {} training runs, {:.1} ms per run, fallback chosen {} times, last model {}",
            v.name,
            runs[k],
            if runs[k] > 0 { train_ms[k] / runs[k] as f64 } else { 0.0 },
            fallback_chosen[k],
            models[k].as_ref().map_or("none".to_string(), |m| format!("{:?}", m.selection())),
        ));
    }
    notes.push(format!(
        "80% conformal interval ({}): coverage {:.3} over {} predictions, median high/low {:.2}",
        vars.first().map_or("-", |v| v.name),
        covered as f64 / with_interval.max(1) as f64,
        with_interval,
        median(&width)
    ));
    Ok((scores, notes))
}

fn print_scores(title: &str, scores: &Scores, buckets: bool) {
    println!("\n### {title}\n");
    println!("| predictor | count | median ARE | p90 ARE |");
    println!("|---|---:|---:|---:|");
    let mut rows: Vec<(&String, &Vec<(f64, usize)>)> = scores.rows.iter().collect();
    rows.sort_by(|a, b| {
        let ma = median(&a.1.iter().map(|r| r.0).collect::<Vec<_>>());
        let mb = median(&b.1.iter().map(|r| r.0).collect::<Vec<_>>());
        ma.total_cmp(&mb)
    });
    for (name, v) in &rows {
        let a: Vec<f64> = v.iter().map(|r| r.0).collect();
        println!("| {name} | {} | {:.3} | {:.3} |", a.len(), median(&a), quantile(&a, 0.9));
    }
    if buckets {
        let edges = [(0usize, 50usize, "<50"), (50, 200, "50-200"), (200, 1000, "200-1000"), (1000, usize::MAX, ">1000")];
        print!("\nmedian ARE by final size | predictor");
        for (_, _, l) in edges {
            print!(" | {l}");
        }
        println!();
        for (name, v) in &rows {
            print!("| {name}");
            for (lo, hi, _) in edges {
                let a: Vec<f64> = v.iter().filter(|r| r.1 >= lo && r.1 < hi).map(|r| r.0).collect();
                if a.is_empty() {
                    print!(" | -");
                } else {
                    print!(" | {:.3} (n={})", median(&a), a.len());
                }
            }
            println!(" |");
        }
    }
}

fn timing(cascades: &[Cascade]) -> Res<()> {
    let parts = partials(cascades, 600.0, 2, 2)?;
    println!("\n### Training time per model (median of 3 runs) and serialized size\n");
    println!("| learner | samples | ms | JSON bytes |");
    println!("|---|---:|---:|---:|");
    let base = LearnerSettings::default();
    let learners = [
        ("gbdt-abs (grid 2x2, 300 trees)", base.clone()),
        ("gbdt-sq (grid 2x2, 300 trees)", base.clone().with_kind(LearnerKind::Boosted(Loss::Squared))),
        (
            "rf (smartcore, grid 2x2, 100 trees)",
            base.clone().with_kind(LearnerKind::Forest).with_grid(vec![4, 8], vec![5, 20], 300, 0.05)?,
        ),
    ];
    for n in [100usize, 1000, 5000] {
        // Repeat the partials (with a tiny deterministic jitter) to reach n samples.
        let mut x = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        let mut s = 3u64;
        for i in 0..n {
            let p = &parts[i % parts.len()];
            let mut xi = p.x;
            if i >= parts.len() {
                xi[0] += 1e-3 * uniform(&mut s);
            }
            x.push(xi);
            y.push((p.n_true as f64 / p.n_obs as f64).ln());
        }
        for (name, l) in &learners {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..3 {
                let t0 = Instant::now();
                let m = PredictiveModel::train(&x, &y, l, 1)?;
                times.push(t0.elapsed().as_secs_f64() * 1e3);
                bytes = serde_json::to_string(&m)?.len();
            }
            println!("| {name} | {n} | {:.1} | {bytes} |", median(&times));
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let shared = opt("--shared").unwrap_or_else(|| "/work/shared/data".into());
    let news = opt("--news-index").unwrap_or_else(|| "/work/main/tests/data/tweetoscope-news-index/news-index.csv".into());
    let sets = opt("--data").unwrap_or_else(|| "bundled,auspol,sim".into());
    let n_sim: usize = opt("--sim-cascades").map_or(Ok(3000), |s| s.parse())?;
    let min_size: usize = opt("--min-size").map_or(Ok(10), |s| s.parse())?;
    let train_min_size: usize = opt("--train-min-size").map_or(Ok(min_size), |s| s.parse())?;
    let seed: u64 = opt("--seed").map_or(Ok(1), |s| s.parse())?;
    let fallback = match opt("--fallback").as_deref() {
        None => Fallback::default(),
        Some("no-growth") => Fallback::NoGrowth,
        Some(s) if s.starts_with("seismic") => {
            Fallback::Seismic { max_log_ratio: s.strip_prefix("seismic").unwrap_or("").parse::<f64>().unwrap_or(20.0).ln() }
        }
        Some(r) => Fallback::ConstantRatio { log_ratio: r.parse::<f64>()?.ln() },
    };
    let min_samples: usize = opt("--min-samples").map_or(Ok(10), |s| s.parse())?;
    let every: usize = opt("--retrain-every").map_or(Ok(5), |s| s.parse())?;
    let vars = variants(opt("--variants").as_deref(), min_samples, every, fallback)?;
    println!("eval_predictive: data {sets}, min size {min_size} (training from {train_min_size}), seed {seed}, fallback {fallback:?}, first model at {min_samples} samples");
    if args.iter().any(|a| a == "--timing") {
        return timing(&load_sim(&news, 2000, seed)?);
    }
    for set in sets.split(',') {
        let (cascades, unselected) = match set {
            "bundled" => (load_bundled(&shared)?, false),
            "auspol" => (load_auspol(&shared, seed)?, true),
            "sim" => (load_sim(&news, n_sim, seed)?, true),
            other => return Err(format!("unknown data set {other}").into()),
        };
        for t_obs in WINDOWS {
            let t0 = Instant::now();
            let parts = partials(&cascades, t_obs, min_size, train_min_size)?;
            let shrunk = parts.iter().filter(|p| p.n_true < p.n_obs).count();
            let trained_only = parts.iter().filter(|p| !p.scored).count();
            if let Some(dir) = opt("--dump") {
                // Samples in the order their cascades end: window, end, n_obs, n_true, features.
                let mut ended: Vec<&Partial> = parts.iter().collect();
                ended.sort_by(|a, b| a.end.total_cmp(&b.end));
                let mut text = String::from("end,n_obs,n_true");
                for name in tweetoscope_model::predictive::FEATURE_NAMES {
                    text.push(',');
                    text.push_str(name);
                }
                text.push('\n');
                for p in ended {
                    text.push_str(&format!("{},{},{}", p.end, p.n_obs, p.n_true));
                    for v in p.x {
                        text.push_str(&format!(",{v}"));
                    }
                    text.push('\n');
                }
                std::fs::write(format!("{dir}/{set}-{t_obs}.csv"), text)?;
            }
            let (scores, notes) = prequential(&parts, &vars, t_obs as u64, fallback)?;
            print_scores(
                &format!(
                    "{set} ({} cascades), T = {t_obs} s: {} partials with n ≥ {min_size} predicted, {trained_only} smaller ones (n ≥ {train_min_size}) only train, {shrunk} shrunk",
                    cascades.len(),
                    parts.len() - trained_only
                ),
                &scores,
                unselected,
            );
            for n in notes {
                println!("- {n}");
            }
            println!("- {:.1} s", t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
