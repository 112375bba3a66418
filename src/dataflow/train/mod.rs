//! The `train` stage: per observation window, the learned model and the course forest,
//! retrained online from the samples of ended cascades, and the intervals' calibration.
//!
//! Samples are exchanged by window, so a window's training set lives on one worker. They
//! are processed in event-time order (sorted by cascade within a time), and a model trained
//! while processing time `t` is emitted at `t` with version `t`; each run is seeded from
//! (seed, window, number of samples), so models depend on the data only. The synchronous
//! core is [`trainer`]; runs go to the worker's training [`thread`].

pub mod thread;
pub mod trainer;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use self::thread::{ended_runs, TrainingThread, Wait, MAX_RUNS_IN_FLIGHT};
use self::trainer::{TrainSettings, WindowLearning, WindowResult};
use super::stash::{passed, Hold, TimeStash};
use super::{Builder, Checkpoint};
use crate::checkpoint::{StageCheckpoints, StagePart};
use crate::records::{Model, Sample};
use crate::{mix64, owns, Time};

/// The train stage's part of a checkpoint at F.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainPart {
    /// Each window's training sets and schedules (for the windows this worker owned).
    pub trainers: Vec<(Time, WindowLearning)>,
    /// Models emitted at times in [F − δ, F): they reach `predict` through the feedback
    /// loop at or after F, so they are in flight across the cut; a restart re-emits them.
    pub in_loop: Vec<(Time, Model)>,
}

impl StagePart for TrainPart {
    const STAGE: &'static str = "train";
}

/// The train stage of one worker.
struct TrainStage {
    /// The windows' training sets and schedules (only the owner of a window gets samples).
    trainers: HashMap<Time, WindowLearning>,
    /// Samples by time, with a capability to emit the models trained then.
    samples: TimeStash<Sample>,
    /// Models emitted recently, by time: the ones still in the feedback loop at a cut.
    recent: VecDeque<(Time, Model)>,
    /// This stage's checkpoint parts, when checkpointing.
    checkpoints: Option<StageCheckpoints<TrainPart>>,
    /// Restored models in flight, re-emitted once with the initial capability.
    replay: Option<Replay>,
    /// The training thread (`None`: training inline).
    thread: Option<TrainingThread>,
    /// The capabilities of the runs on the thread, in submission order (= result order).
    in_flight: VecDeque<Capability<Time>>,
    /// Schedules, hyper-parameters and the feedback loop's delay.
    settings: TrainSettings,
}

type Output<'a> = OutputBuilderSession<'a, Time, Builder<Model>>;

/// Restored models in flight and the capability to emit them at their times.
type Replay = (Capability<Time>, Vec<(Time, Model)>);

impl TrainStage {
    /// Emits a finished run's model at its planned time.
    fn finish(&mut self, cap: Capability<Time>, result: WindowResult, output: &mut Output<'_>) {
        let time = *cap.time();
        let Some(model) = self.trainers.get_mut(&result.t_obs()).and_then(|t| t.finish(result)) else { return };
        if self.checkpoints.is_some() {
            // The next boundary is after `time`: older models have left the loop.
            let delay = self.settings.predictor.model_delay;
            while self.recent.front().is_some_and(|(t, _)| *t + delay <= time) {
                self.recent.pop_front();
            }
            self.recent.push_back((time, model.clone()));
        }
        output.session(&cap).give(model);
    }

    /// Emits the models of the runs that have ended (waiting as `wait` says).
    fn finish_runs(&mut self, wait: Wait, output: &mut Output<'_>) {
        for (cap, result) in ended_runs(self.thread.as_ref(), &mut self.in_flight, wait) {
            self.finish(cap, result, output);
        }
    }

    /// The part at boundary F: the trainers, and the models emitted in [F − δ, F).
    fn part_at(&mut self, f: Time) -> Option<TrainPart> {
        let delay = self.settings.predictor.model_delay;
        while self.recent.front().is_some_and(|(t, _)| *t + delay < f) {
            self.recent.pop_front();
        }
        let mut trainers: Vec<(Time, WindowLearning)> = self.trainers.iter().map(|(w, t)| (*w, t.clone())).collect();
        trainers.sort_by_key(|(w, _)| *w);
        let in_loop = self.recent.iter().filter(|(t, _)| *t < f).cloned().collect();
        Some(TrainPart { trainers, in_loop })
    }

    /// Writes the parts of the boundaries up to `upto`; a part holds the models emitted
    /// before F, so every run in flight is finished first.
    fn checkpoint_upto(&mut self, upto: Time, output: &mut Output<'_>) {
        if let Some(mut c) = self.checkpoints.take() {
            self.finish_runs(Wait::All, output);
            c.upto(upto, |f| self.part_at(f));
            self.checkpoints = Some(c);
        }
    }

    /// Plans the training run of window `t_obs` due at `cap`'s time, if any, and runs it on
    /// the thread (or inline, after the runs before it, when there is no thread).
    fn train_window(&mut self, t_obs: Time, cap: &Capability<Time>, output: &mut Output<'_>) {
        let now = *cap.time();
        if self.trainers.get(&t_obs).is_some_and(|t| t.next_run_refits(&self.settings)) {
            self.finish_runs(Wait::All, output);
        }
        let Some(job) = self.trainers.get_mut(&t_obs).and_then(|t| t.plan(&self.settings, t_obs, now)) else {
            return;
        };
        if self.in_flight.len() >= MAX_RUNS_IN_FLIGHT {
            self.finish_runs(Wait::Oldest, output);
        }
        let job = match &self.thread {
            Some(thread) => match thread.submit(job) {
                Ok(()) => {
                    self.in_flight.push_back(cap.clone());
                    return;
                }
                Err(job) => *job, // the thread died: train inline from now on
            },
            None => job,
        };
        self.finish_runs(Wait::All, output);
        self.finish(cap.clone(), job.run(), output);
    }

    /// Adds every complete time's samples (by window, then cascade) and trains the windows
    /// that are due.
    fn train_complete_times(&mut self, frontier: &MutableAntichain<Time>, output: &mut Output<'_>) {
        while let Some(time) = self.samples.first_time().filter(|t| passed(frontier, *t)) {
            if !frontier.frontier().is_empty() {
                self.checkpoint_upto(time, output);
            }
            let pending = self.samples.take(time).expect("just seen");
            let cap = pending.capability.expect("samples hold a capability");
            let mut batch = pending.records;
            batch.sort_by_key(|s| (s.t_obs, s.cascade));
            let mut windows: Vec<Time> = batch.iter().map(|s| s.t_obs).collect();
            windows.dedup();
            for s in &batch {
                self.trainers.entry(s.t_obs).or_default().push(s, &self.settings);
            }
            for t_obs in windows {
                self.train_window(t_obs, &cap, output);
            }
        }
        if let Some(upto) = frontier.frontier().first().copied() {
            self.checkpoint_upto(upto, output);
        }
    }
}

/// Trains the per-window models from the samples stream.
pub fn train<'s>(
    samples: StreamVec<'s, Time, Sample>,
    settings: TrainSettings,
    initial: Vec<Model>,
    checkpoint: Option<Checkpoint>,
) -> StreamVec<'s, Time, Model> {
    let pact = Exchange::new(|s: &Sample| mix64(s.t_obs));
    let (index, peers) = (samples.scope().index(), samples.scope().peers());
    let scope = samples.scope();
    samples.unary_frontier::<Builder<Model>, _, _, _>(pact, "Train", move |cap, info| {
        // Every worker resumes every window: only the one that owns a window gets its samples.
        let mut windows: Vec<Time> = initial.iter().map(|m| m.t_obs).collect();
        windows.sort_unstable();
        windows.dedup();
        let mut trainers: HashMap<Time, WindowLearning> =
            windows.iter().map(|w| (*w, WindowLearning::resume(initial.iter().filter(|m| m.t_obs == *w)))).collect();
        let (mut recent, mut replay) = (VecDeque::new(), None);
        if let Some(restored) = checkpoint.as_ref().and_then(|c| c.restored.as_ref()) {
            let mine = |t_obs: Time| owns(mix64(t_obs), index, peers);
            trainers = restored.train.iter().flat_map(|p| p.trainers.iter()).filter(|(w, _)| mine(*w)).cloned().collect();
            let in_loop: Vec<(Time, Model)> =
                restored.train.iter().flat_map(|p| p.in_loop.iter()).filter(|(_, m)| mine(m.t_obs)).cloned().collect();
            recent.extend(in_loop.iter().cloned());
            replay = Some((cap, in_loop));
        }
        let mut stage = TrainStage {
            trainers,
            samples: TimeStash::new(),
            recent,
            checkpoints: checkpoint.map(|c| StageCheckpoints::new(c.checkpointing, index, peers)),
            replay,
            thread: TrainingThread::start(scope.worker().sync_activator_for(info.address.to_vec())),
            in_flight: VecDeque::new(),
            settings,
        };
        move |(input, frontier), output| {
            if let Some((cap, models)) = stage.replay.take() {
                for (time, model) in models {
                    output.session(&cap.delayed(&time)).give(model);
                }
            }
            stage.finish_runs(Wait::None, output);
            stage.samples.absorb(input, Hold::Capability);
            stage.train_complete_times(frontier, output);
        }
    })
}
