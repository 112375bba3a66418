//! The `estimate` stage: fits the marked Hawkes model to each partial cascade (MAP, global
//! optimum; in the default mode with the mark scale of the cascade's own follower counts),
//! computes the SEISMIC baseline on the same events, so every accuracy figure comes side by
//! side, and the predictive layer's features (`crates/model/PREDICTIVE.md` §2). A stateless
//! map: each worker fits the partials of its cascades.

use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use tweetoscope_model::hawkes::HawkesModel;
use tweetoscope_model::predictive::{features, HawkesSummary};

use crate::records::{Estimate, FitSummary, Partial};
use crate::Time;

/// Fits one partial cascade (the estimate stage's core), computes the SEISMIC baseline on the
/// same events, and the predictive layer's features from both.
pub fn estimate(model: &HawkesModel, partial: Partial) -> Estimate {
    let seismic_events: Vec<(f64, f64)> = partial.events.iter().map(|e| (e.t, e.m)).collect();
    let seismic = tweetoscope_model::seismic::prediction(
        &seismic_events,
        partial.t_obs as f64,
        &tweetoscope_model::seismic::SeismicParams::default(),
    )
    .ok();
    let n_seismic = seismic.and_then(|p| p.final_size).filter(|n| n.is_finite());
    let fit = model.fit(&partial.events, partial.t_obs as f64).ok();
    let features =
        features(&partial.events, partial.t_obs as f64, fit.as_ref().map(HawkesSummary::from).as_ref(), seismic.as_ref());
    let fit = fit.map(|f| FitSummary {
        p: f.p,
        beta: f.beta,
        n_star: f.n_star,
        g1: f.g1,
        n_hawkes: f.n_pred,
        at_bound: !f.bounds_hit.is_empty(),
    });
    Estimate {
        cascade: partial.cascade,
        t_obs: partial.t_obs,
        msg: partial.msg,
        n: partial.events.len(),
        start: partial.start,
        training_only: partial.training_only,
        fit,
        n_seismic,
        seismic,
        features,
    }
}

/// The estimate stage: one estimate per partial cascade, on the worker that owns it.
pub fn estimate_stage<'s>(partials: StreamVec<'s, Time, Partial>, model: HawkesModel) -> StreamVec<'s, Time, Estimate> {
    partials.map(move |p| {
        let (window, started) = (p.t_obs, std::time::Instant::now());
        let e = estimate(&model, p);
        crate::telemetry::hawkes_fit(window, started.elapsed());
        e
    })
}
