//! Telemetry: every metric the process exports, defined in one place, and the named events
//! that stages emit. Stage code never names a metric; it calls an event function here.
//!
//! Labels are bounded: windows (a handful, from the config), outcomes and reasons (fixed
//! enums), Kafka partitions (a few). A cascade id is never a label; per-cascade facts go to
//! the live views (`dataflow::views`) instead.
//!
//! Event-time gauges are `*_timestamp_seconds` (a point on the event-time axis); durations
//! are `*_seconds`. Every labelled series exists (at 0) before its first increment, so that
//! `rate()` and `increase()` see the first one. The standard `process_*` metrics (CPU,
//! memory, open files) come from the prometheus crate's process collector.

use std::sync::OnceLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use serde::{Deserialize, Serialize};

use crate::records::{AlertThresholds, Exclusion, Prediction, RejectReason, Severity};
use crate::Time;

/// One countable fact from a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SummaryEvent {
    /// A batch of input events entered the pipeline.
    Input {
        /// How many events.
        events: u64,
    },
    /// A partial cascade was emitted for a window.
    Partial {
        /// The observation window (s).
        t_obs: Time,
    },
    /// A window of a cascade had too few events to be estimated.
    TooSmall {
        /// The observation window (s).
        t_obs: Time,
    },
    /// A cascade terminated.
    Terminated,
    /// `count` input events were rejected for `reason` (counted per message on each worker
    /// before being gathered: a replay can reject a third of its million events).
    Rejected {
        /// Why they were rejected.
        reason: RejectReason,
        /// How many.
        count: u64,
    },
    /// A prediction was made.
    Prediction {
        /// The observation window (s).
        t_obs: Time,
        /// Whether the Hawkes fit succeeded.
        fit_ok: bool,
        /// The alert it raised (`Prediction::alert_severity`), if any.
        alert: Option<Severity>,
        /// Whether the fit ended on a bound of its domain.
        at_bound: bool,
    },
    /// A prediction's accuracy once the true size was known, for every model; `covered`:
    /// whether the true size fell in the default prediction's interval (`None`: no interval).
    Accuracy {
        /// The observation window (s).
        t_obs: Time,
        /// Absolute relative error of the default prediction.
        are: f64,
        /// ARE of the plain Hawkes prediction.
        are_hawkes: f64,
        /// ARE of the course forest prediction.
        are_course: f64,
        /// ARE of SEISMIC, when it predicted.
        are_seismic: Option<f64>,
        /// ARE of corrected SEISMIC, when it predicted.
        are_seismic_corrected: Option<f64>,
        /// Whether the true size was inside the interval, when there was one.
        covered: Option<bool>,
    },
    /// A training sample was made.
    SampleMade {
        /// The observation window (s).
        t_obs: Time,
    },
    /// A prediction gave no sample.
    SampleExcluded {
        /// The observation window (s).
        t_obs: Time,
        /// Why it gave no sample.
        reason: Exclusion,
    },
    /// A window's model was retrained.
    ModelTrained {
        /// The observation window (s).
        t_obs: Time,
        /// How many samples it was trained on.
        n_samples: usize,
        /// The event time it was trained at (its version).
        version: Time,
    },
}

impl SummaryEvent {
    /// The event of a prediction.
    pub fn from_prediction(p: &Prediction, thresholds: &AlertThresholds) -> Self {
        SummaryEvent::Prediction {
            t_obs: p.t_obs,
            fit_ok: p.fit.is_some(),
            alert: p.alert_severity(thresholds),
            at_bound: p.fit.is_some_and(|f| f.at_bound),
        }
    }
}

/// The process's metrics.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    events: IntCounterVec,
    open_cascades: IntGaugeVec,
    cascades_terminated: IntCounter,
    partials: IntCounterVec,
    too_small: IntCounterVec,
    predictions: IntCounterVec,
    fits: IntCounterVec,
    are: HistogramVec,
    alerts: IntCounterVec,
    samples: IntCounterVec,
    model_version: IntGaugeVec,
    training_samples: IntGaugeVec,
    models_trained: IntCounterVec,
    frontier: IntGauge,
    newest_event: IntGauge,
    frontier_lag: IntGauge,
    consumer_lag: IntGaugeVec,
    produced: IntCounter,
    delivery_failures: IntCounter,
    latency_event: HistogramVec,
    latency_wall: HistogramVec,
    fit_seconds: HistogramVec,
    checkpoint_parts: IntCounterVec,
    checkpoint_bytes: IntCounterVec,
    checkpoint_write_seconds: HistogramVec,
    checkpoint_failures: IntCounter,
    checkpoints_skipped: IntCounter,
    checkpoint_restored: IntGauge,
    output_committed: IntGauge,
    transactions: IntCounterVec,
    transaction_seconds: prometheus::Histogram,
    outputs_suppressed: IntCounter,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let build = GaugeVec::new(Opts::new("tweetoscope_build_info", "Build information (always 1)."), &["version"])
            .expect("valid metric");
        r.register(Box::new(build.clone())).expect("unique metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        let are = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_are_ratio",
                "Absolute relative error of predictions once the true size is known, by window and model.",
            )
            .buckets(vec![0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 5.0, 10.0]),
            &["window", "model"],
        )
        .expect("valid metric");
        r.register(Box::new(are.clone())).expect("unique metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
            r.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let latency_event = histogram(
            "tweetoscope_prediction_latency_event_seconds",
            "Event time from a window's close (start + T_obs) to its prediction's timestamp, by window.",
            vec![1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0],
            &["window"],
        );
        let latency_wall = histogram(
            "tweetoscope_prediction_latency_seconds",
            "Wall-clock time from a window's partial cascade leaving the window stage to its prediction, by window.",
            vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
            &["window"],
        );
        let fit_seconds = histogram(
            "tweetoscope_hawkes_fit_seconds",
            "Wall-clock time of one Hawkes MAP fit (with SEISMIC and the features), by window.",
            vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
            &["window"],
        );
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
        let checkpoint_write_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_checkpoint_write_seconds",
                "Time to encode and durably write one checkpoint part, by kind.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["kind"],
        )
        .expect("valid metric");
        r.register(Box::new(checkpoint_write_seconds.clone())).expect("unique metric");
        let transaction_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "tweetoscope_kafka_transaction_seconds",
                "Wall time of one committed output transaction, from its start to the end of its commit (exactly-once mode).",
            )
            .buckets(vec![0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        r.register(Box::new(transaction_seconds.clone())).expect("unique metric");
        let m = Self {
            events: counter_vec(
                &r,
                "tweetoscope_events_total",
                "Input events by outcome (accepted, or the rejection reason).",
                &["outcome"],
            ),
            open_cascades: gauge_vec(
                &r,
                "tweetoscope_open_cascades",
                "Cascades currently open, per worker of this process.",
                &["worker"],
            ),
            cascades_terminated: {
                let c = IntCounter::new("tweetoscope_cascades_terminated_total", "Cascades terminated (idle for t_end).")
                    .expect("valid");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            partials: counter_vec(&r, "tweetoscope_partial_cascades_total", "Partial cascades emitted, by window.", &["window"]),
            too_small: counter_vec(
                &r,
                "tweetoscope_partial_cascades_too_small_total",
                "Windows skipped because the cascade had too few events.",
                &["window"],
            ),
            predictions: counter_vec(&r, "tweetoscope_predictions_total", "Predictions made, by window.", &["window"]),
            fits: counter_vec(&r, "tweetoscope_fits_total", "Hawkes fits by outcome (ok, at_bound, failed).", &["outcome"]),
            are,
            alerts: counter_vec(
                &r,
                "tweetoscope_alerts_total",
                "Alerts raised (prediction above the warning threshold), by window and severity.",
                &["window", "severity"],
            ),
            samples: counter_vec(
                &r,
                "tweetoscope_samples_total",
                "Training samples by window and outcome (made, or why excluded).",
                &["window", "outcome"],
            ),
            model_version: gauge_vec(
                &r,
                "tweetoscope_model_version_timestamp_seconds",
                "Event time at which the window's current model was trained.",
                &["window"],
            ),
            training_samples: gauge_vec(
                &r,
                "tweetoscope_model_training_samples",
                "Samples the window's current model was trained on.",
                &["window"],
            ),
            models_trained: counter_vec(&r, "tweetoscope_models_trained_total", "Models trained, by window.", &["window"]),
            frontier: gauge(
                &r,
                "tweetoscope_event_time_frontier_timestamp_seconds",
                "Event-time frontier of the dataflow output (all earlier times are complete).",
            ),
            newest_event: gauge(
                &r,
                "tweetoscope_event_time_newest_timestamp_seconds",
                "Newest input event time seen by this process.",
            ),
            frontier_lag: gauge(
                &r,
                "tweetoscope_event_time_lag_seconds",
                "Newest event time minus the frontier: how far processing trails the input.",
            ),
            consumer_lag: gauge_vec(
                &r,
                "tweetoscope_kafka_consumer_lag_messages",
                "Messages between the consumer position and the partition's end.",
                &["partition"],
            ),
            produced: {
                let c = IntCounter::new("tweetoscope_kafka_messages_produced_total", "Messages acknowledged by Kafka.")
                    .expect("valid");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            delivery_failures: {
                let c = IntCounter::new("tweetoscope_kafka_delivery_failures_total", "Messages Kafka did not acknowledge.")
                    .expect("valid");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            latency_event,
            latency_wall,
            fit_seconds,
            checkpoint_parts: counter_vec(
                &r,
                "tweetoscope_checkpoint_parts_written_total",
                "Checkpoint parts written by this process, by kind.",
                &["kind"],
            ),
            checkpoint_bytes: counter_vec(
                &r,
                "tweetoscope_checkpoint_bytes_written_total",
                "Bytes of checkpoint parts written by this process, by kind.",
                &["kind"],
            ),
            checkpoint_write_seconds,
            checkpoint_failures: counter(
                &r,
                "tweetoscope_checkpoint_failures_total",
                "Checkpoint parts that could not be written (the checkpoint is then incomplete).",
            ),
            checkpoints_skipped: counter(
                &r,
                "tweetoscope_checkpoints_skipped_total",
                "Incomplete or corrupt checkpoints skipped when restoring.",
            ),
            checkpoint_restored: gauge(
                &r,
                "tweetoscope_checkpoint_restored_timestamp_seconds",
                "Event time F of the checkpoint this run resumed from (0: a fresh start).",
            ),
            output_committed: gauge(
                &r,
                "tweetoscope_output_committed_frontier_timestamp_seconds",
                "Output frontier committed to Kafka: every output record before it is visible to read-committed consumers.",
            ),
            transactions: counter_vec(
                &r,
                "tweetoscope_kafka_transactions_total",
                "Output transactions by outcome (committed, aborted).",
                &["outcome"],
            ),
            transaction_seconds,
            outputs_suppressed: counter(
                &r,
                "tweetoscope_outputs_suppressed_total",
                "Output records recomputed after a restart and not produced again (already committed).",
            ),
            registry: r,
        };
        m.events.with_label_values(&["accepted"]);
        for reason in RejectReason::ALL {
            m.events.with_label_values(&[reason.as_str()]);
        }
        for outcome in ["ok", "at_bound", "failed"] {
            m.fits.with_label_values(&[outcome]);
        }
        for outcome in ["committed", "aborted"] {
            m.transactions.with_label_values(&[outcome]);
        }
        // The stages that write checkpoint parts (`dataflow::STAGES`; telemetry sits below it).
        for kind in ["window", "predict", "outcome", "train"] {
            m.checkpoint_parts.with_label_values(&[kind]);
            m.checkpoint_bytes.with_label_values(&[kind]);
            m.checkpoint_write_seconds.with_label_values(&[kind]);
        }
        m
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Declares the configured windows so that their series exist (at 0) from the start.
pub fn windows_configured(windows: &[Time]) {
    let m = metrics();
    for w in windows {
        let w = w.to_string();
        m.partials.with_label_values(&[&w]);
        m.too_small.with_label_values(&[&w]);
        m.predictions.with_label_values(&[&w]);
        for s in Severity::ALL {
            m.alerts.with_label_values(&[&w, s.as_str()]);
        }
        m.samples.with_label_values(&[&w, "made"]);
        for reason in Exclusion::ALL {
            m.samples.with_label_values(&[&w, reason.as_str()]);
        }
        m.models_trained.with_label_values(&[&w]);
        for model in ["default", "hawkes", "course", "seismic", "seismic_corrected"] {
            m.are.with_label_values(&[&w, model]);
        }
        m.latency_event.with_label_values(&[&w]);
        m.latency_wall.with_label_values(&[&w]);
        m.fit_seconds.with_label_values(&[&w]);
    }
}

/// A summary event seen on this worker (before they are gathered on worker 0).
pub fn summary_event(e: &SummaryEvent) {
    let m = metrics();
    match e {
        SummaryEvent::Input { events } => m.events.with_label_values(&["accepted"]).inc_by(*events),
        SummaryEvent::Partial { t_obs } => m.partials.with_label_values(&[&t_obs.to_string()]).inc(),
        SummaryEvent::TooSmall { t_obs } => m.too_small.with_label_values(&[&t_obs.to_string()]).inc(),
        SummaryEvent::Terminated => m.cascades_terminated.inc(),
        SummaryEvent::Rejected { reason, count } => m.events.with_label_values(&[reason.as_str()]).inc_by(*count),
        SummaryEvent::Prediction { t_obs, fit_ok, alert, at_bound } => {
            let w = t_obs.to_string();
            m.predictions.with_label_values(&[&w]).inc();
            let outcome = match (fit_ok, at_bound) {
                (false, _) => "failed",
                (true, true) => "at_bound",
                (true, false) => "ok",
            };
            m.fits.with_label_values(&[outcome]).inc();
            if let Some(severity) = alert {
                m.alerts.with_label_values(&[&w, severity.as_str()]).inc();
            }
        }
        SummaryEvent::Accuracy { t_obs, are, are_hawkes, are_course, are_seismic, are_seismic_corrected, .. } => {
            let w = t_obs.to_string();
            m.are.with_label_values(&[&w, "default"]).observe(*are);
            m.are.with_label_values(&[&w, "hawkes"]).observe(*are_hawkes);
            m.are.with_label_values(&[&w, "course"]).observe(*are_course);
            if let Some(a) = are_seismic {
                m.are.with_label_values(&[&w, "seismic"]).observe(*a);
            }
            if let Some(a) = are_seismic_corrected {
                m.are.with_label_values(&[&w, "seismic_corrected"]).observe(*a);
            }
        }
        SummaryEvent::SampleMade { t_obs } => m.samples.with_label_values(&[&t_obs.to_string(), "made"]).inc(),
        SummaryEvent::SampleExcluded { t_obs, reason } => {
            m.samples.with_label_values(&[&t_obs.to_string(), reason.as_str()]).inc()
        }
        SummaryEvent::ModelTrained { t_obs, n_samples, version } => {
            let w = t_obs.to_string();
            m.models_trained.with_label_values(&[&w]).inc();
            m.training_samples.with_label_values(&[&w]).set(*n_samples as i64);
            m.model_version.with_label_values(&[&w]).set(*version as i64);
        }
    }
}

/// A worker's open-cascade count changed.
pub fn open_cascades(worker: usize, open: usize) {
    metrics().open_cascades.with_label_values(&[&worker.to_string()]).set(open as i64);
}

/// The newest event time this process has seen.
pub fn newest_event(time: Time) {
    let m = metrics();
    if time as i64 > m.newest_event.get() {
        m.newest_event.set(time as i64);
        m.frontier_lag.set(time as i64 - m.frontier.get());
    }
}

/// The dataflow's output frontier moved (None: the run is complete).
pub fn frontier(time: Option<Time>) {
    let m = metrics();
    let t = time.unwrap_or(m.newest_event.get().max(0) as Time) as i64;
    if t > m.frontier.get() {
        m.frontier.set(t);
        *last_progress().lock().expect("progress clock") = std::time::Instant::now();
    }
    m.frontier_lag.set((m.newest_event.get() - m.frontier.get()).max(0));
}

fn last_progress() -> &'static std::sync::Mutex<std::time::Instant> {
    static LAST: OnceLock<std::sync::Mutex<std::time::Instant>> = OnceLock::new();
    LAST.get_or_init(|| std::sync::Mutex::new(std::time::Instant::now()))
}

/// Liveness: `Err` with a reason when input newer than the frontier has been waiting and
/// the frontier has not advanced for `stall` (wall clock) — a stuck worker or a silent
/// network partition (timely has no read timeouts). An idle pipeline with nothing pending
/// is healthy.
pub fn liveness(stall: std::time::Duration) -> Result<(), String> {
    let m = metrics();
    let pending = m.newest_event.get() > m.frontier.get();
    let since = last_progress().lock().expect("progress clock").elapsed();
    if pending && since > stall {
        return Err(format!(
            "event-time frontier stuck at {} s for {} s while events up to {} s are pending",
            m.frontier.get(),
            since.as_secs(),
            m.newest_event.get()
        ));
    }
    Ok(())
}

/// A Kafka partition's consumer lag.
pub fn consumer_lag(partition: i32, lag: i64) {
    metrics().consumer_lag.with_label_values(&[&partition.to_string()]).set(lag.max(0));
}

/// Producer deliveries since the last call.
pub fn deliveries(delivered: u64, failed: u64) {
    let m = metrics();
    m.produced.inc_by(delivered);
    m.delivery_failures.inc_by(failed);
}

/// A prediction of window `window` was made `event` seconds of event time after the
/// window closed and `wall` after its partial cascade left the window stage (when known).
pub fn prediction_latency(window: Time, event: Time, wall: Option<std::time::Duration>) {
    let m = metrics();
    let w = window.to_string();
    m.latency_event.with_label_values(&[&w]).observe(event as f64);
    if let Some(d) = wall {
        m.latency_wall.with_label_values(&[&w]).observe(d.as_secs_f64());
    }
}

/// One Hawkes fit of window `window` took `took`.
pub fn hawkes_fit(window: Time, took: std::time::Duration) {
    metrics().fit_seconds.with_label_values(&[&window.to_string()]).observe(took.as_secs_f64());
}

/// A checkpoint part was written.
pub fn checkpoint_part_written(kind: &str, bytes: u64, took: std::time::Duration) {
    let m = metrics();
    m.checkpoint_parts.with_label_values(&[kind]).inc();
    m.checkpoint_bytes.with_label_values(&[kind]).inc_by(bytes);
    m.checkpoint_write_seconds.with_label_values(&[kind]).observe(took.as_secs_f64());
}

/// Checkpoint parts of `stages` written by this process so far: (parts, bytes, seconds
/// spent encoding and writing them).
pub fn checkpoint_totals(stages: &[&str]) -> (u64, u64, f64) {
    let m = metrics();
    stages.iter().fold((0, 0, 0.0), |(p, b, s), kind| {
        (
            p + m.checkpoint_parts.with_label_values(&[kind]).get(),
            b + m.checkpoint_bytes.with_label_values(&[kind]).get(),
            s + m.checkpoint_write_seconds.with_label_values(&[kind]).get_sample_sum(),
        )
    })
}

/// A checkpoint part could not be written.
pub fn checkpoint_failed() {
    metrics().checkpoint_failures.inc();
}

/// An unusable checkpoint was skipped at restore.
pub fn checkpoint_skipped() {
    metrics().checkpoints_skipped.inc();
}

/// The run resumed from the checkpoint at `time`.
pub fn checkpoint_restored(time: Time) {
    metrics().checkpoint_restored.set(time.min(i64::MAX as u64) as i64);
}

/// Every output before `frontier` is committed (at start: read back from Kafka).
pub fn output_committed(frontier: Time) {
    metrics().output_committed.set(frontier.min(i64::MAX as u64) as i64);
}

/// An output transaction ended; on commit, every output before `frontier` is committed.
pub fn output_transaction(committed: bool, frontier: Time, records: u64, took: std::time::Duration) {
    let m = metrics();
    m.transactions.with_label_values(&[if committed { "committed" } else { "aborted" }]).inc();
    if committed {
        output_committed(frontier);
        m.produced.inc_by(records);
        m.transaction_seconds.observe(took.as_secs_f64());
    }
}

/// Recomputed output records that were not produced again.
pub fn outputs_suppressed(records: u64) {
    metrics().outputs_suppressed.inc_by(records);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_fails_only_when_pending_input_waits_on_a_stuck_frontier() {
        // The process-wide metrics are shared by the tests of this binary: use large times.
        frontier(Some(5_000_000_000));
        assert!(liveness(std::time::Duration::ZERO).is_ok(), "nothing pending");
        newest_event(6_000_000_000);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let err = liveness(std::time::Duration::from_millis(1)).unwrap_err();
        assert!(err.contains("stuck"), "{err}");
        assert!(liveness(std::time::Duration::from_secs(3600)).is_ok(), "not stuck for long");
        frontier(Some(6_000_000_000));
        assert!(liveness(std::time::Duration::ZERO).is_ok(), "caught up");
    }

    #[test]
    fn every_metric_is_prefixed_and_series_exist_before_any_event() {
        windows_configured(&[600]);
        let text = metrics().render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("tweetoscope_") || name.starts_with("process_"), "{line}");
        }
        assert!(text.contains("tweetoscope_alerts_total{severity=\"critical\",window=\"600\"} 0"), "{text}");
        assert!(text.contains("tweetoscope_are_ratio_count{model=\"seismic_corrected\",window=\"600\"} 0"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        assert!(text.contains("tweetoscope_events_total{outcome=\"late\"} 0"), "{text}");
        assert!(text.contains("tweetoscope_predictions_total{window=\"600\"}"));
        assert!(text.contains("tweetoscope_build_info"));
    }
}
