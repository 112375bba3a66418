//! `tweetoscope fit`: the Hawkes MAP fit of every cascade at one observation time, one JSON
//! line per cascade.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use tweetoscope_model::hawkes::{Event, HawkesModel};

use crate::io::files::read_dataset;

/// Prints `{"cascade","n","p","beta","n_star","G1","N_pred","objective"}` per cascade (or
/// `{"cascade","n","error"}` when the fit fails).
pub fn command(input: &Path, index: Option<&Path>, t_obs: f64, config: Option<PathBuf>) -> Result<()> {
    // --t-obs is checked by its parser (finite, ≥ 0).
    let config = super::options::load_config(config.as_deref())?;
    let model = HawkesModel::new(config.hawkes.clone())?;
    let dataset = read_dataset(input, index)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in &dataset.cascades {
        let events: Vec<Event> =
            c.events.iter().take_while(|(t, _)| (*t as f64) <= t_obs).map(|&(t, m)| Event { t: t as f64, m }).collect();
        let line = match model.fit(&events, t_obs) {
            Ok(f) => serde_json::json!({"cascade": c.id, "n": f.n, "p": f.p, "beta": f.beta, "n_star": f.n_star,
                                        "G1": f.g1, "N_pred": f.n_pred, "objective": f.objective}),
            Err(e) => serde_json::json!({"cascade": c.id, "n": events.len(), "error": e.to_string()}),
        };
        writeln!(out, "{line}")?;
    }
    Ok(())
}
