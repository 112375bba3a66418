//! `--report DIR`: report.md and SVG plots from a run's outputs.

mod common;

use common::*;

fn check_report(dir: &std::path::Path) -> String {
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md written");
    for t in ["600", "1200"] {
        for m in ["default", "hawkes", "course", "seismic", "seismic_corrected"] {
            let prefix = format!("| {t} | {m} |");
            assert!(md.lines().any(|l| l.starts_with(&prefix)), "no row for {t} {m}:\n{md}");
        }
        assert!(md.contains(&format!("T_obs = {t}: on median ARE")), "no verdict for {t}:\n{md}");
    }
    // Every linked plot exists and is an SVG document.
    let links: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("- [")).filter_map(|l| l.split("](").nth(1)).collect();
    assert!(links.len() >= 6, "{md}");
    for link in links {
        let file = link.trim_end_matches(')');
        assert!(file.ends_with(".svg"), "{file}");
        let svg = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(svg.trim_start().starts_with("<svg"), "{file} does not start with <svg");
        assert!(svg.trim_end().ends_with("</svg>"), "{file} is not a closed SVG document");
    }
    md
}

#[test]
fn run_with_report_writes_markdown_and_plots_from_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    run_ok(binary().arg("run").arg("--input").arg(bundled_sample()).arg("--report").arg(&report).args(["--metrics-addr", "off"]));
    // Without --out, the outputs go to DIR/outputs.
    assert!(report.join("outputs/stats.jsonl").exists());
    let md = check_report(&report);
    // The bundled sample has 80 cascades per window.
    assert!(md.contains("| 600 | default | 80 |"), "{md}");
}

#[test]
fn the_embedded_default_takes_report_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out"), dir.path().join("report"));
    run_ok(binary().current_dir(dir.path()).args(["--metrics-addr", "off"]).arg("--out").arg(&out).arg("--report").arg(&report));
    assert!(out.join("stats.jsonl").exists());
    assert!(!report.join("outputs").exists());
    check_report(&report);
}

#[test]
fn on_simulated_data_the_report_gives_parameter_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, report) = (dir.path().join("sim"), dir.path().join("report"));
    let sizes = root().join("tests/data/tweetoscope-news-index/news-index.csv");
    run_ok(
        binary()
            .arg("simulate")
            .arg("--out")
            .arg(&sim)
            .args(["--cascades", "150", "--seed", "5"])
            .arg("--match-sizes")
            .arg(&sizes),
    );
    run_ok(
        binary()
            .arg("run")
            .arg("--input")
            .arg(sim.join("cascades-data.csv"))
            .arg("--index")
            .arg(sim.join("cascades-index.csv"))
            .arg("--report")
            .arg(&report)
            .arg("--truth")
            .arg(sim.join("truth.csv"))
            .args(["--metrics-addr", "off"]),
    );
    let md = check_report(&report);
    assert!(md.contains("## Parameter recovery"), "{md}");
    let recovery = md.split("## Parameter recovery").nth(1).unwrap().split("## Plots").next().unwrap();
    for t in ["600", "1200"] {
        assert!(recovery.lines().any(|l| l.starts_with(&format!("| {t} | "))), "no recovery row for {t}:\n{md}");
    }
    assert!(report.join("recovery_n_star.svg").exists());
}
