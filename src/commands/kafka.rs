//! `tweetoscope live`, `backtest` and `topics`: the pipeline on the `tweets` topic, and the
//! topics it needs; and the topic check every Kafka command makes first ([`require_topics`]).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use super::options::{KafkaOptions, RecoveryOptions, ReportOptions, RunOptions};
use super::progress::{Pace, Progress};
use super::replay::{alertmanager, exit, finish_alerts, report};
use super::signals;
use crate::config::DataflowConfig;
use crate::dataflow::source::kafka::{KafkaSourceSpec, StartAt};
use crate::io::kafka::KafkaConfig;
use crate::observe::live::{JobKind, LiveView};
use crate::pipeline::{run as run_job, Job, RunHandles, SourceSpec};

/// How long the topic check waits for the metadata (the brokers have just answered
/// `KafkaConfig::check_connection`).
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka's logs and errors during [`require_topics`], kept out of the terminal: the
/// check turns the outcome into one line. They stay visible with `RUST_LOG=librdkafka=debug`.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", "topic check: {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "topic check: {error}: {reason}");
    }
}

impl ConsumerContext for Quiet {}

/// Every topic of `topics` exists, else one line: "topic X does not exist: run `{create}`
/// first". Without it, `generate` to a missing topic logged one error per message (97,000
/// for the sample) and never said what to do.
pub fn require_topics(kafka: &KafkaConfig, topics: &[String], create: &str) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer<Quiet> = kafka
        .client_config()
        .set("group.id", "tweetoscope-topic-check")
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(Quiet)?;
    let metadata = match consumer.fetch_metadata(None, METADATA_TIMEOUT) {
        Ok(m) => m,
        Err(e) => bail!(
            "the brokers at {} did not list their topics within {} s ({})",
            kafka.brokers,
            METADATA_TIMEOUT.as_secs(),
            e.rdkafka_error_code().map_or_else(|| e.to_string(), |c| c.to_string())
        ),
    };
    let exists =
        |name: &str| metadata.topics().iter().any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
    let missing: Vec<&str> = topics.iter().map(String::as_str).filter(|t| !exists(t)).collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("topic {one} does not exist: run `{create}` first"),
        many => bail!("topics {} do not exist: run `{create}` first", many.join(", ")),
    }
}

/// `live`: the pipeline on the `tweets` topic, producing every output topic, until a signal
/// (it drains, flushes, prints the summary marked interrupted and exits 128 + the signal) or
/// `--until-idle` (exit 0).
pub fn live(run: &RunOptions, kafka: &KafkaOptions, recovery: &RecoveryOptions) -> Result<ExitCode> {
    // First, before any thread (librdkafka's included) starts: see `signals::install`.
    let handles = RunHandles::default();
    signals::install(&handles, run.process)?;
    run.check_outputs()?;
    let config = kafka.connect(run.config.as_deref(), |c| recovery.apply(c), |t| t.all().map(str::to_owned).to_vec())?;
    // --until-idle is checked by its parser (finite, > 0).
    let idle_exit = recovery.until_idle.map(Duration::from_secs_f64);
    let source =
        SourceSpec::Kafka(KafkaSourceSpec { kafka: config.kafka.clone(), bounded: false, start: StartAt::Beginning, idle_exit });
    // A live pipeline continues from the models it published.
    pipeline(run, None, config, source, handles)
}

/// `backtest`: the `tweets` topic from its beginning to the end offsets seen at start; a
/// signal stops it where it is (the summary says interrupted; exit 128 + the signal).
pub fn backtest(run: &RunOptions, report_options: &ReportOptions, kafka: &KafkaOptions) -> Result<ExitCode> {
    let handles = RunHandles::default();
    signals::install(&handles, run.process)?;
    run.check_outputs()?;
    report_options.check(run)?;
    let config = kafka.connect(run.config.as_deref(), |_| {}, |t| vec![t.tweets.clone()])?;
    let source = SourceSpec::Kafka(KafkaSourceSpec {
        kafka: config.kafka.clone(),
        bounded: true,
        start: StartAt::Beginning,
        idle_exit: None,
    });
    pipeline(run, Some(report_options), config, source, handles)
}

/// Runs a Kafka job (`live` when `report_options` is None: Kafka sink and warm start; a
/// backtest is a function of the topic only) and reports it.
fn pipeline(
    run: &RunOptions,
    report_options: Option<&ReportOptions>,
    config: DataflowConfig,
    source: SourceSpec,
    handles: RunHandles,
) -> Result<ExitCode> {
    let live = report_options.is_none();
    run.note_ignored(report_options);
    let view = LiveView::new(if live { JobKind::Live } else { JobKind::Replay }, config.pipeline.alert_thresholds());
    let http = run.http(&view, live.then_some("until the pipeline stops"))?;
    // The page's state is kept only when a server shows it.
    let handles = RunHandles { live: http.as_ref().map(|_| view), alertmanager: alertmanager(run)?, ..handles };
    let no_report = ReportOptions::default();
    let report_options = report_options.unwrap_or(&no_report);
    let job = Job {
        source,
        config,
        out_dir: if live { run.out.clone() } else { report_options.out_dir(run) },
        kafka_sink: live,
        cluster: run.cluster()?,
        warm_start: live,
        initial_models: Vec::new(),
        views: run.views(),
    };
    let result = {
        let _progress = Progress::start(if live { "live" } else { "backtest" }, None, Pace::Paced, handles.events.clone());
        run_job(job, handles.clone())
    };
    finish_alerts(&handles);
    let interrupted = handles.stop_cause();
    report(run, report_options, result?, interrupted)?;
    Ok(interrupted.map_or(ExitCode::SUCCESS, exit))
}

/// `topics`: creates the input, output, dead-letter and progress topics that do not exist
/// yet (`progress`, the exactly-once output's frontier, with one partition); with `delete`,
/// deletes those that exist instead.
pub fn topics(partitions: i32, delete: bool, config_path: Option<&Path>, kafka: &KafkaOptions) -> Result<()> {
    let config = kafka.connect(config_path, |_| {}, |_| Vec::new())?;
    let names = config.kafka.topics.all();
    if delete {
        let mut all = names.to_vec();
        all.push(&config.kafka.topics.progress);
        crate::io::kafka::delete_topics(&config.kafka, &all)?;
        println!("topics deleted: {}", all.join(" "));
        return Ok(());
    }
    crate::io::kafka::ensure_topics(&config.kafka, &names, partitions)?;
    crate::io::kafka::ensure_topics(&config.kafka, &[&config.kafka.topics.progress], 1)?;
    println!("topics ready: {} {}", names.join(" "), config.kafka.topics.progress);
    Ok(())
}
