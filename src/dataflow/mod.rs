//! The pipeline as ONE timely dataflow: thin operators around the synchronous cores.
//!
//! ```text
//! source ─exchange(hash cascade)─► window+terminate ─► estimate ─► predict ◄─ models (loop, +δ)
//!                                        │                           │
//!                                        └──── final sizes ─────► outcome ─exchange(window)─► train
//! ```
//! Every stage works in event time: a stage acts on time `t` only once its inputs'
//! frontier has passed `t`, and sorts what it processes at one time by cascade id, so the
//! outputs do not depend on the number of workers or processes, nor on scheduling. The
//! same property makes consistent checkpoints cheap: see [`crate::checkpoint`].

pub mod outcome;
pub mod predict;
pub mod sink;
pub mod source;
pub mod train;
pub mod window;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concatenate, ConnectLoop, Feedback};
use timely::dataflow::StreamVec;
use tweetoscope_model::hawkes::HawkesModel;

use crate::dataflow::window::tracker::{TrackerOutput, TrackerSettings};
use crate::checkpoint::{Checkpointing, SharedSourceCuts};
use crate::config::{DataflowConfig, ForestConfig, SeismicConfig};
use crate::records::{json, Estimate, FitSummary, OutputRecord, Partial, Topic, TweetEvent};
use crate::telemetry::SummaryEvent;
use crate::Time;

/// The container builder used by every operator here.
pub(crate) type Builder<D> = CapacityContainerBuilder<Vec<D>>;

/// Everything the stages need, derived once from the dataflow config.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Window and terminate semantics.
    pub tracker: TrackerSettings,
    /// Timestamp granularity after the window stage (`pipeline.granularity`).
    pub granularity: Time,
    /// The Hawkes estimator.
    pub hawkes: HawkesModel,
    /// Prediction size that raises an alert.
    pub alert_threshold: f64,
    /// The predictive layer.
    pub forest: ForestConfig,
    /// SEISMIC's learned correction.
    pub seismic: SeismicConfig,
    /// Models to start from (warm start from the models topic); empty for a cold start.
    pub initial_models: Vec<crate::records::Model>,
}

impl StageSettings {
    /// Derives the stage settings from a validated config.
    pub fn from_config(config: &DataflowConfig) -> Result<Self, crate::config::ConfigError> {
        config.validate()?;
        let p = &config.pipeline;
        Ok(Self {
            tracker: TrackerSettings {
                windows: p.windows.clone(),
                t_end: p.t_end,
                min_cascade_size: p.min_cascade_size,
                tombstone_ttl: p.tombstone_ttl,
            },
            granularity: p.granularity,
            hawkes: HawkesModel::new(config.hawkes.clone())
                .map_err(|e| crate::config::ConfigError::Invalid(e.to_string()))?,
            alert_threshold: p.alert_threshold,
            forest: config.forest.clone(),
            seismic: config.seismic.clone(),
            initial_models: Vec::new(),
        })
    }
}

/// The streams a built pipeline exposes to sinks.
pub struct PipelineStreams<'s> {
    /// Encoded output records of every topic (only when requested: they cost encoding).
    pub records: Option<StreamVec<'s, Time, OutputRecord>>,
    /// Small events the run summary and telemetry are computed from.
    pub summary: StreamVec<'s, Time, SummaryEvent>,
    /// Events the window/terminate stage rejected (unknown, terminated, duplicate).
    pub dead_letters: StreamVec<'s, Time, crate::records::DeadLetter>,
    /// Predictions and their outcomes, for the live page.
    pub live: StreamVec<'s, Time, LiveEvent>,
}

/// What the live page follows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum LiveEvent {
    /// A prediction.
    Prediction(crate::records::Prediction),
    /// Its outcome.
    Outcome(crate::records::Outcome),
}

/// Fits one partial cascade (the estimate stage's core), and computes the SEISMIC baseline
/// on the same events.
pub fn estimate(model: &HawkesModel, partial: Partial) -> Estimate {
    let seismic_events: Vec<(f64, f64)> = partial.events.iter().map(|e| (e.t, e.m)).collect();
    let seismic = tweetoscope_model::seismic::prediction(
        &seismic_events,
        partial.t_obs as f64,
        &tweetoscope_model::seismic::SeismicParams::default(),
    )
    .ok();
    let n_seismic = seismic.and_then(|p| p.final_size).filter(|n| n.is_finite());
    let fit = model.fit(&partial.events, partial.t_obs as f64).ok().map(|f| FitSummary {
        p: f.p,
        beta: f.beta,
        n_star: f.n_star,
        g1: f.g1,
        n_hawkes: f.n_pred,
        at_bound: !f.bounds_hit.is_empty(),
    });
    Estimate { cascade: partial.cascade, t_obs: partial.t_obs, msg: partial.msg, n: partial.events.len(), fit, n_seismic, seismic }
}

/// Builds the pipeline on a stream of input events (in any worker distribution).
pub fn build<'s>(
    events: StreamVec<'s, Time, TweetEvent>,
    settings: &StageSettings,
    want_records: bool,
    shutdown: Arc<AtomicBool>,
    checkpoint: Option<(Checkpointing, SharedSourceCuts)>,
) -> PipelineStreams<'s> {
    let scope = events.scope();
    let input_counts = count_input(events.clone());
    let ck = checkpoint.as_ref().map(|(c, _)| c.clone());
    let tracked = window::window_terminate(events, settings.tracker.clone(), settings.granularity, shutdown, checkpoint);
    let dead_letters = tracked.clone().flat_map(|o| match o {
        TrackerOutput::Rejected(r) => Some(crate::records::DeadLetter {
            reason: r.reason,
            detail: format!("cascade {} at time {}", r.cascade, r.time),
            partition: None,
            offset: None,
            key: Some(r.cascade.to_string()),
            payload: String::new(),
        }),
        _ => None,
    });

    let partials = tracked.clone().flat_map(|o| match o {
        TrackerOutput::Partial(p) => Some(p),
        _ => None,
    });
    let finals = tracked.clone().flat_map(|o| match o {
        TrackerOutput::Final(f) => Some(f),
        _ => None,
    });

    let model = settings.hawkes.clone();
    let series = want_records.then(|| {
        partials.clone().map(|p| OutputRecord {
            sort_key: (Topic::CascadeSeries, p.cascade, p.t_obs, 0),
            key: None,
            value: json::serie(&p),
        })
    });
    let estimates = partials.map(move |p| estimate(&model, p));

    let (loop_handle, models) = scope.feedback::<Vec<crate::records::Model>>(settings.forest.model_delay);
    let predictions = predict::predict(estimates.clone(), models, settings.initial_models.clone(), ck.clone());
    let outcomes = outcome::outcome(predictions.clone(), finals.clone(), ck.clone());
    let samples = outcomes.clone().flat_map(|o| match o {
        crate::records::Outcome::Sample(s) => Some(s),
        _ => None,
    });
    let trained = train::train(
        samples.clone(),
        settings.forest.clone(),
        settings.seismic.clone(),
        settings.initial_models.clone(),
        ck,
    );
    trained.clone().broadcast().connect_loop(loop_handle);

    let threshold = settings.alert_threshold;
    let live = scope.concatenate(vec![
        predictions.clone().map(LiveEvent::Prediction),
        outcomes.clone().map(LiveEvent::Outcome),
    ]);
    let summary = scope.concatenate(vec![
        input_counts,
        tracked.flat_map(|o| summary_of(&o)),
        predictions.clone().map(move |p| SummaryEvent::from_prediction(&p, threshold)),
        outcomes.clone().flat_map(|o| o.summary_event()),
        trained.clone().map(|m| SummaryEvent::ModelTrained { t_obs: m.t_obs, n_samples: m.n_samples, version: m.version }),
    ]);

    let records = series.map(|series| {
        let alert_threshold = settings.alert_threshold;
        let parts = vec![
            series,
            finals.flat_map(|f| {
                let value = json::size(&f);
                f.windows
                    .iter()
                    .map(|w| OutputRecord {
                        sort_key: (Topic::CascadeProperties, f.cascade, *w, 1),
                        key: Some(w.to_string()),
                        value: value.clone(),
                    })
                    .collect::<Vec<_>>()
            }),
            estimates.map(|e| OutputRecord {
                sort_key: (Topic::CascadeProperties, e.cascade, e.t_obs, 0),
                key: Some(e.t_obs.to_string()),
                value: json::parameters(&e),
            }),
            samples.map(|s| OutputRecord {
                sort_key: (Topic::Samples, s.cascade, s.t_obs, 0),
                key: Some(s.t_obs.to_string()),
                value: json::sample(&s),
            }),
            trained.map(|m| OutputRecord {
                sort_key: (Topic::Models, 0, m.t_obs, 0),
                key: Some(m.t_obs.to_string()),
                value: json::model(&m),
            }),
            predictions.flat_map(move |p| {
                (p.n_pred > alert_threshold).then(|| OutputRecord {
                    sort_key: (Topic::Alerts, p.cascade, p.t_obs, 0),
                    key: None,
                    value: json::alert(&p),
                })
            }),
            outcomes.flat_map(|o| o.stat_record()),
        ];
        scope.concatenate(parts)
    });
    PipelineStreams { records, summary, dead_letters, live }
}

/// The summary event of a window/terminate output (rejections are counted from the
/// dead-letter stream, which also carries the source's rejections).
fn summary_of(o: &TrackerOutput) -> Option<SummaryEvent> {
    Some(match o {
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
pub(crate) fn count_rejections<'s>(letters: StreamVec<'s, Time, crate::records::DeadLetter>) -> StreamVec<'s, Time, SummaryEvent> {
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
                output.session(&cap).give_iterator(counts.into_iter().map(|(reason, count)| SummaryEvent::Rejected { reason, count }));
            });
        }
    })
}

/// Re-exported so that tests can build sub-pipelines.
pub use window::window_terminate;
