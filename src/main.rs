//! The `tweetoscope` binary: parses the command line and calls the library; errors become a
//! message on stderr and a non-zero exit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tweetoscope::cli::{resolve_bundled, Cli, Command, KafkaOptions, RecoveryOptions, RunOptions};
use tweetoscope::dataflow::kafka_source::{KafkaSourceSpec, StartAt};
use tweetoscope::generate::{generate, GenerateOptions};
use tweetoscope::io::files::read_dataset;
use tweetoscope::pipeline::{run, Job, RunHandles, SourceSpec};
use tweetoscope::summary::RunReport;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = dispatch(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        None => {
            let config = cli.run.load_config()?;
            // A config without an [input] path still replays the bundled sample.
            let input = config.input.path.clone().unwrap_or_else(|| PathBuf::from(tweetoscope::cli::BUNDLED_SAMPLE));
            let index = config.input.index.clone();
            replay(&cli.run, resolve_bundled(&input), index.map(|i| resolve_bundled(&i)))
        }
        Some(Command::Run { input, index, run }) => replay(&run, input, index),
        Some(Command::Fit { input, index, t_obs, config }) => fit(&input, index.as_deref(), t_obs, config),
        Some(Command::Generate { input, index, speed, sources, config, kafka }) => {
            generate_command(&input, index.as_deref(), &speed, sources, config, &kafka)
        }
        Some(Command::Live { kafka, run, recovery }) => kafka_run(&run, &kafka, Some(&recovery)),
        Some(Command::Simulate { out, cascades, seed, match_sizes, n_star, horizon, max_events, config }) => {
            let config = RunOptions { config, ..RunOptions::default() }.load_config()?;
            let options =
                tweetoscope::simulation::SimulateOptions { cascades, seed, match_sizes, n_star, horizon, max_events };
            let truths = tweetoscope::simulation::simulate_to(&out, &options, &config.hawkes)?;
            let events: usize = truths.iter().map(|t| t.size).sum();
            println!("{} cascades, {events} events written to {}", truths.len(), out.display());
            Ok(())
        }
        Some(Command::Topics { partitions, config, kafka }) => {
            let config = kafka_settings(&kafka, config.as_deref(), |_| {})?;
            let names = config.kafka.topics.all();
            tweetoscope::io::kafka::ensure_topics(&config.kafka, &names, partitions)?;
            println!("topics ready: {}", names.join(" "));
            Ok(())
        }
        Some(Command::Backtest { kafka, run }) => kafka_run(&run, &kafka, None),
        Some(Command::Latency { input, index, speed, until, drain, config, json, kafka }) => {
            anyhow::ensure!(speed.is_finite() && speed > 0.0, "--speed must be a positive number");
            anyhow::ensure!(drain.is_finite() && drain >= 0.0, "--drain must be a number of seconds ≥ 0");
            let config = kafka_settings(&kafka, config.as_deref(), |_| {})?;
            let dataset = read_dataset(&input, index.as_deref())?;
            let options = tweetoscope::latency::LatencyOptions { speed, until, drain: Duration::from_secs_f64(drain) };
            let report = tweetoscope::latency::measure(&dataset, &config, &options)?;
            print!("{}", report.text());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Some(Command::Hostfile(args)) => Ok(tweetoscope::k8s::entrypoint(&args)?),
    }
}

/// A Kafka command's settings (file, environment, flags, one validation), then one connection
/// to the brokers, so that refused credentials or certificates end the command at once with
/// the fix.
fn kafka_settings(
    kafka: &KafkaOptions,
    config: Option<&Path>,
    more: impl FnOnce(&mut tweetoscope::config::DataflowConfig),
) -> Result<tweetoscope::config::DataflowConfig> {
    let config = kafka.load(config, more)?;
    config.kafka.check_connection(tweetoscope::cli::KAFKA_CONNECT_TIMEOUT)?;
    Ok(config)
}

/// A progress bar on stderr fed from a counter (hidden when stderr is not a terminal).
struct Progress {
    done: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn start(what: &str, total: Option<u64>, counter: Arc<AtomicU64>) -> Self {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t).with_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, {{eta}})"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(&format!("{{spinner}} {what}: {{pos}} events ({{per_sec}})"))
                    .expect("valid template"),
            ),
        };
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (bar, done) = (bar.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(counter.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self { done, ticker: Some(ticker), bar }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Stops the job on SIGINT/SIGTERM (the pipeline then drains and finishes).
fn stop_on_signals(shutdown: Arc<AtomicBool>) -> Result<()> {
    ctrlc::set_handler(move || shutdown.store(true, Ordering::Relaxed)).context("installing the signal handler")
}

/// Prints the table and writes `--summary`.
fn report(options: &RunOptions, report: Option<RunReport>) -> Result<()> {
    let Some(report) = report else {
        eprintln!("process {} finished; process 0 prints the summary", options.process);
        return Ok(());
    };
    print!("{}", report.table());
    if let Some(path) = &options.summary {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(dir), Some(outputs)) = (&options.report, options.out_dir()) {
        let written = tweetoscope::report::write_report(&outputs, dir, options.truth.as_deref())?;
        eprintln!("report written to {} ({} plots)", written.report.display(), written.plots.files.len());
    }
    Ok(())
}

/// Replays a dataset through the pipeline, with a progress bar, then prints the table.
fn replay(options: &RunOptions, input: PathBuf, index: Option<PathBuf>) -> Result<()> {
    let config = options.load_config()?;
    let dataset = read_dataset(&input, index.as_deref())?;
    let cluster = options.cluster()?;
    let handles = RunHandles::default();
    // Ctrl-C stops a paced replay early, and ends `--serve`.
    let stop = handles.shutdown.clone();
    if options.pace.is_some() || options.serve {
        stop_on_signals(stop.clone())?;
    }
    let peers = cluster.threads * cluster.processes;
    let local: usize = (0..cluster.threads)
        .map(|t| tweetoscope::replay::worker_share(&dataset, cluster.process * cluster.threads + t, peers))
        .sum();
    let job = Job {
        config,
        source: SourceSpec::Replay { dataset: Arc::new(dataset), pace: options.pace },
        out_dir: options.out_dir(),
        kafka_sink: false,
        cluster,
        warm_start: false,
    };
    let http = options.http()?;
    let _alertmanager = alertmanager(options)?;
    let result = {
        let _progress = Progress::start("replaying", Some(local as u64), handles.events.clone());
        run(job, handles)
    };
    report(options, result?)?;
    if let (true, Some(server)) = (options.serve, http) {
        eprintln!("replay done; serving http://{}/ until Ctrl-C", server.addr);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(server);
    }
    Ok(())
}

/// Starts pushing popular-cascade alerts to `--alertmanager`, if given; what is still queued
/// is sent (a few seconds at most) when the returned guard is dropped.
fn alertmanager(options: &RunOptions) -> Result<Option<tweetoscope::alertmanager::Installed>> {
    let Some(url) = &options.alertmanager else { return Ok(None) };
    let installed = tweetoscope::alertmanager::install(url)?;
    eprintln!("pushing popular-cascade alerts to {url}");
    Ok(Some(installed))
}

/// `live` and `backtest`: the pipeline on the `tweets` topic.
/// `live` (with its recovery options) or `backtest` (without).
fn kafka_run(options: &RunOptions, kafka: &KafkaOptions, live: Option<&RecoveryOptions>) -> Result<()> {
    let bounded = live.is_none();
    let config = kafka_settings(kafka, options.config.as_deref(), |config| {
        if let Some(r) = live {
            r.apply(config);
        }
    })?;
    let idle_exit = match live.and_then(|r| r.until_idle) {
        Some(s) if !(s.is_finite() && s > 0.0) => bail!("--until-idle must be a positive number of seconds"),
        s => s.map(Duration::from_secs_f64),
    };
    let handles = RunHandles::default();
    stop_on_signals(handles.shutdown.clone())?;
    let job = Job {
        source: SourceSpec::Kafka(KafkaSourceSpec { kafka: config.kafka.clone(), bounded, start: StartAt::Beginning, idle_exit }),
        config,
        out_dir: options.out_dir(),
        kafka_sink: !bounded,
        cluster: options.cluster()?,
        // A live pipeline continues from the models it published; a backtest is a function
        // of the topic only.
        warm_start: !bounded,
    };
    let _http = options.http()?;
    let _alertmanager = alertmanager(options)?;
    let result = {
        let _progress = Progress::start(if bounded { "backtest" } else { "live" }, None, handles.events.clone());
        run(job, handles)
    };
    report(options, result?)
}

/// `generate`: the dataset onto the `tweets` topic.
fn generate_command(
    input: &Path,
    index: Option<&Path>,
    speed: &str,
    sources: u64,
    config: Option<PathBuf>,
    kafka: &KafkaOptions,
) -> Result<()> {
    let speed = match speed {
        "max" => None,
        s => {
            let f: f64 = s.parse().with_context(|| format!("--speed {s:?}: a number or `max`"))?;
            if !(f.is_finite() && f > 0.0) {
                bail!("--speed must be a positive number or `max`");
            }
            Some(f)
        }
    };
    let config = kafka_settings(kafka, config.as_deref(), |_| {})?;
    let dataset = read_dataset(input, index)?;
    let sent = Arc::new(AtomicU64::new(0));
    let shutdown = Arc::new(AtomicBool::new(false));
    stop_on_signals(shutdown.clone())?;
    let report = {
        let _progress = Progress::start("generating", Some(dataset.events() as u64), sent.clone());
        generate(&dataset, &config.input, &config.kafka, &GenerateOptions { speed, sources }, sent, shutdown)?
    };
    println!("{} messages sent, {} acknowledged by the broker, {} not delivered", report.sent, report.delivered, report.failed);
    if report.failed > 0 || report.delivered < report.sent {
        bail!("{} of {} messages were not delivered", report.sent - report.delivered, report.sent);
    }
    Ok(())
}

/// `tweetoscope fit`: one JSON line per cascade.
fn fit(input: &Path, index: Option<&Path>, t_obs: f64, config: Option<PathBuf>) -> Result<()> {
    anyhow::ensure!(t_obs.is_finite() && t_obs >= 0.0, "--t-obs must be a finite number of seconds ≥ 0");
    let options = RunOptions { config, ..RunOptions::default() };
    let config = options.load_config()?;
    let model = tweetoscope_model::hawkes::HawkesModel::new(config.hawkes.clone())?;
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
