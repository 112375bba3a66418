//! The command line as a user runs it.

mod common;

use common::*;

#[test]
fn embedded_default_prints_a_table_per_window_and_writes_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    // No subcommand, no input: the bundled sample, from any working directory.
    let out = run_ok(binary().current_dir(dir.path()).arg("--summary").arg(&summary));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("T_obs"), "{table}");
    for w in ["600", "1200"] {
        assert!(table.lines().any(|l| l.trim_start().starts_with(w)), "no row for {w}:\n{table}");
    }
    assert!(table.contains("298227 events"), "{table}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let windows = v["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    for w in windows {
        assert_eq!(w["cascades"], 80);
        assert_eq!(w["predictions"], 80);
        for key in ["are_hawkes", "are"] {
            let median = w[key]["median"].as_f64().unwrap();
            assert!(median.is_finite() && median > 0.0 && median < 5.0, "{key} median {median}");
        }
    }
    assert_eq!(v["events"], 298227);
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn with_no_arguments_the_embedded_default_runs() {
    let out = run_ok(&mut binary());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1200"));
}

#[test]
fn run_reads_the_course_layout_like_the_raw_layout_apart_from_start_times() {
    let root = root().join("data/seismic-tideh100");
    let out = run_ok(
        binary().args(["run", "--input"]).arg(root.join("cascades-data.csv")).arg("--index").arg(root.join("cascades-index.csv")),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("298227 events"));
}

#[test]
fn malformed_input_names_the_file_and_line_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let index = dir.path().join("index.csv");
    std::fs::write(&data, "time,magnitude\n0,10\n3,lots\n").unwrap();
    std::fs::write(&index, "start_ind,end_ind\n1,2\n").unwrap();
    let out = binary().args(["run", "--input"]).arg(&data).arg("--index").arg(&index).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data.csv:3") && err.contains("magnitude"), "{err}");
}

#[test]
fn fit_prints_one_json_line_per_cascade() {
    let out = run_ok(binary().args(["fit", "--input"]).arg(bundled_sample()).args(["--t-obs", "600"]));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 80);
    assert_eq!(lines[0]["cascade"], 1);
    let second = &lines[1];
    for key in ["n", "p", "beta", "n_star", "G1", "N_pred", "objective"] {
        assert!(second[key].is_number(), "missing {key}: {second}");
    }
    assert_eq!(second["n"], 29, "cascade 2 has 29 events by 600 s");
}

#[test]
fn unknown_config_keys_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[pipeline]\nwindowz = [600]\n").unwrap();
    let out = binary().arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("windowz"));
}
