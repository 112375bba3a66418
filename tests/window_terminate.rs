//! Property: the dataflow's window/terminate outputs equal a plain sequential, per-cascade
//! implementation of the collector's semantics, on random interleaved cascades, for 1 to 4
//! workers.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use timely::dataflow::operators::Inspect;
use tweetoscope::dataflow::window::tracker::{RejectReason, TrackerOutput, TrackerSettings};
use tweetoscope::dataflow::{source, window_terminate};
use tweetoscope::records::{EventKind, TweetEvent};
use tweetoscope::Time;

/// A comparable rendering of one output: (time, kind, cascade, details).
type Row = (Time, u8, u64, String);

fn row(time: Time, o: &TrackerOutput) -> Row {
    match o {
        TrackerOutput::Partial(p) => {
            let ts: Vec<_> = p.events.iter().map(|e| (e.t as u64, e.m as u64)).collect();
            (time, 0, p.cascade, format!("{} {:?} {}", p.t_obs, ts, p.training_only))
        }
        TrackerOutput::TooSmall { cascade, t_obs } => (time, 1, *cascade, t_obs.to_string()),
        TrackerOutput::Final(f) => (time, 2, f.cascade, format!("{} {} {:?}", f.n_tot, f.t_end, f.windows)),
        TrackerOutput::Rejected(r) => (time, 3, r.cascade, format!("{} {:?}", r.time, r.reason)),
    }
}

/// The collector's semantics, one cascade at a time, written as plainly as possible.
fn sequential(cascades: &[Vec<TweetEvent>], s: &TrackerSettings) -> Vec<Row> {
    let mut rows = Vec::new();
    for events in cascades {
        let id = events[0].cascade;
        let start = events[0].time;
        let mut accepted = vec![&events[0]];
        let mut rest = events[1..].iter();
        for e in rest.by_ref() {
            if e.time - accepted.last().unwrap().time > s.t_end() {
                let terminated_at = accepted.last().unwrap().time + s.t_end();
                let reason = if e.time <= terminated_at + s.tombstone_ttl() {
                    RejectReason::TerminatedCascade
                } else {
                    RejectReason::UnknownCascade
                };
                rows.push((e.time, 3, id, format!("{} {:?}", e.time, reason)));
                break;
            }
            accepted.push(e);
        }
        let terminated_at = accepted.last().unwrap().time + s.t_end();
        for e in rest {
            let reason = if e.time <= terminated_at + s.tombstone_ttl() {
                RejectReason::TerminatedCascade
            } else {
                RejectReason::UnknownCascade
            };
            rows.push((e.time, 3, id, format!("{} {:?}", e.time, reason)));
        }
        let mut emitted = Vec::new();
        for &w in s.windows() {
            let seen: Vec<_> =
                accepted.iter().filter(|e| e.time <= start + w).map(|e| (e.time - start, e.magnitude as u64)).collect();
            if seen.len() >= s.min_training_size() {
                let training_only = seen.len() < s.min_cascade_size();
                rows.push((start + w, 0, id, format!("{w} {seen:?} {training_only}")));
                emitted.push(w);
            } else {
                rows.push((start + w, 1, id, w.to_string()));
            }
        }
        let last = accepted.last().unwrap().time;
        rows.push((terminated_at, 2, id, format!("{} {} {:?}", accepted.len(), last - start, emitted)));
    }
    rows.sort();
    rows
}

fn dataflow(cascades: &[Vec<TweetEvent>], s: &TrackerSettings, workers: usize, granularity: Time) -> Vec<Row> {
    let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
    let (all, settings, sink) = (cascades.to_vec(), s.clone(), rows.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        // Each worker replays a share of the cascades (not the one that will own them).
        let mut mine: Vec<TweetEvent> =
            all.iter().enumerate().filter(|(i, _)| i % peers == index).flat_map(|(_, c)| c.clone()).collect();
        mine.sort_by_key(|e| (e.time, e.cascade, e.seq));
        let (sink, settings) = (sink.clone(), settings.clone());
        worker.dataflow::<Time, _, _>(move |scope| {
            let events = source::replay(scope, mine, None, Default::default(), Default::default());
            window_terminate(events, settings, granularity, Default::default(), None).inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let time = *stamp.iter().next().unwrap();
                    sink.lock().unwrap().extend(data.iter().map(|o| row(time, o)));
                }
            });
        });
    })
    .unwrap()
    .join()
    .into_iter()
    .for_each(|r| r.unwrap());
    let mut rows = rows.lock().unwrap().clone();
    rows.sort();
    rows
}

/// Random cascades: a start, then gaps (some longer than t_end), magnitudes.
fn cascades() -> impl Strategy<Value = Vec<Vec<TweetEvent>>> {
    // Gaps cluster around the edges that matter: exactly t_end (40) idle, one more, long.
    let gap = prop_oneof![6 => 0u64..15, 1 => Just(40u64), 1 => Just(41u64), 1 => 30u64..200];
    let cascade = (0u64..300, prop::collection::vec((gap, 0u64..50), 0..25));
    prop::collection::vec(cascade, 1..8).prop_map(|cs| {
        cs.into_iter()
            .enumerate()
            .map(|(i, (start, steps))| {
                let id = 1000 + i as u64 * 7;
                let mut t = start;
                let mut events =
                    vec![TweetEvent { cascade: id, time: t, seq: 0, magnitude: 5.0, kind: EventKind::Tweet, msg: String::new() }];
                for (k, (gap, m)) in steps.into_iter().enumerate() {
                    t += gap;
                    events.push(TweetEvent {
                        cascade: id,
                        time: t,
                        seq: k as u64 + 1,
                        magnitude: m as f64,
                        kind: EventKind::Retweet,
                        msg: String::new(),
                    });
                }
                events
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn dataflow_matches_sequential_semantics(cascades in cascades(), ttl in 0u64..200) {
        // Partials of 3 events are predicted, of 2 emitted for training only.
        let s = TrackerSettings::new(vec![10, 25], 40, 3, 2, ttl).unwrap();
        let expected = sequential(&cascades, &s);
        for workers in [1, 2, 3, 4] {
            let got = dataflow(&cascades, &s, workers, 1);
            prop_assert_eq!(&got, &expected, "with {} workers", workers);
        }
        // With 7-second granules, the same outputs, each stamped with the last second of its
        // granule (never before its own time).
        let mut coarse: Vec<Row> = expected.iter().cloned().map(|mut r| { r.0 = r.0 - r.0 % 7 + 6; r }).collect();
        coarse.sort();
        for workers in [1, 3] {
            let got = dataflow(&cascades, &s, workers, 7);
            prop_assert_eq!(&got, &coarse, "with {} workers and 7-second granules", workers);
        }
    }
}
