//! `tweetoscope live`, `backtest` and `topics`: the pipeline on the `tweets` topic, and the
//! topics it needs.

use std::time::Duration;

use anyhow::{bail, Result};

use super::options::{KafkaOptions, RecoveryOptions, RunOptions};
use super::progress::Progress;
use super::replay::{alertmanager, finish_alerts, report};
use super::{signals, Stopped};
use crate::dataflow::source::kafka::{KafkaSourceSpec, StartAt};
use crate::observe::live::{JobKind, LiveView};
use crate::pipeline::{run as run_job, Job, RunHandles, SourceSpec};

/// `live` (with its recovery options) or `backtest` (without).
pub fn run(options: &RunOptions, kafka: &KafkaOptions, live: Option<&RecoveryOptions>) -> Result<()> {
    // First, before any thread (librdkafka's included) starts: see `signals::install`.
    let handles = RunHandles::default();
    signals::install(&handles, options.process)?;
    let bounded = live.is_none();
    let config = kafka.connect(options.config.as_deref(), |config| {
        if let Some(r) = live {
            r.apply(config);
        }
    })?;
    let idle_exit = match live.and_then(|r| r.until_idle) {
        Some(s) if !(s.is_finite() && s > 0.0) => bail!("--until-idle must be a positive number of seconds"),
        s => s.map(Duration::from_secs_f64),
    };
    options.note_ignored();
    let kind = if bounded { JobKind::Replay } else { JobKind::Live };
    let view = LiveView::new(kind, config.pipeline.alert_thresholds());
    let http = options.http(&view)?;
    // The page's state is kept only when a server shows it.
    let handles = RunHandles { live: http.as_ref().map(|_| view), alertmanager: alertmanager(options)?, ..handles };
    let job = Job {
        source: SourceSpec::Kafka(KafkaSourceSpec { kafka: config.kafka.clone(), bounded, start: StartAt::Beginning, idle_exit }),
        config,
        out_dir: options.out_dir(),
        kafka_sink: !bounded,
        cluster: options.cluster()?,
        // A live pipeline continues from the models it published; a backtest is a function
        // of the topic only.
        warm_start: !bounded,
        initial_models: Vec::new(),
        views: options.views(),
    };
    let result = {
        let _progress = Progress::start(if bounded { "backtest" } else { "live" }, None, handles.events.clone());
        run_job(job, handles.clone())
    };
    finish_alerts(&handles);
    let result = result?;
    // A signal is how `live` normally ends (it has drained and flushed); a backtest it
    // stopped is incomplete.
    match handles.stop_cause() {
        Some(cause) if bounded => Err(Stopped(cause).into()),
        _ => report(options, result),
    }
}

/// `topics`: creates the input, output and dead-letter topics that do not exist yet.
pub fn topics(partitions: i32, config: Option<&std::path::Path>, kafka: &KafkaOptions) -> Result<()> {
    let config = kafka.connect(config, |_| {})?;
    let names = config.kafka.topics.all();
    crate::io::kafka::ensure_topics(&config.kafka, &names, partitions)?;
    println!("topics ready: {}", names.join(" "));
    Ok(())
}
