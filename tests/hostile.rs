//! Hostile input (tests/data/hostile/README.md): a corpus of malformed and adversarial
//! messages mixed into a well-formed stream, through the Kafka source (a real broker:
//! `scripts/kafka start`, `TWEETOSCOPE_KAFKA_BROKERS`), and hostile files through the file
//! readers. Every bad message is counted and dead-lettered with its expected reason, nothing
//! panics, and the outputs of the well-formed cascades are byte-identical to a run without
//! the bad messages.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tweetoscope::io::kafka::KafkaConfig;

type Time = u64;

fn hostile() -> PathBuf {
    root().join("tests/data/hostile")
}

/// Reasons the window/terminate stage gives (the message decoded: it counts as an input event).
const TRACKER_REASONS: [&str; 3] = ["unknown_cascade", "terminated_cascade", "duplicate_tweet"];

/// One message of `kafka/messages.txt`.
#[derive(Debug, Clone)]
struct Hostile {
    name: String,
    at: Time,
    reason: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

fn hex(text: &str, what: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "{what}: odd number of hex digits");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_else(|_| panic!("{what}: bad hex {text:?}")))
        .collect()
}

/// `c<id>+<seconds>`: that many seconds after the original tweet of base cascade `id`.
fn anchor(expr: &str, starts: &[Time], what: &str) -> Time {
    let (c, s) = expr.strip_prefix('c').and_then(|r| r.split_once('+')).unwrap_or_else(|| panic!("{what}: bad anchor {expr:?}"));
    let (c, s): (usize, Time) = (c.parse().unwrap(), s.parse().unwrap());
    assert!((1..=starts.len()).contains(&c), "{what}: cascade {c} is not in the base stream");
    starts[c - 1] + s
}

/// Replaces `$AT` and `$T(<anchor>)` in a text payload.
fn substitute(text: &str, at: Time, starts: &[Time], what: &str) -> String {
    let mut out = text.replace("$AT", &at.to_string());
    while let Some(i) = out.find("$T(") {
        let end = i + out[i..].find(')').unwrap_or_else(|| panic!("{what}: unclosed $T("));
        let t = anchor(&out[i + 3..end], starts, what);
        out.replace_range(i..=end, &t.to_string());
    }
    out
}

fn parse_corpus(starts: &[Time]) -> Vec<Hostile> {
    let text = std::fs::read_to_string(hostile().join("kafka/messages.txt")).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let what = format!("kafka/messages.txt:{}", i + 1);
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..4 {
            let (field, tail) =
                rest.trim_start().split_once(char::is_whitespace).unwrap_or_else(|| panic!("{what}: five fields"));
            fields.push(field);
            rest = tail;
        }
        let payload = rest.trim();
        let at = anchor(fields[1], starts, &what);
        let key = match fields[3] {
            "-" => None,
            k => Some(k.strip_prefix("hex:").map(|h| hex(h, &what)).unwrap_or_else(|| k.as_bytes().to_vec())),
        };
        let payload = if payload == "null" {
            None
        } else if let Some(h) = payload.strip_prefix("hex:") {
            Some(hex(h, &what))
        } else if let Some(t) = payload.strip_prefix("text:") {
            Some(substitute(t, at, starts, &what).into_bytes())
        } else if let Some(r) = payload.strip_prefix("rep:") {
            let (n, t) = r.split_once(':').unwrap();
            Some(t.repeat(n.parse().unwrap()).into_bytes())
        } else if let Some(p) = payload.strip_prefix("pad:") {
            let (n, t) = p.split_once(':').unwrap();
            let t = substitute(t, at, starts, &what);
            let fill = n.parse::<usize>().unwrap() - (t.len() - "$PAD".len());
            Some(t.replace("$PAD", &"x".repeat(fill)).into_bytes())
        } else {
            panic!("{what}: unknown payload form {payload:?}")
        };
        out.push(Hostile { name: fields[0].into(), at, reason: fields[2].into(), key, payload });
    }
    out
}

/// The base stream's cascades (`kafka/base.txt`) copied into `dir/base`.
fn base_slice(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let list = std::fs::read_to_string(hostile().join("kafka/base.txt")).unwrap();
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        std::fs::copy(root().join("data/seismic-tideh100/raw/training").join(name), base.join(name)).unwrap();
    }
    base
}

/// A raw producer: keys and payloads are bytes (non-UTF-8, absent), as a hostile client sends.
struct RawProducer(ThreadedProducer<DefaultProducerContext>);

impl RawProducer {
    fn new(kafka: &KafkaConfig) -> Self {
        let p = kafka.client_config().set("enable.idempotence", "true").set("message.max.bytes", "10000000").create().unwrap();
        Self(p)
    }

    fn send(&self, topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>, partition: Option<i32>) {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let mut record = record;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.0.send(record) {
                Ok(()) => return,
                Err((e, r)) => {
                    assert!(Instant::now() < deadline, "cannot enqueue a message: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }

    fn flush(&self) {
        self.0.flush(Duration::from_secs(60)).expect("flush");
    }
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rejected(s: &serde_json::Value) -> BTreeMap<String, u64> {
    s["rejected"].as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect()).unwrap_or_default()
}

#[test]
fn hostile_messages_through_the_kafka_source_are_dead_lettered_by_reason_and_change_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_slice(dir.path());
    let dataset = tweetoscope::io::files::read_dataset(&base, None).unwrap();
    let input = tweetoscope::config::DataflowConfig::default().input;
    let starts: Vec<Time> =
        dataset.cascades.iter().map(|c| tweetoscope::io::timeline::start_time(c, input.random_start_range, input.seed)).collect();
    let mut corpus = parse_corpus(&starts);
    corpus.sort_by_key(|h| h.at); // stable: file order within one time
    assert!(corpus.len() >= 50, "the corpus has {} messages", corpus.len());

    // The clean stream, by the real generator; the mixed one, the same events (as the
    // generator encodes them) with every hostile message after the events of its time.
    let (clean, _) = namespace("hostile_clean");
    run_ok(tweetoscope(&clean, &["generate", "--speed", "max", "--input"]).arg(&base));
    let (mixed, kafka) = namespace("hostile_mixed");
    let producer = RawProducer::new(&kafka);
    let timeline = tweetoscope::io::timeline::worker_timeline(&dataset, input.random_start_range, input.seed, 0, 1);
    let mut pending = corpus.iter().peekable();
    for event in &timeline {
        while let Some(h) = pending.next_if(|h| h.at < event.time) {
            producer.send(&kafka.topics.tweets, h.key.as_deref(), h.payload.as_deref(), None);
        }
        let (key, value) = tweetoscope::io::wire::encode(event, 0);
        producer.send(&kafka.topics.tweets, Some(key.as_bytes()), Some(value.as_bytes()), None);
    }
    for h in pending {
        producer.send(&kafka.topics.tweets, h.key.as_deref(), h.payload.as_deref(), None);
    }
    producer.flush();
    assert_eq!(topic_len(&kafka, &kafka.topics.tweets), (timeline.len() + corpus.len()) as i64, "messages on the mixed topic");

    // Backtests of both, and the file run of the base slice.
    let out = |name: &str| dir.path().join(name);
    run_ok(binary().args(["run", "--metrics-addr", "off", "--input"]).arg(&base).arg("--out").arg(out("run")));
    for (prefix, name) in [(&clean, "clean"), (&mixed, "mixed")] {
        run_ok(
            tweetoscope(prefix, &["backtest", "--metrics-addr", "off", "--out"])
                .arg(out(name))
                .arg("--summary")
                .arg(out(&format!("{name}.json"))),
        );
    }
    assert_same_outputs(&out("run"), &out("clean"));
    // The well-formed cascades' outputs do not change by a byte.
    assert_same_outputs(&out("clean"), &out("mixed"));
    let lines = std::fs::read_to_string(out("mixed/cascade_properties.jsonl")).unwrap().lines().count();
    assert!(lines > 30, "the base stream must produce outputs to compare (cascade_properties: {lines} lines)");

    // Counted by reason, exactly: the mixed run's rejections are the clean run's (real data
    // has retweets after termination) plus one per corpus message with its reason.
    let (s_clean, s_mixed) = (summary(&out("clean.json")), summary(&out("mixed.json")));
    let (r_clean, r_mixed) = (rejected(&s_clean), rejected(&s_mixed));
    let mut expected = r_clean.clone();
    let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in &corpus {
        *expected.entry(h.reason.clone()).or_default() += 1;
        names.entry(&h.reason).or_default().push(&h.name);
    }
    if r_mixed != expected {
        let mut report = String::new();
        for reason in expected.keys().chain(r_mixed.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (want, got) = (expected.get(reason).copied().unwrap_or(0), r_mixed.get(reason).copied().unwrap_or(0));
            let mark = if want == got { "  " } else { "≠ " };
            report += &format!(
                "{mark}{reason}: expected {want} (clean run {}), got {got}; corpus: {:?}\n",
                r_clean.get(reason).copied().unwrap_or(0),
                names.get(reason.as_str()).cloned().unwrap_or_default()
            );
        }
        panic!("rejections by reason differ from the corpus's expectations:\n{report}");
    }
    // Messages the decoder accepts and the tracker rejects are input events; nothing else is.
    let decoded = corpus.iter().filter(|h| TRACKER_REASONS.contains(&h.reason.as_str())).count() as u64;
    assert_eq!(s_mixed["events"].as_u64(), s_clean["events"].as_u64().map(|e| e + decoded), "input events");

    // Live, the same messages reach the dead-letter topic, each with its reason. A tweet far
    // in the future on every partition moves the watermark past every hostile message.
    let live =
        tweetoscope(&mixed, &["live", "--metrics-addr", "off"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for p in 0..4 {
        let id = 2_000_000_000u64 + p as u64;
        let value = format!(r#"{{"type":"tweet","msg":"","t":10000000,"m":1,"source":0,"info":"cascade={id}"}}"#);
        producer.send(&kafka.topics.tweets, Some(id.to_string().as_bytes()), Some(value.as_bytes()), Some(p));
    }
    producer.flush();
    let want: u64 = r_mixed.values().sum();
    let deadline = Instant::now() + Duration::from_secs(90);
    while (topic_len(&kafka, &kafka.topics.dead_letters) as u64) < want {
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill").args(["-TERM", &live.id().to_string()]).status();
            let o = live.wait_with_output().unwrap();
            panic!(
                "only {} of {want} dead letters after 90 s; live stderr:\n{}",
                topic_len(&kafka, &kafka.topics.dead_letters),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(2)); // nothing more may come
    let _ = std::process::Command::new("kill").args(["-TERM", &live.id().to_string()]).status();
    let o = live.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "live stopped by SIGTERM exits 143: {}", String::from_utf8_lossy(&o.stderr));
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for (_, letter) in consume_all(&kafka, &kafka.topics.dead_letters) {
        let v: serde_json::Value =
            serde_json::from_str(&letter).unwrap_or_else(|e| panic!("dead letter is not JSON ({e}): {letter}"));
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "a dead letter without detail: {letter}");
        assert!(letter.len() < 4096, "dead letters are truncated: {} bytes", letter.len());
        *by_reason.entry(v["reason"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(by_reason, r_mixed, "dead letters by reason (topic) vs rejections counted by the backtest");
}

/// One line of `files/EXPECTED.txt`.
struct FileCase {
    input: String,
    index: Option<String>,
    expect: Result<(usize, u64), (String, String)>,
}

fn file_cases() -> Vec<FileCase> {
    let text = std::fs::read_to_string(hostile().join("files/EXPECTED.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (files, expect) = l.split_once(" => ").unwrap_or_else(|| panic!("EXPECTED.txt: no ` => ` in {l:?}"));
            let mut files = files.split_whitespace().map(str::to_owned);
            let (input, index) = (files.next().unwrap(), files.next());
            let expect = if let Some(rest) = expect.strip_prefix("ok ") {
                let (c, e) = rest.split_once(' ').unwrap();
                Ok((c.parse().unwrap(), e.parse().unwrap()))
            } else {
                let rest = expect.strip_prefix("error ").unwrap_or_else(|| panic!("EXPECTED.txt: {l:?}"));
                let (at, fragment) = rest.split_once(' ').unwrap();
                Err((at.to_owned(), fragment.to_owned()))
            };
            FileCase { input, index, expect }
        })
        .collect()
}

fn run_files(input: &Path, index: Option<&Path>, out: &Path) -> std::process::Output {
    let mut cmd = binary();
    cmd.args(["run", "--metrics-addr", "off", "--input"]).arg(input);
    if let Some(i) = index {
        cmd.arg("--index").arg(i);
    }
    cmd.arg("--out").arg(out).arg("--summary").arg(out.join("summary.json"));
    cmd.output().expect("the binary starts")
}

#[test]
fn hostile_files_are_errors_naming_file_and_line_and_never_a_panic() {
    let files = hostile().join("files");
    let dir = tempfile::tempdir().unwrap();
    let cases = file_cases();
    assert!(cases.len() >= 35, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (input, index) = (files.join(&case.input), case.index.as_ref().map(|i| files.join(i)));
        let out_dir = dir.path().join(i.to_string());
        let o = run_files(&input, index.as_deref(), &out_dir);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let name = format!("{} {}", case.input, case.index.as_deref().unwrap_or(""));
        if stderr.contains("panicked") {
            failures.push(format!("{name}: PANIC\n{stderr}"));
            continue;
        }
        match &case.expect {
            Err((at, fragment)) => {
                if o.status.code() != Some(1) || !stderr.contains(&format!("{at}: ")) || !stderr.contains(fragment.as_str()) {
                    failures.push(format!(
                        "{name}: expected exit 1 with `{at}: …{fragment}…`, got {} and stderr:\n{stderr}",
                        o.status
                    ));
                }
            }
            Ok((cascades, events)) => {
                if !o.status.success() {
                    failures.push(format!("{name}: expected a clean run, got {}:\n{stderr}", o.status));
                    continue;
                }
                let ds = tweetoscope::io::files::read_dataset(&input, index.as_deref()).unwrap();
                let s = summary(&out_dir.join("summary.json"));
                if ds.cascades.len() != *cascades || s["events"].as_u64() != Some(*events) {
                    failures.push(format!(
                        "{name}: expected {cascades} cascades and {events} events, read {} and replayed {}",
                        ds.cascades.len(),
                        s["events"]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} hostile files misbehaved:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // In a SEISMIC folder, the bad file among good ones is named, with its line.
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    for f in ["s-crlf-ok.txt", "s-nan-time.txt", "s-bom-ok.txt"] {
        std::fs::copy(files.join(f), folder.join(f)).unwrap();
    }
    let o = run_files(&folder, None, &dir.path().join("folder-out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && stderr.contains("s-nan-time.txt:4: "), "{}: {stderr}", o.status);
}

#[test]
fn a_very_long_cascade_file_is_replayed_whole() {
    // 200,000 retweets, one every 3 s (7 days, never idle for t_end): generated, not stored.
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000u64;
    let mut text = format!("{n} 0.5\n0 1000\n");
    for i in 1..=n {
        text += &format!("{} {}\n", 3 * i, (i * 7919) % 5000);
    }
    let file = dir.path().join("RT1.txt");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let o = run_files(&file, None, &out);
    assert!(o.status.success(), "{}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    assert_eq!(summary(&out.join("summary.json"))["events"].as_u64(), Some(n + 1));
    let sizes: Vec<serde_json::Value> = std::fs::read_to_string(out.join("cascade_properties.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == "size")
        .collect();
    assert_eq!(sizes.len(), 2, "one size record per window: {sizes:?}");
    assert!(sizes.iter().all(|v| v["n_tot"].as_u64() == Some(n + 1)), "{sizes:?}");
}
