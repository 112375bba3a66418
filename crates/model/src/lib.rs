//! Pure numerics of Tweetoscope: no timely, no Kafka, no I/O.
//!
//! - [`hawkes`]: the marked Hawkes process with exponential kernel — likelihood, prior,
//!   MAP estimation (global optimum) and the final-size prediction.
//! - [`forest`]: the course mode's random-forest correction of the Hawkes prediction.
//! - [`predictive`]: the default mode's predictive layer (features, learner, online trainer,
//!   fallback, conformal intervals).
//! - [`stats`]: accuracy statistics (ARE, mean, median, quantiles).
//! - [`seismic`]: the SEISMIC baseline (Zhao et al., KDD 2015).
//! - [`simulate`]: synthetic cascades from the marked Hawkes model.
//!
//! Everything here is synchronous and deterministic so that it can be unit-tested and
//! benchmarked on its own, and called from the dataflow operators unchanged.

#![warn(missing_docs)]

pub mod forest;
pub mod hawkes;
pub mod predictive;
pub mod seismic;
pub mod simulate;
pub mod stats;
