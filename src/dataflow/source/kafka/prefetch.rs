//! The Kafka source's prefetch thread: polls the worker's consumer and decodes the messages
//! beside the dataflow, and hands them to the source operator in batches, in poll order,
//! through a bounded channel.
//!
//! Why: polled and decoded on the worker, a NEWS-sized backtest's 3.2 M messages cost the
//! worker ~3.6 CPU-s more than the file run of the same stream (thread timeline, issue 18),
//! and that work came after the training runs instead of beside them: the worker decoded
//! alone while the training threads were idle. Here the other core decodes while the worker
//! runs the stages.
//!
//! What stays in the operator: the clock (admission, lateness, the watermark) and the
//! read-ahead bound, which depend on the order of the messages and on the dataflow; the
//! thread only turns bytes into events or dead letters. The channel holds at most
//! [`BATCHES_IN_FLIGHT`] batches of [`BATCH`] messages: when the operator pauses (read-ahead
//! bound) the thread blocks, and the backlog stays in Kafka. Offsets polled but not yet taken
//! by the operator are not in any checkpoint cut (the clock records what the operator
//! admitted), so a restart reads them again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use timely::scheduling::SyncActivator;

use crate::io::wire::{decode, truncate};
use crate::records::{DeadLetter, RejectReason, TweetEvent};

/// Most messages in one batch (a batch is sent earlier when the consumer has nothing more).
pub const BATCH: usize = 4096;

/// Batches the channel holds: with [`BATCH`], at most ~32 k decoded messages wait between
/// the thread and the operator.
pub const BATCHES_IN_FLIGHT: usize = 8;

/// How long the thread waits in one poll when nothing is ready: the stop flag is checked
/// at least this often.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// One polled message, decoded, or the consumer's error.
#[derive(Debug)]
pub enum Polled {
    /// The message at `offset` of `partition`: its event, or the dead letter it is.
    Message {
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// The decoded event, or the dead letter (reason, detail, key and payload).
        decoded: Result<TweetEvent, DeadLetter>,
    },
    /// A consumer error (the source counts it and retries).
    Error(String),
}

/// A polled message as a dead letter (key and payload lossily decoded and truncated).
fn dead_letter(message: &BorrowedMessage<'_>, reason: RejectReason, detail: String) -> DeadLetter {
    DeadLetter {
        reason,
        detail,
        partition: Some(message.partition()),
        offset: Some(message.offset()),
        key: message.key().map(|k| truncate(&String::from_utf8_lossy(k), 200).to_owned()),
        payload: truncate(&String::from_utf8_lossy(message.payload().unwrap_or_default()), 1024).to_owned(),
    }
}

/// A message, decoded.
fn polled(message: &BorrowedMessage<'_>, max_bytes: usize) -> Polled {
    let (partition, offset) = (message.partition(), message.offset());
    let decoded =
        decode(message.key(), message.payload(), offset as u64, max_bytes).map_err(|e| dead_letter(message, e.reason, e.detail));
    Polled::Message { partition, offset, decoded }
}

/// The operator's end of the prefetch thread.
pub struct Prefetch {
    /// Batches from the thread, in poll order.
    batches: Receiver<Vec<Polled>>,
    /// The batch being taken, message by message.
    current: std::vec::IntoIter<Polled>,
    /// Set when the operator drops this: the thread ends within [`POLL_WAIT`].
    stop: Arc<AtomicBool>,
}

impl Prefetch {
    /// Starts the thread on `consumer` (assigned, at its start offsets); it wakes the
    /// operator through `activator` after each batch.
    pub fn start(consumer: BaseConsumer, max_bytes: usize, activator: SyncActivator) -> std::io::Result<Self> {
        let (tx, batches) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_in = stop.clone();
        std::thread::Builder::new()
            .name("kafka-prefetch".into())
            .spawn(move || run(&consumer, max_bytes, &tx, &activator, &stop_in))?;
        Ok(Self { batches, current: Vec::new().into_iter(), stop })
    }

    /// The next polled message, if one is ready. The thread has ended when it never is
    /// again; the source's clock decides when the input is over, as before.
    pub fn ready(&mut self) -> Option<Polled> {
        loop {
            if let Some(p) = self.current.next() {
                return Some(p);
            }
            match self.batches.try_recv() {
                Ok(batch) => self.current = batch.into_iter(),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            }
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The thread: polls (waiting up to [`POLL_WAIT`] for a first message, then taking what is
/// ready, up to [`BATCH`]), decodes, sends, wakes the operator; until the operator is gone.
fn run(consumer: &BaseConsumer, max_bytes: usize, tx: &SyncSender<Vec<Polled>>, activator: &SyncActivator, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut wait = POLL_WAIT;
        while batch.len() < BATCH {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => batch.push(polled(&m, max_bytes)),
                Some(Err(e)) => {
                    batch.push(Polled::Error(e.to_string()));
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        // Blocks while the channel is full (the operator paused): the backlog stays in Kafka.
        if tx.send(batch).is_err() || activator.activate().is_err() {
            return; // the operator is gone
        }
    }
}
