//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled sample (SEISMIC raw layout).
pub fn bundled_sample() -> PathBuf {
    root().join("data/seismic-tideh100/raw/training")
}

/// The `tweetoscope` binary built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tweetoscope"))
}

/// Runs a command, failing the test with its stderr when it does not exit 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the binary starts");
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that two output folders hold byte-identical files, naming the first difference.
pub fn assert_same_outputs(a: &Path, b: &Path) {
    assert_same_files(a, b, 6);
}

/// Asserts that folder `a` holds `count` files and `b` byte-identical ones, naming the first
/// difference.
pub fn assert_same_files(a: &Path, b: &Path, count: usize) {
    let mut names: Vec<_> = std::fs::read_dir(a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), count, "expected {count} files in {}", a.display());
    for name in names {
        let (x, y) = (std::fs::read(a.join(&name)).unwrap(), std::fs::read(b.join(&name)).unwrap());
        if x != y {
            let (xl, yl): (Vec<_>, Vec<_>) = (x.split(|c| *c == b'\n').collect(), y.split(|c| *c == b'\n').collect());
            let line = xl.iter().zip(&yl).position(|(p, q)| p != q).unwrap_or(xl.len().min(yl.len()));
            panic!(
                "{:?} differs between {} and {} (lines: {} vs {}), first at line {}:\n  {}\n  {}",
                name,
                a.display(),
                b.display(),
                xl.len(),
                yl.len(),
                line + 1,
                String::from_utf8_lossy(xl.get(line).unwrap_or(&&b""[..])).chars().take(300).collect::<String>(),
                String::from_utf8_lossy(yl.get(line).unwrap_or(&&b""[..])).chars().take(300).collect::<String>(),
            );
        }
    }
}

/// Free loopback TCP ports (bound then released; good enough for a test on one machine).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// `target/test-artifacts/<sub>` (created): screenshots and logs a failing test points to.
pub fn artifacts(sub: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_owned();
    let dir = target.join("test-artifacts").join(sub);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// The path of an installed program, or a failure telling how to install it (never a skip).
pub fn require(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not installed: run scripts/ops install (scripts/test does)"))
}

/// One free loopback TCP port.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A dataflow config's text with the course's alert thresholds (warning 150, critical 1,000)
/// instead of its own: the bundled sample then raises alerts of both severities (the
/// defaults raise a few only).
pub fn with_course_alert_thresholds(config: &str) -> String {
    config
        .lines()
        .map(|l| {
            if l.starts_with("alert_threshold") {
                "alert_threshold = 150.0"
            } else if l.starts_with("alert_critical") {
                "alert_critical = 1000.0"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
