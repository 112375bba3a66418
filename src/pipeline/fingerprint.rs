//! What every process of a cluster must agree on, as named values: the command, the config
//! after every layer (file, flags, environment), the input, `-w`/`-n` and the version.
//!
//! Timely requires every worker to build the same dataflows in the same order, and the
//! outputs are a function of the config and the input: two processes that disagree on any
//! of these either wait on each other for ever or compute something nobody asked for. The
//! processes exchange their fingerprints before the dataflow is built (`handshake`) and
//! refuse to run, naming the first difference.
//!
//! Options that only matter to one process (where outputs are written, the summary, the
//! report, the page, metrics, Alertmanager, the start-up deadline) are not part of it.

use serde::{Deserialize, Serialize};

use super::{Job, SourceSpec};
use crate::io::files::Dataset;

/// Bumped whenever the start-up frames or the fingerprint's layout change.
pub const PROTOCOL: u32 = 1;

/// One value that must agree: its group ("config", "input", …), a key within the group
/// (config keys; else empty) and the value, printed for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What kind of setting: "version", "command", "-w", "-n", "input", "config", …
    pub what: String,
    /// The config key (`pipeline.windows`), or empty.
    pub key: String,
    /// The value as people read it (secrets only as a digest).
    pub value: String,
}

/// The values a cluster must agree on, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The entries, version first (a version mismatch explains every other difference).
    pub entries: Vec<Entry>,
}

/// The first value two fingerprints disagree on: (what, key, theirs, mine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The group ("config", …).
    pub what: String,
    /// The config key, or empty.
    pub key: String,
    /// The other process's value ("(none)" when it has no such key).
    pub theirs: String,
    /// This process's value.
    pub mine: String,
}

impl std::fmt::Display for Difference {
    /// `config: pipeline.windows [600] there vs [600, 1200] here` (from this process's view).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_empty() { String::new() } else { format!("{} ", self.key) };
        write!(f, "{}: {key}{} there vs {} here", self.what, self.theirs, self.mine)
    }
}

impl Fingerprint {
    /// The fingerprint of a job.
    pub fn of(job: &Job) -> Self {
        let mut entries = Vec::new();
        let mut add = |what: &str, key: &str, value: String| entries.push(Entry { what: what.into(), key: key.into(), value });
        add("version", "", format!("tweetoscope {} (cluster protocol {PROTOCOL})", env!("CARGO_PKG_VERSION")));
        add("command", "", command_of(&job.source).into());
        add("-w", "", job.cluster.threads_per_process().to_string());
        add("-n", "", job.cluster.processes().to_string());
        match &job.source {
            SourceSpec::Replay { dataset, pace } => {
                add("input", "", describe_dataset(dataset));
                add("--pace", "", pace.map_or_else(|| "none (as fast as possible)".into(), |p| p.to_string()));
            }
            SourceSpec::Kafka(spec) => {
                add("--until-idle", "", spec.idle_exit.map_or_else(|| "none".into(), |d| format!("{} s", d.as_secs_f64())));
                add("start offsets", "", format!("{:?}", spec.start));
            }
        }
        add("output", "", format!("kafka sink {}, warm start {}", job.kafka_sink, job.warm_start));
        add(
            "live views",
            "",
            if job.views { "on (a process serves HTTP)" } else { "off (--metrics-addr off everywhere)" }.into(),
        );
        let models: Vec<String> = job.initial_models.iter().map(|m| format!("{}@{}", m.t_obs, m.version)).collect();
        add("--models", "", if models.is_empty() { "none".into() } else { models.join(" ") });
        let config = serde_json::to_value(&job.config).unwrap_or(serde_json::Value::Null);
        flatten("", &config, &mut |key, value| add("config", key, value));
        Self { entries }
    }

    /// The first entry (in this side's order) that `theirs` has with another value or lacks,
    /// else the first one only `theirs` has.
    pub fn first_difference(&self, theirs: &Fingerprint) -> Option<Difference> {
        let find =
            |entries: &[Entry], e: &Entry| entries.iter().find(|x| x.what == e.what && x.key == e.key).map(|x| x.value.clone());
        let none = || "(none)".to_owned();
        for mine in &self.entries {
            let other = find(&theirs.entries, mine);
            if other.as_ref() != Some(&mine.value) {
                return Some(Difference {
                    what: mine.what.clone(),
                    key: mine.key.clone(),
                    theirs: other.unwrap_or_else(none),
                    mine: mine.value.clone(),
                });
            }
        }
        theirs.entries.iter().find(|t| find(&self.entries, t).is_none()).map(|t| Difference {
            what: t.what.clone(),
            key: t.key.clone(),
            theirs: t.value.clone(),
            mine: none(),
        })
    }
}

/// The command a job runs, as the user typed it.
fn command_of(source: &SourceSpec) -> &'static str {
    match source {
        SourceSpec::Replay { .. } => "run",
        SourceSpec::Kafka(spec) if spec.bounded => "backtest",
        SourceSpec::Kafka(_) => "live",
    }
}

/// A dataset's size and a digest of its content: files may sit at other paths on other
/// hosts, but every process must replay the same cascades.
fn describe_dataset(dataset: &Dataset) -> String {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    let mut eat = |x: u64| h = crate::mix64(h ^ x);
    for c in &dataset.cascades {
        eat(c.id);
        eat(c.post_time.map_or(u64::MAX, |t| t));
        eat(c.events.len() as u64);
        for (t, m) in &c.events {
            eat(*t);
            eat(m.to_bits());
        }
    }
    format!("{} cascades, {} events, digest {h:016x}", dataset.cascades.len(), dataset.events())
}

/// Calls `out(key, value)` for every leaf of a JSON value, keys dotted (`kafka.topics.tweets`),
/// arrays kept whole (`[600, 1200]`); secrets (keys naming a password or secret) only as a
/// digest, so that they never travel or show, yet two different ones still disagree.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut dyn FnMut(&str, String)) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                if is_secret(k) && !v.is_null() {
                    out(&key, format!("(secret, digest {:016x})", digest(&v.to_string())));
                } else {
                    flatten(&key, v, out);
                }
            }
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            out(prefix, format!("[{}]", items.join(", ")));
        }
        leaf => out(prefix, leaf.to_string()),
    }
}

/// Whether a config key holds a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret")
}

/// A 64-bit digest of a string (not cryptographic: it only tells two values apart).
fn digest(text: &str) -> u64 {
    text.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| crate::mix64(h ^ u64::from(b)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::DataflowConfig;
    use crate::io::files::RecordedCascade;
    use crate::pipeline::Cluster;

    fn job(config: DataflowConfig, events: Vec<(u64, f64)>) -> Job {
        let dataset = Dataset { cascades: vec![RecordedCascade { id: 1, post_time: Some(10), events }] };
        Job {
            config,
            source: SourceSpec::Replay { dataset: Arc::new(dataset), pace: None },
            out_dir: None,
            kafka_sink: false,
            cluster: Cluster::new(2, 2, 0, vec![]).unwrap(),
            warm_start: false,
            initial_models: Vec::new(),
            views: false,
        }
    }

    fn config() -> DataflowConfig {
        DataflowConfig::parse(include_str!("../../dataflows/embedded.toml")).unwrap()
    }

    #[test]
    fn equal_jobs_agree_and_per_process_options_do_not_count() {
        let a = job(config(), vec![(0, 1.0), (5, 2.0)]);
        let mut b = a.clone();
        b.out_dir = Some("/tmp/elsewhere".into());
        b.cluster = Cluster::new(2, 2, 1, vec![]).unwrap().with_connect_timeout(std::time::Duration::from_secs(3));
        assert_eq!(Fingerprint::of(&a).first_difference(&Fingerprint::of(&b)), None);
    }

    #[test]
    fn the_first_difference_names_the_config_key_and_both_values() {
        let a = job(config(), vec![(0, 1.0)]);
        let mut c = config();
        c.pipeline.windows = vec![600];
        let b = job(c, vec![(0, 1.0)]);
        let d = Fingerprint::of(&a).first_difference(&Fingerprint::of(&b)).unwrap();
        assert_eq!((d.what.as_str(), d.key.as_str()), ("config", "pipeline.windows"));
        assert_eq!((d.theirs.as_str(), d.mine.as_str()), ("[600]", "[600, 1200]"));
    }

    #[test]
    fn another_input_or_worker_count_disagrees() {
        let a = Fingerprint::of(&job(config(), vec![(0, 1.0)]));
        let b = Fingerprint::of(&job(config(), vec![(0, 1.0), (7, 1.0)]));
        assert_eq!(a.first_difference(&b).unwrap().what, "input");
        let mut w = job(config(), vec![(0, 1.0)]);
        w.cluster = Cluster::new(1, 2, 0, vec![]).unwrap();
        let d = a.first_difference(&Fingerprint::of(&w)).unwrap();
        assert_eq!((d.what.as_str(), d.theirs.as_str(), d.mine.as_str()), ("-w", "1", "2"));
    }

    #[test]
    fn secrets_travel_only_as_digests_and_still_disagree() {
        let mut c = config();
        c.kafka.sasl_password = Some(crate::io::kafka::Secret("hunter2".into()));
        let a = Fingerprint::of(&job(c.clone(), vec![]));
        assert!(!serde_json::to_string(&a).unwrap().contains("hunter2"));
        c.kafka.sasl_password = Some(crate::io::kafka::Secret("hunter3".into()));
        let d = a.first_difference(&Fingerprint::of(&job(c, vec![]))).unwrap();
        assert_eq!(d.key, "kafka.sasl_password");
        assert!(!d.theirs.contains("hunter") && !d.mine.contains("hunter"));
    }

    #[test]
    fn a_key_only_one_side_has_is_named() {
        let a = Fingerprint::of(&job(config(), vec![]));
        let mut b = a.clone();
        b.entries.push(Entry { what: "config".into(), key: "new.key".into(), value: "1".into() });
        let d = a.first_difference(&b).unwrap();
        assert_eq!((d.key.as_str(), d.theirs.as_str(), d.mine.as_str()), ("new.key", "1", "(none)"));
        let d = b.first_difference(&a).unwrap();
        assert_eq!((d.key.as_str(), d.theirs.as_str(), d.mine.as_str()), ("new.key", "(none)", "1"));
    }
}
