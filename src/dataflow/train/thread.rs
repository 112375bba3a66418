//! The worker's training thread: forests train beside the dataflow, and come back in the
//! order they were submitted.

use std::collections::VecDeque;
use std::sync::mpsc;

use timely::dataflow::operators::Capability;
use timely::scheduling::SyncActivator;

use super::trainer::{WindowJob, WindowResult};
use crate::Time;

/// Most training runs one worker has in flight at once; beyond it, the worker waits for
/// the oldest (bounds memory when samples arrive faster than forests train).
pub const MAX_RUNS_IN_FLIGHT: usize = 4;

/// The worker's training thread. Training (learned model, forest, SEISMIC correction) is the heaviest
/// step of the pipeline, tens of milliseconds a run: inline it stalls the worker's window
/// and estimate stages and, live, every prediction queued behind it. Runs are pure
/// ([`WindowJob::run`]) and come back in submission order, and each model is still emitted at
/// its planned time, so outputs do not change; only the wall-clock overlap does.
pub struct TrainingThread {
    /// Jobs to run, in order (dropping it ends the thread).
    jobs: mpsc::Sender<WindowJob>,
    /// Their results, in the same order.
    results: mpsc::Receiver<WindowResult>,
}

impl TrainingThread {
    /// Starts the thread; it wakes the operator after each run. `None` if no thread can be
    /// started (the operator then trains inline).
    pub fn start(activator: SyncActivator) -> Option<Self> {
        let (jobs, job_rx) = mpsc::channel::<WindowJob>();
        let (result_tx, results) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("tweetoscope-train".into()).spawn(move || {
            for job in job_rx {
                if result_tx.send(job.run()).is_err() || activator.activate().is_err() {
                    break; // the operator is gone
                }
            }
        });
        match spawned {
            Ok(_) => Some(Self { jobs, results }),
            Err(e) => {
                tracing::warn!(error = %e, "could not start a training thread; training inline");
                None
            }
        }
    }

    /// Hands a job to the thread; the job comes back (boxed: it is large) when the thread
    /// has died.
    pub fn submit(&self, job: WindowJob) -> Result<(), Box<WindowJob>> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| Box::new(job))
    }
}

/// How long [`ended_runs`] waits for the training thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Only the runs that have already ended.
    None,
    /// At least the oldest run (to make room for a new one).
    Oldest,
    /// Every run in flight (before a checkpoint part, or before training inline).
    All,
}

/// The runs that have ended, oldest first, with their capabilities. If the thread died (a
/// run panicked), the runs still in flight are dropped with an error rather than holding
/// event time forever.
pub fn ended_runs(
    thread: Option<&TrainingThread>,
    in_flight: &mut VecDeque<Capability<Time>>,
    wait: Wait,
) -> Vec<(Capability<Time>, WindowResult)> {
    let mut ended = Vec::new();
    let Some(th) = thread else { return ended };
    while !in_flight.is_empty() {
        let must = wait == Wait::All || (wait == Wait::Oldest && ended.is_empty());
        let result = if must { th.results.recv().map_err(|_| mpsc::TryRecvError::Disconnected) } else { th.results.try_recv() };
        match result {
            Ok(r) => ended.push((in_flight.pop_front().expect("one capability per run"), r)),
            Err(mpsc::TryRecvError::Empty) => break,
            Err(mpsc::TryRecvError::Disconnected) => {
                tracing::error!(runs = in_flight.len(), "the training thread stopped; its runs in flight are lost");
                in_flight.clear();
            }
        }
    }
    ended
}
