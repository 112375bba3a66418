//! Runs a job: a source, the dataflow and its sinks, on timely workers (threads and
//! processes). Entry points take their inputs, handles and a shutdown flag, so that the
//! binary, the embedded mode and the tests all call the same function.
//!
//! [`run`] is four named steps: the stage settings (with a warm start), recovery (the
//! checkpoint to resume from and the exactly-once output), the sinks, then the execution of
//! the dataflow on every worker ([`worker`]) and the end of the run (flushes, the report).

pub mod cluster;
mod recovery;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use self::cluster::{Cluster, ClusterError};
use self::recovery::Recovery;
use crate::config::{ConfigError, DataflowConfig};
use crate::dataflow::source::kafka::KafkaSourceSpec;
use crate::dataflow::{Checkpoint, StageSettings};
use crate::io::files::Dataset;
use crate::io::kafka::{CountingProducer, KafkaSetupError};
use crate::io::kafka_tx::OutputBatch;
use crate::observe::alertmanager::Pusher;
use crate::observe::live::LiveView;
use crate::observe::summary::{RunReport, SummaryAccumulator};
use crate::Time;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad cluster layout.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Timely could not start (e.g. a peer address could not be bound).
    #[error("timely: {message}")]
    Timely {
        /// What timely said.
        message: String,
    },
    /// An output could not be written.
    #[error("output {path}")]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A worker panicked.
    #[error("a worker failed: {message}")]
    WorkerFailed {
        /// The panic's message, as timely reports it.
        message: String,
    },
    /// Kafka could not be set up or flushed.
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// Messages were not acknowledged by the broker.
    #[error("{failed} messages were not delivered to Kafka")]
    Delivery {
        /// Messages the broker did not acknowledge.
        failed: u64,
    },
    /// A checkpoint could not be read or decoded.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// Where the input events come from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A recorded dataset replayed from memory (each worker takes its share).
    Replay {
        /// The cascades.
        dataset: Arc<Dataset>,
        /// Replay speed (event seconds per wall second), or as fast as possible.
        pace: Option<f64>,
    },
    /// The `tweets` topic.
    Kafka(KafkaSourceSpec),
}

/// A whole job: source, dataflow configuration, sinks, cluster layout.
#[derive(Debug, Clone)]
pub struct Job {
    /// The dataflow configuration (its `[kafka]` table is used by Kafka sources and sinks).
    pub config: DataflowConfig,
    /// The input.
    pub source: SourceSpec,
    /// Where to write the JSON-lines output files, if anywhere.
    pub out_dir: Option<PathBuf>,
    /// Whether to produce the output topics (and dead letters) to Kafka.
    pub kafka_sink: bool,
    /// Threads and processes.
    pub cluster: Cluster,
    /// Start from the latest model of each window in the `models` topic (ignored when
    /// checkpointing: the checkpoint holds the models).
    pub warm_start: bool,
}

/// What the caller shares with a running job (progress bars, the page, alerts, stopping).
#[derive(Clone, Default)]
pub struct RunHandles {
    /// Input events emitted so far by this process's sources.
    pub events: Arc<AtomicU64>,
    /// Set to stop the sources; the pipeline then drains what it has read and finishes,
    /// without treating the cascades still open as terminated.
    pub shutdown: Arc<AtomicBool>,
    /// The live page's state, fed with this process's predictions and outcomes.
    pub live: Option<LiveView>,
    /// Where predictions above the alert threshold are pushed as Alertmanager alerts.
    pub alertmanager: Option<Arc<Pusher>>,
}

/// The sinks of a run, set up before the workers start.
struct Sinks {
    /// At-least-once Kafka producer of every worker (without checkpoints).
    producer: Option<Arc<CountingProducer>>,
    /// Exactly-once mode: the transactional output's channel (taken by worker 0).
    transactions: Arc<Mutex<Option<SyncSender<OutputBatch>>>>,
    /// Output frontier committed before this run (0 without checkpoints).
    resume_from: Time,
    /// Whether records go out exactly once (checkpointing).
    exactly_once: bool,
}

/// What worker 0 leaves for the caller: the summary and the first write error.
type WorkerResult = (SummaryAccumulator, Option<std::io::Error>);

/// Everything a worker needs, shared by all workers of the process.
struct WorkerShared {
    /// Stage settings.
    settings: StageSettings,
    /// The job (source, config, out dir).
    job: Job,
    /// The sinks.
    sinks: Sinks,
    /// Checkpointing, when on.
    checkpoint: Option<Checkpoint>,
    /// The caller's handles.
    handles: RunHandles,
    /// Worker 0's result.
    result: Mutex<Option<WorkerResult>>,
    /// Kafka source set-up errors (the source then finishes; the run reports the first).
    source_errors: Mutex<Vec<KafkaSetupError>>,
    /// When the run started (throughput gauge).
    started: Instant,
}

/// Runs a job to completion (or, in live mode, until `handles.shutdown` is set). Returns the
/// report on process 0 (worker 0 holds the summary), `None` on the other processes.
pub fn run(job: Job, handles: RunHandles) -> Result<Option<RunReport>, PipelineError> {
    let started = Instant::now();
    let settings = stage_settings(&job)?;
    if let Some(dir) = &job.out_dir {
        // Fail early, in the caller's thread, on an unwritable folder.
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output { path: dir.clone(), source })?;
    }
    let recovery = Recovery::prepare(&job)?;
    let sinks = build_sinks(&job, recovery.as_ref())?;
    let shared = Arc::new(WorkerShared {
        settings,
        checkpoint: recovery.as_ref().map(|r| r.checkpoint.clone()),
        job,
        sinks,
        handles,
        result: Mutex::default(),
        source_errors: Mutex::default(),
        started,
    });
    let timely_config = shared.job.cluster.timely_config();
    let in_workers = shared.clone();
    let guards = timely::execute(timely_config, move |w| worker::run(w, &in_workers))
        .map_err(|message| PipelineError::Timely { message })?;
    for r in guards.join() {
        r.map_err(|message| PipelineError::WorkerFailed { message })?;
    }
    if let Some(recovery) = recovery {
        recovery.finish()?;
    }
    finish(&shared, started)
}

/// The stage settings of the job; a live run continues from the models it published.
fn stage_settings(job: &Job) -> Result<StageSettings, PipelineError> {
    let mut settings = StageSettings::from_config(&job.config)?;
    // With checkpoints the models come back with the rest of the state (and the models
    // topic may hold a crashed run's unfinished transaction until we fence it): no warm start.
    if job.warm_start && job.config.checkpoint.dir.is_none() {
        settings.initial_models = crate::io::kafka::read_latest_models(&job.config.kafka)?;
        tracing::info!(models = settings.initial_models.len(), "warm start from the models topic");
    }
    crate::telemetry::windows_configured(&job.config.pipeline.windows);
    Ok(settings)
}

/// The producers: at least once on every worker, or exactly once through process 0's
/// transactional output when checkpointing.
fn build_sinks(job: &Job, recovery: Option<&Recovery>) -> Result<Sinks, PipelineError> {
    let producer = if job.kafka_sink && recovery.is_none() { Some(Arc::new(job.config.kafka.producer()?)) } else { None };
    let (resume_from, sender) = match recovery {
        Some(r) => (r.resume_from, r.output.as_ref().and_then(|o| o.sender())),
        None => (0, None),
    };
    Ok(Sinks { producer, transactions: Arc::new(Mutex::new(sender)), resume_from, exactly_once: recovery.is_some() })
}

/// The end of the run: flushes the at-least-once producer and reports the first error, or
/// worker 0's summary.
fn finish(shared: &WorkerShared, started: Instant) -> Result<Option<RunReport>, PipelineError> {
    if let Some(producer) = &shared.sinks.producer {
        producer.flush(Duration::from_secs(60)).map_err(|e| PipelineError::Kafka(e.into()))?;
        let failed = producer.stats.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(PipelineError::Delivery { failed });
        }
    }
    if let Some(e) = shared.source_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..).next() {
        return Err(PipelineError::Kafka(e));
    }
    let seconds = started.elapsed().as_secs_f64();
    let taken = shared.result.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    match taken {
        None => Ok(None),
        Some((_, Some(source))) => Err(PipelineError::Output { path: shared.job.out_dir.clone().unwrap_or_default(), source }),
        Some((acc, None)) => Ok(Some(acc.report(seconds))),
    }
}
