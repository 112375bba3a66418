//! Runs a job: a source, the dataflow and its sinks, on timely workers (threads and
//! processes). Entry points take their inputs, handles and a shutdown flag, so that the
//! binary, the embedded mode and the tests all call the same function.
//!
//! [`run`] is five named steps: with several processes, the start-up of the cluster (every
//! pair connected, every process agreeing on what it runs: `handshake`, [`fingerprint`],
//! then `control` for the run), the stage settings (with a warm start), recovery (the
//! checkpoint to resume from and the exactly-once output), the sinks, then the execution of
//! the dataflow on every worker (`worker`) and the end of the run (flushes, the report).
//!
//! Every process builds the same dataflow whatever its per-process options: the options
//! that change the dataflow's shape are in the fingerprint, except `--out`, of which only
//! process 0's counts and every process learns it at start-up.

pub mod cluster;
mod control;
pub mod fingerprint;
mod handshake;
mod recovery;
mod worker;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use self::cluster::{signal_name, Cluster, ClusterError, DEFAULT_CONNECT_TIMEOUT};
use self::control::Link;
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
    /// Bad cluster layout, or the cluster could not start or lost a process (the message
    /// names the process and its address).
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
// One per job: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Where to write the JSON-lines output files, if anywhere: process 0 writes them (the
    /// sink gathers every record on worker 0), other processes ignore it.
    pub out_dir: Option<PathBuf>,
    /// Whether to produce the output topics (and dead letters) to Kafka.
    pub kafka_sink: bool,
    /// Threads and processes.
    pub cluster: Cluster,
    /// Start from the latest model of each window in the `models` topic (ignored when
    /// checkpointing: the checkpoint holds the models).
    pub warm_start: bool,
    /// Start from these models (a models file of an earlier run: `run --models`); empty for
    /// a cold start (or the `models` topic with `warm_start`).
    pub initial_models: Vec<crate::records::Model>,
    /// Build the live views (`dataflow::views`): the page's cluster-wide state. Part of the
    /// fingerprint (the dataflow's shape depends on it); off when no process serves HTTP.
    pub views: bool,
}

/// Why a run was asked to stop: the signal, and the process that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopCause {
    /// The signal number (2 SIGINT, 15 SIGTERM; 0 when stopped otherwise).
    pub signal: i32,
    /// The process that received it (this one, or a peer that passed the stop on).
    pub process: usize,
}

impl StopCause {
    /// 128 + the signal, as a shell reports a process ended by it (1 without a signal).
    pub fn exit_code(&self) -> i32 {
        if self.signal > 0 {
            128 + self.signal
        } else {
            1
        }
    }
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} received {}", self.process, signal_name(self.signal))
    }
}

/// What the caller shares with a running job (progress bars, the page, alerts, stopping).
#[derive(Clone, Default)]
pub struct RunHandles {
    /// Input events emitted so far by this process's sources.
    pub events: Arc<AtomicU64>,
    /// Set to stop the sources; the pipeline then drains what it has read and finishes,
    /// without treating the cascades still open as terminated. In a cluster, a stop is
    /// passed on to every process.
    pub shutdown: Arc<AtomicBool>,
    /// Why `shutdown` was set (the first cause wins): see [`RunHandles::stop`].
    pub stop_cause: Arc<Mutex<Option<StopCause>>>,
    /// The live page's state, fed with this process's predictions and outcomes.
    pub live: Option<LiveView>,
    /// Where predictions above the alert threshold are pushed as Alertmanager alerts.
    pub alertmanager: Option<Arc<Pusher>>,
}

impl RunHandles {
    /// Stops the run (every process of a cluster), remembering the first cause.
    pub fn stop(&self, cause: StopCause) {
        self.stop_cause.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(cause);
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Why the run was stopped, if it was by [`RunHandles::stop`].
    pub fn stop_cause(&self) -> Option<StopCause> {
        *self.stop_cause.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
    /// Alerts before this time were pushed to Alertmanager before this run.
    alerts_from: Time,
}

/// What worker 0 leaves for the caller: the summary and the first write error.
type WorkerResult = (SummaryAccumulator, Option<std::io::Error>);

/// Everything a worker needs, shared by all workers of the process.
struct WorkerShared {
    /// Stage settings.
    settings: StageSettings,
    /// The job (source, config).
    job: Job,
    /// Where this process writes the output files (process 0 only).
    out_dir: Option<PathBuf>,
    /// Whether the file sink exists (process 0 writes files): agreed by every process.
    files: bool,
    /// Whether the output records are built (files or Kafka): agreed by every process.
    records: bool,
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
}

/// Runs a job to completion (or, in live mode, until `handles.shutdown` is set). Returns the
/// report on process 0 (worker 0 holds the summary), `None` on the other processes.
///
/// With several processes, start-up first connects them all and checks that they agree
/// (the command, the config, the input, `-w`, `-n`, the version), within the cluster's
/// connect timeout; a process that fails later tells the others why.
pub fn run(job: Job, handles: RunHandles) -> Result<Option<RunReport>, PipelineError> {
    let started = Instant::now();
    // Only process 0 writes files (worker 0 gathers the records).
    let out_dir = job.out_dir.clone().filter(|_| job.cluster.process() == 0);
    if let Some(dir) = &out_dir {
        // Fail early, in the caller's thread, on an unwritable folder.
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output { path: dir.clone(), source })?;
    }
    let mut link = Link::start(&job, out_dir.is_some(), &handles)?;
    let files = link.as_ref().map_or(out_dir.is_some(), Link::process0_writes_files);
    let result = run_connected(job, handles, out_dir, files, link.as_mut(), started);
    if let (Err(e), Some(link)) = (&result, &link) {
        link.abort(&e.to_string());
    }
    result
}

/// The rest of [`run`], once every process is there.
fn run_connected(
    job: Job,
    handles: RunHandles,
    out_dir: Option<PathBuf>,
    files: bool,
    mut link: Option<&mut Link>,
    started: Instant,
) -> Result<Option<RunReport>, PipelineError> {
    let settings = stage_settings(&job)?;
    let recovery = Recovery::prepare(&job)?;
    let mut sinks = build_sinks(&job, recovery.as_ref())?;
    sinks.alerts_from = gate_alerts(&job, &handles, recovery.as_ref());
    let records = files || sinks.producer.is_some() || sinks.exactly_once;
    let shared = Arc::new(WorkerShared {
        settings,
        checkpoint: recovery.as_ref().map(|r| r.checkpoint.clone()),
        job,
        out_dir,
        files,
        records,
        sinks,
        handles,
        result: Mutex::default(),
        source_errors: Mutex::default(),
    });
    let data = link.as_deref_mut().map(Link::take_data);
    let in_workers = shared.clone();
    let guards = execute(&shared.job.cluster, data, move |w| worker::run(w, &in_workers))?;
    let joined = guards.join();
    for r in joined {
        r.map_err(|message| PipelineError::WorkerFailed { message })?;
    }
    // The dataflow is complete on every process: the peers may leave.
    if let Some(link) = link {
        link.finish();
    }
    if let Some(recovery) = recovery {
        recovery.finish()?;
    }
    finish(&shared, started)
}

/// Starts the workers: timely's own set-up for one process, or the connections made by
/// `handshake` for several (timely's networking from our sockets).
fn execute<F>(
    cluster: &Cluster,
    data: Option<Vec<Option<TcpStream>>>,
    work: F,
) -> Result<timely::communication::WorkerGuards<()>, PipelineError>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    let timely_error = |message: String| PipelineError::Timely { message };
    let Some(sockets) = data else {
        return timely::execute(cluster.timely_config(), work).map_err(timely_error);
    };
    let hooks = timely::communication::Hooks::default();
    let threads = cluster.threads_per_process();
    let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, comms) = initialize_networking_from_sockets(local, sockets, cluster.process(), threads, hooks)
        .map_err(|e| timely_error(e.to_string()))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(comms), timely::WorkerConfig::default(), work).map_err(timely_error)
}

/// The stage settings of the job; a live run continues from the models it published.
fn stage_settings(job: &Job) -> Result<StageSettings, PipelineError> {
    let mut settings = StageSettings::from_config(&job.config)?;
    settings.initial_models = job.initial_models.clone();
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
    Ok(Sinks {
        producer,
        transactions: Arc::new(Mutex::new(sender)),
        resume_from,
        exactly_once: recovery.is_some(),
        alerts_from: resume_from,
    })
}

/// Exactly once: Alertmanager gets an alert once its output is committed, and a restart
/// pushes from where the previous run's pushes stopped (recorded beside the checkpoints; see
/// `observe::alertmanager`). Returns the time from which the alert sink pushes.
fn gate_alerts(job: &Job, handles: &RunHandles, recovery: Option<&Recovery>) -> Time {
    let Some(recovery) = recovery else { return 0 };
    match (&handles.alertmanager, &recovery.output, &job.config.checkpoint.dir) {
        (Some(pusher), Some(output), Some(dir)) => {
            pusher.gate(output.committed.clone(), Some(dir.join(ALERTS_PUSHED)), recovery.resume_from)
        }
        _ => recovery.resume_from,
    }
}

/// The file (in the checkpoint folder) where process 0 records up to which event time every
/// alert was pushed to Alertmanager.
const ALERTS_PUSHED: &str = "alertmanager-pushed";

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
        Some((_, Some(source))) => Err(PipelineError::Output { path: shared.out_dir.clone().unwrap_or_default(), source }),
        Some((acc, None)) => Ok(Some(acc.report(seconds))),
    }
}
