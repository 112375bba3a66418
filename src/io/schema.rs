//! The output topics' records (SPEC §3), one serde struct per record type. Every writer
//! (the JSON-lines files, the Kafka topics) serializes these and every reader (the report,
//! the warm start from a models file, the tests) deserializes them, so the schema exists
//! once. Field names are the course's where the course had the field (`cid`, `T_obs`,
//! `n_obs`, `n_supp`, `params`, `X`, `W`, `n_tot`, `ARE`); numbers are always finite
//! ([`finite`]).
//!
//! | topic | record |
//! |---|---|
//! | `cascade_series` | [`SerieRecord`] |
//! | `cascade_properties` | [`SizeRecord`] (from terminate) and [`ParametersRecord`] (from predict) |
//! | `samples` | [`LearnedSampleRecord`] (default mode) or [`CourseSampleRecord`] (course mode) |
//! | `models` | [`ModelRecord`] |
//! | `alerts` | [`AlertRecord`] |
//! | `stats` | [`StatRecordJson`] |
//! | `dead_letters` | [`DeadLetterRecord`] |

use serde::{Deserialize, Serialize};
use tweetoscope_model::forest::{Forest, ForestParams};
use tweetoscope_model::predictive::{Interval, PredictiveModel, FEATURE_SET};
use tweetoscope_model::seismic::CorrectedSeismic;

use crate::records::{
    finite, CourseModel, DeadLetter, FinalSize, LearnedModel, LearnedSample, Model, Partial, Prediction, Predictor, Severity,
    StatRecord,
};
use crate::Time;

/// The version of the `models` records: a reader refuses records of another one.
pub const MODEL_SCHEMA: u32 = 2;

/// The `type` field of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// A partial cascade.
    Serie,
    /// A final size.
    Size,
    /// A fit and its prediction.
    Parameters,
    /// A training sample.
    Sample,
    /// A model update.
    Model,
    /// An alert.
    Alert,
    /// A prediction's accuracy.
    Stat,
    /// A rejected input message.
    DeadLetter,
}

/// A prediction interval as written: `{"low": …, "high": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// Lower end of the final size.
    pub low: f64,
    /// Upper end of the final size.
    pub high: f64,
}

impl IntervalRecord {
    fn of(i: Option<Interval>) -> Option<Self> {
        i.map(|i| Self { low: finite(i.low), high: finite(i.high) })
    }
}

/// `cascade_series`: a partial cascade, `{"type":"serie","cid","msg","T_obs","tweets":[[t,m],…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SerieRecord {
    /// Always [`RecordType::Serie`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The original tweet's text.
    pub msg: String,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// (relative time, magnitude) of every event by the window.
    pub tweets: Vec<(f64, f64)>,
}

impl SerieRecord {
    /// The record of a partial cascade.
    pub fn of(p: &Partial) -> Self {
        let tweets = p.events.iter().map(|e| (e.t, e.m)).collect();
        Self { kind: RecordType::Serie, cid: p.cascade.to_string(), msg: p.msg.clone(), t_obs: p.t_obs, tweets }
    }
}

/// `cascade_properties`, from terminate: `{"type":"size","cid","n_tot","t_end"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeRecord {
    /// Always [`RecordType::Size`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The true final size.
    pub n_tot: usize,
    /// Relative time of the last event.
    pub t_end: Time,
}

impl SizeRecord {
    /// The record of a terminated cascade.
    pub fn of(f: &FinalSize) -> Self {
        Self { kind: RecordType::Size, cid: f.cascade.to_string(), n_tot: f.n_tot, t_end: f.t_end }
    }
}

/// `cascade_properties`, from predict: the fit of a partial cascade and its prediction.
/// `n_supp` is the default prediction of the total size (the course's field); `params` are
/// (p, β) of the Hawkes fit, zeros when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParametersRecord {
    /// Always [`RecordType::Parameters`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The original tweet's text.
    pub msg: String,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// Events observed by the window.
    pub n_obs: usize,
    /// The default prediction of the final size.
    pub n_supp: f64,
    /// Who made it.
    pub predictor: Predictor,
    /// Its prediction interval, if the window has one.
    pub interval: Option<IntervalRecord>,
    /// (p, β) of the Hawkes fit.
    pub params: [f64; 2],
    /// n* of the fit.
    pub n_star: f64,
    /// G1 of the fit.
    #[serde(rename = "G1")]
    pub g1: f64,
    /// The plain Hawkes prediction.
    pub n_hawkes: f64,
    /// Whether the fit succeeded.
    pub fit_ok: bool,
    /// Whether its optimum sits on a bound.
    pub at_bound: bool,
}

impl ParametersRecord {
    /// The record of a prediction.
    pub fn of(p: &Prediction) -> Self {
        let (params, n_star, g1) = match &p.fit {
            Some(f) => ([finite(f.p), finite(f.beta)], finite(f.n_star), finite(f.g1)),
            None => ([0.0, 0.0], 0.0, 0.0),
        };
        Self {
            kind: RecordType::Parameters,
            cid: p.cascade.to_string(),
            msg: p.msg.clone(),
            t_obs: p.t_obs,
            n_obs: p.n,
            n_supp: finite(p.n_pred),
            predictor: p.predictor,
            interval: IntervalRecord::of(p.interval),
            params,
            n_star,
            g1,
            n_hawkes: finite(p.n_hawkes),
            fit_ok: p.fit.is_some(),
            at_bound: p.fit.is_some_and(|f| f.at_bound),
        }
    }
}

/// `samples` in the default mode: the learned layer's sample, `X` the features (named by
/// `feature_set`), `y` = ln(N_true / n_obs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedSampleRecord {
    /// Always [`RecordType::Sample`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// The features.
    #[serde(rename = "X")]
    pub x: Vec<f64>,
    /// The target ln(N_true / n_obs).
    pub y: f64,
    /// Events observed by the window.
    pub n_obs: usize,
    /// The final size.
    pub n_true: usize,
    /// The feature set `X` follows.
    pub feature_set: String,
}

impl LearnedSampleRecord {
    /// The record of a learned sample of cascade `cascade` at window `t_obs`.
    pub fn of(cascade: u64, t_obs: Time, s: &LearnedSample) -> Self {
        let y = (s.n_true as f64 / s.n_obs.max(1) as f64).ln();
        Self {
            kind: RecordType::Sample,
            cid: cascade.to_string(),
            t_obs,
            x: s.features.iter().map(|v| finite(*v)).collect(),
            y: finite(y),
            n_obs: s.n_obs,
            n_true: s.n_true,
            feature_set: FEATURE_SET.to_owned(),
        }
    }
}

/// `samples` in course mode, the course's record: `{"type":"sample","cid","X":[β,n*,G1],"W"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseSampleRecord {
    /// Always [`RecordType::Sample`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// (β, n*, G1).
    #[serde(rename = "X")]
    pub x: [f64; 3],
    /// W = (N_true − n)(1 − n*)/G1.
    #[serde(rename = "W")]
    pub w: f64,
}

/// `alerts`: a prediction above the alert threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Always [`RecordType::Alert`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The original tweet's text.
    pub msg: String,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// The predicted final size, rounded (the course's field).
    pub n_tot: u64,
    /// Its prediction interval, if the window has one.
    pub interval: Option<IntervalRecord>,
    /// `warning` or `critical` (`Prediction::alert_severity`).
    pub severity: Severity,
}

impl AlertRecord {
    /// The record of a prediction that raised an alert of `severity`.
    pub fn of(p: &Prediction, severity: Severity) -> Self {
        Self {
            kind: RecordType::Alert,
            cid: p.cascade.to_string(),
            msg: p.msg.clone(),
            t_obs: p.t_obs,
            n_tot: finite(p.n_pred).round() as u64,
            interval: IntervalRecord::of(p.interval),
            severity,
        }
    }
}

/// `stats`: a prediction's accuracy once the true size is known, with every model's
/// prediction beside the default one (`null` where SEISMIC predicted an infinite size or a
/// window had no SEISMIC correction yet), so that reports need nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatRecordJson {
    /// Always [`RecordType::Stat`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The cascade id.
    pub cid: String,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// Events observed by the window.
    pub n_obs: usize,
    /// The true final size.
    pub n_true: usize,
    /// Event time of the prediction.
    pub predicted_at: Time,
    /// Event time at which the cascade ended.
    pub ended_at: Time,
    /// The default prediction.
    pub n_pred: f64,
    /// Its ARE.
    #[serde(rename = "ARE")]
    pub are: f64,
    /// Who made it.
    pub predictor: Predictor,
    /// Its prediction interval, if the window had one.
    pub interval: Option<IntervalRecord>,
    /// Plain Hawkes.
    pub n_hawkes: f64,
    /// Its ARE.
    #[serde(rename = "ARE_hawkes")]
    pub are_hawkes: f64,
    /// Hawkes + the course forest.
    pub n_course: f64,
    /// Its ARE.
    #[serde(rename = "ARE_course")]
    pub are_course: f64,
    /// SEISMIC.
    pub n_seismic: Option<f64>,
    /// Its ARE.
    #[serde(rename = "ARE_seismic")]
    pub are_seismic: Option<f64>,
    /// SEISMIC with the learned correction.
    pub n_seismic_corrected: Option<f64>,
    /// Its ARE.
    #[serde(rename = "ARE_seismic_corrected")]
    pub are_seismic_corrected: Option<f64>,
    /// The course forest's ω.
    pub omega: f64,
    /// Samples the model that made `n_pred` was trained on.
    pub model_samples: usize,
}

impl StatRecordJson {
    /// The record of a stat.
    pub fn of(s: &StatRecord) -> Self {
        Self {
            kind: RecordType::Stat,
            cid: s.cascade.to_string(),
            t_obs: s.t_obs,
            n_obs: s.n_obs,
            n_true: s.n_true,
            predicted_at: s.predicted_at,
            ended_at: s.ended_at,
            n_pred: finite(s.n_pred),
            are: finite(s.are),
            predictor: s.predictor,
            interval: IntervalRecord::of(s.interval),
            n_hawkes: finite(s.n_hawkes),
            are_hawkes: finite(s.are_hawkes),
            n_course: finite(s.n_course),
            are_course: finite(s.are_course),
            n_seismic: s.n_seismic.map(finite),
            are_seismic: s.are_seismic.map(finite),
            n_seismic_corrected: s.n_seismic_corrected.map(finite),
            are_seismic_corrected: s.are_seismic_corrected.map(finite),
            omega: finite(s.omega),
            model_samples: s.model_samples,
        }
    }
}

/// The course forest of a [`ModelRecord`]: its hyper-parameters, seed and training set
/// (training is deterministic, so a reader rebuilds the identical forest) and the window's
/// SEISMIC correction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseModelRecord {
    /// Samples it was trained on.
    pub n_samples: usize,
    /// Course samples of the window seen in all.
    pub samples_seen: usize,
    /// The forest's hyper-parameters.
    pub params: ForestParams,
    /// The forest's seed.
    pub seed: u64,
    /// (β, n*, G1, W) rows in training order.
    pub training: Vec<[f64; 4]>,
    /// SEISMIC's (α, γ).
    pub seismic: Option<CorrectedSeismic>,
}

/// The learned model of a [`ModelRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedModelRecord {
    /// Learned samples of the window seen in all.
    pub samples_seen: usize,
    /// The model (it names its feature set).
    pub model: PredictiveModel,
}

/// `models`: a window's model update, versioned by event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Always [`RecordType::Model`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// [`MODEL_SCHEMA`]: a reader refuses another one.
    pub schema: u32,
    /// The window.
    #[serde(rename = "T_obs")]
    pub t_obs: Time,
    /// Event time it was trained at.
    pub version: Time,
    /// A new course forest, or `null` when unchanged.
    pub course: Option<CourseModelRecord>,
    /// A new learned model, or `null` when unchanged.
    pub learned: Option<LearnedModelRecord>,
    /// The window's calibration residuals.
    pub calibration: Vec<f64>,
}

/// Why a models record cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ModelRecordError {
    /// Not a models record of this schema (bad JSON, missing field…).
    #[error("not a models record: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A record of another schema version.
    #[error("models record of schema {found}, this build reads schema {expected}")]
    Schema {
        /// The record's schema.
        found: u32,
        /// [`MODEL_SCHEMA`].
        expected: u32,
    },
    /// A learned model of another feature set.
    #[error(transparent)]
    FeatureSet(tweetoscope_model::predictive::PredictiveError),
    /// The course forest could not be rebuilt from its training set.
    #[error("course forest: {0}")]
    Forest(#[from] tweetoscope_model::forest::ForestError),
}

impl ModelRecord {
    /// The record of a model update.
    pub fn of(m: &Model) -> Self {
        Self {
            kind: RecordType::Model,
            schema: MODEL_SCHEMA,
            t_obs: m.t_obs,
            version: m.version,
            course: m.course.as_ref().map(|c| CourseModelRecord {
                n_samples: c.n_samples,
                samples_seen: c.samples_seen,
                params: c.forest.params().clone(),
                seed: c.forest.seed(),
                training: c.training.iter().map(|r| r.map(finite)).collect(),
                seismic: c.seismic,
            }),
            learned: m.learned.as_ref().map(|l| LearnedModelRecord { samples_seen: l.samples_seen, model: l.model.clone() }),
            calibration: m.calibration.iter().map(|r| finite(*r)).collect(),
        }
    }

    /// Reads a record back: the schema and the learned model's feature set must be this
    /// build's, and the course forest is retrained from its training set (the identical
    /// forest).
    pub fn parse(text: &str) -> Result<Model, ModelRecordError> {
        let r: ModelRecord = serde_json::from_str(text)?;
        if r.schema != MODEL_SCHEMA {
            return Err(ModelRecordError::Schema { found: r.schema, expected: MODEL_SCHEMA });
        }
        let course = match r.course {
            None => None,
            Some(c) => {
                let x: Vec<[f64; 3]> = c.training.iter().map(|r| [r[0], r[1], r[2]]).collect();
                let y: Vec<f64> = c.training.iter().map(|r| r[3]).collect();
                let forest = Forest::train(&x, &y, &c.params, c.seed)?;
                let seismic = c.seismic.filter(|s| s.alpha.is_finite() && s.gamma.is_finite());
                Some(CourseModel { n_samples: x.len(), samples_seen: c.samples_seen, forest, training: c.training, seismic })
            }
        };
        let learned = match r.learned {
            None => None,
            Some(l) => {
                l.model.check_feature_set().map_err(ModelRecordError::FeatureSet)?;
                Some(LearnedModel { samples_seen: l.samples_seen, model: l.model })
            }
        };
        Ok(Model { t_obs: r.t_obs, version: r.version, course, learned, calibration: r.calibration })
    }
}

/// `dead_letters`: a rejected input message and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// Always [`RecordType::DeadLetter`].
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The reason's name.
    pub reason: String,
    /// Details.
    pub detail: String,
    /// Its partition, if from Kafka.
    pub partition: Option<i32>,
    /// Its offset, if from Kafka.
    pub offset: Option<i64>,
    /// Its key, lossily decoded and truncated.
    pub key: Option<String>,
    /// Its payload, lossily decoded and truncated.
    pub payload: String,
}

impl DeadLetterRecord {
    /// The record of a dead letter.
    pub fn of(d: &DeadLetter) -> Self {
        Self {
            kind: RecordType::DeadLetter,
            reason: d.reason.as_str().to_owned(),
            detail: d.detail.clone(),
            partition: d.partition,
            offset: d.offset,
            key: d.key.clone(),
            payload: d.payload.clone(),
        }
    }
}

/// JSON text of a record (records only hold finite numbers and strings: it cannot fail).
pub fn to_json<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("records serialize")
}
