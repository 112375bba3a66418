//! The `train` stage: one forest per observation window, retrained online from samples.
//!
//! Samples are exchanged by window, so a window's training set lives on one worker. They
//! are processed in event-time order (sorted by cascade within a time), and a model trained
//! while processing time `t` is emitted at `t` with version `t`; each run is seeded from
//! (seed, window, number of samples), so models depend on the data only.

use std::collections::{BTreeMap, HashMap, VecDeque};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use tweetoscope_model::forest::{Features, Forest};

use super::Builder;
use crate::config::ForestConfig;
use crate::messages::{Model, Sample};
use crate::{mix64, Time};

/// The training set and schedule of one window (the stage's synchronous core).
#[derive(Debug, Default)]
pub struct WindowTrainer {
    /// The most recent samples, at most `max_samples`.
    samples: VecDeque<(Features, f64)>,
    /// Samples seen so far (not only kept): drives the retraining schedule.
    seen: usize,
    /// `seen` at the last training run.
    trained_at: usize,
}

impl WindowTrainer {
    /// A trainer that continues from a model read back at start (warm start).
    pub fn resume(model: &Model) -> Self {
        Self {
            samples: model.training.iter().map(|r| ([r[0], r[1], r[2]], r[3])).collect(),
            seen: model.samples_seen,
            trained_at: model.samples_seen,
        }
    }

    /// Adds a sample, forgetting the oldest beyond `max_samples`.
    pub fn push(&mut self, sample: &Sample, max_samples: usize) {
        self.samples.push_back((sample.x, sample.w));
        while self.samples.len() > max_samples {
            self.samples.pop_front();
        }
        self.seen += 1;
    }

    /// Retrains when `max(retrain_every, retrain_growth × samples at the last run)` samples
    /// arrived since the last run; `None` otherwise or when training fails (the previous
    /// model stays in use).
    pub fn maybe_train(&mut self, config: &ForestConfig, t_obs: Time, now: Time) -> Option<Model> {
        let due = config.retrain_every.max((config.retrain_growth * self.trained_at as f64).ceil() as usize);
        if self.seen - self.trained_at < due {
            return None;
        }
        self.trained_at = self.seen;
        let (x, y): (Vec<Features>, Vec<f64>) = self.samples.iter().copied().unzip();
        let seed = mix64(config.seed ^ mix64(t_obs ^ mix64(self.seen as u64)));
        match Forest::train(&x, &y, &config.params(), seed) {
            Ok(forest) => {
                let training = x.iter().zip(&y).map(|(x, y)| [x[0], x[1], x[2], *y]).collect();
                Some(Model { t_obs, version: now, n_samples: x.len(), samples_seen: self.seen, forest, training })
            }
            Err(e) => {
                tracing::warn!(t_obs, error = %e, "forest training failed; keeping the previous model");
                None
            }
        }
    }
}

/// Trains the per-window forests from the samples stream.
pub fn train<'s>(samples: StreamVec<'s, Time, Sample>, config: ForestConfig, initial: Vec<Model>) -> StreamVec<'s, Time, Model> {
    let pact = Exchange::new(|s: &Sample| mix64(s.t_obs));
    samples.unary_frontier::<Builder<Model>, _, _, _>(pact, "Train", move |_cap, _info| {
        // Every worker resumes every window: only the one that owns a window gets its samples.
        let mut trainers: HashMap<Time, WindowTrainer> =
            initial.iter().map(|m| (m.t_obs, WindowTrainer::resume(m))).collect();
        let mut stash: BTreeMap<Time, (Capability<Time>, Vec<Sample>)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                let time = *cap.least().expect("a message has a time");
                let entry =
                    stash.entry(time).or_insert_with(|| (cap.retain_least(0).expect("output 0 exists"), Vec::new()));
                for d in data {
                    entry.1.append(d);
                }
            });
            while let Some(entry) = stash.first_entry() {
                let time = *entry.key();
                if frontier.less_equal(&time) {
                    break;
                }
                let (cap, mut batch) = entry.remove();
                if !config.enabled {
                    continue;
                }
                batch.sort_by_key(|s| (s.t_obs, s.cascade));
                let mut windows: Vec<Time> = batch.iter().map(|s| s.t_obs).collect();
                windows.dedup();
                for s in &batch {
                    trainers.entry(s.t_obs).or_default().push(s, config.max_samples);
                }
                let mut session = output.session(&cap);
                for t_obs in windows {
                    if let Some(model) = trainers.get_mut(&t_obs).and_then(|t| t.maybe_train(&config, t_obs, time)) {
                        session.give(model);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: f64) -> Sample {
        Sample { cascade: 1, t_obs: 600, x: [0.001, 0.5, 10.0], w }
    }

    #[test]
    fn retrains_every_k_samples_on_the_most_recent_ones() {
        let config =
            ForestConfig { retrain_every: 3, retrain_growth: 0.0, max_samples: 4, n_trees: 5, ..ForestConfig::default() };
        let mut t = WindowTrainer::default();
        let mut versions = Vec::new();
        for i in 0..7 {
            t.push(&sample(i as f64), config.max_samples);
            if let Some(m) = t.maybe_train(&config, 600, 100 + i) {
                versions.push((m.version, m.n_samples));
            }
        }
        assert_eq!(versions, vec![(102, 3), (105, 4)]);
    }

    #[test]
    fn retraining_becomes_geometric_on_long_streams() {
        let config = ForestConfig { retrain_every: 10, retrain_growth: 0.5, n_trees: 2, ..ForestConfig::default() };
        let mut t = WindowTrainer::default();
        let mut at = Vec::new();
        for i in 0..100u64 {
            t.push(&sample(i as f64), config.max_samples);
            if t.maybe_train(&config, 600, i).is_some() {
                at.push(i + 1);
            }
        }
        assert_eq!(at, vec![10, 20, 30, 45, 68], "10, +10, +10, then +50 %");
    }
}
