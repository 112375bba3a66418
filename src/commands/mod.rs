//! The commands: `tweetoscope [SUBCOMMAND]`, parsed with clap, one file per command. This is
//! the binary's edge (errors are `anyhow` here, typed below it); `main.rs` only parses and
//! calls [`dispatch`].
//!
//! Timely's own flags (`-w/--threads`, `-n/--processes`, `-p/--process`, `-h/--hostfile`)
//! are accepted by every command that runs the dataflow; `-h` is the hostfile as in timely,
//! so help is `--help` only. `--help` sorts the options of those commands into cluster-wide
//! ones (every process must get the same: start-up checks it, `pipeline::fingerprint`) and
//! per-process ones.

use std::path::{Path, PathBuf};

pub mod eval;
pub mod fit;
pub mod generate;
pub mod hostfile;
pub mod kafka;
pub mod latency;
pub mod options;
pub mod progress;
pub mod replay;
pub mod signals;
pub mod simulate;

use clap::{Parser, Subcommand};

pub use self::options::{KafkaOptions, RecoveryOptions, RunOptions, BUNDLED_SAMPLE, DEFAULT_HTTP_ADDR};

/// The embedded dataflow configuration, compiled in so that `tweetoscope` runs from anywhere.
pub const EMBEDDED_CONFIG: &str = include_str!("../../dataflows/embedded.toml");

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
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index). In a
        /// cluster, every process must read the same cascades (their digest is compared).
        #[arg(long, help_heading = options::CLUSTER_WIDE)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long, help_heading = options::CLUSTER_WIDE)]
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
        #[command(flatten, next_help_heading = options::CLUSTER_WIDE)]
        kafka: KafkaOptions,
        /// Run options.
        #[command(flatten)]
        run: RunOptions,
        /// Recovery options.
        #[command(flatten, next_help_heading = options::CLUSTER_WIDE)]
        recovery: RecoveryOptions,
    },
    /// Replay the `tweets` topic from its beginning to the end offsets seen at start, as fast
    /// as possible, and report the accuracy per window (as `run`).
    Backtest {
        /// Kafka options.
        #[command(flatten, next_help_heading = options::CLUSTER_WIDE)]
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
    Hostfile(crate::commands::hostfile::HostfileArgs),
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
    /// Accuracy of the default prediction beside every other model (plain Hawkes, the course
    /// forest, SEISMIC plain and corrected) and honest baselines (no growth, a constant size,
    /// a constant ratio, a model on log n alone), on the same partial cascades, per data set
    /// and window: median and p90 ARE and the count of predictions, per final-size bucket for
    /// the unselected populations. Each data set is one cold prequential replay.
    Eval {
        /// Data sets to evaluate (default: all three).
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["bundled", "auspol", "news"])]
        data: Vec<eval::DataSet>,
        /// Dataflow configuration TOML (default: the embedded one); the course forest is
        /// always trained, as one of the compared models.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Cascades of the simulated NEWS-sized stream.
        #[arg(long, default_value_t = 3000)]
        news_cascades: usize,
        /// Also evaluate warm starts: the first F (0 < F < 1) of each data set's cascades, by
        /// start time, train models that the rest is predicted with (`run --models`), beside
        /// a cold replay of the same rest.
        #[arg(long, value_name = "F")]
        warm_split: Option<f64>,
        /// Also write every figure as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Runs the command the user asked for.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => replay::embedded(&cli.run),
        Some(Command::Run { input, index, run }) => replay::replay(&run, input, index),
        Some(Command::Fit { input, index, t_obs, config }) => fit::command(&input, index.as_deref(), t_obs, config),
        Some(Command::Generate { input, index, speed, sources, config, kafka }) => {
            generate::command(&input, index.as_deref(), &speed, sources, config, &kafka)
        }
        Some(Command::Live { kafka, run, recovery }) => kafka::run(&run, &kafka, Some(&recovery)),
        Some(Command::Backtest { kafka, run }) => kafka::run(&run, &kafka, None),
        Some(Command::Topics { partitions, config, kafka }) => kafka::topics(partitions, config.as_deref(), &kafka),
        Some(Command::Simulate { out, cascades, seed, match_sizes, n_star, horizon, max_events, config }) => {
            let options = simulate::SimulateOptions { cascades, seed, match_sizes, n_star, horizon, max_events };
            simulate::command(&out, &options, config)
        }
        Some(Command::Latency { input, index, speed, until, drain, config, json, kafka }) => {
            latency::command(&input, index.as_deref(), speed, until, drain, config, json, &kafka)
        }
        Some(Command::Hostfile(args)) => Ok(hostfile::entrypoint(&args)?),
        Some(Command::Eval { data, config, news_cascades, warm_split, json }) => {
            eval::command(&eval::EvalOptions { data, config, news_cascades, warm_split, json })
        }
    }
}

/// A bounded run (`run`, `backtest`) that a signal stopped before the end of its input: its
/// outputs are incomplete, so it fails, with the signal's exit code.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the end of the input ({0}); the outputs are incomplete")]
pub struct Stopped(pub crate::pipeline::StopCause);

/// The exit code of a failed command: 128 + the signal when a signal stopped it (here or on
/// another process of the cluster), else 1.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    use crate::pipeline::{ClusterError, PipelineError};
    for cause in error.chain() {
        if let Some(Stopped(c)) = cause.downcast_ref::<Stopped>() {
            return c.exit_code();
        }
        if let Some(PipelineError::Cluster(c)) = cause.downcast_ref::<PipelineError>() {
            return c.exit_code();
        }
        if let Some(c) = cause.downcast_ref::<ClusterError>() {
            return c.exit_code();
        }
    }
    1
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
