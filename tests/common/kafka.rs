//! Helpers for tests against the real Kafka broker (`scripts/kafka start`; `scripts/test`
//! starts it on 127.0.0.1:9092, or wherever `TWEETOSCOPE_KAFKA_BROKERS` points).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tweetoscope::io::kafka::{ensure_topics, KafkaConfig, TopicNames};
use tweetoscope::records::Topic;

use super::binary;

/// The broker the tests use.
pub fn brokers() -> String {
    std::env::var("TWEETOSCOPE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A fresh topic namespace on the broker, with every topic created (4 partitions).
pub fn namespace(test: &str) -> (String, KafkaConfig) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("{test}_{}_{nanos}_", std::process::id());
    let mut kafka = KafkaConfig { brokers: brokers(), ..KafkaConfig::default() };
    kafka.topics = TopicNames::default().with_prefix(&prefix);
    if let Err(e) = ensure_topics(&kafka, &kafka.topics.all(), 4) {
        panic!(
            "cannot create topics on {}: {e}\nIs the broker up? `scripts/kafka start` (scripts/test starts it).",
            kafka.brokers
        );
    }
    (prefix, kafka)
}

/// `tweetoscope SUBCOMMAND --brokers … --topic-prefix PREFIX ARGS…`.
pub fn tweetoscope(prefix: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = binary();
    cmd.arg(args[0]).args(["--brokers", &brokers(), "--topic-prefix", prefix]).args(&args[1..]);
    cmd
}

/// Every message of a topic (read committed), from the beginning to the end offsets seen
/// now: (key, value) pairs.
pub fn consume_all(kafka: &KafkaConfig, topic: &str) -> Vec<(Option<String>, String)> {
    let consumer: BaseConsumer = kafka.consumer().unwrap();
    let partitions = tweetoscope::io::kafka::partitions_of(&consumer, topic, Duration::from_secs(10)).unwrap();
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap();
        if high > low {
            ends.insert(*p, high);
            list.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Transaction markers take offsets too: done when every partition's position reaches
    // the end offset seen at start.
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            out.push((key, String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()));
            continue;
        }
        let positions = consumer.position().unwrap();
        let done = ends
            .iter()
            .all(|(p, end)| positions.find_partition(topic, *p).and_then(|e| e.offset().to_raw()).is_some_and(|o| o >= *end));
        if done {
            return out;
        }
        assert!(Instant::now() < deadline, "read {} messages of {topic} in 60 s without reaching its end", out.len());
    }
}

/// Count of offsets in a topic (sum of high − low watermarks; transaction markers included).
pub fn topic_len(kafka: &KafkaConfig, topic: &str) -> i64 {
    let consumer: BaseConsumer = kafka.consumer().unwrap();
    tweetoscope::io::kafka::partitions_of(&consumer, topic, Duration::from_secs(10))
        .unwrap()
        .iter()
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap();
            high - low
        })
        .sum()
}

/// The six output topics by their file name in a `--out` folder.
pub const OUTPUT_TOPICS: [(&str, Topic); 6] = [
    ("cascade_series", Topic::CascadeSeries),
    ("cascade_properties", Topic::CascadeProperties),
    ("samples", Topic::Samples),
    ("models", Topic::Models),
    ("alerts", Topic::Alerts),
    ("stats", Topic::Stats),
];

/// The lines of every topic file of a `--out` folder, sorted (a multiset per topic).
pub fn file_multisets(dir: &Path) -> BTreeMap<String, Vec<String>> {
    OUTPUT_TOPICS
        .iter()
        .map(|(t, _)| {
            let text = std::fs::read_to_string(dir.join(format!("{t}.jsonl"))).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            (t.to_string(), lines)
        })
        .collect()
}

/// The values of every output topic, sorted (a multiset per topic, named as the files).
pub fn topic_multisets(kafka: &KafkaConfig) -> BTreeMap<String, Vec<String>> {
    OUTPUT_TOPICS
        .iter()
        .map(|(t, topic)| {
            let mut values: Vec<String> = consume_all(kafka, kafka.topics.of(*topic)).into_iter().map(|(_, v)| v).collect();
            values.sort();
            (t.to_string(), values)
        })
        .collect()
}

/// Asserts two multisets per topic are equal, naming the counts and a first difference.
pub fn assert_same_multisets(expected: &BTreeMap<String, Vec<String>>, got: &BTreeMap<String, Vec<String>>, what: &str) {
    for (topic, want) in expected {
        let have = &got[topic];
        if have != want {
            let missing = want.iter().find(|v| !have.contains(v));
            let extra = have.iter().find(|v| !want.contains(v));
            let duplicated = have.windows(2).find(|w| w[0] == w[1]).map(|w| &w[0]);
            panic!(
                "{what}: topic {topic} has {} records, expected {}.\n  first missing: {:.300}\n  first unexpected: {:.300}\n  first duplicate: {:.300}",
                have.len(),
                want.len(),
                missing.map_or("none", String::as_str),
                extra.map_or("none", String::as_str),
                duplicated.map_or("none", String::as_str),
            );
        }
    }
}

/// Waits (bounded) for a child to exit; kills it and fails after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not finish within {limit:?}; stderr:\n{}", tail(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The last 40 lines of a process's output.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Sends SIGTERM and waits (bounded) for the process to stop (a live run then drains,
/// flushes, and exits 143).
pub fn terminate(child: Child) -> std::process::Output {
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    wait_bounded(child, Duration::from_secs(60), "a pipeline stopped with SIGTERM")
}

/// The broker's secured listeners and their material, as `scripts/kafka start` wrote them in
/// `$KAFKA_HOME_CACHE/secure` (default `.cache/kafka/secure`): SASL_SSL (SCRAM-SHA-512,
/// SCRAM-SHA-256 and PLAIN, user `tweetoscope`) and mutual TLS, both with the CA `ca.crt`.
pub struct Secure {
    /// `host:port` of the SASL_SSL listener.
    pub sasl_ssl: String,
    /// `host:port` of the mutual-TLS listener.
    pub mtls: String,
    /// The folder of ca.crt, client.crt, client.key, tweetoscope.password.
    pub dir: std::path::PathBuf,
    /// The SASL user.
    pub user: String,
    /// Its password (to grep outputs for it).
    pub password: String,
}

impl Secure {
    /// Reads what scripts/kafka wrote, or fails saying how to get it.
    pub fn get() -> Self {
        let cache = std::env::var_os("KAFKA_HOME_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| super::root().join(".cache/kafka"));
        let dir = cache.join("secure");
        let listeners = std::fs::read_to_string(dir.join("listeners")).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\nStart the broker with `scripts/kafka start`: it opens the secured listeners (scripts/test starts it).",
                dir.join("listeners").display()
            )
        });
        let find = |name: &str| {
            listeners
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} listener in {}", dir.join("listeners").display()))
                .trim()
                .to_owned()
        };
        let user = "tweetoscope".to_owned();
        let password = std::fs::read_to_string(dir.join(format!("{user}.password"))).unwrap().trim().to_owned();
        assert!(password.len() >= 16, "the test password is too short to grep for");
        Self { sasl_ssl: find("sasl_ssl"), mtls: find("ssl"), dir, user, password }
    }

    /// `ca.crt`, `client.crt`, … in the material folder.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// The password file of the SASL user.
    pub fn password_file(&self) -> String {
        self.file(&format!("{}.password", self.user))
    }

    /// A library client of the SASL_SSL listener (SCRAM-SHA-512) on the topics of `prefix`.
    pub fn client(&self, prefix: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: self.sasl_ssl.clone(),
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some(self.user.clone()),
            sasl_password: Some(tweetoscope::io::kafka::Secret(self.password.clone())),
            ssl_ca_location: Some(self.file("ca.crt")),
            topics: TopicNames::default().with_prefix(prefix),
            ..KafkaConfig::default()
        }
    }

    /// `tweetoscope SUBCOMMAND ARGS…` on the SASL_SSL listener, all settings as flags (the
    /// password from its file), none from the environment.
    pub fn tweetoscope(&self, prefix: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = without_kafka_env(binary());
        cmd.arg(args[0])
            .args(["--topic-prefix", prefix, "--brokers", &self.sasl_ssl, "--security-protocol", "sasl_ssl"])
            .args(["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", &self.user])
            .args(["--sasl-password-file", &self.password_file(), "--ssl-ca-location", &self.file("ca.crt")])
            .args(&args[1..]);
        cmd
    }
}

/// A command with none of the `TWEETOSCOPE_KAFKA_*` variables of the test's environment.
pub fn without_kafka_env(mut cmd: std::process::Command) -> std::process::Command {
    for name in tweetoscope::io::kafka::ENV_VARS {
        cmd.env_remove(name);
    }
    cmd
}
