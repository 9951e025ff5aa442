//! Pure verdicts: (policy, window, measurements) → Pass, Fail or
//! Inconclusive, with one result per check that carries value, limit, unit
//! and what was found, as data. The report renders the words.

use chrono::{DateTime, DurationRound, Utc};

use crate::metrics::{Measurements, VariantRole, Window};
use crate::policy::{Check, CheckMetric, Limit, Policy, Unit, WindowSpec};
use crate::ports::MetricFailure;
use crate::schedule::chrono_duration;

pub use crate::metrics::INVOCATIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// Which check a result belongs to; reports name it with [`CheckId::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckId {
    /// No evidence window could be formed, or nothing could be measured.
    Window,
    /// Enough shadow invocations to conclude anything.
    ShadowInvocations,
    Metric(CheckMetric),
}

impl CheckId {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::ShadowInvocations => "shadow_invocations",
            Self::Metric(metric) => metric.id(),
        }
    }
}

/// What the shadow's value was compared with, with the production value it
/// was derived from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Against {
    Absolute,
    Ratio { ratio: f64, production: f64 },
    Above { above: f64, production: f64 },
}

/// What a check found, in numbers; the report puts it into words.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// No complete minute since the last change.
    NoWindow {
        last_modified: DateTime<Utc>,
        window_end: DateTime<Utc>,
    },
    /// The metric source failed.
    NoMeasurements {
        error: MetricFailure,
    },
    /// Shadow invocations against the policy's minimum; `None` when
    /// CloudWatch had no datapoint at all.
    Evidence {
        invocations: Option<f64>,
        minimum: f64,
    },
    NoInvocations {
        role: VariantRole,
    },
    NoDatapoints {
        role: VariantRole,
    },
    /// Too little production traffic for a limit relative to production.
    ProductionTooThin {
        invocations: f64,
        minimum: f64,
    },
    /// The shadow's value against the limit.
    Compared {
        shadow: f64,
        against: Against,
        limit: f64,
    },
    /// Over the limit, but the 95 % lower bound of the rate is not.
    TooFewErrorsToTell {
        shadow: f64,
        against: Against,
        limit: f64,
        errors: f64,
        invocations: f64,
        lower_bound: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub id: CheckId,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub unit: Unit,
    pub outcome: Outcome,
    pub finding: Finding,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
    /// Index into `checks` of the result that decided the outcome (for a
    /// pass: the one closest to its limit).
    pub decisive: Option<usize>,
}

impl Verdict {
    pub fn decisive_check(&self) -> Option<&CheckResult> {
        self.decisive.and_then(|index| self.checks.get(index))
    }

    /// A verdict with nothing behind it but its outcome, for planning tests
    /// and tools.
    pub fn from_outcome(outcome: Outcome) -> Self {
        Self {
            outcome,
            checks: Vec::new(),
            decisive: None,
        }
    }

    /// A check over its limit, even when thin evidence kept the verdict from
    /// being Fail.
    pub fn first_failed_check(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.outcome == Outcome::Fail)
    }

    /// Nothing could be judged: no window, or no measurements.
    pub fn without_evidence(finding: Finding) -> Self {
        Self {
            outcome: Outcome::Inconclusive,
            checks: vec![CheckResult {
                id: CheckId::Window,
                value: None,
                limit: None,
                unit: Unit::Invocations,
                outcome: Outcome::Inconclusive,
                finding,
            }],
            decisive: Some(0),
        }
    }
}

/// The evidence window: from the later of (now − lookback) and the last
/// change, to `publish_delay` before now, on whole minutes. Starting at the
/// last change means every datapoint belongs to the sampling in force now.
/// `Err` is the finding that explains why there is none yet.
pub fn evidence_window(
    last_modified: DateTime<Utc>,
    spec: &WindowSpec,
    now: DateTime<Utc>,
) -> Result<Window, Finding> {
    let minute = chrono::Duration::minutes(1);
    let end = floor_to(now - chrono_duration(spec.publish_delay), minute);
    let lookback_start = end - chrono_duration(spec.lookback);
    // The minute in which the change happened mixes old and new sampling.
    let change_start = ceil_to(last_modified, minute);
    let start = lookback_start.max(change_start);
    if start >= end {
        return Err(Finding::NoWindow {
            last_modified,
            window_end: end,
        });
    }
    Ok(Window { start, end })
}

fn floor_to(time: DateTime<Utc>, unit: chrono::Duration) -> DateTime<Utc> {
    time.duration_trunc(unit).unwrap_or(time)
}

fn ceil_to(time: DateTime<Utc>, unit: chrono::Duration) -> DateTime<Utc> {
    let floor = floor_to(time, unit);
    if floor == time {
        time
    } else {
        floor + unit
    }
}

/// A metric's value for one variant in the unit of its checks, or the
/// finding that says why there is none.
fn metric_value(
    metric: CheckMetric,
    measurements: &Measurements,
    role: VariantRole,
) -> Result<f64, Finding> {
    let variant = measurements.variant(role);
    let series = metric.series();
    match metric.unit() {
        Unit::Percent => {
            let invocations = variant
                .get(INVOCATIONS)
                .filter(|n| *n > 0.0)
                .ok_or(Finding::NoInvocations { role })?;
            // SageMaker publishes 0 or 1 per request for the error metrics,
            // so a missing error series with traffic is a gap, not zero.
            let errors = variant.get(series).ok_or(Finding::NoDatapoints { role })?;
            // Multiplying first keeps exact boundaries exact (5 of 500 is 1 %).
            Ok(errors * 100.0 / invocations)
        }
        _ => variant
            .get(series)
            .map(|us| us / 1000.0)
            .ok_or(Finding::NoDatapoints { role }),
    }
}

fn evidence_check(policy: &Policy, measurements: &Measurements) -> CheckResult {
    let minimum = policy.evidence.min_shadow_invocations as f64;
    let invocations = measurements.shadow.get(INVOCATIONS);
    let outcome = if invocations.unwrap_or(0.0) >= minimum {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    };
    CheckResult {
        id: CheckId::ShadowInvocations,
        value: invocations,
        limit: Some(minimum),
        unit: Unit::Invocations,
        outcome,
        finding: Finding::Evidence {
            invocations,
            minimum,
        },
    }
}

fn evaluate_check(check: &Check, policy: &Policy, measurements: &Measurements) -> CheckResult {
    let metric = check.metric;
    let unit = metric.unit();
    let inconclusive = |value: Option<f64>, finding: Finding| CheckResult {
        id: CheckId::Metric(metric),
        value,
        limit: None,
        unit,
        outcome: Outcome::Inconclusive,
        finding,
    };
    let shadow = match metric_value(metric, measurements, VariantRole::Shadow) {
        Ok(value) => value,
        Err(finding) => return inconclusive(None, finding),
    };
    let limit_and_basis = match check.limit {
        Limit::Absolute(max) => Ok((max, Against::Absolute)),
        Limit::RatioToProduction(ratio) => production_value(metric, policy, measurements)
            .map(|production| (ratio * production, Against::Ratio { ratio, production })),
        Limit::AboveProduction(above) => production_value(metric, policy, measurements)
            .map(|production| (production + above, Against::Above { above, production })),
    };
    let (limit, against) = match limit_and_basis {
        Ok(found) => found,
        Err(finding) => return inconclusive(Some(shadow), finding),
    };
    let mut outcome = if shadow <= limit {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let mut finding = Finding::Compared {
        shadow,
        against,
        limit,
    };
    // A handful of errors can put a rate over its limit by chance: a rate
    // fails only when even its 95 % lower bound is over the limit.
    if outcome == Outcome::Fail && unit == Unit::Percent {
        let invocations = measurements.shadow.get(INVOCATIONS).unwrap_or(0.0);
        let errors = shadow * invocations / 100.0;
        let lower_bound = wilson_lower_bound(errors, invocations) * 100.0;
        if lower_bound <= limit {
            outcome = Outcome::Inconclusive;
            finding = Finding::TooFewErrorsToTell {
                shadow,
                against,
                limit,
                errors,
                invocations,
                lower_bound,
            };
        }
    }
    CheckResult {
        id: CheckId::Metric(metric),
        value: Some(shadow),
        limit: Some(limit),
        unit,
        outcome,
        finding,
    }
}

/// Production's value of a metric, for a limit relative to it; only with
/// enough production traffic to trust it.
fn production_value(
    metric: CheckMetric,
    policy: &Policy,
    measurements: &Measurements,
) -> Result<f64, Finding> {
    let invocations = measurements.production.get(INVOCATIONS).unwrap_or(0.0);
    let minimum = policy.evidence.min_production_invocations as f64;
    if invocations < minimum {
        return Err(Finding::ProductionTooThin {
            invocations,
            minimum,
        });
    }
    metric_value(metric, measurements, VariantRole::Production)
}

/// One-sided 95 % Wilson score lower bound of a proportion.
fn wilson_lower_bound(successes: f64, trials: f64) -> f64 {
    if trials <= 0.0 {
        return 0.0;
    }
    const Z: f64 = 1.645;
    let p = successes / trials;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * trials);
    let spread = Z * (p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)).sqrt();
    ((centre - spread) / (1.0 + z2 / trials)).max(0.0)
}

/// Judges the shadow. Too little evidence makes the verdict Inconclusive
/// whatever the checks say (they are still reported), so thin data can
/// neither ramp up nor ramp down.
pub fn judge(policy: &Policy, measurements: &Measurements) -> Verdict {
    let mut checks = vec![evidence_check(policy, measurements)];
    checks.extend(
        policy
            .checks
            .iter()
            .map(|check| evaluate_check(check, policy, measurements)),
    );
    let first = |outcome: Outcome| checks.iter().position(|c| c.outcome == outcome);
    let (outcome, decisive) = if checks[0].outcome != Outcome::Pass {
        (Outcome::Inconclusive, Some(0))
    } else if let Some(index) = first(Outcome::Fail) {
        (Outcome::Fail, Some(index))
    } else if let Some(index) = first(Outcome::Inconclusive) {
        (Outcome::Inconclusive, Some(index))
    } else {
        (Outcome::Pass, closest_to_limit(&checks))
    };
    Verdict {
        outcome,
        checks,
        decisive,
    }
}

/// For a pass, the check with the least headroom is the one worth showing.
fn closest_to_limit(checks: &[CheckResult]) -> Option<usize> {
    checks
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(index, check)| match (check.value, check.limit) {
            (Some(value), Some(limit)) if limit > 0.0 => Some((index, value / limit)),
            (Some(_), Some(_)) => Some((index, f64::INFINITY)),
            _ => None,
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(index, _)| index)
        .or(Some(0))
}
