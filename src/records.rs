//! Records that flow between the stages, and the course-compatible JSON of the output
//! topics (SPEC §3).
//!
//! Internal records ([`TweetEvent`], [`Partial`], [`Estimate`], [`Prediction`], …) are
//! serde types because timely exchanges them between workers and processes with bincode.
//! [`OutputRecord`] is what the sinks write: a topic, a Kafka key, a JSON value and a sort
//! key that makes every output file's order deterministic.

use serde::{Deserialize, Serialize};
use tweetoscope_model::hawkes::Event;
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
    /// Its key, lossily decoded and truncated.
    pub key: Option<String>,
    /// Its payload, lossily decoded and truncated to 1 KiB.
    pub payload: String,
}

impl DeadLetter {
    /// The dead-letter topic's JSON value.
    pub fn to_json(&self) -> String {
        serde_json::json!({"type": "dead_letter", "reason": self.reason.as_str(), "detail": self.detail,
                           "partition": self.partition, "offset": self.offset, "key": self.key,
                           "payload": self.payload})
        .to_string()
    }
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
    /// The fitted parameters, or `None` when the fit failed (then the prediction is `n`).
    pub fit: Option<FitSummary>,
    /// The SEISMIC baseline's predicted final size (original tweet included), computed on
    /// the same partial cascade for side-by-side accuracy; `None` when SEISMIC finds the
    /// cascade supercritical (the package predicts +∞) or cannot estimate it.
    pub n_seismic: Option<f64>,
    /// SEISMIC's features on the same partial cascade (R_T, F_T, p̂_T), from which a window's
    /// learned correction (α, γ) computes the corrected prediction; `None` when SEISMIC could
    /// not estimate the cascade.
    #[serde(default)]
    pub seismic: Option<SeismicPrediction>,
}

/// The parts of a Hawkes fit that later stages need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Infection probability per follower.
    pub p: f64,
    /// Kernel rate (1/s).
    pub beta: f64,
    /// Branching factor n* = p·E[m] (< 1).
    pub n_star: f64,
    /// Expected direct descendants still to come, G1.
    pub g1: f64,
    /// Plain Hawkes prediction of the final size.
    pub n_hawkes: f64,
    /// The optimum sits on a bound of (p, β).
    pub at_bound: bool,
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
    /// The fit (absent when it failed).
    pub fit: Option<FitSummary>,
    /// Plain Hawkes prediction (n when the fit failed).
    pub n_hawkes: f64,
    /// The SEISMIC baseline's prediction (see [`Estimate::n_seismic`]).
    pub n_seismic: Option<f64>,
    /// SEISMIC's features (see [`Estimate::seismic`]): they become the correction's training
    /// sample once the true size is known.
    #[serde(default)]
    pub seismic: Option<SeismicPrediction>,
    /// SEISMIC with the paper's correction, N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T), (α, γ) learned
    /// by the window's model from cascades that ended earlier; `None` before the window has a
    /// correction, when the correction is off, or when γ·p̂_T ≥ 1.
    #[serde(default)]
    pub n_seismic_corrected: Option<f64>,
    /// The corrected prediction N = n + ω·G1/(1−n*).
    pub n_pred: f64,
    /// The correction factor applied (1 before the window has a model).
    pub omega: f64,
    /// Event time of the model used (its version), if any.
    pub model_version: Option<Time>,
    /// How many samples that model was trained on (0 without a model).
    pub model_samples: usize,
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
    /// The corrected prediction and its ARE.
    pub n_pred: f64,
    /// ARE of `n_pred`.
    pub are: f64,
    /// The plain Hawkes prediction.
    pub n_hawkes: f64,
    /// ARE of `n_hawkes`.
    pub are_hawkes: f64,
    /// The SEISMIC prediction (None: infinite).
    pub n_seismic: Option<f64>,
    /// ARE of `n_seismic`.
    pub are_seismic: Option<f64>,
    /// The corrected SEISMIC prediction (None: no correction yet, or infinite).
    #[serde(default)]
    pub n_seismic_corrected: Option<f64>,
    /// ARE of `n_seismic_corrected`.
    #[serde(default)]
    pub are_seismic_corrected: Option<f64>,
    /// The forest's correction factor used (1 without a model).
    pub omega: f64,
    /// Samples the window's model had been trained on when predicting (0: no model).
    pub model_samples: usize,
}

/// Why a prediction gave no training sample (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Exclusion {
    /// The fit failed, so there are no features.
    FitFailed,
    /// G1 = 0: the target W is undefined.
    ZeroG1,
    /// n* ≥ 1: the Hawkes tail diverges.
    Supercritical,
    /// The true size is below the observed count (W < 0).
    NegativeTarget,
    /// A non-finite feature or target.
    NonFinite,
}

impl Exclusion {
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

/// What the join emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The accuracy of one prediction.
    Stat(StatRecord),
    /// A training sample.
    Sample(Sample),
    /// A prediction that gives no sample, and why.
    Excluded { t_obs: Time, reason: Exclusion },
}

/// A training sample (SPEC §4.2) for a window's forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The cascade (for deterministic ordering and tracing).
    pub cascade: CascadeId,
    /// The window.
    pub t_obs: Time,
    /// Features (β, n*, G1).
    pub x: [f64; 3],
    /// Target W = (N_true − n)(1 − n*)/G1.
    pub w: f64,
    /// SEISMIC's features of the same prediction and the true size: a training sample of the
    /// window's SEISMIC correction (None when SEISMIC had no finite features).
    #[serde(default)]
    pub seismic: Option<(SeismicPrediction, f64)>,
}

/// A trained model for one window, versioned by the event time it was trained at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// The window.
    pub t_obs: Time,
    /// Event time at which it was trained; used from `version + model_delay` on.
    pub version: Time,
    /// How many samples it was trained on.
    pub n_samples: usize,
    /// How many samples of its window had been seen in all (drives the retraining schedule
    /// and the seed, so a warm-started trainer continues exactly where this one stopped).
    pub samples_seen: usize,
    /// The forest.
    pub forest: tweetoscope_model::forest::Forest,
    /// Its training set, (β, n*, G1, W) rows in training order: with the forest's params and
    /// seed this rebuilds the identical forest, so the `models` topic carries this compact
    /// form (kilobytes) rather than the trees (megabytes).
    pub training: Vec<[f64; 4]>,
    /// The window's SEISMIC correction (α, γ), fitted on the same training cascades (those
    /// that ended before `version`); `None` when off or with too few samples.
    #[serde(default)]
    pub seismic: Option<CorrectedSeismic>,
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

/// Course-compatible JSON values (SPEC §3), built with serde_json so that they are always
/// valid JSON, with finite numbers only (callers guarantee finiteness; see `finite`).
pub mod json {
    use serde_json::json;

    use super::*;

    /// Replaces a non-finite number with 0 so that no NaN or infinity is ever written;
    /// upstream stages already exclude them, this is the last line of defence.
    fn finite(x: f64) -> f64 {
        if x.is_finite() {
            x
        } else {
            0.0
        }
    }

    /// `{"type":"serie",…}`.
    pub fn serie(p: &Partial) -> String {
        let tweets: Vec<(f64, f64)> = p.events.iter().map(|e| (e.t, e.m)).collect();
        json!({"type": "serie", "cid": p.cascade.to_string(), "msg": p.msg, "T_obs": p.t_obs, "tweets": tweets})
            .to_string()
    }

    /// `{"type":"size",…}`.
    pub fn size(f: &FinalSize) -> String {
        json!({"type": "size", "cid": f.cascade.to_string(), "n_tot": f.n_tot, "t_end": f.t_end}).to_string()
    }

    /// `{"type":"parameters",…}`; `n_star` and `G1` are added to the course fields.
    pub fn parameters(e: &Estimate) -> String {
        let (params, n_star, g1, n_supp) = match &e.fit {
            Some(f) => ([finite(f.p), finite(f.beta)], finite(f.n_star), finite(f.g1), finite(f.n_hawkes)),
            None => ([0.0, 0.0], 0.0, 0.0, e.n as f64),
        };
        json!({"type": "parameters", "cid": e.cascade.to_string(), "msg": e.msg, "n_obs": e.n,
               "n_supp": n_supp, "params": params, "n_star": n_star, "G1": g1, "fit_ok": e.fit.is_some(),
               "T_obs": e.t_obs, "at_bound": e.fit.is_some_and(|f| f.at_bound)})
        .to_string()
    }

    /// `{"type":"sample",…}`.
    pub fn sample(s: &Sample) -> String {
        json!({"type": "sample", "cid": s.cascade.to_string(), "X": s.x.map(finite), "W": finite(s.w)}).to_string()
    }

    /// `{"type":"alert",…}`.
    pub fn alert(p: &Prediction) -> String {
        json!({"type": "alert", "cid": p.cascade.to_string(), "msg": p.msg, "T_obs": p.t_obs,
               "n_tot": finite(p.n_pred).round() as u64})
        .to_string()
    }

    /// `{"type":"stat",…}` with the corrected ARE and, added, the predictions and the plain
    /// Hawkes and SEISMIC ARE (`n_seismic`/`ARE_seismic` are null when SEISMIC predicted an
    /// infinite size; `n_seismic_corrected`/`ARE_seismic_corrected` when the window had no
    /// SEISMIC correction yet or it predicted an infinite size), so that reports can be
    /// computed from the topic alone.
    pub fn stat(s: &StatRecord) -> String {
        json!({"type": "stat", "cid": s.cascade.to_string(), "T_obs": s.t_obs, "ARE": finite(s.are),
               "ARE_hawkes": finite(s.are_hawkes), "ARE_seismic": s.are_seismic.map(finite),
               "n_obs": s.n_obs, "n_true": s.n_true, "n_pred": finite(s.n_pred), "n_hawkes": finite(s.n_hawkes),
               "n_seismic": s.n_seismic.map(finite), "omega": finite(s.omega), "model_samples": s.model_samples,
               "n_seismic_corrected": s.n_seismic_corrected.map(finite),
               "ARE_seismic_corrected": s.are_seismic_corrected.map(finite)})
        .to_string()
    }

    /// `{"type":"model",…}`: the window's forest, versioned by event time, as its
    /// hyper-parameters, seed and training set (training is deterministic, so a reader
    /// rebuilds the identical forest with `Forest::train`).
    pub fn model(m: &Model) -> String {
        let training: Vec<[f64; 4]> = m.training.iter().map(|r| r.map(finite)).collect();
        json!({"type": "model", "T_obs": m.t_obs, "version": m.version, "n_samples": m.n_samples,
               "samples_seen": m.samples_seen, "params": m.forest.params(), "seed": m.forest.seed(),
               "training": training,
               "seismic": m.seismic.map(|c| json!({"alpha": finite(c.alpha), "gamma": finite(c.gamma)}))})
        .to_string()
    }

    /// Rebuilds a model from its `models` topic JSON: the forest is retrained from the
    /// stored training set, parameters and seed, which gives the identical forest.
    pub fn parse_model(text: &str) -> Result<Model, String> {
        #[derive(serde::Deserialize)]
        struct Wire {
            #[serde(rename = "T_obs")]
            t_obs: Time,
            version: Time,
            samples_seen: usize,
            params: tweetoscope_model::forest::ForestParams,
            seed: u64,
            training: Vec<[f64; 4]>,
            #[serde(default)]
            seismic: Option<CorrectedSeismic>,
        }
        let w: Wire = serde_json::from_str(text).map_err(|e| format!("invalid model record: {e}"))?;
        let x: Vec<[f64; 3]> = w.training.iter().map(|r| [r[0], r[1], r[2]]).collect();
        let y: Vec<f64> = w.training.iter().map(|r| r[3]).collect();
        let forest = tweetoscope_model::forest::Forest::train(&x, &y, &w.params, w.seed).map_err(|e| e.to_string())?;
        Ok(Model {
            t_obs: w.t_obs,
            version: w.version,
            n_samples: x.len(),
            samples_seen: w.samples_seen,
            forest,
            training: w.training,
            seismic: w.seismic.filter(|c| c.alpha.is_finite() && c.gamma.is_finite()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serie_is_course_shaped_json() {
        let p = Partial {
            cascade: 12,
            t_obs: 600,
            msg: "hi".into(),
            events: vec![Event { t: 0.0, m: 10.0 }, Event { t: 5.0, m: 3.0 }],
        };
        let v: serde_json::Value = serde_json::from_str(&json::serie(&p)).unwrap();
        assert_eq!(v["type"], "serie");
        assert_eq!(v["cid"], "12");
        assert_eq!(v["T_obs"], 600);
        assert_eq!(v["tweets"][1][0], 5.0);
    }

    #[test]
    fn a_model_record_rebuilds_the_identical_forest() {
        use tweetoscope_model::forest::{Forest, ForestParams};
        let training: Vec<[f64; 4]> =
            (0..40).map(|i| [1e-4 * (i + 1) as f64, 0.01 * i as f64, 10.0 + i as f64, 0.5 + (i % 7) as f64]).collect();
        let x: Vec<[f64; 3]> = training.iter().map(|r| [r[0], r[1], r[2]]).collect();
        let y: Vec<f64> = training.iter().map(|r| r[3]).collect();
        let params = ForestParams { n_trees: 10, ..ForestParams::default() };
        let forest = Forest::train(&x, &y, &params, 99).unwrap();
        let seismic = Some(CorrectedSeismic { alpha: 0.7, gamma: 42.5 });
        let model = Model { t_obs: 600, version: 1234, n_samples: 40, samples_seen: 55, forest, training, seismic };
        let back = json::parse_model(&json::model(&model)).unwrap();
        assert_eq!((back.t_obs, back.version, back.samples_seen), (600, 1234, 55));
        assert_eq!(back.seismic, seismic, "the SEISMIC correction travels with the model");
        for probe in [[2e-4, 0.1, 12.0], [3e-3, 0.3, 40.0]] {
            assert_eq!(back.forest.predict(&probe).to_bits(), model.forest.predict(&probe).to_bits());
        }
    }

    #[test]
    fn non_finite_numbers_never_reach_json() {
        let s = json::stat(&StatRecord {
            cascade: 1,
            t_obs: 600,
            n_obs: 10,
            n_true: 20,
            n_pred: f64::NAN,
            are: f64::NAN,
            n_hawkes: 1.0,
            are_hawkes: f64::INFINITY,
            n_seismic: None,
            are_seismic: None,
            n_seismic_corrected: Some(f64::INFINITY),
            are_seismic_corrected: Some(f64::NAN),
            omega: 1.0,
            model_samples: 0,
        });
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["ARE"], 0.0);
        assert_eq!(v["ARE_seismic_corrected"], 0.0);
    }
}
