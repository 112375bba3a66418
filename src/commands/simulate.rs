//! `tweetoscope simulate`: synthetic cascades from the marked Hawkes model, written in the
//! course file layout, with the true parameters beside them (for parameter-recovery reports).
//!
//! Two modes: final sizes matched to a target distribution with a fixed branching factor and
//! β drawn from the prior per cascade (the default: the course's news sizes,
//! [`NEWS_SIZE_QUANTILES`]; or the sizes of any course index CSV, e.g. `news-index.csv`), or
//! (p, β) drawn from the prior for every cascade (`--match-sizes none`: the model's own
//! world, where most cascades have a handful of events — too few for any window to be
//! estimated, which is why it is not the default).

use std::io::Write;
use std::path::{Path, PathBuf};

use tweetoscope_model::hawkes::HawkesSettings;
use tweetoscope_model::simulate::{
    seeded_rng, simulate_cascade, MatchStrategy, PriorMoments, PriorSampler, SimulationError, SimulationParams, SizeMatcher,
    SizeTarget,
};

/// The final sizes of the course's news dataset (`tests/data/tweetoscope-news-index/news-index.csv`,
/// 20,093 cascades of 50 to 35,999 events, median 90): its 200 quantiles at (k + ½)/200, the
/// default target of `simulate` (statistics of the index, not the index itself).
pub const NEWS_SIZE_QUANTILES: [u64; 200] = [
    50, 50, 50, 50, 50, 51, 51, 51, 51, 52, 52, 52, 52, 53, 53, 53, 53, 54, 54, 54, 55, 55, 55, 55, 56, 56, 56, 57, 57, 57, 57,
    58, 58, 58, 59, 59, 59, 60, 60, 60, 61, 61, 61, 61, 62, 62, 63, 63, 63, 64, 64, 64, 65, 65, 65, 66, 66, 67, 67, 67, 68, 68,
    69, 69, 70, 70, 71, 71, 72, 72, 72, 73, 73, 74, 74, 75, 75, 76, 76, 77, 78, 78, 79, 79, 80, 80, 81, 81, 82, 82, 83, 84, 84,
    85, 86, 86, 87, 88, 88, 89, 90, 91, 91, 92, 93, 94, 94, 95, 96, 97, 98, 99, 100, 101, 102, 102, 103, 104, 105, 106, 107, 108,
    109, 110, 111, 112, 113, 115, 116, 117, 118, 119, 120, 122, 123, 124, 125, 127, 128, 130, 131, 133, 134, 136, 138, 139, 141,
    143, 145, 147, 148, 150, 152, 155, 157, 160, 162, 165, 168, 171, 175, 178, 181, 185, 188, 191, 195, 200, 203, 207, 212, 217,
    223, 228, 234, 239, 246, 253, 259, 268, 277, 286, 295, 307, 321, 334, 348, 367, 390, 410, 432, 462, 501, 542, 602, 687, 806,
    993, 1349, 2919,
];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Number of cascades.
    pub cascades: usize,
    /// Seed: the output depends only on (seed, options).
    pub seed: u64,
    /// Match final sizes to the sizes of this course index CSV (`start_ind,end_ind`); None:
    /// to [`NEWS_SIZE_QUANTILES`]; `none`: no matching, (p, β) from the prior.
    pub match_sizes: Option<PathBuf>,
    /// Branching factor used when matching sizes.
    pub n_star: f64,
    /// Drop events after this many seconds.
    pub horizon: f64,
    /// At most this many events per cascade.
    pub max_events: usize,
}

/// Simulation failures.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The model rejected a parameter.
    #[error(transparent)]
    Model(#[from] SimulationError),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// The true parameters of one simulated cascade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    /// p.
    pub p: f64,
    /// β (1/s).
    pub beta: f64,
    /// Branching factor p·E(m) with the simulator's mark mean.
    pub n_star: f64,
    /// Events simulated.
    pub size: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimulateError + '_ {
    move |source| SimulateError::Io { path: path.to_owned(), source }
}

/// Simulates and writes `cascades-data.csv`, `cascades-index.csv` and `truth.csv` in `dir`.
pub fn simulate_to(dir: &Path, options: &SimulateOptions, hawkes: &HawkesSettings) -> Result<Vec<Truth>, SimulateError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut rng = seeded_rng(options.seed);
    let moments = PriorMoments {
        mean_p: hawkes.prior_mean_p,
        mean_beta: hawkes.prior_mean_beta,
        sd_p: hawkes.prior_sd_p,
        sd_beta: hawkes.prior_sd_beta,
        corr: hawkes.prior_corr,
    };
    let mut base = SimulationParams::course(hawkes.prior_mean_p, hawkes.prior_mean_beta);
    base.alpha = hawkes.alpha;
    base.mu = hawkes.mu;
    base.horizon = options.horizon;
    base.max_events = Some(options.max_events.max(1));
    let prior = PriorSampler::new(&moments, base.mark_mean())?.with_beta_bounds(hawkes.beta_min, hawkes.beta_max)?;
    let target = match &options.match_sizes {
        Some(path) if path.as_os_str() == "none" => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            Some(SizeTarget::from_sizes(&SizeTarget::parse_course_index(&text)?)?)
        }
        None => Some(SizeTarget::from_sizes(&NEWS_SIZE_QUANTILES)?),
    };
    let mut cascades = Vec::with_capacity(options.cascades);
    let mut truths = Vec::with_capacity(options.cascades);
    for _ in 0..options.cascades {
        let (p, beta) = prior.sample(&mut rng);
        let (cascade, p) = match &target {
            None => (simulate_cascade(&SimulationParams { p, beta, ..base }, None, &mut rng)?, p),
            Some(target) => {
                // β varies per cascade (from the prior); p and the first mark follow the size.
                let matcher = SizeMatcher::new(
                    target.clone(),
                    SimulationParams { beta, ..base },
                    MatchStrategy::FixedBranching { n_star: options.n_star },
                )?;
                let m = matcher.simulate(&mut rng);
                (m.cascade, m.p)
            }
        };
        truths.push(Truth { p, beta, n_star: p * base.mark_mean(), size: cascade.len() });
        cascades.push(cascade.events);
    }
    let data_path = dir.join("cascades-data.csv");
    let index_path = dir.join("cascades-index.csv");
    let data = std::io::BufWriter::new(std::fs::File::create(&data_path).map_err(io(&data_path))?);
    let index = std::io::BufWriter::new(std::fs::File::create(&index_path).map_err(io(&index_path))?);
    tweetoscope_model::simulate::write_course_layout(&cascades, data, index).map_err(io(&data_path))?;
    let truth_path = dir.join("truth.csv");
    let mut truth = std::io::BufWriter::new(std::fs::File::create(&truth_path).map_err(io(&truth_path))?);
    let mut write_truth = || -> std::io::Result<()> {
        writeln!(truth, "cascade,p,beta,n_star,size")?;
        for (i, t) in truths.iter().enumerate() {
            writeln!(truth, "{},{},{},{},{}", i + 1, t.p, t.beta, t.n_star, t.size)?;
        }
        truth.flush()
    };
    write_truth().map_err(io(&truth_path))?;
    Ok(truths)
}

/// `simulate`: writes the cascades and their truth, and says how many.
pub fn command(out: &Path, options: &SimulateOptions, config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = super::options::load_config(config.as_deref())?;
    let truths = simulate_to(out, options, &config.hawkes)?;
    let events: usize = truths.iter().map(|t| t.size).sum();
    println!("{} cascades, {events} events written to {}", truths.len(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_files_read_back_as_a_dataset_with_the_truth_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let options = SimulateOptions {
            cascades: 30,
            seed: 5,
            match_sizes: Some("none".into()),
            n_star: 0.2,
            horizon: 86_400.0,
            max_events: 5_000,
        };
        let truths = simulate_to(dir.path(), &options, &HawkesSettings::default()).unwrap();
        let ds =
            crate::io::files::read_dataset(&dir.path().join("cascades-data.csv"), Some(&dir.path().join("cascades-index.csv")))
                .unwrap();
        assert_eq!(ds.cascades.len(), 30);
        for (c, t) in ds.cascades.iter().zip(&truths) {
            assert_eq!(c.events.len(), t.size);
            assert!(t.n_star < 1.0 && t.p > 0.0 && t.beta > 0.0);
        }
        let again = tempfile::tempdir().unwrap();
        simulate_to(again.path(), &options, &HawkesSettings::default()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("cascades-data.csv")).unwrap(),
            std::fs::read(again.path().join("cascades-data.csv")).unwrap(),
            "same seed, same files"
        );
    }

    #[test]
    fn the_default_follows_the_news_sizes_without_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let options =
            SimulateOptions { cascades: 300, seed: 1, match_sizes: None, n_star: 0.2, horizon: 864_000.0, max_events: 100_000 };
        let truths = simulate_to(dir.path(), &options, &HawkesSettings::default()).unwrap();
        let mut sizes: Vec<usize> = truths.iter().map(|t| t.size).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2] as f64;
        assert!((70.0..115.0).contains(&median), "median simulated size {median}");
        assert!(NEWS_SIZE_QUANTILES.windows(2).all(|w| w[0] <= w[1]) && NEWS_SIZE_QUANTILES[100] == 90);
    }

    #[test]
    fn matched_sizes_follow_the_course_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tweetoscope-news-index/news-index.csv");
        let options = SimulateOptions {
            cascades: 400,
            seed: 9,
            match_sizes: Some(index),
            n_star: 0.2,
            horizon: f64::INFINITY,
            max_events: 1_000_000,
        };
        let truths = simulate_to(dir.path(), &options, &HawkesSettings::default()).unwrap();
        let mut sizes: Vec<usize> = truths.iter().map(|t| t.size).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2] as f64;
        // The index's median size is 90 (SOURCE.md); 400 draws with n* = 0.2 land near it.
        assert!((70.0..115.0).contains(&median), "median simulated size {median}");
    }
}
