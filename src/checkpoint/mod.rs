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
//!   offsets it had read when its capability passed F ([`SourceCuts`]) and the window stage
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

use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Cross-field rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval == 0 {
            return Err("checkpoint.interval must be at least 1 s".into());
        }
        if self.retention == 0 {
            return Err("checkpoint.retention must be at least 1".into());
        }
        Ok(())
    }
}

/// The operators that write a part of each checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PartKind {
    /// Open cascades, timers, tombstones, events in flight, and the source's offsets (the
    /// window stage writes them: every worker has one, even a worker without partitions).
    Window,
    /// The model in use per window.
    Predict,
    /// Predictions waiting for their cascade's final size.
    Outcome,
    /// Training sets and schedules; models still in the feedback loop.
    Train,
}

impl PartKind {
    /// Every kind: a checkpoint is complete when each has a part from every worker.
    pub const ALL: [PartKind; 4] = [PartKind::Window, PartKind::Predict, PartKind::Outcome, PartKind::Train];

    /// The name used in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Window => "window",
            PartKind::Predict => "predict",
            PartKind::Outcome => "outcome",
            PartKind::Train => "train",
        }
    }
}

/// Errors while encoding or decoding parts.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A part could not be (de)serialised.
    #[error("checkpoint part {kind:?}: {message}")]
    Codec { kind: PartKind, message: String },
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

/// What the operators of one worker need to checkpoint and restore.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// Where parts are written.
    pub store: Arc<CheckpointStore>,
    /// Event-time seconds between checkpoints.
    pub interval: Time,
    /// The checkpoint this run resumes from, if any (shared by all workers of a process).
    pub restored: Option<Arc<RestoredState>>,
    /// The output frontier committed downstream (kept by the sink; pruning never deletes
    /// the newest checkpoint at or below it).
    pub committed: Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpointing {
    /// The boundary tracker of an operator (origin: the restored F, if any).
    pub fn boundaries(&self) -> Boundaries {
        Boundaries::new(self.interval, self.restored.as_ref().map(|r| r.time))
    }

    /// Encodes and writes this worker's part of checkpoint `time`. Failures are logged and
    /// counted, never fatal: the checkpoint is then incomplete and a restart uses an older
    /// one.
    pub fn write<T: Serialize>(&self, time: Time, kind: PartKind, index: usize, peers: usize, part: &T) {
        let started = std::time::Instant::now();
        let result = bincode::serialize(part)
            .map_err(|e| CheckpointError::Codec { kind, message: e.to_string() })
            .and_then(|body| Ok(self.store.write_part(time, kind, index, peers, &body)?));
        match result {
            Ok(bytes) => {
                crate::telemetry::checkpoint_part_written(kind.as_str(), bytes, started.elapsed());
                tracing::debug!(time, kind = kind.as_str(), index, bytes, "checkpoint part written");
                if index == 0 && kind == PartKind::Window {
                    let committed = self.committed.load(std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = self.store.prune(committed) {
                        tracing::warn!(error = %e, "pruning old checkpoints failed");
                    }
                }
            }
            Err(e) => {
                crate::telemetry::checkpoint_failed();
                tracing::error!(error = %e, time, kind = kind.as_str(), "writing a checkpoint part failed");
            }
        }
    }
}

/// One operator's share of checkpointing: the boundaries it still owes and where its part
/// goes. Operators call [`StageCheckpoints::upto`] before processing a time and once their
/// frontier has moved.
#[derive(Debug)]
pub struct StageCheckpoints {
    /// Where parts go, and the restored state.
    ck: Checkpointing,
    /// Boundaries not written yet.
    boundaries: Boundaries,
    /// This operator.
    kind: PartKind,
    /// This worker and the number of workers (in the part's name).
    index: usize,
    peers: usize,
}

impl StageCheckpoints {
    /// The checkpointing of operator `kind` on worker `index` of `peers`.
    pub fn new(ck: Checkpointing, kind: PartKind, index: usize, peers: usize) -> Self {
        Self { boundaries: ck.boundaries(), ck, kind, index, peers }
    }

    /// The checkpoint this run resumes from, if any.
    pub fn restored(&self) -> Option<Arc<RestoredState>> {
        self.ck.restored.clone()
    }

    /// Writes `part(F)` for every boundary F ≤ `upto` not written yet (all times before
    /// `upto` are done); a `None` part skips F on this worker (the checkpoint stays incomplete).
    pub fn upto<T: Serialize>(&mut self, upto: Time, mut part: impl FnMut(Time) -> Option<T>) {
        for f in self.boundaries.crossed(upto) {
            if let Some(p) = part(f) {
                self.ck.write(f, self.kind, self.index, self.peers, &p);
            }
        }
    }
}

/// The source's state at a cut: per partition, the next offset to read and the newest
/// event time seen (the per-partition lateness rule needs it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourcePart {
    /// partition → (next offset, newest event time seen).
    pub partitions: BTreeMap<i32, (i64, Option<Time>)>,
}

/// The source's states at the boundaries it crossed, handed to the window stage of the same
/// worker (same thread), which writes them in its part: the source passes F (and records
/// its offsets) before the window stage's frontier can.
#[derive(Debug, Default)]
pub struct SourceCuts {
    /// Offsets at each boundary crossed and not yet written.
    pub at: BTreeMap<Time, SourcePart>,
    /// The source's state at every later boundary once it has stopped reading (a finished
    /// backtest partition set, or a worker without partitions).
    pub finished: Option<SourcePart>,
}

impl SourceCuts {
    /// The source's state at boundary `f`, forgetting earlier ones; `None` when the source
    /// did not stop at `f` (the checkpoint at `f` is then skipped by this worker).
    pub fn take(&mut self, f: Time) -> Option<SourcePart> {
        self.at = self.at.split_off(&f);
        self.at.remove(&f).or_else(|| self.finished.clone())
    }
}

/// Shared by the source and the window stage of one worker.
pub type SharedSourceCuts = std::rc::Rc<std::cell::RefCell<SourceCuts>>;

/// A checkpoint decoded for restoring: every worker's part of every kind. Each operator
/// keeps the records it owns under the new number of workers.
#[derive(Debug, Default)]
pub struct RestoredState {
    /// The checkpoint's F: the restored state holds exactly the input before F.
    pub time: Time,
    /// Cascade trackers and events in flight.
    pub window: Vec<crate::dataflow::window::WindowPart>,
    /// Models in use.
    pub predict: Vec<crate::dataflow::predict::PredictPart>,
    /// Predictions awaiting their final size.
    pub outcome: Vec<crate::dataflow::outcome::OutcomePart>,
    /// Trainers and models in the feedback loop.
    pub train: Vec<crate::dataflow::train::TrainPart>,
}

impl RestoredState {
    /// Decodes a verified checkpoint. An undecodable part (its checksum was right) means a
    /// checkpoint written by an incompatible version: an error, never a silent fresh start.
    pub fn decode(loaded: &LoadedCheckpoint) -> Result<Self, CheckpointError> {
        fn parts<T: DeserializeOwned>(loaded: &LoadedCheckpoint, kind: PartKind) -> Result<Vec<T>, CheckpointError> {
            loaded
                .parts
                .get(&kind)
                .into_iter()
                .flatten()
                .map(|body| bincode::deserialize(body).map_err(|e| CheckpointError::Codec { kind, message: e.to_string() }))
                .collect()
        }
        Ok(Self {
            time: loaded.time,
            window: parts(loaded, PartKind::Window)?,
            predict: parts(loaded, PartKind::Predict)?,
            outcome: parts(loaded, PartKind::Outcome)?,
            train: parts(loaded, PartKind::Train)?,
        })
    }
}

impl RestoredState {
    /// Every partition's saved offset and newest event time (from all workers' parts).
    pub fn source(&self) -> BTreeMap<i32, (i64, Option<Time>)> {
        self.window.iter().flat_map(|w| w.source.partitions.clone()).collect()
    }
}

/// Whether worker `index` of `peers` owns a record routed by `hash` (timely's exchange
/// sends a record to worker `hash % peers`).
pub fn owns(hash: u64, index: usize, peers: usize) -> bool {
    (hash % peers as u64) as usize == index
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

    #[test]
    fn a_restored_origin_skips_its_own_boundary() {
        let mut b = Boundaries::new(100, Some(500));
        assert!(b.crossed(500).is_empty());
        assert_eq!(b.crossed(601), vec![600]);
    }
}
