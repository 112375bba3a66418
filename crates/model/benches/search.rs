//! Time of one training run of the learned layer with its hyper-parameter search
//! (`PredictiveModel::train`, default `LearnerSettings`: 2 offsets × 2 depths × 2 leaf sizes,
//! up to 300 boosted trees, 3 rolling-origin folds below 1,000 samples, one above) against the
//! number of samples.
//!
//! Why: a replay waits for each model (a model trained at t serves from t + `model_delay`), so
//! the searches are on the critical path of every run with the learned layer; on the
//! NEWS-sized stream they are most of the training time (BENCHMARKS.md, "Worker scaling").
//!
//! The samples are synthetic and seeded: 15 features of varied spread (like `log_n`, rates,
//! fitted parameters, SEISMIC's estimate), and a log-ratio target that depends on a few of
//! them with heavy-tailed noise. Synthetic features have as many distinct values as samples,
//! the histograms' worst case; the search's cost depends on that and on n, not on the values.
//!
//! The search runs its fits on rayon's pool: the figures are wall time on this machine's cores.

use criterion::{criterion_group, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::Duration;
use tweetoscope_model::predictive::{FeatureVector, LearnerSettings, PredictiveModel, N_FEATURES};

/// SplitMix64, as everywhere in this crate: the same samples on every machine.
fn next(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` samples (features, log-ratio target).
fn samples(n: usize, seed: u64) -> (Vec<FeatureVector>, Vec<f64>) {
    let mut s = seed;
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut row = [0.0; N_FEATURES];
        for (j, v) in row.iter_mut().enumerate() {
            *v = next(&mut s) * (1.0 + j as f64);
        }
        row[0] = (3.0 + 5.0 * next(&mut s)).ln(); // log n_obs
        let noise = if next(&mut s) < 0.1 { 3.0 * next(&mut s) } else { 0.3 * (next(&mut s) - 0.5) };
        let target = 0.4 * row[2] + if row[5] > 3.0 { 0.8 } else { 0.1 } + 0.05 * row[9] + noise;
        x.push(row);
        y.push(target.max(0.0));
    }
    (x, y)
}

fn bench_search(c: &mut Criterion) {
    let settings = LearnerSettings::default();
    let mut group = c.benchmark_group("learned_search");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [100usize, 500, 2_000] {
        let (x, y) = samples(n, 7);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(PredictiveModel::train(&x, &y, &settings, 11).expect("trains")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_search);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
