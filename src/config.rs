//! The dataflow configuration: one TOML file per named dataflow in `dataflows/`.
//!
//! Every struct denies unknown keys, so a typo in a config file is an error rather than a
//! silently ignored setting, and every field says why it exists. [`DataflowConfig::validate`]
//! checks the cross-field rules that serde cannot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tweetoscope_model::forest::ForestParams;
use tweetoscope_model::hawkes::HawkesSettings;

use crate::Time;

/// Errors while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value out of its range, or values that make no sense together.
    #[error("invalid configuration: {key} {rule}")]
    Invalid {
        /// The key (`section.field`) at fault.
        key: &'static str,
        /// The rule it breaks.
        rule: String,
    },
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
    /// The random-forest predictive layer.
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
    /// Cascades whose post time is unknown start at a seeded random offset in
    /// `[0, random_start_range)` seconds, as the course generator did (its default: 600 s).
    pub random_start_range: Time,
    /// Seed of those random start offsets, so that a replay is reproducible.
    pub seed: u64,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self { path: None, index: None, random_start_range: 600, seed: 1 }
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
    /// Partial cascades with fewer events than this are not estimated (too little signal).
    pub min_cascade_size: usize,
    /// A prediction above this many events raises an alert.
    pub alert_threshold: f64,
    /// A terminated cascade's id is remembered this long (event time, seconds) so that its
    /// late retweets are recognised and rejected as such rather than as unknown cascades.
    pub tombstone_ttl: Time,
    /// Granularity (seconds) of the timestamps after the window stage: its outputs are
    /// stamped with the last second of their granule (granules are [k·g, (k+1)·g)), so that
    /// timely's progress tracking costs per granule rather than per second (with 1, it was
    /// over a third of a NEWS-sized replay). Later stages then act per granule: the
    /// predictions, samples and models of one granule are processed together in (cascade,
    /// window) order, and a model trained in a granule is used from `forest.model_delay`
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
            alert_threshold: 150.0,
            tombstone_ttl: 86_400,
            granularity: 1,
        }
    }
}

/// The random-forest predictive layer (SPEC §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestConfig {
    /// Turn the correction off to run plain Hawkes (ω = 1 always).
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
    /// A model trained at event time t is used for predictions at t + model_delay and later
    /// (the feedback loop's timestamp increment; must be ≥ 1). Predictions after t + δ wait
    /// for the model, so δ is also how much event time the pipeline may run ahead while a
    /// forest trains on its own thread: 60 s lets a live run keep predicting through a
    /// training run (with 1 s, every training run stalled the predictions behind it).
    pub model_delay: Time,
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
            model_delay: 60,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
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
        if !(p.alert_threshold.is_finite() && p.alert_threshold >= 0.0) {
            return invalid("pipeline.alert_threshold", "must be a finite number ≥ 0");
        }
        self.checkpoint.validate().map_err(|(key, rule)| ConfigError::Invalid { key, rule: rule.to_owned() })?;
        // Checkpoint boundaries must be granule boundaries: a stage's state "before F" is then
        // the same whether counted in event time or in granules.
        if p.granularity == 0 || !self.checkpoint.interval.is_multiple_of(p.granularity) {
            let rule = format!("must be ≥ 1 s and divide checkpoint.interval ({} s)", self.checkpoint.interval);
            return invalid("pipeline.granularity", &rule);
        }
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
        if self.model_delay == 0 {
            return invalid("forest.model_delay", "must be ≥ 1 (a zero-delay feedback loop never progresses)");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = DataflowConfig::parse("[pipeline]\nwindow = [600]\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn empty_file_gives_course_defaults() {
        let c = DataflowConfig::parse("").unwrap();
        assert_eq!(c.pipeline.windows, vec![600, 1200]);
        assert_eq!(c.pipeline.t_end, 1800);
        assert_eq!(c.hawkes.alpha, 2.4);
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
        assert!(DataflowConfig::parse("[forest]\nmodel_delay = 0\n").is_err());
    }

    #[test]
    fn a_granularity_that_does_not_divide_the_checkpoint_interval_is_rejected() {
        assert!(DataflowConfig::parse("[pipeline]\ngranularity = 0\n").is_err());
        let err = DataflowConfig::parse("[pipeline]\ngranularity = 7\n[checkpoint]\ninterval = 600\n").unwrap_err();
        assert!(err.to_string().contains("granularity"), "{err}");
        assert!(DataflowConfig::parse("[pipeline]\ngranularity = 60\n[checkpoint]\ninterval = 600\n").is_ok());
    }

    #[test]
    fn shipped_dataflows_parse() {
        for name in ["embedded", "kafka"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows").join(format!("{name}.toml"));
            DataflowConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
