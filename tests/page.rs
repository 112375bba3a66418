//! The live page in a real headless Chromium (Debian's `chromium`, started here): during a
//! paced replay the page shows table rows and the ARE chart, its content updates between two
//! loads, and a screenshot is saved as a test artifact, `target/test-artifacts/page.png`.
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
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count in the status: {}", &text[..80.min(text.len())]))
}

fn table_rows(dom: &str) -> usize {
    let body = dom.split("<tbody>").nth(1).expect("the table body");
    body[..body.find("</tbody>").unwrap()].matches("<tr>").count()
}

#[test]
fn the_live_page_shows_rows_and_the_chart_and_updates() {
    let browser = require("chromium");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(artifacts("").join("page-tweetoscope.log")).unwrap();
    let replay = Command::new(BIN)
        .args(["--pace", PACE, "--serve", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting tweetoscope");
    let mut replay = Killed(replay);
    let url = format!("http://127.0.0.1:{port}/");

    // Until the state has rows and ARE points (the first cascades terminated).
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = replay.0.try_wait().unwrap() {
            panic!("tweetoscope exited early ({status})");
        }
        if let Ok(body) = get(port, "/api/state") {
            if let Ok(state) = serde_json::from_str::<serde_json::Value>(&body) {
                let points = state["are_series"].as_object().map(|s| s.values().filter_map(|v| v.as_array()).map(Vec::len).sum::<usize>());
                if state["top"].as_array().is_some_and(|t| !t.is_empty()) && points.unwrap_or(0) >= 2 {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "no rows and ARE points in /api/state after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let first = dump_dom(&browser, &url);
    assert!(first.contains("<svg id=\"chart\""), "{first}");
    assert!(table_rows(&first) >= 1, "no table rows:\n{first}");
    assert!(first.contains("<path class=\"series\""), "no chart series:\n{first}");
    let before = status_predictions(&first);
    assert!(before > 0, "{first}");

    // A second load a few seconds later shows more predictions (the replay goes on).
    std::thread::sleep(Duration::from_secs(3));
    let second = dump_dom(&browser, &url);
    let after = status_predictions(&second);
    assert!(after > before, "the page did not update: {before} then {after} predictions");
    assert!(table_rows(&second) >= table_rows(&first));
    assert!(second.contains("<path class=\"series\""));

    // The screenshot, as a test artifact.
    let png = artifacts("").join("page.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &browser,
        &url,
        &["--virtual-time-budget=3000".into(), format!("--screenshot={}", png.display()), "--window-size=1280,900".into()],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.len() > 10_000, "suspiciously small screenshot ({} bytes)", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (width, height) = (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((width, height), (1280, 900));
    eprintln!("screenshot: {}", png.display());
}
