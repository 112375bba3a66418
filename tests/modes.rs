//! The two predictor modes: the default (learned layer) and the course's (Hawkes + forest),
//! whose `samples` records keep the course's format.

mod common;

use common::*;

fn records(dir: &std::path::Path, topic: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("{topic}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn course_mode_predicts_with_hawkes_and_the_forest_and_writes_course_samples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("course");
    let config = root().join("dataflows/course.toml");
    run_ok(
        binary()
            .args(["run", "--metrics-addr", "off", "--input"])
            .arg(bundled_sample())
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    let samples = records(&out, "samples");
    assert!(!samples.is_empty());
    for s in &samples {
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["W", "X", "cid", "type"], "the course's fields only: {s}");
        assert_eq!(s["X"].as_array().unwrap().len(), 3, "(β, n*, G1): {s}");
    }
    let stats = records(&out, "stats");
    let predictors: std::collections::BTreeSet<&str> = stats.iter().map(|s| s["predictor"].as_str().unwrap()).collect();
    assert!(predictors.iter().all(|p| ["course", "hawkes"].contains(p)), "{predictors:?}");
    assert!(stats.iter().all(|s| s["n_pred"] == s["n_course"]), "the default prediction is the course's");
}

#[test]
fn the_default_mode_predicts_with_the_learned_layer_and_writes_feature_samples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("learned");
    run_ok(binary().args(["run", "--metrics-addr", "off", "--input"]).arg(bundled_sample()).arg("--out").arg(&out));
    let samples = records(&out, "samples");
    assert!(
        samples.iter().all(|s| s["X"].as_array().unwrap().len() == 15 && s["feature_set"] == "predictive-v1"),
        "{}",
        samples[0]
    );
    let stats = records(&out, "stats");
    let count = |p: &str| stats.iter().filter(|s| s["predictor"] == p).count();
    // The first predictions of each window come from the fallback, the rest from its model.
    assert!(
        count("fallback") > 0 && count("learned") > count("fallback"),
        "{} fallback, {} learned",
        count("fallback"),
        count("learned")
    );
    // Every prediction is finite and at least the observed size, with an interval once the
    // window has calibration residuals.
    for s in &stats {
        assert!(s["n_pred"].as_f64().unwrap() >= s["n_obs"].as_f64().unwrap(), "{s}");
        if let Some(i) = s["interval"].as_object() {
            assert!(
                i["low"].as_f64().unwrap() <= s["n_pred"].as_f64().unwrap()
                    && s["n_pred"].as_f64().unwrap() <= i["high"].as_f64().unwrap(),
                "{s}"
            );
        }
    }
    assert!(stats.iter().filter(|s| !s["interval"].is_null()).count() >= 100, "most predictions have an interval");
}
