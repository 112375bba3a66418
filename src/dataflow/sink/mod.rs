//! Sinks: the JSON-lines writer and the summary fold (on worker 0), Kafka producers (on
//! every worker), or the exactly-once Kafka output (on worker 0) when checkpointing.

use std::cell::RefCell;
use std::rc::Rc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use super::stash::{passed, Hold, TimeStash};
use crate::io::jsonl::JsonlWriter;
use crate::io::kafka::{CountingProducer, TopicNames};
use crate::io::kafka_tx::{OutRecord, OutputBatch};
use crate::io::schema::{to_json, DeadLetterRecord};
use crate::records::DeadLetter;
use crate::records::OutputRecord;
use crate::Time;

/// Gathers every record on worker 0 and writes each completed time's records sorted by
/// their sort key: the files are then identical for any number of workers or processes.
/// Write errors are kept in `error` (first one wins) and end the run with an error.
pub fn write_records(
    records: StreamVec<'_, Time, OutputRecord>,
    mut writer: Option<JsonlWriter>,
    error: Rc<RefCell<Option<std::io::Error>>>,
) {
    let mut stash = TimeStash::new();
    records.sink(Exchange::new(|_: &OutputRecord| 0), "WriteJsonl", move |(input, frontier)| {
        stash.absorb(input, Hold::Nothing);
        while let Some((_, pending)) = stash.pop_if(|t| passed(frontier, t)) {
            let mut batch = pending.records;
            batch.sort();
            if let Some(w) = writer.as_mut() {
                if let Err(e) = batch.iter().try_for_each(|r| w.write(r)) {
                    error.borrow_mut().get_or_insert(e);
                    writer = None;
                }
            }
        }
        if frontier.is_empty() {
            if let Some(mut w) = writer.take() {
                if let Err(e) = w.flush() {
                    error.borrow_mut().get_or_insert(e);
                }
            }
        }
    });
}

/// Hands every record of `stream` to `fold` on worker 0 (the run summary).
pub fn fold_on_worker_0<D>(stream: StreamVec<'_, Time, D>, mut fold: impl FnMut(D) + 'static)
where
    D: timely::ExchangeData,
{
    stream.sink(Exchange::new(|_: &D| 0), "FoldOnWorker0", move |(input, _frontier)| {
        input.for_each_stamp(|_cap, data| {
            for d in data.flat_map(|d| d.drain(..)) {
                fold(d);
            }
        });
    });
}

/// Produces every record to its Kafka topic from the worker that made it (no gathering:
/// Kafka consumers read partitions in parallel anyway). Send errors are counted by the
/// producer and fail the run at the end.
pub fn produce_records(records: StreamVec<'_, Time, OutputRecord>, producer: Arc<CountingProducer>, topics: TopicNames) {
    records.sink(Pipeline, "ProduceKafka", move |(input, _frontier)| {
        input.for_each_stamp(|_cap, data| {
            for r in data.flat_map(|d| d.drain(..)) {
                if let Err(e) = producer.send(topics.of(r.sort_key.0), r.key.as_deref(), &r.value) {
                    tracing::error!(error = %e, topic = topics.of(r.sort_key.0), "kafka send failed");
                }
            }
        });
    });
}

/// Produces dead letters, keyed by their reason.
pub fn produce_dead_letters(letters: StreamVec<'_, Time, DeadLetter>, producer: Arc<CountingProducer>, topic: String) {
    letters.sink(Pipeline, "ProduceDeadLetters", move |(input, _frontier)| {
        input.for_each_stamp(|_cap, data| {
            for d in data.flat_map(|d| d.drain(..)) {
                if let Err(e) = producer.send(&topic, Some(d.reason.as_str()), &to_json(&DeadLetterRecord::of(&d))) {
                    tracing::error!(error = %e, "kafka send of a dead letter failed");
                }
            }
        });
    });
}

/// Gathers every output record (and dead letter) on worker 0 and hands the records of each
/// completed time to the exactly-once producer with the new output frontier (see
/// `io::kafka_tx`). Records timed before `resume_from` were committed before a restart and
/// are dropped. When a live run is stopped, the frontier empties without event time having
/// gone to infinity: records not yet handed over are dropped (a restart recomputes them),
/// and the committed frontier stays where it was.
pub fn produce_exactly_once(
    records: StreamVec<'_, Time, OutRecord>,
    sender: Option<SyncSender<OutputBatch>>,
    resume_from: Time,
    shutdown: Arc<AtomicBool>,
) {
    let mut stash = TimeStash::new();
    let mut sent_frontier = resume_from;
    let mut sender = sender;
    records.sink(Exchange::new(|_: &OutRecord| 0), "ProduceExactlyOnce", move |(input, frontier)| {
        stash.absorb(input, Hold::Nothing);
        // Recomputed records before the committed frontier were produced before the restart.
        while let Some((_, pending)) = stash.pop_if(|t| t < resume_from) {
            crate::telemetry::outputs_suppressed(pending.records.len() as u64);
        }
        let Some(tx) = sender.as_ref() else { return };
        let upto = match frontier.frontier().first() {
            Some(t) => *t,
            None if shutdown.load(Ordering::Relaxed) => {
                stash.clear();
                sender = None;
                return;
            }
            None => Time::MAX,
        };
        if upto <= sent_frontier {
            return;
        }
        let mut out = Vec::new();
        while let Some((_, pending)) = stash.pop_if(|t| t < upto) {
            let mut batch = pending.records;
            batch.sort();
            out.append(&mut batch);
        }
        if tx.send(OutputBatch { frontier: upto, records: out }).is_err() {
            tracing::error!("the output thread stopped; outputs are no longer produced");
            sender = None;
            return;
        }
        sent_frontier = upto;
        if upto == Time::MAX {
            sender = None;
        }
    });
}

/// Sends every update of the live views to the first worker of every process and hands it
/// each completed time's updates, in time order (`apply`), then says when the views are
/// complete (`finished`: the run ended, or was stopped). Every process thus applies the same
/// updates at the same times: each serves the cluster-wide views.
pub fn serve_views(
    updates: StreamVec<'_, Time, crate::dataflow::views::ViewUpdate>,
    processes: usize,
    threads: usize,
    mut apply: impl FnMut(Time, Vec<(crate::dataflow::views::ViewRecord, isize)>) + 'static,
    mut finished: impl FnMut() + 'static,
) {
    use timely::dataflow::operators::vec::Map;
    type Addressed = (u64, crate::dataflow::views::ViewRecord, Time, isize);
    let copies = updates.flat_map(move |(record, time, diff)| {
        (0..processes as u64).map(move |p| (p * threads as u64, record.clone(), time, diff))
    });
    // By each update's own time: differential's messages may be stamped earlier than the
    // updates they carry (a batch goes out at its lower bound).
    let mut stash: TimeStash<(crate::dataflow::views::ViewRecord, isize)> = TimeStash::new();
    let mut done = false;
    copies.sink(Exchange::new(|(worker, _, _, _): &Addressed| *worker), "ServeViews", move |(input, frontier)| {
        input.for_each_stamp(|_cap, data| {
            for (_, record, time, diff) in data.flat_map(|d| d.drain(..)) {
                stash.insert(time, (record, diff));
            }
        });
        while let Some((time, pending)) = stash.pop_if(|t| passed(frontier, t)) {
            apply(time, pending.records);
        }
        if frontier.is_empty() && !done {
            done = true;
            finished();
        }
    });
}

/// What the alert sink hands to Alertmanager's pusher.
#[derive(Debug)]
pub enum AlertOut<'a> {
    /// An alert of `severity`, made at event time `time`.
    Alert(Time, &'a crate::records::Prediction, crate::records::Severity),
    /// Every alert before this time has been handed over.
    Progress(Time),
}

/// Gathers the predictions on worker 0 and hands each completed time's alerts, in
/// (cascade, window) order, to `push` (Alertmanager), then the sink's progress: a sink with
/// the delivery guarantee of the alerts topic. In exactly-once mode the pusher holds each
/// alert until the output frontier committed to Kafka has passed its time (`Pusher::gate`),
/// and alerts timed before `resume_from` (what the previous run pushed) are not pushed again
/// after a restart: a kill -9 and restart never pushes an alert twice. `push` is `None` on
/// the workers that push nothing (the operator exists everywhere: the dataflow's shape agrees).
pub fn push_alerts(
    predictions: StreamVec<'_, Time, crate::records::Prediction>,
    mut push: Option<impl FnMut(AlertOut<'_>) + 'static>,
    thresholds: crate::records::AlertThresholds,
    resume_from: Time,
) {
    let mut stash = TimeStash::new();
    let route = Exchange::new(|_: &crate::records::Prediction| 0);
    predictions.sink(route, "PushAlerts", move |(input, frontier)| {
        stash.absorb(input, Hold::Nothing);
        let Some(push) = push.as_mut() else {
            stash.clear();
            return;
        };
        while let Some((time, pending)) = stash.pop_if(|t| passed(frontier, t)) {
            if time < resume_from {
                continue;
            }
            let mut alerts = pending.records;
            alerts.sort_by_key(|p| (p.cascade, p.t_obs));
            for p in &alerts {
                if let Some(severity) = p.alert_severity(&thresholds) {
                    push(AlertOut::Alert(time, p, severity));
                }
            }
        }
        push(AlertOut::Progress(frontier.frontier().first().copied().unwrap_or(Time::MAX)));
    });
}
