//! `tweetoscope` (the embedded default) and `tweetoscope run`: replay a recorded dataset
//! through the whole pipeline, then print the accuracy per window.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::options::{ReplayOptions, ReportOptions, RunOptions};
use super::progress::{Pace, Progress};
use super::{resolve_bundled, signals, BUNDLED_SAMPLE};
use crate::io::files::read_dataset;
use crate::observe::alertmanager::{Pusher, PusherOptions};
use crate::observe::live::{JobKind, LiveView};
use crate::observe::summary::RunReport;
use crate::pipeline::{run, Job, RunHandles, SourceSpec, StopCause};

/// The embedded default: the config's `[input]`, else the bundled sample.
pub fn embedded(options: &RunOptions, replay_options: &ReplayOptions, report_options: &ReportOptions) -> Result<ExitCode> {
    let config = options.load_config()?;
    // A config without an [input] path still replays the bundled sample.
    let input = config.input.path.clone().unwrap_or_else(|| PathBuf::from(BUNDLED_SAMPLE));
    let index = config.input.index.clone();
    replay(options, replay_options, report_options, resolve_bundled(&input), index.map(|i| resolve_bundled(&i)))
}

/// Replays a dataset through the pipeline, with a progress bar, then prints the table.
/// SIGINT/SIGTERM stop the replay where it is (every process of a cluster): the table and
/// `--summary` then cover what was read and say "interrupted", and the exit code is 128 + the
/// signal.
pub fn replay(
    options: &RunOptions,
    replay_options: &ReplayOptions,
    report_options: &ReportOptions,
    input: PathBuf,
    index: Option<PathBuf>,
) -> Result<ExitCode> {
    // First, before any thread starts: see `signals::install`.
    let handles = RunHandles::default();
    signals::install(&handles, options.process)?;
    // Every output is checked before the replay, not after it.
    options.check_outputs()?;
    report_options.check(options)?;
    let config = options.load_config()?;
    let dataset = read_dataset(&input, index.as_deref())?;
    let cluster = options.cluster()?;
    options.note_ignored(Some(report_options));
    let live = LiveView::new(JobKind::Replay, config.pipeline.alert_thresholds());
    // Only a page that stays up long enough to be opened is advertised.
    let announce = match (replay_options.serve, replay_options.pace) {
        (true, _) => Some("during the replay and after it, until Ctrl-C (--serve)"),
        (false, Some(_)) => Some("until the replay ends (--serve keeps them up after it)"),
        (false, None) => None,
    };
    let http = options.http(&live, announce)?;
    // The page's state is kept only when a server shows it.
    let handles = RunHandles { live: http.as_ref().map(|_| live), alertmanager: alertmanager(options)?, ..handles };
    let local: usize = (0..cluster.threads_per_process())
        .map(|t| {
            crate::io::timeline::worker_share(&dataset, cluster.process() * cluster.threads_per_process() + t, cluster.peers())
        })
        .sum();
    // Checked before the replay starts: a models file of another version, feature set or
    // window set is refused with the line at fault.
    let models = match &replay_options.models {
        Some(path) => crate::io::files::read_models(path, &config.pipeline.windows)?,
        None => Vec::new(),
    };
    let job = Job {
        config,
        source: SourceSpec::Replay { dataset: Arc::new(dataset), pace: replay_options.pace },
        out_dir: report_options.out_dir(options),
        kafka_sink: false,
        cluster,
        warm_start: false,
        initial_models: models,
        views: options.views(),
    };
    let result = {
        let pace = if replay_options.pace.is_some() { Pace::Paced } else { Pace::Max };
        let _progress = Progress::start("replaying", Some(local as u64), pace, handles.events.clone());
        run(job, handles.clone())
    };
    finish_alerts(&handles);
    let interrupted = handles.stop_cause();
    report(options, report_options, result?, interrupted)?;
    if let Some(cause) = interrupted {
        // Stopped during the replay: no serving of a half-finished run.
        return Ok(exit(cause));
    }
    if let (true, Some(server)) = (replay_options.serve, http) {
        eprintln!("replay done; serving http://{}/ until Ctrl-C (SIGINT) or SIGTERM", server.addr);
        while !handles.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(server);
        return Ok(handles.stop_cause().map_or(ExitCode::SUCCESS, exit));
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code of a run a signal stopped: 128 + the signal (130, 143).
pub fn exit(cause: StopCause) -> ExitCode {
    ExitCode::from(u8::try_from(cause.exit_code()).unwrap_or(1))
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

/// Prints the table and writes `--summary` and `--report`. An interrupted run says so: a
/// line after the table, and `"interrupted": true` in the JSON (always present, false for a
/// run that finished).
pub fn report(
    options: &RunOptions,
    report_options: &ReportOptions,
    report: Option<RunReport>,
    interrupted: Option<StopCause>,
) -> Result<()> {
    let Some(report) = report else {
        match interrupted {
            Some(cause) => eprintln!("process {} stopped ({cause}); process 0 prints the summary", options.process),
            None => eprintln!("process {} finished; process 0 prints the summary", options.process),
        }
        return Ok(());
    };
    print!("{}", report.table());
    if let Some(cause) = interrupted {
        println!("interrupted ({cause}): these figures cover the input read until then");
        eprintln!("interrupted: {cause}; the summary covers the input read until then");
    }
    if let Some(path) = &options.summary {
        let mut json = serde_json::to_value(&report)?;
        if let Some(fields) = json.as_object_mut() {
            fields.insert("interrupted".into(), interrupted.is_some().into());
        }
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(dir), Some(outputs)) = (&report_options.report, report_options.out_dir(options)) {
        // The baselines fall back like the run's predictor (its config says how).
        let fallback_max_ratio = options.load_config().map_or(5.0, |c| c.predictor.fallback_max_ratio);
        let written = crate::observe::report::write_report(&outputs, dir, report_options.truth.as_deref(), fallback_max_ratio)?;
        eprintln!("report written to {} ({} plots)", written.report.display(), written.plots.files.len());
    }
    Ok(())
}
