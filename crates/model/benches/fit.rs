//! Time of a Hawkes MAP fit (`HawkesModel::fit`, course prior) against the number of events.
//!
//! Real cascades of `data/seismic-tideh100`, truncated to their first n events, observed at
//! T = t_n: n = 10, 100 and 1,000 use all 80 cascades, n = 10,000 the two cascades that long.
//! No real cascade has 100,000 events, so that size tiles the inter-event gaps and magnitudes
//! of the first 10,000 events of the longest cascade (28) ten times.
//!
//! Criterion times one fit per iteration, cycling through the cascades of a size. After it, a
//! plain timing loop prints the median per-fit time over the cascades of each size and its
//! ratio to the course's SciPy Powell (34 ms at 100 events, 0.32 s at 1,000 events).

use criterion::{criterion_group, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tweetoscope_model::hawkes::{Event, HawkesModel, HawkesSettings};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/seismic-tideh100");

#[path = "../tests/support/mod.rs"]
mod support;

/// All cascades of the dataset, in file order.
fn cascades() -> Vec<Vec<Event>> {
    support::read_course_dataset(DATA)
}

/// Cascades of one size, each with its observation time T = t_n.
type Workload = Vec<(Vec<Event>, f64)>;

/// (n, cascades truncated to n events).
fn workloads() -> Vec<(usize, Workload)> {
    let all = cascades();
    let mut out = Vec::new();
    for n in [10usize, 100, 1_000, 10_000] {
        let set: Vec<(Vec<Event>, f64)> = all
            .iter()
            .filter(|c| c.len() >= n)
            .map(|c| {
                let ev = c[..n].to_vec();
                let t = ev[n - 1].t;
                (ev, t)
            })
            .collect();
        out.push((n, set));
    }
    // 100,000 events: the first 10,000 of the longest cascade, tiled (gaps and magnitudes).
    let longest = all.iter().max_by_key(|c| c.len()).unwrap();
    let base = &longest[..10_000];
    let mut tiled = Vec::with_capacity(100_000);
    let mut t = 0.0;
    for k in 0..100_000 {
        let i = k % base.len();
        if k > 0 {
            // the gap into event i (the gap into a tile's first event is its cascade's first gap)
            t += if i == 0 { base[1].t - base[0].t } else { base[i].t - base[i - 1].t };
        }
        tiled.push(Event { t, m: base[i].m });
    }
    let t_end = tiled[tiled.len() - 1].t;
    out.push((100_000, vec![(tiled, t_end)]));
    out
}

fn bench_fit(c: &mut Criterion) {
    let model = HawkesModel::new(HawkesSettings::course()).unwrap();
    let mut group = c.benchmark_group("fit");
    for (n, set) in workloads() {
        if n >= 10_000 {
            group.sample_size(10);
        } else {
            group.sample_size(50);
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
            let mut k = 0;
            b.iter(|| {
                let (ev, t) = &set[k % set.len()];
                k += 1;
                black_box(model.fit(black_box(ev), *t).unwrap())
            })
        });
    }
    group.finish();
}

/// Median per-fit time of one cascade: batches of repeated fits, median over batches.
fn time_one(model: &HawkesModel, ev: &[Event], t: f64) -> Duration {
    let once = {
        let start = Instant::now();
        black_box(model.fit(ev, t).unwrap());
        start.elapsed()
    };
    let reps = ((Duration::from_millis(2).as_nanos() / once.as_nanos().max(1)) as usize).clamp(1, 10_000);
    let mut batches: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(model.fit(black_box(ev), t).unwrap());
            }
            start.elapsed() / reps as u32
        })
        .collect();
    batches.sort();
    batches[batches.len() / 2]
}

fn summary() {
    let model = HawkesModel::new(HawkesSettings::course()).unwrap();
    println!("\nPer-fit time, median over cascades (each the median of 7 batches):");
    println!("{:>8} {:>9} {:>12} {:>12} {:>12}  vs course SciPy Powell", "n", "cascades", "median", "max", "sweeps(med)");
    for (n, set) in workloads() {
        let mut times: Vec<Duration> = set.iter().map(|(ev, t)| time_one(&model, ev, *t)).collect();
        let mut sweeps: Vec<usize> = set.iter().map(|(ev, t)| model.fit(ev, *t).unwrap().sweeps).collect();
        times.sort();
        sweeps.sort();
        let median = times[times.len() / 2];
        let python = match n {
            100 => Some(0.034),
            1_000 => Some(0.32),
            _ => None,
        };
        let ratio = python.map(|s| format!("{:.0}× faster than {} ms", s / median.as_secs_f64(), s * 1e3)).unwrap_or_default();
        println!(
            "{n:>8} {:>9} {:>12.2?} {:>12.2?} {:>12}  {ratio}",
            set.len(),
            median,
            times[times.len() - 1],
            sweeps[sweeps.len() / 2]
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_fit
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `--profile-time` (profiling under criterion) and `--list` skip the summary timing.
    if !std::env::args().any(|a| a == "--profile-time" || a == "--list") {
        summary();
    }
}
