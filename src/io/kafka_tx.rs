//! Exactly-once output to Kafka: transactions that carry the output frontier.
//!
//! One transactional producer (on process 0) writes every output record. Each transaction
//! holds the records of the times that just completed plus one `progress` record whose value
//! is the output frontier B: once it commits, every output record timed before B is visible
//! to read-committed consumers, and none timed at or after B is. After a crash, the restart
//! (1) initialises transactions with the same transactional id, which fences the dead
//! producer and aborts its open transaction, (2) reads the last committed B, (3) resumes
//! from a checkpoint at or below B and drops regenerated records timed before B. Outputs are
//! a deterministic function of event time, so what is dropped is exactly what was committed.
//!
//! The producer runs on its own thread, fed through a bounded channel: a commit's round trip
//! does not stall the worker, and while it runs the next batches queue up and go out in the
//! next transaction (the commit cadence adapts to the broker's latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::kafka::{KafkaConfig, KafkaSetupError, SinkConfig};
use crate::Time;

/// One output record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Its key, if any.
    pub key: Option<String>,
    /// Its value.
    pub value: String,
}

/// Records of completed times, and the frontier they complete.
#[derive(Debug)]
pub struct OutputBatch {
    /// Every record timed before this is in this batch or an earlier one.
    pub frontier: Time,
    /// The records.
    pub records: Vec<OutRecord>,
}

/// The progress record's value.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The output frontier B.
    frontier: Time,
    /// Records in this transaction.
    records: u64,
}

/// Batches the channel holds before the worker waits (backpressure).
const CHANNEL_BATCHES: usize = 256;

/// The transactional producer thread and its channel.
pub struct TransactionalOutput {
    sender: Option<SyncSender<OutputBatch>>,
    thread: Option<JoinHandle<Result<u64, KafkaSetupError>>>,
    /// The last committed output frontier.
    pub committed: Arc<AtomicU64>,
    /// The frontier committed before this run (records before it are not produced again).
    pub resume_from: Time,
}

impl TransactionalOutput {
    /// Initialises transactions (fencing any previous instance with the same id, which
    /// aborts its unfinished transaction), reads the last committed frontier, and starts the
    /// producer thread.
    pub fn start(config: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let id = config.transactional_id();
        let producer: BaseProducer = config
            .client_config()
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            // A transaction's records are queued at once and then awaited: waiting for more
            // (linger) only delays the commit.
            .set("linger.ms", "0")
            .set("message.max.bytes", "10000000")
            .set("transaction.timeout.ms", "60000")
            .create()?;
        retry_transactional("init_transactions", || producer.init_transactions(Duration::from_secs(30)))?;
        super::kafka::warm_up(producer.client(), config.topics.produced().into_iter().chain([config.topics.progress.as_str()]));
        let resume_from = read_committed_frontier(config, &id)?.unwrap_or(0);
        let committed = Arc::new(AtomicU64::new(resume_from));
        crate::telemetry::output_committed(resume_from);
        tracing::info!(transactional_id = %id, resume_from, "exactly-once output ready");
        let (sender, receiver) = sync_channel(CHANNEL_BATCHES);
        let (topic, key, committed_in) = (config.topics.progress.clone(), id, committed.clone());
        let sink = config.sink.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-transactions".into())
            .spawn(move || produce_loop(&producer, &receiver, &sink, &topic, &key, &committed_in))
            .map_err(|e| KafkaSetupError::Invalid(format!("starting the output thread: {e}")))?;
        Ok(Self { sender: Some(sender), thread: Some(thread), committed, resume_from })
    }

    /// A sender for the sink operator (worker 0).
    pub fn sender(&self) -> Option<SyncSender<OutputBatch>> {
        self.sender.clone()
    }

    /// Waits until every batch sent is committed; returns the number of records committed.
    pub fn finish(mut self) -> Result<u64, KafkaSetupError> {
        self.sender.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(KafkaSetupError::Invalid("the output thread panicked".into())),
            None => Ok(0),
        }
    }
}

/// Retries a transactional call while librdkafka says it is retriable (e.g. the broker is
/// unreachable), up to 10 minutes.
fn retry_transactional(what: &str, mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaSetupError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "{what}: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(KafkaSetupError::Invalid(format!("{what}: {e}"))),
        }
    }
}

/// Queues one record, serving the producer while its queue is full.
fn send(producer: &BaseProducer, topic: &str, key: Option<&str>, value: &str) -> Result<(), KafkaError> {
    let mut record = BaseRecord::<str, str>::to(topic).payload(value);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Serves delivery reports until every queued record is acknowledged, checking every
/// [`DELIVERY_CHECK`].
///
/// Why not let `commit_transaction` flush: rdkafka's `BaseProducer::flush` serves the event
/// queue with `poll(100 ms)`, and that `poll` returns only when its whole slice has passed,
/// so every commit with a record outstanding took at least 100 ms (measured: 101–102 ms per
/// transaction on loopback). A short `poll` slice is no better: below 1 ms it rounds to a
/// non-blocking call and spins (measured: this thread at 65–77 % of a core, starving the
/// broker on 2 cores). So: serve what is there without waiting, then sleep. After this, the
/// flush inside `commit_transaction` finds nothing outstanding and returns at once.
fn await_deliveries(producer: &BaseProducer) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(DELIVERY_CHECK);
    }
}

/// How often [`await_deliveries`] looks for acknowledgements: well under a loopback round
/// trip's cost to the end-to-end latency, and ~2,000 wake-ups per second of commit at most.
const DELIVERY_CHECK: Duration = Duration::from_micros(500);

/// Where a committed transaction's time went, from its start: for the debug log, to tell a
/// slow produce round trip (with the partitions' registration) from a slow commit.
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// Every record queued in the producer.
    queued: Duration,
    /// Every record acknowledged by the broker (the commit follows).
    delivered: Duration,
}

/// One transaction: the records, the progress record, commit. `Ok(None)` when the
/// transaction had to be aborted (it is then retried whole).
fn transaction(
    producer: &BaseProducer,
    records: &[OutRecord],
    progress: (&str, &str, &str),
) -> Result<Option<Phases>, KafkaSetupError> {
    let began = std::time::Instant::now();
    retry_transactional("begin_transaction", || producer.begin_transaction())?;
    let sent = records
        .iter()
        .try_for_each(|r| send(producer, &r.topic, r.key.as_deref(), &r.value))
        .and_then(|()| send(producer, progress.0, Some(progress.1), progress.2));
    let queued = began.elapsed();
    let outcome = match sent.and_then(|()| await_deliveries(producer)) {
        Ok(()) => loop {
            let delivered = began.elapsed();
            match producer.commit_transaction(Duration::from_secs(60)) {
                Ok(()) => break Ok(Some(Phases { queued, delivered })),
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    tracing::warn!(error = %e, "commit: retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => break Ok(None),
                Err(e) => break Err(KafkaSetupError::Invalid(format!("commit_transaction: {e}"))),
            }
        },
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => Ok(None),
        Err(e) if !matches!(&e, KafkaError::Transaction(t) if t.is_fatal()) => {
            tracing::warn!(error = %e, "sending in a transaction failed; aborting it");
            Ok(None)
        }
        Err(e) => Err(KafkaSetupError::Invalid(format!("produce: {e}"))),
    };
    if let Ok(None) = outcome {
        retry_transactional("abort_transaction", || producer.abort_transaction(Duration::from_secs(60)))?;
    }
    outcome
}

/// Waits for the next batch, then until `not_before`, and takes every batch queued by then
/// until `max_records` is reached (the last batch taken may go beyond it): the records and
/// frontier of one transaction. `None` when the channel is closed and empty.
fn gather(
    receiver: &Receiver<OutputBatch>,
    not_before: std::time::Instant,
    max_records: usize,
) -> Option<(Time, Vec<OutRecord>)> {
    let first = receiver.recv().ok()?;
    let wait = not_before.saturating_duration_since(std::time::Instant::now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    let (mut frontier, mut records) = (first.frontier, first.records);
    while records.len() < max_records {
        let Ok(more) = receiver.try_recv() else { break };
        frontier = frontier.max(more.frontier);
        records.extend(more.records);
    }
    Some((frontier, records))
}

fn produce_loop(
    producer: &BaseProducer,
    receiver: &Receiver<OutputBatch>,
    sink: &SinkConfig,
    progress_topic: &str,
    key: &str,
    committed: &AtomicU64,
) -> Result<u64, KafkaSetupError> {
    let mut total = 0u64;
    let started = std::time::Instant::now();
    let resumed_at = committed.load(Ordering::Relaxed);
    let mut next_start = started;
    while let Some((frontier, records)) = gather(receiver, next_start, sink.max_transaction_records) {
        let progress = serde_json::to_string(&Progress { frontier, records: records.len() as u64 }).expect("plain struct");
        let mut attempts = 0;
        let began = std::time::Instant::now();
        let phases = loop {
            if let Some(phases) = transaction(producer, &records, (progress_topic, key, &progress))? {
                break phases;
            }
            attempts += 1;
            crate::telemetry::output_transaction(false, frontier, 0, began.elapsed());
            if attempts > 100 {
                return Err(KafkaSetupError::Invalid("an output transaction was aborted 100 times".into()));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if total == 0 && !records.is_empty() {
            // After a restart: the first new output, i.e. the pipeline has caught up with
            // what it had committed before the crash.
            tracing::info!(
                resumed_at,
                frontier,
                after_ms = started.elapsed().as_millis() as u64,
                "first output records committed"
            );
        }
        // took_us counts aborted attempts too; the phases are the committed attempt's.
        tracing::debug!(
            records = records.len(),
            attempts = attempts + 1,
            queued_us = phases.queued.as_micros() as u64,
            delivered_us = phases.delivered.as_micros() as u64,
            took_us = began.elapsed().as_micros() as u64,
            "transaction committed"
        );
        total += records.len() as u64;
        next_start = std::time::Instant::now() + Duration::from_millis(sink.commit_interval_ms);
        committed.store(frontier, Ordering::Relaxed);
        crate::telemetry::output_transaction(true, frontier, records.len() as u64, began.elapsed());
    }
    Ok(total)
}

/// The output frontier of the last committed transaction of `transactional_id`, if any.
/// Call after `init_transactions` (which aborts a dead instance's open transaction, so the
/// partition's last stable offset is not held back).
pub fn read_committed_frontier(config: &KafkaConfig, transactional_id: &str) -> Result<Option<Time>, KafkaSetupError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let topic = &config.topics.progress;
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", format!("{transactional_id}-progress-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(30);
    let (low, high) = consumer.fetch_watermarks(topic, 0, timeout)?;
    if high <= low {
        return Ok(None);
    }
    // The progress record is the last data record of a transaction, followed by its commit
    // marker; aborted transactions add a few more offsets. Look back far enough for those.
    let mut start = (high - 1000).max(low);
    loop {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, 0, rdkafka::Offset::Offset(start))?;
        consumer.assign(&list)?;
        let mut last = None;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let m = message?;
                if m.key() == Some(transactional_id.as_bytes()) {
                    if let Some(p) = m.payload().and_then(|v| serde_json::from_slice::<Progress>(v).ok()) {
                        last = Some(p.frontier);
                    }
                }
            }
            let position = consumer.position()?.find_partition(topic, 0).and_then(|e| e.offset().to_raw()).unwrap_or(start);
            if position >= high {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(KafkaSetupError::Invalid(format!("reading {topic} timed out at offset {position} of {high}")));
            }
        }
        if last.is_some() || start == low {
            return Ok(last);
        }
        start = low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn batch(frontier: Time, n: usize) -> OutputBatch {
        let record = |i: usize| OutRecord { topic: "t".into(), key: None, value: format!("{frontier}-{i}") };
        OutputBatch { frontier, records: (0..n).map(record).collect() }
    }

    #[test]
    fn a_transaction_takes_every_batch_queued_by_its_start_and_the_highest_frontier() {
        let (tx, rx) = sync_channel(16);
        for (frontier, n) in [(10, 2), (12, 0), (11, 3)] {
            tx.send(batch(frontier, n)).unwrap();
        }
        let (frontier, records) = gather(&rx, Instant::now(), 1_000).unwrap();
        assert_eq!((frontier, records.len()), (12, 5));
        drop(tx);
        assert!(gather(&rx, Instant::now(), 1_000).is_none(), "a closed, empty channel ends the loop");
    }

    #[test]
    fn batches_sent_before_the_transaction_may_start_join_it() {
        let (tx, rx) = sync_channel(16);
        tx.send(batch(1, 1)).unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(batch(2, 1)).unwrap();
        });
        // The pause (commit_interval_ms) is far longer than the second batch's delay.
        let (frontier, records) = gather(&rx, Instant::now() + Duration::from_millis(500), 1_000).unwrap();
        late.join().unwrap();
        assert_eq!((frontier, records.len()), (2, 2));
    }

    #[test]
    fn a_backlog_is_split_at_the_record_limit() {
        let (tx, rx) = sync_channel(16);
        for frontier in 1..=4 {
            tx.send(batch(frontier, 3)).unwrap();
        }
        let (frontier, records) = gather(&rx, Instant::now(), 5).unwrap();
        assert_eq!((frontier, records.len()), (2, 6), "stops once the limit is reached");
        let (frontier, records) = gather(&rx, Instant::now(), 5).unwrap();
        assert_eq!((frontier, records.len()), (4, 6));
    }
}
