//! The live views are cluster-wide: after a replay of the bundled sample on 2 processes,
//! `/api/state` of process 0 and of process 1 are equal (but for the `process` section,
//! which describes the serving process), and they list the same top cascades as a
//! 1-process run, each cascade once, with its latest prediction. Every process runs on
//! loopback under a guard that kills it, and every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Every wait of this test is bounded by this.
const WAIT: Duration = Duration::from_secs(240);
/// Cascades compared with the 1-process run.
const TOP: usize = 20;

/// Kills (and reaps) the children when dropped, whatever happened.
struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// `/api/state` of each port once every one says the job is finished, without `process`.
fn finished_states(ports: &[u16], children: &mut Killed, logs: &std::path::Path) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        for c in &mut children.0 {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("a tweetoscope exited early ({status}); logs in {}", logs.display());
            }
        }
        let states: Vec<Option<Value>> =
            ports.iter().map(|p| get(*p, "/api/state").and_then(|b| serde_json::from_str::<Value>(&b).ok())).collect();
        if states.iter().all(|s| s.as_ref().is_some_and(|s| s["job"]["state"] == "finished")) {
            return states
                .into_iter()
                .map(|s| {
                    let mut s = s.unwrap();
                    s.as_object_mut().unwrap().remove("process");
                    s
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "not finished after {WAIT:?}: {states:?}; logs in {}", logs.display());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `run --input SAMPLE --serve --metrics-addr 127.0.0.1:PORT EXTRA…`, logs to `name`.
fn spawn(logs: &std::path::Path, name: &str, port: u16, extra: &[String]) -> Child {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    binary()
        .arg("run")
        .arg("--input")
        .arg(bundled_sample())
        .args(["--serve", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// (cascade, latest window, predicted, final size) of the first `TOP` cascades.
fn top(state: &Value) -> Vec<(String, u64, f64, Option<u64>)> {
    state["cascades"]
        .as_array()
        .expect("cascades")
        .iter()
        .take(TOP)
        .map(|c| {
            (
                c["cascade"].as_str().unwrap().to_owned(),
                c["window"].as_u64().unwrap(),
                c["predicted"].as_f64().unwrap(),
                c["final_size"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn every_process_serves_the_same_cluster_wide_views_as_one_process() {
    let logs = artifacts("views");
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(4);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[2], ports[3])).unwrap();
    let cluster =
        |p: usize| vec!["-n".into(), "2".into(), "-p".into(), p.to_string(), "--hostfile".into(), hosts.display().to_string()];
    let mut children = Killed(vec![spawn(&logs, "p0", ports[0], &cluster(0)), spawn(&logs, "p1", ports[1], &cluster(1))]);
    let raw = get(ports[0], "/api/state");
    let states = finished_states(&ports[..2], &mut children, &logs);
    let full: Value = serde_json::from_str(&get(ports[0], "/api/state").expect("the state")).unwrap();
    drop(children);
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/api-state.schema.json")).unwrap()).unwrap();
    for doc in [raw.and_then(|r| serde_json::from_str::<Value>(&r).ok()), Some(full)].into_iter().flatten() {
        assert_eq!(violation(&schema, &schema, &doc, "$"), None, "/api/state does not match docs/api-state.schema.json");
    }
    let (p0, p1) = (&states[0], &states[1]);
    if p0 != p1 {
        let (a, b) = (serde_json::to_string_pretty(p0).unwrap(), serde_json::to_string_pretty(p1).unwrap());
        let line = a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(0);
        panic!(
            "process 0 and process 1 serve different views, first at line {line}:\n{}\n{}",
            a.lines().nth(line).unwrap_or(""),
            b.lines().nth(line).unwrap_or("")
        );
    }
    assert_eq!(p0["job"]["workers"], 2, "both processes' workers are counted: {}", p0["job"]);

    let mut single = Killed(vec![spawn(&logs, "single", ports[0], &[])]);
    let one = finished_states(&ports[..1], &mut single, &logs).remove(0);
    drop(single);

    let (cluster_top, single_top) = (top(p0), top(&one));
    assert_eq!(cluster_top.len(), TOP, "{p0}");
    assert_eq!(cluster_top, single_top, "the 2-process top differs from the 1-process one");
    let cascades = p0["cascades"].as_array().unwrap();
    let mut ids: Vec<&str> = cascades.iter().map(|c| c["cascade"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a cascade is listed twice");
    for c in cascades {
        let windows = c["windows"].as_array().unwrap();
        let latest = windows.last().expect("a prediction");
        assert_eq!(c["window"], latest["window"], "the row shows the latest window: {c}");
        assert_eq!(c["predicted"], latest["models"]["default"], "{c}");
        assert!(windows.windows(2).all(|w| w[0]["window"].as_u64() < w[1]["window"].as_u64()), "{c}");
        assert!(c["final_size"].is_u64(), "the replay ended, so every cascade has its final size: {c}");
    }
    // Ranked by final size once known: the largest cascade of the sample comes first.
    let sizes: Vec<u64> = cascades.iter().map(|c| c["final_size"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "not ranked by final size: {sizes:?}");
    assert_eq!(one["job"]["events_in"], p0["job"]["events_in"]);
    assert!(p0["job"]["events_in"].as_u64().unwrap() > 0);
}

/// Checks `v` against the subset of JSON Schema that `docs/api-state.schema.json` uses
/// (type, const, enum, required, properties, additionalProperties, items, prefixItems,
/// minItems, maxItems, minimum, maximum, $ref to $defs); returns the first violation.
fn violation(schema: &Value, root: &Value, v: &Value, at: &str) -> Option<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/$defs/").expect("local refs only");
        return violation(&root["$defs"][name], root, v, at);
    }
    let type_ok = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        other => panic!("type {other} not supported"),
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t)) {
        return Some(format!("{at}: {v} is not {types:?}"));
    }
    if !schema["const"].is_null() && &schema["const"] != v {
        return Some(format!("{at}: {v} is not {}", schema["const"]));
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(v) {
            return Some(format!("{at}: {v} is not one of {options:?}"));
        }
    }
    if let (Some(x), Some(min)) = (v.as_f64(), schema["minimum"].as_f64()) {
        if x < min {
            return Some(format!("{at}: {x} < {min}"));
        }
    }
    if let (Some(x), Some(max)) = (v.as_f64(), schema["maximum"].as_f64()) {
        if x > max {
            return Some(format!("{at}: {x} > {max}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                return Some(format!("{at}: missing {key}"));
            }
        }
        for (key, value) in obj {
            let sub = match schema["properties"].get(key) {
                Some(s) => s,
                None if schema["additionalProperties"] == Value::Bool(false) => return Some(format!("{at}: unexpected {key}")),
                None if schema["additionalProperties"].is_object() => &schema["additionalProperties"],
                None => continue,
            };
            if let Some(e) = violation(sub, root, value, &format!("{at}.{key}")) {
                return Some(e);
            }
        }
    }
    if let Some(items) = v.as_array() {
        if schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m)
            || schema["maxItems"].as_u64().is_some_and(|m| items.len() as u64 > m)
        {
            return Some(format!("{at}: {} items", items.len()));
        }
        for (i, item) in items.iter().enumerate() {
            let sub = schema["prefixItems"].get(i).unwrap_or(&schema["items"]);
            if let Some(e) = violation(sub, root, item, &format!("{at}[{i}]")) {
                return Some(e);
            }
        }
    }
    None
}

#[test]
fn the_documented_schema_rejects_what_it_should() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/api-state.schema.json")).unwrap()).unwrap();
    let empty = serde_json::json!({
        "schema": 1,
        "job": {"state": "replaying", "watermark": null, "newest_event": null, "lag": null, "workers": 1, "events_in": 0,
                "rejected": {}, "predictions": 0, "alerts": {"warning": 0, "critical": 0}, "terminated": 0, "checkpoint_parts": 0},
        "thresholds": {"warning": 5000.0, "critical": 20000.0},
        "cascades": [], "alerts": [], "accuracy": {}, "are_series": {},
        "process": {"series": [[1, 0, null, null]], "uptime_seconds": 0.5}
    });
    assert_eq!(violation(&schema, &schema, &empty, "$"), None);
    let mut wrong = empty.clone();
    wrong["job"]["state"] = "running".into();
    assert!(violation(&schema, &schema, &wrong, "$").is_some_and(|e| e.contains("state")));
    let mut extra = empty.clone();
    extra["top"] = Value::Array(vec![]);
    assert!(violation(&schema, &schema, &extra, "$").is_some_and(|e| e.contains("unexpected top")));
}
