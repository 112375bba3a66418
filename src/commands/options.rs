//! Options shared by the commands that run the dataflow, connect to Kafka or checkpoint,
//! what they turn into (the config, the cluster layout, the HTTP server), and the value
//! parsers that reject nonsense (`--pace 0`, `--speed NaN`) before anything starts.
//!
//! Each command flattens only the groups that apply to it: a replay of files takes
//! [`ReplayOptions`] (pace, serve), the replays and the backtest take [`ReportOptions`], the
//! live pipeline takes [`RecoveryOptions`]; an option of another group is a usage error.

use std::path::{Path, PathBuf};

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

/// A number > 0 and finite (`--pace`, `--speed`, `--until-idle`, …).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err(format!("{s:?} must be a finite number > 0")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// A number ≥ 0 and finite (`--drain`, `--t-obs`).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(_) => Err(format!("{s:?} must be a finite number ≥ 0")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// A branching factor: 0 < n* < 1 (a subcritical cascade ends).
pub fn branching(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
        Ok(_) => Err(format!("{s:?} must be between 0 and 1 (exclusive): at n* ≥ 1 cascades never end")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// A share strictly between 0 and 1 (`eval --warm-split`: both parts must hold cascades).
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
        Ok(_) => Err(format!("{s:?} must be between 0 and 1 (exclusive)")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// The generator's pace: event seconds per wall second, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed(pub Option<f64>);

/// `max`, or a number > 0 and finite.
pub fn speed(s: &str) -> Result<Speed, String> {
    if s.trim().eq_ignore_ascii_case("max") {
        return Ok(Speed(None));
    }
    positive(s).map(|x| Speed(Some(x))).map_err(|e| format!("{e}, or `max`"))
}

/// A count ≥ 1 (`--cascades`, `--partitions`, …).
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// Options of every command that runs the dataflow (`run`, the default, `live`, `backtest`).
#[derive(Debug, Clone, Args, Default)]
pub struct RunOptions {
    /// Dataflow configuration TOML (default: dataflows/embedded.toml, compiled in).
    #[arg(long, help_heading = CLUSTER_WIDE)]
    pub config: Option<PathBuf>,
    /// Write every output topic as `<DIR>/<topic>.jsonl`, in a deterministic order. In a
    /// cluster, process 0 writes the whole cluster's outputs; other processes ignore it.
    #[arg(long, value_name = "DIR", help_heading = PER_PROCESS)]
    pub out: Option<PathBuf>,
    /// Write the per-window summary as JSON to this file (process 0 of a cluster).
    #[arg(long, value_name = "FILE", help_heading = PER_PROCESS)]
    pub summary: Option<PathBuf>,
    /// Serve /metrics, the live page (/) and /api/state here; `off` disables. If the default
    /// address is taken (another process on this host), the run goes on without it.
    #[arg(long, default_value = DEFAULT_HTTP_ADDR, help_heading = PER_PROCESS)]
    pub metrics_addr: String,
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
    /// Hostfile: one `host:port` per line, in process order (timely's -h; here `-h` is help).
    /// Each process listens on its own line and dials the others' (a process's own line may
    /// differ, e.g. `0.0.0.0:2101`).
    #[arg(long = "hostfile", value_name = "FILE", help_heading = PER_PROCESS)]
    pub hostfile: Option<PathBuf>,
    /// With several processes: give up, naming the missing process and its address, when
    /// not every process has connected within SECS seconds [default: 60].
    #[arg(long, value_name = "SECS", value_parser = positive, allow_negative_numbers = true, help_heading = PER_PROCESS)]
    pub connect_timeout: Option<f64>,
}

/// Options of a replay of recorded files (`run` and the default).
#[derive(Debug, Clone, Args, Default)]
pub struct ReplayOptions {
    /// Replay at this multiple of real time (event seconds per wall second) instead of as
    /// fast as possible.
    #[arg(long, value_name = "F", value_parser = positive, allow_negative_numbers = true, help_heading = CLUSTER_WIDE)]
    pub pace: Option<f64>,
    /// Keep serving the page and metrics after the replay ends, until SIGINT (Ctrl-C) or
    /// SIGTERM.
    #[arg(long, help_heading = PER_PROCESS)]
    pub serve: bool,
    /// Start from the models of an earlier run: its `models.jsonl` (written with --out), of
    /// any input; the run then keeps training online. A file of another version, feature set
    /// or window set is refused.
    #[arg(long, value_name = "FILE", help_heading = CLUSTER_WIDE)]
    pub models: Option<PathBuf>,
}

/// The backtest report of a bounded run (`run`, the default, `backtest`).
#[derive(Debug, Clone, Args, Default)]
pub struct ReportOptions {
    /// After the run, write DIR/report.md and SVG plots (accuracy per window and model) from
    /// the outputs of --out, or of DIR/outputs when --out is not given (process 0 of a cluster).
    #[arg(long, value_name = "DIR", help_heading = PER_PROCESS)]
    pub report: Option<PathBuf>,
    /// With --report on simulated data: the `truth.csv` written by `tweetoscope simulate`,
    /// for parameter recovery (estimated vs true p, β, n*).
    #[arg(long, value_name = "FILE", requires = "report", help_heading = PER_PROCESS)]
    pub truth: Option<PathBuf>,
}

/// Checkpoints and the end of a live run.
#[derive(Debug, Clone, Args, Default)]
pub struct RecoveryOptions {
    /// Checkpoint folder (shared by every process of the cluster); enables recovery and
    /// exactly-once output. Overrides the config's `[checkpoint] dir`.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Event-time seconds between checkpoints (overrides `[checkpoint] interval`).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_interval: Option<u64>,
    /// Treat the input as ended once no message has arrived for this many seconds: open
    /// cascades then terminate with the size seen, as at the end of a backtest, and the run
    /// exits (for finite feeds, tests and catch-up runs).
    #[arg(long, value_name = "S", value_parser = positive, allow_negative_numbers = true)]
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
            None => DataflowConfig::parse_layer(super::EMBEDDED_CONFIG)?,
        };
        self.apply(&mut c);
        more(&mut c);
        c.finish_kafka()?;
        Ok(c)
    }

    /// [`KafkaOptions::load`], then one connection to the brokers, so that refused credentials
    /// or certificates end the command at once with the fix, then a check that `topics` (the
    /// command's, from the loaded config) exist: a missing one is one line saying to run
    /// `tweetoscope topics …`, where the producer used to log one error per message.
    pub fn connect(
        &self,
        config: Option<&Path>,
        more: impl FnOnce(&mut DataflowConfig),
        topics: impl FnOnce(&crate::io::kafka::TopicNames) -> Vec<String>,
    ) -> anyhow::Result<DataflowConfig> {
        let loaded = self.load(config, more)?;
        loaded.kafka.check_connection(KAFKA_CONNECT_TIMEOUT)?;
        super::kafka::require_topics(&loaded.kafka, &topics(&loaded.kafka.topics), &self.topics_command(config))?;
        Ok(loaded)
    }

    /// The `tweetoscope topics …` line that creates the topics these options name.
    pub fn topics_command(&self, config: Option<&Path>) -> String {
        let mut line = String::from("tweetoscope topics");
        if let Some(c) = config {
            line.push_str(&format!(" --config {}", c.display()));
        }
        if let Some(b) = &self.brokers {
            line.push_str(&format!(" --brokers {b}"));
        }
        if let Some(p) = &self.topic_prefix {
            line.push_str(&format!(" --topic-prefix {p}"));
        }
        line
    }
}

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file named on the command line could not be read.
    #[error("{path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The cluster layout cannot run.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// An output path cannot be written (checked before the run starts).
    #[error("{option} {path}: {why}")]
    Output {
        /// The option naming it.
        option: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Checks, before a run starts, that `--summary FILE` (or another output file) can be
/// written: not a folder, in a folder that exists, writable. A run must not fail on its last
/// step after an hour of replay.
pub fn check_output_file(option: &'static str, path: &Path) -> Result<(), CliError> {
    let fail = |why: String| Err(CliError::Output { option, path: path.to_owned(), why });
    if path.is_dir() {
        return fail(format!("is a folder; give a file name, e.g. {}", path.join("summary.json").display()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return fail(format!("the folder {} does not exist", parent.display()));
    }
    let existed = path.exists();
    match std::fs::OpenOptions::new().append(true).create(true).open(path) {
        Ok(_) if !existed => {
            // Only a probe: the file is written at the end of the run.
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => fail(format!("cannot be written ({e})")),
    }
}

/// Checks that an output folder (`--out`, `--report`) can be created and written.
pub fn check_output_dir(option: &'static str, path: &Path) -> Result<(), CliError> {
    let fail = |why: String| Err(CliError::Output { option, path: path.to_owned(), why });
    if path.exists() && !path.is_dir() {
        return fail("exists and is not a folder".into());
    }
    if let Err(e) = std::fs::create_dir_all(path) {
        return fail(format!("cannot be created ({e})"));
    }
    let probe = path.join(format!(".tweetoscope-write-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => fail(format!("is not writable ({e})")),
    }
}

/// Checks that an input file named by an option exists and can be read.
pub fn check_input_file(option: &'static str, path: &Path) -> Result<(), CliError> {
    std::fs::File::open(path).map(drop).map_err(|e| CliError::Output {
        option,
        path: path.to_owned(),
        why: format!("cannot be read ({e})"),
    })
}

impl RunOptions {
    /// Checks `--out` (created) and `--summary` (which may be inside it) before the run
    /// (process 0's: the other processes of a cluster ignore them).
    pub fn check_outputs(&self) -> Result<(), CliError> {
        if self.process != 0 {
            return Ok(());
        }
        if let Some(dir) = &self.out {
            check_output_dir("--out", dir)?;
        }
        if let Some(path) = &self.summary {
            check_output_file("--summary", path)?;
        }
        Ok(())
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
        // --connect-timeout is checked by its parser (finite, > 0).
        Ok(match self.connect_timeout {
            None => cluster,
            Some(s) => cluster.with_connect_timeout(std::time::Duration::from_secs_f64(s)),
        })
    }

    /// Says which per-process options this process ignores: in a cluster, process 0 writes
    /// the outputs, the summary and the report of the whole cluster.
    pub fn note_ignored(&self, report: Option<&ReportOptions>) {
        if self.process == 0 {
            return;
        }
        let report = report.is_some_and(|r| r.report.is_some());
        let ignored: Vec<&str> = [("--out", self.out.is_some()), ("--summary", self.summary.is_some()), ("--report", report)]
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect();
        if !ignored.is_empty() {
            eprintln!(
                "note: process {} ignores {}: process 0 writes them for the whole cluster",
                self.process,
                ignored.join(", ")
            );
        }
    }

    /// Whether the job builds the live views: unless `--metrics-addr off` (every process of a
    /// cluster must agree: it is in the fingerprint).
    pub fn views(&self) -> bool {
        self.metrics_addr != "off"
    }

    /// Starts the HTTP server as `--metrics-addr` says, serving `live` (None when off, or
    /// when the default address is already taken). `announce` is said after the address
    /// when the server will be there for people to open (`--serve`, a paced replay, live);
    /// a run that ends in seconds does not advertise a page that is gone when opened.
    pub fn http(&self, live: &LiveView, announce: Option<&str>) -> Result<Option<HttpServer>, std::io::Error> {
        if self.metrics_addr == "off" {
            return Ok(None);
        }
        match HttpServer::start(&self.metrics_addr, live.clone()) {
            Ok(server) => {
                if let Some(until) = announce {
                    eprintln!("serving the live page and metrics on http://{}/ {until}", server.addr);
                }
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
        load_config(self.config.as_deref())
    }
}

/// A dataflow configuration: the file, else the embedded default.
pub fn load_config(path: Option<&Path>) -> Result<DataflowConfig, crate::config::ConfigError> {
    match path {
        Some(path) => DataflowConfig::load(path),
        None => DataflowConfig::parse(super::EMBEDDED_CONFIG),
    }
}

impl ReportOptions {
    /// Where the outputs go: --out, else DIR/outputs when --report DIR is given.
    pub fn out_dir(&self, run: &RunOptions) -> Option<PathBuf> {
        run.out.clone().or_else(|| self.report.as_ref().map(|d| d.join("outputs")))
    }

    /// Checks `--report` (writable) and `--truth` (readable) before the run (process 0's).
    pub fn check(&self, run: &RunOptions) -> Result<(), CliError> {
        if run.process != 0 {
            return Ok(());
        }
        if let Some(dir) = &self.report {
            check_output_dir("--report", dir)?;
        }
        if let Some(truth) = &self.truth {
            check_input_file("--truth", truth)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_validated() {
        assert_eq!(positive("2.5"), Ok(2.5));
        for bad in ["0", "-1", "NaN", "inf", "-inf", "x", ""] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("-0.5").is_err() && non_negative("nan").is_err());
        assert_eq!(speed("max"), Ok(Speed(None)));
        assert_eq!(speed("500"), Ok(Speed(Some(500.0))));
        assert!(speed("0").unwrap_err().contains("max"));
        assert!(branching("1").is_err() && branching("0").is_err() && branching("0.5").is_ok());
    }

    #[test]
    fn output_paths_are_checked_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_output_file("--summary", dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
        let err = check_output_file("--summary", &dir.path().join("no/such/summary.json")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let ok = dir.path().join("summary.json");
        check_output_file("--summary", &ok).unwrap();
        assert!(!ok.exists(), "the probe leaves nothing behind");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(check_output_dir("--out", &file).is_err());
        check_output_dir("--out", &dir.path().join("new/out")).unwrap();
    }
}
