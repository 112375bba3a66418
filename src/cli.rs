//! The command line: `tweetoscope [SUBCOMMAND]`, parsed with clap.
//!
//! Timely's own flags (`-w/--threads`, `-n/--processes`, `-p/--process`, `-h/--hostfile`)
//! are accepted by every command that runs the dataflow; `-h` is the hostfile as in timely,
//! so help is `--help` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::DataflowConfig;
use crate::pipeline::Cluster;

/// The embedded dataflow configuration, compiled in so that `tweetoscope` runs from anywhere.
pub const EMBEDDED_CONFIG: &str = include_str!("../dataflows/embedded.toml");

/// Real-time tweet popularity prediction: marked Hawkes process + random forest, on timely
/// dataflow. With no subcommand, replays the bundled real sample (80 SEISMIC cascades) in
/// one process and prints the accuracy per observation window.
#[derive(Debug, Parser)]
#[command(name = "tweetoscope", version, disable_help_flag = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help, global = true)]
    pub help: Option<bool>,
    /// Options of the embedded default run.
    #[command(flatten)]
    pub run: RunOptions,
    /// The command (default: the embedded replay).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay recorded cascades (SEISMIC folder or file, or course CSV + index) through the
    /// whole pipeline and print the accuracy per window.
    Run {
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index).
        #[arg(long)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Run options.
        #[command(flatten)]
        run: RunOptions,
    },
    /// Replay a dataset onto the `tweets` topic (course JSON, key = cascade id), paced or as
    /// fast as possible; exits non-zero if any message was not delivered.
    Generate {
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index).
        #[arg(long)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Time acceleration: event seconds per wall second (course: 500), or `max`.
        #[arg(long, default_value = "500")]
        speed: String,
        /// Number of sources stamped on the messages.
        #[arg(long, default_value_t = 1)]
        sources: u64,
        /// Dataflow configuration TOML (its [input] table places course-layout cascades on
        /// the timeline; its [kafka] table names the broker and topics).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Run the pipeline on the `tweets` topic and produce every output topic, until SIGINT or
    /// SIGTERM; then drain, flush the producers and print the summary. With
    /// `--checkpoint-dir`, it checkpoints, resumes after a crash, and produces every output
    /// exactly once (Kafka transactions; read them with isolation.level=read_committed).
    Live {
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
        /// Run options.
        #[command(flatten)]
        run: RunOptions,
        /// Recovery options.
        #[command(flatten)]
        recovery: RecoveryOptions,
    },
    /// Replay the `tweets` topic from its beginning to the end offsets seen at start, as fast
    /// as possible, and report the accuracy per window (as `run`).
    Backtest {
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
        /// Run options.
        #[command(flatten)]
        run: RunOptions,
    },
    /// Simulate cascades from the marked Hawkes model into DIR (course layout:
    /// cascades-data.csv, cascades-index.csv, plus truth.csv with each cascade's p, β, n*).
    Simulate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of cascades.
        #[arg(long, default_value_t = 1000)]
        cascades: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Match final sizes to this course index CSV (e.g. the course's news-index.csv).
        #[arg(long)]
        match_sizes: Option<PathBuf>,
        /// Branching factor used with --match-sizes.
        #[arg(long, default_value_t = 0.2)]
        n_star: f64,
        /// Drop events after this many seconds (default 10 days).
        #[arg(long, default_value_t = 864_000.0)]
        horizon: f64,
        /// At most this many events per cascade.
        #[arg(long, default_value_t = 100_000)]
        max_events: usize,
        /// Dataflow configuration TOML (its [hawkes] table gives marks and prior).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Measure end-to-end latency through Kafka: generate DATASET paced at --speed onto the
    /// `tweets` topic while a `tweetoscope live` process (started separately, same topics)
    /// runs, and time each prediction record (`cascade_properties` parameters, `alerts`) from
    /// its window's close in event time to its arrival on the topic. Use fresh topics (a new
    /// --topic-prefix): they are read from the beginning. Prints p50/p90/p99 per topic.
    Latency {
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index).
        #[arg(long)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Time acceleration: event seconds per wall second.
        #[arg(long, default_value_t = 500.0)]
        speed: f64,
        /// Only generate the first S seconds of event time (default: everything).
        #[arg(long, value_name = "S")]
        until: Option<u64>,
        /// After the last event, wait at most this many seconds for the last predictions.
        #[arg(long, default_value_t = 10.0)]
        drain: f64,
        /// Dataflow configuration TOML (its [input] gives the cascades' start times; use the
        /// one the pipeline runs with).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Create the input, output and dead-letter topics that do not exist yet.
    Topics {
        /// Partitions per topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Dataflow configuration TOML (its [kafka] table names the broker, credentials and
        /// topics; default: the embedded one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Kubernetes entrypoint: render this StatefulSet pod's timely hostfile (process index
    /// from its ordinal, peers by their stable DNS names), then exec the command after `--`
    /// (`live …`) with `-n N -p I -h FILE`. See k8s/README.md.
    Hostfile(crate::k8s::HostfileArgs),
    /// Fit the Hawkes model to every cascade at one observation time and print one JSON line
    /// per cascade: {"cascade","n","p","beta","n_star","G1","N_pred","objective"}.
    Fit {
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index).
        #[arg(long)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Observation time T (s): events with t ≤ T are used.
        #[arg(long = "t-obs")]
        t_obs: f64,
        /// Dataflow configuration TOML (its [hawkes] table is used).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The bundled sample replayed by default (relative to the project root).
pub const BUNDLED_SAMPLE: &str = "data/seismic-tideh100/raw/training";

/// Where the HTTP server binds by default: loopback only.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9464";

/// Options of every command that runs the dataflow.
#[derive(Debug, Clone, Args, Default)]
pub struct RunOptions {
    /// Dataflow configuration TOML (default: dataflows/embedded.toml, compiled in).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write every output topic as `<DIR>/<topic>.jsonl`, in a deterministic order.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the per-window summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// After the run, write DIR/report.md and SVG plots (accuracy per window and model) from
    /// the outputs of --out, or of DIR/outputs when --out is not given.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// With --report on simulated data: the `truth.csv` written by `tweetoscope simulate`,
    /// for parameter recovery (estimated vs true p, β, n*).
    #[arg(long, value_name = "FILE", requires = "report")]
    pub truth: Option<PathBuf>,
    /// Replay at this multiple of real time instead of as fast as possible.
    #[arg(long)]
    pub pace: Option<f64>,
    /// Serve /metrics, the live page (/) and /api/state here; `off` disables. If the default
    /// address is taken (another process on this host), the run goes on without it.
    #[arg(long, default_value = DEFAULT_HTTP_ADDR)]
    pub metrics_addr: String,
    /// Keep serving the page and metrics after a replay ends, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Push every popular-cascade alert (prediction above the alert threshold) to this
    /// Alertmanager, `http://HOST:PORT` (API v2): one `PopularCascade` alert per cascade and
    /// window, from a background queue that never blocks the dataflow. Off when absent.
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// Worker threads per process (timely's -w).
    #[arg(short = 'w', long = "threads", default_value_t = 1)]
    pub threads: usize,
    /// Number of processes (timely's -n).
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// Index of this process, 0-based (timely's -p).
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// Hostfile: one `host:port` per line, in process order (timely's -h).
    #[arg(short = 'h', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
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
        config: Option<&Path>,
        more: impl FnOnce(&mut DataflowConfig),
    ) -> Result<DataflowConfig, crate::config::ConfigError> {
        let mut c = match config {
            Some(path) => DataflowConfig::load_layer(path)?,
            None => DataflowConfig::parse_layer(EMBEDDED_CONFIG)?,
        };
        self.apply(&mut c);
        more(&mut c);
        c.finish_kafka()?;
        Ok(c)
    }
}

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file named on the command line could not be read.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
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
        Ok(Cluster { threads: self.threads, processes: self.processes, process: self.process, addresses })
    }

    /// Starts the HTTP server as `--metrics-addr` says (None when off, or when the default
    /// address is already taken).
    pub fn http(&self) -> Result<Option<crate::http::HttpServer>, std::io::Error> {
        if self.metrics_addr == "off" {
            return Ok(None);
        }
        match crate::http::HttpServer::start(&self.metrics_addr) {
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
            None => DataflowConfig::parse(EMBEDDED_CONFIG),
        }
    }
}

/// Finds a bundled file: as given (relative to the current directory), else under
/// `$TWEETOSCOPE_HOME`, else next to the executable's project, else in the source tree the
/// binary was built from. This is what lets `tweetoscope` run with no arguments anywhere.
pub fn resolve_bundled(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_owned();
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("TWEETOSCOPE_HOME") {
        roots.push(home.into());
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/tweetoscope → the project root is two folders up.
        roots.extend(exe.ancestors().skip(1).take(3).map(Path::to_owned));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots.into_iter().map(|r| r.join(path)).find(|p| p.exists()).unwrap_or_else(|| path.to_owned())
}

/// Shared ownership of a dataset, as the pipeline takes it.
pub type SharedDataset = Arc<crate::io::files::Dataset>;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timely_flags_parse_and_dash_h_is_the_hostfile() {
        let cli = Cli::try_parse_from(["tweetoscope", "run", "--input", "x", "-w", "2", "-n", "2", "-p", "1", "-h", "hosts"]).unwrap();
        let Some(Command::Run { run, .. }) = cli.command else { panic!("run expected") };
        assert_eq!((run.threads, run.processes, run.process), (2, 2, 1));
        assert_eq!(run.hostfile, Some(PathBuf::from("hosts")));
    }

    #[test]
    fn flags_override_the_environment_and_the_file_and_validation_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let (config, password) = (dir.path().join("c.toml"), dir.path().join("pw"));
        std::fs::write(&password, "from-flag\n").unwrap();
        // sasl_ssl with no password in the file: valid only once a later layer gives one.
        std::fs::write(&config, "[kafka]\nbrokers = \"file:1\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password = \"from-file-layer\"\n").unwrap();
        let cli = Cli::try_parse_from(["tweetoscope", "topics", "--config", config.to_str().unwrap(), "--brokers", "flag:1", "--sasl-password-file", password.to_str().unwrap()]).unwrap();
        let Some(Command::Topics { config, kafka, .. }) = cli.command else { panic!("topics expected") };
        let c = kafka.load(config.as_deref(), |_| {}).unwrap();
        assert_eq!(c.kafka.brokers, "flag:1");
        assert_eq!(c.kafka.sasl_password.as_ref().map(|p| p.0.as_str()), Some("from-flag"));
    }

    #[test]
    fn no_arguments_is_the_embedded_default() {
        let cli = Cli::try_parse_from(["tweetoscope"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.run.load_config().is_ok());
    }
}
