//! Sinks on worker 0: the JSON-lines writer (deterministic order) and the summary fold.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use crate::io::jsonl::JsonlWriter;
use crate::messages::OutputRecord;
use crate::summary::{SummaryAccumulator, SummaryEvent};
use crate::Time;

/// Gathers every record on worker 0 and writes each completed time's records sorted by
/// their sort key: the files are then identical for any number of workers or processes.
/// Write errors are kept in `error` (first one wins) and end the run with an error.
pub fn write_records(
    records: StreamVec<'_, Time, OutputRecord>,
    mut writer: Option<JsonlWriter>,
    error: Rc<RefCell<Option<std::io::Error>>>,
) {
    let mut stash: BTreeMap<Time, Vec<OutputRecord>> = BTreeMap::new();
    records.sink(Exchange::new(|_: &OutputRecord| 0), "WriteJsonl", move |(input, frontier)| {
        input.for_each_stamp(|cap, data| {
            let batch = stash.entry(*cap.least().expect("a message has a time")).or_default();
            for d in data {
                batch.append(d);
            }
        });
        while let Some(entry) = stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let mut batch = entry.remove();
            batch.sort();
            if let Some(w) = writer.as_mut() {
                let result = batch.iter().try_for_each(|r| w.write(r));
                if let Err(e) = result {
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

/// Folds every summary event on worker 0.
pub fn fold_summary(events: StreamVec<'_, Time, SummaryEvent>, acc: Rc<RefCell<SummaryAccumulator>>) {
    events.sink(Exchange::new(|_: &SummaryEvent| 0), "Summary", move |(input, _frontier)| {
        input.for_each_stamp(|_cap, data| {
            let mut acc = acc.borrow_mut();
            for e in data.flat_map(|d| d.drain(..)) {
                acc.add(e);
            }
        });
    });
}
