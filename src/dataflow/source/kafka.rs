//! The Kafka source: each worker reads a deterministic share of the `tweets` partitions.
//!
//! - Partitions are `assign`ed (`p % peers == worker`), never subscribed, so no group
//!   rebalance moves them behind timely's back.
//! - Event time: the watermark is the minimum over live partitions of the newest event time
//!   seen in that partition, minus the allowed lateness; the worker's one capability follows
//!   it. An event more than the lateness behind its own partition's newest event is late:
//!   judged per partition, it depends only on Kafka's order, so a backtest is deterministic.
//!   An event more than `max_ahead` ahead of it is rejected (`wire::judge_time`).
//! - Bounded mode snapshots the end offsets at start and finishes there; live mode runs
//!   until the shutdown flag is set, and a partition silent for `idle_timeout_ms` stops
//!   holding the watermark back; when all are silent the watermark reaches the oldest of
//!   their newest events (wall-clock rules: live mode trades determinism for progress).
//! - Undecodable or late messages become [`DeadLetter`]s with their reason.
//! - Checkpoints: when the capability passes a boundary F, the offsets read so far (all of
//!   whose events went out stamped before F) are recorded for the window stage to write;
//!   a restart seeks every partition to its saved offset and restores its newest event time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::dataflow::Builder;
use crate::checkpoint::{Checkpointing, SharedSourceCuts, SourcePart};
use crate::io::kafka::{KafkaConfig, KafkaSetupError};
use crate::records::{DeadLetter, RejectReason, TweetEvent};
use crate::io::wire::{decode, judge_time, truncate};
use crate::Time;

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

struct PartitionState {
    /// Newest event time seen.
    max_time: Option<Time>,
    /// Bounded mode: offset one past the last message to read.
    end: Option<i64>,
    /// Reached its end (bounded) — no longer holds the watermark.
    done: bool,
    /// Last time a message arrived (live idleness rule).
    last_message: Instant,
    /// Offset of the next message to read (consumer lag).
    next_offset: i64,
}

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

/// This worker's source state at a cut.
fn cut(partitions: &BTreeMap<i32, PartitionState>) -> SourcePart {
    SourcePart { partitions: partitions.iter().map(|(p, s)| (*p, (s.next_offset, s.max_time))).collect() }
}

/// Sets up this worker's consumer: assigns its partitions and snapshots end offsets. With a
/// restored checkpoint, each partition starts at its saved offset with its saved newest
/// event time.
fn setup(
    spec: &KafkaSourceSpec,
    index: usize,
    peers: usize,
    restored: Option<&BTreeMap<i32, (i64, Option<Time>)>>,
) -> Result<(BaseConsumer, BTreeMap<i32, PartitionState>), KafkaSetupError> {
    let consumer = spec.kafka.consumer()?;
    let topic = &spec.kafka.topics.tweets;
    let timeout = Duration::from_secs(30);
    let all = crate::io::kafka::partitions_of(&consumer, topic, timeout)?;
    let mut list = TopicPartitionList::new();
    let mut states = BTreeMap::new();
    for p in all.into_iter().filter(|p| (*p as usize) % peers == index) {
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
        let end = spec.bounded.then_some(high);
        let done = end.is_some_and(|e| start.max(low) >= e);
        list.add_partition_offset(topic, p, Offset::Offset(start.max(low)))?;
        let max_time = saved.and_then(|(_, t)| t);
        states.insert(p, PartitionState { max_time, end, done, last_message: Instant::now(), next_offset: start.max(low) });
    }
    consumer.assign(&list)?;
    Ok((consumer, states))
}

/// The source operator. Setup failures are logged and counted in `errors`, and the source
/// then finishes (the run reports the error) rather than panicking a worker.
pub fn kafka_source<'s>(
    scope: Scope<'s, Time>,
    spec: KafkaSourceSpec,
    events_in: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    checkpoint: Option<(Checkpointing, SharedSourceCuts)>,
) -> StreamVec<'s, Time, SourceItem> {
    let (index, peers) = (scope.index(), scope.peers());
    source::<_, Builder<SourceItem>, _, _>(scope, "KafkaSource", move |mut capability, info| {
        let activator = scope.activator_for(info.address);
        let restored = checkpoint.as_ref().and_then(|(c, _)| c.restored.clone());
        let saved = restored.as_ref().map(|r| r.source());
        let (consumer, mut partitions) = match setup(&spec, index, peers, saved.as_ref()) {
            Ok(ok) => (Some(ok.0), ok.1),
            Err(e) => {
                errors.lock().expect("error list").push(e.to_string());
                (None, BTreeMap::new())
            }
        };
        if let Some(r) = &restored {
            // Everything before F is in the restored state.
            capability.downgrade(&r.time);
        }
        let mut boundaries = checkpoint.as_ref().map(|(c, _)| c.boundaries());
        let cuts = checkpoint.map(|(_, cuts)| cuts);
        let mut cap = (consumer.is_some() && partitions.values().any(|p| !p.done)).then_some(capability);
        if cap.is_none() {
            if let Some(cuts) = &cuts {
                cuts.borrow_mut().finished = Some(cut(&partitions));
            }
        }
        let lateness = spec.kafka.source.lateness;
        let max_ahead = spec.kafka.source.max_ahead;
        let max_bytes = spec.kafka.source.max_message_bytes;
        let idle = Duration::from_millis(spec.kafka.source.idle_timeout_ms);
        let batch_limit = spec.kafka.source.poll_batch;
        let bounded = spec.bounded;
        let topic = spec.kafka.topics.tweets.clone();
        let mut last_lag_report = Instant::now();
        let end_offsets = (!bounded && consumer.is_some())
            .then(|| EndOffsets::start(&spec.kafka, topic.clone(), partitions.keys().copied().collect()))
            .flatten();
        let mut last_any_message = Instant::now();
        let idle_exit = spec.idle_exit;
        move |output| {
            let (Some(c), Some(consumer)) = (cap.as_mut(), consumer.as_ref()) else { return };
            if shutdown.load(Ordering::Relaxed) {
                cap = None;
                return;
            }
            // Everything polled now goes out in one message stamped with the current watermark;
            // records carry their own event time (never below the stamp, see below).
            let mut items: Vec<SourceItem> = Vec::new();
            let mut polled = 0;
            // One clock read per activation, not per message (it showed in profiles).
            let now = Instant::now();
            let mut all_idle = !bounded && partitions.values().filter(|s| !s.done).all(|s| now.duration_since(s.last_message) >= idle);
            while polled < batch_limit {
                let message = match consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka consumer error; retrying");
                        // A broker that cannot be reached is not a quiet input.
                        last_any_message = now;
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                polled += 1;
                if all_idle {
                    // The stream resumes after a pause (or starts): every partition gets a
                    // fresh idle timeout, or the first one to deliver would push the watermark
                    // past the others' events, which would all be late.
                    all_idle = false;
                    for state in partitions.values_mut() {
                        state.last_message = now;
                    }
                }
                let (p, offset) = (message.partition(), message.offset());
                let Some(state) = partitions.get_mut(&p) else { continue };
                if state.done {
                    continue; // past the snapshot end of a bounded run
                }
                state.last_message = now;
                state.next_offset = offset + 1;
                if state.end.is_some_and(|e| offset + 1 >= e) {
                    state.done = true;
                }
                if state.end.is_some_and(|e| offset >= e) {
                    continue;
                }
                let dead = |reason, detail: String| DeadLetter {
                    reason,
                    detail,
                    partition: Some(p),
                    offset: Some(offset),
                    key: message.key().map(|k| truncate(&String::from_utf8_lossy(k), 200).to_owned()),
                    payload: truncate(&String::from_utf8_lossy(message.payload().unwrap_or_default()), 1024).to_owned(),
                };
                let item = match decode(message.key(), message.payload(), offset as u64, max_bytes) {
                    Err(e) => Err(dead(e.reason, e.detail)),
                    Ok(event) => match judge_time(event.time, state.max_time, lateness, max_ahead) {
                        Err(e) => Err(dead(e.reason, e.detail)),
                        Ok(newest) => {
                            state.max_time = Some(newest);
                            Ok(event)
                        }
                    },
                };
                items.push(item);
            }
            // Watermark: the minimum over partitions that still hold it back.
            let holding: Vec<Option<Time>> = partitions
                .values()
                .filter(|s| !s.done && (bounded || now.duration_since(s.last_message) < idle))
                .map(|s| s.max_time)
                .collect();
            let mut sent = 0u64;
            if !items.is_empty() {
                let watermark = *c.time();
                let mut session = output.session(c);
                for item in items {
                    // Live mode may exclude an idle partition whose late data then arrives
                    // below the watermark: such an event is late too. (In bounded mode the
                    // per-partition rule already guarantees time ≥ watermark.)
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
            }
            events_in.fetch_add(sent, Ordering::Relaxed);
            if polled > 0 {
                last_any_message = now;
            } else if idle_exit.is_some_and(|d| now.duration_since(last_any_message) > d) {
                tracing::info!("no message for the --until-idle time: the input has ended");
                for state in partitions.values_mut() {
                    state.done = true;
                }
            }
            if let Some(newest) = partitions.values().filter_map(|s| s.max_time).max() {
                crate::telemetry::newest_event(newest);
            }
            // Consumer lag: from the snapshot end in a backtest; live, from the end offsets a
            // background thread fetches.
            if last_lag_report.elapsed() > Duration::from_secs(2) {
                last_lag_report = Instant::now();
                for (p, state) in &partitions {
                    let end = state.end.or_else(|| end_offsets.as_ref().and_then(|e| e.end(*p)));
                    if let Some(end) = end {
                        crate::telemetry::consumer_lag(*p, end - state.next_offset);
                    }
                }
            }
            if partitions.values().all(|s| s.done) {
                if let Some(cuts) = &cuts {
                    cuts.borrow_mut().finished = Some(cut(&partitions));
                }
                cap = None;
                return;
            }
            // When every live partition is idle, what was read is all there is for now: let
            // the watermark reach it, so that a quiet stream's last events are processed.
            let watermark = if holding.is_empty() {
                partitions.values().filter(|s| !s.done).filter_map(|s| s.max_time).min()
            } else if holding.iter().all(Option::is_some) {
                holding.iter().flatten().min().copied()
            } else {
                None
            };
            if let Some(w) = watermark.map(|w| w.saturating_sub(lateness)) {
                if w > *c.time() {
                    // Every event read so far went out stamped before w: the offsets now are
                    // the cut at each boundary in (old capability, w].
                    if let (Some(b), Some(cuts)) = (boundaries.as_mut(), &cuts) {
                        for f in b.crossed(w) {
                            cuts.borrow_mut().at.insert(f, cut(&partitions));
                        }
                    }
                    c.downgrade(&w);
                }
            }
            // A backtest polls again at once while it read anything (librdkafka refills its
            // queue in the background); an empty poll, or a live stream, waits a little.
            if polled >= batch_limit || (bounded && polled > 0) {
                activator.activate();
            } else {
                activator.activate_after(Duration::from_millis(if bounded { 1 } else { 2 }));
            }
        }
    })
}
