//! `tweetoscope live`, `backtest` and `topics`: the pipeline on the `tweets` topic, and the
//! topics it needs; and the check every Kafka command makes first ([`preflight`]).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use super::options::{KafkaOptions, RecoveryOptions, ReportOptions, RunOptions};
use super::progress::{Interrupts, Pace, Progress};
use super::replay::{alertmanager, finish_alerts, report};
use crate::config::DataflowConfig;
use crate::dataflow::source::kafka::{KafkaSourceSpec, StartAt};
use crate::io::kafka::KafkaConfig;
use crate::observe::live::LiveView;
use crate::pipeline::{run as run_job, Job, RunHandles, SourceSpec};

/// How long a Kafka command waits for a broker that does not answer before it fails with
/// one line (librdkafka alone would retry, and log every retry, for minutes).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka's logs and errors during [`preflight`], kept out of the terminal: the check
/// turns the outcome into one line. They stay visible with `RUST_LOG=librdkafka=debug`.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", "preflight: {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "preflight: {error}: {reason}");
    }
}

impl ConsumerContext for Quiet {}

/// Before a Kafka command does anything: a broker answers within [`BROKER_TIMEOUT`], and
/// every topic of `topics` exists (else: "run `tweetoscope topics …` first"). Each failure is
/// one line that says what to do; without this, a missing topic meant one error line per
/// message (97,000 for the sample) and an unreachable broker a minute of librdkafka retries.
pub fn preflight(kafka: &KafkaConfig, topics: &[&str], options: &KafkaOptions, config: Option<&Path>) -> Result<()> {
    let consumer: BaseConsumer<Quiet> = kafka
        .client_config()
        .set("group.id", "tweetoscope-preflight")
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(Quiet)?;
    let metadata = match consumer.fetch_metadata(None, BROKER_TIMEOUT) {
        Ok(m) => m,
        Err(e) => bail!(
            "no Kafka broker answered at {} within {} s ({}): is it running (`scripts/kafka status`)? \
             Brokers come from --brokers, else $TWEETOSCOPE_KAFKA_BROKERS, else the config's [kafka] brokers",
            kafka.brokers,
            BROKER_TIMEOUT.as_secs(),
            e.rdkafka_error_code().map_or_else(|| e.to_string(), |c| c.to_string())
        ),
    };
    let exists = |name: &str| metadata.topics().iter().any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
    let missing: Vec<&str> = topics.iter().copied().filter(|t| !exists(t)).collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("topic {one} does not exist: run `{}` first", options.topics_command(config)),
        many => bail!("topics {} do not exist: run `{}` first", many.join(", "), options.topics_command(config)),
    }
}

/// The config of a Kafka command: the file, the environment, the flags, then the checks.
fn kafka_config(run: &RunOptions, kafka: &KafkaOptions, recovery: Option<&RecoveryOptions>) -> Result<DataflowConfig> {
    let mut config = run.load_config()?;
    kafka.apply(&mut config);
    if let Some(r) = recovery {
        r.apply(&mut config);
    }
    config.validate()?;
    Ok(config)
}

/// `live`: the pipeline on the `tweets` topic, producing every output topic, until a signal
/// (exit 128 + its number, the summary marked interrupted) or `--until-idle` (exit 0).
pub fn live(run: &RunOptions, kafka: &KafkaOptions, recovery: &RecoveryOptions) -> Result<ExitCode> {
    run.check_outputs()?;
    let config = kafka_config(run, kafka, Some(recovery))?;
    let interrupts = Interrupts::install(
        Default::default(),
        if config.checkpoint.dir.is_some() {
            "reading stops; committed outputs and the last complete checkpoint are kept, the rest is recomputed on restart"
        } else {
            "reading stops; what was computed is produced and flushed"
        },
    )?;
    preflight(&config.kafka, &config.kafka.topics.all(), kafka, run.config.as_deref())?;
    let idle_exit = recovery.until_idle.map(Duration::from_secs_f64);
    let source = SourceSpec::Kafka(KafkaSourceSpec { kafka: config.kafka.clone(), bounded: false, start: StartAt::Beginning, idle_exit });
    // A live pipeline continues from the models it published.
    pipeline(run, None, config, source, true, interrupts)
}

/// `backtest`: the `tweets` topic from its beginning to the end offsets seen at start.
pub fn backtest(run: &RunOptions, report_options: &ReportOptions, kafka: &KafkaOptions) -> Result<ExitCode> {
    run.check_outputs()?;
    report_options.check()?;
    let config = kafka_config(run, kafka, None)?;
    let interrupts = Interrupts::install(Default::default(), "reading stops; the summary covers what was read")?;
    preflight(&config.kafka, &[&config.kafka.topics.tweets], kafka, run.config.as_deref())?;
    let source = SourceSpec::Kafka(KafkaSourceSpec { kafka: config.kafka.clone(), bounded: true, start: StartAt::Beginning, idle_exit: None });
    // A backtest is a function of the topic only: no warm start.
    pipeline(run, Some(report_options), config, source, false, interrupts)
}

/// Runs a Kafka job (live when `report_options` is None) and reports it.
fn pipeline(
    run: &RunOptions,
    report_options: Option<&ReportOptions>,
    config: DataflowConfig,
    source: SourceSpec,
    live: bool,
    interrupts: Interrupts,
) -> Result<ExitCode> {
    let view = LiveView::new(config.pipeline.alert_threshold);
    let handles = RunHandles {
        live: Some(view.clone()),
        alertmanager: alertmanager(run)?,
        shutdown: interrupts.shutdown().clone(),
        ..RunHandles::default()
    };
    let no_report = ReportOptions::default();
    let report_options = report_options.unwrap_or(&no_report);
    let job = Job {
        source,
        config,
        out_dir: if live { run.out.clone() } else { report_options.out_dir(run) },
        kafka_sink: live,
        cluster: run.cluster()?,
        warm_start: live,
    };
    let _http = run.http(&view, live.then_some("until the pipeline stops"))?;
    interrupts.running();
    let result = {
        let _progress = Progress::start(if live { "live" } else { "backtest" }, None, Pace::Paced, handles.events.clone());
        run_job(job, handles.clone())
    };
    finish_alerts(&handles);
    let interrupted = interrupts.caught();
    report(run, report_options, result?, interrupted)?;
    Ok(interrupted.map_or(ExitCode::SUCCESS, |s| ExitCode::from(s.exit_code())))
}

/// `topics`: creates the input, output, dead-letter and progress topics that do not exist
/// yet (`progress`, the exactly-once output's frontier, with one partition).
pub fn topics(partitions: i32, config_path: Option<&Path>, kafka: &KafkaOptions) -> Result<()> {
    let mut config = super::options::load_config(config_path)?;
    kafka.apply(&mut config);
    config.validate()?;
    preflight(&config.kafka, &[], kafka, config_path)?;
    let names = config.kafka.topics.all();
    crate::io::kafka::ensure_topics(&config.kafka, &names, partitions)?;
    crate::io::kafka::ensure_topics(&config.kafka, &[&config.kafka.topics.progress], 1)?;
    println!("topics ready: {} {}", names.join(" "), config.kafka.topics.progress);
    Ok(())
}
