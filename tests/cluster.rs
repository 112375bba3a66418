//! A cluster by hand, as the README's "Kafka and a cluster by hand" runs it: the recipe with
//! `--out` on process 0 only gives one process's outputs, processes that disagree refuse to
//! run with one line naming the difference, start-up is bounded (a missing peer, a taken
//! port), a peer that dies ends the others with one line, and a signal ends every process
//! within 5 s with 128 + the signal. Every process runs on loopback under a guard that
//! kills it if a test fails, and every wait is bounded.

mod common;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use common::*;

/// The processes of one test's cluster, with their logs; dropping it kills what still runs.
struct Procs {
    /// Logs, hostfile, configs.
    dir: tempfile::TempDir,
    /// The hostfile's ports, by process.
    ports: Vec<u16>,
    /// Running processes: (name, child).
    children: Vec<(String, Child)>,
}

impl Procs {
    /// A two-process hostfile on free loopback ports.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2);
        std::fs::write(dir.path().join("hosts"), ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
        Self { dir, ports, children: Vec::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn hostfile(&self) -> PathBuf {
        self.path("hosts")
    }

    fn address(&self, p: usize) -> String {
        format!("127.0.0.1:{}", self.ports[p])
    }

    /// Starts `tweetoscope ARGS` as `name`, stdout and stderr to files named after it.
    fn spawn(&mut self, name: &str, args: Vec<OsString>) -> u32 {
        self.spawn_with(name, args, &[])
    }

    fn spawn_with(&mut self, name: &str, args: Vec<OsString>, env: &[(&str, &str)]) -> u32 {
        let out = std::fs::File::create(self.path(&format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.path(&format!("{name}.err"))).unwrap();
        let child = binary().args(&args).envs(env.iter().copied()).stdout(out).stderr(err).spawn().unwrap();
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    /// What `name` printed on stderr so far.
    fn stderr(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.err"))).unwrap_or_default()
    }

    /// Waits (at most `limit`) for `name` to exit; fails with its stderr otherwise.
    fn wait(&mut self, name: &str, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let i = self.children.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("no process {name}"));
        loop {
            if let Some(status) = self.children[i].1.try_wait().unwrap() {
                self.children.remove(i);
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                panic!("{name} still runs after {limit:?}; its stderr:\n{}\n{}", self.stderr(name), self.others(name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The other processes' stderr, for failure messages.
    fn others(&self, name: &str) -> String {
        self.children.iter().filter(|(n, _)| n != name).map(|(n, _)| format!("--- {n}:\n{}", self.stderr(n))).collect()
    }

    /// Waits (at most `limit`) until `name`'s stderr contains `text`.
    fn wait_for_stderr(&self, name: &str, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.stderr(name).contains(text) {
            assert!(
                started.elapsed() < limit,
                "{name} did not say {text:?} within {limit:?}; its stderr:\n{}",
                self.stderr(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines of `name`'s stderr that are errors (log lines of RUST_LOG=info aside).
    fn error_lines(&self, name: &str) -> Vec<String> {
        self.stderr(name).lines().filter(|l| l.contains("error")).map(str::to_owned).collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `run --input SAMPLE -n 2 -p P --hostfile HOSTFILE EXTRA…` (a README recipe line).
fn run_args(procs: &Procs, p: usize, extra: &[&str]) -> Vec<OsString> {
    let mut a = os(&["run", "--input"]);
    a.push(bundled_sample().into());
    a.extend(os(&["-n", "2", "-p", &p.to_string(), "--hostfile"]));
    a.push(procs.hostfile().into());
    a.extend(os(extra));
    a
}

/// Sends a signal to a process.
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Asserts `name` refused: a non-zero exit within 10 s, and exactly one stderr line, which
/// contains every `fragment`.
fn assert_refused(procs: &mut Procs, name: &str, fragments: &[&str]) -> String {
    let (status, took) = procs.wait(name, Duration::from_secs(10));
    let stderr = procs.stderr(name);
    assert!(!status.success(), "{name} exited with {status} but should refuse; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{name} should say one line (after {took:?}), said:\n{stderr}");
    for f in fragments {
        assert!(lines[0].contains(f), "{name}'s line does not name {f:?}: {}", lines[0]);
    }
    lines[0].to_owned()
}

/// The embedded config with one line replaced.
fn embedded_with(procs: &Procs, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("dataflows/embedded.toml")).unwrap();
    assert!(text.contains(from), "embedded.toml has no {from:?}");
    let path = procs.path(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn the_readme_run_recipe_with_out_on_process_0_only_gives_the_outputs_of_one_process() {
    let mut procs = Procs::new();
    let one = procs.path("one");
    run_ok(binary().args(["run", "--input"]).arg(bundled_sample()).arg("--out").arg(&one).args(["--metrics-addr", "off"]));
    // README: `tweetoscope run --input DIR -n 2 -p 0 -h hosts --out /tmp/o &` and the same
    // without --out for process 1 (they used to wait on each other for ever).
    let out = procs.path("o");
    let mut a0 = run_args(&procs, 0, &["--out"]);
    a0.push(out.clone().into());
    procs.spawn("p0", a0);
    procs.spawn("p1", run_args(&procs, 1, &[]));
    for name in ["p0", "p1"] {
        let (status, _) = procs.wait(name, Duration::from_secs(60));
        assert!(status.success(), "{name} exited with {status}:\n{}", procs.stderr(name));
    }
    assert_same_outputs(&one, &out);
    assert!(std::fs::read_to_string(procs.path("p0.out")).unwrap().contains("T_obs"), "process 0 prints the table");
    assert!(procs.stderr("p1").contains("process 0 prints the summary"), "{}", procs.stderr("p1"));
}

#[test]
fn processes_with_other_windows_refuse_naming_the_key_and_both_values() {
    let mut procs = Procs::new();
    let config = embedded_with(&procs, "w600.toml", "windows = [600, 1200]", "windows = [600]");
    procs.spawn("p0", run_args(&procs, 0, &["--metrics-addr", "off"]));
    let mut a1 = run_args(&procs, 1, &["--metrics-addr", "off", "--config"]);
    a1.push(config.into());
    procs.spawn("p1", a1);
    let (a0, a1) = (procs.address(0), procs.address(1));
    let line = assert_refused(&mut procs, "p0", &[&format!("process 1 ({a1}) has another config"), "pipeline.windows"]);
    assert!(line.contains("[600] there vs [600, 1200] here"), "{line}");
    let line = assert_refused(&mut procs, "p1", &[&format!("process 0 ({a0}) has another config"), "pipeline.windows"]);
    assert!(line.contains("[600, 1200] there vs [600] here"), "{line}");
}

#[test]
fn processes_with_another_config_value_refuse_naming_it() {
    let mut procs = Procs::new();
    let config = embedded_with(&procs, "t_end.toml", "t_end = 1800", "t_end = 3600");
    let mut a0 = run_args(&procs, 0, &["--metrics-addr", "off", "--config"]);
    a0.push(config.into());
    procs.spawn("p0", a0);
    procs.spawn("p1", run_args(&procs, 1, &["--metrics-addr", "off"]));
    assert_refused(&mut procs, "p0", &["process 1", "has another config: pipeline.t_end 1800 there vs 3600 here"]);
    assert_refused(&mut procs, "p1", &["process 0", "has another config: pipeline.t_end 3600 there vs 1800 here"]);
}

#[test]
fn processes_with_another_worker_count_input_or_pace_refuse() {
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("-w", vec!["-w", "2"], "has another -w: 2 there vs 1 here"),
        ("--pace", vec!["--pace", "1000"], "has another --pace"),
        ("input", vec![], "has another input"),
    ];
    for (what, extra, expected) in cases {
        let mut procs = Procs::new();
        procs.spawn("p0", run_args(&procs, 0, &["--metrics-addr", "off"]));
        let mut a1 = run_args(&procs, 1, &["--metrics-addr", "off"]);
        a1.extend(os(&extra));
        if what == "input" {
            // Another dataset: the first cascade file only.
            let single = std::fs::read_dir(bundled_sample()).unwrap().map(|e| e.unwrap().path()).min().unwrap();
            a1[2] = single.into();
        }
        procs.spawn("p1", a1);
        assert_refused(&mut procs, "p0", &["process 1", expected]);
        assert_refused(&mut procs, "p1", &["process 0"]);
    }
}

#[test]
fn a_missing_peer_ends_start_up_at_the_deadline_naming_it_and_its_address() {
    // Process 1 never starts: process 0 waits for its connection.
    let mut procs = Procs::new();
    procs.spawn("p0", run_args(&procs, 0, &["--metrics-addr", "off", "--connect-timeout", "2"]));
    let a1 = procs.address(1);
    assert_refused(&mut procs, "p0", &[&format!("process 1 ({a1}) did not connect within 2 s")]);
    // Process 0 never starts: process 1 dials it in vain.
    let mut procs = Procs::new();
    procs.spawn("p1", run_args(&procs, 1, &["--metrics-addr", "off", "--connect-timeout", "2"]));
    let a0 = procs.address(0);
    assert_refused(&mut procs, "p1", &[&format!("process 0 ({a0}) did not answer within 2 s"), "refused"]);
}

#[test]
fn the_start_up_deadline_is_a_minute_unless_shortened() {
    // The default itself (60 s) is a unit test of Cluster; here: without the flag, a lone
    // process is still waiting after 3 s, and says nothing meanwhile.
    let mut procs = Procs::new();
    let pid = procs.spawn("p0", run_args(&procs, 0, &["--metrics-addr", "off"]));
    std::thread::sleep(Duration::from_secs(3));
    assert!(procs.children[0].1.try_wait().unwrap().is_none(), "exited early: {}", procs.stderr("p0"));
    assert_eq!(procs.stderr("p0"), "", "a waiting process says nothing");
    // SIGTERM while connecting ends it within 5 s with 143.
    signal(pid, "TERM");
    let (status, took) = procs.wait("p0", Duration::from_secs(5));
    assert_eq!(status.code(), Some(143), "{}", procs.stderr("p0"));
    assert!(procs.stderr("p0").contains("stopped by SIGTERM while connecting"), "{} (after {took:?})", procs.stderr("p0"));
}

#[test]
fn a_taken_port_is_named_with_its_address() {
    let mut procs = Procs::new();
    let taken = std::net::TcpListener::bind(procs.address(0)).unwrap();
    procs.spawn("p0", run_args(&procs, 0, &["--metrics-addr", "off"]));
    let a0 = procs.address(0);
    assert_refused(&mut procs, "p0", &[&format!("cannot listen on {a0}"), "in use"]);
    drop(taken);
}

/// Starts the two processes of a paced replay (about a minute long) and waits until both
/// have connected (their RUST_LOG=info line).
fn running_cluster(procs: &mut Procs) -> (u32, u32) {
    let env = [("RUST_LOG", "tweetoscope::pipeline=info")];
    let paced = ["--metrics-addr", "off", "--pace", "20000"];
    let p0 = procs.spawn_with("p0", run_args(procs, 0, &paced), &env);
    let p1 = procs.spawn_with("p1", run_args(procs, 1, &paced), &env);
    for name in ["p0", "p1"] {
        procs.wait_for_stderr(name, "every process of the cluster is connected and agrees", Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(500)); // the dataflow is running
    (p0, p1)
}

#[test]
fn a_peer_that_dies_mid_run_ends_the_others_with_one_line_naming_it() {
    let mut procs = Procs::new();
    let (_, p1) = running_cluster(&mut procs);
    signal(p1, "KILL");
    procs.wait("p1", Duration::from_secs(5));
    let (status, took) = procs.wait("p0", Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", procs.stderr("p0"));
    let stderr = procs.stderr("p0");
    assert!(!stderr.contains("panicked") && !stderr.contains("timely communication"), "raw panic printed:\n{stderr}");
    let errors = procs.error_lines("p0");
    let expected = format!("error: process 1 ({}) closed its connection", procs.address(1));
    assert_eq!(errors, vec![expected], "after {took:?}, stderr:\n{stderr}");
}

#[test]
fn a_signal_to_one_process_ends_every_process_within_5_s_with_its_exit_code() {
    for (target, sig, code) in [(0, "TERM", 143), (1, "INT", 130)] {
        let mut procs = Procs::new();
        let pids = running_cluster(&mut procs);
        signal(if target == 0 { pids.0 } else { pids.1 }, sig);
        let started = Instant::now();
        for name in ["p0", "p1"] {
            let (status, _) = procs.wait(name, Duration::from_secs(5).saturating_sub(started.elapsed()));
            assert_eq!(status.code(), Some(code), "{name} after SIG{sig} to process {target}:\n{}", procs.stderr(name));
            let expected = format!("process {target} received SIG{sig}");
            assert!(procs.stderr(name).contains(&expected), "{name} does not say {expected:?}:\n{}", procs.stderr(name));
        }
    }
}

#[test]
fn a_stop_that_cannot_drain_still_ends_within_5_s() {
    // Process 1 is frozen (SIGSTOP), so process 0's dataflow cannot drain after SIGTERM:
    // its stop deadline ends it. Thawed, process 1 finds the stop and the closed
    // connection and ends too, with the same exit code.
    let mut procs = Procs::new();
    let (p0, p1) = running_cluster(&mut procs);
    signal(p1, "STOP");
    signal(p0, "TERM");
    let (status, took) = procs.wait("p0", Duration::from_secs(5));
    assert_eq!(status.code(), Some(143), "{}", procs.stderr("p0"));
    assert!(took > Duration::from_secs(3), "ended after {took:?}: it could not have drained");
    signal(p1, "CONT");
    let (status, _) = procs.wait("p1", Duration::from_secs(5));
    assert_eq!(status.code(), Some(143), "{}", procs.stderr("p1"));
    assert!(!procs.stderr("p1").contains("panicked"), "{}", procs.stderr("p1"));
}
