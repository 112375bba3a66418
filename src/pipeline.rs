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
use crate::dataflow::{self, sink, source, StageSettings};
use crate::io::files::Dataset;
use crate::io::jsonl::JsonlWriter;
use crate::summary::{RunReport, SummaryAccumulator};
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
}

/// A replay of a recorded dataset through the whole pipeline.
#[derive(Debug, Clone)]
pub struct ReplayJob {
    /// The dataflow configuration.
    pub config: DataflowConfig,
    /// The cascades to replay (each worker takes its share).
    pub dataset: Arc<Dataset>,
    /// Where to write the JSON-lines output files, if anywhere.
    pub out_dir: Option<PathBuf>,
    /// Threads and processes.
    pub cluster: Cluster,
    /// Replay speed (event seconds per wall second), or as fast as possible.
    pub pace: Option<f64>,
}

/// Counters shared with the caller while a job runs (progress bars, metrics).
#[derive(Debug, Clone, Default)]
pub struct RunHandles {
    /// Input events emitted so far by this process's sources.
    pub events: Arc<AtomicU64>,
    /// Set to stop the sources early; the pipeline then drains and finishes.
    pub shutdown: Arc<AtomicBool>,
}

/// Runs a replay job to completion. Returns the report on process 0 (worker 0 holds the
/// summary), `None` on the other processes.
pub fn run_replay(job: ReplayJob, handles: RunHandles) -> Result<Option<RunReport>, PipelineError> {
    let settings = StageSettings::from_config(&job.config)?;
    let timely_config = job.cluster.timely_config()?;
    let started = Instant::now();
    let input = job.config.input.clone();
    let out_dir = job.out_dir.clone();
    if let Some(dir) = &out_dir {
        // Fail early, in the caller's thread, on an unwritable folder.
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output { path: dir.clone(), source })?;
    }
    let result: Arc<Mutex<Option<(SummaryAccumulator, Option<std::io::Error>)>>> = Arc::default();
    let result_in = result.clone();
    let dataset = job.dataset.clone();
    let pace = job.pace;
    let worker_handles = handles.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let timeline = crate::replay::worker_timeline(&dataset, input.random_start_range, input.seed, index, peers);
        let acc = Rc::new(RefCell::new(SummaryAccumulator::default()));
        let write_error: Rc<RefCell<Option<std::io::Error>>> = Rc::default();
        let writer = match (&out_dir, index) {
            (Some(dir), 0) => match JsonlWriter::create(dir) {
                Ok(w) => Some(w),
                Err(e) => {
                    write_error.borrow_mut().replace(e);
                    None
                }
            },
            _ => None,
        };
        let probe = ProbeHandle::<Time>::new();
        worker.dataflow::<Time, _, _>(|scope| {
            let events = source::replay(scope, timeline, pace, worker_handles.events.clone(), worker_handles.shutdown.clone());
            let streams = dataflow::build(events, &settings, out_dir.is_some());
            if let Some(records) = streams.records {
                sink::write_records(records.probe_with(&probe), writer, write_error.clone());
            }
            sink::fold_summary(streams.summary.probe_with(&probe), acc.clone());
        });
        while worker.step_or_park(Some(Duration::from_millis(50))) {}
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
    let seconds = started.elapsed().as_secs_f64();
    // Every process replays its share of the same dataset; the total is the dataset's size
    // unless the run was stopped early, when only this process's count is known.
    let events = if handles.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        handles.events.load(std::sync::atomic::Ordering::Relaxed)
    } else {
        job.dataset.events() as u64
    };
    let taken = result.lock().map_err(|e| PipelineError::Worker(e.to_string()))?.take();
    match taken {
        None => Ok(None),
        Some((_, Some(source))) => {
            Err(PipelineError::Output { path: job.out_dir.clone().unwrap_or_default(), source })
        }
        Some((acc, None)) => Ok(Some(acc.report(events, seconds))),
    }
}
