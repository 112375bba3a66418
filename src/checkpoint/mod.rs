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
    /// Where parts are written.
    store: Arc<CheckpointStore>,
    /// Event-time seconds between checkpoints.
    interval: Time,
    /// F of the checkpoint this run resumes from, if any: the boundaries' origin.
    restored_at: Option<Time>,
    /// The output frontier committed downstream (kept by the sink; pruning never deletes
    /// the newest checkpoint at or below it).
    committed: Arc<AtomicU64>,
}

impl Checkpointing {
    /// Checkpoints every `interval` event-time seconds into `store`, counting from
    /// `restored_at` (the checkpoint this run resumes from, if any); `committed` is the
    /// output frontier the sink has committed.
    pub fn new(store: Arc<CheckpointStore>, interval: Time, restored_at: Option<Time>, committed: Arc<AtomicU64>) -> Self {
        Self { store, interval: interval.max(1), restored_at, committed }
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

    /// Encodes and writes this worker's part of checkpoint `time`. Failures are logged and
    /// counted, never fatal: the checkpoint is then incomplete and a restart uses an older
    /// one.
    pub fn write<P: StagePart>(&self, time: Time, index: usize, peers: usize, part: &P) {
        let started = std::time::Instant::now();
        let stage = P::STAGE;
        let result = postcard::to_stdvec(part)
            .map_err(|e| CheckpointError::Codec { stage, message: e.to_string() })
            .and_then(|body| Ok(self.store.write_part(time, stage, index, peers, &body)?));
        match result {
            Ok(bytes) => {
                let took = started.elapsed();
                crate::telemetry::checkpoint_part_written(stage, bytes, took);
                tracing::debug!(time, stage, index, bytes, took_us = took.as_micros() as u64, "checkpoint part written");
                // Worker 0 prunes once per checkpoint, after the part that every run writes.
                if index == 0 && stage == self.store.stages()[0] {
                    if let Err(e) = self.store.prune(self.committed()) {
                        tracing::warn!(error = %crate::ErrorChain(&e), "pruning old checkpoints failed");
                    }
                }
            }
            Err(e) => {
                crate::telemetry::checkpoint_failed();
                tracing::error!(error = %crate::ErrorChain(&e), time, stage, "writing a checkpoint part failed");
            }
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

    #[test]
    fn a_restored_origin_skips_its_own_boundary() {
        let mut b = Boundaries::new(100, Some(500));
        assert!(b.crossed(500).is_empty());
        assert_eq!(b.crossed(601), vec![600]);
    }
}
