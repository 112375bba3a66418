//! Runs a job: a source, the dataflow and its sinks, on timely workers (threads and
//! processes). Entry points take their inputs and a shutdown flag, so that the binary, the
//! embedded mode and the tests all call the same function.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use crate::config::{ConfigError, DataflowConfig};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concatenate, Inspect, OkErr};

use crate::checkpoint::{CheckpointStore, Checkpointing, RestoredState, SharedSourceCuts};
use crate::dataflow::source::kafka::{self, KafkaSourceSpec};
use crate::io::kafka_tx::{OutRecord, TransactionalOutput};
use crate::dataflow::{self, sink, source, StageSettings};
use crate::io::files::Dataset;
use crate::io::jsonl::JsonlWriter;
use crate::observe::summary::{RunReport, SummaryAccumulator};
use crate::Time;

/// How the timely computation is laid out (timely's `-w -n -p -h`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process (`-w`).
    pub threads: usize,
    /// Number of processes (`-n`).
    pub processes: usize,
    /// This process's index (`-p`).
    pub process: usize,
    /// `host:port` of every process, in index order (from `-h`, else localhost:2101+i).
    pub addresses: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self { threads: 1, processes: 1, process: 0, addresses: Vec::new() }
    }
}

impl Cluster {
    /// The timely configuration.
    pub fn timely_config(&self) -> Result<timely::Config, PipelineError> {
        if self.threads == 0 || self.processes == 0 {
            return Err(PipelineError::Cluster("-w and -n must be at least 1".into()));
        }
        if self.process >= self.processes {
            return Err(PipelineError::Cluster(format!("-p {} must be below -n {}", self.process, self.processes)));
        }
        let communication = if self.processes == 1 {
            if self.threads == 1 {
                timely::CommunicationConfig::Thread
            } else {
                timely::CommunicationConfig::Process(self.threads)
            }
        } else {
            let addresses = if self.addresses.is_empty() {
                (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()
            } else if self.addresses.len() < self.processes {
                return Err(PipelineError::Cluster(format!(
                    "the hostfile has {} addresses but -n is {}",
                    self.addresses.len(),
                    self.processes
                )));
            } else {
                self.addresses[..self.processes].to_vec()
            };
            timely::CommunicationConfig::Cluster {
                threads: self.threads,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad cluster layout.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Timely could not start (e.g. a peer address could not be bound).
    #[error("timely: {0}")]
    Timely(String),
    /// An output could not be written.
    #[error("output {path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
    /// A worker panicked.
    #[error("a worker failed: {0}")]
    Worker(String),
    /// Kafka could not be set up or flushed.
    #[error(transparent)]
    Kafka(#[from] crate::io::kafka::KafkaSetupError),
    /// Messages were not acknowledged by the broker.
    #[error("{0} messages were not delivered to Kafka")]
    Delivery(u64),
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

/// Counters shared with the caller while a job runs (progress bars, metrics).
#[derive(Debug, Clone, Default)]
pub struct RunHandles {
    /// Input events emitted so far by this process's sources.
    pub events: Arc<AtomicU64>,
    /// Set to stop the sources; the pipeline then drains what it has read and finishes,
    /// without treating the cascades still open as terminated.
    pub shutdown: Arc<AtomicBool>,
}

/// Exactly-once mode: where checkpoints go, what a restart resumes from, and (process 0)
/// the transactional output.
struct Recovery {
    /// Handed to every operator.
    checkpointing: Checkpointing,
    /// Process 0: the transactional producer thread.
    output: Option<TransactionalOutput>,
    /// The output frontier committed before this run.
    resume_from: Time,
}

impl Recovery {
    /// `None` unless the job checkpoints (a checkpoint folder, a Kafka source and sink).
    /// Process 0 fences the previous run's producer and reads the committed output frontier
    /// B; every process reads B (the same value: nothing commits before all processes have
    /// joined the computation), then loads the newest complete checkpoint at or below B.
    fn prepare(job: &Job) -> Result<Option<Self>, PipelineError> {
        let ck = &job.config.checkpoint;
        let Some(dir) = &ck.dir else { return Ok(None) };
        if !matches!(job.source, SourceSpec::Kafka(_)) || !job.kafka_sink {
            return Err(PipelineError::Config(ConfigError::Invalid(
                "checkpointing needs the Kafka source and sink (live or backtest)".into(),
            )));
        }
        let kafka = &job.config.kafka;
        crate::io::kafka::ensure_topics(kafka, &[&kafka.topics.progress], 1)?;
        let output = if job.cluster.process == 0 { Some(TransactionalOutput::start(kafka)?) } else { None };
        let resume_from = match &output {
            Some(o) => o.resume_from,
            None => crate::io::kafka_tx::read_committed_frontier(kafka, &kafka.transactional_id())?.unwrap_or(0),
        };
        let store = CheckpointStore::open(dir, ck.retention).map_err(|e| PipelineError::Checkpoint(e.into()))?;
        let restored = match store.latest(resume_from).map_err(|e| PipelineError::Checkpoint(e.into()))? {
            Some(loaded) => {
                let started = Instant::now();
                let state = RestoredState::decode(&loaded).map_err(PipelineError::Checkpoint)?;
                tracing::info!(time = loaded.time, peers = loaded.peers, bytes = loaded.bytes, resume_from,
                    decode_ms = started.elapsed().as_millis() as u64, "resuming from a checkpoint");
                crate::telemetry::checkpoint_restored(loaded.time);
                Some(Arc::new(state))
            }
            None => {
                if resume_from > 0 {
                    tracing::warn!(resume_from, "no usable checkpoint at or below the committed output frontier; replaying from the beginning");
                }
                None
            }
        };
        let committed = output.as_ref().map_or_else(|| Arc::new(AtomicU64::new(resume_from)), |o| o.committed.clone());
        let checkpointing = Checkpointing { store: Arc::new(store), interval: ck.interval, restored, committed };
        Ok(Some(Self { checkpointing, output, resume_from }))
    }
}

/// What worker 0 leaves for the caller.
type WorkerResult = (SummaryAccumulator, Option<std::io::Error>);

/// Runs a job to completion (or, in live mode, until `handles.shutdown` is set). Returns the
/// report on process 0 (worker 0 holds the summary), `None` on the other processes.
pub fn run(job: Job, handles: RunHandles) -> Result<Option<RunReport>, PipelineError> {
    let mut settings = StageSettings::from_config(&job.config)?;
    // With checkpoints the models come back with the rest of the state (and the models
    // topic may hold a crashed run's unfinished transaction until we fence it): no warm start.
    if job.warm_start && job.config.checkpoint.dir.is_none() {
        settings.initial_models = crate::io::kafka::read_latest_models(&job.config.kafka)?;
        tracing::info!(models = settings.initial_models.len(), "warm start from the models topic");
    }
    crate::telemetry::windows_configured(&job.config.pipeline.windows);
    crate::observe::live::configure(job.config.pipeline.alert_threshold);
    let timely_config = job.cluster.timely_config()?;
    let started = Instant::now();
    let input = job.config.input.clone();
    let kafka = job.config.kafka.clone();
    if let Some(dir) = &job.out_dir {
        // Fail early, in the caller's thread, on an unwritable folder.
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output { path: dir.clone(), source })?;
    }
    // Exactly-once mode: checkpoints + transactional output (Kafka source and sink only).
    let recovery = Recovery::prepare(&job)?;
    let producer = if job.kafka_sink && recovery.is_none() {
        Some(Arc::new(kafka.producer().map_err(PipelineError::Kafka)?))
    } else {
        None
    };
    let checkpointing = recovery.as_ref().map(|r| r.checkpointing.clone());
    let (resume_from, tx_sender) = match recovery.as_ref().and_then(|r| r.output.as_ref()) {
        Some(o) => (o.resume_from, o.sender()),
        None => (recovery.as_ref().map_or(0, |r| r.resume_from), None),
    };
    let tx_sender = Arc::new(Mutex::new(tx_sender));
    let exactly_once = recovery.is_some();
    let result: Arc<Mutex<Option<WorkerResult>>> = Arc::default();
    let source_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (result_in, errors_in, producer_in) = (result.clone(), source_errors.clone(), producer.clone());
    let (source_spec, out_dir) = (job.source.clone(), job.out_dir.clone());
    let worker_handles = handles.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let index = worker.index();
        let acc = Rc::new(RefCell::new(SummaryAccumulator::default()));
        let write_error: Rc<RefCell<Option<std::io::Error>>> = Rc::default();
        let writer = match (&out_dir, index) {
            (Some(dir), 0) => JsonlWriter::create(dir).map_err(|e| write_error.borrow_mut().replace(e)).ok(),
            _ => None,
        };
        let probe = ProbeHandle::<Time>::new();
        // The source's offsets at each boundary, for this worker's window stage to write.
        let cuts: SharedSourceCuts = Rc::default();
        let checkpoint = checkpointing.clone().map(|c| (c, cuts.clone()));
        let tx_sender = if index == 0 { tx_sender.lock().ok().and_then(|mut s| s.take()) } else { None };
        worker.dataflow::<Time, _, _>(|scope| {
            let (events, dead_letters) = match &source_spec {
                SourceSpec::Replay { dataset, pace } => {
                    let timeline = crate::io::timeline::worker_timeline(dataset, input.random_start_range, input.seed, index, scope.peers());
                    let events = source::replay(scope, timeline, *pace, worker_handles.events.clone(), worker_handles.shutdown.clone());
                    (events, None)
                }
                SourceSpec::Kafka(spec) => {
                    let items = kafka::kafka_source(
                        scope,
                        spec.clone(),
                        worker_handles.events.clone(),
                        worker_handles.shutdown.clone(),
                        errors_in.clone(),
                        checkpoint.clone(),
                    );
                    let (events, dead) = items.ok_err(|x| x);
                    (events, Some(dead))
                }
            };
            let want_records = out_dir.is_some() || producer_in.is_some() || exactly_once;
            let streams = dataflow::build(events, &settings, want_records, worker_handles.shutdown.clone(), checkpoint);
            let dead_letters = match dead_letters {
                Some(d) => scope.concatenate(vec![d, streams.dead_letters]),
                None => streams.dead_letters,
            };
            let summary = scope.concatenate(vec![
                streams.summary,
                dataflow::count_rejections(dead_letters.clone()),
            ]);
            if let Some(records) = streams.records {
                let records = records.probe_with(&probe);
                if let Some(producer) = &producer_in {
                    sink::produce_records(records.clone(), producer.clone(), kafka.topics.clone());
                    sink::produce_dead_letters(dead_letters.clone().probe_with(&probe), producer.clone(), kafka.topics.dead_letters.clone());
                }
                if exactly_once {
                    let topics = kafka.topics.clone();
                    let dead_topic = kafka.topics.dead_letters.clone();
                    let all = scope.concatenate(vec![
                        records.clone().map(move |r| OutRecord { topic: topics.of(r.sort_key.0).to_owned(), key: r.key, value: r.value }),
                        dead_letters.clone().probe_with(&probe).map(move |d| OutRecord {
                            topic: dead_topic.clone(),
                            key: Some(d.reason.as_str().to_owned()),
                            value: d.to_json(),
                        }),
                    ]);
                    sink::produce_exactly_once(all, tx_sender.clone(), resume_from, worker_handles.shutdown.clone());
                }
                if out_dir.is_some() {
                    sink::write_records(records, writer, write_error.clone());
                }
            }
            let summary = summary.inspect(crate::telemetry::summary_event);
            streams.live.inspect_core(|event| {
                if let Ok((stamp, data)) = event {
                    let time = stamp.iter().next().copied().unwrap_or_default();
                    for e in data {
                        match e {
                            dataflow::LiveEvent::Prediction(p) => crate::observe::live::prediction(time, p),
                            dataflow::LiveEvent::Outcome(o) => crate::observe::live::outcome(time, o),
                        }
                    }
                }
            });
            let fold = acc.clone();
            sink::fold_on_worker_0(summary.probe_with(&probe), move |e| fold.borrow_mut().add(e));
        });
        let mut last_frontier = None;
        let mut last_rate = Instant::now();
        while worker.step_or_park(Some(Duration::from_millis(50))) {
            let frontier = probe.with_frontier(|f| f.first().copied());
            if index == 0 && frontier != last_frontier {
                crate::telemetry::frontier(frontier);
                last_frontier = frontier;
            }
            if index == 0 && last_rate.elapsed() > Duration::from_millis(500) {
                last_rate = Instant::now();
                let events = worker_handles.events.load(std::sync::atomic::Ordering::Relaxed) as f64;
                crate::telemetry::throughput(events / started.elapsed().as_secs_f64().max(1e-9));
            }
        }
        if index == 0 {
            crate::telemetry::frontier(None);
        }
        if index == 0 {
            let acc = acc.borrow().clone();
            let err = write_error.borrow_mut().take();
            *result_in.lock().expect("no worker panicked holding the lock") = Some((acc, err));
        }
    })
    .map_err(PipelineError::Timely)?;
    for r in guards.join() {
        r.map_err(PipelineError::Worker)?;
    }
    if let Some(recovery) = recovery {
        let committed = recovery.checkpointing.committed.clone();
        if let Some(output) = recovery.output {
            let records = output.finish()?;
            tracing::info!(records, "output transactions done");
            let (parts, bytes, seconds) = crate::telemetry::checkpoint_totals();
            tracing::info!(parts, bytes, write_ms = (seconds * 1000.0).round() as u64, "checkpoints written by this process");
            // Incomplete checkpoints written while the run ended are pruned with the rest.
            let committed = committed.load(std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = recovery.checkpointing.store.prune(committed) {
                tracing::warn!(error = %e, "pruning old checkpoints failed");
            }
        }
    }
    if let Some(producer) = &producer {
        producer.flush(Duration::from_secs(60)).map_err(|e| PipelineError::Kafka(e.into()))?;
        let failed = producer.stats.failed.load(std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            return Err(PipelineError::Delivery(failed));
        }
    }
    if let Some(e) = source_errors.lock().map_err(|e| PipelineError::Worker(e.to_string()))?.first() {
        return Err(PipelineError::Kafka(crate::io::kafka::KafkaSetupError::Invalid(e.clone())));
    }
    let seconds = started.elapsed().as_secs_f64();
    let taken = result.lock().map_err(|e| PipelineError::Worker(e.to_string()))?.take();
    match taken {
        None => Ok(None),
        Some((_, Some(source))) => Err(PipelineError::Output { path: job.out_dir.clone().unwrap_or_default(), source }),
        Some((acc, None)) => Ok(Some(acc.report(seconds))),
    }
}
