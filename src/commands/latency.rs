//! `tweetoscope latency`: end-to-end latency through Kafka, from a window's close in event
//! time to its prediction on an output topic, in paced live mode (a measurement tool for
//! `scripts/bench`, not part of the pipeline).
//!
//! The clock: the tool generates the input itself, paced, from a start instant it picks: the
//! event at time `t` is due at `started + (t − first)/speed` ([`crate::commands::generate::send_timeline`]).
//! A cascade that starts at event time `s` closes its window `T_obs` at `c = s + T_obs`, i.e. at
//! the wall instant `started + (c − first)/speed`. A consumer (plain `assign`, no group, no
//! transactions of its own; `isolation.level = read_committed`, so with a transactional sink
//! a record counts when it becomes visible) stamps each record of `cascade_properties`
//! (`"type":"parameters"`, one per estimated window: the Hawkes prediction `n_supp`) and
//! `alerts` (the corrected prediction, above the threshold) on arrival; the latency is
//! arrival − close. The tool never looks at how the pipeline produces, so it measures
//! whichever sink is in place. The pipeline (`tweetoscope live`) runs as a separate process
//! on the same topics. The input topic must be fresh (the pipeline reads it from the
//! beginning); the output topics need not be: the consumer starts at their end as it is when
//! the tool starts, so a bench can keep them from run to run, as a deployment does.
//!
//! What the figure includes: the pipeline's wait for event time to pass `c` (the next input
//! second, 1/speed of wall time, plus the configured lateness), the fit and prediction, the
//! producer's batching (`linger.ms`), the broker, and the consumer's fetch (a long poll the
//! broker answers as soon as a record is visible, or after 100 ms at most). Windows that
//! close after the last generated event never close in a live run and are not counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde::Serialize;

use crate::commands::generate::{send_timeline, GenerateOptions, GenerateReport};
use crate::config::DataflowConfig;
use crate::io::files::Dataset;
use crate::io::kafka::{partitions_of, KafkaSetupError};
use crate::Time;

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Event-time seconds per wall second of the paced generator.
    pub speed: f64,
    /// Generate the events with time ≤ first + this many seconds only (None: all).
    pub until: Option<Time>,
    /// After the last event, wait this long (wall) for the last predictions.
    pub drain: Duration,
}

/// Latency quantiles of one kind of record, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// Records measured.
    pub count: usize,
    /// Median (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Maximum (ms).
    pub max_ms: f64,
    /// Minimum (ms); negative would mean a record before its window closed (a clock bug).
    pub min_ms: f64,
}

impl Quantiles {
    /// Nearest-rank quantiles of latencies in ms (None when empty).
    pub fn of(mut ms: Vec<f64>) -> Option<Self> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| ms[(((ms.len() as f64) * p).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Self { count: ms.len(), p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: ms[ms.len() - 1], min_ms: ms[0] })
    }
}

/// The result of a latency run.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Events sent.
    pub events: u64,
    /// Event-time span generated (s).
    pub span: Time,
    /// The generator's start (Unix ms): `--arrivals` times are relative to it, and this
    /// places them against the pipeline's own log.
    pub started_unix_ms: u64,
    /// Pace (event seconds per wall second).
    pub speed: f64,
    /// Wall time of the generation (s).
    pub generate_seconds: f64,
    /// Input events per wall second during generation.
    pub events_per_second: f64,
    /// The generator's worst lateness against its own schedule (ms).
    pub generator_max_behind_ms: u64,
    /// `cascade_properties` parameters records (every estimated window).
    pub parameters: Option<Quantiles>,
    /// `alerts` records.
    pub alerts: Option<Quantiles>,
    /// Records whose window closed after the last generated event (not measured).
    pub not_closed: usize,
    /// Records of unknown cascades or unreadable (should be 0).
    pub unmatched: usize,
    /// Every measured record, in arrival order (for `--arrivals`: where the tail sits in time).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// One measured record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// `parameters` or `alerts`.
    pub kind: &'static str,
    /// Its window's close, in wall seconds after the generator's start.
    pub close_s: f64,
    /// Arrival − close (ms).
    pub latency_ms: f64,
}

/// One consumed record: arrival instant, topic index (0 parameters, 1 alerts), cascade, window.
type Arrival = (Instant, usize, u64, Time);

fn parse(payload: &[u8]) -> Option<(bool, u64, Time)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let kind = v.get("type")?.as_str()?;
    let cid = v.get("cid")?.as_str()?.parse().ok()?;
    let t_obs = v.get("T_obs")?.as_u64()?;
    match kind {
        "parameters" => Some((true, cid, t_obs)),
        "alert" => Some((false, cid, t_obs)),
        _ => None,
    }
}

/// The measuring consumer's long poll: the broker answers a fetch as soon as a record becomes
/// visible (for `read_committed`, when its transaction commits), or after this long.
///
/// Why not 1 ms, the earlier value: a fetch that finds nothing then returns after 1 ms, so the
/// consumer asked up to ~1,000 times a second for the 8 partitions it reads, and on this
/// 2-core machine the broker serving those fetches was part of what the figure measured.
/// Measured with `scripts/latency-bench`, exactly once, 3 alternating rounds (BENCHMARKS.md,
/// issue 18, fourth pass): the medians did not rise (26–76 ms against 50–206 ms), and the
/// p99s were 72–290 ms against 118–443 ms.
const MEASURING_FETCH_WAIT_MS: &str = "100";

fn consumer_for(config: &DataflowConfig, topics: &[&str]) -> Result<BaseConsumer, KafkaSetupError> {
    let consumer: BaseConsumer = config
        .kafka
        .client_config()
        .set("group.id", format!("tweetoscope-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", MEASURING_FETCH_WAIT_MS)
        .set("isolation.level", "read_committed")
        .create()?;
    // From each partition's end as it is now: records already on the topics (an earlier
    // run's, when the bench keeps its output topics) are not this measurement's.
    let mut list = rdkafka::TopicPartitionList::new();
    for topic in topics {
        for p in partitions_of(&consumer, topic, Duration::from_secs(10))? {
            let (_, end) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            list.add_partition_offset(topic, p, rdkafka::Offset::Offset(end))?;
        }
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Runs the measurement: paced generation of `dataset` onto the `tweets` topic while consuming
/// the prediction topics; the pipeline must already be running on the same topics.
pub fn measure(dataset: &Dataset, config: &DataflowConfig, options: &LatencyOptions) -> Result<LatencyReport, KafkaSetupError> {
    let input = &config.input;
    let mut events = crate::io::timeline::worker_timeline(dataset, input.random_start_range, input.seed, 0, 1);
    let first = events.first().map(|e| e.time).unwrap_or(0);
    if let Some(until) = options.until {
        events.retain(|e| e.time <= first + until);
    }
    let last = events.last().map(|e| e.time).unwrap_or(first);
    let starts: HashMap<u64, Time> = dataset
        .cascades
        .iter()
        .map(|c| (c.id, crate::io::timeline::start_time(c, input.random_start_range, input.seed)))
        .collect();
    let topics = config.kafka.topics.clone();
    let consumer = consumer_for(config, &[&topics.cascade_properties, &topics.alerts])?;
    let alerts_topic = topics.alerts.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let last_arrival = Arc::new(std::sync::Mutex::new(Instant::now()));
    let reader = {
        let (stop, last_arrival) = (stop.clone(), last_arrival.clone());
        std::thread::spawn(move || {
            let mut got: Vec<Arrival> = Vec::new();
            let mut bad = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(5)) else { continue };
                let now = Instant::now();
                match m.payload().and_then(parse) {
                    Some((is_params, cid, t_obs)) => {
                        if is_params || m.topic() == alerts_topic {
                            got.push((now, usize::from(!is_params), cid, t_obs));
                            *last_arrival.lock().expect("clock") = now;
                        }
                    }
                    None => {
                        // `size` records share cascade_properties; only unreadable ones count.
                        if serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default()).is_err() {
                            bad += 1;
                        }
                    }
                }
            }
            (got, bad)
        })
    };
    // Let the consumer join its partitions before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let sent = Arc::new(AtomicU64::new(0));
    let gen = GenerateOptions { speed: Some(options.speed), sources: 1 };
    let report: GenerateReport = send_timeline(&events, &config.kafka, &gen, started, sent, Arc::new(AtomicBool::new(false)))?;
    let generate_seconds = started.elapsed().as_secs_f64();
    // Drain: until no record for 2 s, at most `drain`.
    let drain_end = Instant::now() + options.drain;
    while Instant::now() < drain_end {
        std::thread::sleep(Duration::from_millis(200));
        if last_arrival.lock().expect("clock").elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (got, mut unmatched) = reader.join().expect("consumer thread");
    let mut samples = Vec::new();
    let mut not_closed = 0;
    for (at, kind, cid, t_obs) in got {
        let Some(start) = starts.get(&cid) else {
            unmatched += 1;
            continue;
        };
        let close = start + t_obs;
        if close >= last {
            not_closed += 1;
            continue;
        }
        let due = started + Duration::from_secs_f64(close.saturating_sub(first) as f64 / options.speed);
        let ms = if at >= due { (at - due).as_secs_f64() * 1e3 } else { -((due - at).as_secs_f64() * 1e3) };
        samples.push(Sample { kind: ["parameters", "alerts"][kind], close_s: (due - started).as_secs_f64(), latency_ms: ms });
    }
    let latencies = |kind: &str| samples.iter().filter(|s: &&Sample| s.kind == kind).map(|s| s.latency_ms).collect();
    Ok(LatencyReport {
        events: report.sent,
        span: last - first,
        started_unix_ms,
        speed: options.speed,
        generate_seconds,
        events_per_second: if generate_seconds > 0.0 { report.sent as f64 / generate_seconds } else { 0.0 },
        generator_max_behind_ms: report.max_behind_ms,
        parameters: Quantiles::of(latencies("parameters")),
        alerts: Quantiles::of(latencies("alerts")),
        not_closed,
        unmatched,
        samples,
    })
}

impl LatencyReport {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!(
            "generated {} events spanning {} s of event time at {}× real time in {:.2} s ({:.0} events/s; generator at most {} ms behind its schedule)\n",
            self.events, self.span, self.speed, self.generate_seconds, self.events_per_second, self.generator_max_behind_ms
        );
        for (name, q) in [("cascade_properties parameters", &self.parameters), ("alerts", &self.alerts)] {
            match q {
                Some(q) => s.push_str(&format!(
                    "{name}: {} records, window close → on topic: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms; p99 / 100 ms target = {:.2}\n",
                    q.count, q.p50_ms, q.p90_ms, q.p99_ms, q.max_ms, q.min_ms, q.p99_ms / 100.0
                )),
                None => s.push_str(&format!("{name}: no records\n")),
            }
        }
        s.push_str(&format!(
            "not counted: {} records of windows closing after the last generated event; {} unmatched\n",
            self.not_closed, self.unmatched
        ));
        s
    }
}

/// `latency`: generates the dataset paced and prints (and with `--json`, writes) the figures.
#[allow(clippy::too_many_arguments)] // one argument per command-line option
pub fn command(
    input: &std::path::Path,
    index: Option<&std::path::Path>,
    speed: f64,
    until: Option<u64>,
    drain: f64,
    config: Option<std::path::PathBuf>,
    json: Option<std::path::PathBuf>,
    arrivals: Option<std::path::PathBuf>,
    kafka: &super::KafkaOptions,
) -> anyhow::Result<()> {
    use anyhow::Context;
    // --speed and --drain are checked by their parsers.
    for (flag, path) in [("--json", &json), ("--arrivals", &arrivals)] {
        if let Some(path) = path {
            super::options::check_output_file(flag, path)?;
        }
    }
    let config =
        kafka.connect(config.as_deref(), |_| {}, |t| vec![t.tweets.clone(), t.cascade_properties.clone(), t.alerts.clone()])?;
    let dataset = crate::io::files::read_dataset(input, index)?;
    let options = LatencyOptions { speed, until, drain: Duration::from_secs_f64(drain) };
    let report = measure(&dataset, &config, &options)?;
    print!("{}", report.text());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = arrivals {
        let mut csv = String::from("kind,close_s,latency_ms\n");
        for s in &report.samples {
            csv.push_str(&format!("{},{:.4},{:.3}\n", s.kind, s.close_s, s.latency_ms));
        }
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let q = Quantiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((q.count, q.p50_ms, q.p90_ms, q.p99_ms, q.max_ms, q.min_ms), (100, 50.0, 90.0, 99.0, 100.0, 1.0));
        assert!(Quantiles::of(vec![]).is_none());
        let one = Quantiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }

    #[test]
    fn only_prediction_records_are_parsed() {
        assert_eq!(parse(br#"{"type":"parameters","cid":"12","T_obs":600,"n_supp":3.0}"#), Some((true, 12, 600)));
        assert_eq!(parse(br#"{"type":"alert","cid":"5","T_obs":1200,"n_tot":300}"#), Some((false, 5, 1200)));
        assert_eq!(parse(br#"{"type":"size","cid":"5","n_tot":3,"t_end":9}"#), None);
        assert_eq!(parse(b"not json"), None);
    }
}
