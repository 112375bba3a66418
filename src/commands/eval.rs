//! `tweetoscope eval`: the default prediction against every other model and honest baselines
//! on the same partial cascades, for the bundled real sample (selected: every cascade has
//! more than 2,000 retweets), the evently #auspol cascades (real and unselected) and a
//! simulated NEWS-sized stream (unselected, truth known), in one command. Each data set is
//! replayed prequentially (one cold run: a window's models learn only from cascades that
//! ended earlier); `observe::eval` fits the baselines the same way and prints the tables.
//!
//! With `--warm-split F`, each data set is also split by start time: the first F of its
//! cascades train models (written as a models file), and the rest is replayed cold and warm
//! (`run --models`), side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;

use super::options::RunOptions;
use super::resolve_bundled;
use super::simulate::{simulate_to, SimulateOptions};
use crate::config::DataflowConfig;
use crate::io::files::{read_dataset, read_models, Dataset};
use crate::io::schema::StatRecordJson;
use crate::io::timeline::start_time;
use crate::observe::eval::{evaluate, markdown, WindowEval};
use crate::pipeline::{run, Cluster, Job, RunHandles, SourceSpec};
use crate::records::Model;

/// The data sets `eval` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSet {
    /// The bundled sample: 80 real Twitter cascades (SEISMIC), each over 2,000 retweets.
    Bundled,
    /// 3,333 real #auspol cascades (evently), no selection: most stay tiny.
    Auspol,
    /// A simulated stream with the NEWS data set's cascade sizes (truth known).
    News,
}

impl DataSet {
    /// Whether the population is unselected (its evaluation is broken down by final size).
    fn unselected(self) -> bool {
        self != DataSet::Bundled
    }
}

/// What `eval` does.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The data sets, in order.
    pub data: Vec<DataSet>,
    /// The dataflow config (else the embedded one); the course forest is always trained.
    pub config: Option<PathBuf>,
    /// Cascades of the simulated NEWS-sized stream.
    pub news_cascades: usize,
    /// Also evaluate warm starts: the first F of the cascades train, the rest is predicted.
    pub warm_split: Option<f64>,
    /// Also write every figure as JSON here.
    pub json: Option<PathBuf>,
}

/// One data set's figures (the `--json` schema).
#[derive(Debug, Serialize)]
struct DataSetEval {
    /// The data set.
    data: DataSet,
    /// The prequential cold run over every cascade.
    prequential: Vec<WindowEval>,
    /// With `--warm-split`: the last cascades, cold and then warm.
    split: Option<SplitEval>,
}

/// The warm-split figures of a data set.
#[derive(Debug, Serialize)]
struct SplitEval {
    /// Share of the cascades (by start time) that trained the warm models.
    fraction: f64,
    /// The rest, replayed cold.
    cold: Vec<WindowEval>,
    /// The rest, replayed from the models of the first part.
    warm: Vec<WindowEval>,
}

/// Runs `eval`.
pub fn command(options: &EvalOptions) -> Result<()> {
    let mut config = RunOptions { config: options.config.clone(), ..RunOptions::default() }.load_config()?;
    // The course forest is one of the compared models.
    config.forest.enabled = true;
    let scratch = tempfile::tempdir().context("a scratch folder")?;
    let mut all = Vec::new();
    for &data in &options.data {
        let dataset = load(data, scratch.path(), options.news_cascades, &config)?;
        let name = format!("{data:?} ({} cascades)", dataset.cascades.len()).to_lowercase();
        eprintln!("eval: {name}: prequential run");
        let stats = replay(&dataset, &config, Vec::new(), &scratch.path().join(format!("{name}-all")))?;
        let prequential = evaluate(&stats, data.unselected(), config.predictor.fallback_max_ratio);
        println!("{}", markdown(&format!("{name}, prequential (cold)"), &prequential));
        let split = match options.warm_split {
            Some(f) => Some(warm_split(data, &dataset, &config, f, scratch.path())?),
            None => None,
        };
        all.push(DataSetEval { data, prequential, split });
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The cascades of a data set (the simulated one written to `scratch` first).
fn load(data: DataSet, scratch: &Path, news_cascades: usize, config: &DataflowConfig) -> Result<Dataset> {
    Ok(match data {
        DataSet::Bundled => read_dataset(&resolve_bundled(Path::new(super::BUNDLED_SAMPLE)), None)?,
        DataSet::Auspol => read_dataset(
            &resolve_bundled(Path::new("data/evently-auspol/cascades-data.csv")),
            Some(&resolve_bundled(Path::new("data/evently-auspol/cascades-index.csv"))),
        )?,
        DataSet::News => {
            let dir = scratch.join("news");
            let options = SimulateOptions {
                cascades: news_cascades,
                seed: 1,
                match_sizes: Some(resolve_bundled(Path::new("tests/data/tweetoscope-news-index/news-index.csv"))),
                n_star: 0.2,
                horizon: 864_000.0,
                max_events: 100_000,
            };
            simulate_to(&dir, &options, &config.hawkes)?;
            read_dataset(&dir.join("cascades-data.csv"), Some(&dir.join("cascades-index.csv")))?
        }
    })
}

/// Replays `dataset` in one process from `models` (cold when empty) and returns its stats.
fn replay(dataset: &Dataset, config: &DataflowConfig, models: Vec<Model>, out: &Path) -> Result<Vec<StatRecordJson>> {
    let job = Job {
        config: config.clone(),
        source: SourceSpec::Replay { dataset: Arc::new(dataset.clone()), pace: None },
        out_dir: Some(out.to_owned()),
        kafka_sink: false,
        cluster: Cluster::default(),
        warm_start: false,
        initial_models: models,
        views: false,
    };
    run(job, RunHandles::default())?;
    let path = out.join("stats.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

/// The warm-split evaluation: cascades ordered by start time, the first `fraction` train.
fn warm_split(data: DataSet, dataset: &Dataset, config: &DataflowConfig, fraction: f64, scratch: &Path) -> Result<SplitEval> {
    anyhow::ensure!(fraction > 0.0 && fraction < 1.0, "--warm-split must be in (0, 1)");
    let mut order: Vec<usize> = (0..dataset.cascades.len()).collect();
    let input = &config.input;
    order.sort_by_key(|&i| {
        let c = &dataset.cascades[i];
        (start_time(c, input.random_start_range, input.seed), c.id)
    });
    let cut = (fraction * order.len() as f64).round() as usize;
    let part = |range: &[usize]| Dataset { cascades: range.iter().map(|&i| dataset.cascades[i].clone()).collect() };
    let (first, rest) = (part(&order[..cut]), part(&order[cut..]));
    let name = format!("{data:?}").to_lowercase();
    eprintln!("eval: {name}: training on the first {cut} cascades, predicting the last {}", rest.cascades.len());
    let trained = scratch.join(format!("{name}-first"));
    replay(&first, config, Vec::new(), &trained)?;
    let models = read_models(&trained.join("models.jsonl"), config.pipeline.windows.as_slice())?;
    let cold = evaluate(
        &replay(&rest, config, Vec::new(), &scratch.join(format!("{name}-cold")))?,
        data.unselected(),
        config.predictor.fallback_max_ratio,
    );
    let warm = evaluate(
        &replay(&rest, config, models, &scratch.join(format!("{name}-warm")))?,
        data.unselected(),
        config.predictor.fallback_max_ratio,
    );
    let label = format!("{name}: last {} cascades ({:.0} %)", rest.cascades.len(), 100.0 * (1.0 - fraction));
    println!("{}", markdown(&format!("{label}, cold"), &cold));
    println!("{}", markdown(&format!("{label}, warm (models of the first {:.0} %)", 100.0 * fraction), &warm));
    Ok(SplitEval { fraction, cold, warm })
}
