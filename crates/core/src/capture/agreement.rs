//! The two output checks, with the error rates' always-valid machinery
//! (statistics.md §2, one-sample form).
//!
//! - `output_agreement` min `a` (share of pairs that match): the
//!   disagreements are a Bernoulli sequence, judged against the margin
//!   `δ = 1 − a` exactly like an absolute limit on an error rate:
//!   `Δ̂ = D/N`, `p̃ = (D+1)/(N+2)`, `p† = max(p̃, δ)`, `V = p†(1−p†)/N`,
//!   `Δ̂ ± h(V; τ = δ, α)`; PASS when the upper end is below `δ`, FAIL when
//!   the lower end is above it (with at least 5 disagreements), never on
//!   fewer than 1000 pairs.
//! - `output_mean_abs_diff` max `m`: each pair's `|shadow − production|` is
//!   clipped at `C` (the policy's `clip`, default `10·m`) and scaled to
//!   `x = min(|d|, C)/C ∈ [0, 1]`. A variable in [0, 1] with mean `μ` has
//!   variance at most `μ(1−μ)`, so the same sequence holds for the mean of
//!   `x` against `m/C`, with `Σx` in place of `D`. What is judged is the
//!   mean of the clipped difference: it never exceeds the true mean, so the
//!   report says how many pairs were clipped, and a FAIL is never weakened
//!   by it.
//!
//! Only compared pairs count (unreadable ones are reported, not counted),
//! and the checks are inconclusive, never a pass, when the pairing rate is
//! below the policy's threshold.

use super::compare::Compared;
use crate::stats::errors::{assess_counts, ErrorCounts, ErrorEvidence, ErrorParams};

/// The outputs of the step's sampled pairs, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutputCounts {
    pub agree: u64,
    pub disagree: u64,
    pub unreadable: u64,
    /// Pairs whose two values were numbers.
    pub numeric: u64,
    /// `Σ min(|d|, C)` over the numeric pairs.
    pub clipped_difference_sum: f64,
    /// Numeric pairs with `|d| > C`.
    pub clipped: u64,
}

impl OutputCounts {
    pub fn add(&mut self, compared: &Compared, clip: f64) {
        let difference = match compared {
            Compared::Agree { difference } => {
                self.agree += 1;
                difference
            }
            Compared::Disagree { difference } => {
                self.disagree += 1;
                difference
            }
            Compared::Unreadable { .. } => {
                self.unreadable += 1;
                return;
            }
        };
        if let Some(d) = difference.filter(|d| d.is_finite()) {
            self.numeric += 1;
            if d > clip {
                self.clipped += 1;
            }
            self.clipped_difference_sum += d.min(clip);
        }
    }

    pub fn compared(&self) -> u64 {
        self.agree + self.disagree
    }
}

/// The one-sample counts: `N` trials, `D` (or `Σx`) events.
fn one_sample(trials: f64, events: f64) -> ErrorCounts {
    ErrorCounts {
        minutes: 1,
        shadow_requests: trials,
        shadow_errors: events,
        ..ErrorCounts::default()
    }
    .without_production()
}

/// The sequence's parameters for `output_agreement` min `min_share`.
pub fn agreement_params(min_share: f64, alpha: f64) -> ErrorParams {
    ErrorParams {
        margin: 1.0 - min_share,
        alpha,
        ..ErrorParams::default()
    }
}

/// The sequence's parameters for `output_mean_abs_diff` max `max`, clipped
/// at `clip`, on the scale of `x`.
pub fn mean_abs_diff_params(max: f64, clip: f64, alpha: f64) -> ErrorParams {
    ErrorParams {
        margin: max / clip,
        alpha,
        // A mean of bounded values has no count of events to demand.
        min_shadow_errors_to_fail: 0.0,
        ..ErrorParams::default()
    }
}

/// `output_agreement` min `min_share` (a fraction, 0.99 for 99 %).
pub fn agreement_evidence(counts: &OutputCounts, min_share: f64, alpha: f64) -> ErrorEvidence {
    let params = agreement_params(min_share, alpha);
    assess_counts(
        one_sample(counts.compared() as f64, counts.disagree as f64),
        &params,
    )
}

/// `output_mean_abs_diff` max `max`, clipped at `clip`; the interval is on
/// the scale of `x` (multiply by `clip` for the output's unit).
pub fn mean_abs_diff_evidence(
    counts: &OutputCounts,
    max: f64,
    clip: f64,
    alpha: f64,
) -> ErrorEvidence {
    let params = mean_abs_diff_params(max, clip, alpha);
    assess_counts(
        one_sample(counts.numeric as f64, counts.clipped_difference_sum / clip),
        &params,
    )
}
