//! Records that flow between the stages.
//!
//! Internal records ([`TweetEvent`], [`Partial`], [`Estimate`], [`Prediction`], …) are
//! serde types because timely exchanges them between workers and processes with bincode.
//! [`OutputRecord`] is what the sinks write: a topic, a Kafka key, a JSON value (one of the
//! structs of `io::schema`) and a sort key that makes every output file's order deterministic.

use serde::{Deserialize, Serialize};
use tweetoscope_model::hawkes::Event;
use tweetoscope_model::predictive::{FeatureVector, Interval, PredictiveModel};
use tweetoscope_model::seismic::{CorrectedSeismic, SeismicPrediction};

use crate::Time;

/// A cascade id: the id of the original tweet. Numeric, so that per-event records stay
/// small and hashing is cheap; the wire format carries it as a string.
pub type CascadeId = u64;

/// Why an input event was rejected: a bounded set (it is a metric label and the
/// dead-letter reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RejectReason {
    /// The payload is not valid JSON (or not UTF-8, or a number out of range).
    InvalidJson,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type.
    WrongType,
    /// A field has an impossible value (negative or huge time, negative magnitude, …).
    InvalidValue,
    /// The `type` is neither `tweet` nor `retweet`.
    UnknownType,
    /// The Kafka key is missing or not a cascade id.
    BadKey,
    /// The payload exceeds the configured size limit.
    Oversized,
    /// The event is too far behind its partition's newest event (allowed lateness).
    Late,
    /// A retweet whose original tweet was never seen (or was forgotten long ago).
    UnknownCascade,
    /// A retweet of a cascade that has already terminated.
    TerminatedCascade,
    /// A second original tweet for a cascade already open or recently terminated.
    DuplicateTweet,
}

impl RejectReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidValue,
        RejectReason::UnknownType,
        RejectReason::BadKey,
        RejectReason::Oversized,
        RejectReason::Late,
        RejectReason::UnknownCascade,
        RejectReason::TerminatedCascade,
        RejectReason::DuplicateTweet,
    ];

    /// Stable name for logs, metrics and dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::BadKey => "bad_key",
            RejectReason::Oversized => "oversized",
            RejectReason::Late => "late",
            RejectReason::UnknownCascade => "unknown_cascade",
            RejectReason::TerminatedCascade => "terminated_cascade",
            RejectReason::DuplicateTweet => "duplicate_tweet",
        }
    }
}

/// Whether an input event is the original tweet or a retweet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The original tweet: opens a cascade.
    Tweet,
    /// A retweet: extends an open cascade.
    Retweet,
}

/// One input event on the global event-time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TweetEvent {
    /// The cascade it belongs to (sharding key).
    pub cascade: CascadeId,
    /// Event time in seconds on the global timeline (the timely timestamp).
    pub time: Time,
    /// Position of the event in its source (file row, or Kafka offset): breaks ties between
    /// events of the same second deterministically, in file order as the reference does.
    pub seq: u64,
    /// Follower count of the (re)tweeting user.
    pub magnitude: f64,
    /// Original tweet or retweet.
    pub kind: EventKind,
    /// The tweet's text, carried on the original tweet only (course field `msg`).
    pub msg: String,
}

/// A rejected input message, for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it was rejected.
    pub reason: RejectReason,
    /// Details.
    pub detail: String,
    /// Where it came from (partition), if from Kafka.
    pub partition: Option<i32>,
    /// Its offset, if from Kafka.
    pub offset: Option<i64>,
    /// Its key, lossily decoded and truncated; for a message that decoded but was rejected on
    /// its time (late, or too far ahead), its event's cascade id.
    pub key: Option<String>,
    /// Its payload, lossily decoded and truncated to 1 KiB; empty for a message rejected on
    /// its time (the event was decoded on the Kafka source's prefetch thread, which keeps no
    /// copy of the bytes).
    pub payload: String,
}

/// A partial cascade at an observation window, from the window stage to estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// The cascade.
    pub cascade: CascadeId,
    /// The observation window T_obs (s).
    pub t_obs: Time,
    /// The original tweet's text.
    pub msg: String,
    /// Events with relative time ≤ T_obs, in order; `t` relative to the original tweet.
    pub events: Vec<Event>,
    /// Event time of the original tweet: the prediction is made at `start + t_obs`.
    pub start: Time,
    /// Fewer events than `pipeline.min_cascade_size` (but at least
    /// `pipeline.min_training_size`): estimated for the training sample its cascade gives
    /// once it ends, but never predicted, alerted or output.
    pub training_only: bool,
}

/// A terminated cascade, from the terminate stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalSize {
    /// The cascade.
    pub cascade: CascadeId,
    /// Number of events when it terminated (original tweet included): the true size.
    pub n_tot: usize,
    /// Relative time of its last event (course field `t_end`).
    pub t_end: Time,
    /// The windows whose partial cascade was emitted (and so expect this size).
    pub windows: Vec<Time>,
    /// Event time at which it terminated (its last event + `pipeline.t_end`, or the end of
    /// a bounded input): only cascades ended before a prediction may train its model.
    pub ended_at: Time,
}

/// The fit of one partial cascade, from estimate to predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The cascade.
    pub cascade: CascadeId,
    /// The window.
    pub t_obs: Time,
    /// The original tweet's text.
    pub msg: String,
    /// Events observed by T_obs.
    pub n: usize,
    /// Event time of the original tweet.
    pub start: Time,
    /// Estimated for training only (see [`Partial::training_only`]).
    pub training_only: bool,
    /// The fitted parameters, or `None` when the fit failed (then the prediction is `n`).
    pub fit: Option<FitSummary>,
    /// The SEISMIC baseline's predicted final size (original tweet included), computed on
    /// the same partial cascade for side-by-side accuracy; `None` when SEISMIC finds the
    /// cascade supercritical (the package predicts +∞) or cannot estimate it.
    pub n_seismic: Option<f64>,
    /// SEISMIC's features on the same partial cascade (R_T, F_T, p̂_T), from which a window's
    /// learned correction (α, γ) computes the corrected prediction; `None` when SEISMIC could
    /// not estimate the cascade.
    pub seismic: Option<SeismicPrediction>,
    /// The predictive layer's features of this partial cascade (`crates/model/PREDICTIVE.md`).
    pub features: FeatureVector,
}

/// The parts of a Hawkes fit that later stages need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Infection probability per follower.
    pub p: f64,
    /// Kernel rate (1/s).
    pub beta: f64,
    /// Branching factor n* = p·E(m) (< 1).
    pub n_star: f64,
    /// Expected direct descendants still to come, G1.
    pub g1: f64,
    /// Plain Hawkes prediction of the final size.
    pub n_hawkes: f64,
    /// The optimum sits on a bound of (p, β).
    pub at_bound: bool,
}

/// Which predictor made a default prediction (`pipeline.predictor`): a bounded set, the same
/// names in the stats records, the metrics and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predictor {
    /// The window's learned model (default mode).
    Learned,
    /// The training-free fallback, before the window's first learned model (default mode).
    Fallback,
    /// Hawkes corrected by the window's course forest (course mode).
    Course,
    /// Plain Hawkes (course mode before the window's first forest, or with the forest off).
    Hawkes,
}

impl Predictor {
    /// Stable name (a metric label, the `predictor` field of a stat).
    pub fn as_str(self) -> &'static str {
        match self {
            Predictor::Learned => "learned",
            Predictor::Fallback => "fallback",
            Predictor::Course => "course",
            Predictor::Hawkes => "hawkes",
        }
    }
}

/// How serious an alert is (the `severity` of the alerts topic, Alertmanager and the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Predicted above `pipeline.alert_threshold`.
    Warning,
    /// Predicted above `pipeline.alert_critical`, or confidently above the warning threshold.
    Critical,
}

impl Severity {
    /// Both, in increasing order.
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Critical];

    /// Stable name (a metric label, Alertmanager's `severity` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The alert thresholds (`pipeline.alert_threshold`, `pipeline.alert_critical`), validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertThresholds {
    /// Predicted size above which a warning is raised.
    pub warning: f64,
    /// Predicted size above which it is critical.
    pub critical: f64,
}

/// A prediction, from predict to the outcome join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The cascade.
    pub cascade: CascadeId,
    /// The window.
    pub t_obs: Time,
    /// The original tweet's text (for alerts).
    pub msg: String,
    /// Events observed by T_obs.
    pub n: usize,
    /// Event time of the original tweet (the prediction is made at `start + t_obs`).
    pub start: Time,
    /// Made for a training sample only (see [`Partial::training_only`]): no output.
    pub training_only: bool,
    /// The fit (absent when it failed).
    pub fit: Option<FitSummary>,
    /// The features the prediction was made from (they become the training sample).
    pub features: FeatureVector,
    /// The default prediction of the final size: `predictor`'s. Never below n, finite.
    pub n_pred: f64,
    /// Who made `n_pred`.
    pub predictor: Predictor,
    /// The 80 % (`predictor.interval_level`) prediction interval of the final size around
    /// `n_pred`, from the window's calibration residuals; `None` until the window has
    /// enough of them.
    pub interval: Option<Interval>,
    /// Event time of the model that made `n_pred` (its version), if a model did.
    pub model_version: Option<Time>,
    /// How many samples that model was trained on (0 without a model).
    pub model_samples: usize,
    /// Plain Hawkes prediction (n when the fit failed).
    pub n_hawkes: f64,
    /// Hawkes corrected by the window's course forest, N = n + ω·G1/(1−n*) (plain Hawkes
    /// before the window has a course forest, or with `[forest]` off).
    pub n_course: f64,
    /// The course forest's correction factor ω applied (1 without a forest).
    pub omega: f64,
    /// The SEISMIC baseline's prediction (see [`Estimate::n_seismic`]).
    pub n_seismic: Option<f64>,
    /// SEISMIC's features (see [`Estimate::seismic`]): they become the correction's training
    /// sample once the true size is known.
    pub seismic: Option<SeismicPrediction>,
    /// SEISMIC with the paper's correction, N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T), (α, γ) learned
    /// by the window's model from cascades that ended earlier; `None` before the window has a
    /// correction, when the correction is off, or when γ·p̂_T ≥ 1.
    pub n_seismic_corrected: Option<f64>,
}

impl Prediction {
    /// The one alert predicate (alerts topic, Alertmanager, summary, page, metrics): `None`
    /// below the warning threshold or for a training-only partial; `Critical` above the
    /// critical threshold, or when even the interval's low end is above the warning one.
    pub fn alert_severity(&self, thresholds: &AlertThresholds) -> Option<Severity> {
        // NaN predictions raise nothing (a comparison with NaN is false).
        let above = self.n_pred.partial_cmp(&thresholds.warning) == Some(std::cmp::Ordering::Greater);
        if self.training_only || !above {
            return None;
        }
        let confident = self.interval.is_some_and(|i| i.low > thresholds.warning);
        Some(if self.n_pred > thresholds.critical || confident { Severity::Critical } else { Severity::Warning })
    }

    /// Whether the prediction raises an alert (of any severity).
    pub fn is_alert(&self, thresholds: &AlertThresholds) -> bool {
        self.alert_severity(thresholds).is_some()
    }

    /// ŷ = ln(n_pred / n), the log-ratio the default prediction stands for (its residual
    /// once the true size is known calibrates the window's intervals).
    pub fn log_ratio(&self) -> f64 {
        (self.n_pred / self.n.max(1) as f64).ln().max(0.0)
    }
}

/// The accuracy of one prediction once its cascade's true size is known (the `stats` topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatRecord {
    /// The cascade.
    pub cascade: CascadeId,
    /// The window.
    pub t_obs: Time,
    /// Events observed by the window.
    pub n_obs: usize,
    /// The true final size.
    pub n_true: usize,
    /// Event time of the prediction (the cascade's start + T_obs).
    pub predicted_at: Time,
    /// Event time at which the cascade ended.
    pub ended_at: Time,
    /// The default prediction.
    pub n_pred: f64,
    /// ARE of `n_pred`.
    pub are: f64,
    /// Who made `n_pred`.
    pub predictor: Predictor,
    /// Its prediction interval, if the window had one.
    pub interval: Option<Interval>,
    /// The plain Hawkes prediction.
    pub n_hawkes: f64,
    /// ARE of `n_hawkes`.
    pub are_hawkes: f64,
    /// Hawkes + the course forest.
    pub n_course: f64,
    /// ARE of `n_course`.
    pub are_course: f64,
    /// The SEISMIC prediction (None: infinite).
    pub n_seismic: Option<f64>,
    /// ARE of `n_seismic`.
    pub are_seismic: Option<f64>,
    /// The corrected SEISMIC prediction (None: no correction yet, or infinite).
    pub n_seismic_corrected: Option<f64>,
    /// ARE of `n_seismic_corrected`.
    pub are_seismic_corrected: Option<f64>,
    /// The course forest's correction factor used (1 without a forest).
    pub omega: f64,
    /// Samples the model that made `n_pred` had been trained on (0: no model).
    pub model_samples: usize,
}

/// Why a prediction gave no course-forest training sample (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Exclusion {
    /// The fit failed, so there are no features.
    FitFailed,
    /// G1 = 0: the target W is undefined.
    ZeroG1,
    /// n* ≥ 1: the Hawkes tail diverges.
    Supercritical,
    /// The true size is below the observed count (W < 0, ln(N/n) < 0).
    NegativeTarget,
    /// A non-finite feature or target.
    NonFinite,
}

impl Exclusion {
    /// Every reason (their metric series exist from the start).
    pub const ALL: [Exclusion; 5] =
        [Exclusion::FitFailed, Exclusion::ZeroG1, Exclusion::Supercritical, Exclusion::NegativeTarget, Exclusion::NonFinite];

    /// Stable name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::FitFailed => "fit_failed",
            Exclusion::ZeroG1 => "zero_g1",
            Exclusion::Supercritical => "supercritical",
            Exclusion::NegativeTarget => "negative_target",
            Exclusion::NonFinite => "non_finite",
        }
    }
}

/// What the outcome join emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The accuracy of one prediction.
    Stat(StatRecord),
    /// A training sample.
    Sample(Sample),
    /// A prediction that gives no course-forest sample, and why.
    Excluded {
        /// The window.
        t_obs: Time,
        /// Why.
        reason: Exclusion,
    },
}

/// The course forest's sample (SPEC §4.2, course mode): X = (β, n*, G1), W.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CourseSample {
    /// Features (β, n*, G1).
    pub x: [f64; 3],
    /// Target W = (N_true − n)(1 − n*)/G1.
    pub w: f64,
}

/// The learned layer's sample: the features at the window, and the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearnedSample {
    /// The features of the partial cascade.
    pub features: FeatureVector,
    /// Events observed by the window.
    pub n_obs: usize,
    /// The final size (≥ `n_obs`).
    pub n_true: usize,
}

/// The training samples of one (cascade, window) once the cascade has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The cascade (for deterministic ordering and tracing).
    pub cascade: CascadeId,
    /// The window.
    pub t_obs: Time,
    /// The learned layer's sample (`None` when N_true < n).
    pub learned: Option<LearnedSample>,
    /// The course forest's sample (`None` when excluded: see [`Exclusion`]).
    pub course: Option<CourseSample>,
    /// SEISMIC's features of the same prediction and the true size: a training sample of the
    /// window's SEISMIC correction (None when SEISMIC had no finite features).
    pub seismic: Option<(SeismicPrediction, f64)>,
    /// The default prediction's log-ratio residual y − ŷ (`None` for a training-only
    /// partial): the window's intervals are calibrated on these.
    pub residual: Option<f64>,
}

/// A window's course forest and SEISMIC correction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CourseModel {
    /// How many samples it was trained on.
    pub n_samples: usize,
    /// How many course samples of its window had been seen in all (drives the retraining
    /// schedule and the seed, so a warm-started trainer continues exactly where this one stopped).
    pub samples_seen: usize,
    /// The forest.
    pub forest: tweetoscope_model::forest::Forest,
    /// Its training set, (β, n*, G1, W) rows in training order: with the forest's params and
    /// seed this rebuilds the identical forest, so the `models` topic carries this compact
    /// form (kilobytes) rather than the trees (megabytes).
    pub training: Vec<[f64; 4]>,
    /// The window's SEISMIC correction (α, γ), fitted on the same training cascades (those
    /// that ended before the model's version); `None` when off or with too few samples.
    pub seismic: Option<CorrectedSeismic>,
}

/// A window's learned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedModel {
    /// Learned samples of its window seen in all (the schedule and the seed continue from it).
    pub samples_seen: usize,
    /// The model (its feature set is checked when read back).
    pub model: PredictiveModel,
}

/// A window's model update, versioned by the event time it was trained at: whatever was
/// retrained then, and the window's current calibration residuals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// The window.
    pub t_obs: Time,
    /// Event time at which it was trained; used from `version + predictor.model_delay` on.
    pub version: Time,
    /// A new course forest (and SEISMIC correction), or `None` when unchanged.
    pub course: Option<CourseModel>,
    /// A new learned model, or `None` when unchanged.
    pub learned: Option<LearnedModel>,
    /// Log-ratio residuals y − ŷ of the default predictions of the window's most recent ended
    /// cascades (oldest first): the split-conformal calibration of its intervals.
    pub calibration: Vec<f64>,
}

impl Model {
    /// Samples of the newest model it carries (the learned one when both).
    pub fn n_samples(&self) -> usize {
        match (&self.learned, &self.course) {
            (Some(l), _) => l.model.n_samples(),
            (None, Some(c)) => c.n_samples,
            (None, None) => 0,
        }
    }

    /// A warm start's models from a stream of updates (any order): per window, the newest
    /// update that carries a course forest and the newest that carries a learned model, in
    /// version order, without their calibration (intervals are calibrated on the stream being
    /// predicted, never carried over from another one).
    pub fn latest_per_window(updates: impl IntoIterator<Item = Model>) -> Vec<Model> {
        use std::collections::BTreeMap;
        let mut course: BTreeMap<Time, Model> = BTreeMap::new();
        let mut learned: BTreeMap<Time, Model> = BTreeMap::new();
        for m in updates {
            if let Some(c) = &m.course {
                if course.get(&m.t_obs).is_none_or(|old| old.version <= m.version) {
                    let only = Model { course: Some(c.clone()), learned: None, calibration: Vec::new(), ..m.clone() };
                    course.insert(m.t_obs, only);
                }
            }
            if let Some(l) = &m.learned {
                if learned.get(&m.t_obs).is_none_or(|old| old.version <= m.version) {
                    let only = Model { course: None, learned: Some(l.clone()), calibration: Vec::new(), ..m };
                    learned.insert(only.t_obs, only);
                }
            }
        }
        let mut all: Vec<Model> = course.into_values().chain(learned.into_values()).collect();
        all.sort_by_key(|m| (m.t_obs, m.version, m.learned.is_some()));
        all
    }
}

/// The output topics of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Partial cascades (`serie`).
    CascadeSeries,
    /// Final sizes (`size`) and fits (`parameters`).
    CascadeProperties,
    /// Training samples.
    Samples,
    /// Trained models.
    Models,
    /// Alerts.
    Alerts,
    /// Per-prediction accuracy.
    Stats,
}

impl Topic {
    /// All topics, in file-writing order.
    pub const ALL: [Topic; 6] =
        [Topic::CascadeSeries, Topic::CascadeProperties, Topic::Samples, Topic::Models, Topic::Alerts, Topic::Stats];

    /// The default topic (and file stem) name, as in the course.
    pub fn name(self) -> &'static str {
        match self {
            Topic::CascadeSeries => "cascade_series",
            Topic::CascadeProperties => "cascade_properties",
            Topic::Samples => "samples",
            Topic::Models => "models",
            Topic::Alerts => "alerts",
            Topic::Stats => "stats",
        }
    }
}

/// One record for an output topic, already encoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Deterministic order within one event time: (topic, cascade, window, kind rank).
    pub sort_key: (Topic, CascadeId, Time, u8),
    /// Kafka key (the window for `cascade_properties`, `samples` and `models`), if any.
    pub key: Option<String>,
    /// The JSON value.
    pub value: String,
}

/// Sizes in a JSON record are finite: a non-finite number becomes 0 (upstream stages never
/// produce one; this is the last line of defence).
pub fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}
