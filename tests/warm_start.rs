//! `run --models FILE`: a run starts from the models an earlier run wrote, with the same
//! outputs for any layout, and a models file of another version, feature set or window set
//! is refused with one clear line before anything runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The bundled sample's models, written by a cold run into `dir/first`.
fn models(dir: &Path) -> PathBuf {
    run_ok(binary().args(["run", "--metrics-addr", "off", "--input"]).arg(bundled_sample()).arg("--out").arg(dir.join("first")));
    dir.join("first/models.jsonl")
}

/// Runs `run --models` with `extra` arguments and returns (exit success, stderr).
fn refused(models: &Path, extra: &[&str]) -> (bool, String) {
    let started = Instant::now();
    let out = binary()
        .args(["run", "--metrics-addr", "off", "--input"])
        .arg(bundled_sample())
        .arg("--models")
        .arg(models)
        .args(extra)
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "a refusal must come before the replay");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Rewrites every line of `from` with `edit` into `to`.
fn rewrite(from: &Path, to: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let text: String = std::fs::read_to_string(from)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            edit(&mut v);
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(to, text).unwrap();
}

#[test]
fn a_warm_start_gives_the_same_outputs_for_1_and_2_workers_and_2_processes() {
    let dir = tempfile::tempdir().unwrap();
    let models = models(dir.path());
    let out = |name: &str| dir.path().join(name);
    for w in ["1", "2"] {
        run_ok(
            binary()
                .args(["run", "--metrics-addr", "off", "--input"])
                .arg(bundled_sample())
                .arg("--models")
                .arg(&models)
                .args(["-w", w, "--out"])
                .arg(out(&format!("w{w}"))),
        );
    }
    let ports = free_ports(2);
    let hostfile = out("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let spawn = |p: &str| {
        let mut cmd = binary();
        cmd.args(["run", "--metrics-addr", "off", "--input"])
            .arg(bundled_sample())
            .arg("--models")
            .arg(&models)
            .args(["-n", "2", "-p", p, "--hostfile"])
            .arg(&hostfile)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if p == "0" {
            cmd.arg("--out").arg(out("n2"));
        }
        cmd.spawn().unwrap()
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    for (i, child) in [p0, p1].into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "process {i} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_same_outputs(&out("w1"), &out("w2"));
    assert_same_outputs(&out("w1"), &out("n2"));
    // The warm run differs from the cold one: its first predictions come from the models.
    let cold = std::fs::read_to_string(out("first/stats.jsonl")).unwrap();
    let warm = std::fs::read_to_string(out("w1/stats.jsonl")).unwrap();
    assert_ne!(cold, warm);
    assert!(warm.lines().next().unwrap().contains("\"predictor\":\"learned\""), "{}", warm.lines().next().unwrap());
}

#[test]
fn a_models_file_of_another_schema_feature_set_or_window_set_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let models = models(dir.path());
    let check = |file: &Path, extra: &[&str], says: &str| {
        let (ok, stderr) = refused(file, extra);
        assert!(!ok, "accepted {}", file.display());
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
        assert!(lines[0].starts_with("error:") && lines[0].contains(says), "{says:?} expected in {stderr}");
    };
    let old = dir.path().join("old-schema.jsonl");
    rewrite(&models, &old, |v| v["schema"] = 1.into());
    check(&old, &[], "schema 1");
    let other = dir.path().join("other-features.jsonl");
    rewrite(&models, &other, |v| {
        if !v["learned"].is_null() {
            v["learned"]["model"]["feature_set"] = "predictive-v0".into();
        }
    });
    check(&other, &[], "feature set");
    let config = dir.path().join("one-window.toml");
    std::fs::write(&config, "[pipeline]\nwindows = [600]\n").unwrap();
    check(&models, &["--config", config.to_str().unwrap()], "windows [600, 1200]");
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not json\n").unwrap();
    check(&garbage, &[], "garbage.jsonl:1");
}
