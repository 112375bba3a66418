//! Input validation: which events a computation uses, and the checks that make every later
//! step free of NaN, infinities and panics.

use super::{Event, FitError};

/// Largest accepted event or observation time, in seconds (about 31,700 years). The cap keeps
/// the squared lags of the second derivatives (up to (t_n − t_1)²) far from overflow.
pub const MAX_TIME: f64 = 1e12;

/// Largest accepted magnitude. Follower counts are below 1e10; the cap keeps sums of
/// magnitudes (and their products with squared lags) finite for any number of events.
pub const MAX_MAGNITUDE: f64 = 1e15;

/// Checks every event (finite, non-negative, capped, sorted by time) and the observation
/// time, and returns the events with `t ≤ t_obs` (a prefix, since times are sorted).
///
/// The whole slice is checked, not only the prefix: an unsorted slice would otherwise make
/// the prefix silently wrong.
pub(crate) fn observed(events: &[Event], t_obs: f64) -> Result<&[Event], FitError> {
    if !t_obs.is_finite() || t_obs > MAX_TIME {
        return Err(FitError::InvalidInput(format!("observation time {t_obs} is not a finite time ≤ {MAX_TIME:e} s")));
    }
    // One branch-free pass to accept valid input fast (comparisons with NaN are false), and
    // a second one only to name the culprit.
    let mut ok = true;
    let mut prev = 0.0f64;
    for e in events {
        ok &= (e.t >= prev) & (e.t <= MAX_TIME) & (e.m >= 0.0) & (e.m <= MAX_MAGNITUDE);
        prev = e.t;
    }
    if !ok {
        return Err(culprit(events));
    }
    let n = events.partition_point(|e| e.t <= t_obs);
    Ok(&events[..n])
}

/// The error message for the first invalid event (there is one).
#[cold]
fn culprit(events: &[Event]) -> FitError {
    let mut prev = f64::NEG_INFINITY;
    for (i, e) in events.iter().enumerate() {
        if !(e.t.is_finite() && (0.0..=MAX_TIME).contains(&e.t)) {
            return FitError::InvalidInput(format!("event {i}: time {} is not in [0, {MAX_TIME:e}] s", e.t));
        }
        if !(e.m.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&e.m)) {
            return FitError::InvalidInput(format!("event {i}: magnitude {} is not in [0, {MAX_MAGNITUDE:e}]", e.m));
        }
        if e.t < prev {
            return FitError::InvalidInput(format!("event {i}: time {} is before the previous event ({prev})", e.t));
        }
        prev = e.t;
    }
    FitError::InvalidInput("invalid events".into())
}

/// Like [`observed`], and also requires what a likelihood needs: n ≥ 2 events, and a
/// positive first magnitude (otherwise the second event has zero intensity and LL = −∞
/// for every (p, β)).
pub(crate) fn fittable(events: &[Event], t_obs: f64) -> Result<&[Event], FitError> {
    let ev = observed(events, t_obs)?;
    if ev.len() < 2 {
        return Err(FitError::TooFewEvents { n: ev.len() });
    }
    // A_i = Σ_{j<i} m_j e^{…} is zero for some i ≥ 2 exactly when m_1 = 0 (A_2 = m_1 e^{…}).
    if ev[0].m <= 0.0 {
        return Err(FitError::NoExcitation);
    }
    Ok(ev)
}

/// Checks that a parameter is a finite positive number.
pub(crate) fn positive(name: &str, x: f64) -> Result<(), FitError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(FitError::InvalidInput(format!("{name} = {x} is not a finite positive number")))
    }
}
