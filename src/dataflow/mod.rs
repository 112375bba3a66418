//! The pipeline as ONE timely dataflow: one folder per stage, each an I/O-free core and a
//! thin operator around it; this file only wires them.
//!
//! ```text
//! source ─exchange(hash cascade)─► window+terminate ─► estimate ─► predict ◄─ models (loop, +δ)
//!                                        │                           │
//!                                        └──── final sizes ─────► outcome ─exchange(window)─► train
//! ```
//! Every stage works in event time: a stage acts on time `t` only once its inputs'
//! frontier has passed `t` ([`stash::TimeStash`]), and sorts what it processes at one time
//! by cascade id, so the outputs do not depend on the number of workers or processes, nor
//! on scheduling. The same property makes consistent checkpoints cheap: see
//! [`crate::checkpoint`]; each stage's part implements [`crate::checkpoint::StagePart`].

pub mod estimate;
pub mod outcome;
pub mod predict;
pub mod sink;
pub mod source;
pub mod stash;
pub mod train;
pub mod views;
pub mod window;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concatenate, ConnectLoop, Feedback};
use timely::dataflow::{Scope, StreamVec};
use tweetoscope_model::hawkes::HawkesModel;
use tweetoscope_model::predictive::TrainerSettings;

use self::outcome::OutcomePart;
use self::predict::PredictPart;
use self::source::SharedSourceCuts;
use self::train::trainer::TrainSettings;
use self::train::TrainPart;
use self::window::tracker::{TrackerOutput, TrackerSettings};
use self::window::WindowPart;
use crate::checkpoint::{decode_parts, CheckpointError, Checkpointing, LoadedCheckpoint, StagePart};
use crate::config::{ConfigError, DataflowConfig, ForestConfig, PredictorMode, SeismicConfig};
use crate::io::schema::{
    to_json, AlertRecord, CourseSampleRecord, LearnedSampleRecord, ModelRecord, ParametersRecord, RecordType, SerieRecord,
    SizeRecord,
};
use crate::records::{
    finite, AlertThresholds, DeadLetter, FinalSize, Model, Outcome, OutputRecord, Partial, Prediction, Sample, Topic, TweetEvent,
};
use crate::telemetry::SummaryEvent;
use crate::Time;

/// The container builder used by every operator here.
pub(crate) type Builder<D> = CapacityContainerBuilder<Vec<D>>;

/// The learned layer's settings, as the predict and train stages use them.
#[derive(Debug, Clone)]
pub struct PredictorSettings {
    /// Which predictor makes the default prediction.
    pub(crate) mode: PredictorMode,
    /// Schedule, training window, learner and fallback (validated by the model crate).
    pub(crate) trainer: TrainerSettings,
    /// Event time from training a model to using it (the feedback loop's delay, ≥ 1).
    pub(crate) model_delay: Time,
    /// Nominal coverage of the prediction intervals.
    pub(crate) interval_level: f64,
    /// Residuals of the last this many ended cascades calibrate a window's intervals.
    pub(crate) calibration_size: usize,
}

/// Everything the stages need, derived once from a validated dataflow config: built only by
/// [`StageSettings::from_config`], so it never holds an invalid value.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Window and terminate semantics.
    pub(crate) tracker: TrackerSettings,
    /// Timestamp granularity after the window stage (`pipeline.granularity`).
    pub(crate) granularity: Time,
    /// The Hawkes estimator.
    pub(crate) hawkes: HawkesModel,
    /// The alert predicate's thresholds (warning, critical).
    pub(crate) alerts: AlertThresholds,
    /// The predictive layer.
    pub(crate) predictor: PredictorSettings,
    /// The course forest.
    pub(crate) forest: ForestConfig,
    /// SEISMIC's learned correction.
    pub(crate) seismic: SeismicConfig,
    /// Models to start from (warm start); empty for a cold start.
    pub(crate) initial_models: Vec<Model>,
}

impl StageSettings {
    /// The alert thresholds (the one alert predicate: `Prediction::alert_severity`).
    pub fn alerts(&self) -> AlertThresholds {
        self.alerts
    }

    /// Derives the stage settings from a config (validating it).
    pub fn from_config(config: &DataflowConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let p = &config.pipeline;
        let invalid = |key, e: &dyn std::fmt::Display| ConfigError::Invalid { key, rule: e.to_string() };
        let tracker = TrackerSettings::new(p.windows.clone(), p.t_end, p.min_cascade_size, p.min_training_size, p.tombstone_ttl)
            .map_err(|e| invalid("pipeline", &e))?;
        let q = &config.predictor;
        Ok(Self {
            tracker,
            granularity: p.granularity,
            hawkes: HawkesModel::new(config.hawkes.clone()).map_err(|e| invalid("hawkes", &e))?,
            alerts: p.alert_thresholds(),
            predictor: PredictorSettings {
                mode: q.mode,
                trainer: q.trainer()?,
                model_delay: q.model_delay,
                interval_level: q.interval_level,
                calibration_size: q.calibration_size,
            },
            forest: config.forest.clone(),
            seismic: config.seismic.clone(),
            initial_models: Vec::new(),
        })
    }
}

/// The stages that write a part of every checkpoint (the window stage first: every worker
/// has one, and it triggers pruning).
pub const STAGES: &[&str] = &[WindowPart::STAGE, PredictPart::STAGE, OutcomePart::STAGE, TrainPart::STAGE];

/// A checkpoint decoded for restoring: every worker's part of every stage. Each operator
/// keeps the records it owns under the new number of workers.
#[derive(Debug, Default)]
pub struct Restored {
    /// The checkpoint's F: the restored state holds exactly the input before F.
    pub time: Time,
    /// Cascade trackers, events in flight and source offsets.
    pub window: Vec<WindowPart>,
    /// Models in use.
    pub predict: Vec<PredictPart>,
    /// Predictions awaiting their final size.
    pub outcome: Vec<OutcomePart>,
    /// Trainers and models in the feedback loop.
    pub train: Vec<TrainPart>,
}

impl Restored {
    /// Decodes every stage's parts of a verified checkpoint.
    pub fn decode(loaded: &LoadedCheckpoint) -> Result<Self, CheckpointError> {
        Ok(Self {
            time: loaded.time,
            window: decode_parts(loaded)?,
            predict: decode_parts(loaded)?,
            outcome: decode_parts(loaded)?,
            train: decode_parts(loaded)?,
        })
    }

    /// Every partition's saved offset and newest event time (from all workers' parts).
    pub fn source(&self) -> BTreeMap<i32, (i64, Option<Time>)> {
        self.window.iter().flat_map(|w| w.source.partitions.clone()).collect()
    }
}

/// Checkpointing as the stages of one worker see it: where parts go, and the checkpoint
/// this run resumes from, if any.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Boundaries and the store.
    pub checkpointing: Checkpointing,
    /// The decoded checkpoint this run resumes from (shared by the workers of a process).
    pub restored: Option<Arc<Restored>>,
}

/// The streams a built pipeline exposes to sinks.
pub struct PipelineStreams<'s> {
    /// Encoded output records of every topic (only when requested: they cost encoding).
    pub records: Option<StreamVec<'s, Time, OutputRecord>>,
    /// Small events the run summary and telemetry are computed from.
    pub summary: StreamVec<'s, Time, SummaryEvent>,
    /// Events the window/terminate stage rejected (unknown, terminated, duplicate).
    pub dead_letters: StreamVec<'s, Time, DeadLetter>,
    /// Predictions and their outcomes, for the live page.
    pub live: StreamVec<'s, Time, LiveEvent>,
}

/// What the live views follow.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum LiveEvent {
    /// A partial cascade's events over time (seconds after the tweet, events so far).
    Curve {
        /// The cascade.
        cascade: crate::records::CascadeId,
        /// Its window.
        t_obs: Time,
        /// At most a few dozen points.
        curve: Vec<(Time, u64)>,
    },
    /// A prediction.
    Prediction(Prediction),
    /// Its outcome.
    Outcome(Outcome),
}

/// Every stream between the stages (cheap handles: cloning one fans it out).
#[derive(Clone)]
struct Stages<'s> {
    /// Input events, counted for the summary.
    input_counts: StreamVec<'s, Time, SummaryEvent>,
    /// Everything the window/terminate stage emitted.
    tracked: StreamVec<'s, Time, TrackerOutput>,
    /// Partial cascades per window.
    partials: StreamVec<'s, Time, Partial>,
    /// Terminated cascades.
    finals: StreamVec<'s, Time, FinalSize>,
    /// Predictions.
    predictions: StreamVec<'s, Time, Prediction>,
    /// Accuracy, samples and exclusions once final sizes are known.
    outcomes: StreamVec<'s, Time, Outcome>,
    /// Training samples.
    samples: StreamVec<'s, Time, Sample>,
    /// Trained models.
    trained: StreamVec<'s, Time, Model>,
}

/// Builds the pipeline on a stream of input events (in any worker distribution).
pub fn build<'s>(
    events: StreamVec<'s, Time, TweetEvent>,
    settings: &StageSettings,
    want_records: bool,
    shutdown: Arc<AtomicBool>,
    checkpoint: Option<(Checkpoint, SharedSourceCuts)>,
) -> PipelineStreams<'s> {
    let scope = events.scope();
    let stages = build_stages(events, settings, shutdown, checkpoint);
    let live = scope.concatenate(vec![
        stages.partials.clone().flat_map(|p| {
            (!p.training_only).then(|| LiveEvent::Curve { cascade: p.cascade, t_obs: p.t_obs, curve: views::curve_of(&p) })
        }),
        stages.predictions.clone().map(LiveEvent::Prediction),
        stages.outcomes.clone().map(LiveEvent::Outcome),
    ]);
    PipelineStreams {
        records: want_records.then(|| output_records(scope, &stages, settings.alerts, settings.predictor.mode)),
        summary: summary_events(scope, &stages, settings.alerts),
        dead_letters: stages.tracked.clone().flat_map(|o| match o {
            TrackerOutput::Rejected(r) => Some(DeadLetter {
                reason: r.reason,
                detail: format!("cascade {} at time {}", r.cascade, r.time),
                partition: None,
                offset: None,
                key: Some(r.cascade.to_string()),
                payload: String::new(),
            }),
            _ => None,
        }),
        live,
    }
}

/// The stages, wired: window+terminate, estimate, predict ⋈ models (feedback loop),
/// outcome, train.
fn build_stages<'s>(
    events: StreamVec<'s, Time, TweetEvent>,
    settings: &StageSettings,
    shutdown: Arc<AtomicBool>,
    checkpoint: Option<(Checkpoint, SharedSourceCuts)>,
) -> Stages<'s> {
    let scope = events.scope();
    let input_counts = count_input(events.clone());
    let ck = checkpoint.as_ref().map(|(c, _)| c.clone());
    let tracked = window::window_terminate(events, settings.tracker.clone(), settings.granularity, shutdown, checkpoint);
    let partials = tracked.clone().flat_map(|o| match o {
        TrackerOutput::Partial(p) => Some(p),
        _ => None,
    });
    let finals = tracked.clone().flat_map(|o| match o {
        TrackerOutput::Final(f) => Some(f),
        _ => None,
    });
    let estimates = estimate::estimate_stage(partials.clone(), settings.hawkes.clone());
    let (loop_handle, models) = scope.feedback::<Vec<Model>>(settings.predictor.model_delay);
    let predictions =
        predict::predict(estimates, models, settings.predictor.clone(), settings.initial_models.clone(), ck.clone());
    let outcomes = outcome::outcome(predictions.clone(), finals.clone(), ck.clone());
    let samples = outcomes.clone().flat_map(|o| match o {
        Outcome::Sample(s) => Some(s),
        _ => None,
    });
    let train_settings = TrainSettings {
        predictor: settings.predictor.clone(),
        forest: settings.forest.clone(),
        seismic: settings.seismic.clone(),
    };
    let trained = train::train(samples.clone(), train_settings, settings.initial_models.clone(), ck);
    trained.clone().broadcast().connect_loop(loop_handle);
    Stages { input_counts, tracked, partials, finals, predictions, outcomes, samples, trained }
}

/// The summary events of every stage.
fn summary_events<'s>(scope: Scope<'s, Time>, s: &Stages<'s>, alerts: AlertThresholds) -> StreamVec<'s, Time, SummaryEvent> {
    let s = s.clone();
    scope.concatenate(vec![
        s.input_counts,
        s.tracked.flat_map(|o| summary_of(&o)),
        s.predictions.flat_map(move |p| (!p.training_only).then(|| SummaryEvent::from_prediction(&p, &alerts))),
        s.outcomes.flat_map(|o| o.summary_event()),
        s.trained.map(|m| SummaryEvent::ModelTrained { t_obs: m.t_obs, n_samples: m.n_samples(), version: m.version }),
    ])
}

/// The output records of every topic (training-only partials write none but their sample).
fn output_records<'s>(
    scope: Scope<'s, Time>,
    s: &Stages<'s>,
    alerts: AlertThresholds,
    mode: PredictorMode,
) -> StreamVec<'s, Time, OutputRecord> {
    let s = s.clone();
    let record = |topic: Topic, cascade, t_obs, rank, key: Option<String>, value| OutputRecord {
        sort_key: (topic, cascade, t_obs, rank),
        key,
        value,
    };
    scope.concatenate(vec![
        s.partials.flat_map(move |p| {
            (!p.training_only).then(|| record(Topic::CascadeSeries, p.cascade, p.t_obs, 0, None, to_json(&SerieRecord::of(&p))))
        }),
        s.finals.flat_map(move |f| {
            let value = to_json(&SizeRecord::of(&f));
            f.windows
                .iter()
                .map(|w| record(Topic::CascadeProperties, f.cascade, *w, 1, Some(w.to_string()), value.clone()))
                .collect::<Vec<_>>()
        }),
        s.predictions.clone().flat_map(move |p| {
            let key = Some(p.t_obs.to_string());
            (!p.training_only)
                .then(|| record(Topic::CascadeProperties, p.cascade, p.t_obs, 0, key, to_json(&ParametersRecord::of(&p))))
        }),
        s.samples.flat_map(move |x| {
            sample_record(&x, mode).map(|v| record(Topic::Samples, x.cascade, x.t_obs, 0, Some(x.t_obs.to_string()), v))
        }),
        s.trained.map(move |m| record(Topic::Models, 0, m.t_obs, 0, Some(m.t_obs.to_string()), to_json(&ModelRecord::of(&m)))),
        s.predictions.flat_map(move |p| {
            let severity = p.alert_severity(&alerts)?;
            Some(record(Topic::Alerts, p.cascade, p.t_obs, 0, None, to_json(&AlertRecord::of(&p, severity))))
        }),
        s.outcomes.flat_map(|o| o.stat_record()),
    ])
}

/// The `samples` record of a sample: the learned layer's in the default mode, the course's
/// in course mode (its format unchanged); `None` when that kind of sample is missing.
fn sample_record(x: &Sample, mode: PredictorMode) -> Option<String> {
    match mode {
        PredictorMode::Learned => x.learned.as_ref().map(|l| to_json(&LearnedSampleRecord::of(x.cascade, x.t_obs, l))),
        PredictorMode::Course => x.course.map(|c| {
            to_json(&CourseSampleRecord {
                kind: RecordType::Sample,
                cid: x.cascade.to_string(),
                x: c.x.map(finite),
                w: finite(c.w),
            })
        }),
    }
}

/// The summary event of a window/terminate output (rejections are counted from the
/// dead-letter stream, which also carries the source's rejections).
fn summary_of(o: &TrackerOutput) -> Option<SummaryEvent> {
    Some(match o {
        TrackerOutput::Partial(p) if p.training_only => SummaryEvent::TooSmall { t_obs: p.t_obs },
        TrackerOutput::Partial(p) => SummaryEvent::Partial { t_obs: p.t_obs },
        TrackerOutput::TooSmall { t_obs, .. } => SummaryEvent::TooSmall { t_obs: *t_obs },
        TrackerOutput::Final(_) => SummaryEvent::Terminated,
        TrackerOutput::Rejected(_) => return None,
    })
}

/// One summary event per input batch with its size: the run's event count, computed in the
/// dataflow so that it is the same whatever the source and the number of processes.
fn count_input<'s>(events: StreamVec<'s, Time, TweetEvent>) -> StreamVec<'s, Time, SummaryEvent> {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::Operator;
    events.unary::<Builder<SummaryEvent>, _, _, _>(Pipeline, "CountInput", |_cap, _info| {
        |input, output| {
            input.for_each_stamp(|cap, data| {
                let events: usize = data.map(|d| d.len()).sum();
                output.session(&cap).give(SummaryEvent::Input { events: events as u64 });
            });
        }
    })
}

/// The rejections of each message, counted by reason: one summary event per reason and
/// message rather than one per rejected event, before they are gathered on worker 0.
pub fn count_rejections<'s>(letters: StreamVec<'s, Time, DeadLetter>) -> StreamVec<'s, Time, SummaryEvent> {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::Operator;
    letters.unary::<Builder<SummaryEvent>, _, _, _>(Pipeline, "CountRejections", |_cap, _info| {
        |input, output| {
            input.for_each_stamp(|cap, data| {
                let mut counts: Vec<(crate::records::RejectReason, u64)> = Vec::new();
                for d in data.flat_map(|d| d.iter()) {
                    match counts.iter_mut().find(|(r, _)| *r == d.reason) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((d.reason, 1)),
                    }
                }
                output
                    .session(&cap)
                    .give_iterator(counts.into_iter().map(|(reason, count)| SummaryEvent::Rejected { reason, count }));
            });
        }
    })
}

/// Re-exported so that tests can build sub-pipelines.
pub use window::window_terminate;
