//! The commands: `tweetoscope [SUBCOMMAND]`, parsed with clap, one file per command. This is
//! the binary's edge (errors are `anyhow` here, typed below it); `main.rs` only parses and
//! calls [`dispatch`].
//!
//! Timely's own flags (`-w/--threads`, `-n/--processes`, `-p/--process`, `--hostfile`) are
//! accepted by every command that runs the dataflow. Timely spells the hostfile `-h`; here
//! `-h` is help, as in every other command-line tool, and the hostfile is `--hostfile` only.
//! Each command takes only the options that apply to it, and every number is checked by its
//! parser (`--pace 0` is a usage error, not a hang). `--help` sorts the options of the
//! dataflow commands into cluster-wide ones (every process must get the same: start-up checks
//! it, `pipeline::fingerprint`) and per-process ones.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

use self::options::{at_least_one, branching, fraction, non_negative, positive, speed};
pub use self::options::{
    KafkaOptions, RecoveryOptions, ReplayOptions, ReportOptions, RunOptions, Speed, BUNDLED_SAMPLE, DEFAULT_HTTP_ADDR,
};

/// The embedded dataflow configuration, compiled in so that `tweetoscope` runs from anywhere.
pub const EMBEDDED_CONFIG: &str = include_str!("../../dataflows/embedded.toml");

/// Real-time tweet popularity prediction: marked Hawkes process + random forest, on timely
/// dataflow. With no subcommand, replays the bundled real sample (80 SEISMIC cascades) in
/// one process and prints the accuracy per observation window.
#[derive(Debug, Parser)]
#[command(name = "tweetoscope", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Options of the embedded default run.
    #[command(flatten)]
    pub run: RunOptions,
    /// Replay options of the embedded default run.
    #[command(flatten)]
    pub replay: ReplayOptions,
    /// Report options of the embedded default run.
    #[command(flatten)]
    pub report: ReportOptions,
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
        /// Replay options.
        #[command(flatten)]
        replay: ReplayOptions,
        /// Report options.
        #[command(flatten)]
        report: ReportOptions,
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
        #[arg(long, default_value = "500", value_parser = speed, allow_negative_numbers = true)]
        speed: Speed,
        /// Number of sources stamped on the messages.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        sources: u64,
        /// Dataflow configuration TOML (its `[input]` table places course-layout cascades on
        /// the timeline; its [kafka] table names the broker and topics).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Run the pipeline on the `tweets` topic and produce every output topic, until SIGINT or
    /// SIGTERM; then drain, flush the producers, print the summary (marked interrupted) and
    /// exit 130 or 143. With `--checkpoint-dir`, it checkpoints, resumes after a crash, and
    /// produces every output exactly once (Kafka transactions; read them with
    /// isolation.level=read_committed).
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
        /// Report options.
        #[command(flatten)]
        report: ReportOptions,
    },
    /// Simulate cascades from the marked Hawkes model into DIR (course layout:
    /// cascades-data.csv, cascades-index.csv, plus truth.csv with each cascade's p, β, n*).
    /// The defaults give cascades the size of the course's news dataset (median ≈ 90
    /// events), big enough for every window to be estimated and predicted.
    Simulate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of cascades.
        #[arg(long, default_value_t = 300, value_parser = at_least_one())]
        cascades: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Match final sizes to this course index CSV (default: the bundled sizes of the
        /// course's news-index.csv; `none` draws p and β from the prior instead, which
        /// mostly gives cascades of a few events).
        #[arg(long, value_name = "INDEX.csv|none")]
        match_sizes: Option<PathBuf>,
        /// Branching factor used when matching sizes (0 < n* < 1).
        #[arg(long, default_value_t = 0.2, value_parser = branching, allow_negative_numbers = true)]
        n_star: f64,
        /// Drop events after this many seconds (default 10 days).
        #[arg(long, default_value_t = 864_000.0, value_parser = positive, allow_negative_numbers = true)]
        horizon: f64,
        /// At most this many events per cascade.
        #[arg(long, default_value_t = 100_000, value_parser = at_least_one())]
        max_events: usize,
        /// Dataflow configuration TOML (its `[hawkes]` table gives marks and prior).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Measure end-to-end latency through Kafka: generate DATASET paced at --speed onto the
    /// `tweets` topic while a `tweetoscope live` process (started separately, same topics)
    /// runs, and time each prediction record (`cascade_properties` parameters, `alerts`) from
    /// its window's close in event time to its arrival on the topic. The input topic must be
    /// fresh (the pipeline reads it from the beginning); the output topics are read from their
    /// end as the command starts. Prints p50/p90/p99 per topic.
    Latency {
        /// A SEISMIC raw folder or file, or a course-layout data CSV (then with --index).
        #[arg(long)]
        input: PathBuf,
        /// The course-layout index CSV of --input.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Time acceleration: event seconds per wall second.
        #[arg(long, default_value_t = 500.0, value_parser = positive, allow_negative_numbers = true)]
        speed: f64,
        /// Only generate the first S seconds of event time (default: everything).
        #[arg(long, value_name = "S")]
        until: Option<u64>,
        /// After the last event, wait at most this many seconds for the last predictions.
        #[arg(long, default_value_t = 10.0, value_parser = non_negative, allow_negative_numbers = true)]
        drain: f64,
        /// Dataflow configuration TOML (its `[input]` gives the cascades' start times; use the
        /// one the pipeline runs with).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write every measured record (kind, window close in wall seconds after the
        /// start, latency in ms) as CSV to this file.
        #[arg(long)]
        arrivals: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Create the input, output, dead-letter and progress topics that do not exist yet (or,
    /// with --delete, delete them).
    Topics {
        /// Partitions per topic (the `progress` topic always has one).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// Delete these topics (those that exist) instead: the clean-up after a backtest or a
        /// benchmark on its own --topic-prefix.
        #[arg(long)]
        delete: bool,
        /// Dataflow configuration TOML (its [kafka] table names the broker and topics).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kafka options.
        #[command(flatten)]
        kafka: KafkaOptions,
    },
    /// Kubernetes entrypoint: render this StatefulSet pod's timely hostfile (process index
    /// from its ordinal, peers by their stable DNS names), then exec the command after `--`
    /// (`live …`) with `-n N -p I --hostfile FILE`. See k8s/README.md.
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
        #[arg(long = "t-obs", value_parser = non_negative, allow_negative_numbers = true)]
        t_obs: f64,
        /// Dataflow configuration TOML (its `[hawkes]` table is used).
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
        #[arg(long, default_value_t = 3000, value_parser = at_least_one())]
        news_cascades: usize,
        /// Also evaluate warm starts: the first F (0 < F < 1) of each data set's cascades, by
        /// start time, train models that the rest is predicted with (`run --models`), beside
        /// a cold replay of the same rest.
        #[arg(long, value_name = "F", value_parser = fraction, allow_negative_numbers = true)]
        warm_split: Option<f64>,
        /// Also write every figure as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Runs the command the user asked for; the exit code is 0, or 128 + the signal number when
/// SIGINT or SIGTERM stopped it (errors are the caller's to print).
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        None => replay::embedded(&cli.run, &cli.replay, &cli.report),
        Some(Command::Run { input, index, run, replay, report }) => replay::replay(&run, &replay, &report, input, index),
        Some(Command::Fit { input, index, t_obs, config }) => done(fit::command(&input, index.as_deref(), t_obs, config)),
        Some(Command::Generate { input, index, speed, sources, config, kafka }) => {
            generate::command(&input, index.as_deref(), speed, sources, config, &kafka)
        }
        Some(Command::Live { kafka, run, recovery }) => kafka::live(&run, &kafka, &recovery),
        Some(Command::Backtest { kafka, run, report }) => kafka::backtest(&run, &report, &kafka),
        Some(Command::Topics { partitions, delete, config, kafka }) => {
            done(kafka::topics(partitions, delete, config.as_deref(), &kafka))
        }
        Some(Command::Simulate { out, cascades, seed, match_sizes, n_star, horizon, max_events, config }) => {
            let options = simulate::SimulateOptions { cascades, seed, match_sizes, n_star, horizon, max_events };
            done(simulate::command(&out, &options, config))
        }
        Some(Command::Latency { input, index, speed, until, drain, config, json, arrivals, kafka }) => {
            done(latency::command(&input, index.as_deref(), speed, until, drain, config, json, arrivals, &kafka))
        }
        Some(Command::Hostfile(args)) => done(Ok(hostfile::entrypoint(&args)?)),
        Some(Command::Eval { data, config, news_cascades, warm_split, json }) => {
            done(eval::command(&eval::EvalOptions { data, config, news_cascades, warm_split, json }))
        }
    }
}

/// The exit code of a failed command: 128 + the signal when a signal stopped the cluster's
/// start-up (here or on another process), else 1. (A run stopped by a signal is not an
/// error: it reports, marked interrupted, and exits with the signal's code itself.)
pub fn exit_code(error: &anyhow::Error) -> i32 {
    use crate::pipeline::{ClusterError, PipelineError};
    for cause in error.chain() {
        if let Some(PipelineError::Cluster(c)) = cause.downcast_ref::<PipelineError>() {
            return c.exit_code();
        }
        if let Some(c) = cause.downcast_ref::<ClusterError>() {
            return c.exit_code();
        }
    }
    1
}

/// An error and its causes on one line, `context: cause: root cause`, each cause once: a
/// cause whose text the line already holds (librdkafka's errors repeat their code as their
/// source) is not printed again.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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
    fn timely_flags_parse_and_dash_h_is_help() {
        let cli =
            Cli::try_parse_from(["tweetoscope", "run", "--input", "x", "-w", "2", "-n", "2", "-p", "1", "--hostfile", "hosts"])
                .unwrap();
        let Some(Command::Run { run, .. }) = cli.command else { panic!("run expected") };
        assert_eq!((run.threads, run.processes, run.process), (2, 2, 1));
        assert_eq!(run.hostfile, Some(PathBuf::from("hosts")));
        for args in [&["tweetoscope", "-h"][..], &["tweetoscope", "run", "-h"], &["tweetoscope", "live", "--help"]] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn options_of_other_commands_are_usage_errors() {
        for args in [
            &["tweetoscope", "backtest", "--pace", "10"][..],
            &["tweetoscope", "backtest", "--serve"],
            &["tweetoscope", "live", "--report", "r"],
            &["tweetoscope", "live", "--pace", "10"],
            &["tweetoscope", "run", "--input", "x", "--until-idle", "3"],
            &["tweetoscope", "--pace", "0"],
            &["tweetoscope", "--pace", "-1"],
            &["tweetoscope", "--pace", "NaN"],
            &["tweetoscope", "generate", "--input", "x", "--speed", "0"],
            &["tweetoscope", "live", "--until-idle", "0"],
            &["tweetoscope", "latency", "--input", "x", "--drain", "-1"],
            &["tweetoscope", "fit", "--input", "x", "--t-obs", "inf"],
            &["tweetoscope", "simulate", "--out", "x", "--n-star", "1.5"],
            &["tweetoscope", "simulate", "--out", "x", "--cascades", "0"],
            &["tweetoscope", "topics", "--partitions", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be refused");
        }
        assert!(Cli::try_parse_from(["tweetoscope", "backtest", "--report", "r", "--truth", "t"]).is_ok());
    }

    /// Errors with a `source()` keep it out of their own Display: printed as a chain (anyhow's
    /// `{:#}`, which the binary's line is), each cause comes once. (The error line also drops
    /// a cause its context already holds, for third-party errors; this checks ours without it.)
    #[test]
    fn our_errors_keep_their_cause_out_of_their_display() {
        let io = || std::io::Error::other("boom");
        let errors: Vec<anyhow::Error> = vec![
            crate::io::files::InputError::Io { path: "d.csv".into(), source: io() }.into(),
            crate::checkpoint::StoreError::Io { path: "ck".into(), source: io() }.into(),
            crate::config::ConfigError::Read { path: "c.toml".into(), source: io() }.into(),
            options::CliError::Read { path: "hosts".into(), source: io() }.into(),
            simulate::SimulateError::Io { path: "out".into(), source: io() }.into(),
            crate::pipeline::PipelineError::Output { path: "out".into(), source: io() }.into(),
            crate::observe::report::ReportError::Io { path: "r".into(), source: io() }.into(),
            crate::observe::alertmanager::AlertmanagerError::Io { addr: "a:1".into(), source: io() }.into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("boom").count(), 1, "{chain}");
            assert!(!e.to_string().contains("boom"), "the cause is in the Display too: {e}");
        }
    }

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(crate::io::files::InputError::Io { path: "d.csv".into(), source: io });
        assert_eq!(error_line(&e.context("reading the dataset")), "reading the dataset: d.csv: No such file or directory");
    }

    #[test]
    fn flags_override_the_environment_and_the_file_and_validation_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let (config, password) = (dir.path().join("c.toml"), dir.path().join("pw"));
        std::fs::write(&password, "from-flag\n").unwrap();
        // sasl_ssl with no password in the file: valid only once a later layer gives one.
        std::fs::write(&config, "[kafka]\nbrokers = \"file:1\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password = \"from-file-layer\"\n").unwrap();
        let cli = Cli::try_parse_from([
            "tweetoscope",
            "topics",
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            "flag:1",
            "--sasl-password-file",
            password.to_str().unwrap(),
        ])
        .unwrap();
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
        assert_eq!(cli.replay.pace, None);
    }
}
