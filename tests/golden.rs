//! The outputs of the bundled sample are the recorded ones (`tests/data/golden/bundled/`),
//! byte for byte: a refactoring must not change them, and a change of behaviour shows up
//! here as a reviewable diff of the golden files.
//!
//! `cascade_series.jsonl` (1.7 MB of raw events) and `models.jsonl` (0.7 MB of trees) are
//! recorded as their FNV-1a 64 digest and line count; the others in full. To record new goldens after an intended change of
//! behaviour, run the test with `TWEETOSCOPE_BLESS=1` and review `git diff tests/data/golden`.

mod common;

use std::path::Path;

use common::*;

/// FNV-1a, 64 bits: enough to notice any change of a file (not a security digest).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The topics recorded as digests (too large to keep in full).
const DIGESTED: [&str; 2] = ["cascade_series", "models"];

fn digest(file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    format!("{:016x} {}\n", fnv1a64(&bytes), bytes.iter().filter(|b| **b == b'\n').count())
}

#[test]
fn bundled_sample_outputs_are_the_recorded_goldens() {
    let golden = root().join("tests/data/golden/bundled");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_ok(binary().args(["run", "--metrics-addr", "off", "--input"]).arg(bundled_sample()).arg("--out").arg(&out));
    let bless = std::env::var_os("TWEETOSCOPE_BLESS").is_some();
    for name in DIGESTED {
        let (file, recorded) = (out.join(format!("{name}.jsonl")), golden.join(format!("{name}.fnv1a64")));
        let got = digest(&file);
        if bless {
            std::fs::write(&recorded, &got).unwrap();
        } else {
            let want = std::fs::read_to_string(&recorded).unwrap();
            assert_eq!(got, want, "{name}.jsonl differs from the recorded digest (digest, lines)");
        }
        std::fs::remove_file(&file).unwrap();
    }
    if bless {
        for name in ["alerts", "cascade_properties", "samples", "stats"] {
            let file = format!("{name}.jsonl");
            std::fs::copy(out.join(&file), golden.join(&file)).unwrap();
        }
        eprintln!("goldens recorded in {}: review `git diff tests/data/golden`", golden.display());
        return;
    }
    let expected = dir.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            std::fs::copy(&path, expected.join(path.file_name().unwrap())).unwrap();
        }
    }
    assert_same_files(&expected, &out, 4);
}
