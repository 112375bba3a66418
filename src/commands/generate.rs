//! The generator: replays a recorded dataset onto the `tweets` topic (SPEC §2.2).
//!
//! Every cascade starts at its post time (or a seeded random offset), events go out in
//! global time order, keyed by cascade id so that a cascade stays in one partition, from
//! `sources` sources that each stamp their own id (all sources share one clock here: the
//! dataset's timeline). With a speed factor the replay is paced at that multiple of real
//! time; `None` sends as fast as the broker takes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::options::{KafkaOptions, Speed};
use super::progress::{Pace, Progress};
use super::signals;
use crate::config::InputConfig;
use crate::io::files::read_dataset;
use crate::io::files::Dataset;
use crate::io::kafka::{KafkaConfig, KafkaSetupError};
use crate::pipeline::RunHandles;
use crate::records::TweetEvent;

/// What a generator run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateReport {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages acknowledged by the broker.
    pub delivered: u64,
    /// Messages that could not be delivered.
    pub failed: u64,
    /// Paced mode: the most an event was handed to the producer after its due instant (ms);
    /// large values mean the generator could not keep the pace.
    pub max_behind_ms: u64,
}

/// Generator options.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Event-time seconds per wall-clock second, or as fast as possible.
    pub speed: Option<f64>,
    /// Number of sources (cascade id modulo this picks the source id).
    pub sources: u64,
}

/// Sends the dataset's events to the `tweets` topic; `sent` counts progress for a bar.
pub fn generate(
    dataset: &Dataset,
    input: &InputConfig,
    kafka: &KafkaConfig,
    options: &GenerateOptions,
    sent: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
) -> Result<GenerateReport, KafkaSetupError> {
    let events = crate::io::timeline::worker_timeline(dataset, input.random_start_range, input.seed, 0, 1);
    send_timeline(&events, kafka, options, Instant::now(), sent, shutdown)
}

/// Sends `events` (sorted by time) to the `tweets` topic. Paced: the event at time `t` is due
/// at `started + (t − first)/speed`, so a caller that picks `started` knows the wall instant
/// at which any event time is reached (the latency bench's clock).
pub fn send_timeline(
    events: &[TweetEvent],
    kafka: &KafkaConfig,
    options: &GenerateOptions,
    started: Instant,
    sent: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
) -> Result<GenerateReport, KafkaSetupError> {
    let producer = kafka.producer()?;
    let first = events.first().map(|e| e.time).unwrap_or(0);
    let sources = options.sources.max(1);
    let mut max_behind = Duration::ZERO;
    for event in events {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        if let Some(speed) = options.speed {
            let due = Duration::from_secs_f64((event.time - first) as f64 / speed);
            match due.checked_sub(started.elapsed()) {
                Some(wait) => std::thread::sleep(wait),
                None => max_behind = max_behind.max(started.elapsed() - due),
            }
        }
        let (key, value) = crate::io::wire::encode(event, event.cascade % sources);
        producer.send(&kafka.topics.tweets, Some(&key), &value)?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(GenerateReport {
        sent: sent.load(Ordering::Relaxed),
        delivered: producer.stats.delivered.load(Ordering::Relaxed),
        failed: producer.stats.failed.load(Ordering::Relaxed) + producer.in_flight().max(0) as u64,
        max_behind_ms: max_behind.as_millis() as u64,
    })
}
/// `generate`: the dataset onto the `tweets` topic; fails when a message was not delivered.
/// A broker must answer ([`super::options::KAFKA_CONNECT_TIMEOUT`]) and the topic must exist
/// (else one line says to run `tweetoscope topics`). SIGINT/SIGTERM stop sending; what was
/// sent is flushed and counted, and the exit code is 128 + the signal.
pub fn command(
    input: &Path,
    index: Option<&Path>,
    speed: Speed,
    sources: u64,
    config_path: Option<PathBuf>,
    kafka: &KafkaOptions,
) -> anyhow::Result<ExitCode> {
    // First, before any thread (librdkafka's included) starts: see `signals::install`.
    let handles = RunHandles::default();
    signals::install(&handles, 0)?;
    let config = kafka.connect(config_path.as_deref(), |_| {}, |t| vec![t.tweets.clone()])?;
    let dataset = read_dataset(input, index)?;
    let shutdown: Arc<AtomicBool> = handles.shutdown.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let report = {
        let pace = if speed.0.is_some() { Pace::Paced } else { Pace::Max };
        let _progress = Progress::start("generating", Some(dataset.events() as u64), pace, sent.clone());
        generate(&dataset, &config.input, &config.kafka, &GenerateOptions { speed: speed.0, sources }, sent, shutdown)?
    };
    println!("{} messages sent, {} acknowledged by the broker, {} not delivered", report.sent, report.delivered, report.failed);
    if report.failed > 0 || report.delivered < report.sent {
        bail!("{} of {} messages were not delivered", report.sent - report.delivered, report.sent);
    }
    if let Some(cause) = handles.stop_cause() {
        println!("interrupted ({cause}): {} of the dataset's {} events were sent", report.sent, dataset.events());
        return Ok(super::replay::exit(cause));
    }
    Ok(ExitCode::SUCCESS)
}
