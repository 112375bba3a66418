//! `wire::decode` (the `tweets` topic decoder) and `wire::judge_time` on arbitrary bytes.
//! Input layout: byte 0 picks the key (bit 7 set: no key; else its low 5 bits are the key
//! length), then the key bytes, then the payload (empty input: no payload).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tweetoscope::io::wire::{decode, judge_time, MAX_MAGNITUDE, MAX_TIME};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        assert!(decode(Some(b"1"), None, 0, 65_536).is_err());
        return;
    };
    let (key, payload) = if first & 0x80 != 0 {
        (None, rest)
    } else {
        let k = usize::from(first & 0x1f).min(rest.len());
        (Some(&rest[..k]), &rest[k..])
    };
    match decode(key, Some(payload), 7, 4096) {
        Ok(e) => {
            // What reaches the pipeline is always in range: no NaN, no infinity.
            assert!((e.time as f64) <= MAX_TIME.round());
            assert!(e.magnitude.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&e.magnitude));
            assert_eq!(e.seq, 7);
            for newest in [None, Some(0), Some(e.time), Some(u64::MAX)] {
                if let Ok(n) = judge_time(e.time, newest, 600, 86_400) {
                    assert!(n >= e.time && newest.is_none_or(|m| n >= m));
                }
            }
        }
        Err(err) => assert!(!err.detail.is_empty() || payload.is_empty()),
    }
});
