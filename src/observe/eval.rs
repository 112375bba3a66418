//! The accuracy evaluation of `tweetoscope eval`: every model of a run and honest baselines,
//! on the same partial cascades, from the run's `stats` records alone.
//!
//! The run's models (the default prediction, plain Hawkes, the course forest, SEISMIC plain
//! and corrected) are read from each record. The baselines are what a user would try
//! instead, fitted prequentially on the same records: a prediction made at event time t
//! uses only the cascades of its window that ended before t (`ended_at < predicted_at`),
//! which gives them slightly fresher information than the pipeline's own models (those are
//! used `model_delay` after they were trained):
//! - **no growth**: N = n (the cascade is over);
//! - **constant size**: N = max(n, median true size);
//! - **constant ratio**: N = n · median(N_true / n);
//! - **log n alone**: N = n · e^{median y}, y = ln(N_true / n), over the training cascades
//!   whose ln n falls in the same of eight equal-count bins.
//!
//! Before a window's first ended cascade the baselines predict what the pipeline does
//! without a model (SEISMIC, at least n and at most `fallback_max_ratio` × n). An infinite
//! SEISMIC prediction counts as an infinite error.

use serde::Serialize;

use crate::io::schema::StatRecordJson;
use crate::Time;

/// Final-size buckets of the unselected populations' breakdown.
pub const BUCKETS: [(&str, usize, usize); 4] =
    [("< 50", 0, 50), ("50–200", 50, 200), ("200–1,000", 200, 1000), ("> 1,000", 1000, usize::MAX)];

/// The accuracy of one model on one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAccuracy {
    /// The model's name (as in the other outputs).
    pub model: &'static str,
    /// Predictions scored.
    pub count: usize,
    /// Median ARE (infinite when more than half are).
    pub median: f64,
    /// 90th percentile of ARE.
    pub p90: f64,
}

/// One window's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowEval {
    /// The window.
    pub t_obs: Time,
    /// Every model and baseline on all the window's predictions.
    pub all: Vec<ModelAccuracy>,
    /// The same per final-size bucket (label, models), when asked for.
    pub buckets: Vec<(&'static str, Vec<ModelAccuracy>)>,
    /// Share of true sizes inside the default prediction's interval, and over how many.
    pub interval: Option<(f64, usize)>,
}

/// The models, in table order.
pub const MODELS: [&str; 9] =
    ["default", "hawkes", "course", "seismic", "seismic_corrected", "no_growth", "constant_size", "constant_ratio", "log_n"];

/// The ARE of `pred` for `truth` (∞ for an infinite or missing prediction).
fn are(pred: Option<f64>, truth: f64) -> f64 {
    match pred {
        Some(p) if p.is_finite() => (p - truth).abs() / truth,
        _ => f64::INFINITY,
    }
}

/// The value at quantile `q` of sorted `v`, as the run summary computes it (linear
/// interpolation; infinite when it falls among infinite values).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = q * (v.len() - 1) as f64;
    let (lo, hi) = (v[h.floor() as usize], v[h.ceil() as usize]);
    if hi.is_infinite() {
        return hi;
    }
    lo + (h - h.floor()) * (hi - lo)
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k == 0 {
        f64::NAN
    } else if k % 2 == 1 {
        v[k / 2]
    } else {
        0.5 * (v[k / 2 - 1] + v[k / 2])
    }
}

/// The baselines fitted on the training cascades of a window (their (n_obs, n_true)).
#[derive(Debug, Clone, Default)]
struct Baselines {
    /// Median true size.
    size: f64,
    /// Median ln(N_true / n).
    ratio: f64,
    /// Upper edges of the ln n bins and the median y in each.
    bins: Vec<(f64, f64)>,
}

impl Baselines {
    fn fit(training: &[(usize, usize)]) -> Self {
        let size = median_of(training.iter().map(|(_, t)| *t as f64).collect());
        let ratio = median_of(training.iter().map(|(n, t)| (*t as f64 / *n as f64).ln()).collect());
        let mut by_n: Vec<(f64, f64)> = training.iter().map(|(n, t)| ((*n as f64).ln(), (*t as f64 / *n as f64).ln())).collect();
        by_n.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let k = 8.min(by_n.len()).max(1);
        let bins = (0..k)
            .map(|j| {
                let chunk = &by_n[j * by_n.len() / k..(j + 1) * by_n.len() / k];
                let edge = chunk.last().map_or(f64::INFINITY, |c| c.0);
                (edge, median_of(chunk.iter().map(|c| c.1).collect()))
            })
            .collect();
        Self { size, ratio, bins }
    }

    fn log_n(&self, n: usize) -> f64 {
        let ln = (n as f64).ln();
        let y = self.bins.iter().find(|(edge, _)| ln <= *edge).or(self.bins.last()).map_or(0.0, |b| b.1);
        n as f64 * y.max(0.0).exp()
    }
}

/// Every model's and baseline's prediction for each record, in the order of `MODELS`.
fn predictions(window: &[&StatRecordJson], fallback_max_ratio: f64) -> Vec<[Option<f64>; 9]> {
    // Training cascades in the order they ended; predictions in the order they were made.
    let mut ended: Vec<&StatRecordJson> = window.to_vec();
    ended.sort_by_key(|s| (s.ended_at, s.cid.clone()));
    let mut order: Vec<usize> = (0..window.len()).collect();
    order.sort_by_key(|&i| (window[i].predicted_at, window[i].cid.clone()));
    let mut out = vec![[None; 9]; window.len()];
    let (mut next, mut training, mut fitted): (usize, Vec<(usize, usize)>, Option<Baselines>) = (0, Vec::new(), None);
    for i in order {
        let s = window[i];
        let before = training.len();
        while next < ended.len() && ended[next].ended_at < s.predicted_at {
            training.push((ended[next].n_obs.max(1), ended[next].n_true));
            next += 1;
        }
        // Refit when the training set grew (by 5 % at most between refits on long runs).
        if training.len() > before && fitted.as_ref().is_none_or(|_| training.len() as f64 >= 1.05 * before as f64 || before < 20)
        {
            fitted = Some(Baselines::fit(&training));
        }
        let n = s.n_obs.max(1) as f64;
        let fallback = s.n_seismic.map_or(n, |x| if x.is_finite() { x } else { f64::INFINITY }).clamp(n, fallback_max_ratio * n);
        let b = fitted.as_ref();
        out[i] = [
            Some(s.n_pred),
            Some(s.n_hawkes),
            Some(s.n_course),
            Some(s.n_seismic.unwrap_or(f64::INFINITY)),
            s.n_seismic_corrected,
            Some(n),
            Some(b.map_or(fallback, |b| b.size.max(n))),
            Some(b.map_or(fallback, |b| n * b.ratio.max(0.0).exp())),
            Some(b.map_or(fallback, |b| b.log_n(s.n_obs.max(1)))),
        ];
    }
    out
}

/// The accuracy of each model on the records selected by `keep`.
fn accuracy(
    window: &[&StatRecordJson],
    preds: &[[Option<f64>; 9]],
    keep: impl Fn(&StatRecordJson) -> bool,
) -> Vec<ModelAccuracy> {
    MODELS
        .iter()
        .enumerate()
        .map(|(m, model)| {
            let mut ares: Vec<f64> = window
                .iter()
                .zip(preds)
                .filter(|(s, _)| keep(s))
                .filter(|(_, p)| *model != "seismic_corrected" || p[m].is_some())
                .map(|(s, p)| are(p[m], s.n_true as f64))
                .collect();
            ares.sort_by(f64::total_cmp);
            ModelAccuracy { model, count: ares.len(), median: quantile(&ares, 0.5), p90: quantile(&ares, 0.9) }
        })
        .collect()
}

/// Evaluates a run's stats records per window (with the final-size breakdown when
/// `buckets`), the baselines using the pipeline's fallback cap `fallback_max_ratio`.
pub fn evaluate(stats: &[StatRecordJson], buckets: bool, fallback_max_ratio: f64) -> Vec<WindowEval> {
    let mut windows: Vec<Time> = stats.iter().map(|s| s.t_obs).collect();
    windows.sort_unstable();
    windows.dedup();
    windows
        .into_iter()
        .map(|t_obs| {
            let window: Vec<&StatRecordJson> = stats.iter().filter(|s| s.t_obs == t_obs).collect();
            let preds = predictions(&window, fallback_max_ratio);
            let with: Vec<&&StatRecordJson> = window.iter().filter(|s| s.interval.is_some()).collect();
            let covered =
                with.iter().filter(|s| s.interval.is_some_and(|i| i.low <= s.n_true as f64 && s.n_true as f64 <= i.high)).count();
            WindowEval {
                t_obs,
                all: accuracy(&window, &preds, |_| true),
                buckets: if buckets {
                    BUCKETS
                        .iter()
                        .map(|(label, lo, hi)| (*label, accuracy(&window, &preds, |s| s.n_true >= *lo && s.n_true < *hi)))
                        .collect()
                } else {
                    Vec::new()
                },
                interval: (!with.is_empty()).then(|| (covered as f64 / with.len() as f64, with.len())),
            }
        })
        .collect()
}

/// A cell: median (p90) or "—" for nothing scored.
fn cell(a: &ModelAccuracy) -> String {
    let f = |x: f64| if x.is_infinite() { "∞".to_owned() } else { format!("{x:.3}") };
    if a.count == 0 {
        "—".to_owned()
    } else {
        format!("{} ({})", f(a.median), f(a.p90))
    }
}

/// The evaluation of one data set as Markdown: per window, median (p90) ARE and the count of
/// predictions per model, then the final-size buckets.
pub fn markdown(name: &str, windows: &[WindowEval]) -> String {
    let mut s = format!("### {name}\n\nmedian (p90) ARE, count of predictions\n\n| model |");
    for w in windows {
        s.push_str(&format!(" {} s |", w.t_obs));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(windows.len()));
    s.push('\n');
    for (m, model) in MODELS.iter().enumerate() {
        s.push_str(&format!("| {model} |"));
        for w in windows {
            s.push_str(&format!(" {} n={} |", cell(&w.all[m]), w.all[m].count));
        }
        s.push('\n');
    }
    s.push_str("| interval coverage |");
    for w in windows {
        match w.interval {
            Some((c, k)) => s.push_str(&format!(" {:.0} % of {k} |", 100.0 * c)),
            None => s.push_str(" — |"),
        }
    }
    s.push('\n');
    if windows.iter().any(|w| !w.buckets.is_empty()) {
        for w in windows {
            s.push_str(&format!("\nfinal-size buckets at {} s: median ARE (count)\n\n| model |", w.t_obs));
            for (label, _) in &w.buckets {
                s.push_str(&format!(" {label} |"));
            }
            s.push_str("\n|---|");
            s.push_str(&"---|".repeat(w.buckets.len()));
            s.push('\n');
            for (m, model) in MODELS.iter().enumerate() {
                s.push_str(&format!("| {model} |"));
                for (_, rows) in &w.buckets {
                    let a = &rows[m];
                    let median = if a.count == 0 {
                        "—".into()
                    } else if a.median.is_infinite() {
                        "∞".into()
                    } else {
                        format!("{:.3}", a.median)
                    };
                    s.push_str(&format!(" {median} ({}) |", a.count));
                }
                s.push('\n');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::schema::{IntervalRecord, RecordType};
    use crate::records::Predictor;

    fn stat(cid: u64, n_obs: usize, n_true: usize, predicted_at: Time, ended_at: Time) -> StatRecordJson {
        StatRecordJson {
            kind: RecordType::Stat,
            cid: cid.to_string(),
            t_obs: 600,
            n_obs,
            n_true,
            predicted_at,
            ended_at,
            n_pred: n_true as f64,
            are: 0.0,
            predictor: Predictor::Learned,
            interval: Some(IntervalRecord { low: n_obs as f64, high: 2.0 * n_true as f64 }),
            n_hawkes: 2.0 * n_true as f64,
            are_hawkes: 1.0,
            n_course: n_true as f64,
            are_course: 0.0,
            n_seismic: None,
            are_seismic: None,
            n_seismic_corrected: None,
            are_seismic_corrected: None,
            omega: 1.0,
            model_samples: 0,
        }
    }

    #[test]
    fn baselines_only_see_cascades_that_ended_before_the_prediction() {
        // Every cascade doubles; cascade 1 ends before 2 and 3 are predicted.
        let stats = vec![stat(1, 10, 20, 100, 200), stat(2, 30, 60, 300, 400), stat(3, 5, 10, 250, 500)];
        let w = &evaluate(&stats, false, 5.0)[0];
        let by = |m: &str| w.all.iter().find(|a| a.model == m).unwrap().clone();
        assert_eq!(by("default").median, 0.0);
        assert_eq!(by("hawkes").median, 1.0);
        // No growth is 50 % off on every cascade.
        assert_eq!(by("no_growth").median, 0.5);
        // Cascade 1 had no training cascade: SEISMIC is missing, the fallback is n (ARE 0.5).
        // Cascades 2 and 3 learned "×2" (ratio) from cascade 1: exact.
        assert_eq!(by("constant_ratio").median, 0.0);
        assert!((by("constant_ratio").p90 - 0.4).abs() < 1e-12, "the 90 % point between 0 and 0.5");
        // Constant size 20: cascade 2 (true 60) gets max(30, 20), 0.5 off; cascade 3 (true 10)
        // gets 20, 1.0 off.
        assert_eq!(by("constant_size").median, 0.5);
        assert!((by("constant_size").p90 - 0.9).abs() < 1e-12);
        assert_eq!(by("seismic").median, f64::INFINITY, "no SEISMIC prediction counts as infinite");
        assert_eq!(w.interval, Some((1.0, 3)));
    }

    #[test]
    fn buckets_split_by_final_size_and_the_table_has_every_model() {
        let stats = vec![stat(1, 10, 20, 100, 200), stat(2, 10, 500, 300, 400), stat(3, 10, 5000, 500, 600)];
        let w = evaluate(&stats, true, 5.0);
        assert_eq!(w[0].buckets.iter().map(|(_, r)| r[0].count).collect::<Vec<_>>(), vec![1, 0, 1, 1]);
        let md = markdown("test", &w);
        for m in MODELS {
            assert!(md.contains(&format!("| {m} |")), "{md}");
        }
        assert!(md.contains("< 50") && md.contains("interval coverage"), "{md}");
    }
}
