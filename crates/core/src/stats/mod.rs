//! The statistics of the judge, as pure functions of the raw series:
//! always-valid intervals for error rates and latency ratios, their
//! decisions, and the time each undecided check still needs. The
//! specification, section by section, is `design/statistics.md`.
//!
//! - [`boundary`]: the normal-mixture half-width `h(V; τ, α)` (§1).
//! - [`errors`]: shadow minus production error rate, stratified by minute (§2).
//! - [`latency`]: log ratio of a latency quantile, by adaptive period (§3).
//!
//! Each check recomputes its interval from the evidence start every tick
//! (§0); nothing here keeps state between ticks.

pub mod boundary;
pub mod errors;
pub mod latency;

/// What one check concludes (§0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The whole interval lies below the margin.
    Pass,
    /// The whole interval lies above the margin, with enough evidence to fail.
    Fail,
    Inconclusive(Inconclusive),
}

/// Why a check is inconclusive; the two call for different words and, in
/// §4, for different remedies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inconclusive {
    /// Below a minimum of evidence (§5): too few shadow requests, too few
    /// shadow errors to fail on, or too few eligible latency periods.
    Insufficient,
    /// The interval contains the margin.
    Straddles,
}

/// `estimate ± h(V)`, on the check's own scale (a rate difference, or a log
/// ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    /// `V`, the variance of the estimate.
    pub variance: f64,
    /// `h(V; τ, α)`.
    pub half_width: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    fn around(estimate: f64, variance: f64, tau: f64, alpha: f64) -> Self {
        let half_width = boundary::h(variance, tau, alpha);
        Self {
            estimate,
            variance,
            half_width,
            lo: estimate - half_width,
            hi: estimate + half_width,
        }
    }

    /// §0 on the interval alone; each check adds its evidence minimums.
    fn against(&self, margin: f64) -> Decision {
        if self.lo > margin {
            Decision::Fail
        } else if self.hi < margin {
            Decision::Pass
        } else {
            Decision::Inconclusive(Inconclusive::Straddles)
        }
    }
}

/// §4: how much more evidence a check needs before its interval can leave
/// the margin, if the estimate stays where it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeToDecision {
    /// `extra` is in the check's unit of evidence (shadow requests for
    /// errors, periods for latency); both are 0 when the interval already
    /// clears the margin. `minutes` is infinite when no traffic would arrive.
    Needs { extra: f64, minutes: f64 },
    /// The estimate sits on the margin (`d` below [`UNDECIDABLE_BELOW`]`·τ`):
    /// "within ±h of the margin", whatever the extension.
    Undecidable,
}

/// `d = |estimate − margin|` counts as 0 below this fraction of `τ`.
///
/// Why this value: as `d → 0` the information needed grows like
/// `ln(1/d)/d²` (§4, "T blows up"). At `d = 10⁻⁶·τ` it is about 10¹² times
/// the information a healthy shadow needs to PASS (`d = τ`, `T_parity`), so
/// no traffic fits it into the 30-day limit; yet the threshold sits far
/// above rounding noise in `d` (~10⁻¹⁶ relative) and keeps `V*` inside the
/// bisection bracket of §4 for any margin above ~10⁻¹⁰.
pub const UNDECIDABLE_BELOW: f64 = 1e-6;

/// `1/V* − 1/V` with `h(V*) = d` (§4), floored at 0; `None` when `d` is
/// below [`UNDECIDABLE_BELOW`]`·τ`.
fn information_needed(d: f64, variance: f64, tau: f64, alpha: f64) -> Option<f64> {
    if d.is_nan() || d < UNDECIDABLE_BELOW * tau {
        return None;
    }
    let target = boundary::variance_for_half_width(d, tau, alpha);
    Some((1.0 / target - 1.0 / variance).max(0.0))
}

/// `extra` evidence at `per_minute` units a minute, without 0/0 when
/// nothing more is needed or ∞·0 when nothing arrives.
fn needs(extra: f64, per_minute: f64) -> TimeToDecision {
    let minutes = if extra <= 0.0 {
        0.0
    } else if per_minute > 0.0 {
        extra / per_minute
    } else {
        f64::INFINITY
    };
    TimeToDecision::Needs { extra, minutes }
}
