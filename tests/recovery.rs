//! Fault tests: crash recovery from checkpoints with exactly-once outputs, against the real
//! Kafka broker on loopback (`scripts/test` starts it). Each test kills or disturbs a live
//! cluster fed by `tweetoscope generate` and checks that the union of the output topics (read
//! committed) equals, record for record, an uninterrupted run on the same input. The tests
//! in this file run one at a time (one of them stops the broker); every wait is bounded. One
//! case runs over the broker's SASL_SSL listener (TLS + SCRAM-SHA-512, `scripts/kafka`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use tweetoscope::checkpoint::CheckpointStore;
use tweetoscope::io::kafka::KafkaConfig;

/// The tests share one broker, and one of them restarts it.
static SERIAL: Mutex<()> = Mutex::new(());

/// Event-time seconds between checkpoints: the bundled sample spans about ten days, so a
/// run writes about twenty.
const INTERVAL: u64 = 43_200;

/// `target/test-artifacts/recovery/<test>`, emptied: logs, checkpoints and the expected
/// outputs stay there for inspection when a test fails.
fn fresh_artifacts(test: &str) -> PathBuf {
    let dir = artifacts(&format!("recovery/{test}"));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What an uninterrupted run produces: the embedded run's files (the Kafka tests show that a
/// live run equals it) and its number of dead letters.
struct Expected {
    topics: std::collections::BTreeMap<String, Vec<String>>,
    dead_letters: usize,
}

fn expected(dir: &Path) -> Expected {
    let out = dir.join("expected");
    let summary = dir.join("expected.json");
    run_ok(
        binary()
            .args(["run", "--metrics-addr", "off", "--input"])
            .arg(bundled_sample())
            .arg("--out")
            .arg(&out)
            .arg("--summary")
            .arg(&summary),
    );
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    let dead_letters = s["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap() as usize).sum();
    Expected { topics: file_multisets(&out), dead_letters }
}

/// The embedded configuration, plus a patient idleness rule (a paced feed must never make a
/// partition look idle, which could make later events late) and the test's interval.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    let base = std::fs::read_to_string(root().join("dataflows/embedded.toml")).unwrap();
    std::fs::write(
        &path,
        format!("{base}\n[kafka.source]\nidle_timeout_ms = 60000\n\n[checkpoint]\ninterval = {INTERVAL}\nretention = 3\n"),
    )
    .unwrap();
    path
}

/// Which listener of the broker the processes use.
#[derive(Clone, Copy, PartialEq)]
enum Over {
    Plaintext,
    /// SASL_SSL: TLS and SCRAM-SHA-512.
    Tls,
}

impl Over {
    /// `tweetoscope SUBCOMMAND … ARGS…` on this listener.
    fn tweetoscope(self, prefix: &str, args: &[&str]) -> std::process::Command {
        match self {
            Over::Plaintext => tweetoscope(prefix, args),
            Over::Tls => Secure::get().tweetoscope(prefix, args),
        }
    }

    /// A library client of the topics of `prefix` on this listener.
    fn client(self, plaintext: KafkaConfig, prefix: &str) -> KafkaConfig {
        match self {
            Over::Plaintext => plaintext,
            Over::Tls => Secure::get().client(prefix),
        }
    }
}

/// A live cluster: `processes` processes of `threads` workers each, checkpointing to `ck`,
/// ending `idle` seconds after the input goes quiet.
fn start_cluster(over: Over, prefix: &str, dir: &Path, ck: &Path, layout: (usize, usize), run: &str, idle: &str) -> Vec<Child> {
    start_cluster_with(over, prefix, dir, &config(dir), ck, layout, run, idle, &[])
}

/// [`start_cluster`] with a config and more arguments.
#[allow(clippy::too_many_arguments)]
fn start_cluster_with(
    over: Over,
    prefix: &str,
    dir: &Path,
    config: &Path,
    ck: &Path,
    (processes, threads): (usize, usize),
    run: &str,
    idle: &str,
    extra: &[String],
) -> Vec<Child> {
    let hostfile = dir.join(format!("hosts-{run}"));
    let ports = free_ports(processes);
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    (0..processes)
        .map(|p| {
            let mut cmd = over.tweetoscope(prefix, &["live", "--metrics-addr", "off", "--until-idle", idle, "--config"]);
            cmd.arg(config).arg("--checkpoint-dir").arg(ck).args(["-w", &threads.to_string()]).args(extra);
            if processes > 1 {
                cmd.args(["-n", &processes.to_string(), "-p", &p.to_string(), "--hostfile"]).arg(&hostfile);
            }
            cmd.env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join(format!("{run}-{p}.log"))).unwrap())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// `generate` paced so that the feed lasts about 12 s of wall time.
fn start_feed(over: Over, prefix: &str) -> Child {
    over.tweetoscope(prefix, &["generate", "--speed", "70000", "--sources", "3", "--input"])
        .arg(bundled_sample())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The output frontier committed so far (0 before the first commit).
fn committed_frontier(kafka: &KafkaConfig) -> u64 {
    tweetoscope::io::kafka_tx::read_committed_frontier(kafka, &kafka.transactional_id()).unwrap().unwrap_or(0)
}

/// Waits until `min_complete` complete checkpoints exist and some outputs were committed
/// after the newest, so that a crash then exercises both the restore and the suppression of
/// committed outputs. Returns the newest complete checkpoint's time.
fn wait_for_checkpoint_and_commits(
    kafka: &KafkaConfig,
    ck: &Path,
    cluster: &mut [Child],
    logs: &Path,
    min_complete: usize,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = (None, 0);
    loop {
        for (i, child) in cluster.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(logs.join(format!("first-{i}.log"))).unwrap_or_default();
                panic!("process {i} exited ({status}) before the kill:\n{}", tail(log.as_bytes()));
            }
        }
        assert!(Instant::now() < deadline, "no complete checkpoint with committed outputs after it within 60 s (last seen: checkpoint {:?}, committed frontier {})", seen.0, seen.1);
        let store = CheckpointStore::open(ck, 3, tweetoscope::dataflow::STAGES).unwrap();
        let complete: Vec<u64> = store.times().unwrap().into_iter().filter(|t| store.load(*t).is_ok()).collect();
        if complete.len() >= min_complete {
            let b = committed_frontier(kafka);
            seen = (Some(complete[0]), b);
            if b > complete[0] && b < u64::MAX {
                return complete[0];
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill9(child: &Child) {
    let status = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 failed");
}

/// After a peer is killed, the other processes stop too (timely has no fault tolerance);
/// give them a bounded time, then kill them as an orchestrator would.
fn reap(children: Vec<Child>) {
    for mut child in children {
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn finish(children: Vec<Child>, dir: &Path, run: &str) {
    for (i, child) in children.into_iter().enumerate() {
        let out = wait_bounded(child, Duration::from_secs(180), &format!("{run} process {i}"));
        let log = std::fs::read_to_string(dir.join(format!("{run}-{i}.log"))).unwrap_or_default();
        assert!(out.status.success(), "{run} process {i} exited with {}:\n{}", out.status, tail(log.as_bytes()));
    }
}

fn logs(dir: &Path, run: &str) -> String {
    (0..4).filter_map(|i| std::fs::read_to_string(dir.join(format!("{run}-{i}.log"))).ok()).collect()
}

/// Kills one process of a running cluster once it has checkpointed and committed, then
/// restarts with `restart` = (processes, threads), optionally corrupting the newest
/// checkpoint first; checks the outputs and returns the restart's logs.
fn crash_and_recover(test: &str, first: (usize, usize), restart: (usize, usize), corrupt_newest: bool, over: Over) -> String {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = &fresh_artifacts(test);
    let expected = expected(dir);
    let (prefix, kafka) = namespace(test);
    let kafka = over.client(kafka, &prefix);
    let ck = dir.join("checkpoints");
    let mut cluster = start_cluster(over, &prefix, dir, &ck, first, "first", "4");
    let feed = start_feed(over, &prefix);
    // Two complete checkpoints when the newest is to be corrupted: there must be one to fall back to.
    let checkpoint = wait_for_checkpoint_and_commits(&kafka, &ck, &mut cluster, dir, if corrupt_newest { 2 } else { 1 });
    kill9(&cluster[cluster.len() - 1]);
    reap(cluster);
    let committed = committed_frontier(&kafka);
    assert!(committed < u64::MAX, "the first run finished before the kill: the test did not exercise recovery");
    if corrupt_newest {
        let store = CheckpointStore::open(&ck, 3, tweetoscope::dataflow::STAGES).unwrap();
        let newest = store.latest(committed).unwrap().expect("a complete checkpoint").time;
        let part = std::fs::read_dir(ck.join(format!("ckpt-{newest:020}"))).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&part).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&part, bytes).unwrap();
        assert!(store.latest(committed).unwrap().is_none_or(|c| c.time < newest), "the corruption went unnoticed");
    }
    let cluster = start_cluster(over, &prefix, dir, &ck, restart, "restart", "4");
    let fed = wait_bounded(feed, Duration::from_secs(120), "generate");
    assert!(fed.status.success(), "generate failed: {}", tail(&fed.stderr));
    finish(cluster, dir, "restart");
    let restart_logs = logs(dir, "restart");
    assert!(
        restart_logs.contains("resuming from a checkpoint"),
        "the restart did not resume from a checkpoint (first complete one at {checkpoint}, committed frontier {committed}):\n{}",
        tail(restart_logs.as_bytes())
    );
    assert_same_multisets(&expected.topics, &topic_multisets(&kafka), &format!("{test}: outputs after a crash and a restart"));
    let dead = consume_all(&kafka, &kafka.topics.dead_letters).len();
    assert_eq!(dead, expected.dead_letters, "{test}: dead letters after the restart (each exactly once)");
    assert_eq!(committed_frontier(&kafka), u64::MAX, "the restarted run committed its whole output");
    restart_logs
}

#[test]
fn killing_one_process_of_two_mid_run_then_restarting_loses_and_duplicates_nothing() {
    crash_and_recover("crash2", (2, 1), (2, 1), false, Over::Plaintext);
}

#[test]
fn a_restart_on_another_number_of_workers_re_shards_the_checkpoint() {
    crash_and_recover("reshard", (2, 1), (1, 3), false, Over::Plaintext);
}

#[test]
fn a_corrupt_newest_checkpoint_is_detected_and_the_previous_one_is_used() {
    let logs = crash_and_recover("corrupt", (2, 1), (2, 1), true, Over::Plaintext);
    assert!(
        logs.contains("skipping an unusable checkpoint"),
        "no warning about the corrupt checkpoint:\n{}",
        tail(logs.as_bytes())
    );
}

#[test]
fn killing_one_process_of_two_over_tls_then_restarting_loses_and_duplicates_nothing() {
    crash_and_recover("crash_tls", (2, 1), (2, 1), false, Over::Tls);
}

/// Restarts the shared broker when dropped, so that a failing test leaves it running.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = std::process::Command::new(root().join("scripts/kafka")).arg("start").status();
    }
}

fn kafka_script(action: &str) {
    let out = std::process::Command::new(root().join("scripts/kafka")).arg(action).output().unwrap();
    assert!(out.status.success(), "scripts/kafka {action} failed:\n{}{}", tail(&out.stdout), tail(&out.stderr));
}

#[test]
fn the_pipeline_waits_for_a_stopped_broker_and_finishes_with_the_same_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = &fresh_artifacts("outage");
    let expected = expected(dir);
    let (prefix, kafka) = namespace("outage");
    // The whole feed first: the outage then hits the pipeline alone, mid-run.
    run_ok(tweetoscope(&prefix, &["generate", "--speed", "max", "--sources", "3", "--input"]).arg(bundled_sample()));
    let ck = dir.join("checkpoints");
    // Quiet for 20 s means the end; the outage is shorter than that.
    let mut cluster = start_cluster(Over::Plaintext, &prefix, dir, &ck, (2, 1), "first", "20");
    wait_for_checkpoint_and_commits(&kafka, &ck, &mut cluster, dir, 1);
    let _back = BrokerBack;
    kafka_script("stop");
    std::thread::sleep(Duration::from_secs(5));
    kafka_script("start");
    finish(cluster, dir, "first");
    assert_same_multisets(&expected.topics, &topic_multisets(&kafka), "outputs across a broker outage");
    assert_eq!(
        consume_all(&kafka, &kafka.topics.dead_letters).len(),
        expected.dead_letters,
        "dead letters across a broker outage"
    );
}

/// The (cascade, window) labels of the alerts a receiver got, in order.
type Received = std::sync::Arc<Mutex<Vec<(String, String)>>>;

/// A loopback stand-in for Alertmanager's API: answers 200 to every POST and keeps the
/// (cascade, window) labels of every alert it was sent, in order. Its thread ends with the
/// test process.
fn alert_receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            if let Ok(serde_json::Value::Array(alerts)) = serde_json::from_slice(&body) {
                let mut got = sink.lock().unwrap();
                for a in alerts {
                    let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
                    got.push((label("cascade"), label("window")));
                }
            }
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, received)
}

#[test]
fn alertmanager_gets_each_alert_once_across_a_kill_9_and_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = &fresh_artifacts("alerts");
    let (prefix, kafka) = namespace("alerts");
    let ck = dir.join("checkpoints");
    // The course's thresholds: many alerts (the defaults raise a few only).
    let config = config(dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let low = with_course_alert_thresholds(&text);
    std::fs::write(&config, low).unwrap();
    let (url, received) = alert_receiver();
    let extra = vec!["--alertmanager".to_owned(), url];
    // One process: the kill -9 hits the process that owns the transactions and pushes.
    let mut first = start_cluster_with(Over::Plaintext, &prefix, dir, &config, &ck, (1, 2), "first", "4", &extra);
    let feed = start_feed(Over::Plaintext, &prefix);
    wait_for_checkpoint_and_commits(&kafka, &ck, &mut first, dir, 1);
    kill9(&first[0]);
    reap(first);
    let before_restart = received.lock().unwrap().len();
    let committed = committed_frontier(&kafka);
    assert!(committed < u64::MAX, "the first run finished before the kill: the test did not exercise recovery");
    let restart = start_cluster_with(Over::Plaintext, &prefix, dir, &config, &ck, (1, 2), "restart", "4", &extra);
    let fed = wait_bounded(feed, Duration::from_secs(120), "generate");
    assert!(fed.status.success(), "generate failed: {}", tail(&fed.stderr));
    finish(restart, dir, "restart");
    let restart_logs = logs(dir, "restart");
    assert!(restart_logs.contains("resuming from a checkpoint"), "no resume:\n{}", tail(restart_logs.as_bytes()));

    let pushed = received.lock().unwrap().clone();
    let topic: Vec<(String, String)> = consume_all(&kafka, &kafka.topics.alerts)
        .iter()
        .map(|(_, r)| {
            let v: serde_json::Value = serde_json::from_str(r).expect("an alert record");
            (v["cid"].as_str().unwrap().to_owned(), v["T_obs"].to_string())
        })
        .collect();
    let mut counts: std::collections::BTreeMap<&(String, String), usize> = std::collections::BTreeMap::new();
    for p in &pushed {
        *counts.entry(p).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "alerts pushed more than once across the kill -9: {twice:?}");
    let (mut pushed_set, mut topic_set) = (pushed.clone(), topic.clone());
    pushed_set.sort();
    topic_set.sort();
    assert_eq!(topic_set.len(), topic.len(), "the alerts topic holds an alert twice");
    assert_eq!(pushed_set, topic_set, "Alertmanager did not get exactly the alerts of the alerts topic");
    assert!(
        before_restart > 0 && before_restart < pushed.len(),
        "the kill should fall between pushes: {before_restart} of {} before it (committed frontier {committed})",
        pushed.len()
    );
}
