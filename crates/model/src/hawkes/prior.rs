//! The bivariate log-normal prior on θ = (p, β), built by moment matching (SPEC §4.1).
//!
//! Everything here works in log space, (u, v) = (log p, log β), because that is where the
//! prior is a quadratic form and where the optimiser works.

use super::{PriorKind, SettingsError};

/// Bivariate log-normal prior on θ = (p, β) whose mean and covariance match the given
/// moments of θ.
///
/// With m = (μ_p, μ_β) and Q the covariance of θ, the log-normal parameters are
/// Σ = log(Q / (m mᵀ) + 1) elementwise and mean = log m − diag(Σ)/2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormalPrior {
    /// Covariance Σ of (log p, log β); kept for inspection and tests.
    pub sigma: [[f64; 2]; 2],
    /// Mean of (log p, log β).
    pub mean: [f64; 2],
    /// Σ⁻¹, the matrix of the quadratic form −½ dᵀΣ⁻¹d the course maximises.
    pub sigma_inv: [[f64; 2]; 2],
}

impl LogNormalPrior {
    /// Moment matching from the means, standard deviations and correlation of (p, β).
    ///
    /// Fails when the moments do not define a proper log-normal (for example a strong
    /// negative correlation with large coefficients of variation makes Q/(m mᵀ) + 1 ≤ 0, or
    /// Σ singular).
    pub fn from_moments(mean_p: f64, mean_beta: f64, sd_p: f64, sd_beta: f64, corr: f64) -> Result<Self, SettingsError> {
        let m = [mean_p, mean_beta];
        let sd = [sd_p, sd_beta];
        let mut sigma = [[0.0; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                let q = if i == j { sd[i] * sd[i] } else { corr * sd[0] * sd[1] };
                // log(Q/(m mᵀ) + 1); ln_1p keeps the small ratios accurate.
                sigma[i][j] = (q / (m[i] * m[j])).ln_1p();
            }
        }
        let det = sigma[0][0] * sigma[1][1] - sigma[0][1] * sigma[1][0];
        let all_finite = sigma.iter().flatten().all(|x| x.is_finite());
        let positive_definite = det.is_finite() && det > 0.0 && sigma[0][0] > 0.0 && sigma[1][1] > 0.0;
        if !(all_finite && positive_definite) {
            return Err(SettingsError::Invalid(format!(
                "prior moments do not give a positive-definite log-normal covariance (Σ = {sigma:?})"
            )));
        }
        let mean = [m[0].ln() - sigma[0][0] / 2.0, m[1].ln() - sigma[1][1] / 2.0];
        let sigma_inv = [[sigma[1][1] / det, -sigma[0][1] / det], [-sigma[1][0] / det, sigma[0][0] / det]];
        if !(mean.iter().chain(sigma_inv.iter().flatten()).all(|x| x.is_finite())) {
            return Err(SettingsError::Invalid("prior parameters overflow".into()));
        }
        Ok(Self { sigma, mean, sigma_inv })
    }

    /// −½ dᵀΣ⁻¹d with d = (u, v) − mean: the course's log-prior (no constant, no Jacobian).
    pub fn quadratic(&self, u: f64, v: f64) -> f64 {
        let d = [u - self.mean[0], v - self.mean[1]];
        let s = &self.sigma_inv;
        -0.5 * (s[0][0] * d[0] * d[0] + 2.0 * s[0][1] * d[0] * d[1] + s[1][1] * d[1] * d[1])
    }

    /// The log-prior of the given kind at (u, v) = (log p, log β).
    pub fn log_prior(&self, kind: PriorKind, u: f64, v: f64) -> f64 {
        match kind {
            PriorKind::Course => self.quadratic(u, v),
            PriorKind::LogNormal => self.quadratic(u, v) - u - v,
            PriorKind::Flat => 0.0,
        }
    }
}

/// The prior as the optimiser sees it: a quadratic in (u, v) plus a linear term, with the
/// coefficients of the flat prior all zero. Keeping one code path for the three kinds means
/// the derivatives are written once.
///
/// log prior = −½ (s11 d₁² + 2 s12 d₁d₂ + s22 d₂²) − lin·(u + v), d = (u, v) − mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PriorTerms {
    pub s11: f64,
    pub s12: f64,
    pub s22: f64,
    pub m1: f64,
    pub m2: f64,
    pub lin: f64,
}

impl PriorTerms {
    pub fn new(prior: &LogNormalPrior, kind: PriorKind) -> Self {
        let s = &prior.sigma_inv;
        let [m1, m2] = prior.mean;
        match kind {
            PriorKind::Course => Self { s11: s[0][0], s12: s[0][1], s22: s[1][1], m1, m2, lin: 0.0 },
            PriorKind::LogNormal => Self { s11: s[0][0], s12: s[0][1], s22: s[1][1], m1, m2, lin: 1.0 },
            PriorKind::Flat => Self { s11: 0.0, s12: 0.0, s22: 0.0, m1: 0.0, m2: 0.0, lin: 0.0 },
        }
    }

    /// Value of the log-prior.
    pub fn value(&self, u: f64, v: f64) -> f64 {
        let (d1, d2) = (u - self.m1, v - self.m2);
        -0.5 * (self.s11 * d1 * d1 + 2.0 * self.s12 * d1 * d2 + self.s22 * d2 * d2) - self.lin * (u + v)
    }

    /// ∂/∂u of the log-prior (the optimiser inlines it; tests check it).
    #[cfg(test)]
    pub fn du(&self, u: f64, v: f64) -> f64 {
        -(self.s11 * (u - self.m1) + self.s12 * (v - self.m2)) - self.lin
    }

    /// ∂/∂v of the log-prior.
    pub fn dv(&self, u: f64, v: f64) -> f64 {
        -(self.s12 * (u - self.m1) + self.s22 * (v - self.m2)) - self.lin
    }
}
