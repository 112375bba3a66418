//! Tweetoscope: real-time tweet popularity prediction on timely dataflow.
//!
//! Layers, top to bottom (data flows one way, the pure parts at the bottom):
//! - [`cli`]: command-line parsing; the binary is a thin shell around it.
//! - [`pipeline`]: runs a job (a source, the dataflow, sinks) on timely workers.
//! - [`dataflow`]: the stages as thin timely operators.
//! - [`io`]: file readers and JSON-lines writers.
//! - [`cascade`], [`replay`], [`summary`]: synchronous cores (no timely, no I/O).
//! - `tweetoscope_model` (crate `crates/model`): Hawkes, forest, statistics — pure numerics.
//! - [`config`], [`messages`]: configuration and record types shared by all.

pub mod alertmanager;
pub mod cascade;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dataflow;
pub mod generate;
pub mod http;
pub mod io;
pub mod k8s;
pub mod latency;
pub mod live;
pub mod messages;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod simulation;
pub mod summary;
pub mod telemetry;
pub mod wire;

/// Event time: seconds on the global timeline of the input (the timely timestamp).
pub type Time = u64;

/// SplitMix64's finaliser: a fast, well-mixed, process-independent 64-bit hash.
///
/// Written by hand because it is five lines, and because sharding and seeds must never
/// change with a dependency's version (outputs are compared byte for byte across runs).
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The exchange key of a cascade: all of its events meet on one worker. Raw ids are
/// sequence-like in their low bits, so they are mixed first (timely routes by low bits).
pub fn shard_of(cascade: messages::CascadeId) -> u64 {
    mix64(cascade)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_spread_sequential_ids() {
        let mut counts = [0usize; 4];
        for id in 0..4000u64 {
            counts[(shard_of(id) & 3) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }
}
