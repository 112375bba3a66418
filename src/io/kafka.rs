//! Kafka clients: configuration (passed through to librdkafka, secrets redacted), a
//! producer that counts deliveries, and partition/offset look-ups for the source.
//!
//! Settings are layered: the dataflow config's `[kafka]` table, then the environment
//! ([`ENV_VARS`]: brokers, protocol, credentials — so that secrets need not live in config
//! files), then the command line's flags, then ONE check ([`KafkaConfig::finish`]) that also
//! reads `sasl_password_file` (a Kubernetes Secret mounted as a file). Secrets are [`Secret`]s:
//! never in `Debug` output, logs or errors.
//!
//! TLS and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) are librdkafka's own, built against
//! OpenSSL (the `ssl` feature of rdkafka, see Cargo.toml). [`KafkaConfig::check_connection`]
//! connects once before a command starts, so that a wrong password, an untrusted CA or a wrong
//! protocol ends the command within seconds with one line that names the fix
//! ([`ConnectFailure`]) instead of librdkafka retrying forever.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
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
    /// `plaintext`, `ssl` (TLS), `sasl_plaintext` or `sasl_ssl` (TLS + SASL: what managed
    /// clusters use).
    pub security_protocol: String,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) when SASL is used.
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password. Better not in a config file (config files end up in ConfigMaps and
    /// repositories): use `sasl_password_file` or `TWEETOSCOPE_KAFKA_SASL_PASSWORD`.
    pub sasl_password: Option<Secret>,
    /// A file holding the SASL password (surrounding whitespace and the trailing newline are
    /// ignored): the Kubernetes way, a Secret mounted as a read-only volume. Read once, at
    /// start. Give either this or `sasl_password`, not both.
    pub sasl_password_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the brokers' certificates; without it, the system's
    /// CAs (enough for clusters with publicly signed certificates).
    pub ssl_ca_location: Option<String>,
    /// Client certificate file (PEM) for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// Client key file (PEM) for mutual TLS.
    pub ssl_key_location: Option<String>,
    /// Password of the client key.
    pub ssl_key_password: Option<Secret>,
    /// Any other librdkafka property, passed through as is.
    pub extra: BTreeMap<String, String>,
    /// Topic names.
    pub topics: TopicNames,
    /// Source behaviour.
    pub source: SourceConfig,
    /// Sink behaviour: batching of the output producers.
    pub sink: SinkConfig,
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
            sasl_password_file: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            extra: BTreeMap::new(),
            topics: TopicNames::default(),
            source: SourceConfig::default(),
            sink: SinkConfig::default(),
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

    /// The topics the pipeline produces to: all but `tweets` and `progress`.
    pub fn produced(&self) -> [&str; 7] {
        let [_tweets, produced @ ..] = self.all();
        produced
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
    /// Most messages one activation of the source takes from its prefetch thread (the
    /// thread polls and decodes them beforehand, at most ~32 k ahead).
    pub poll_batch: usize,
    /// Most events a worker's source may have read that the dataflow has not completed:
    /// beyond it the source pauses until the dataflow catches up, and the backlog stays in
    /// Kafka (bounded memory behind a fast producer or on a long backtest). 0: no bound.
    pub max_in_flight: u64,
    /// Most kilobytes of messages librdkafka fetches ahead of the source, per consumer
    /// (librdkafka's `queued.max.messages.kbytes`): the other bound on read-ahead memory.
    pub prefetch_kbytes: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            lateness: 0,
            max_ahead: 365 * 86_400,
            max_message_bytes: 64 * 1024,
            idle_timeout_ms: 2000,
            poll_batch: 20_000,
            max_in_flight: 200_000,
            prefetch_kbytes: 16_384,
        }
    }
}

/// How the output producers batch (`[kafka.sink]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// At-least-once output (and `generate`): how long (ms) the producer waits to fill a
    /// batch before sending (librdkafka's `linger.ms`). Every millisecond here is a millisecond of latency; 0
    /// sends at once, in more, smaller requests.
    pub linger_ms: u64,
    /// Exactly-once output: the least wall time (ms) from the end of one transaction's
    /// commit to the start of the next. The records that arrive meanwhile go out together
    /// in the next transaction. 0: start as soon as the last commit is done (the commit's
    /// own duration is then the batching). The broker finishes a commit in the background,
    /// and a transaction that starts before it has finished is refused and retried by
    /// librdkafka 20 ms later, so a few milliseconds of pause can cost less than none.
    pub commit_interval_ms: u64,
    /// Exactly-once output: most records in one transaction (a larger backlog is split).
    pub max_transaction_records: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { linger_ms: 5, commit_interval_ms: 10, max_transaction_records: 200_000 }
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
    /// The source's prefetch thread could not be started.
    #[error("kafka source: cannot start its prefetch thread: {0}")]
    Thread(String),
    /// The password file could not be read.
    #[error("kafka config: cannot read sasl_password_file {path}: {source}")]
    SecretFile {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The brokers refused this client for a reason that retrying cannot fix.
    #[error("kafka: cannot connect to {brokers}: {failure} (librdkafka: {detail})")]
    Connect {
        /// The bootstrap servers tried.
        brokers: String,
        /// What kind of failure it was.
        failure: ConnectFailure,
        /// What librdkafka reported.
        detail: String,
    },
    /// No broker answered in time.
    #[error("kafka: no broker answered at {brokers} within {seconds} s{detail}: check `brokers` (--brokers, TWEETOSCOPE_KAFKA_BROKERS) and that the cluster is up")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// How long it waited (s).
        seconds: u64,
        /// What librdkafka reported.
        detail: String,
    },
}

/// Why the brokers refused a connection, each with the fix (one line, for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// SASL said no: wrong password or unknown user (brokers do not say which).
    Authentication {
        /// The SASL user name.
        user: String,
        /// The SASL mechanism.
        mechanism: String,
    },
    /// The listener does not enable this SASL mechanism.
    Mechanism {
        /// The SASL mechanism.
        mechanism: String,
    },
    /// The broker's certificate does not chain to a trusted CA.
    UntrustedCertificate {
        /// The CA file used, if any.
        ca: Option<String>,
    },
    /// The broker's certificate does not name the host the client connected to.
    HostName,
    /// The listener requires a client certificate (mutual TLS) and none, or an untrusted
    /// one, was sent.
    ClientCertificate {
        /// Whether a client certificate was sent.
        sent: bool,
    },
    /// A plaintext (or SASL_PLAINTEXT) client connected to a TLS listener.
    PlaintextToTls,
    /// A TLS client connected to a plaintext listener.
    TlsToPlaintext,
    /// The listener expects SASL and the client did not authenticate (or the reverse).
    SaslMismatch,
    /// Another TLS failure.
    Tls,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Authentication { user, mechanism } => write!(
                f,
                "SASL authentication failed for user {user:?} ({mechanism}): wrong password or unknown user; fix: check sasl_username and the password (TWEETOSCOPE_KAFKA_SASL_PASSWORD or sasl_password_file)"
            ),
            Self::Mechanism { mechanism } => write!(
                f,
                "the listener does not enable SASL mechanism {mechanism}; fix: set sasl_mechanism to one the cluster enables (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            ),
            Self::UntrustedCertificate { ca: Some(ca) } => write!(
                f,
                "the broker's TLS certificate is not signed by the CA in ssl_ca_location ({ca}); fix: point ssl_ca_location at the cluster's CA certificate"
            ),
            Self::UntrustedCertificate { ca: None } => write!(
                f,
                "the broker's TLS certificate is not signed by a CA this system trusts; fix: set ssl_ca_location to the cluster's CA certificate"
            ),
            Self::HostName => write!(
                f,
                "the broker's TLS certificate is not valid for the host name in `brokers`; fix: connect with a name the certificate lists (its subjectAltName), not another name or IP for the same host"
            ),
            Self::ClientCertificate { sent: false } => write!(
                f,
                "the listener requires a client certificate (mutual TLS); fix: set ssl_certificate_location and ssl_key_location"
            ),
            Self::ClientCertificate { sent: true } => write!(
                f,
                "the listener rejected the client certificate; fix: use a certificate (ssl_certificate_location, ssl_key_location) signed by a CA the brokers trust"
            ),
            Self::PlaintextToTls => write!(
                f,
                "the listener speaks TLS but security_protocol is plaintext or sasl_plaintext; fix: set security_protocol = \"sasl_ssl\" (or \"ssl\") and ssl_ca_location"
            ),
            Self::TlsToPlaintext => write!(
                f,
                "the listener does not speak TLS; fix: use the cluster's TLS port, or security_protocol = \"plaintext\" / \"sasl_plaintext\""
            ),
            Self::SaslMismatch => write!(
                f,
                "the listener and the client disagree on SASL; fix: set security_protocol to the listener's (sasl_ssl with sasl_mechanism and credentials, or ssl)"
            ),
            Self::Tls => write!(
                f,
                "the TLS handshake failed; fix: check ssl_ca_location, ssl_certificate_location and ssl_key_location, and that `brokers` names the TLS port"
            ),
        }
    }
}

/// The environment variables that override the config file (and that flags override). Empty
/// values count as unset.
pub const ENV_VARS: [&str; 7] = [
    "TWEETOSCOPE_KAFKA_BROKERS",
    "TWEETOSCOPE_KAFKA_SECURITY_PROTOCOL",
    "TWEETOSCOPE_KAFKA_SASL_MECHANISM",
    "TWEETOSCOPE_KAFKA_SASL_USERNAME",
    "TWEETOSCOPE_KAFKA_SASL_PASSWORD",
    "TWEETOSCOPE_KAFKA_SASL_PASSWORD_FILE",
    "TWEETOSCOPE_KAFKA_SSL_CA_LOCATION",
];

/// The SASL mechanisms this build supports (librdkafka's built-in ones; GSSAPI needs Cyrus
/// SASL and OAUTHBEARER a token provider, neither built in).
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl KafkaConfig {
    /// Applies the environment layer (over the config file's values).
    pub fn apply_env(&mut self) {
        self.apply_env_from(|name| std::env::var(name).ok());
    }

    /// Applies the environment layer from a lookup function (tests pass a map). A password
    /// given here replaces both of the file's password settings.
    pub fn apply_env_from(&mut self, get: impl Fn(&str) -> Option<String>) {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let [brokers, protocol, mechanism, username, password, password_file, ca] = ENV_VARS;
        if let Some(v) = get(brokers) {
            self.brokers = v;
        }
        if let Some(v) = get(protocol) {
            self.security_protocol = v;
        }
        if let Some(v) = get(mechanism) {
            self.sasl_mechanism = Some(v);
        }
        if let Some(v) = get(username) {
            self.sasl_username = Some(v);
        }
        let (password, password_file) = (get(password), get(password_file));
        if password.is_some() || password_file.is_some() {
            self.sasl_password = password.map(Secret);
            self.sasl_password_file = password_file.map(PathBuf::from);
        }
        if let Some(v) = get(ca) {
            self.ssl_ca_location = Some(v);
        }
    }

    /// After every layer (file, environment, flags): reads `sasl_password_file`, then checks
    /// everything a client needs (structure, credentials, certificate files). The one
    /// validation of a Kafka command's settings.
    pub fn finish(&mut self) -> Result<(), KafkaSetupError> {
        self.read_secret_files()?;
        self.validate()?;
        self.validate_connection_settings()
    }

    /// Reads `sasl_password_file` into `sasl_password` (once; the path is then cleared).
    pub fn read_secret_files(&mut self) -> Result<(), KafkaSetupError> {
        let Some(path) = self.sasl_password_file.take() else { return Ok(()) };
        if self.sasl_password.is_some() {
            return Err(KafkaSetupError::Invalid(
                "both sasl_password and sasl_password_file are set (in one layer: the file or the environment); keep one".into(),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| KafkaSetupError::SecretFile { path: path.clone(), source })?;
        let password = text.trim();
        if password.is_empty() {
            return Err(KafkaSetupError::Invalid(format!("sasl_password_file {} is empty", path.display())));
        }
        self.sasl_password = Some(Secret(password.to_owned()));
        Ok(())
    }

    /// Checks the settings without contacting a broker and without credentials (every
    /// command checks this; the Kafka commands then [`KafkaConfig::finish`]).
    pub fn validate(&self) -> Result<(), KafkaSetupError> {
        let invalid = |m: &str| Err(KafkaSetupError::Invalid(m.to_owned()));
        if self.brokers.trim().is_empty() {
            return invalid("brokers is empty");
        }
        let protocol = self.security_protocol.to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return invalid("security_protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl");
        }
        if let Some(m) = &self.sasl_mechanism {
            if !SASL_MECHANISMS.iter().any(|k| k.eq_ignore_ascii_case(m)) {
                return Err(KafkaSetupError::Invalid(format!(
                    "sasl_mechanism {m:?} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )));
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return invalid("ssl_certificate_location and ssl_key_location go together");
        }
        if self.source.max_message_bytes == 0 || self.source.poll_batch == 0 {
            return invalid("source.max_message_bytes and source.poll_batch must be ≥ 1");
        }
        if self.sink.max_transaction_records == 0 {
            return invalid("sink.max_transaction_records must be ≥ 1");
        }
        if self.sink.linger_ms > 900_000 || self.sink.commit_interval_ms > 900_000 {
            return invalid("sink.linger_ms and sink.commit_interval_ms must be ≤ 900000 (15 minutes)");
        }
        Ok(())
    }

    /// What a client needs to connect: SASL credentials when SASL is on, TLS files that
    /// exist, and no credentials or certificates that the protocol would silently ignore.
    pub fn validate_connection_settings(&self) -> Result<(), KafkaSetupError> {
        let invalid = |m: String| Err(KafkaSetupError::Invalid(m));
        let protocol = self.security_protocol.to_ascii_lowercase();
        let (sasl, tls) = (protocol.starts_with("sasl"), protocol.ends_with("ssl"));
        let password = self.sasl_password.as_ref().is_some_and(|p| !p.0.is_empty()) || self.sasl_password_file.is_some();
        if sasl {
            if self.sasl_mechanism.is_none() {
                return invalid(format!(
                    "security_protocol = {protocol:?} needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                ));
            }
            if self.sasl_username.is_none() || !password {
                return invalid(format!(
                    "security_protocol = {protocol:?} needs sasl_username and a password: sasl_password_file, or TWEETOSCOPE_KAFKA_SASL_PASSWORD (or _FILE)"
                ));
            }
        } else if self.sasl_username.is_some() || password {
            return invalid(format!(
                "SASL credentials are set but security_protocol = {protocol:?} would not send them: use sasl_ssl"
            ));
        }
        let files = [
            ("ssl_ca_location", &self.ssl_ca_location),
            ("ssl_certificate_location", &self.ssl_certificate_location),
            ("ssl_key_location", &self.ssl_key_location),
        ];
        for (key, value) in files {
            let Some(path) = value else { continue };
            if !tls {
                return invalid(format!(
                    "{key} is set but security_protocol = {protocol:?} does not use TLS: use ssl or sasl_ssl"
                ));
            }
            if let Err(e) = std::fs::metadata(path) {
                return invalid(format!("{key} {path}: {e}"));
            }
        }
        Ok(())
    }

    /// Connects to the brokers once (a metadata request) and fails fast, with the fix, when
    /// they refuse this client: wrong credentials, untrusted or misnamed certificates,
    /// mismatched protocols. Waits at most `timeout` for a broker that does not answer.
    pub fn check_connection(&self, timeout: Duration) -> Result<(), KafkaSetupError> {
        let (answered, seen) = self.probe(self.client_config(), timeout)?;
        if answered {
            return Ok(());
        }
        let Some((mut failure, detail)) = seen.iter().find_map(|m| self.classify(m).map(|f| (f, m.clone()))) else {
            let detail = seen.last().map(|m| format!(" (last: {m})")).unwrap_or_default();
            return Err(KafkaSetupError::Unreachable { brokers: self.brokers.clone(), seconds: timeout.as_secs(), detail });
        };
        if matches!(failure, ConnectFailure::UntrustedCertificate { .. }) {
            // OpenSSL says "certificate verify failed" both for an unknown CA and for a
            // certificate of another host: without the host name check, a trusted chain
            // gets past the handshake.
            let mut lenient = self.client_config();
            lenient.set("ssl.endpoint.identification.algorithm", "none");
            let (answered, seen) = self.probe(lenient, Duration::from_secs(5))?;
            let past_handshake =
                seen.iter().filter_map(|m| self.classify(m)).any(|f| !matches!(f, ConnectFailure::UntrustedCertificate { .. }));
            if answered || past_handshake {
                failure = ConnectFailure::HostName;
            }
        }
        Err(KafkaSetupError::Connect { brokers: self.brokers.clone(), failure, detail })
    }

    /// Connects with `config` until a metadata request is answered (true), a refusal that
    /// [`KafkaConfig::classify`] names is reported, or `timeout`; returns what librdkafka said.
    fn probe(&self, config: ClientConfig, timeout: Duration) -> Result<(bool, Vec<String>), KafkaSetupError> {
        let consumer: BaseConsumer<ProbeContext> = config
            .clone()
            // librdkafka reports a peer's disconnects at the info level (rdkafka's default
            // follows the global log filter, warn here).
            .set_log_level(RDKafkaLogLevel::Info)
            .set("group.id", "tweetoscope-connection-check")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .create_with_context(ProbeContext::default())?;
        let deadline = Instant::now() + timeout;
        loop {
            let answer = consumer.fetch_metadata(None, Duration::from_millis(500));
            // Serve the error and log events of the attempt.
            let _ = consumer.poll(Duration::from_millis(50));
            let seen = consumer.context().seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if answer.is_ok() {
                return Ok((true, seen));
            }
            if Instant::now() >= deadline || seen.iter().any(|m| self.classify(m).is_some()) {
                return Ok((false, seen));
            }
        }
    }

    /// Names the fix for one of librdkafka's error or log messages, when it is one that
    /// retrying cannot fix.
    fn classify(&self, message: &str) -> Option<ConnectFailure> {
        let m = message.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
        if has(&["unsupported sasl mechanism"]) {
            return Some(ConnectFailure::Mechanism { mechanism: self.sasl_mechanism.clone().unwrap_or_default() });
        }
        if has(&["authentication failed", "invalid credentials", "invalid username or password"]) {
            return Some(ConnectFailure::Authentication {
                user: self.sasl_username.clone().unwrap_or_default(),
                mechanism: self.sasl_mechanism.clone().unwrap_or_default(),
            });
        }
        if has(&["hostname mismatch", "host name mismatch", "ip address mismatch"]) {
            return Some(ConnectFailure::HostName);
        }
        if has(&[
            "certificate verify failed",
            "unable to get local issuer",
            "self-signed certificate",
            "self signed certificate",
            "broker certificate could not be verified",
        ]) {
            return Some(ConnectFailure::UntrustedCertificate { ca: self.ssl_ca_location.clone() });
        }
        if has(&["certificate required", "alert bad certificate", "alert unknown ca", "peer did not return a certificate"]) {
            return Some(ConnectFailure::ClientCertificate { sent: self.ssl_certificate_location.is_some() });
        }
        let tls = self.security_protocol.to_ascii_lowercase().ends_with("ssl");
        // A Kafka listener closes a plaintext client's first request (ApiVersions) only when
        // it expects a TLS handshake instead.
        if has(&["connecting to a ssl listener", "connecting to an ssl listener"])
            || (!tls && m.contains("closed by peer") && m.contains("state apiversion_query"))
        {
            return Some(ConnectFailure::PlaintextToTls);
        }
        if has(&[
            "connecting to a plaintext broker listener",
            "wrong version number",
            "packet length too long",
            "unknown protocol",
            "record layer failure",
            "http request",
        ]) {
            return Some(ConnectFailure::TlsToPlaintext);
        }
        if has(&["sasl handshake", "sasl_plaintext listener"]) {
            return Some(ConnectFailure::SaslMismatch);
        }
        if has(&["ssl handshake failed", "ssl routines"]) {
            return Some(ConnectFailure::Tls);
        }
        None
    }

    /// The transactional id of the exactly-once output producer.
    pub fn transactional_id(&self) -> String {
        self.transactional_id.clone().unwrap_or_else(|| format!("tweetoscope-{}", self.topics.progress))
    }

    /// The librdkafka configuration shared by consumers and producers.
    pub fn client_config(&self) -> ClientConfig {
        let mechanism = self.sasl_mechanism.as_ref().map(|m| m.to_ascii_uppercase());
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", &self.security_protocol);
        let optional = [
            ("sasl.mechanism", mechanism.as_deref()),
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

    /// The Kafka source's consumer: [`KafkaConfig::consumer`] tuned for throughput, unless
    /// `extra` sets the same properties.
    ///
    /// - `fetch.queue.backoff.ms`: librdkafka waits this long (default 1 s) before fetching
    ///   again for a partition whose local queue was over its thresholds. A source that
    ///   drains the queue in a few milliseconds then starves for the rest of the second:
    ///   a backtest of the 3.2 M-message NEWS topic (forest off) took 24.3 s with 1 s and
    ///   11.3 s with 5 ms, for the same CPU time (BENCHMARKS.md, issue 18).
    /// - `queued.max.messages.kbytes`: the read-ahead bound, `source.prefetch_kbytes`.
    pub fn source_consumer(&self) -> Result<BaseConsumer, KafkaSetupError> {
        let mut config = self.clone();
        let prefetch = self.source.prefetch_kbytes.max(1).to_string();
        for (key, value) in [("fetch.queue.backoff.ms", "5"), ("queued.max.messages.kbytes", prefetch.as_str())] {
            config.extra.entry(key.to_owned()).or_insert_with(|| value.to_owned());
        }
        config.consumer()
    }

    /// An idempotent producer that counts deliveries and failures.
    pub fn producer(&self) -> Result<CountingProducer, KafkaSetupError> {
        let stats = Arc::new(DeliveryStats::default());
        let producer: ThreadedProducer<CountingContext> = self
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", self.sink.linger_ms.to_string())
            .set("message.max.bytes", "10000000")
            .create_with_context(CountingContext { stats: stats.clone() })?;
        warm_up(producer.client(), self.topics.produced().into_iter());
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
    let topics: Vec<NewTopic<'_>> = names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
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

/// Deletes the topics `names` that exist (a missing one is not an error): what a backtest
/// or a benchmark on its own topic prefix leaves behind. Every partition costs the broker
/// memory and files for as long as it exists.
pub fn delete_topics(config: &KafkaConfig, names: &[&str]) -> Result<(), KafkaSetupError> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_executor::block_on(admin.delete_topics(names, &options))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(KafkaSetupError::Invalid(format!("deleting topic {name}: {code}"))),
        }
    }
    Ok(())
}

/// A message as read back: its key (if any) and its value.
pub type KeyedMessage = (Option<Vec<u8>>, Vec<u8>);

/// Reads a whole topic from its beginning to the end offsets seen now: (key, value) pairs.
/// Bounded: stops at those offsets, or fails after `timeout`.
pub fn read_topic(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<KeyedMessage>, KafkaSetupError> {
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

/// The latest models of each window in the `models` topic (the warm start of a live
/// pipeline). Unreadable records are skipped with a warning: a bad record must not prevent
/// the pipeline from starting.
pub fn read_latest_models(config: &KafkaConfig) -> Result<Vec<crate::records::Model>, KafkaSetupError> {
    let mut updates = Vec::new();
    for (_, value) in read_topic(config, &config.topics.models, Duration::from_secs(60))? {
        match crate::io::schema::ModelRecord::parse(&String::from_utf8_lossy(&value)) {
            Ok(m) => updates.push(m),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable model record"),
        }
    }
    Ok(crate::records::Model::latest_per_window(updates))
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

/// Collects what librdkafka reports while [`KafkaConfig::check_connection`] connects (its
/// errors, and its log lines down to the info level, where a peer's disconnects are), instead
/// of logging them: the check turns them into one line.
#[derive(Default)]
struct ProbeContext {
    seen: Mutex<Vec<String>>,
}

impl ProbeContext {
    fn record(&self, message: String) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 100 && !seen.contains(&message) {
            seen.push(message);
        }
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", "connection check: {fac} {message}");
        if (level as i32) <= (RDKafkaLogLevel::Info as i32) {
            self.record(format!("{fac}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "connection check: {error}: {reason}");
        self.record(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ProbeContext {}

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

/// Learns the leaders of `topics`' partitions before the first record is sent.
///
/// Why: a record for a topic the client has not seen waits for a metadata round trip, and
/// the first window closes of a live run then go out late (measured: a 100–250 ms stall of
/// the first predictions at 12 k events/s). A topic missing here is not an error: the
/// producer learns it on first use, as it would without this. The first failure ends the
/// warm-up: an unreachable broker then delays the start by one timeout, not one per topic.
pub fn warm_up<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>, topics: impl Iterator<Item = impl AsRef<str>>) {
    for topic in topics {
        if let Err(e) = client.fetch_metadata(Some(topic.as_ref()), Duration::from_secs(5)) {
            tracing::debug!(topic = topic.as_ref(), error = %e, "producer warm-up: no metadata; the rest is learnt on first use");
            return;
        }
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
            sasl_password_file: Some("/run/secrets/password".into()),
            ssl_key_password: Some(Secret("s3cret".into())),
            ..KafkaConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn the_produced_topics_are_all_but_the_input_and_progress() {
        let t = TopicNames::default().with_prefix("x_");
        let produced = t.produced();
        assert_eq!(produced.len(), 7);
        assert!(!produced.contains(&t.tweets.as_str()) && !produced.contains(&t.progress.as_str()), "{produced:?}");
        assert_eq!(&t.all()[1..], &produced[..]);
    }

    #[test]
    fn sink_settings_are_validated_and_unknown_keys_refused() {
        let parsed: KafkaConfig = toml::from_str("[sink]\ncommit_interval_ms = 25\n").unwrap();
        assert_eq!(parsed.sink, SinkConfig { commit_interval_ms: 25, ..SinkConfig::default() });
        assert!(parsed.validate().is_ok());
        let empty =
            KafkaConfig { sink: SinkConfig { max_transaction_records: 0, ..SinkConfig::default() }, ..KafkaConfig::default() };
        assert!(empty.validate().unwrap_err().to_string().contains("max_transaction_records"));
        let slow = KafkaConfig { sink: SinkConfig { linger_ms: 3_600_000, ..SinkConfig::default() }, ..KafkaConfig::default() };
        assert!(slow.validate().is_err());
        let typo = toml::from_str::<KafkaConfig>("[sink]\ncommit_intervall_ms = 25\n").unwrap_err().to_string();
        assert!(typo.contains("commit_intervall_ms"), "{typo}");
    }

    fn sasl(protocol: &str) -> KafkaConfig {
        KafkaConfig {
            security_protocol: protocol.into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("u".into()),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn sasl_settings_are_validated() {
        let mut c = KafkaConfig { security_protocol: "sasl_ssl".into(), ..KafkaConfig::default() };
        assert!(c.clone().finish().is_err());
        c.sasl_mechanism = Some("SCRAM-SHA-512".into());
        c.sasl_username = Some("u".into());
        let err = c.clone().finish().unwrap_err().to_string();
        assert!(err.contains("TWEETOSCOPE_KAFKA_SASL_PASSWORD"), "password missing: {err}");
        c.sasl_password = Some(Secret("p".into()));
        c.clone().finish().unwrap();
        c.sasl_mechanism = Some("GSSAPI".into());
        assert!(c.validate().is_err(), "not built in");
        c.sasl_mechanism = Some("scram-sha-256".into());
        assert_eq!(c.client_config().get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        c.security_protocol = "carrier-pigeon".into();
        assert!(c.validate().is_err());
        // credentials that plaintext would silently drop, certificates without TLS
        let plain = KafkaConfig { sasl_username: Some("u".into()), ..KafkaConfig::default() };
        assert!(plain.clone().finish().is_err());
        let plain = KafkaConfig { ssl_ca_location: Some("/etc/hostname".into()), ..KafkaConfig::default() };
        assert!(plain.clone().finish().unwrap_err().to_string().contains("does not use TLS"));
        let mut missing = sasl("sasl_ssl");
        missing.sasl_password = Some(Secret("p".into()));
        missing.ssl_ca_location = Some("/nonexistent/ca.crt".into());
        assert!(missing.finish().unwrap_err().to_string().contains("/nonexistent/ca.crt"));
    }

    #[test]
    fn the_password_can_come_from_a_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let mut c = sasl("sasl_ssl");
        c.sasl_password_file = Some(file.clone());
        c.finish().unwrap();
        assert_eq!(c.sasl_password, Some(Secret("s3cret-from-file".into())));
        assert_eq!(c.client_config().get("sasl.password"), Some("s3cret-from-file"));
        // both in one layer: ambiguous
        let mut both = sasl("sasl_ssl");
        both.sasl_password = Some(Secret("x".into()));
        both.sasl_password_file = Some(file.clone());
        assert!(both.finish().unwrap_err().to_string().contains("both"));
        // unreadable or empty: named, never quoted
        let mut gone = sasl("sasl_ssl");
        gone.sasl_password_file = Some(dir.path().join("nope"));
        assert!(gone.finish().unwrap_err().to_string().contains("nope"));
        std::fs::write(&file, "\n").unwrap();
        let mut empty = sasl("sasl_ssl");
        empty.sasl_password_file = Some(file);
        assert!(empty.finish().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn the_environment_overrides_the_file_and_a_later_password_replaces_both() {
        let env: BTreeMap<&str, &str> = [
            ("TWEETOSCOPE_KAFKA_BROKERS", "b:1"),
            ("TWEETOSCOPE_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("TWEETOSCOPE_KAFKA_SASL_PASSWORD_FILE", "/run/secrets/kafka/password"),
            ("TWEETOSCOPE_KAFKA_SASL_USERNAME", ""),
        ]
        .into();
        let mut c = sasl("plaintext");
        c.sasl_password = Some(Secret("from-file".into()));
        c.apply_env_from(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.brokers.as_str(), c.security_protocol.as_str()), ("b:1", "sasl_ssl"));
        assert_eq!(c.sasl_username.as_deref(), Some("u"), "an empty variable counts as unset");
        assert_eq!(c.sasl_password, None, "the environment's password file replaces the file's password");
        assert_eq!(c.sasl_password_file, Some(PathBuf::from("/run/secrets/kafka/password")));
    }

    #[test]
    fn refusals_are_classified_with_their_fix() {
        let c = KafkaConfig { ssl_ca_location: Some("/ca.crt".into()), ..sasl("sasl_ssl") };
        let cases = [
            ("Local: Authentication failure: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512", "wrong password or unknown user"),
            ("ssl handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified", "/ca.crt"),
            ("SSL handshake failed: error:0A000086:SSL routines::certificate verify failed (Hostname mismatch)", "host name"),
            ("SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate required", "ssl_certificate_location"),
            ("Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)", "sasl_ssl"),
            ("SSL handshake failed: error:0A00010B:SSL routines::wrong version number", "TLS port"),
            ("ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener? (after 2ms in state SSL_HANDSHAKE)", "TLS port"),
            ("Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 2ms in state APIVERSION_QUERY)", "ssl_key_location"),
        ];
        for (message, fix) in cases {
            let failure = c.classify(message).unwrap_or_else(|| panic!("unclassified: {message}"));
            assert!(failure.to_string().contains(fix), "{message} → {failure}");
            assert!(failure.to_string().contains("fix:"), "{failure}");
        }
        assert_eq!(c.classify("Connect to ipv4#127.0.0.1:1 failed: Connection refused"), None, "retryable");
        let plain = KafkaConfig::default();
        let closed = "127.0.0.1:9094/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 14ms in state APIVERSION_QUERY)";
        assert!(plain.classify(closed).unwrap().to_string().contains("sasl_ssl"));
        assert_eq!(c.classify(closed), None, "a TLS client: not a protocol mismatch");
    }

    #[test]
    fn unknown_kafka_keys_are_rejected() {
        assert!(toml::from_str::<KafkaConfig>("brokerz = \"x\"").is_err());
        let c: KafkaConfig =
            toml::from_str("brokers = \"h:1\"\n[topics]\ntweets = \"t\"\n[extra]\n\"fetch.min.bytes\" = \"1\"").unwrap();
        assert_eq!(c.topics.tweets, "t");
        assert_eq!(c.client_config().get("fetch.min.bytes"), Some("1"));
    }
}
