//! The Kafka source: each worker reads a deterministic share of the `tweets` partitions.
//!
//! - Partitions are `assign`ed (`p % peers == worker`), never subscribed, so no group
//!   rebalance moves them behind timely's back.
//! - Event time, lateness, idleness and the watermark are the [`clock`]'s rules (pure and
//!   unit-tested); this runner polls rdkafka, decodes, and emits with one capability that
//!   follows the watermark.
//! - Bounded mode snapshots the end offsets at start and finishes there; live mode runs
//!   until the shutdown flag is set.
//! - Undecodable or late messages become [`DeadLetter`]s with their reason.
//! - Checkpoints: when the capability passes a boundary F, the offsets read so far (all of
//!   whose events went out stamped before F) are recorded for the window stage to write;
//!   a restart seeks every partition to its saved offset and restores its newest event time.

pub mod clock;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use crate::dataflow::Builder;
use crate::dataflow::source::SharedSourceCuts;
use crate::dataflow::Checkpoint;
use crate::io::kafka::{KafkaConfig, KafkaSetupError};
use crate::records::{DeadLetter, RejectReason, TweetEvent};
use crate::io::wire::{decode, truncate};
use self::clock::{ClockSettings, SourceClock};
use crate::{owns, Time};

/// Where each assigned partition starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    /// From the earliest retained offset.
    Beginning,
    /// From given offsets (partition → offset); others from the beginning.
    Offsets(BTreeMap<i32, i64>),
}

/// What the Kafka source reads.
#[derive(Debug, Clone)]
pub struct KafkaSourceSpec {
    /// Brokers, credentials, topic names and source settings.
    pub kafka: KafkaConfig,
    /// Stop at the end offsets taken at start (backtest), or run until shutdown (live).
    pub bounded: bool,
    /// Start offsets.
    pub start: StartAt,
    /// Live mode: end the input once no message arrived for this long (see `--until-idle`).
    pub idle_exit: Option<Duration>,
}

/// One record out of the source: an event or a dead letter.
pub type SourceItem = Result<TweetEvent, DeadLetter>;

/// Live mode: the partitions' end offsets, fetched every 2 s by a background thread with its
/// own client. A watermark query is a broker round trip; made from the worker it stalled the
/// whole dataflow of that worker (up to its timeout per partition under load: the latency
/// outliers of live runs).
struct EndOffsets {
    /// partition → end offset, as last fetched.
    ends: Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
    /// Set when the source is dropped: the thread ends within 100 ms.
    stop: Arc<AtomicBool>,
}

impl EndOffsets {
    fn start(kafka: &KafkaConfig, topic: String, partitions: Vec<i32>) -> Option<Self> {
        let consumer = kafka.consumer().map_err(|e| tracing::warn!(error = %e, "no consumer for lag metrics")).ok()?;
        let (ends, stop): (Arc<std::sync::Mutex<BTreeMap<i32, i64>>>, Arc<AtomicBool>) = Default::default();
        let (ends_in, stop_in) = (ends.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-end-offsets".into())
            .spawn(move || {
                while !stop_in.load(Ordering::Relaxed) {
                    for p in &partitions {
                        if let Ok((_, high)) = consumer.fetch_watermarks(&topic, *p, Duration::from_secs(2)) {
                            if let Ok(mut e) = ends_in.lock() {
                                e.insert(*p, high);
                            }
                        }
                    }
                    for _ in 0..20 {
                        if stop_in.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no thread for lag metrics"))
            .ok()?;
        Some(Self { ends, stop })
    }

    fn end(&self, partition: i32) -> Option<i64> {
        self.ends.lock().ok()?.get(&partition).copied()
    }
}

impl Drop for EndOffsets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sets up this worker's consumer: assigns its partitions and snapshots end offsets. With a
/// restored checkpoint, each partition starts at its saved offset with its saved newest
/// event time.
fn setup(
    spec: &KafkaSourceSpec,
    index: usize,
    peers: usize,
    restored: Option<&BTreeMap<i32, (i64, Option<Time>)>>,
) -> Result<(BaseConsumer, SourceClock), KafkaSetupError> {
    let consumer = spec.kafka.consumer()?;
    let topic = &spec.kafka.topics.tweets;
    let timeout = Duration::from_secs(30);
    let all = crate::io::kafka::partitions_of(&consumer, topic, timeout)?;
    let now = Instant::now();
    let source = &spec.kafka.source;
    let mut clock = SourceClock::new(
        ClockSettings {
            bounded: spec.bounded,
            lateness: source.lateness,
            max_ahead: source.max_ahead,
            idle: Duration::from_millis(source.idle_timeout_ms),
            idle_exit: spec.idle_exit,
        },
        now,
    );
    let mut list = TopicPartitionList::new();
    for p in all.into_iter().filter(|p| owns(*p as u64, index, peers)) {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let saved = restored.and_then(|r| r.get(&p)).copied();
        let start = match (&spec.start, saved) {
            (_, Some((offset, _))) => offset,
            (StartAt::Offsets(o), None) => o.get(&p).copied().unwrap_or(low),
            (StartAt::Beginning, None) => low,
        };
        if start < low {
            tracing::warn!(partition = p, start, low, "saved offset was deleted by retention; resuming at the earliest retained");
        }
        list.add_partition_offset(topic, p, Offset::Offset(start.max(low)))?;
        clock.add_partition(p, start.max(low), spec.bounded.then_some(high), saved.and_then(|(_, t)| t), now);
    }
    consumer.assign(&list)?;
    Ok((consumer, clock))
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

/// One worker's Kafka reader: the consumer, the clock, and where the cut offsets go.
struct KafkaReader {
    /// This worker's consumer (assigned partitions only).
    consumer: BaseConsumer,
    /// Positions, newest times, idleness, the watermark.
    clock: SourceClock,
    /// Checkpoint boundaries the capability has to record offsets at.
    boundaries: Option<crate::checkpoint::Boundaries>,
    /// Where the offsets at each boundary go (this worker's window stage writes them).
    cuts: Option<SharedSourceCuts>,
    /// Live: end offsets fetched in the background for the lag metric.
    end_offsets: Option<EndOffsets>,
    /// When the lag was last reported.
    last_lag_report: Instant,
    /// Decoder bound: larger messages are oversized.
    max_bytes: usize,
    /// Most messages one activation polls.
    batch_limit: usize,
    /// Counts the events emitted (progress bars, throughput).
    events_in: Arc<AtomicU64>,
}

impl KafkaReader {
    /// Polls up to a batch of messages at `now`: events and dead letters, in offset order.
    fn poll(&mut self, now: Instant) -> (Vec<SourceItem>, usize) {
        let mut items = Vec::new();
        let mut polled = 0;
        self.clock.begin_round(now);
        while polled < self.batch_limit {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error; retrying");
                    self.clock.on_error(now);
                    break;
                }
                Some(Ok(m)) => m,
            };
            polled += 1;
            let (p, offset) = (message.partition(), message.offset());
            if !self.clock.admit(p, offset, now) {
                continue;
            }
            let item = match decode(message.key(), message.payload(), offset as u64, self.max_bytes) {
                Err(e) => Err(dead_letter(&message, e.reason, e.detail)),
                Ok(event) => match self.clock.judge(p, event.time) {
                    Err(e) => Err(dead_letter(&message, e.reason, e.detail)),
                    Ok(()) => Ok(event),
                },
            };
            items.push(item);
        }
        self.clock.end_round(polled, now);
        (items, polled)
    }

    /// Emits what was polled at the capability's time. Live mode may exclude an idle
    /// partition whose late data then arrives below the watermark: such an event is late
    /// too. (In bounded mode the per-partition rule already guarantees time ≥ watermark.)
    fn emit(&self, items: Vec<SourceItem>, cap: &Capability<Time>, output: &mut Output<'_>) {
        if items.is_empty() {
            return;
        }
        let watermark = *cap.time();
        let mut sent = 0u64;
        let mut session = output.session(cap);
        for item in items {
            let item = match item {
                Ok(e) if e.time < watermark => Err(DeadLetter {
                    reason: RejectReason::Late,
                    detail: format!("time {} is behind the watermark {watermark}", e.time),
                    partition: None,
                    offset: Some(e.seq as i64),
                    key: Some(e.cascade.to_string()),
                    payload: String::new(),
                }),
                other => other,
            };
            sent += u64::from(item.is_ok());
            session.give(item);
        }
        self.events_in.fetch_add(sent, Ordering::Relaxed);
    }

    /// Reports the newest event time and, every 2 s, the consumer lag: from the snapshot end
    /// in a backtest, live from the end offsets the background thread fetches.
    fn report(&mut self) {
        if let Some(newest) = self.clock.newest() {
            crate::telemetry::newest_event(newest);
        }
        if self.last_lag_report.elapsed() > Duration::from_secs(2) {
            self.last_lag_report = Instant::now();
            for (p, lag) in self.clock.lag(|p| self.end_offsets.as_ref().and_then(|e| e.end(p))) {
                crate::telemetry::consumer_lag(p, lag);
            }
        }
    }

    /// Moves the capability to the watermark; every event read so far went out stamped
    /// before it, so the offsets now are the cut at each boundary crossed.
    fn advance(&mut self, cap: &mut Capability<Time>, now: Instant) {
        let Some(w) = self.clock.watermark(now) else { return };
        if w <= *cap.time() {
            return;
        }
        if let (Some(b), Some(cuts)) = (self.boundaries.as_mut(), &self.cuts) {
            for f in b.crossed(w) {
                cuts.borrow_mut().at.insert(f, self.clock.cut());
            }
        }
        cap.downgrade(&w);
    }

    /// Records the final positions for every later boundary (the source has stopped).
    fn finished(&self) {
        if let Some(cuts) = &self.cuts {
            cuts.borrow_mut().finished = Some(self.clock.cut());
        }
    }
}

type Output<'a> = OutputBuilderSession<'a, Time, Builder<SourceItem>>;

/// The source operator. Set-up failures are sent to `errors` (the run reports them) and
/// the source then finishes, rather than panicking a worker.
pub fn kafka_source<'s>(
    scope: Scope<'s, Time>,
    spec: KafkaSourceSpec,
    events_in: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
    errors: std::sync::mpsc::Sender<KafkaSetupError>,
    checkpoint: Option<(Checkpoint, SharedSourceCuts)>,
) -> StreamVec<'s, Time, SourceItem> {
    let (index, peers) = (scope.index(), scope.peers());
    source::<_, Builder<SourceItem>, _, _>(scope, "KafkaSource", move |mut capability, info| {
        let activator = scope.activator_for(info.address);
        let restored = checkpoint.as_ref().and_then(|(c, _)| c.restored.clone());
        if let Some(r) = &restored {
            // Everything before F is in the restored state.
            capability.downgrade(&r.time);
        }
        let mut reader = match setup(&spec, index, peers, restored.map(|r| r.source()).as_ref()) {
            Ok((consumer, clock)) => Some(KafkaReader {
                end_offsets: (!spec.bounded)
                    .then(|| EndOffsets::start(&spec.kafka, spec.kafka.topics.tweets.clone(), clock.partitions().collect()))
                    .flatten(),
                consumer,
                clock,
                boundaries: checkpoint.as_ref().map(|(c, _)| c.checkpointing.boundaries()),
                cuts: checkpoint.map(|(_, cuts)| cuts),
                last_lag_report: Instant::now(),
                max_bytes: spec.kafka.source.max_message_bytes,
                batch_limit: spec.kafka.source.poll_batch,
                events_in,
            }),
            Err(e) => {
                let _ = errors.send(e);
                None
            }
        };
        let mut cap = reader.as_ref().filter(|r| !r.clock.all_done()).map(|_| capability);
        if cap.is_none() {
            reader.as_ref().inspect(|r| r.finished());
        }
        let bounded = spec.bounded;
        move |output| {
            let (Some(c), Some(reader)) = (cap.as_mut(), reader.as_mut()) else { return };
            if shutdown.load(Ordering::Relaxed) {
                cap = None;
                return;
            }
            // One clock read per activation, not per message (it showed in profiles).
            let now = Instant::now();
            let (items, polled) = reader.poll(now);
            reader.emit(items, c, output);
            reader.report();
            if reader.clock.all_done() {
                reader.finished();
                cap = None;
                return;
            }
            reader.advance(c, now);
            // A backtest polls again at once while it read anything (librdkafka refills its
            // queue in the background); an empty poll, or a live stream, waits a little.
            if polled >= reader.batch_limit || (bounded && polled > 0) {
                activator.activate();
            } else {
                activator.activate_after(Duration::from_millis(if bounded { 1 } else { 2 }));
            }
        }
    })
}
