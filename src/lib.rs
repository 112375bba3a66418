//! Tweetoscope: real-time tweet popularity prediction on timely dataflow.
//!
//! Layers, top to bottom (a module only uses the ones below it; `tests/architecture.rs`
//! checks there is no cycle and ARCHITECTURE.md draws the graph):
//! - [`commands`]: one file per subcommand; the binary only parses and dispatches.
//! - [`pipeline`]: runs a job (sources, the dataflow, sinks, recovery) on timely workers.
//! - [`dataflow`]: one folder per stage, each an I/O-free core and a thin timely operator.
//! - [`checkpoint`]: the generic checkpoint layer (stages implement its trait).
//! - [`observe`]: the run summary, the live views, the HTTP server, Alertmanager, reports.
//! - [`io`]: file readers, the wire codec, JSON-lines writers, Kafka clients, the output schema.
//! - [`telemetry`]: the named events stages emit and every Prometheus metric.
//! - [`config`], [`records`]: configuration and the records that flow between stages.
//! - `tweetoscope_model` (crate `crates/model`): Hawkes, forest, SEISMIC — pure numerics.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod dataflow;
pub mod io;
pub mod observe;
pub mod pipeline;
pub mod records;
pub mod telemetry;

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
pub fn shard_of(cascade: records::CascadeId) -> u64 {
    mix64(cascade)
}

/// Whether worker `index` of `peers` owns a record routed by `hash`: timely's exchange sends
/// a record to worker `hash % peers`. Sources, restored checkpoints and replays use it to
/// keep the records a worker's stages will see.
pub fn owns(hash: u64, index: usize, peers: usize) -> bool {
    (hash % peers as u64) as usize == index
}

/// An error followed by its causes, `context: cause: root cause`, for log lines (the binary
/// prints errors the same way, with anyhow's `{:#}`). Errors keep their cause out of their own
/// `Display` (it is their `source()`), so that each cause is printed once.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
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
