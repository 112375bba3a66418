//! `tweetoscope` (the embedded default) and `tweetoscope run`: replay a recorded dataset
//! through the whole pipeline, then print the accuracy per window.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::options::RunOptions;
use super::progress::Progress;
use super::{resolve_bundled, signals, Stopped, BUNDLED_SAMPLE};
use crate::io::files::read_dataset;
use crate::observe::alertmanager::{Pusher, PusherOptions};
use crate::observe::live::{JobKind, LiveView};
use crate::observe::summary::RunReport;
use crate::pipeline::{run, Job, RunHandles, SourceSpec};

/// The embedded default: the config's `[input]`, else the bundled sample.
pub fn embedded(options: &RunOptions) -> Result<()> {
    let config = options.load_config()?;
    // A config without an [input] path still replays the bundled sample.
    let input = config.input.path.clone().unwrap_or_else(|| PathBuf::from(BUNDLED_SAMPLE));
    let index = config.input.index.clone();
    replay(options, resolve_bundled(&input), index.map(|i| resolve_bundled(&i)))
}

/// Replays a dataset through the pipeline, with a progress bar, then prints the table.
pub fn replay(options: &RunOptions, input: PathBuf, index: Option<PathBuf>) -> Result<()> {
    // First, before any thread starts: SIGINT/SIGTERM stop the replay (every process of a
    // cluster), and end `--serve`.
    let handles = RunHandles::default();
    signals::install(&handles, options.process)?;
    let config = options.load_config()?;
    let dataset = read_dataset(&input, index.as_deref())?;
    let cluster = options.cluster()?;
    options.note_ignored();
    let live = LiveView::new(JobKind::Replay, config.pipeline.alert_thresholds());
    let http = options.http(&live)?;
    // The page's state is kept only when a server shows it.
    let handles = RunHandles { live: http.as_ref().map(|_| live), alertmanager: alertmanager(options)?, ..handles };
    let stop = handles.shutdown.clone();
    let local: usize = (0..cluster.threads_per_process())
        .map(|t| crate::io::timeline::worker_share(&dataset, cluster.process() * cluster.threads_per_process() + t, cluster.peers()))
        .sum();
    // Checked before the replay starts: a models file of another version, feature set or
    // window set is refused with the line at fault.
    let models = match &options.models {
        Some(path) => crate::io::files::read_models(path, &config.pipeline.windows)?,
        None => Vec::new(),
    };
    let job = Job {
        config,
        source: SourceSpec::Replay { dataset: Arc::new(dataset), pace: options.pace },
        out_dir: options.out_dir(),
        kafka_sink: false,
        cluster,
        warm_start: false,
        initial_models: models,
        views: options.views(),
    };
    let result = {
        let _progress = Progress::start("replaying", Some(local as u64), handles.events.clone());
        run(job, handles.clone())
    };
    finish_alerts(&handles);
    let result = result?;
    if let Some(cause) = handles.stop_cause() {
        return Err(Stopped(cause).into());
    }
    report(options, result)?;
    if let (true, Some(server)) = (options.serve, http) {
        eprintln!("replay done; serving http://{}/ until Ctrl-C", server.addr);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(server);
    }
    Ok(())
}

/// Starts pushing popular-cascade alerts to `--alertmanager`, if given.
pub fn alertmanager(options: &RunOptions) -> Result<Option<Arc<Pusher>>> {
    let Some(url) = &options.alertmanager else { return Ok(None) };
    let pusher = Pusher::start(url, PusherOptions::default())?;
    eprintln!("pushing popular-cascade alerts to {url}");
    Ok(Some(Arc::new(pusher)))
}

/// Sends what is still queued for Alertmanager (a few seconds at most) and says how it went.
pub fn finish_alerts(handles: &RunHandles) {
    if let Some(pusher) = &handles.alertmanager {
        pusher.finish(Duration::from_secs(10));
    }
}

/// Prints the table and writes `--summary` and `--report`.
pub fn report(options: &RunOptions, report: Option<RunReport>) -> Result<()> {
    let Some(report) = report else {
        eprintln!("process {} finished; process 0 prints the summary", options.process);
        return Ok(());
    };
    print!("{}", report.table());
    if let Some(path) = &options.summary {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(dir), Some(outputs)) = (&options.report, options.out_dir()) {
        let written = crate::observe::report::write_report(&outputs, dir, options.truth.as_deref())?;
        eprintln!("report written to {} ({} plots)", written.report.display(), written.plots.files.len());
    }
    Ok(())
}
