//! Distributed mode against a real Apache Kafka broker on loopback (`scripts/kafka start`;
//! `scripts/test` starts it). Every test uses fresh, uniquely prefixed topics, so the suite
//! passes when run twice in a row; every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;

fn generate(prefix: &str) {
    run_ok(tweetoscope(prefix, &["generate", "--speed", "max", "--sources", "3", "--input"]).arg(bundled_sample()));
}

fn embedded_run(out: &Path) {
    run_ok(binary().args(["run", "--input"]).arg(bundled_sample()).arg("--out").arg(out));
}

#[test]
fn backtest_of_a_generated_topic_equals_the_file_run_for_one_and_two_processes() {
    let (prefix, _kafka) = namespace("backtest");
    generate(&prefix);
    let dir = tempfile::tempdir().unwrap();
    embedded_run(&dir.path().join("run"));
    run_ok(tweetoscope(&prefix, &["backtest", "-w", "2", "--out"]).arg(dir.path().join("bt")));
    assert_same_outputs(&dir.path().join("run"), &dir.path().join("bt"));

    // The README's recipe exactly: --out on process 0 only (they used to wait on each
    // other for ever, the dataflow's shape depending on --out).
    let ports = free_ports(2);
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let spawn = |p: &str| {
        let mut cmd = tweetoscope(&prefix, &["backtest", "-w", "2", "-n", "2", "-p", p, "--hostfile"]);
        cmd.arg(&hostfile);
        if p == "0" {
            cmd.arg("--out").arg(dir.path().join("cluster"));
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let children = [spawn("0"), spawn("1")];
    for (i, child) in children.into_iter().enumerate() {
        let o = wait_bounded(child, Duration::from_secs(120), &format!("backtest process {i}"));
        assert!(o.status.success(), "process {i} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_same_outputs(&dir.path().join("run"), &dir.path().join("cluster"));
}

/// `live` ends with SIGTERM (drained, flushed, exit 0); in a cluster, a SIGTERM to one
/// process stops every process, all within 5 s (they used to wait for the other's input).
#[test]
fn a_sigterm_to_one_process_of_a_live_cluster_stops_every_process_within_5_s() {
    let (prefix, _kafka) = namespace("livestop");
    generate(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let log = |p: usize| dir.path().join(format!("live-{p}.log"));
    let spawn = |p: usize| {
        let stderr = std::fs::File::create(log(p)).unwrap();
        tweetoscope(&prefix, &["live", "--metrics-addr", "off", "-n", "2", "-p", &p.to_string(), "--hostfile"])
            .arg(&hostfile)
            .env("RUST_LOG", "tweetoscope::pipeline=info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let children = vec![spawn(0), spawn(1)];
    let read = |p: usize| std::fs::read_to_string(log(p)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..2).all(|p| read(p).contains("connected and agrees")) {
        if Instant::now() > deadline {
            let (a, b) = (read(0), read(1));
            children.into_iter().for_each(kill_and_reap);
            panic!("the live cluster did not start within 60 s:\n{a}\n{b}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2)); // reading the topic
    let _ = std::process::Command::new("kill").args(["-TERM", &children[1].id().to_string()]).status();
    let signalled = Instant::now();
    for (p, child) in children.into_iter().enumerate() {
        let o = wait_bounded(child, Duration::from_secs(5).saturating_sub(signalled.elapsed()), &format!("live process {p}"));
        // Stopped by a signal: an interrupted run, exit 128 + SIGTERM, on every process.
        assert_eq!(o.status.code(), Some(143), "live process {p} exited with {}:\n{}", o.status, read(p));
        assert!(read(p).contains("process 1 received SIGTERM"), "live process {p} does not name the stop:\n{}", read(p));
        assert!(!read(p).contains("error"), "live process {p}:\n{}", read(p));
    }
}

/// Kills a child that is still running (a failed test leaves no process behind).
fn kill_and_reap(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn live_pipeline_produces_the_output_topics_of_an_embedded_run() {
    let (prefix, kafka) = namespace("live");
    let dir = tempfile::tempdir().unwrap();
    embedded_run(&dir.path().join("run"));
    let expected = file_multisets(&dir.path().join("run"));
    let live = tweetoscope(&prefix, &["live", "-w", "2"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    generate(&prefix);
    // Live event time only advances with new events: a last tweet far in the future (on
    // every partition, through four cascade ids) moves the watermark past every deadline of
    // the dataset, as the next day of a real stream would.
    let producer = kafka.producer().unwrap();
    for id in 1_000_000_000u64..1_000_000_004 {
        let event = tweetoscope::records::TweetEvent {
            cascade: id,
            time: 10_000_000,
            seq: 0,
            magnitude: 1.0,
            kind: tweetoscope::records::EventKind::Tweet,
            msg: String::new(),
        };
        let (key, value) = tweetoscope::io::wire::encode(&event, 0);
        producer.send(&kafka.topics.tweets, Some(&key), &value).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let want_stats = expected["stats"].len() as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while topic_len(&kafka, &kafka.topics.stats) < want_stats {
        assert!(Instant::now() < deadline, "only {} of {want_stats} stats after 120 s", topic_len(&kafka, &kafka.topics.stats));
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = terminate(live);
    assert_eq!(
        out.status.code(),
        Some(143),
        "live stopped by SIGTERM exits 143; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_multisets(&expected, &topic_multisets(&kafka), "the live records vs the embedded run's");
    // Warm start: the latest model of each window, rebuilt from the topic, is the embedded
    // run's last model of that window. A calibration-only update (no course forest, no
    // learned model) carries nothing to start from, so it does not count.
    let models = tweetoscope::io::kafka::read_latest_models(&kafka).unwrap();
    let last_versions: BTreeMap<u64, u64> = expected["models"]
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| !v["course"].is_null() || !v["learned"].is_null())
        .map(|v| (v["T_obs"].as_u64().unwrap(), v["version"].as_u64().unwrap()))
        .fold(BTreeMap::new(), |mut m, (w, v)| {
            let e = m.entry(w).or_insert(v);
            *e = (*e).max(v);
            m
        });
    let got: BTreeMap<u64, u64> = models.iter().map(|m| (m.t_obs, m.version)).collect();
    assert_eq!(got, last_versions, "warm-start models");
    // Keys as in the course: T_obs on cascade_properties.
    let props = consume_all(&kafka, &kafka.topics.cascade_properties);
    assert!(props.iter().all(|(k, _)| matches!(k.as_deref(), Some("600") | Some("1200"))));
}

#[test]
fn malformed_and_late_messages_are_dead_lettered_with_their_reason() {
    let (prefix, kafka) = namespace("dead");
    let producer = kafka.producer().unwrap();
    let topic = kafka.topics.tweets.clone();
    let good = |t: u64, kind: &str| format!(r#"{{"type":"{kind}","msg":"m","t":{t},"m":50,"source":0}}"#);
    // One cascade on one partition (same key): tweet, retweets, then a late one.
    let mut sends: Vec<(Option<&str>, String)> = vec![
        (Some("7"), good(1000, "tweet")),
        (Some("7"), good(1005, "retweet")),
        (Some("7"), good(5000, "retweet")), // idle > t_end since 1005: terminated cascade
        (Some("7"), good(1010, "retweet")), // 3990 s behind its partition: late
        (Some("7"), "{broken".into()),
        (Some("7"), r#"{"type":"retweet","t":"soon","m":1}"#.into()),
        (Some("7"), r#"{"type":"retweet","m":1}"#.into()),
        (Some("7"), r#"{"type":"like","t":5001,"m":1}"#.into()),
        (Some("7"), r#"{"type":"retweet","t":-3,"m":1}"#.into()),
        (None, r#"{"type":"retweet","t":5002,"m":1}"#.into()),
        (Some("8"), good(5003, "retweet")), // unknown cascade
    ];
    sends.push((Some("7"), format!(r#"{{"type":"retweet","t":5004,"m":1,"msg":"{}"}}"#, "x".repeat(70_000))));
    for (key, value) in &sends {
        producer.send(&topic, *key, value).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[kafka.source]\nlateness = 600\n").unwrap();
    let summary = dir.path().join("s.json");
    run_ok(tweetoscope(&prefix, &["backtest", "--config"]).arg(&config).arg("--summary").arg(&summary));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let rejected = &s["rejected"];
    for (reason, n) in [
        ("late", 1),
        ("invalid_json", 1),
        ("wrong_type", 1),
        ("missing_field", 1),
        ("unknown_type", 1),
        ("invalid_value", 1),
        ("bad_key", 1),
        ("unknown_cascade", 1),
        ("oversized", 1),
        ("terminated_cascade", 1),
    ] {
        assert_eq!(rejected[reason], n, "{reason} in {rejected}");
    }
    // Decoded and on time: the tweet, the retweets at 1005 and 5000, the one of cascade 8.
    assert_eq!(s["events"], 4, "{s}");
    assert_eq!(rejected.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 10, "{rejected}");

    // Live mode writes them to the dead-letter topic with their reason (the eight the source
    // rejects; the tracker's two wait for event time to pass 5003 + lateness).
    let live =
        tweetoscope(&prefix, &["live", "--config"]).arg(&config).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_len(&kafka, &kafka.topics.dead_letters) < 8 {
        assert!(Instant::now() < deadline, "dead letters not produced within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = terminate(live);
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    let letters = consume_all(&kafka, &kafka.topics.dead_letters);
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|(_, v)| serde_json::from_str::<serde_json::Value>(v).unwrap()["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert!(reasons.contains(&"late".to_owned()) && reasons.contains(&"oversized".to_owned()), "{reasons:?}");
    assert!(letters.iter().all(|(_, v)| !v.contains(&"x".repeat(2000))), "payloads are truncated");
}

/// Regression (live_start_after_a_quiet_spell_made_events_late): when every partition had
/// been silent for longer than the idle timeout, the first partition to deliver pushed the
/// watermark past the events the others were about to deliver, which were then dropped as
/// late. Now a resuming stream gives every partition a fresh idle timeout.
#[test]
fn a_partition_that_delivers_just_after_another_following_a_quiet_spell_is_not_late() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let (prefix, kafka) = namespace("quiet");
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let live = tweetoscope(&prefix, &["live", "--metrics-addr", "off", "--until-idle", "5", "--summary"])
        .arg(&summary)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4)); // every partition is idle now
    let producer: ThreadedProducer<DefaultProducerContext> = kafka.client_config().create().unwrap();
    let send = |partition: i32, cascade: u64, kind: &str, t: u64| {
        let value = format!(r#"{{"type":"{kind}","msg":"m","t":{t},"m":50,"source":0}}"#);
        let key = cascade.to_string();
        producer.send(BaseRecord::to(&kafka.topics.tweets).partition(partition).key(&key).payload(&value)).unwrap();
    };
    send(0, 1, "tweet", 1000);
    for t in 1001..=1100 {
        send(0, 1, "retweet", t);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    send(1, 2, "tweet", 1050);
    for t in 1051..=1060 {
        send(1, 2, "retweet", t);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let out = wait_bounded(live, Duration::from_secs(60), "live --until-idle");
    assert!(out.status.success(), "{}", tail(&out.stderr));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["rejected"].get("late").and_then(|v| v.as_u64()).unwrap_or(0), 0, "late events: {}", s["rejected"]);
    assert_eq!(s["events"], 112, "{s}");
}

/// `topics --delete` removes a prefix's topics (what a backtest or benchmark leaves behind:
/// thousands of leftover partitions made the broker's GC pauses the latency benchmark's
/// tail), and deleting again is not an error.
#[test]
fn topics_delete_removes_every_topic_of_a_prefix_and_may_be_repeated() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (prefix, kafka) = namespace("topicsdelete");
    run_ok(&mut tweetoscope(&prefix, &["topics"]));
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    let ours = || -> Vec<String> {
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        metadata.topics().iter().map(|t| t.name().to_owned()).filter(|n| n.starts_with(&prefix)).collect()
    };
    assert_eq!(ours().len(), 9, "the eight course topics and progress: {:?}", ours());
    run_ok(&mut tweetoscope(&prefix, &["topics", "--delete"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ours().is_empty() {
        assert!(Instant::now() < deadline, "still there 30 s after the deletion: {:?}", ours());
        std::thread::sleep(Duration::from_millis(200));
    }
    run_ok(&mut tweetoscope(&prefix, &["topics", "--delete"]));
}
