//! The live page in a real headless Chromium (Debian's `chromium`, started here): during a
//! paced replay the page shows the cascades, uPlot charts and alerts; sorting, filtering and
//! the drill-down into a cascade work; no script error; its content updates between two
//! loads; a screenshot is saved as a test artifact, `target/test-artifacts/page.png`.
//!
//! When Chromium is not installed the test fails and says to run `scripts/ops install`
//! (scripts/test does). Every child is killed at the end, also on failure; every wait is
//! bounded; everything is on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{artifacts, free_port, require};

const BIN: &str = env!("CARGO_BIN_EXE_tweetoscope");
/// Every wait of this test is bounded by this.
const WAIT: Duration = Duration::from_secs(90);
/// The replay's pace: the bundled month of event time in about 2 min; predictions keep coming
/// for the first 30 s or so, long enough to load the page twice while they do.
const PACE: &str = "20000";

/// Kills (and reaps) the child when dropped, whatever happened.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// Runs headless Chromium on `url` with `extra` arguments (a fresh profile each time) and
/// returns its stdout; killed after 60 s.
fn chromium(chromium: &Path, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = std::fs::File::create(artifacts("").join("chromium.log")).unwrap();
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--enable-logging=stderr")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err)
        .spawn()
        .expect("starting chromium");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "chromium failed ({status}); see {}", artifacts("").join("chromium.log").display());
            break;
        }
        assert!(Instant::now() < deadline, "chromium did not finish in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The DOM after the page's scripts ran for a few (virtual) seconds.
fn dump_dom(browser: &Path, url: &str) -> String {
    chromium(browser, url, &["--virtual-time-budget=3000".into(), "--dump-dom".into()])
}

/// The prediction count of the page's status line ("N predictions · …").
fn status_predictions(dom: &str) -> u64 {
    let status = dom.split("id=\"status\"").nth(1).expect("a status line");
    let text = &status[status.find('>').unwrap() + 1..];
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in the status: {}", &text[..80.min(text.len())]))
}

/// The cascade ids of the table's rows, in the order shown.
fn table_cascades(dom: &str) -> Vec<String> {
    let body = dom.split("<table id=\"cascades\">").nth(1).expect("the cascades table");
    let body = &body[..body.find("</table>").unwrap()];
    body.split("<tr data-cascade=\"").skip(1).map(|r| r[..r.find('"').unwrap()].to_owned()).collect()
}

/// The table's rows (as HTML), in order.
fn table_rows(dom: &str) -> Vec<String> {
    let body = dom.split("<table id=\"cascades\">").nth(1).expect("the cascades table");
    let body = &body[..body.find("</table>").unwrap()];
    body.split("<tr data-cascade=").skip(1).map(|r| r[..r.find("</tr>").unwrap_or(r.len())].to_owned()).collect()
}

/// Fails on a script error: the page's own banner, or an uncaught error in Chromium's log.
fn assert_no_script_error(dom: &str) {
    assert!(!dom.contains("id=\"script-error\""), "the page reported a script error:\n{dom}");
    let log = std::fs::read_to_string(artifacts("").join("chromium.log")).unwrap_or_default();
    let errors: Vec<&str> =
        log.lines().filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error"))).collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn the_live_page_sorts_filters_drills_down_and_updates() {
    let browser = require("chromium");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The course's thresholds, so that the sample raises alerts of both severities.
    let embedded = std::fs::read_to_string(common::root().join("dataflows/embedded.toml")).unwrap();
    let config = common::with_course_alert_thresholds(&embedded);
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let log = std::fs::File::create(artifacts("").join("page-tweetoscope.log")).unwrap();
    let replay = Command::new(BIN)
        .args(["--pace", PACE, "--serve", "--config", "config.toml", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting tweetoscope");
    let mut replay = Killed(replay);
    let url = format!("http://127.0.0.1:{port}/");

    // Until the state has a few cascades, an alert and ARE points (the first cascades ended).
    let deadline = Instant::now() + WAIT;
    let state = loop {
        if let Some(status) = replay.0.try_wait().unwrap() {
            panic!("tweetoscope exited early ({status})");
        }
        if let Some(state) = get(port, "/api/state").ok().and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok()) {
            let points =
                state["are_series"].as_object().map(|s| s.values().filter_map(|v| v.as_array()).map(Vec::len).sum::<usize>());
            let cascades = state["cascades"].as_array().map_or(0, Vec::len);
            if cascades >= 5 && points.unwrap_or(0) >= 1 && state["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                break state;
            }
        }
        assert!(Instant::now() < deadline, "no cascades, alerts and ARE points in /api/state after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(state["job"]["state"], "replaying", "{}", state["job"]);

    let first = dump_dom(&browser, &url);
    assert_no_script_error(&first);
    assert!(first.contains("class=\"uplot"), "no uPlot chart:\n{first}");
    assert!(!table_cascades(&first).is_empty(), "no table rows:\n{first}");
    let before = status_predictions(&first);
    assert!(before > 0, "{first}");
    assert!(first.contains("href=\"/metrics\"") && first.contains("Grafana dashboard"), "links to /metrics and Grafana");

    // Sorting by cascade id, ascending (a deep link does what a click on the header does).
    let sorted = dump_dom(&browser, &format!("{url}?sort=cascade&asc=1"));
    assert_no_script_error(&sorted);
    let ids: Vec<u128> = table_cascades(&sorted).iter().map(|c| c.parse().unwrap()).collect();
    assert!(ids.len() >= 2 && ids.windows(2).all(|w| w[0] < w[1]), "not sorted by cascade: {ids:?}");

    // Filtering: critical alerts only.
    let critical = dump_dom(&browser, &format!("{url}?alert=critical"));
    assert_no_script_error(&critical);
    let rows = table_rows(&critical);
    assert!(rows.iter().all(|r| r.contains("sev critical")), "a non-critical row passed the filter: {rows:?}");
    assert!(rows.len() < table_cascades(&first).len().max(rows.len() + 1), "the filter kept every row");

    // Drill-down into the top cascade: every model's prediction per window, the curve.
    let top = state["cascades"][0]["cascade"].as_str().unwrap().to_owned();
    let detail = dump_dom(&browser, &format!("{url}?cascade={top}"));
    assert_no_script_error(&detail);
    let section = detail.split("<section id=\"detail\"").nth(1).expect("the detail section");
    assert!(!section.starts_with(" hidden"), "the detail is hidden:\n{section}");
    assert!(
        section.contains(&format!("Cascade {top}"))
            && section.contains("seismic_corrected")
            && section.contains("<th>hawkes</th>"),
        "{section}"
    );
    assert!(
        section.contains("id=\"chart-cascade\"") && section.contains("class=\"uplot"),
        "no events-over-time chart:\n{section}"
    );

    // A second load a few seconds later shows more predictions (the replay goes on).
    std::thread::sleep(Duration::from_secs(3));
    let second = dump_dom(&browser, &url);
    assert_no_script_error(&second);
    let after = status_predictions(&second);
    assert!(after > before, "the page did not update: {before} then {after} predictions");

    // The screenshot, as a test artifact.
    let png = artifacts("").join("page.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &browser,
        &format!("{url}?cascade={top}"),
        &["--virtual-time-budget=3000".into(), format!("--screenshot={}", png.display()), "--window-size=1280,1400".into()],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.len() > 10_000, "suspiciously small screenshot ({} bytes)", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (width, height) =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((width, height), (1280, 1400));
    eprintln!("screenshot: {}", png.display());
}
