//! Kafka clients: configuration (passed through to librdkafka, secrets redacted), a
//! producer that counts deliveries, and partition/offset look-ups for the source.
//!
//! Settings come from the dataflow config's `[kafka]` table; the environment overrides the
//! brokers and credentials (`TWEETOSCOPE_KAFKA_BROKERS`, `TWEETOSCOPE_KAFKA_SASL_USERNAME`,
//! `TWEETOSCOPE_KAFKA_SASL_PASSWORD`) so that secrets need not live in files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};

use crate::records::Topic;

/// A secret string: never printed by `Debug`, never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Kafka settings (`[kafka]` in a dataflow config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Client id reported to the brokers (shows in broker logs and quotas).
    pub client_id: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) when SASL is used.
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password (prefer the environment variable).
    pub sasl_password: Option<Secret>,
    /// CA certificate file for TLS.
    pub ssl_ca_location: Option<String>,
    /// Client certificate file for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// Client key file for mutual TLS.
    pub ssl_key_location: Option<String>,
    /// Password of the client key.
    pub ssl_key_password: Option<Secret>,
    /// Any other librdkafka property, passed through as is.
    pub extra: BTreeMap<String, String>,
    /// Topic names.
    pub topics: TopicNames,
    /// Source behaviour.
    pub source: SourceConfig,
    /// Transactional id of the exactly-once output producer (used when checkpointing is
    /// on); default `tweetoscope-<progress topic>`. Two pipelines writing the same topics
    /// must not share one; a restarted pipeline must keep its own (that is how the broker
    /// fences the crashed instance and aborts its unfinished transaction).
    pub transactional_id: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "tweetoscope".into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            extra: BTreeMap::new(),
            topics: TopicNames::default(),
            source: SourceConfig::default(),
            transactional_id: None,
        }
    }
}

/// The topic names (course defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Input events.
    pub tweets: String,
    /// Partial cascades.
    pub cascade_series: String,
    /// Sizes and parameters.
    pub cascade_properties: String,
    /// Training samples.
    pub samples: String,
    /// Trained models (read back at start for a warm start).
    pub models: String,
    /// Alerts.
    pub alerts: String,
    /// Per-prediction accuracy.
    pub stats: String,
    /// Rejected input with its reason.
    pub dead_letters: String,
    /// The committed output frontier of the exactly-once producer (one record per
    /// transaction, on partition 0; see `io::kafka_tx`).
    pub progress: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            tweets: "tweets".into(),
            cascade_series: "cascade_series".into(),
            cascade_properties: "cascade_properties".into(),
            samples: "samples".into(),
            models: "models".into(),
            alerts: "alerts".into(),
            stats: "stats".into(),
            dead_letters: "dead_letters".into(),
            progress: "progress".into(),
        }
    }
}

impl TopicNames {
    /// The topic an output record goes to.
    pub fn of(&self, topic: Topic) -> &str {
        match topic {
            Topic::CascadeSeries => &self.cascade_series,
            Topic::CascadeProperties => &self.cascade_properties,
            Topic::Samples => &self.samples,
            Topic::Models => &self.models,
            Topic::Alerts => &self.alerts,
            Topic::Stats => &self.stats,
        }
    }

    /// Every name prefixed, for tests that need fresh topics on a shared broker.
    pub fn with_prefix(&self, prefix: &str) -> Self {
        let d = self.clone();
        let p = |s: String| format!("{prefix}{s}");
        Self {
            tweets: p(d.tweets),
            cascade_series: p(d.cascade_series),
            cascade_properties: p(d.cascade_properties),
            samples: p(d.samples),
            models: p(d.models),
            alerts: p(d.alerts),
            stats: p(d.stats),
            dead_letters: p(d.dead_letters),
            progress: p(d.progress),
        }
    }

    /// All names but `progress` (created with one partition by the pipeline itself).
    pub fn all(&self) -> [&str; 8] {
        [
            &self.tweets,
            &self.cascade_series,
            &self.cascade_properties,
            &self.samples,
            &self.models,
            &self.alerts,
            &self.stats,
            &self.dead_letters,
        ]
    }
}

/// How the Kafka source reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Allowed lateness (event-time seconds): an event more than this behind its partition's
    /// newest event is dead-lettered as late; the watermark trails by this much.
    pub lateness: u64,
    /// An event more than this many event-time seconds ahead of its partition's newest event
    /// is dead-lettered as `invalid_value`: one junk time (say 10^11 s, under the decoder's
    /// bound) would otherwise make every later event of its partition late. The first event
    /// of a partition has no reference and is not judged. Default: 365 days.
    pub max_ahead: u64,
    /// Messages larger than this are rejected as oversized.
    pub max_message_bytes: usize,
    /// Live mode: a partition silent this long (wall clock) stops holding the watermark back.
    pub idle_timeout_ms: u64,
    /// Most messages one activation of the source polls.
    pub poll_batch: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self { lateness: 0, max_ahead: 365 * 86_400, max_message_bytes: 64 * 1024, idle_timeout_ms: 2000, poll_batch: 20_000 }
    }
}

/// Kafka configuration or client errors.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A setting is invalid.
    #[error("kafka config: {0}")]
    Invalid(String),
    /// The client failed.
    #[error(transparent)]
    Client(#[from] KafkaError),
    /// A topic does not exist or has no partitions.
    #[error("kafka topic {0:?} does not exist or has no partitions")]
    NoSuchTopic(String),
}

impl KafkaConfig {
    /// Applies the environment overrides.
    pub fn with_env(mut self) -> Self {
        if let Ok(b) = std::env::var("TWEETOSCOPE_KAFKA_BROKERS") {
            self.brokers = b;
        }
        if let Ok(u) = std::env::var("TWEETOSCOPE_KAFKA_SASL_USERNAME") {
            self.sasl_username = Some(u);
        }
        if let Ok(p) = std::env::var("TWEETOSCOPE_KAFKA_SASL_PASSWORD") {
            self.sasl_password = Some(Secret(p));
        }
        self
    }

    /// Checks the settings without contacting a broker.
    pub fn validate(&self) -> Result<(), KafkaSetupError> {
        let invalid = |m: &str| Err(KafkaSetupError::Invalid(m.to_owned()));
        if self.brokers.trim().is_empty() {
            return invalid("brokers is empty");
        }
        let protocol = self.security_protocol.to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return invalid("security_protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl");
        }
        if protocol.starts_with("sasl") {
            if self.sasl_mechanism.is_none() {
                return invalid("SASL needs sasl_mechanism");
            }
            if self.sasl_username.is_none() || self.sasl_password.as_ref().is_none_or(|p| p.0.is_empty()) {
                return invalid("SASL needs sasl_username and sasl_password (or TWEETOSCOPE_KAFKA_SASL_* variables)");
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return invalid("ssl_certificate_location and ssl_key_location go together");
        }
        if self.source.max_message_bytes == 0 || self.source.poll_batch == 0 {
            return invalid("source.max_message_bytes and source.poll_batch must be ≥ 1");
        }
        Ok(())
    }

    /// The transactional id of the exactly-once output producer.
    pub fn transactional_id(&self) -> String {
        self.transactional_id.clone().unwrap_or_else(|| format!("tweetoscope-{}", self.topics.progress))
    }

    /// The librdkafka configuration shared by consumers and producers.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", &self.security_protocol);
        let optional = [
            ("sasl.mechanism", self.sasl_mechanism.as_deref()),
            ("sasl.username", self.sasl_username.as_deref()),
            ("sasl.password", self.sasl_password.as_ref().map(|s| s.0.as_str())),
            ("ssl.ca.location", self.ssl_ca_location.as_deref()),
            ("ssl.certificate.location", self.ssl_certificate_location.as_deref()),
            ("ssl.key.location", self.ssl_key_location.as_deref()),
            ("ssl.key.password", self.ssl_key_password.as_ref().map(|s| s.0.as_str())),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                c.set(key, v);
            }
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// A consumer for explicit `assign`ment (never a group subscription: partitions must
    /// not move behind timely's back), with a unique group id and no offset commits.
    pub fn consumer(&self) -> Result<BaseConsumer, KafkaSetupError> {
        // Unique per consumer without a process-wide counter: std's RandomState gives every
        // instance fresh keys (random per thread, then incremented), hence a fresh hash.
        let unique = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        };
        let group = format!("tweetoscope-{}-{unique:016x}", std::process::id());
        Ok(self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?)
    }

    /// An idempotent producer that counts deliveries and failures.
    pub fn producer(&self) -> Result<CountingProducer, KafkaSetupError> {
        let stats = Arc::new(DeliveryStats::default());
        let producer: ThreadedProducer<CountingContext> = self
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.max.bytes", "10000000")
            .create_with_context(CountingContext { stats: stats.clone() })?;
        Ok(CountingProducer { producer, stats })
    }
}

/// Creates the topics that do not exist yet, with `partitions` partitions each (replication
/// 1: the development broker has one node). Topics are always created explicitly; the
/// pipeline never relies on auto-creation.
pub fn ensure_topics(config: &KafkaConfig, names: &[&str], partitions: i32) -> Result<(), KafkaSetupError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_executor::block_on(admin.create_topics(&topics, &options))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaSetupError::Invalid(format!("creating topic {name}: {code}")));
            }
        }
    }
    // Wait until the metadata shows every partition (creation is asynchronous).
    let consumer = config.consumer()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for name in names {
        loop {
            match partitions_of(&consumer, name, Duration::from_secs(5)) {
                Ok(p) if p.len() as i32 >= partitions => break,
                _ if std::time::Instant::now() > deadline => return Err(KafkaSetupError::NoSuchTopic(name.to_string())),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    Ok(())
}

/// Reads a whole topic from its beginning to the end offsets seen now: (key, value) pairs.
/// Bounded: stops at those offsets, or fails after `timeout`.
pub fn read_topic(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<(Option<Vec<u8>>, Vec<u8>)>, KafkaSetupError> {
    use rdkafka::message::Message;
    let consumer = config.consumer()?;
    let mut list = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for p in partitions_of(&consumer, topic, timeout)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&list)?;
    let deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaSetupError::Invalid(format!("reading {topic} timed out")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = message?;
        if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
            ends.remove(&m.partition());
        }
        out.push((m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec()));
    }
    Ok(out)
}

/// The latest model of each window in the `models` topic (warm start). Unreadable records
/// are skipped with a warning: a bad model must not prevent the pipeline from starting.
pub fn read_latest_models(config: &KafkaConfig) -> Result<Vec<crate::records::Model>, KafkaSetupError> {
    let mut latest: std::collections::BTreeMap<u64, crate::records::Model> = std::collections::BTreeMap::new();
    for (_, value) in read_topic(config, &config.topics.models, Duration::from_secs(60))? {
        match crate::records::json::parse_model(&String::from_utf8_lossy(&value)) {
            Ok(m) => {
                if latest.get(&m.t_obs).is_none_or(|old| old.version <= m.version) {
                    latest.insert(m.t_obs, m);
                }
            }
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable model record"),
        }
    }
    Ok(latest.into_values().collect())
}

/// The partitions of a topic, sorted.
pub fn partitions_of(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaSetupError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(KafkaSetupError::NoSuchTopic(topic.to_owned()));
    }
    Ok(ids)
}

/// Delivery counters of a producer.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Messages acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Messages the broker did not acknowledge (after librdkafka's retries).
    pub failed: AtomicU64,
}

/// Counts delivery reports.
pub struct CountingContext {
    stats: Arc<DeliveryStats>,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                crate::telemetry::deliveries(1, 0);
                self.stats.delivered.fetch_add(1, Ordering::Relaxed)
            }
            Err((e, _)) => {
                crate::telemetry::deliveries(0, 1);
                // One line for the first failure, not one per message (a missing topic failed
                // every message of a replay: 97,000 lines); the count is reported at the end.
                let before = self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if before == 0 {
                    tracing::error!(error = %e, "kafka delivery failed (further failures are counted, not logged)");
                } else {
                    tracing::debug!(error = %e, "kafka delivery failed");
                }
                before
            }
        };
    }
}

/// A producer and its delivery counters.
pub struct CountingProducer {
    producer: ThreadedProducer<CountingContext>,
    /// Delivery counters, shared with the caller.
    pub stats: Arc<DeliveryStats>,
}

impl CountingProducer {
    /// Queues a message, waiting while librdkafka's queue is full. Errors other than a full
    /// queue are counted as failed deliveries and returned.
    pub fn send(&self, topic: &str, key: Option<&str>, payload: &str) -> Result<(), KafkaError> {
        let mut record = BaseRecord::<str, str>::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    /// Waits until every queued message is delivered or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Messages still queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = KafkaConfig {
            sasl_password: Some(Secret("hunter2".into())),
            ssl_key_password: Some(Secret("s3cret".into())),
            ..KafkaConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn sasl_settings_are_validated() {
        let mut c = KafkaConfig { security_protocol: "sasl_ssl".into(), ..KafkaConfig::default() };
        assert!(c.validate().is_err());
        c.sasl_mechanism = Some("SCRAM-SHA-512".into());
        c.sasl_username = Some("u".into());
        assert!(c.validate().is_err(), "password missing");
        c.sasl_password = Some(Secret("p".into()));
        assert!(c.validate().is_ok());
        c.security_protocol = "carrier-pigeon".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn unknown_kafka_keys_are_rejected() {
        assert!(toml::from_str::<KafkaConfig>("brokerz = \"x\"").is_err());
        let c: KafkaConfig = toml::from_str("brokers = \"h:1\"\n[topics]\ntweets = \"t\"\n[extra]\n\"fetch.min.bytes\" = \"1\"").unwrap();
        assert_eq!(c.topics.tweets, "t");
        assert_eq!(c.client_config().get("fetch.min.bytes"), Some("1"));
    }
}
