//! The dataflow configuration: one TOML file per named dataflow in `dataflows/`.
//!
//! Every struct denies unknown keys, so a typo in a config file is an error rather than a
//! silently ignored setting, and every field says why it exists. [`DataflowConfig::validate`]
//! checks the cross-field rules that serde cannot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tweetoscope_model::forest::ForestParams;
use tweetoscope_model::hawkes::HawkesSettings;
use tweetoscope_model::predictive::{Fallback, LearnerSettings, TrainerSettings};

use crate::Time;

/// Errors while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, for the error line.
        message: String,
    },
    /// A value out of its range, or values that make no sense together.
    #[error("invalid configuration: {key} {rule}")]
    Invalid {
        /// The key (`section.field`) at fault.
        key: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The `[kafka]` settings, after every layer (file, environment, flags), cannot make a
    /// client: missing credentials, unreadable password or certificate files.
    #[error("invalid configuration: {0}")]
    Kafka(crate::io::kafka::KafkaSetupError),
}

/// A whole dataflow configuration (`dataflows/*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataflowConfig {
    /// Where events come from when the command line does not say.
    pub input: InputConfig,
    /// Windows, termination and alerting: the collector's semantics.
    pub pipeline: PipelineConfig,
    /// The marked Hawkes model and its prior (SPEC §4.1; defaults are the course's values).
    pub hawkes: HawkesSettings,
    /// The predictive layer: which predictor makes the default prediction, and the learned
    /// layer's schedule.
    pub predictor: PredictorConfig,
    /// The course's random-forest correction (course mode; a comparison column otherwise).
    pub forest: ForestConfig,
    /// The SEISMIC baseline's learned correction (Zhao et al., KDD 2015; SEISMIC.md §6).
    pub seismic: SeismicConfig,
    /// Kafka brokers, credentials, topics and source behaviour (distributed mode).
    pub kafka: crate::io::kafka::KafkaConfig,
    /// Checkpoints and exactly-once output (Kafka modes; off unless a folder is given).
    pub checkpoint: crate::checkpoint::CheckpointConfig,
}

/// The default input of a dataflow (overridden by `--input`/`--index`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// A SEISMIC raw folder (one file per cascade) or a course data CSV; relative paths are
    /// resolved against the current directory, then the project's data folder.
    pub path: Option<PathBuf>,
    /// The course index CSV that goes with a course data CSV.
    pub index: Option<PathBuf>,
    /// Cascades whose post time is unknown (the course CSV layout) start at a seeded random
    /// offset in `[0, random_start_range)` seconds. The default, 7 days, spreads a recorded
    /// sample over a realistic timeline, so that cascades end before later ones are
    /// predicted and a replay trains models as a live stream would; the course generator
    /// used 600 s (`dataflows/course.toml`), which starts every cascade within ten minutes:
    /// none has ended when the windows close, so nothing can be learned during the replay.
    pub random_start_range: Time,
    /// Seed of those random start offsets, so that a replay is reproducible.
    pub seed: u64,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self { path: None, index: None, random_start_range: 7 * 86_400, seed: 1 }
    }
}

impl PipelineConfig {
    /// The alert predicate's thresholds (`alert_threshold`, `alert_critical`).
    pub fn alert_thresholds(&self) -> crate::records::AlertThresholds {
        crate::records::AlertThresholds { warning: self.alert_threshold, critical: self.alert_critical }
    }
}

/// The collector's semantics (SPEC §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Observation windows T_obs in seconds after the original tweet; one partial cascade,
    /// one fit and one prediction per cascade and window.
    pub windows: Vec<Time>,
    /// A cascade with no event for `t_end` seconds is terminated; its size then is the true size.
    pub t_end: Time,
    /// Partial cascades with fewer events than this are not predicted (too little signal).
    pub min_cascade_size: usize,
    /// Partial cascades with at least this many events but fewer than `min_cascade_size` are
    /// estimated for training only: once their cascade ends they give the learned layer a
    /// sample, but they are never predicted, alerted or written. On an unselected stream most
    /// cascades stay small; their samples teach the model what small cascades do (measured on
    /// evently-auspol: median ARE at 1200 s 0.41 → 0.31, `crates/model/PREDICTIVE.md`). Set it
    /// to `min_cascade_size` to train on predicted partials only.
    pub min_training_size: usize,
    /// A prediction of more than this many retweets raises a `warning` alert (the alerts
    /// topic, Alertmanager, the page and `tweetoscope_alerts_total` all use this predicate,
    /// `Prediction::alert_severity`). Default 5,000: about 1 post in 1,000 of the NEWS
    /// stream ends that large (18 of its 20,093 cascades; its median is 90, its 99th
    /// percentile 1,131), a review queue a trust-and-safety team can follow; the course's
    /// 150 fired for nearly every cascade of the bundled sample (its final sizes: median
    /// ~2,450, 10–90 % ~1,600–6,600).
    pub alert_threshold: f64,
    /// A prediction of more than this many retweets is `critical` (≥ `alert_threshold`).
    /// A warning is also raised to critical when even the low end of its prediction
    /// interval is above `alert_threshold` (the model is confident the post goes viral).
    /// Default 20,000: 3 cascades of NEWS's 20,093.
    pub alert_critical: f64,
    /// A terminated cascade's id is remembered this long (event time, seconds) so that its
    /// late retweets are recognised and rejected as such rather than as unknown cascades.
    pub tombstone_ttl: Time,
    /// Granularity (seconds) of the timestamps after the window stage: its outputs are
    /// stamped with the last second of their granule (granules are [k·g, (k+1)·g)), so that
    /// timely's progress tracking costs per granule rather than per second (with 1, it was
    /// over a third of a NEWS-sized replay). Later stages then act per granule: the
    /// predictions, samples and models of one granule are processed together in (cascade,
    /// window) order, and a model trained in a granule is used from `predictor.model_delay`
    /// after the granule's end. Outputs stay a deterministic function of event time. Cost: a
    /// granule's predictions wait until event time has passed its end, so the live config
    /// keeps 1 s (lowest latency) and the embedded one uses 10 s. Must be ≥ 1 and divide
    /// `checkpoint.interval`.
    pub granularity: Time,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            windows: vec![600, 1200],
            t_end: 1800,
            min_cascade_size: 10,
            min_training_size: 3,
            alert_threshold: 5000.0,
            alert_critical: 20000.0,
            tombstone_ttl: 86_400,
            granularity: 1,
        }
    }
}

/// Which predictor makes the default prediction (`predictor.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictorMode {
    /// The learned layer (SPEC §4.2, default mode): per window, gradient-boosted trees on
    /// features of the cascade, its Hawkes fit and SEISMIC, predicting ln(N/n); the
    /// training-free fallback before a window's first model.
    Learned,
    /// The course's correction: Hawkes + the window's random forest on (β, n*, G1).
    Course,
}

/// What a window predicts before its first learned model (`predictor.fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackKind {
    /// SEISMIC's prediction, at least n and at most `fallback_max_ratio` × n (measured best:
    /// `crates/model/PREDICTIVE.md`).
    Seismic,
    /// N = n: the cascade is over.
    NoGrowth,
}

/// The predictive layer (SPEC §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// `learned` (default) or `course`.
    pub mode: PredictorMode,
    /// A model trained at event time t is used for predictions at t + model_delay and later
    /// (the feedback loop's timestamp increment; must be ≥ 1). Predictions after t + δ wait
    /// for the model, so δ is also how much event time the pipeline may run ahead while a
    /// model trains on its own thread: 60 s lets a live run keep predicting through a
    /// training run (with 1 s, every training run stalled the predictions behind it).
    pub model_delay: Time,
    /// A window's first learned model once it has this many samples (≥ 4).
    pub min_samples: usize,
    /// Retrain a window's learned model every this many new samples…
    pub retrain_every: usize,
    /// …or, once that is more, when its samples have grown by this fraction since the last
    /// run (training cost then grows with the logarithm of the stream).
    pub retrain_growth: f64,
    /// Train on at most this many most recent samples (bounds the cost; follows drift).
    pub max_samples: usize,
    /// Base seed of the training runs (each is seeded from (seed, window, samples seen)).
    pub seed: u64,
    /// What a window predicts before its first learned model.
    pub fallback: FallbackKind,
    /// The SEISMIC fallback predicts at most this many times the observed size (> 1).
    pub fallback_max_ratio: f64,
    /// Nominal coverage of the prediction intervals, in (0, 1).
    pub interval_level: f64,
    /// The intervals are calibrated on the residuals of the window's last this many ended
    /// cascades (recent residuals follow the model as it improves).
    pub calibration_size: usize,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        Self {
            mode: PredictorMode::Learned,
            model_delay: 60,
            min_samples: 10,
            retrain_every: 5,
            retrain_growth: 0.1,
            max_samples: 5000,
            seed: 7,
            fallback: FallbackKind::Seismic,
            fallback_max_ratio: 5.0,
            interval_level: 0.8,
            calibration_size: 200,
        }
    }
}

impl PredictorConfig {
    /// The learned layer's trainer settings (validated by the model crate).
    pub fn trainer(&self) -> Result<TrainerSettings, ConfigError> {
        let invalid =
            |e: tweetoscope_model::predictive::PredictiveError| ConfigError::Invalid { key: "predictor", rule: e.to_string() };
        let fallback = match self.fallback {
            FallbackKind::NoGrowth => Fallback::NoGrowth,
            FallbackKind::Seismic => Fallback::Seismic { max_log_ratio: self.fallback_max_ratio.ln() },
        };
        let learner = LearnerSettings::default().with_fallback(fallback).map_err(invalid)?;
        TrainerSettings::new(learner, self.min_samples, self.retrain_every, self.retrain_growth, self.max_samples, self.seed)
            .map_err(invalid)
    }

    /// Checks the schedule, the fallback and the intervals.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, rule: &str| Err(ConfigError::Invalid { key, rule: rule.to_owned() });
        if self.model_delay == 0 {
            return invalid("predictor.model_delay", "must be ≥ 1 (a zero-delay feedback loop never progresses)");
        }
        if !(self.fallback_max_ratio.is_finite() && self.fallback_max_ratio >= 1.0) {
            return invalid("predictor.fallback_max_ratio", "must be a finite number ≥ 1");
        }
        if !(self.interval_level > 0.0 && self.interval_level < 1.0) {
            return invalid("predictor.interval_level", "must be in (0, 1)");
        }
        if self.calibration_size == 0 {
            return invalid("predictor.calibration_size", "must be ≥ 1");
        }
        self.trainer().map(|_| ())
    }
}

/// The course's random-forest correction (SPEC §4.2, course mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestConfig {
    /// Train the course forest. In course mode, off means plain Hawkes (ω = 1 always); in
    /// the default mode the forest only gives the `course` comparison column, and turning it
    /// off saves its training (and the SEISMIC correction, which is fitted with it).
    pub enabled: bool,
    /// Retrain a window's forest every this many new samples of that window…
    pub retrain_every: usize,
    /// …or, once that is more, when the samples seen have grown by this fraction since the
    /// last run: training cost then grows with the logarithm of the stream, not linearly
    /// (the course retrained every 5–20 samples, which a long stream cannot afford).
    pub retrain_growth: f64,
    /// Train on at most this many most recent samples, so that training cost stays bounded
    /// on long streams and the model follows drift.
    pub max_samples: usize,
    /// Number of trees.
    pub n_trees: usize,
    /// Maximum depth of a tree (none: grow until leaves are pure or too small).
    pub max_depth: Option<u16>,
    /// Minimum number of samples in a leaf.
    pub min_samples_leaf: usize,
    /// Minimum number of samples to split a node.
    pub min_samples_split: usize,
    /// Features tried at each split, 1..=3 (none: all 3, scikit-learn's regressor default,
    /// which the course used; 1 is Breiman's p/3 for regression, about 3× cheaper to train).
    pub max_features: Option<usize>,
    /// Base seed; each training run is seeded from (seed, window, training count) so that
    /// models do not depend on scheduling.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        let p = ForestParams::default();
        Self {
            enabled: true,
            retrain_every: 10,
            retrain_growth: 0.25,
            max_samples: 2000,
            n_trees: p.n_trees,
            max_depth: p.max_depth,
            min_samples_leaf: p.min_samples_leaf,
            min_samples_split: p.min_samples_split,
            max_features: p.m,
            seed: 7,
        }
    }
}

/// SEISMIC "with their correction" (SEISMIC.md §6): per observation window, global scalars
/// (α, γ) in N̂ = R_T + 1 + α·F_T/(1 − γ·p̂_T), fitted online — like the forest, by the `train`
/// stage, on the samples of cascades that have ended, and used from `version + model_delay`
/// on — so a prediction never sees its own or a later cascade's outcome. The plain package
/// prediction (α = 1, γ = n* = 100) is always reported beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeismicConfig {
    /// Fit and apply the correction (on by default: it is how the paper predicts). It is
    /// refitted whenever the window's forest is retrained (same schedule and training window
    /// `forest.max_samples`), so it needs `forest.enabled = true`.
    pub correction: bool,
    /// Do not fit before a window has this many samples with SEISMIC features (two
    /// parameters from a handful of cascades would be noise).
    pub min_samples: usize,
    /// Fit on at most this many most recent samples of the window: a fit costs about
    /// 7,000 logarithms per sample, so this bounds it (≈ 30 ms at 500) on long streams.
    pub max_samples: usize,
    /// Refit (at a forest retraining) only once the window's samples with SEISMIC features have
    /// grown by this fraction since the last fit (two global scalars settle fast; refitting at
    /// every forest retraining would cost more than the forest). Between fits, the new
    /// model carries the last correction.
    pub refit_growth: f64,
}

impl Default for SeismicConfig {
    fn default() -> Self {
        Self { correction: true, min_samples: 20, max_samples: 500, refit_growth: 0.5 }
    }
}

impl ForestConfig {
    /// The forest's hyper-parameters.
    pub fn params(&self) -> ForestParams {
        ForestParams {
            n_trees: self.n_trees,
            max_depth: self.max_depth,
            min_samples_leaf: self.min_samples_leaf,
            min_samples_split: self.min_samples_split,
            m: self.max_features,
        }
    }
}

impl DataflowConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load_layer(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config = Self::parse_layer(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file WITHOUT the cross-field checks: the first layer of a Kafka command's
    /// settings (the environment and the flags come next, then [`DataflowConfig::finish_kafka`]).
    pub fn load_layer(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse_layer(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses TOML text without the cross-field checks. A syntax or schema error names the
    /// line and column but never quotes the text: the line could hold a password. On a line
    /// that names a password or key, the values the message quotes (`…`) are hidden too.
    pub fn parse_layer(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim().to_owned();
            let mut position = String::new();
            if let Some(span) = e.span() {
                let start = span.start.min(text.len());
                let before = &text[..start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                position = format!("line {line}, column {column}: ");
                let whole_line = text[start..].split('\n').next().unwrap_or_default();
                let whole_line = format!("{}{whole_line}", before.rsplit('\n').next().unwrap_or_default()).to_ascii_lowercase();
                if ["password", "secret", "key"].iter().any(|w| whole_line.contains(w)) {
                    message = hide_quoted(&message);
                }
            }
            ConfigError::Parse { path: PathBuf::new(), message: format!("{position}{message}") }
        })
    }

    /// The one check of a Kafka command's settings, after every layer (file, environment,
    /// flags): reads the password file, then validates everything, credentials included.
    pub fn finish_kafka(&mut self) -> Result<(), ConfigError> {
        self.kafka.finish().map_err(ConfigError::Kafka)?;
        self.validate()
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, rule: &str| Err(ConfigError::Invalid { key, rule: rule.to_owned() });
        let p = &self.pipeline;
        if p.windows.is_empty() {
            return invalid("pipeline.windows", "must name at least one observation window");
        }
        if !p.windows.windows(2).all(|w| w[0] < w[1]) {
            return invalid("pipeline.windows", "must be strictly increasing");
        }
        if p.windows[0] == 0 {
            return invalid("pipeline.windows", "must be positive");
        }
        // Windows close before termination can happen (termination needs t_end idle seconds
        // after the last event, which is at or after the start), so every partial cascade is
        // emitted before its cascade's final size: the join of predictions and sizes relies on it.
        if *p.windows.last().expect("not empty") > p.t_end {
            return invalid("pipeline.windows", &format!("must each be ≤ pipeline.t_end ({} s)", p.t_end));
        }
        if p.min_cascade_size < 2 {
            return invalid("pipeline.min_cascade_size", "must be at least 2 (a fit needs two events)");
        }
        if p.min_training_size < 2 || p.min_training_size > p.min_cascade_size {
            return invalid("pipeline.min_training_size", "must be at least 2 and at most pipeline.min_cascade_size");
        }
        if !(p.alert_threshold.is_finite() && p.alert_threshold >= 0.0) {
            return invalid("pipeline.alert_threshold", "must be a finite number ≥ 0");
        }
        if !(p.alert_critical.is_finite() && p.alert_critical >= p.alert_threshold) {
            return invalid("pipeline.alert_critical", "must be a finite number ≥ pipeline.alert_threshold");
        }
        self.checkpoint.validate().map_err(|(key, rule)| ConfigError::Invalid { key, rule: rule.to_owned() })?;
        // Checkpoint boundaries must be granule boundaries: a stage's state "before F" is then
        // the same whether counted in event time or in granules.
        if p.granularity == 0 || !self.checkpoint.interval.is_multiple_of(p.granularity) {
            let rule = format!("must be ≥ 1 s and divide checkpoint.interval ({} s)", self.checkpoint.interval);
            return invalid("pipeline.granularity", &rule);
        }
        self.predictor.validate()?;
        self.forest.validate()?;
        self.seismic.validate()?;
        tweetoscope_model::hawkes::HawkesModel::new(self.hawkes.clone())
            .map_err(|e| ConfigError::Invalid { key: "hawkes", rule: e.to_string() })?;
        self.kafka.validate().map_err(|e| ConfigError::Invalid { key: "kafka", rule: e.to_string() })?;
        Ok(())
    }
}

impl ForestConfig {
    /// Checks the schedule and the hyper-parameters.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, rule: &str| Err(ConfigError::Invalid { key, rule: rule.to_owned() });
        if self.retrain_every == 0 || self.max_samples == 0 || self.n_trees == 0 {
            return invalid("forest", "retrain_every, max_samples and n_trees must be ≥ 1");
        }
        if !(self.retrain_growth.is_finite() && self.retrain_growth >= 0.0) {
            return invalid("forest.retrain_growth", "must be a finite number ≥ 0");
        }
        self.params().validate().map_err(|e| ConfigError::Invalid { key: "forest", rule: e.to_string() })
    }
}

impl SeismicConfig {
    /// Checks the correction's schedule.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.min_samples == 0 || self.max_samples < self.min_samples {
            return Err(ConfigError::Invalid {
                key: "seismic.min_samples",
                rule: "must be ≥ 1 and ≤ seismic.max_samples".into(),
            });
        }
        if !(self.refit_growth.is_finite() && self.refit_growth >= 0.0) {
            return Err(ConfigError::Invalid { key: "seismic.refit_growth", rule: "must be a finite number ≥ 0".into() });
        }
        Ok(())
    }
}

/// `a `b` c` → `a `…` c`: hides what an error message quotes.
fn hide_quoted(message: &str) -> String {
    message.split('`').enumerate().map(|(i, part)| if i % 2 == 1 { "…" } else { part }).collect::<Vec<_>>().join("`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = DataflowConfig::parse("[pipeline]\nwindow = [600]\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn empty_file_gives_course_semantics_and_the_default_predictor() {
        let c = DataflowConfig::parse("").unwrap();
        assert_eq!(c.pipeline.windows, vec![600, 1200]);
        assert_eq!(c.pipeline.t_end, 1800);
        assert_eq!(c.hawkes.alpha, 2.4);
        assert_eq!(c.hawkes.mark_law, tweetoscope_model::hawkes::MarkLaw::CascadeMedian);
        assert_eq!(c.predictor.mode, PredictorMode::Learned);
    }

    #[test]
    fn predictor_settings_are_checked_with_the_config() {
        assert!(DataflowConfig::parse("[predictor]\nmin_samples = 3\n").is_err());
        assert!(DataflowConfig::parse("[predictor]\ninterval_level = 1.0\n").is_err());
        assert!(DataflowConfig::parse("[predictor]\nmode = \"course\"\nfallback = \"no_growth\"\n").is_ok());
        let err = DataflowConfig::parse("[pipeline]\nmin_training_size = 11\n").unwrap_err();
        assert!(err.to_string().contains("min_training_size"), "{err}");
    }

    #[test]
    fn windows_after_termination_are_rejected() {
        let err = DataflowConfig::parse("[pipeline]\nwindows = [600, 3600]\nt_end = 1800\n").unwrap_err();
        assert!(err.to_string().contains("t_end"), "{err}");
    }

    #[test]
    fn forest_hyper_parameters_are_checked_with_the_config() {
        assert!(DataflowConfig::parse("[forest]\nmax_features = 4\n").is_err());
        assert!(DataflowConfig::parse("[forest]\nmax_features = 1\n").is_ok());
    }

    #[test]
    fn zero_model_delay_is_rejected() {
        assert!(DataflowConfig::parse("[predictor]\nmodel_delay = 0\n").is_err());
    }

    #[test]
    fn a_granularity_that_does_not_divide_the_checkpoint_interval_is_rejected() {
        assert!(DataflowConfig::parse("[pipeline]\ngranularity = 0\n").is_err());
        let err = DataflowConfig::parse("[pipeline]\ngranularity = 7\n[checkpoint]\ninterval = 600\n").unwrap_err();
        assert!(err.to_string().contains("granularity"), "{err}");
        assert!(DataflowConfig::parse("[pipeline]\ngranularity = 60\n[checkpoint]\ninterval = 600\n").is_ok());
    }

    #[test]
    fn parse_errors_name_the_line_but_never_quote_it() {
        let err = DataflowConfig::parse("[kafka]\nsasl_pasword = \"hunter2\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("sasl_pasword"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = DataflowConfig::parse("[kafka]\nsasl_password = hunter2\n").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = DataflowConfig::parse("[kafka]\nsasl_password = 31415926\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("31415926"), "{err}");
    }

    #[test]
    fn a_kafka_command_validates_once_after_the_environment() {
        // The file alone lacks the password: a non-Kafka command still accepts it, and a
        // Kafka command accepts it once the environment gives the password.
        let text = "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\n";
        assert!(DataflowConfig::parse(text).is_ok());
        let mut c = DataflowConfig::parse_layer(text).unwrap();
        assert!(c.clone().finish_kafka().is_err(), "no password anywhere");
        c.kafka.apply_env_from(|k| (k == "TWEETOSCOPE_KAFKA_SASL_PASSWORD").then(|| "pw".to_owned()));
        c.finish_kafka().unwrap();
        assert_eq!(c.kafka.sasl_password.as_ref().map(|p| p.0.as_str()), Some("pw"));
    }

    #[test]
    fn shipped_dataflows_parse() {
        for name in ["embedded", "kafka", "course"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows").join(format!("{name}.toml"));
            DataflowConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
