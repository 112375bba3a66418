//! The first hour with Tweetoscope (issue 21): what a newcomer meets on the command line —
//! one clear error line with the fix and a non-zero exit, usage errors caught by the parser,
//! signals honoured with an "interrupted" summary, honest output. The Kafka tests use the
//! broker of `scripts/kafka start` (127.0.0.1:9092, or `TWEETOSCOPE_KAFKA_BROKERS`); every
//! wait is bounded.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{brokers, namespace, wait_bounded};
use common::*;

/// Runs a command to its end, failing the test after `limit`: (output, how long it took).
fn run_within(cmd: &mut Command, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let out = wait_bounded(child, limit, what);
    (out, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends a signal (by name: INT, TERM) to a process.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

#[test]
fn dash_h_is_help_and_the_hostfile_is_a_long_flag() {
    for args in [&["-h"][..], &["run", "-h"], &["live", "-h"], &["--help"]] {
        let out = run_ok(binary().args(args));
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}: {}", text(&out.stdout));
    }
    let help = text(&run_ok(binary().args(["run", "-h"])).stdout);
    assert!(help.contains("--hostfile <FILE>") && !help.contains("-h, --hostfile"), "{help}");
}

#[test]
fn nonsense_numbers_are_usage_errors_at_once() {
    let cases: [&[&str]; 11] = [
        &["--pace", "0"],
        &["--pace", "-1"],
        &["--pace", "NaN"],
        &["run", "--input", "x", "--pace", "inf"],
        &["generate", "--input", "x", "--speed", "0"],
        &["live", "--until-idle", "0"],
        &["latency", "--input", "x", "--drain", "-1"],
        &["fit", "--input", "x", "--t-obs", "NaN"],
        &["simulate", "--out", "x", "--n-star", "1.5"],
        &["topics", "--partitions", "0"],
        &["run", "--input", "x", "--connect-timeout", "0"],
    ];
    for args in cases {
        let (out, took) = run_within(binary().args(args), Duration::from_secs(10), &format!("{args:?}"));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} must be a usage error: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(took < Duration::from_secs(3), "{args:?} took {took:?}: it must fail at once");
    }
}

#[test]
fn options_of_other_commands_are_usage_errors() {
    for args in [
        &["backtest", "--pace", "10"][..],
        &["backtest", "--serve"],
        &["live", "--report", "r"],
        &["live", "--truth", "t"],
        &["live", "--pace", "10"],
        &["run", "--input", "x", "--checkpoint-dir", "c"],
    ] {
        let out = binary().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} must be refused: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("unexpected argument"), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn an_io_error_prints_its_cause_once() {
    let out = binary().args(["run", "--input", "/nonexistent/cascades"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: /nonexistent/cascades: No such file or directory (os error 2)",
        "one line, each cause once"
    );
    let out = binary().args(["--config", "/nonexistent.toml"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read config file /nonexistent.toml: No such file"), "{stderr}");
}

#[test]
fn logs_are_not_coloured_when_stderr_is_not_a_terminal() {
    // The default HTTP address taken (by this listener, or by whatever already holds it):
    // the run goes on and logs a warning, which is what this looks at.
    let _taken = std::net::TcpListener::bind(tweetoscope::commands::DEFAULT_HTTP_ADDR);
    let out = run_ok(&mut binary());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WARN") && stderr.contains("default address is taken"), "no warning logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI escapes in a redirected log:\n{stderr:?}");
}

#[test]
fn course_files_need_their_headers_and_the_right_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = (dir.path().join("cascades-data.csv"), dir.path().join("cascades-index.csv"));
    std::fs::write(&data, "0,10\n5,3\n").unwrap();
    std::fs::write(&index, "start_ind,end_ind\n1,2\n").unwrap();
    let out = binary().args(["run", "--metrics-addr", "off", "--input"]).arg(&data).arg("--index").arg(&index).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cascades-data.csv:1: expected the header `time,magnitude`"), "{stderr}");
    std::fs::write(&data, "time,magnitude\n0,10\n5,3\n").unwrap();
    std::fs::write(&index, "start_ind,end_ind\n2,1\n").unwrap();
    let out = binary().args(["run", "--metrics-addr", "off", "--input"]).arg(&data).arg("--index").arg(&index).output().unwrap();
    assert!(
        text(&out.stderr).contains("cascades-index.csv:2: range 2..=1 is reversed (start_ind > end_ind)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn mistaken_inputs_point_to_what_to_pass() {
    let root = root().join("data/seismic-tideh100");
    let out = binary().args(["run", "--metrics-addr", "off", "--input"]).arg(&root).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("raw/training") && !stderr.contains("SOURCE.md:1"), "{stderr}");
    let out = binary().args(["run", "--metrics-addr", "off", "--input"]).arg(root.join("cascades-meta.csv")).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not a dataset") && !stderr.contains("needs its index"), "{stderr}");
    let out = binary().args(["run", "--metrics-addr", "off", "--input"]).arg(root.join("cascades-data.csv")).output().unwrap();
    assert!(text(&out.stderr).contains("add --index (e.g."), "{}", text(&out.stderr));
}

#[test]
fn output_paths_are_checked_before_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        binary().args(["--metrics-addr", "off", "--summary"]).arg(dir.path()),
        Duration::from_secs(30),
        "--summary DIR",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--summary") && stderr.contains("is a folder"), "{stderr}");
    assert!(out.stdout.is_empty(), "the replay ran before the check: {}", text(&out.stdout));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn only_a_page_that_stays_up_is_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let out = run_ok(binary().args(["--metrics-addr", "127.0.0.1:0", "--summary"]).arg(&summary));
    assert!(!text(&out.stderr).contains("serving"), "a run that ends at once advertised a page: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(v["interrupted"], false, "a finished run says it was not interrupted");
    let out = run_ok(binary().args(["--metrics-addr", "127.0.0.1:0", "--pace", "5000000"]));
    assert!(text(&out.stderr).contains("until the replay ends"), "{}", text(&out.stderr));
}

#[test]
fn ctrl_c_on_a_paced_replay_prints_an_interrupted_summary_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let child = binary()
        .args(["--pace", "20000", "--serve", "--metrics-addr", "127.0.0.1:0", "--summary"])
        .arg(&summary)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    signal(child.id(), "INT");
    let started = Instant::now();
    let out = wait_bounded(child, Duration::from_secs(5), "a paced replay after SIGINT");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stdout.contains("interrupted (process 0 received SIGINT)"), "the table does not say interrupted:\n{stdout}");
    assert!(!stderr.contains("replay done; serving"), "an interrupted replay went on serving:\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(v["interrupted"], true);
}

/// Regression: rayon's pool (training fits), started before the stop signals were blocked,
/// took SIGINT and SIGTERM in its threads: the process died of them without its summary, or,
/// SIGINT being ignored in a shell's background job, the signal was lost and the replay went
/// on serving. Every thread but the one that waits for the signals must block them.
#[cfg(target_os = "linux")]
#[test]
fn every_thread_but_the_signal_thread_blocks_the_stop_signals() {
    let child = binary()
        .args(["--pace", "20000", "--serve", "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // SIGHUP (1), SIGINT (2) and SIGTERM (15) in /proc's SigBlk mask.
    const STOP_SIGNALS: u64 = 1 << 0 | 1 << 1 | 1 << 14;
    let mut names = Vec::new();
    let mut unblocked = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap().flatten() {
        let (Ok(name), Ok(status)) =
            (std::fs::read_to_string(task.path().join("comm")), std::fs::read_to_string(task.path().join("status")))
        else {
            continue; // the thread ended meanwhile
        };
        let name = name.trim().to_owned();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("a SigBlk line");
        if name != "signals" && blocked & STOP_SIGNALS != STOP_SIGNALS {
            unblocked.push(format!("{name} (SigBlk {blocked:x})"));
        }
        names.push(name);
    }
    signal(child.id(), "INT");
    let out = wait_bounded(child, Duration::from_secs(5), "a paced replay after SIGINT");
    assert!(names.iter().any(|n| n.starts_with("fit-")), "no fit-N thread: the check missed rayon's pool ({names:?})");
    assert!(unblocked.is_empty(), "threads that would take a stop signal: {unblocked:?}");
    assert_eq!(out.status.code(), Some(130));
}

#[test]
fn simulate_defaults_give_predictions_in_both_windows() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    run_ok(binary().args(["simulate", "--out"]).arg(&sim));
    let summary = dir.path().join("s.json");
    run_ok(
        binary()
            .args(["run", "--metrics-addr", "off", "--input"])
            .arg(sim.join("cascades-data.csv"))
            .arg("--index")
            .arg(sim.join("cascades-index.csv"))
            .arg("--summary")
            .arg(&summary),
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let windows = v["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{v}");
    for w in windows {
        assert!(w["predictions"].as_u64().unwrap() >= 20, "window {}: {} predictions", w["t_obs"], w["predictions"]);
    }
}

#[test]
fn hostfile_says_what_is_wrong_with_hostname() {
    let out = binary().env("HOSTNAME", "laptop").args(["hostfile", "--replicas", "1", "--namespace", "n"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("$HOSTNAME \"laptop\" has no ordinal suffix") && stderr.contains("--ordinal"), "{stderr}");
}

// ---- with the broker ----------------------------------------------------------------------

#[test]
fn generate_to_a_missing_topic_is_one_line_naming_topics() {
    let prefix = format!("first_hour_missing_{}_", std::process::id());
    let (out, took) = run_within(
        binary()
            .args(["generate", "--speed", "max", "--brokers", &brokers(), "--topic-prefix", &prefix, "--input"])
            .arg(bundled_sample()),
        Duration::from_secs(60),
        "generate to a missing topic",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let lines = stdout.lines().count() + stderr.lines().count();
    assert!(lines <= 5, "{lines} lines:\n{stdout}{stderr}");
    let fix = format!(
        "topic {prefix}tweets does not exist: run `tweetoscope topics --brokers {} --topic-prefix {prefix}` first",
        brokers()
    );
    assert!(stderr.contains(&fix), "no line says {fix:?}:\n{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colours in a redirected stderr: {stderr:?}");
}

#[test]
fn an_unreachable_broker_is_one_line_for_generate_topics_and_backtest() {
    // A port where nothing listens.
    let port = free_ports(1)[0];
    let nowhere = format!("127.0.0.1:{port}");
    let sample = bundled_sample();
    let sample = sample.to_str().unwrap();
    let commands: [&[&str]; 3] = [&["generate", "--input", sample], &["topics"], &["backtest", "--metrics-addr", "off"]];
    let started = Instant::now();
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let child =
                binary().args(*args).args(["--brokers", &nowhere]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            (args[0], child)
        })
        .collect();
    for (name, child) in children {
        let out = wait_bounded(child, Duration::from_secs(60), name);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line expected:\n{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&nowhere) && stderr.contains("no broker answered"),
            "{name}: {stderr}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(45), "took {:?}", started.elapsed());
}

#[test]
fn sigterm_stops_live_within_5_s_with_an_interrupted_summary_and_a_checkpoint() {
    let (prefix, _kafka) = namespace("first_hour_sigterm");
    let dir = tempfile::tempdir().unwrap();
    let (checkpoints, summary) = (dir.path().join("ck"), dir.path().join("live.json"));
    let live =
        common::kafka::tweetoscope(&prefix, &["live", "--metrics-addr", "off", "--checkpoint-interval", "86400", "--summary"])
            .arg(&summary)
            .arg("--checkpoint-dir")
            .arg(&checkpoints)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    // The sample's two weeks of event time in about 6 s: a checkpoint every event-time day.
    let (fed, _) = run_within(
        common::kafka::tweetoscope(&prefix, &["generate", "--speed", "200000", "--input"]).arg(bundled_sample()),
        Duration::from_secs(120),
        "generate",
    );
    assert!(fed.status.success(), "{}", text(&fed.stderr));
    let complete = |dir: &Path| {
        tweetoscope::checkpoint::CheckpointStore::open(dir, 3, tweetoscope::dataflow::STAGES)
            .ok()
            .and_then(|s| s.latest(u64::MAX).ok().flatten())
            .map(|c| c.time)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete(&checkpoints).is_none() {
        assert!(Instant::now() < deadline, "no complete checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    signal(live.id(), "TERM");
    let started = Instant::now();
    let out = wait_bounded(live, Duration::from_secs(5), "live after SIGTERM");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(143), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("interrupted (process 0 received SIGTERM)"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(v["interrupted"], true);
    assert!(complete(&checkpoints).is_some(), "the stop left no complete checkpoint");
}
