//! The Kafka source: each worker reads a deterministic share of the `tweets` partitions.
//!
//! - Partitions are `assign`ed (`p % peers == worker`), never subscribed, so no group
//!   rebalance moves them behind timely's back.
//! - Event time, lateness, idleness and the watermark are the [`clock`]'s rules (pure and
//!   unit-tested); the [`prefetch`] thread polls rdkafka and decodes, and this operator
//!   applies the clock and emits events and dead letters on two outputs whose capabilities
//!   follow the watermark.
//! - Read-ahead is bounded ([`readahead`]): the source pauses while more than
//!   `max_in_flight` of its events have not left the dataflow, so a slow dataflow leaves
//!   the backlog in Kafka instead of in memory.
//! - Bounded mode snapshots the end offsets at start and finishes there; live mode runs
//!   until the shutdown flag is set.
//! - Undecodable or late messages become [`DeadLetter`]s with their reason.
//! - Checkpoints: when the capability passes a boundary F, the offsets read so far (all of
//!   whose events went out stamped before F) are recorded for the window stage to write;
//!   a restart seeks every partition to its saved offset and restores its newest event time.

pub mod clock;
pub mod prefetch;
pub mod readahead;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::scheduling::SyncActivator;

use self::clock::{ClockSettings, SourceClock};
use self::prefetch::{Polled, Prefetch};
use self::readahead::ReadAhead;
use crate::dataflow::source::SharedSourceCuts;
use crate::dataflow::Builder;
use crate::dataflow::Checkpoint;
use crate::io::kafka::{KafkaConfig, KafkaSetupError};
use crate::records::{DeadLetter, RejectReason, TweetEvent};
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
    let consumer = spec.kafka.source_consumer()?;
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

/// The source's two outputs (events, dead letters): one capability each, always at the same
/// time, the watermark.
struct Caps {
    events: Capability<Time>,
    letters: Capability<Time>,
}

impl Caps {
    fn time(&self) -> Time {
        *self.events.time()
    }

    fn downgrade(&mut self, time: &Time) {
        self.events.downgrade(time);
        self.letters.downgrade(time);
    }
}

type EventsOut = OutputBuilder<Time, Builder<TweetEvent>>;
type LettersOut = OutputBuilder<Time, Builder<DeadLetter>>;

/// One worker's Kafka reader: the prefetch thread, the clock, and where the cut offsets go.
struct KafkaReader {
    /// This worker's consumer (assigned partitions only), polled and decoded on its thread.
    prefetch: Prefetch,
    /// Positions, newest times, idleness, the watermark.
    clock: SourceClock,
    /// Events read and not yet through the dataflow (the read-ahead bound).
    read_ahead: ReadAhead,
    /// Checkpoint boundaries the capability has to record offsets at.
    boundaries: Option<crate::checkpoint::Boundaries>,
    /// Where the offsets at each boundary go (this worker's window stage writes them).
    cuts: Option<SharedSourceCuts>,
    /// Live: end offsets fetched in the background for the lag metric.
    end_offsets: Option<EndOffsets>,
    /// When the lag was last reported.
    last_lag_report: Instant,
    /// Most messages one activation takes from the prefetch thread.
    batch_limit: usize,
    /// Counts the events emitted (progress bars, throughput).
    events_in: Arc<AtomicU64>,
}

impl KafkaReader {
    /// Takes up to a batch of the messages the prefetch thread polled and decoded, at `now`,
    /// and emits them at the capability's time, in offset order: events on one output, dead
    /// letters on the other. Returns the number of messages taken.
    ///
    /// Live mode may exclude an idle partition whose late data then arrives below the
    /// watermark: such an event is late too. (In bounded mode the per-partition rule already
    /// guarantees time ≥ watermark.)
    fn read(&mut self, now: Instant, caps: &Caps, events: &mut EventsOut, letters: &mut LettersOut) -> usize {
        let watermark = caps.time();
        let (mut events, mut letters) = (events.activate(), letters.activate());
        let (mut events, mut letters) = (events.session(&caps.events), letters.session(&caps.letters));
        let (mut polled, mut sent) = (0, 0u64);
        self.clock.begin_round(now);
        while polled < self.batch_limit {
            let (p, offset, decoded) = match self.prefetch.ready() {
                None => break,
                Some(Polled::Error(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error; retrying");
                    self.clock.on_error(now);
                    break;
                }
                Some(Polled::Message { partition, offset, decoded }) => (partition, offset, decoded),
            };
            polled += 1;
            if !self.clock.admit(p, offset, now) {
                continue;
            }
            let event = match decoded {
                Ok(event) => event,
                Err(letter) => {
                    letters.give(letter);
                    continue;
                }
            };
            // Rejected on its time: too far ahead or late on its partition (the clock), or
            // behind the watermark. The event stands for the message (its bytes stayed on
            // the prefetch thread).
            let rejected = match self.clock.judge(p, event.time) {
                Err(e) => Some((e.reason, e.detail)),
                Ok(()) if event.time < watermark => {
                    Some((RejectReason::Late, format!("time {} is behind the watermark {watermark}", event.time)))
                }
                Ok(()) => None,
            };
            match rejected {
                None => {
                    sent += 1;
                    events.give(event);
                }
                Some((reason, detail)) => letters.give(DeadLetter {
                    reason,
                    detail,
                    partition: Some(p),
                    offset: Some(offset),
                    key: Some(event.cascade.to_string()),
                    payload: String::new(),
                }),
            }
        }
        self.clock.end_round(polled, now);
        self.read_ahead.emitted(watermark, sent);
        self.events_in.fetch_add(sent, Ordering::Relaxed);
        polled
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

    /// Moves the capabilities to the watermark; every event read so far went out stamped
    /// before it, so the offsets now are the cut at each boundary crossed.
    fn advance(&mut self, caps: &mut Caps, now: Instant) {
        let Some(w) = self.clock.watermark(now) else { return };
        if w <= caps.time() {
            return;
        }
        if let (Some(b), Some(cuts)) = (self.boundaries.as_mut(), &self.cuts) {
            for f in b.crossed(w) {
                cuts.borrow_mut().at.insert(f, self.clock.cut());
            }
        }
        caps.downgrade(&w);
    }

    /// Records the final positions for every later boundary (the source has stopped).
    fn finished(&self) {
        if let Some(cuts) = &self.cuts {
            cuts.borrow_mut().finished = Some(self.clock.cut());
        }
    }
}

/// What the source shares with its worker.
pub struct SourceLinks {
    /// Counts the events emitted (progress bars, throughput).
    pub events_in: Arc<AtomicU64>,
    /// Set to stop reading.
    pub shutdown: Arc<AtomicBool>,
    /// Set-up failures (the run reports them; the source then finishes).
    pub errors: std::sync::mpsc::Sender<KafkaSetupError>,
    /// Checkpointing: where the source's offsets at each boundary go.
    pub checkpoint: Option<(Checkpoint, SharedSourceCuts)>,
    /// The worker's probe at the end of the dataflow: what it has completed (the read-ahead
    /// bound, `[kafka.source] max_in_flight`).
    pub completed: ProbeHandle<Time>,
}

/// The source's streams: the decoded events and the messages it rejected.
pub struct KafkaStreams<'s> {
    /// Events, each at or after its message's timestamp.
    pub events: StreamVec<'s, Time, TweetEvent>,
    /// Undecodable, invalid or late messages with their reason.
    pub dead_letters: StreamVec<'s, Time, DeadLetter>,
}

/// The source operator. Set-up failures are sent to `links.errors` (the run reports them)
/// and the source then finishes, rather than panicking a worker.
pub fn kafka_source<'s>(scope: Scope<'s, Time>, spec: KafkaSourceSpec, links: SourceLinks) -> KafkaStreams<'s> {
    let mut builder = OperatorBuilder::new("KafkaSource".to_owned(), scope);
    let address = builder.operator_info().address;
    let (events_out, events) = builder.new_output::<Vec<TweetEvent>>();
    let (letters_out, dead_letters) = builder.new_output::<Vec<DeadLetter>>();
    let (mut events_out, mut letters_out) = (EventsOut::from(events_out), LettersOut::from(letters_out));
    builder.build(move |mut capabilities| {
        let wake = scope.worker().sync_activator_for(address.to_vec());
        let activator = scope.activator_for(address);
        let (Some(letters), Some(events)) = (capabilities.pop(), capabilities.pop()) else {
            unreachable!("an operator with two outputs has two capabilities")
        };
        let mut caps = Caps { events, letters };
        let mut reader = start_reader(&spec, scope.index(), scope.peers(), &mut caps, &links, wake);
        let mut caps = reader.as_ref().filter(|r| !r.clock.all_done()).map(|_| caps);
        if caps.is_none() {
            reader.as_ref().inspect(|r| r.finished());
        }
        let (bounded, shutdown, completed) = (spec.bounded, links.shutdown, links.completed);
        move |_frontiers| {
            let (Some(c), Some(reader)) = (caps.as_mut(), reader.as_mut()) else { return };
            if shutdown.load(Ordering::Relaxed) {
                caps = None;
                return;
            }
            // One clock read per activation, not per message (it showed in profiles).
            let now = Instant::now();
            let frontier = completed.with_frontier(|f| f.first().copied());
            reader.read_ahead.completed(frontier);
            if reader.read_ahead.should_pause(frontier, c.time()) {
                reader.clock.hold(now);
                activator.activate_after(Duration::from_millis(1));
                return;
            }
            let polled = reader.read(now, c, &mut events_out, &mut letters_out);
            reader.report();
            if reader.clock.all_done() {
                reader.finished();
                caps = None;
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
    });
    KafkaStreams { events, dead_letters }
}

/// Sets up the reader (consumer, clock, checkpoint cuts); `None` after a set-up failure,
/// which goes to `links.errors`. A restored checkpoint moves the capabilities to its F:
/// everything before F is in the restored state.
fn start_reader(
    spec: &KafkaSourceSpec,
    index: usize,
    peers: usize,
    caps: &mut Caps,
    links: &SourceLinks,
    wake: SyncActivator,
) -> Option<KafkaReader> {
    let restored = links.checkpoint.as_ref().and_then(|(c, _)| c.restored.clone());
    if let Some(r) = &restored {
        caps.downgrade(&r.time);
    }
    let (consumer, clock) = match setup(spec, index, peers, restored.map(|r| r.source()).as_ref()) {
        Ok(set_up) => set_up,
        Err(e) => {
            let _ = links.errors.send(e);
            return None;
        }
    };
    let source = &spec.kafka.source;
    let prefetch = match Prefetch::start(consumer, source.max_message_bytes, wake) {
        Ok(p) => p,
        Err(e) => {
            let _ = links.errors.send(KafkaSetupError::Thread(e.to_string()));
            return None;
        }
    };
    Some(KafkaReader {
        end_offsets: (!spec.bounded)
            .then(|| EndOffsets::start(&spec.kafka, spec.kafka.topics.tweets.clone(), clock.partitions().collect()))
            .flatten(),
        prefetch,
        clock,
        read_ahead: ReadAhead::new(source.max_in_flight),
        boundaries: links.checkpoint.as_ref().map(|(c, _)| c.checkpointing.boundaries()),
        cuts: links.checkpoint.as_ref().map(|(_, cuts)| cuts.clone()),
        last_lag_report: Instant::now(),
        batch_limit: source.poll_batch,
        events_in: links.events_in.clone(),
    })
}
