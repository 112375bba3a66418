//! The SEISMIC raw reader (`io::files::parse_seismic`, what `read_dataset` calls per file)
//! on arbitrary bytes: an error names the file and a line, a success is a valid cascade.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tweetoscope::io::files::parse_seismic;
use tweetoscope::io::wire::{MAX_MAGNITUDE, MAX_TIME};

fuzz_target!(|data: &[u8]| {
    match parse_seismic(Path::new("RT1.txt"), data, 1) {
        Ok(c) => {
            assert_eq!(c.events.first().map(|e| e.0), Some(0));
            assert!(c.events.windows(2).all(|w| w[0].0 <= w[1].0));
            assert!(c.events.iter().all(|&(t, m)| (t as f64) <= MAX_TIME && m.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&m)));
        }
        Err(e) => assert!(e.to_string().starts_with("RT1.txt:"), "{e}"),
    }
});
