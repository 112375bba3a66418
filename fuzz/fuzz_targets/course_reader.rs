//! The course-layout reader (`io::files::parse_course`, what `read_course` calls) on
//! arbitrary bytes: the data CSV is the input up to its first NUL byte, the index CSV the
//! rest. An error names one of the two files, a success holds valid cascades.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tweetoscope::io::files::parse_course;
use tweetoscope::io::wire::{MAX_MAGNITUDE, MAX_TIME};

fuzz_target!(|data: &[u8]| {
    let (csv, index) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"start_ind,end_ind\n1,1\n"[..]),
    };
    match parse_course(Path::new("d.csv"), csv, Path::new("i.csv"), index) {
        Ok(ds) => {
            assert!(!ds.cascades.is_empty());
            for c in &ds.cascades {
                assert_eq!(c.events.first().map(|e| e.0), Some(0));
                assert!(c.events.windows(2).all(|w| w[0].0 <= w[1].0));
                assert!(c.events.iter().all(|&(t, m)| (t as f64) <= MAX_TIME && m.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&m)));
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("d.csv:") || e.starts_with("i.csv:"), "{e}");
        }
    }
});
