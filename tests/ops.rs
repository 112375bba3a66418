//! Operations, against the real binary and real Prometheus and Alertmanager.
//!
//! - The shipped Grafana dashboard is a valid dashboard, and every metric named by its panels
//!   (and by the shipped alerting rules) is one the binary really exports, as scraped from
//!   `/metrics` after a replay.
//! - A real Prometheus (Debian's `prometheus`) scrapes a paced replay every second with the
//!   shipped rules, and its HTTP API agrees with the run's `--summary`; the `PopularCascades`
//!   alert fires and reaches a real Alertmanager (`prometheus-alertmanager`, with the shipped
//!   config), and so do the per-cascade `PopularCascade` alerts that `--alertmanager` pushes;
//!   Alertmanager then notifies the (test's) webhook receiver.
//!
//! Prometheus and Alertmanager are started here on free loopback ports with temporary storage,
//! never through systemd, and every child is killed at the end, also on failure. When they are
//! not installed the test fails and says to run `scripts/ops install` (scripts/test does).
//! Logs of the children go to `target/test-artifacts/ops/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{artifacts, free_port, require};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tweetoscope");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(90);

/// Metrics that exist only once something happens that the embedded replay never does (a
/// Kafka consumer; a cascade too small for a window). They are not in a replay's scrape, so
/// they are checked against the binary itself: the name must be compiled into it.
const CONDITIONAL_METRICS: &[&str] = &["tweetoscope_kafka_consumer_lag_messages", "tweetoscope_partial_cascades_too_small_total"];

/// Kills (and reaps) every child when dropped, whatever happened.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Children {
    /// Starts `command` with its output in `<logs>/<name>.log`.
    fn spawn(&mut self, name: &str, command: &mut Command, logs: &Path) -> u32 {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        let id = child.id();
        self.0.push((name.to_owned(), child));
        id
    }

    /// Fails if a child already exited (it would make every later wait time out).
    fn check_alive(&mut self) {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited early ({status}); see {}", artifacts("ops").join(format!("{name}.log")).display());
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A GET on loopback: (status, body). HTTP/1.0, so the body ends when the server closes.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` every 250 ms until it gives a value, failing after [`WAIT`].
fn wait_for<T>(what: &str, children: &mut Children, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        children.check_alive();
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}; logs in {}", artifacts("ops").display());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Metric names in a PromQL expression or rule file: every `tweetoscope_*` identifier
/// outside string literals (label names and values never start with it).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_string = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = in_string {
            if c == '\\' {
                i += 1;
            } else if c == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            in_string = Some(c);
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        if starts_word && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.starts_with("tweetoscope_") {
                names.push(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Sample and family names of a `/metrics` text.
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.extend(rest.split_whitespace().next().map(str::to_owned));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Runs the embedded replay with the HTTP server and returns what `/metrics` exports at its
/// end.
fn exported_metrics() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let logs = artifacts("ops");
    let port = free_port();
    let summary = dir.path().join("summary.json");
    let mut children = Children::default();
    children.spawn(
        "tweetoscope-metrics",
        Command::new(BIN)
            .args(["--serve", "--metrics-addr", &format!("127.0.0.1:{port}"), "--summary"])
            .arg(&summary)
            .current_dir(dir.path()),
        &logs,
    );
    wait_for("the replay's summary", &mut children, || summary.exists().then_some(()));
    let (status, text) = get(port, "/metrics").expect("scraping /metrics");
    assert_eq!(status, 200, "{text}");
    let names = scraped_names(&text);
    std::fs::write(logs.join("metrics.txt"), &text).unwrap();
    names
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dashboard_and_rules_name_only_exported_metrics() {
    let mut exported = exported_metrics();
    assert!(
        exported.contains("tweetoscope_predictions_total") && exported.contains("tweetoscope_are_ratio_bucket"),
        "{exported:?}"
    );
    let binary = std::fs::read(BIN).unwrap();
    for name in CONDITIONAL_METRICS {
        assert!(binary.windows(name.len()).any(|w| w == name.as_bytes()), "{name} is not in the binary");
        exported.insert((*name).to_owned());
    }

    // The dashboard is a valid dashboard.
    let dashboard: Value = serde_json::from_str(&read("ops/grafana/dashboards/tweetoscope.json")).expect("dashboard JSON");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    let ds_var = variables.iter().find(|v| v["type"] == "datasource").expect("a datasource variable");
    assert_eq!(ds_var["query"], "prometheus");
    let ds_var_name = ds_var["name"].as_str().unwrap();
    // The variable's default is the provisioned datasource.
    let provisioned = read("ops/grafana/provisioning/datasources/tweetoscope.yml");
    let uid = ds_var["current"]["value"].as_str().unwrap();
    assert!(provisioned.contains(&format!("uid: {uid}")), "the dashboard's datasource {uid} is not provisioned");
    assert!(provisioned.contains("type: prometheus"));
    let provider = read("ops/grafana/provisioning/dashboards/tweetoscope.yml");
    assert!(provider.contains("type: file") && provider.contains("path: "), "{provider}");

    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut ids = BTreeSet::new();
    let mut expressions = Vec::new();
    for p in panels {
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("panel without an integer id: {p}"));
        assert!(ids.insert(id), "panel id {id} is not unique");
        let title = p["title"].as_str().unwrap_or_else(|| panic!("panel {id} has no title"));
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0 && grid["y"].is_u64(), "panel {title}: bad gridPos {grid}");
        if p["type"] == "row" {
            continue;
        }
        assert!(p["type"].is_string(), "panel {title} has no type");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no targets");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            let ds = if t["datasource"].is_object() { &t["datasource"] } else { &p["datasource"] };
            assert_eq!(ds["type"], "prometheus", "panel {title}: datasource {ds}");
            assert_eq!(ds["uid"], format!("${{{ds_var_name}}}"), "panel {title}: datasource {ds}");
            assert!(ref_ids.insert(t["refId"].as_str().expect("refId")), "panel {title}: refId not unique");
            let expr = t["expr"].as_str().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| panic!("panel {title}: no expr"));
            expressions.push((title.to_owned(), expr.to_owned()));
        }
    }
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap();
        expressions.push((format!("variable {}", v["name"]), q.to_owned()));
    }
    let mut named = BTreeSet::new();
    for (title, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: `{expr}` names no tweetoscope metric");
        for n in names {
            assert!(exported.contains(&n), "{title}: `{n}` is not exported by the binary (exported: {exported:?})");
            named.insert(n);
        }
    }
    // What the issue asks the dashboard to show.
    for required in [
        "tweetoscope_are_ratio_bucket",
        "tweetoscope_predictions_total",
        "tweetoscope_alerts_total",
        "tweetoscope_events_total",
        "tweetoscope_event_time_lag_seconds",
        "tweetoscope_open_cascades",
        "tweetoscope_fits_total",
        "tweetoscope_kafka_consumer_lag_messages",
    ] {
        assert!(named.contains(required), "no panel shows {required}");
    }

    // The alerting rules too.
    let rules = read("ops/prometheus/rules/tweetoscope.yml");
    let code: String = rules.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let rule_names = metric_names(&code);
    assert!(rule_names.len() >= 6, "{rule_names:?}");
    for n in rule_names {
        assert!(exported.contains(&n), "rules: `{n}` is not exported by the binary");
    }
    // prometheus.yml loads that rule file.
    assert!(read("ops/prometheus/prometheus.yml").contains("- rules/tweetoscope.yml"));
}

#[test]
fn metric_names_are_found_outside_strings() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.5, sum by (window, le) (rate(tweetoscope_are_ratio_bucket{model="tweetoscope_x"}[1h]))) / tweetoscope_b"#
        ),
        ["tweetoscope_are_ratio_bucket", "tweetoscope_b"]
    );
    assert!(metric_names("up{job=\"tweetoscope\"} == 0").is_empty());
}

/// A webhook receiver on loopback: every POST body, answered 200.
fn webhook() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut stream = reader.into_inner();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send(String::from_utf8_lossy(&body).into_owned()).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// An instant query: (labels, value) per series.
fn query(prometheus: u16, promql: &str) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={}", percent_encode(promql))).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    Some(
        result
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                    .unwrap_or_default();
                let value = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect(),
    )
}

/// `label → value` of a query whose series differ by one label.
fn by_label(prometheus: u16, promql: &str, label: &str) -> Option<BTreeMap<String, f64>> {
    Some(query(prometheus, promql)?.into_iter().map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v)).collect())
}

fn alertmanager_alerts(port: u16) -> Option<Vec<Value>> {
    let (status, body) = get(port, "/api/v2/alerts").ok()?;
    (status == 200).then(|| serde_json::from_str::<Vec<Value>>(&body).ok()).flatten()
}

#[test]
fn prometheus_scrapes_a_replay_and_alerts_reach_alertmanager() {
    let prometheus_bin = require("prometheus");
    let alertmanager_bin = require("prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let logs = artifacts("ops");
    let (tw, prom, am) = (free_port(), free_port(), free_port());
    assert!(tw != prom && prom != am && am != tw, "port clash, run again");
    let mut children = Children::default();

    // Alertmanager with the shipped config, its receivers pointed at the test's webhook.
    let (hook, notifications) = webhook();
    let shipped = read("ops/alertmanager/alertmanager.yml");
    assert!(shipped.contains("http://127.0.0.1:5001/"));
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(&am_config, shipped.replace("http://127.0.0.1:5001/", &format!("http://127.0.0.1:{hook}/"))).unwrap();
    children.spawn(
        "alertmanager",
        Command::new(&alertmanager_bin)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.path().join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am}"))
            .arg("--cluster.listen-address="),
        &logs,
    );

    // Prometheus scraping the tweetoscope under test every second, with the shipped rules
    // (whose PopularCascades alert has `for: 0s`), evaluated every second.
    let rules = dir.path().join("tweetoscope-rules.yml");
    let shipped_rules = read("ops/prometheus/rules/tweetoscope.yml");
    let popular = shipped_rules.split("- alert: ").find(|r| r.starts_with("PopularCascades")).expect("PopularCascades rule");
    assert!(popular.contains("for: 0s"), "the test needs PopularCascades to fire at once");
    std::fs::write(&rules, shipped_rules).unwrap();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am}\"]\n\
             scrape_configs:\n  - job_name: tweetoscope\n    scrape_interval: 1s\n    static_configs:\n      - targets: [\"127.0.0.1:{tw}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    children.spawn(
        "prometheus",
        Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("prom-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .arg("--rules.alert.resend-delay=2s"),
        &logs,
    );
    wait_for("Alertmanager ready", &mut children, || get(am, "/-/ready").ok().filter(|(s, _)| *s == 200));
    wait_for("Prometheus ready", &mut children, || get(prom, "/-/ready").ok().filter(|(s, _)| *s == 200));

    // A paced replay (about 25 s, predictions during the first 12 s or so: several scrapes see
    // the alerts counter grow), serving metrics afterwards, pushing per-cascade alerts. The
    // embedded config with the course's threshold (150), so that many cascades alert, of
    // both severities (critical above 1,000).
    let summary_path = dir.path().join("summary.json");
    let config_path = dir.path().join("config.toml");
    let embedded = read("dataflows/embedded.toml");
    let threshold_line =
        embedded.lines().find(|l| l.starts_with("alert_threshold")).expect("alert_threshold in the embedded config");
    let critical_line =
        embedded.lines().find(|l| l.starts_with("alert_critical")).expect("alert_critical in the embedded config");
    let config_text =
        embedded.replace(threshold_line, "alert_threshold = 150.0").replace(critical_line, "alert_critical = 1000.0");
    std::fs::write(&config_path, &config_text).unwrap();
    children.spawn(
        "tweetoscope",
        Command::new(BIN)
            .args(["--pace", "50000", "--serve", "--metrics-addr", &format!("127.0.0.1:{tw}")])
            .arg("--summary")
            .arg(&summary_path)
            .arg("--config")
            .arg(&config_path)
            .args(["--alertmanager", &format!("http://127.0.0.1:{am}")])
            .current_dir(dir.path()),
        &logs,
    );
    wait_for("Prometheus scraping tweetoscope", &mut children, || {
        query(prom, "up{job=\"tweetoscope\"}").filter(|r| r.len() == 1 && r[0].1 == 1.0)
    });

    // The alert fires in Prometheus while the replay runs, and reaches Alertmanager.
    wait_for("PopularCascades firing in Prometheus", &mut children, || {
        let (_, body) = get(prom, "/api/v1/alerts").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["labels"]["alertname"] == "PopularCascades" && a["state"] == "firing")
            .then_some(())
    });
    let from_prometheus = wait_for("PopularCascades in Alertmanager", &mut children, || {
        let alerts = alertmanager_alerts(am)?;
        let found: Vec<Value> = alerts.into_iter().filter(|a| a["labels"]["alertname"] == "PopularCascades").collect();
        (!found.is_empty()).then_some(found)
    });
    for a in &from_prometheus {
        assert_eq!(a["labels"]["severity"], "info", "{a}");
        assert_eq!(a["labels"]["job"], "tweetoscope", "{a}");
        assert!(["600", "1200"].contains(&a["labels"]["window"].as_str().unwrap_or_default()), "{a}");
        assert!(a["annotations"]["summary"].as_str().unwrap_or_default().contains("Popular cascades"), "{a}");
    }

    // The run's summary, once the replay is over.
    let summary: Value = wait_for("the replay's summary", &mut children, || {
        serde_json::from_str(&std::fs::read_to_string(&summary_path).ok()?).ok()
    });
    let windows = summary["windows"].as_array().expect("summary windows");
    assert!(!windows.is_empty());
    let per_window = |field: &str| -> BTreeMap<String, f64> {
        windows.iter().map(|w| (w["t_obs"].to_string(), w[field].as_f64().unwrap())).collect()
    };
    let predictions = per_window("predictions");
    let alerts = per_window("alerts");
    assert!(predictions.values().all(|&p| p > 0.0), "{predictions:?}");

    // Prometheus's view agrees with the summary, once it scraped the final values.
    let are_counts: BTreeMap<String, f64> =
        windows.iter().map(|w| (w["t_obs"].to_string(), w["are"]["count"].as_f64().unwrap())).collect();
    let mut accepted_outcomes = BTreeMap::from([("accepted".to_owned(), summary["events"].as_f64().unwrap())]);
    if let Some(rejected) = summary["rejected"].as_object() {
        accepted_outcomes.extend(rejected.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())));
    }
    let terminated = BTreeMap::from([(String::new(), summary["terminated"].as_f64().unwrap())]);
    let checks: [(&str, &str, &BTreeMap<String, f64>); 5] = [
        ("tweetoscope_predictions_total{job=\"tweetoscope\"}", "window", &predictions),
        ("sum by (window) (tweetoscope_alerts_total)", "window", &alerts),
        ("tweetoscope_are_ratio_count{model=\"default\"}", "window", &are_counts),
        ("tweetoscope_events_total > 0", "outcome", &accepted_outcomes),
        ("tweetoscope_cascades_terminated_total", "", &terminated),
    ];
    let mut last = String::new();
    let agreed = {
        let deadline = Instant::now() + WAIT;
        loop {
            let disagreement = checks.iter().find_map(|(promql, label, expected)| {
                let seen = by_label(prom, promql, label);
                (seen.as_ref() != Some(*expected)).then(|| format!("{promql}: Prometheus {seen:?}, summary {expected:?}"))
            });
            match disagreement {
                None => break true,
                Some(d) => last = d,
            }
            if Instant::now() > deadline {
                break false;
            }
            children.check_alive();
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    assert!(agreed, "Prometheus disagrees with the summary after {WAIT:?}: {last}");
    // Every family of the binary has series in Prometheus (those the replay can produce).
    let names: BTreeSet<String> = query(prom, "count by (__name__) ({__name__=~\"tweetoscope_.+\"})")
        .unwrap()
        .into_iter()
        .filter_map(|(l, _)| l.get("__name__").cloned())
        .collect();
    for name in [
        "tweetoscope_build_info",
        "tweetoscope_events_total",
        "tweetoscope_open_cascades",
        "tweetoscope_cascades_terminated_total",
        "tweetoscope_partial_cascades_total",
        "tweetoscope_predictions_total",
        "tweetoscope_fits_total",
        "tweetoscope_are_ratio_bucket",
        "tweetoscope_are_ratio_sum",
        "tweetoscope_are_ratio_count",
        "tweetoscope_alerts_total",
        "tweetoscope_samples_total",
        "tweetoscope_model_version_timestamp_seconds",
        "tweetoscope_model_training_samples",
        "tweetoscope_models_trained_total",
        "tweetoscope_event_time_frontier_timestamp_seconds",
        "tweetoscope_event_time_newest_timestamp_seconds",
        "tweetoscope_event_time_lag_seconds",
        "tweetoscope_kafka_messages_produced_total",
        "tweetoscope_kafka_delivery_failures_total",
        "tweetoscope_prediction_latency_seconds_bucket",
        "tweetoscope_prediction_latency_event_seconds_bucket",
        "tweetoscope_hawkes_fit_seconds_bucket",
    ] {
        assert!(names.contains(name), "{name} has no series in Prometheus: {names:?}");
    }

    // The per-cascade alerts pushed by --alertmanager: one per alert of the summary, each
    // with its cascade as a label and in the annotations.
    let expected: f64 = alerts.values().sum();
    let config: toml::Table = toml::from_str(&config_text).expect("the test's config");
    let threshold = config["pipeline"]["alert_threshold"].as_float().expect("pipeline.alert_threshold");
    let critical = config["pipeline"]["alert_critical"].as_float().expect("pipeline.alert_critical");
    let pushed = wait_for("every PopularCascade alert in Alertmanager", &mut children, || {
        let found: Vec<Value> =
            alertmanager_alerts(am)?.into_iter().filter(|a| a["labels"]["alertname"] == "PopularCascade").collect();
        (found.len() as f64 == expected).then_some(found)
    });
    let mut per_window_pushed: BTreeMap<String, f64> = BTreeMap::new();
    let mut severities: BTreeMap<String, usize> = BTreeMap::new();
    for a in &pushed {
        let cascade = a["labels"]["cascade"].as_str().expect("cascade label");
        assert_eq!(a["annotations"]["cascade"], cascade, "{a}");
        let predicted: f64 = a["annotations"]["predicted"].as_str().unwrap().parse().unwrap();
        assert!(predicted > threshold, "{a}");
        // Critical above the critical threshold; below it, only when the interval is confident.
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(severity == "critical" || (severity == "warning" && predicted <= critical + 0.5), "{a}");
        *severities.entry(severity.to_owned()).or_default() += 1;
        assert_eq!(a["status"]["state"], "active", "{a}");
        *per_window_pushed.entry(a["labels"]["window"].as_str().unwrap().to_owned()).or_default() += 1.0;
    }
    assert_eq!(per_window_pushed, alerts);
    assert!(severities.len() == 2, "both severities are pushed with these thresholds: {severities:?}");

    // Alertmanager routes them: the (test's) webhook receiver is notified.
    let deadline = Instant::now() + WAIT;
    let mut receivers = BTreeSet::new();
    while !receivers.contains("popular-cascades") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no notification reached the webhook; logs in {}", logs.display());
        if let Ok(body) = notifications.recv_timeout(left.min(Duration::from_secs(1))) {
            let v: Value = serde_json::from_str(&body).expect("notification JSON");
            receivers.extend(v["receiver"].as_str().map(str::to_owned));
        }
        children.check_alive();
    }
}
