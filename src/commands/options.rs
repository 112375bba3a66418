//! Options shared by the commands that run the dataflow, connect to Kafka or checkpoint,
//! and what they turn into (the config, the cluster layout, the HTTP server).

use std::path::PathBuf;

use clap::Args;

use crate::config::DataflowConfig;
use crate::observe::http::HttpServer;
use crate::observe::live::LiveView;
use crate::pipeline::{Cluster, ClusterError};

/// The bundled sample replayed by default (relative to the project root).
pub const BUNDLED_SAMPLE: &str = "data/seismic-tideh100/raw/training";

/// Where the HTTP server binds by default: loopback only.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9464";

/// `--help` heading of the options every process of a cluster must get alike.
pub const CLUSTER_WIDE: &str = "Cluster-wide options (every process of a cluster must get the same; checked at start-up)";

/// `--help` heading of the options that may differ between the processes of a cluster.
pub const PER_PROCESS: &str = "Per-process options (may differ between the processes of a cluster)";

/// Options of every command that runs the dataflow.
#[derive(Debug, Clone, Args, Default)]
pub struct RunOptions {
    /// Dataflow configuration TOML (default: dataflows/embedded.toml, compiled in).
    #[arg(long, help_heading = CLUSTER_WIDE)]
    pub config: Option<PathBuf>,
    /// Write every output topic as `<DIR>/<topic>.jsonl`, in a deterministic order. In a
    /// cluster, process 0 writes the whole cluster's outputs; other processes ignore it.
    #[arg(long, help_heading = PER_PROCESS)]
    pub out: Option<PathBuf>,
    /// Write the per-window summary as JSON to this file (process 0 of a cluster).
    #[arg(long, help_heading = PER_PROCESS)]
    pub summary: Option<PathBuf>,
    /// After the run, write DIR/report.md and SVG plots (accuracy per window and model) from
    /// the outputs of --out, or of DIR/outputs when --out is not given (process 0 of a cluster).
    #[arg(long, value_name = "DIR", help_heading = PER_PROCESS)]
    pub report: Option<PathBuf>,
    /// With --report on simulated data: the `truth.csv` written by `tweetoscope simulate`,
    /// for parameter recovery (estimated vs true p, β, n*).
    #[arg(long, value_name = "FILE", requires = "report", help_heading = PER_PROCESS)]
    pub truth: Option<PathBuf>,
    /// Replay at this multiple of real time instead of as fast as possible.
    #[arg(long, help_heading = CLUSTER_WIDE)]
    pub pace: Option<f64>,
    /// Start from the models of an earlier run: its `models.jsonl` (written with --out), of
    /// any input; the run then keeps training online. A file of another version, feature set
    /// or window set is refused.
    #[arg(long, value_name = "FILE", help_heading = CLUSTER_WIDE)]
    pub models: Option<PathBuf>,
    /// Serve /metrics, the live page (/) and /api/state here; `off` disables. If the default
    /// address is taken (another process on this host), the run goes on without it.
    #[arg(long, default_value = DEFAULT_HTTP_ADDR, help_heading = PER_PROCESS)]
    pub metrics_addr: String,
    /// Keep serving the page and metrics after a replay ends, until Ctrl-C.
    #[arg(long, help_heading = PER_PROCESS)]
    pub serve: bool,
    /// Push every popular-cascade alert (prediction above the alert threshold) to this
    /// Alertmanager, `http://HOST:PORT` (API v2): one `PopularCascade` alert per cascade and
    /// window, from a background queue that never blocks the dataflow. Off when absent.
    #[arg(long, value_name = "URL", help_heading = PER_PROCESS)]
    pub alertmanager: Option<String>,
    /// Worker threads per process (timely's -w).
    #[arg(short = 'w', long = "threads", default_value_t = 1, help_heading = CLUSTER_WIDE)]
    pub threads: usize,
    /// Number of processes (timely's -n).
    #[arg(short = 'n', long = "processes", default_value_t = 1, help_heading = CLUSTER_WIDE)]
    pub processes: usize,
    /// Index of this process, 0-based (timely's -p).
    #[arg(short = 'p', long = "process", default_value_t = 0, help_heading = PER_PROCESS)]
    pub process: usize,
    /// Hostfile: one `host:port` per line, in process order (timely's -h). Each process
    /// listens on its own line and dials the others' (a process's own line may differ, e.g.
    /// `0.0.0.0:2101`).
    #[arg(short = 'h', long = "hostfile", help_heading = PER_PROCESS)]
    pub hostfile: Option<PathBuf>,
    /// With several processes: give up, naming the missing process and its address, when
    /// not every process has connected within SECS seconds [default: 60].
    #[arg(long, value_name = "SECS", help_heading = PER_PROCESS)]
    pub connect_timeout: Option<f64>,
}

/// Checkpoints and the end of a live run.
#[derive(Debug, Clone, Args, Default)]
pub struct RecoveryOptions {
    /// Checkpoint folder (shared by every process of the cluster); enables recovery and
    /// exactly-once output. Overrides the config's `[checkpoint] dir`.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Event-time seconds between checkpoints (overrides `[checkpoint] interval`).
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    /// Treat the input as ended once no message has arrived for this many seconds: open
    /// cascades then terminate with the size seen, as at the end of a backtest, and the run
    /// exits (for finite feeds, tests and catch-up runs).
    #[arg(long)]
    pub until_idle: Option<f64>,
}

impl RecoveryOptions {
    /// Applies these options to a config.
    pub fn apply(&self, config: &mut DataflowConfig) {
        if let Some(d) = &self.checkpoint_dir {
            config.checkpoint.dir = Some(d.clone());
        }
        if let Some(i) = self.checkpoint_interval {
            config.checkpoint.interval = i;
        }
    }
}

/// Kafka options shared by the Kafka commands (`topics`, `generate`, `backtest`, `live`,
/// `latency`). Settings are layered: the config's `[kafka]` table, then the environment
/// (`TWEETOSCOPE_KAFKA_*`, see `io::kafka::ENV_VARS`), then these flags, then one validation.
/// The password itself is never a flag (a command line is visible to every user of the
/// machine): `sasl_password_file`, `--sasl-password-file` or `TWEETOSCOPE_KAFKA_SASL_PASSWORD`.
#[derive(Debug, Clone, Args, Default)]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port[,…]` (else $TWEETOSCOPE_KAFKA_BROKERS, else the config's).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Prefix every topic name (e.g. one namespace per test or per environment).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl (TLS + SASL, what managed clusters use).
    #[arg(long, value_name = "PROTOCOL")]
    pub security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, value_name = "MECHANISM")]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, value_name = "USER")]
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (e.g. a mounted Kubernetes Secret). The password itself
    /// is never a flag: this, the config's sasl_password_file, or $TWEETOSCOPE_KAFKA_SASL_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub sasl_password_file: Option<PathBuf>,
    /// CA certificate (PEM) of the brokers' TLS certificates.
    #[arg(long, value_name = "FILE")]
    pub ssl_ca_location: Option<String>,
}

/// How long a Kafka command waits for a broker that does not answer at all before it fails
/// (a broker that refuses the client fails it at once: `KafkaConfig::check_connection`).
pub const KAFKA_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl KafkaOptions {
    /// Applies the environment, then these flags, to a config (no validation).
    pub fn apply(&self, config: &mut DataflowConfig) {
        let k = &mut config.kafka;
        k.apply_env();
        if let Some(b) = &self.brokers {
            k.brokers = b.clone();
        }
        if let Some(p) = &self.security_protocol {
            k.security_protocol = p.clone();
        }
        if let Some(m) = &self.sasl_mechanism {
            k.sasl_mechanism = Some(m.clone());
        }
        if let Some(u) = &self.sasl_username {
            k.sasl_username = Some(u.clone());
        }
        if let Some(f) = &self.sasl_password_file {
            k.sasl_password = None;
            k.sasl_password_file = Some(f.clone());
        }
        if let Some(ca) = &self.ssl_ca_location {
            k.ssl_ca_location = Some(ca.clone());
        }
        if let Some(p) = &self.topic_prefix {
            k.topics = k.topics.with_prefix(p);
        }
    }

    /// A Kafka command's settings: the config file (default: the embedded one), then the
    /// environment, then these flags, then `more` (the command's own flags), then ONE
    /// validation, which also reads the password file.
    pub fn load(
        &self,
        config: Option<&std::path::Path>,
        more: impl FnOnce(&mut DataflowConfig),
    ) -> Result<DataflowConfig, crate::config::ConfigError> {
        let mut c = match config {
            Some(path) => DataflowConfig::load_layer(path)?,
            None => DataflowConfig::parse_layer(super::EMBEDDED_CONFIG)?,
        };
        self.apply(&mut c);
        more(&mut c);
        c.finish_kafka()?;
        Ok(c)
    }

    /// [`KafkaOptions::load`], then one connection to the brokers, so that refused credentials
    /// or certificates end the command at once with the fix.
    pub fn connect(
        &self,
        config: Option<&std::path::Path>,
        more: impl FnOnce(&mut DataflowConfig),
    ) -> anyhow::Result<DataflowConfig> {
        let config = self.load(config, more)?;
        config.kafka.check_connection(KAFKA_CONNECT_TIMEOUT)?;
        Ok(config)
    }
}

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file named on the command line could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The cluster layout cannot run.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `--connect-timeout` is not a positive number of seconds.
    #[error("--connect-timeout must be a positive number of seconds (got {0})")]
    ConnectTimeout(f64),
}

impl RunOptions {
    /// Where the outputs go: --out, else DIR/outputs when --report DIR is given.
    pub fn out_dir(&self) -> Option<PathBuf> {
        self.out.clone().or_else(|| self.report.as_ref().map(|d| d.join("outputs")))
    }

    /// The cluster layout, reading the hostfile if any.
    pub fn cluster(&self) -> Result<Cluster, CliError> {
        let addresses = match &self.hostfile {
            None => Vec::new(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| CliError::Read { path: path.clone(), source })?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let cluster = Cluster::new(self.threads, self.processes, self.process, addresses)?;
        match self.connect_timeout {
            None => Ok(cluster),
            Some(s) if s.is_finite() && s > 0.0 => Ok(cluster.with_connect_timeout(std::time::Duration::from_secs_f64(s))),
            Some(s) => Err(CliError::ConnectTimeout(s)),
        }
    }

    /// Says which per-process options this process ignores: in a cluster, process 0 writes
    /// the outputs, the summary and the report of the whole cluster.
    pub fn note_ignored(&self) {
        if self.process == 0 {
            return;
        }
        let ignored: Vec<&str> = [("--out", self.out.is_some()), ("--summary", self.summary.is_some()), ("--report", self.report.is_some())]
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect();
        if !ignored.is_empty() {
            eprintln!("note: process {} ignores {}: process 0 writes them for the whole cluster", self.process, ignored.join(", "));
        }
    }

    /// Whether the job builds the live views: unless `--metrics-addr off` (every process of a
    /// cluster must agree: it is in the fingerprint).
    pub fn views(&self) -> bool {
        self.metrics_addr != "off"
    }

    /// Starts the HTTP server as `--metrics-addr` says, serving `live` (None when off, or
    /// when the default address is already taken).
    pub fn http(&self, live: &LiveView) -> Result<Option<HttpServer>, std::io::Error> {
        if self.metrics_addr == "off" {
            return Ok(None);
        }
        match HttpServer::start(&self.metrics_addr, live.clone()) {
            Ok(server) => {
                eprintln!("serving metrics and the live page on http://{}/", server.addr);
                Ok(Some(server))
            }
            Err(e) if self.metrics_addr == DEFAULT_HTTP_ADDR => {
                tracing::warn!(error = %e, "no HTTP server: the default address is taken");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The dataflow configuration: `--config`, else the embedded default.
    pub fn load_config(&self) -> Result<DataflowConfig, crate::config::ConfigError> {
        match &self.config {
            Some(path) => DataflowConfig::load(path),
            None => DataflowConfig::parse(super::EMBEDDED_CONFIG),
        }
    }
}

