//! Exactly-once mode: where checkpoints go, what a restart resumes from, and (process 0)
//! the transactional output.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use super::{Job, PipelineError, SourceSpec};
use crate::checkpoint::{CheckpointStore, Checkpointing};
use crate::config::ConfigError;
use crate::dataflow::{Checkpoint, Restored, STAGES};
use crate::io::kafka_tx::TransactionalOutput;
use crate::Time;

/// What a checkpointing run shares between its workers.
pub(super) struct Recovery {
    /// Handed to every operator.
    pub checkpoint: Checkpoint,
    /// Process 0: the transactional producer thread.
    pub output: Option<TransactionalOutput>,
    /// The output frontier committed before this run.
    pub resume_from: Time,
}

impl Recovery {
    /// `None` unless the job checkpoints (a checkpoint folder, a Kafka source and sink).
    /// Process 0 fences the previous run's producer and reads the committed output frontier
    /// B; every process reads B (the same value: nothing commits before all processes have
    /// joined the computation), then loads the newest complete checkpoint at or below B.
    pub fn prepare(job: &Job) -> Result<Option<Self>, PipelineError> {
        let ck = &job.config.checkpoint;
        let Some(dir) = &ck.dir else { return Ok(None) };
        if !matches!(job.source, SourceSpec::Kafka(_)) || !job.kafka_sink {
            return Err(ConfigError::Invalid {
                key: "checkpoint.dir",
                rule: "needs the Kafka source and sink (live or backtest)".into(),
            }
            .into());
        }
        let kafka = &job.config.kafka;
        crate::io::kafka::ensure_topics(kafka, &[&kafka.topics.progress], 1)?;
        let output = if job.cluster.process() == 0 { Some(TransactionalOutput::start(kafka)?) } else { None };
        let resume_from = match &output {
            Some(o) => o.resume_from,
            None => crate::io::kafka_tx::read_committed_frontier(kafka, &kafka.transactional_id())?.unwrap_or(0),
        };
        let store = CheckpointStore::open(dir, ck.retention, STAGES).map_err(|e| PipelineError::Checkpoint(e.into()))?;
        let restored = restore(&store, resume_from)?;
        let committed = output.as_ref().map_or_else(|| Arc::new(AtomicU64::new(resume_from)), |o| o.committed.clone());
        let checkpointing = Checkpointing::new(Arc::new(store), ck.interval, restored.as_ref().map(|r| r.time), committed)
            .map_err(PipelineError::Checkpoint)?;
        Ok(Some(Self { checkpoint: Checkpoint { checkpointing, restored }, output, resume_from }))
    }

    /// After the run: waits for the checkpoint parts still queued and (process 0) for the
    /// last output transaction, logs what was checkpointed, and prunes the checkpoints a
    /// restart no longer needs.
    pub fn finish(self) -> Result<(), PipelineError> {
        self.checkpoint.checkpointing.flush();
        let Some(output) = self.output else { return Ok(()) };
        let records = output.finish()?;
        tracing::info!(records, "output transactions done");
        let (parts, bytes, seconds) = crate::telemetry::checkpoint_totals(STAGES);
        tracing::info!(parts, bytes, write_ms = (seconds * 1000.0).round() as u64, "checkpoints written by this process");
        // Incomplete checkpoints written while the run ended are pruned with the rest.
        let checkpointing = &self.checkpoint.checkpointing;
        if let Err(e) = checkpointing.store().prune(checkpointing.committed()) {
            tracing::warn!(error = %crate::ErrorChain(&e), "pruning old checkpoints failed");
        }
        Ok(())
    }
}

/// The newest complete checkpoint at or below the committed output frontier, decoded.
fn restore(store: &CheckpointStore, resume_from: Time) -> Result<Option<Arc<Restored>>, PipelineError> {
    match store.latest(resume_from).map_err(|e| PipelineError::Checkpoint(e.into()))? {
        Some(loaded) => {
            let started = Instant::now();
            let state = Restored::decode(&loaded)?;
            tracing::info!(
                time = loaded.time,
                peers = loaded.peers,
                bytes = loaded.bytes,
                resume_from,
                decode_ms = started.elapsed().as_millis() as u64,
                "resuming from a checkpoint"
            );
            crate::telemetry::checkpoint_restored(loaded.time);
            Ok(Some(Arc::new(state)))
        }
        None => {
            if resume_from > 0 {
                tracing::warn!(
                    resume_from,
                    "no usable checkpoint at or below the committed output frontier; replaying from the beginning"
                );
            }
            Ok(None)
        }
    }
}
