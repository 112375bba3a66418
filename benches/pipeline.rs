//! Wall time of the whole pipeline (window, terminate, estimate, predict, train) on the bundled
//! real sample (`data/seismic-tideh100/raw/training`, 80 cascades, 298,227 events), replayed from
//! memory as fast as possible with the embedded configuration, in one process with 1 and 2
//! worker threads. The dataset is read once, outside the timed region; no output files, no
//! Kafka, no metrics server. `scripts/bench` runs it and quotes the medians in BENCHMARKS.md.

use criterion::{criterion_group, BenchmarkId, Criterion};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tweetoscope::commands::EMBEDDED_CONFIG;
use tweetoscope::config::DataflowConfig;
use tweetoscope::io::files::read_dataset;
use tweetoscope::pipeline::{run, Cluster, Job, RunHandles, SourceSpec};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/seismic-tideh100/raw/training");

fn bench_pipeline(c: &mut Criterion) {
    let config = DataflowConfig::parse(EMBEDDED_CONFIG).expect("embedded config");
    let dataset = Arc::new(read_dataset(Path::new(DATA), None).expect("bundled sample"));
    let mut group = c.benchmark_group("pipeline_embedded");
    group.sample_size(10);
    for threads in [1usize, 2] {
        group.bench_with_input(BenchmarkId::new("workers", threads), &threads, |b, &threads| {
            b.iter(|| {
                let job = Job {
                    config: config.clone(),
                    source: SourceSpec::Replay { dataset: dataset.clone(), pace: None },
                    out_dir: None,
                    kafka_sink: false,
                    cluster: Cluster::threads(threads).expect("at least one worker"),
                    warm_start: false,
                    initial_models: Vec::new(),
                    views: false,
                };
                let report = run(job, RunHandles::default()).expect("pipeline run").expect("process 0 report");
                assert!(report.events > 0);
                report
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    targets = bench_pipeline
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
