//! The output files are byte-identical whatever the number of workers and processes.

mod common;

use common::*;

#[test]
fn outputs_are_identical_for_1_2_4_workers_and_2_processes() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    for w in ["1", "2", "4"] {
        run_ok(binary().args(["run", "--input"]).arg(bundled_sample()).args(["-w", w, "--out"]).arg(out(&format!("w{w}"))));
    }
    // Two processes on loopback, each with two workers, through a hostfile.
    let ports = free_ports(2);
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let spawn = |p: &str| {
        binary()
            .args(["run", "--input"])
            .arg(bundled_sample())
            .args(["-w", "2", "-n", "2", "-p", p, "--hostfile"])
            .arg(&hostfile)
            .arg("--out")
            .arg(out("n2"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    for (i, child) in [p0, p1].into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "process {i} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    for other in ["w2", "w4", "n2"] {
        assert_same_outputs(&out("w1"), &out(other));
    }
    // And the outputs are not trivially empty.
    let stats = std::fs::read_to_string(out("w1").join("stats.jsonl")).unwrap();
    assert_eq!(stats.lines().count(), 160, "one stat per cascade and window");
}
