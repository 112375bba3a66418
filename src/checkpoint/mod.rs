//! Consistent checkpoints of the whole dataflow, and recovery from them.
//!
//! Timely has no fault tolerance: when one process dies the computation stops. We make it
//! restartable ourselves, in event time:
//!
//! - **Cut.** A checkpoint is taken at every multiple F of `interval` (event-time seconds)
//!   that the frontier crosses. Every stage processes times in order, so "the state after
//!   every time < F and before any time ≥ F" is well defined for each operator, and the
//!   union of those states over operators and workers is a consistent cut. Each operator
//!   writes its part when its own input frontier passes F; the source records the Kafka
//!   offsets it had read when its capability passed F (the source stage's `SourceCuts`) and the window stage
//!   of the same worker writes them. Records in flight across the cut are saved by the
//!   operator that holds them (the window stage saves events stamped before F but timed
//!   after it; the train stage saves the models it emitted in the last δ seconds, which
//!   reach `predict` through the feedback loop after F).
//! - **Shards, not workers.** Parts hold records keyed by cascade (window, outcome), window
//!   (train) or partition (source); a restart with any number of workers or processes
//!   reads every part and keeps the records it now owns (timely routes `hash % peers`).
//! - **Atomic and verified.** See [`store`]: a checkpoint is used only when all of its
//!   parts are present and intact, otherwise the previous complete one is.
//! - **Outputs exactly once.** The Kafka sink commits outputs in transactions together with
//!   the output frontier B (every record at a time < B is committed). A restart resumes from
//!   the newest complete checkpoint F ≤ B and suppresses regenerated records at times < B:
//!   outputs are a deterministic function of event time, so those are exactly the ones
//!   already committed (see `dataflow::sink`).

pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
pub use store::{CheckpointStore, LoadedCheckpoint, StoreError};

use crate::Time;

/// When and where checkpoints are written (`[checkpoint]` in a dataflow config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Folder of the checkpoints (a PersistentVolumeClaim on Kubernetes); none disables
    /// checkpointing. Only Kafka sources checkpoint (a file replay restarts from its file).
    pub dir: Option<PathBuf>,
    /// Event-time seconds between checkpoints: a restart replays at most about this much
    /// input (plus what the output frontier lags).
    pub interval: Time,
    /// Complete checkpoints kept (older ones are deleted as new ones complete).
    pub retention: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { dir: None, interval: 3600, retention: 3 }
    }
}

impl CheckpointConfig {
    /// Range rules: the key at fault and the rule it breaks.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.interval == 0 {
            return Err(("checkpoint.interval", "must be at least 1 s"));
        }
        if self.retention == 0 {
            return Err(("checkpoint.retention", "must be at least 1"));
        }
        Ok(())
    }
}

/// A stage's part of a checkpoint: what one worker of the stage holds at a boundary F.
///
/// Each stage defines its part type and implements this trait; the layer stores parts by
/// stage name and never needs to know a stage (stages depend on it, not the other way).
pub trait StagePart: Serialize + DeserializeOwned {
    /// The stage's name: in the part files' names and headers, and in the completeness
    /// check (a checkpoint is complete when every stage has a part from every worker).
    const STAGE: &'static str;
}

/// Errors while encoding or decoding parts.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A part could not be (de)serialised.
    #[error("checkpoint part of stage {stage}: {message}")]
    Codec {
        /// The stage whose part it is.
        stage: &'static str,
        /// What the codec said.
        message: String,
    },
}

/// The boundaries F = k·interval an operator has to snapshot at as its frontier advances.
///
/// The first frontier seen (or the restored checkpoint's F) is the origin: boundaries at or
/// below it are not snapshotted, so that the jump from time 0 to the first event does not
/// produce one checkpoint per interval since 1970. Workers may see different first
/// frontiers; a boundary some worker skipped just gives an incomplete checkpoint, which the
/// loader ignores.
#[derive(Debug, Clone)]
pub struct Boundaries {
    interval: Time,
    /// The last boundary handled (or the origin).
    last: Option<Time>,
}

/// More boundaries than this in one step restart the origin instead (an idle gap in the
/// input must not write thousands of identical checkpoints).
const MAX_BOUNDARIES_PER_STEP: Time = 16;

impl Boundaries {
    /// Boundaries every `interval`, counting from `origin` if known (a restored checkpoint).
    pub fn new(interval: Time, origin: Option<Time>) -> Self {
        Self { interval: interval.max(1), last: origin }
    }

    /// The boundaries F with last < F ≤ `upto`, in increasing order (consumed: each is
    /// returned once). `upto` is a time all of whose predecessors are complete.
    pub fn crossed(&mut self, upto: Time) -> Vec<Time> {
        let Some(last) = self.last else {
            if upto > 0 {
                self.last = Some(upto);
            }
            return Vec::new();
        };
        if upto <= last {
            return Vec::new();
        }
        let first = (last / self.interval + 1).saturating_mul(self.interval);
        if first > upto {
            return Vec::new();
        }
        let count = (upto - first) / self.interval + 1;
        if count > MAX_BOUNDARIES_PER_STEP {
            self.last = Some(upto);
            return Vec::new();
        }
        let out: Vec<Time> = (0..count).map(|k| first + k * self.interval).collect();
        self.last = out.last().copied();
        out
    }
}

/// What the operators of one worker need to checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// Where parts are written (by `writer`'s thread).
    store: Arc<CheckpointStore>,
    /// Event-time seconds between checkpoints.
    interval: Time,
    /// F of the checkpoint this run resumes from, if any: the boundaries' origin.
    restored_at: Option<Time>,
    /// The output frontier committed downstream (kept by the sink; pruning never deletes
    /// the newest checkpoint at or below it).
    committed: Arc<AtomicU64>,
    /// The thread that writes the parts the workers encode, so that a worker never waits
    /// for a file's fsyncs (shared by every clone: one per process).
    writer: Arc<PartWriter>,
}

impl Checkpointing {
    /// Checkpoints every `interval` event-time seconds into `store`, counting from
    /// `restored_at` (the checkpoint this run resumes from, if any); `committed` is the
    /// output frontier the sink has committed. Starts the process's part writer thread:
    /// call [`Checkpointing::flush`] before relying on the parts being on disk.
    pub fn new(
        store: Arc<CheckpointStore>,
        interval: Time,
        restored_at: Option<Time>,
        committed: Arc<AtomicU64>,
    ) -> Result<Self, CheckpointError> {
        let writer = Arc::new(PartWriter::start(store.clone(), committed.clone())?);
        Ok(Self { store, interval: interval.max(1), restored_at, committed, writer })
    }

    /// The store the parts go to.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// The output frontier committed downstream.
    pub fn committed(&self) -> Time {
        self.committed.load(Ordering::Relaxed)
    }

    /// The boundary tracker of an operator (origin: the restored F, if any).
    pub fn boundaries(&self) -> Boundaries {
        Boundaries::new(self.interval, self.restored_at)
    }

    /// Encodes this worker's part of checkpoint `time` and queues it for the writer thread
    /// (waiting only while [`PENDING_PARTS`] parts are queued). Failures are logged and
    /// counted, never fatal: the checkpoint is then incomplete and a restart uses an older
    /// one.
    pub fn write<P: StagePart>(&self, time: Time, index: usize, peers: usize, part: &P) {
        let started = std::time::Instant::now();
        let stage = P::STAGE;
        match postcard::to_stdvec(part) {
            Ok(body) => {
                let part = PendingPart { time, stage, index, peers, body, encoding: started.elapsed() };
                // The writer thread has ended (the run's end, or a panic): written here.
                if let Some(part) = self.writer.queue(part) {
                    write_part(&self.store, &self.committed, part);
                }
            }
            Err(e) => {
                crate::telemetry::checkpoint_failed();
                let e = CheckpointError::Codec { stage, message: e.to_string() };
                tracing::error!(error = %crate::ErrorChain(&e), time, stage, "encoding a checkpoint part failed");
            }
        }
    }

    /// Waits until every part queued so far is written (or has failed), and stops the
    /// writer thread: the end of a run. Parts queued after this are written on the caller's
    /// thread.
    pub fn flush(&self) {
        self.writer.finish();
    }
}

/// Parts queued for the writer thread before a worker waits: a checkpoint is one part per
/// stage and worker, so this is room for a few checkpoints of a process of a few workers.
pub const PENDING_PARTS: usize = 32;

/// One encoded part waiting to be written.
#[derive(Debug)]
struct PendingPart {
    time: Time,
    stage: &'static str,
    index: usize,
    peers: usize,
    body: Vec<u8>,
    /// Time the worker spent encoding it (counted with the write in the telemetry).
    encoding: std::time::Duration,
}

/// The process's checkpoint writer: a thread that writes the parts the workers queue, in
/// the order queued.
///
/// Why a thread: a part is written with two fsyncs (its file's and its folder's); on the
/// worker thread, in a latency run of `dataflows/kafka.toml`, the window stage's part
/// (0.04–0.6 MB) took 2–47 ms and the outcome stage's 1–24 ms, and every output of the times
/// around the checkpoint waited behind them (BENCHMARKS.md, issue 18, fourth pass). Encoding
/// stays on the worker: it reads the operator's state in place.
#[derive(Debug)]
struct PartWriter {
    /// Taken (dropped) by `finish`: the thread ends once the queue is empty.
    sender: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<PendingPart>>>,
    /// Joined by `finish`.
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PartWriter {
    fn start(store: Arc<CheckpointStore>, committed: Arc<AtomicU64>) -> Result<Self, CheckpointError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<PendingPart>(PENDING_PARTS);
        let dir = store.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                for part in receiver {
                    write_part(&store, &committed, part);
                }
            })
            .map_err(|e| StoreError::Io { path: dir, source: e })?;
        Ok(Self { sender: std::sync::Mutex::new(Some(sender)), thread: std::sync::Mutex::new(Some(thread)) })
    }

    /// Queues `part` for the thread, waiting while the queue is full; gives it back when
    /// the thread has ended (`finish`, or it panicked).
    fn queue(&self, part: PendingPart) -> Option<PendingPart> {
        let sender = self.sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match sender {
            Some(sender) => sender.send(part).err().map(|e| e.0),
            None => Some(part),
        }
    }

    fn finish(&self) {
        self.sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(Err(_)) = thread.map(std::thread::JoinHandle::join) {
            tracing::error!("the checkpoint writer thread panicked");
        }
    }
}

/// Writes one part; worker 0's part of the first stage (the one every run writes) then
/// prunes the checkpoints no longer needed.
fn write_part(store: &CheckpointStore, committed: &AtomicU64, part: PendingPart) {
    let started = std::time::Instant::now();
    let PendingPart { time, stage, index, peers, body, encoding } = part;
    match store.write_part(time, stage, index, peers, &body) {
        Ok(bytes) => {
            let took = encoding + started.elapsed();
            crate::telemetry::checkpoint_part_written(stage, bytes, took);
            tracing::debug!(
                time,
                stage,
                index,
                bytes,
                encode_us = encoding.as_micros() as u64,
                took_us = took.as_micros() as u64,
                "checkpoint part written"
            );
            if index == 0 && stage == store.stages()[0] {
                if let Err(e) = store.prune(committed.load(Ordering::Relaxed)) {
                    tracing::warn!(error = %crate::ErrorChain(&e), "pruning old checkpoints failed");
                }
            }
        }
        Err(e) => {
            crate::telemetry::checkpoint_failed();
            let e = CheckpointError::from(e);
            tracing::error!(error = %crate::ErrorChain(&e), time, stage, "writing a checkpoint part failed");
        }
    }
}

/// One operator's share of checkpointing: the boundaries it still owes and where its part
/// goes. Operators call [`StageCheckpoints::upto`] before processing a time and once their
/// frontier has moved.
#[derive(Debug)]
pub struct StageCheckpoints<P> {
    /// Where parts go.
    ck: Checkpointing,
    /// Boundaries not written yet.
    boundaries: Boundaries,
    /// This worker and the number of workers (in the part's name).
    index: usize,
    peers: usize,
    /// The part type this operator writes.
    part: std::marker::PhantomData<fn() -> P>,
}

impl<P: StagePart> StageCheckpoints<P> {
    /// The checkpointing of one operator on worker `index` of `peers`.
    pub fn new(ck: Checkpointing, index: usize, peers: usize) -> Self {
        Self { boundaries: ck.boundaries(), ck, index, peers, part: std::marker::PhantomData }
    }

    /// Writes `part(F)` for every boundary F ≤ `upto` not written yet (all times before
    /// `upto` are done); a `None` part skips F on this worker (the checkpoint stays incomplete).
    pub fn upto(&mut self, upto: Time, mut part: impl FnMut(Time) -> Option<P>) {
        for f in self.boundaries.crossed(upto) {
            if let Some(p) = part(f) {
                self.ck.write(f, self.index, self.peers, &p);
            }
        }
    }
}

/// Decodes every worker's part of one stage from a loaded checkpoint. An undecodable part
/// (its checksum was right) means a checkpoint written by an incompatible version: an
/// error, never a silent fresh start.
pub fn decode_parts<P: StagePart>(loaded: &LoadedCheckpoint) -> Result<Vec<P>, CheckpointError> {
    loaded
        .parts
        .get(P::STAGE)
        .into_iter()
        .flatten()
        .map(|body| postcard::from_bytes(body).map_err(|e| CheckpointError::Codec { stage: P::STAGE, message: e.to_string() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_start_at_the_first_frontier_and_are_each_returned_once() {
        let mut b = Boundaries::new(100, None);
        assert!(b.crossed(0).is_empty());
        assert!(b.crossed(1_000_050).is_empty(), "the first frontier is the origin");
        assert_eq!(b.crossed(1_000_100), vec![1_000_100]);
        assert!(b.crossed(1_000_100).is_empty());
        assert_eq!(b.crossed(1_000_350), vec![1_000_200, 1_000_300]);
        assert!(b.crossed(1_000_399).is_empty());
        // A long idle gap re-bases instead of writing thousands of identical checkpoints.
        assert!(b.crossed(9_000_000).is_empty());
        assert_eq!(b.crossed(9_000_100), vec![9_000_100]);
    }

    #[derive(Serialize, Deserialize)]
    struct TestPart(Vec<u64>);
    impl StagePart for TestPart {
        const STAGE: &'static str = "test";
    }

    #[test]
    fn parts_queued_to_the_writer_thread_are_complete_on_disk_after_flush_and_later_ones_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path(), 3, &["test"]).unwrap());
        let ck = Checkpointing::new(store.clone(), 100, None, Arc::new(AtomicU64::new(0))).unwrap();
        let workers: Vec<_> = (0..2)
            .map(|index| {
                let ck = ck.clone();
                std::thread::spawn(move || {
                    // More parts than the queue holds: a worker waits, nothing is dropped.
                    for time in 1..=(PENDING_PARTS as Time) {
                        ck.write(time * 100, index, 2, &TestPart(vec![time; 1000]));
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        ck.flush();
        let newest = store.latest(Time::MAX).unwrap().expect("a complete checkpoint");
        assert_eq!(newest.time, PENDING_PARTS as Time * 100);
        let parts = decode_parts::<TestPart>(&newest).unwrap();
        assert_eq!(parts.len(), 2, "both workers' parts");
        assert!(parts.iter().all(|p| p.0 == vec![PENDING_PARTS as u64; 1000]));
        // After the flush (the end of a run) a part is written in place, not lost.
        ck.write(9_900, 0, 1, &TestPart(vec![7]));
        assert_eq!(store.latest(Time::MAX).unwrap().unwrap().time, 9_900);
    }

    #[test]
    fn a_restored_origin_skips_its_own_boundary() {
        let mut b = Boundaries::new(100, Some(500));
        assert!(b.crossed(500).is_empty());
        assert_eq!(b.crossed(601), vec![600]);
    }
}
