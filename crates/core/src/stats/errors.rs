//! §2 of statistics.md: the shadow's error rate minus production's, from
//! per-minute paired counts, with production re-weighted to the shadow's
//! minutes.

use super::{information_needed, needs, Decision, Inconclusive, Interval, TimeToDecision};

/// One minute in which both variants have datapoints (§0: no data is not
/// zero, so the caller drops minutes missing on either side). Counts are
/// CloudWatch sums, hence `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedMinute {
    pub shadow_requests: f64,
    pub shadow_errors: f64,
    pub production_requests: f64,
    pub production_errors: f64,
}

impl PairedMinute {
    /// `(n_s, e_s, n_p, e_p)`, the order §6 writes minutes in.
    pub const fn new(
        shadow_requests: f64,
        shadow_errors: f64,
        production_requests: f64,
        production_errors: f64,
    ) -> Self {
        Self {
            shadow_requests,
            shadow_errors,
            production_requests,
            production_errors,
        }
    }
}

/// The knobs of §2, defaults from §5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorParams {
    /// `δ`, as a fraction (policies write points: 0.5 pt = 0.005); also `τ`.
    pub margin: f64,
    /// Two-sided level of the check.
    pub alpha: f64,
    /// Below this `N_s` the normal approximation is not trusted.
    pub min_shadow_requests: f64,
    /// No FAIL on fewer shadow errors than this.
    pub min_shadow_errors_to_fail: f64,
}

impl Default for ErrorParams {
    /// δ = 0.005, α = 0.05, N_s ≥ 1000, FAIL needs E_s ≥ 5 (§5).
    fn default() -> Self {
        Self {
            margin: 0.005,
            alpha: 0.05,
            min_shadow_requests: 1000.0,
            min_shadow_errors_to_fail: 5.0,
        }
    }
}

/// The sums of §2 over the minutes used.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorCounts {
    /// Minutes summed.
    pub minutes: usize,
    /// Minutes left out because production had no requests, or a count was
    /// negative or not a number.
    pub skipped: usize,
    /// `N_s`.
    pub shadow_requests: f64,
    /// `E_s`, after clamping.
    pub shadow_errors: f64,
    /// `N_p`.
    pub production_requests: f64,
    /// `E_p`, after clamping.
    pub production_errors: f64,
    /// `Ê_p = Σ n_s·e_p/n_p`, production's errors at the shadow's minutes.
    pub expected_shadow_errors: f64,
    /// `Q = Σ n_s²/n_p`, production's share in the variance of `Ê_p`.
    pub q: f64,
}

/// The interval of §2 and the smoothed rates behind its variance, which §4
/// needs again for other sampling fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorEstimate {
    /// `Δ̂ = (E_s − Ê_p)/N_s`, `V`, `h(V; τ = δ, α)`, `lo`, `hi`.
    pub interval: Interval,
    /// `p̃_s = (E_s+1)/(N_s+2)`.
    pub shadow_rate: f64,
    /// `p̃_p = (E_p+1)/(N_p+2)`.
    pub production_rate: f64,
    /// `p† = min(1, max(p̃_s, p̃_p + δ))`.
    pub shadow_rate_at_margin: f64,
}

/// What the error check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorEvidence {
    pub counts: ErrorCounts,
    /// `None` when no shadow request was counted: there is no rate to
    /// estimate (and the decision is insufficient).
    pub estimate: Option<ErrorEstimate>,
    pub decision: Decision,
}

/// §2: sums the minutes, builds `Δ̂ ± h(V)` and decides.
///
/// Errors are clamped to `[0, n]` per variant and minute. A minute with
/// `n_p = 0` (or a negative or non-finite count) is skipped and counted in
/// [`ErrorCounts::skipped`]: `Ê_p` and `Q` divide by `n_p`, and a production
/// with no requests that minute says nothing about its rate then.
pub fn assess(minutes: &[PairedMinute], params: &ErrorParams) -> ErrorEvidence {
    let mut counts = ErrorCounts::default();
    for minute in minutes {
        counts.add(minute);
    }
    assess_counts(counts, params)
}

/// §2 from sums already taken, so that sequences starting at different
/// times can share one pass over the minutes.
pub fn assess_counts(counts: ErrorCounts, params: &ErrorParams) -> ErrorEvidence {
    let Some(estimate) = estimate(&counts, params) else {
        return ErrorEvidence {
            counts,
            estimate: None,
            decision: Decision::Inconclusive(Inconclusive::Insufficient),
        };
    };
    let decision = if counts.shadow_requests < params.min_shadow_requests {
        Decision::Inconclusive(Inconclusive::Insufficient)
    } else {
        match estimate.interval.against(params.margin) {
            Decision::Fail if counts.shadow_errors < params.min_shadow_errors_to_fail => {
                Decision::Inconclusive(Inconclusive::Insufficient)
            }
            decision => decision,
        }
    };
    ErrorEvidence {
        counts,
        estimate: Some(estimate),
        decision,
    }
}

impl ErrorCounts {
    /// Adds one minute (or one stratum of any length with a constant
    /// sampling fraction), or counts it as skipped.
    pub fn add(&mut self, m: &PairedMinute) {
        let usable = [m.shadow_requests, m.production_requests]
            .iter()
            .all(|n| n.is_finite() && *n >= 0.0)
            && m.shadow_errors.is_finite()
            && m.production_errors.is_finite()
            && m.production_requests > 0.0;
        if !usable {
            self.skipped += 1;
            return;
        }
        let (n_s, n_p) = (m.shadow_requests, m.production_requests);
        let e_s = m.shadow_errors.clamp(0.0, n_s);
        let e_p = m.production_errors.clamp(0.0, n_p);
        self.minutes += 1;
        self.shadow_requests += n_s;
        self.shadow_errors += e_s;
        self.production_requests += n_p;
        self.production_errors += e_p;
        self.expected_shadow_errors += n_s * e_p / n_p;
        self.q += n_s * n_s / n_p;
    }

    /// The one-sample version, for a limit on the shadow's own rate: no
    /// production errors to subtract and none of production's variance, so
    /// `Δ̂ = E_s/N_s`, `p† = max(p̃_s, δ)` and `V = p†(1−p†)/N_s`.
    pub fn without_production(self) -> Self {
        Self {
            production_requests: f64::INFINITY,
            production_errors: 0.0,
            expected_shadow_errors: 0.0,
            q: 0.0,
            ..self
        }
    }
}

fn estimate(c: &ErrorCounts, params: &ErrorParams) -> Option<ErrorEstimate> {
    let n_s = c.shadow_requests;
    if n_s <= 0.0 {
        return None;
    }
    let delta = params.margin;
    let shadow_rate = (c.shadow_errors + 1.0) / (n_s + 2.0);
    let production_rate = (c.production_errors + 1.0) / (c.production_requests + 2.0);
    let shadow_rate_at_margin = shadow_rate.max(production_rate + delta).min(1.0);
    let variance = shadow_rate_at_margin * (1.0 - shadow_rate_at_margin) / n_s
        + production_rate * (1.0 - production_rate) * c.q / (n_s * n_s);
    let difference = (c.shadow_errors - c.expected_shadow_errors) / n_s;
    Some(ErrorEstimate {
        interval: Interval::around(difference, variance, delta, params.alpha),
        shadow_rate,
        production_rate,
        shadow_rate_at_margin,
    })
}

impl ErrorEstimate {
    /// §4 at `d = |Δ̂ − δ|`: extra shadow requests `ΔN` and the minutes they
    /// take at sampling fraction `fraction` (`f′`) of `production_per_minute`
    /// (`λ_p`, over the last 60 min).
    pub fn time_to_decision(
        &self,
        params: &ErrorParams,
        production_per_minute: f64,
        fraction: f64,
    ) -> TimeToDecision {
        let d = (self.interval.estimate - params.margin).abs();
        self.time_at_distance(d, params, production_per_minute, fraction)
    }

    /// §4 `T_parity`: the same at `d = δ`, the time a healthy shadow
    /// (estimate 0) needs to PASS.
    pub fn time_to_parity(
        &self,
        params: &ErrorParams,
        production_per_minute: f64,
        fraction: f64,
    ) -> TimeToDecision {
        self.time_at_distance(params.margin, params, production_per_minute, fraction)
    }

    fn time_at_distance(
        &self,
        d: f64,
        params: &ErrorParams,
        production_per_minute: f64,
        fraction: f64,
    ) -> TimeToDecision {
        let Some(information) =
            information_needed(d, self.interval.variance, params.margin, params.alpha)
        else {
            return TimeToDecision::Undecidable;
        };
        // v₁(f′): one shadow request's variance contribution when production
        // sends 1/f′ requests per shadow request (Q/N_s = f′ at constant
        // sampling).
        let p = self.shadow_rate_at_margin;
        let per_request =
            p * (1.0 - p) + self.production_rate * (1.0 - self.production_rate) * fraction;
        needs(per_request * information, production_per_minute * fraction)
    }
}
