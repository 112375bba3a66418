//! `--report DIR`: a post-processing step that reads the JSON-lines outputs of a run
//! (`stats.jsonl`, `cascade_properties.jsonl`) and writes `DIR/report.md` with SVG plots.
//!
//! Per observation window: the number of cascades with a known true size, the ARE mean,
//! median and 90th percentile of every model (the default prediction, plain Hawkes, the course
//! forest, SEISMIC plain and corrected; infinite predictions counted apart), the coverage of
//! the default prediction's intervals, the share of fits at a bound, a plain verdict on
//! whether the default prediction beats plain Hawkes and SEISMIC on median ARE, the
//! comparison with honest baselines (`observe::eval`) and, on simulated data (`truth.csv`),
//! the recovery of p, β and n*.
//!
//! Plots use `plotters`' SVG backend without its font features: the backend writes `<text>`
//! elements that the viewer renders with its own fonts, and plotters' built-in text-size
//! estimate is enough for the layout, so no font file or system font library is needed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use tweetoscope_model::stats::{quantile_sorted, Summary};

use crate::io::schema::{ParametersRecord, StatRecordJson};
use crate::Time;

/// Errors of the report builder.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of an input file could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong, for the error line.
        message: String,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, for the error line.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_owned(), source }
}

/// One `stats.jsonl` record (the schema every writer uses).
pub type StatRow = StatRecordJson;

/// One `cascade_properties.jsonl` parameters record.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRow {
    /// Cascade id.
    pub cid: String,
    /// Window (older outputs lack it: then matched to a stats record by `cid` and `n_obs`).
    pub t_obs: Option<Time>,
    /// Events observed.
    pub n_obs: usize,
    /// Estimated p.
    pub p: f64,
    /// Estimated β.
    pub beta: f64,
    /// Estimated n*.
    pub n_star: f64,
    /// Whether the fit succeeded.
    pub fit_ok: bool,
    /// Whether the optimum lies on a bound (absent in older outputs).
    pub at_bound: Option<bool>,
}

/// One row of `truth.csv` (written by `tweetoscope simulate`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthRow {
    /// True p.
    pub p: f64,
    /// True β.
    pub beta: f64,
    /// True n*.
    pub n_star: f64,
}

/// The models compared, by the names every output uses.
pub const MODELS: [&str; 5] = ["default", "hawkes", "course", "seismic", "seismic_corrected"];

/// Accuracy of one model in one window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModelStats {
    /// ARE summary over finite predictions.
    pub are: Summary,
    /// Predictions that were infinite (SEISMIC's supercritical cascades), not in `are`.
    pub infinite: usize,
}

/// Median relative error of the estimated parameters against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Recovery {
    /// Fits matched with a truth row.
    pub count: usize,
    /// Median |p̂ − p| / p.
    pub p: f64,
    /// Median |β̂ − β| / β.
    pub beta: f64,
    /// Median |n̂* − n*| / n*.
    pub n_star: f64,
}

/// Everything reported for one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowReport {
    /// The window.
    pub t_obs: Time,
    /// Predictions with a known true size.
    pub cascades: usize,
    /// Per model, in the order of [`MODELS`].
    pub models: [ModelStats; 5],
    /// Share of the true sizes inside the default prediction's interval, and over how many.
    pub interval: Option<(f64, usize)>,
    /// Parameter records of the window.
    pub fits: usize,
    /// Successful fits.
    pub fits_ok: usize,
    /// Successful fits at a bound, when the records say.
    pub at_bound: Option<usize>,
    /// Parameter recovery, on simulated data.
    pub recovery: Option<Recovery>,
}

impl WindowReport {
    /// A plain sentence: does the default prediction beat plain Hawkes and SEISMIC on median
    /// ARE?
    pub fn verdict(&self) -> String {
        let [default, hawkes, course, seismic, _] = &self.models;
        if default.are.count == 0 {
            return format!("T_obs = {}: no prediction with a known true size.", self.t_obs);
        }
        let cmp = |other: &ModelStats, name: &str| -> (bool, String) {
            if other.are.count == 0 {
                return (true, format!("{name} has no finite prediction"));
            }
            let (a, b) = (default.are.median, other.are.median);
            let word = if a < b {
                "beats"
            } else if a == b {
                "ties with"
            } else {
                "does NOT beat"
            };
            (a < b, format!("{word} {name} ({a:.3} vs {b:.3})"))
        };
        let (beats_h, h) = cmp(hawkes, "plain Hawkes");
        let (beats_s, s) = cmp(seismic, "SEISMIC");
        let (_, c) = cmp(course, "the course forest");
        let conclusion = if beats_h && beats_s {
            "The default prediction is better than both on median ARE."
        } else {
            "The default prediction is NOT better than both on median ARE in this window."
        };
        format!("T_obs = {}: on median ARE, the default prediction {h}, {s} and {c}. {conclusion}", self.t_obs)
    }
}

fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l.to_owned())).collect())
}

/// Reads `stats.jsonl` (records of another type are skipped).
pub fn read_stats(path: &Path) -> Result<Vec<StatRow>, ReportError> {
    read_records(path, "stat")
}

/// The records of type `kind` of a JSON-lines output (others are skipped).
fn read_records<T: serde::de::DeserializeOwned>(path: &Path, kind: &str) -> Result<Vec<T>, ReportError> {
    let mut rows = Vec::new();
    for (line, text) in read_lines(path)? {
        let bad = |e: serde_json::Error| ReportError::Parse { path: path.to_owned(), line, message: e.to_string() };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        if v.get("type").and_then(|t| t.as_str()) != Some(kind) {
            continue;
        }
        rows.push(serde_json::from_value(v).map_err(bad)?);
    }
    Ok(rows)
}

/// Reads the `parameters` records of `cascade_properties.jsonl`.
pub fn read_parameters(path: &Path) -> Result<Vec<ParamRow>, ReportError> {
    let records: Vec<ParametersRecord> = read_records(path, "parameters")?;
    Ok(records
        .into_iter()
        .map(|r| ParamRow {
            cid: r.cid,
            t_obs: Some(r.t_obs),
            n_obs: r.n_obs,
            p: r.params[0],
            beta: r.params[1],
            n_star: r.n_star,
            fit_ok: r.fit_ok,
            at_bound: Some(r.at_bound),
        })
        .collect())
}

/// Reads `truth.csv` (`cascade,p,beta,n_star,size`), keyed by cascade id.
pub fn read_truth(path: &Path) -> Result<HashMap<String, TruthRow>, ReportError> {
    let mut out = HashMap::new();
    for (line, text) in read_lines(path)? {
        let f: Vec<&str> = text.split(',').map(str::trim).collect();
        if line == 1 && f.first().is_some_and(|h| h.parse::<f64>().is_err()) {
            continue; // header
        }
        let bad = || ReportError::Parse { path: path.to_owned(), line, message: "expected cascade,p,beta,n_star,…".into() };
        if f.len() < 4 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
        out.insert(f[0].to_owned(), TruthRow { p: num(f[1])?, beta: num(f[2])?, n_star: num(f[3])? });
    }
    Ok(out)
}

fn rel_err(est: f64, truth: f64) -> Option<f64> {
    tweetoscope_model::stats::are(est, truth)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    quantile_sorted(&v, 0.5)
}

/// Builds the per-window figures.
pub fn build(stats: &[StatRow], params: &[ParamRow], truth: Option<&HashMap<String, TruthRow>>) -> Vec<WindowReport> {
    // Window of a parameter record without T_obs: the stats record of the same cascade and
    // number of observed events.
    let by_obs: HashMap<(&str, usize), Time> = stats.iter().map(|s| ((s.cid.as_str(), s.n_obs), s.t_obs)).collect();
    let mut windows: BTreeMap<Time, (Vec<&StatRow>, Vec<&ParamRow>)> = BTreeMap::new();
    for s in stats {
        windows.entry(s.t_obs).or_default().0.push(s);
    }
    for p in params {
        if let Some(t) = p.t_obs.or_else(|| by_obs.get(&(p.cid.as_str(), p.n_obs)).copied()) {
            windows.entry(t).or_default().1.push(p);
        }
    }
    windows
        .into_iter()
        .map(|(t_obs, (rows, prows))| {
            let all = |f: fn(&StatRow) -> f64| ModelStats {
                are: Summary::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>()),
                infinite: 0,
            };
            let some = |f: fn(&StatRow) -> Option<f64>| {
                let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
                ModelStats { are: Summary::of(&v), infinite: rows.len() - v.len() }
            };
            let models = [
                all(|r| r.are),
                all(|r| r.are_hawkes),
                all(|r| r.are_course),
                some(|r| r.are_seismic),
                some(|r| r.are_seismic_corrected),
            ];
            let with: Vec<&&StatRow> = rows.iter().filter(|r| r.interval.is_some()).collect();
            let covered =
                with.iter().filter(|r| r.interval.is_some_and(|i| i.low <= r.n_true as f64 && r.n_true as f64 <= i.high)).count();
            let interval = (!with.is_empty()).then(|| (covered as f64 / with.len() as f64, with.len()));
            let ok: Vec<&&ParamRow> = prows.iter().filter(|p| p.fit_ok).collect();
            let at_bound = if ok.iter().all(|p| p.at_bound.is_some()) {
                Some(ok.iter().filter(|p| p.at_bound == Some(true)).count())
            } else {
                None
            };
            let recovery = truth.map(|truth| {
                let matched: Vec<(&ParamRow, &TruthRow)> =
                    ok.iter().filter_map(|p| truth.get(&p.cid).map(|t| (**p, t))).collect();
                Recovery {
                    count: matched.len(),
                    p: median(matched.iter().filter_map(|(e, t)| rel_err(e.p, t.p)).collect()),
                    beta: median(matched.iter().filter_map(|(e, t)| rel_err(e.beta, t.beta)).collect()),
                    n_star: median(matched.iter().filter_map(|(e, t)| rel_err(e.n_star, t.n_star)).collect()),
                }
            });
            WindowReport {
                t_obs,
                cascades: rows.len(),
                models,
                interval,
                fits: prows.len(),
                fits_ok: ok.len(),
                at_bound,
                recovery,
            }
        })
        .collect()
}

/// The markdown of the report (plots are linked by file name, relative to the report).
pub fn markdown(windows: &[WindowReport], baselines: &str, plots: &Plots, source: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Tweetoscope accuracy report\n");
    let _ = writeln!(md, "Outputs read from `{source}`. ARE = |predicted − true| / true final size; cascades = predictions");
    let _ = writeln!(md, "whose true size is known. SEISMIC predictions that are infinite (supercritical cascade) are");
    let _ = writeln!(md, "not in its ARE figures nor in its `cascades` count: they are counted in the `infinite` column.");
    let _ = writeln!(md, "Models: `default` is the run's default prediction (the learned layer, or the course forest in");
    let _ = writeln!(md, "course mode), `hawkes` plain Hawkes, `course` Hawkes + the course's random forest, `seismic` the");
    let _ = writeln!(md, "SEISMIC baseline, `seismic_corrected` the paper's N = R + 1 + α·F/(1 − γ·p̂), (α, γ) learned per");
    let _ = writeln!(md, "window from the cascades that had ended before each prediction; its `infinite` column also counts");
    let _ = writeln!(md, "the predictions made before the window had a correction.\n");
    if windows.is_empty() {
        let _ = writeln!(md, "**No prediction with a known true size was made: there is nothing to report.**\n");
    }
    let _ = writeln!(md, "## ARE per window and model\n");
    let _ = writeln!(md, "| T_obs | model | cascades | ARE mean | ARE median | ARE p90 | infinite |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for w in windows {
        for (name, m) in MODELS.iter().zip(&w.models) {
            let _ = writeln!(
                md,
                "| {} | {name} | {} | {:.3} | {:.3} | {:.3} | {} |",
                w.t_obs, m.are.count, m.are.mean, m.are.median, m.are.p90, m.infinite
            );
        }
    }
    let _ = writeln!(md, "\n## Prediction intervals\n");
    let _ = writeln!(md, "| T_obs | predictions with an interval | true size inside |");
    let _ = writeln!(md, "|---:|---:|---:|");
    for w in windows {
        match w.interval {
            Some((c, k)) => {
                let _ = writeln!(md, "| {} | {k} | {:.0} % |", w.t_obs, 100.0 * c);
            }
            None => {
                let _ = writeln!(md, "| {} | 0 | — |", w.t_obs);
            }
        }
    }
    let _ = writeln!(md, "\n## Verdict\n");
    for w in windows {
        let _ = writeln!(md, "- {}", w.verdict());
    }
    let _ = writeln!(md, "\n## Against honest baselines\n");
    let _ = writeln!(md, "Baselines fitted prequentially on the same records (a prediction uses the cascades of its window");
    let _ =
        writeln!(md, "that ended before it): no growth (N = n), a constant size, a constant ratio, a model on log n alone.\n");
    md.push_str(baselines);
    let _ = writeln!(md, "\n## Fits\n");
    let _ = writeln!(md, "| T_obs | fits | fit ok | at a bound | share at a bound |");
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
    for w in windows {
        let (n, share) = match w.at_bound {
            Some(b) if w.fits_ok > 0 => (b.to_string(), format!("{:.1}%", 100.0 * b as f64 / w.fits_ok as f64)),
            Some(b) => (b.to_string(), "–".into()),
            None => ("n/a".into(), "n/a".into()),
        };
        let _ = writeln!(md, "| {} | {} | {} | {n} | {share} |", w.t_obs, w.fits, w.fits_ok);
    }
    if windows.iter().any(|w| w.recovery.is_some()) {
        let _ = writeln!(md, "\n## Parameter recovery (simulated data)\n");
        let _ = writeln!(md, "Median relative error of the estimated parameters against the simulation's truth.\n");
        let _ = writeln!(md, "| T_obs | fits matched | p | β | n* |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        for w in windows {
            if let Some(r) = &w.recovery {
                let _ = writeln!(md, "| {} | {} | {:.3} | {:.3} | {:.3} |", w.t_obs, r.count, r.p, r.beta, r.n_star);
            }
        }
    }
    let _ = writeln!(md, "\n## Plots\n");
    for (title, file) in &plots.files {
        let _ = writeln!(md, "- [{title}]({file})");
    }
    md
}

/// The plot files written, as (title, file name relative to the report folder).
#[derive(Debug, Clone, Default)]
pub struct Plots {
    /// Title and file name of every plot.
    pub files: Vec<(String, String)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Plot { path: path.to_owned(), message }
}

/// Log-scale bounds covering positive `values` (with a margin), at least `floor`.
fn log_bounds(values: impl Iterator<Item = f64>, floor: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        let v = v.max(floor);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (floor, 1.0);
    }
    if hi <= lo {
        hi = lo * 10.0;
    }
    (lo / 1.5, hi * 1.5)
}

/// Draws `series` (name, points) as lines or points on log or linear axes.
struct Chart<'a> {
    path: &'a Path,
    caption: String,
    x_desc: &'a str,
    y_desc: &'a str,
    log_x: bool,
    log_y: bool,
    points: bool,
    diagonal: bool,
}

impl Chart<'_> {
    fn draw(&self, series: &[(String, Vec<(f64, f64)>)]) -> Result<(), ReportError> {
        let e = plot_err(self.path);
        let floor = 1e-3;
        let all = || series.iter().flat_map(|(_, s)| s.iter().copied());
        let bounds = |log: bool, v: Vec<f64>| -> (f64, f64) {
            if log {
                log_bounds(v.into_iter(), floor)
            } else {
                let lo = v.iter().copied().filter(|x| x.is_finite()).fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().filter(|x| x.is_finite()).fold(f64::NEG_INFINITY, f64::max);
                if lo.is_finite() && hi > lo {
                    (lo, hi + (hi - lo) * 0.05)
                } else if lo.is_finite() {
                    (lo - 1.0, lo + 1.0)
                } else {
                    (0.0, 1.0)
                }
            }
        };
        let (mut x0, mut x1) = bounds(self.log_x, all().map(|p| p.0).collect());
        let (mut y0, mut y1) = bounds(self.log_y, all().map(|p| p.1).collect());
        if self.diagonal {
            (x0, x1) = (x0.min(y0), x1.max(y1));
            (y0, y1) = (x0, x1);
        }
        let clamp = |log: bool, v: f64| if log { v.max(floor) } else { v };
        let root = SVGBackend::new(self.path, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(&self.caption, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(70);
        // The four axis kinds are distinct types: one macro body for all.
        macro_rules! body {
            ($xr:expr, $yr:expr) => {{
                let mut chart = builder.build_cartesian_2d($xr, $yr).map_err(|x| e(x.to_string()))?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc(self.y_desc)
                    .x_label_formatter(&|v| tick(*v))
                    .y_label_formatter(&|v| tick(*v))
                    .draw()
                    .map_err(|x| e(x.to_string()))?;
                if self.diagonal {
                    chart
                        .draw_series(LineSeries::new([(x0, x0), (x1, x1)], BLACK.mix(0.5)))
                        .map_err(|x| e(x.to_string()))?
                        .label("y = x")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
                }
                for (i, (name, pts)) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let pts: Vec<(f64, f64)> = pts
                        .iter()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .map(|&(x, y)| (clamp(self.log_x, x), clamp(self.log_y, y)))
                        .collect();
                    let drawn = if self.points {
                        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.mix(0.6).filled())))
                    } else {
                        chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    };
                    drawn
                        .map_err(|x| e(x.to_string()))?
                        .label(name.as_str())
                        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|x| e(x.to_string()))?;
            }};
        }
        match (self.log_x, self.log_y) {
            (true, true) => body!((x0..x1).log_scale(), (y0..y1).log_scale()),
            (true, false) => body!((x0..x1).log_scale(), y0..y1),
            (false, true) => body!(x0..x1, (y0..y1).log_scale()),
            (false, false) => body!(x0..x1, y0..y1),
        }
        root.present().map_err(|x| e(x.to_string()))?;
        Ok(())
    }
}

/// An axis tick: at most three significant digits, thousands as k and millions as M (plotters
/// prints the raw float: `0.30000000000000004`, `1000000.0`).
fn tick(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e6 {
        (v / 1e6, " M")
    } else if a >= 1e3 {
        (v / 1e3, " k")
    } else {
        (v, "")
    };
    let digits = match x.abs() {
        y if y >= 100.0 => 0,
        y if y >= 10.0 => 1,
        y if y >= 1.0 || y == 0.0 => 2,
        y => (2.0 - y.log10().floor()).clamp(2.0, 8.0) as usize,
    };
    let text = format!("{x:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{unit}")
}

/// Empirical CDF points of `values`.
fn ecdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter().enumerate().map(|(i, &x)| (x, (i + 1) as f64 / n)).collect()
}

/// Rolling median of `y` over a centred window of `k` points, after sorting by `x`.
pub fn rolling_median(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let k = k.max(1);
    (0..p.len())
        .map(|i| {
            let lo = i.saturating_sub(k / 2);
            let hi = (lo + k).min(p.len());
            let lo = hi.saturating_sub(k);
            (p[i].0, median(p[lo..hi].iter().map(|q| q.1).collect()))
        })
        .collect()
}

/// Writes the plots into `dir`.
pub fn plots(
    dir: &Path,
    stats: &[StatRow],
    params: &[ParamRow],
    truth: Option<&HashMap<String, TruthRow>>,
) -> Result<Plots, ReportError> {
    let mut out = Plots::default();
    let mut by_window: BTreeMap<Time, Vec<&StatRow>> = BTreeMap::new();
    for s in stats {
        by_window.entry(s.t_obs).or_default().push(s);
    }
    type Pick = fn(&StatRow) -> (Option<f64>, Option<f64>);
    let picks: [(&str, &str, Pick); 5] = [
        ("default", "default", |r| (Some(r.n_pred), Some(r.are))),
        ("hawkes", "hawkes", |r| (Some(r.n_hawkes), Some(r.are_hawkes))),
        ("course", "course", |r| (Some(r.n_course), Some(r.are_course))),
        ("seismic", "seismic", |r| (r.n_seismic, r.are_seismic)),
        ("seismic_corrected", "seismic_corrected", |r| (r.n_seismic_corrected, r.are_seismic_corrected)),
    ];
    // (a) ARE distribution: an empirical CDF per model, one plot per window.
    for (t, rows) in &by_window {
        let file = format!("are_cdf_{t}.svg");
        let series: Vec<(String, Vec<(f64, f64)>)> = picks
            .iter()
            .map(|(name, _, pick)| {
                let v: Vec<f64> = rows.iter().filter_map(|r| pick(r).1).collect();
                (name.to_string(), ecdf(&v))
            })
            .collect();
        Chart {
            path: &dir.join(&file),
            caption: format!("ARE distribution, T_obs = {t} s (empirical CDF)"),
            x_desc: "ARE (log)",
            y_desc: "share of cascades with ARE ≤ x",
            log_x: true,
            log_y: false,
            points: false,
            diagonal: false,
        }
        .draw(&series)?;
        out.files.push((format!("ARE distribution per model, T_obs = {t}"), file));
    }
    // (b) predicted vs true size, log-log, one plot per model, one colour per window.
    for (name, slug, pick) in &picks {
        let file = format!("pred_vs_true_{slug}.svg");
        let series: Vec<(String, Vec<(f64, f64)>)> = by_window
            .iter()
            .map(|(t, rows)| {
                let pts = rows.iter().filter_map(|r| pick(r).0.map(|n| (r.n_true as f64, n.max(1.0)))).collect();
                (format!("T_obs = {t}"), pts)
            })
            .collect();
        Chart {
            path: &dir.join(&file),
            caption: format!("{name}: predicted vs true final size"),
            x_desc: "true size (log)",
            y_desc: "predicted size (log)",
            log_x: true,
            log_y: true,
            points: true,
            diagonal: true,
        }
        .draw(&series)?;
        out.files.push((format!("Predicted vs true size, {name}"), file));
    }
    // (c) corrected ARE as the forest sees more samples: rolling median per window.
    {
        let file = "are_vs_samples.svg".to_string();
        let series: Vec<(String, Vec<(f64, f64)>)> = by_window
            .iter()
            .map(|(t, rows)| {
                let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.model_samples as f64, r.are)).collect();
                let k = (pts.len() / 10).max(5);
                (format!("T_obs = {t} (rolling median of {k})"), rolling_median(&pts, k))
            })
            .collect();
        Chart {
            path: &dir.join(&file),
            caption: "Default prediction: ARE as its model sees more samples".into(),
            x_desc: "training samples of the model that predicted",
            y_desc: "rolling median ARE (log)",
            log_x: false,
            log_y: true,
            points: false,
            diagonal: false,
        }
        .draw(&series)?;
        out.files.push(("Default ARE vs the model's training samples".into(), file));
    }
    // (d) parameter recovery on simulated data.
    if let Some(truth) = truth {
        type Par = fn(&ParamRow, &TruthRow) -> (f64, f64);
        let pars: [(&str, &str, Par); 3] = [
            ("p", "p", |e, t| (t.p, e.p)),
            ("β", "beta", |e, t| (t.beta, e.beta)),
            ("n*", "n_star", |e, t| (t.n_star, e.n_star)),
        ];
        let mut windows: BTreeMap<Time, Vec<&ParamRow>> = BTreeMap::new();
        let by_obs: HashMap<(&str, usize), Time> = stats.iter().map(|s| ((s.cid.as_str(), s.n_obs), s.t_obs)).collect();
        for p in params.iter().filter(|p| p.fit_ok) {
            if let Some(t) = p.t_obs.or_else(|| by_obs.get(&(p.cid.as_str(), p.n_obs)).copied()) {
                windows.entry(t).or_default().push(p);
            }
        }
        for (name, slug, par) in &pars {
            let file = format!("recovery_{slug}.svg");
            let series: Vec<(String, Vec<(f64, f64)>)> = windows
                .iter()
                .map(|(t, rows)| {
                    let pts = rows.iter().filter_map(|p| truth.get(&p.cid).map(|tr| par(p, tr))).collect();
                    (format!("T_obs = {t}"), pts)
                })
                .collect();
            Chart {
                path: &dir.join(&file),
                caption: format!("Parameter recovery: estimated vs true {name}"),
                x_desc: "true (log)",
                y_desc: "estimated (log)",
                log_x: true,
                log_y: true,
                points: true,
                diagonal: true,
            }
            .draw(&series)?;
            out.files.push((format!("Parameter recovery, {name}"), file));
        }
    }
    Ok(out)
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The report's path.
    pub report: PathBuf,
    /// The per-window figures.
    pub windows: Vec<WindowReport>,
    /// The plots.
    pub plots: Plots,
}

/// Reads the outputs in `outputs` (`stats.jsonl`, `cascade_properties.jsonl` if present) and
/// writes `dir/report.md` and its SVG plots; `truth` is a simulation's `truth.csv`.
/// `fallback_max_ratio` is the run's SEISMIC fallback cap (the baselines predict like the
/// pipeline before their first ended cascade).
pub fn write_report(outputs: &Path, dir: &Path, truth: Option<&Path>, fallback_max_ratio: f64) -> Result<Written, ReportError> {
    let stats = read_stats(&outputs.join("stats.jsonl"))?;
    let props = outputs.join("cascade_properties.jsonl");
    let params = if props.exists() { read_parameters(&props)? } else { Vec::new() };
    let truth = truth.map(read_truth).transpose()?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let windows = build(&stats, &params, truth.as_ref());
    let plots = plots(dir, &stats, &params, truth.as_ref())?;
    let baselines =
        crate::observe::eval::markdown("baselines", &crate::observe::eval::evaluate(&stats, true, fallback_max_ratio));
    let md = markdown(&windows, &baselines, &plots, &outputs.display().to_string());
    let report = dir.join("report.md");
    std::fs::write(&report, md).map_err(io_err(&report))?;
    Ok(Written { report, windows, plots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::schema::{to_json, IntervalRecord, RecordType};
    use crate::records::Predictor;

    fn are(pred: f64, truth: u64) -> f64 {
        (pred - truth as f64).abs() / truth as f64
    }

    /// A stats record whose course prediction is the default one.
    fn stat(cid: &str, t_obs: Time, n_true: u64, n_pred: f64, n_hawkes: f64, n_seismic: Option<f64>, samples: usize) -> String {
        to_json(&StatRecordJson {
            kind: RecordType::Stat,
            cid: cid.into(),
            t_obs,
            n_obs: 10,
            n_true: n_true as usize,
            predicted_at: 100 * samples as Time + t_obs,
            ended_at: 100 * samples as Time + 5000,
            n_pred,
            are: are(n_pred, n_true),
            predictor: Predictor::Learned,
            interval: Some(IntervalRecord { low: 0.5 * n_pred, high: 2.0 * n_pred }),
            n_hawkes,
            are_hawkes: are(n_hawkes, n_true),
            n_course: n_pred,
            are_course: are(n_pred, n_true),
            n_seismic,
            are_seismic: n_seismic.map(|x| are(x, n_true)),
            n_seismic_corrected: None,
            are_seismic_corrected: None,
            omega: 1.0,
            model_samples: samples,
        })
    }

    fn params(cid: &str, t_obs: Time, p: [f64; 2], n_star: f64, fit_ok: bool, at_bound: bool) -> String {
        to_json(&ParametersRecord {
            kind: RecordType::Parameters,
            cid: cid.into(),
            msg: String::new(),
            t_obs,
            n_obs: 10,
            n_supp: 20.0,
            predictor: Predictor::Learned,
            interval: None,
            params: p,
            n_star,
            g1: 1.0,
            n_hawkes: 20.0,
            fit_ok,
            at_bound,
        })
    }

    fn fixture() -> (tempfile::TempDir, Vec<StatRow>, Vec<ParamRow>) {
        let dir = tempfile::tempdir().unwrap();
        let stats = [
            stat("1", 600, 100, 90.0, 150.0, None, 0),
            stat("2", 600, 200, 260.0, 100.0, Some(220.0), 1),
            stat("3", 600, 10, 12.0, 30.0, Some(13.0), 2),
            stat("1", 1200, 100, 50.0, 110.0, Some(180.0), 3),
        ];
        let props = [
            params("1", 600, [0.01, 0.001], 0.5, true, true),
            params("2", 600, [0.02, 0.002], 0.4, true, false),
            params("3", 600, [0.0, 0.0], 0.0, false, false),
            params("1", 1200, [0.01, 0.001], 0.5, true, false),
        ];
        std::fs::write(dir.path().join("stats.jsonl"), stats.join("\n") + "\n").unwrap();
        std::fs::write(dir.path().join("cascade_properties.jsonl"), props.join("\n") + "\n").unwrap();
        let stats = read_stats(&dir.path().join("stats.jsonl")).unwrap();
        let params = read_parameters(&dir.path().join("cascade_properties.jsonl")).unwrap();
        (dir, stats, params)
    }

    #[test]
    fn figures_per_window_and_model() {
        let (_dir, stats, params) = fixture();
        assert_eq!((stats.len(), params.len()), (4, 4));
        let w = build(&stats, &params, None);
        assert_eq!(w.len(), 2);
        let w600 = &w[0];
        assert_eq!((w600.t_obs, w600.cascades), (600, 3));
        // SEISMIC (index 3): one infinite prediction, two finite ones (0.1, 0.3).
        assert_eq!((w600.models[3].are.count, w600.models[3].infinite), (2, 1));
        assert!((w600.models[3].are.median - 0.2).abs() < 1e-12);
        // Hawkes: 0.5, 0.5, 2.0.
        assert!((w600.models[1].are.mean - 1.0).abs() < 1e-12);
        assert!((w600.models[1].are.median - 0.5).abs() < 1e-12);
        // Default: 0.1, 0.3, 0.2; p90 of [0.1, 0.2, 0.3], type 7: 0.28.
        assert!((w600.models[0].are.median - 0.2).abs() < 1e-12);
        assert!((w600.models[0].are.p90 - 0.28).abs() < 1e-12);
        assert_eq!((w600.fits, w600.fits_ok, w600.at_bound), (3, 2, Some(1)));
        // Every true size is inside its interval [n/2, 2n].
        assert_eq!(w600.interval, Some((1.0, 3)));
        // 600: the default (0.2) ties with SEISMIC (0.2): not better than both; 1200: it
        // loses to Hawkes.
        assert!(w600.verdict().contains("NOT better than both"), "{}", w600.verdict());
        assert!(w[1].verdict().contains("does NOT beat plain Hawkes"), "{}", w[1].verdict());
    }

    #[test]
    fn the_verdict_says_when_the_default_prediction_wins() {
        let mut w = WindowReport { t_obs: 600, cascades: 3, ..Default::default() };
        for (m, med) in w.models.iter_mut().zip([0.3, 0.5, 0.45, 0.4, 0.4]) {
            m.are = Summary { count: 3, mean: med, median: med, p90: med };
        }
        let v = w.verdict();
        assert!(v.contains("beats plain Hawkes") && v.contains("beats SEISMIC") && v.contains("better than both"), "{v}");
    }

    #[test]
    fn recovery_against_the_truth() {
        let (dir, stats, params) = fixture();
        let truth_path = dir.path().join("truth.csv");
        std::fs::write(&truth_path, "cascade,p,beta,n_star,size\n1,0.02,0.001,0.5,100\n2,0.02,0.004,0.8,200\n").unwrap();
        let truth = read_truth(&truth_path).unwrap();
        let w = build(&stats, &params, Some(&truth));
        let r = w[0].recovery.unwrap();
        // Cascades 1 and 2 at 600 s: p errors 0.5 and 0 → median 0.25; β 0 and 0.5; n* 0 and 0.5.
        assert_eq!(r.count, 2);
        assert!((r.p - 0.25).abs() < 1e-12 && (r.beta - 0.25).abs() < 1e-12 && (r.n_star - 0.25).abs() < 1e-12);
    }

    #[test]
    fn writes_the_markdown_and_svg_plots() {
        let (dir, _, _) = fixture();
        let truth_path = dir.path().join("truth.csv");
        std::fs::write(&truth_path, "cascade,p,beta,n_star,size\n1,0.02,0.001,0.5,100\n2,0.02,0.004,0.8,200\n").unwrap();
        let out = dir.path().join("report");
        let written = write_report(dir.path(), &out, Some(&truth_path), 5.0).unwrap();
        let md = std::fs::read_to_string(&written.report).unwrap();
        for t in ["600", "1200"] {
            for m in MODELS {
                assert!(md.lines().any(|l| l.starts_with(&format!("| {t} | {m} |"))), "no row {t} {m}:\n{md}");
            }
        }
        assert!(md.contains("| 600 | seismic | 2 | 0.200 | 0.200 | 0.280 | 1 |"), "{md}");
        assert!(md.contains("Parameter recovery") && md.contains("## Against honest baselines") && md.contains("| no_growth |"));
        assert!(md.contains("## Prediction intervals") && md.contains("| 600 | 3 | 100 % |"), "{md}");
        assert!(written.plots.files.len() >= 2 + 5 + 1 + 3);
        for (_, f) in &written.plots.files {
            assert!(md.contains(&format!("]({f})")));
            let svg = std::fs::read_to_string(out.join(f)).unwrap();
            assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{f}");
        }
    }

    #[test]
    fn ticks_are_short_and_human() {
        let cases = [
            (0.30000000000000004, "0.3"),
            (1_000_000.0, "1 M"),
            (1200.0, "1.2 k"),
            (0.001, "0.001"),
            (2.5, "2.5"),
            (0.0, "0"),
            (42.0, "42"),
            (0.015, "0.015"),
        ];
        for (v, want) in cases {
            assert_eq!(tick(v), want, "{v}");
        }
    }

    #[test]
    fn rolling_median_is_centred() {
        let pts: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, [5.0, 1.0, 3.0, 2.0, 4.0][i])).collect();
        let r = rolling_median(&pts, 3);
        assert_eq!(r.iter().map(|p| p.1).collect::<Vec<_>>(), vec![3.0, 3.0, 2.0, 3.0, 3.0]);
    }
}
