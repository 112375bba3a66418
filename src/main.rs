//! The `tweetoscope` binary: parses the command line and calls the library; errors become a
//! message on stderr and a non-zero exit.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tweetoscope::cli::{resolve_bundled, Cli, Command, RunOptions};
use tweetoscope::io::files::{read_dataset, Dataset};
use tweetoscope::pipeline::{run_replay, ReplayJob, RunHandles};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => {
            let config = cli.run.load_config()?;
            let input = config.input.path.clone().context("the dataflow config names no [input] path")?;
            let index = config.input.index.clone();
            replay(&cli.run, resolve_bundled(&input), index.map(|i| resolve_bundled(&i)))
        }
        Some(Command::Run { input, index, run }) => replay(&run, input, index),
        Some(Command::Fit { input, index, t_obs, config }) => fit(&input, index.as_deref(), t_obs, config),
    }
}

/// Replays a dataset through the pipeline, with a progress bar, then prints the table.
fn replay(options: &RunOptions, input: PathBuf, index: Option<PathBuf>) -> Result<()> {
    let config = options.load_config()?;
    let dataset: Dataset = read_dataset(&input, index.as_deref())?;
    let cluster = options.cluster()?;
    let handles = RunHandles::default();
    let local_share: usize = (0..cluster.threads)
        .map(|t| tweetoscope::replay::worker_share(&dataset, cluster.process * cluster.threads + t, cluster.threads * cluster.processes))
        .sum();
    let bar = indicatif::ProgressBar::new(local_share as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} replaying [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (bar, done, events) = (bar.clone(), done.clone(), handles.events.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(events.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let job = ReplayJob {
        config,
        dataset: Arc::new(dataset),
        out_dir: options.out.clone(),
        cluster,
        pace: options.pace,
    };
    let report = run_replay(job, handles.clone());
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    bar.finish_and_clear();
    let Some(report) = report? else {
        eprintln!("process {} finished; process 0 prints the summary", options.process);
        return Ok(());
    };
    print!("{}", report.table());
    if let Some(path) = &options.summary {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `tweetoscope fit`: one JSON line per cascade.
fn fit(input: &std::path::Path, index: Option<&std::path::Path>, t_obs: f64, config: Option<PathBuf>) -> Result<()> {
    anyhow::ensure!(t_obs.is_finite() && t_obs >= 0.0, "--t-obs must be a finite number of seconds ≥ 0");
    let options = RunOptions { config, ..RunOptions::default() };
    let config = options.load_config()?;
    let model = tweetoscope_model::hawkes::HawkesModel::new(config.hawkes.settings())?;
    let dataset = read_dataset(input, index)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in &dataset.cascades {
        let events: Vec<tweetoscope_model::hawkes::Event> = c
            .events
            .iter()
            .take_while(|(t, _)| (*t as f64) <= t_obs)
            .map(|&(t, m)| tweetoscope_model::hawkes::Event { t: t as f64, m })
            .collect();
        let line = match model.fit(&events, t_obs) {
            Ok(f) => serde_json::json!({"cascade": c.id, "n": f.n, "p": f.p, "beta": f.beta, "n_star": f.n_star,
                                        "G1": f.g1, "N_pred": f.n_pred, "objective": f.objective}),
            Err(e) => serde_json::json!({"cascade": c.id, "n": events.len(), "error": e.to_string()}),
        };
        use std::io::Write;
        writeln!(out, "{line}")?;
    }
    Ok(())
}
