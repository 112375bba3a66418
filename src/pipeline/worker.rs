//! One worker of a run: its share of the dataflow (source, stages, sinks, observers) and the
//! loop that steps it while exporting the event-time frontier.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concatenate, Inspect, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::worker::Worker;

use super::{SourceSpec, WorkerShared};
use crate::dataflow::source::{self, kafka, SharedSourceCuts};
use crate::dataflow::{self, sink, LiveEvent, PipelineStreams};
use crate::io::jsonl::JsonlWriter;
use crate::io::kafka_tx::OutRecord;
use crate::observe::summary::SummaryAccumulator;
use crate::records::{DeadLetter, OutputRecord, TweetEvent};
use crate::Time;

/// What worker 0 keeps while the dataflow runs.
struct Worker0 {
    /// The run summary, folded from every worker's summary events.
    summary: Rc<RefCell<SummaryAccumulator>>,
    /// The first error writing the output files.
    write_error: Rc<RefCell<Option<std::io::Error>>>,
}

/// Builds this worker's dataflow and steps it until it completes.
pub(super) fn run(worker: &mut Worker, shared: &WorkerShared) {
    let index = worker.index();
    let mine = Worker0 {
        summary: Rc::new(RefCell::new(SummaryAccumulator::new(shared.settings.predictor.interval_level))),
        write_error: Rc::default(),
    };
    let probe = ProbeHandle::<Time>::new();
    worker.dataflow::<Time, _, _>(|scope| {
        // The source's offsets at each boundary, for this worker's window stage to write.
        let cuts = SharedSourceCuts::default();
        let (events, source_dead_letters) = source_stream(scope, shared, &cuts, &probe);
        // Agreed by every process (see `pipeline::run`): the dataflow's shape must not
        // depend on options that differ between processes.
        let checkpoint = shared.checkpoint.clone().map(|c| (c, cuts));
        let streams = dataflow::build(events, &shared.settings, shared.records, shared.handles.shutdown.clone(), checkpoint);
        connect(scope, shared, &mine, &probe, streams, source_dead_letters);
    });
    step_until_done(worker, &probe);
    if index == 0 {
        let summary = mine.summary.borrow().clone();
        let error = mine.write_error.borrow_mut().take();
        *shared.result.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((summary, error));
    }
}

/// The input events of this worker, and the source's dead letters (Kafka only). `probe`
/// (what the dataflow has completed) bounds the Kafka source's read-ahead.
fn source_stream<'s>(
    scope: Scope<'s, Time>,
    shared: &WorkerShared,
    cuts: &SharedSourceCuts,
    probe: &ProbeHandle<Time>,
) -> (StreamVec<'s, Time, TweetEvent>, Option<StreamVec<'s, Time, DeadLetter>>) {
    let handles = &shared.handles;
    match &shared.job.source {
        SourceSpec::Replay { dataset, pace } => {
            let input = &shared.job.config.input;
            let timeline = crate::io::timeline::Timeline::new(
                dataset.clone(),
                input.random_start_range,
                input.seed,
                scope.index(),
                scope.peers(),
            );
            (source::replay(scope, timeline, *pace, handles.events.clone(), handles.shutdown.clone()), None)
        }
        SourceSpec::Kafka(spec) => {
            let (errors_in, errors) = std::sync::mpsc::channel();
            let links = kafka::SourceLinks {
                events_in: handles.events.clone(),
                shutdown: handles.shutdown.clone(),
                errors: errors_in,
                checkpoint: shared.checkpoint.clone().map(|c| (c, cuts.clone())),
                completed: probe.clone(),
            };
            let streams = kafka::kafka_source(scope, spec.clone(), links);
            // Set-up errors happen when the source is built, i.e. now.
            shared.source_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(errors.try_iter());
            (streams.events, Some(streams.dead_letters))
        }
    }
}

/// Connects the streams to the sinks, the summary and the observers.
fn connect<'s>(
    scope: Scope<'s, Time>,
    shared: &WorkerShared,
    mine: &Worker0,
    probe: &ProbeHandle<Time>,
    streams: PipelineStreams<'s>,
    source_dead_letters: Option<StreamVec<'s, Time, DeadLetter>>,
) {
    let dead_letters = match source_dead_letters {
        Some(d) => scope.concatenate(vec![d, streams.dead_letters]),
        None => streams.dead_letters,
    };
    let summary = scope.concatenate(vec![streams.summary, dataflow::count_rejections(dead_letters.clone())]);
    if let Some(records) = streams.records {
        connect_outputs(scope, shared, mine, probe, records.probe_with(probe), dead_letters.probe_with(probe));
    }
    let summary = summary.inspect(crate::telemetry::summary_event);
    observe(scope, shared, streams.live, summary.clone());
    let fold = mine.summary.clone();
    sink::fold_on_worker_0(summary.probe_with(probe), move |e| fold.borrow_mut().add(e));
}

/// The output records to Kafka (at least once, or exactly once) and to the files.
fn connect_outputs<'s>(
    scope: Scope<'s, Time>,
    shared: &WorkerShared,
    mine: &Worker0,
    probe: &ProbeHandle<Time>,
    records: StreamVec<'s, Time, OutputRecord>,
    dead_letters: StreamVec<'s, Time, DeadLetter>,
) {
    let topics = &shared.job.config.kafka.topics;
    if let Some(producer) = &shared.sinks.producer {
        sink::produce_records(records.clone(), producer.clone(), topics.clone());
        sink::produce_dead_letters(dead_letters.clone(), producer.clone(), topics.dead_letters.clone());
    }
    if shared.sinks.exactly_once {
        let (topics, dead_topic) = (topics.clone(), topics.dead_letters.clone());
        let all = scope.concatenate(vec![
            records.clone().map(move |r| OutRecord { topic: topics.of(r.sort_key.0).to_owned(), key: r.key, value: r.value }),
            dead_letters.map(move |d| OutRecord {
                topic: dead_topic.clone(),
                key: Some(d.reason.as_str().to_owned()),
                value: crate::io::schema::to_json(&crate::io::schema::DeadLetterRecord::of(&d)),
            }),
        ]);
        let sender = if scope.index() == 0 { shared.sinks.transactions.lock().ok().and_then(|mut s| s.take()) } else { None };
        sink::produce_exactly_once(all.probe_with(probe), sender, shared.sinks.resume_from, shared.handles.shutdown.clone());
    }
    if shared.files {
        // The sink exists on every worker (it gathers to worker 0); only process 0, which
        // has the folder, opens files.
        let writer = match (scope.index(), &shared.out_dir) {
            (0, Some(dir)) => JsonlWriter::create(dir).map_err(|e| mine.write_error.borrow_mut().replace(e)).ok(),
            _ => None,
        };
        sink::write_records(records, writer, mine.write_error.clone());
    }
}

/// Alertmanager and the live views. The operators exist on every process whatever its
/// options (a process without a page or Alertmanager must still build the same dataflow,
/// or the cluster would hang); the views only when the job asks for them (`Job::views`,
/// agreed by every process).
fn observe<'s>(
    scope: Scope<'s, Time>,
    shared: &WorkerShared,
    live: StreamVec<'s, Time, LiveEvent>,
    summary: StreamVec<'s, Time, crate::telemetry::SummaryEvent>,
) {
    let thresholds = shared.settings.alerts;
    let alerts = live.clone().flat_map(move |e| match e {
        LiveEvent::Prediction(p) if p.is_alert(&thresholds) => Some(p),
        _ => None,
    });
    // Worker 0 pushes (the alerts are gathered there, as the exactly-once output is).
    let pusher = shared.handles.alertmanager.clone().filter(|_| scope.index() == 0);
    let push = pusher.map(|pusher| {
        move |out: sink::AlertOut<'_>| match out {
            sink::AlertOut::Alert(time, p, severity) => pusher.popular_cascade(time, p, severity),
            sink::AlertOut::Progress(time) => pusher.progress(time),
        }
    });
    sink::push_alerts(alerts, push, thresholds, shared.sinks.alerts_from);
    dataflow::views::prediction_latency(live.clone());
    if !shared.job.views {
        return;
    }
    let cluster = &shared.job.cluster;
    let threads = cluster.threads_per_process();
    let first_of_process = scope.index().is_multiple_of(threads);
    let settings = dataflow::views::ViewSettings { thresholds, first_of_process };
    let updates = dataflow::views::live_views(live, summary, settings);
    let view = shared.handles.live.clone().filter(|_| first_of_process);
    let finished = view.clone();
    sink::serve_views(
        updates,
        cluster.processes(),
        threads,
        move |time, records| view.iter().for_each(|v| v.apply(time, records.clone())),
        move || finished.iter().for_each(|v| v.finish()),
    );
}

/// Steps the worker until its dataflow completes, exporting the frontier (worker 0).
fn step_until_done(worker: &mut Worker, probe: &ProbeHandle<Time>) {
    let index = worker.index();
    let mut last_frontier = None;
    while worker.step_or_park(Some(Duration::from_millis(50))) {
        if index != 0 {
            continue;
        }
        let frontier = probe.with_frontier(|f| f.first().copied());
        if frontier != last_frontier {
            crate::telemetry::frontier(frontier);
            last_frontier = frontier;
        }
    }
    if index == 0 {
        crate::telemetry::frontier(None);
    }
}
