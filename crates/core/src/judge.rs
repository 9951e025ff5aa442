//! Pure verdicts: (policy, window, measurements) → Pass, Fail or
//! Inconclusive, with one result per check that carries value, limit and unit.

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;

use crate::metrics::{Measurements, SageMakerMetric, SeriesKey, Statistic, VariantRole, Window};
use crate::policy::{Check, CheckMetric, Limit, Policy, Unit, WindowSpec};
use crate::schedule::chrono_duration;

pub const INVOCATIONS: SeriesKey = SeriesKey::new(SageMakerMetric::Invocations, Statistic::Sum);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// `shadow_invocations`, or the policy metric such as `latency_p99`.
    pub metric: String,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub unit: Unit,
    pub outcome: Outcome,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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

    /// No window could be formed, so nothing was measured.
    pub fn without_evidence(message: String) -> Self {
        Self {
            outcome: Outcome::Inconclusive,
            checks: vec![CheckResult {
                metric: "window".into(),
                value: None,
                limit: None,
                unit: Unit::Invocations,
                outcome: Outcome::Inconclusive,
                message,
            }],
            decisive: Some(0),
        }
    }
}

/// Why there is no window to judge yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoWindow {
    pub message: String,
}

/// The evidence window: from the later of (now − lookback) and the last
/// change, to `publish_delay` before now, on whole minutes. Starting at the
/// last change means every datapoint belongs to the sampling in force now.
pub fn evidence_window(
    last_modified: DateTime<Utc>,
    spec: &WindowSpec,
    now: DateTime<Utc>,
) -> Result<Window, NoWindow> {
    let minute = chrono::Duration::minutes(1);
    let end = floor_to(now - chrono_duration(spec.publish_delay), minute);
    let lookback_start = end - chrono_duration(spec.lookback);
    // The minute in which the change happened mixes old and new sampling.
    let change_start = ceil_to(last_modified, minute);
    let start = lookback_start.max(change_start);
    if start >= end {
        return Err(NoWindow {
            message: format!(
                "no complete minute of evidence since the last change at {} (window would end at {})",
                last_modified.format("%Y-%m-%d %H:%M:%S UTC"),
                end.format("%H:%M UTC")
            ),
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

/// A metric's value for one variant in the unit of its checks, or why there
/// is none.
fn metric_value(
    metric: CheckMetric,
    measurements: &Measurements,
    role: VariantRole,
) -> Result<f64, String> {
    let variant = measurements.variant(role);
    let series = metric.series();
    let missing = || format!("{role} {}: no datapoints in the window", metric.label());
    match metric.unit() {
        Unit::Percent => {
            let invocations = variant
                .get(INVOCATIONS)
                .filter(|n| *n > 0.0)
                .ok_or_else(|| {
                    format!("{role} {}: no invocations in the window", metric.label())
                })?;
            // SageMaker publishes 0 or 1 per request for the error metrics,
            // so a missing error series with traffic is a gap, not zero.
            let errors = variant.get(series).ok_or_else(missing)?;
            // Multiplying first keeps exact boundaries exact (5 of 500 is 1 %).
            Ok(errors * 100.0 / invocations)
        }
        _ => variant
            .get(series)
            .map(|us| us / 1000.0)
            .ok_or_else(missing),
    }
}

fn evidence_check(policy: &Policy, measurements: &Measurements) -> CheckResult {
    let minimum = policy.evidence.min_shadow_invocations as f64;
    let value = measurements.shadow.get(INVOCATIONS);
    let shown = value.unwrap_or(0.0);
    let (outcome, message) = if shown >= minimum {
        (
            Outcome::Pass,
            format!("shadow invocations {shown:.0} ≥ minimum {minimum:.0}"),
        )
    } else {
        (
            Outcome::Inconclusive,
            format!(
                "shadow invocations {shown:.0} < minimum {minimum:.0}{}",
                if value.is_none() {
                    " (no datapoints)"
                } else {
                    ""
                }
            ),
        )
    };
    CheckResult {
        metric: "shadow_invocations".into(),
        value,
        limit: Some(minimum),
        unit: Unit::Invocations,
        outcome,
        message,
    }
}

fn evaluate_check(check: &Check, policy: &Policy, measurements: &Measurements) -> CheckResult {
    let metric = check.metric;
    let unit = metric.unit();
    let label = metric.label();
    let inconclusive = |value: Option<f64>, limit: Option<f64>, message: String| CheckResult {
        metric: metric_name(metric),
        value,
        limit,
        unit,
        outcome: Outcome::Inconclusive,
        message,
    };
    let shadow = match metric_value(metric, measurements, VariantRole::Shadow) {
        Ok(value) => value,
        Err(message) => return inconclusive(None, None, message),
    };
    let Some(limit) = check.limit() else {
        return inconclusive(Some(shadow), None, format!("check on {label} has no limit"));
    };

    let (limit_value, description) = match limit {
        Limit::Absolute(max) => (max, unit.format(max)),
        Limit::RatioToProduction(_) | Limit::AboveProduction(_) => {
            let production_invocations = measurements.production.get(INVOCATIONS).unwrap_or(0.0);
            let needed = policy.evidence.min_production_invocations as f64;
            if production_invocations < needed {
                return inconclusive(
                    Some(shadow),
                    None,
                    format!(
                        "production invocations {production_invocations:.0} < minimum {needed:.0} for a check relative to production"
                    ),
                );
            }
            let production = match metric_value(metric, measurements, VariantRole::Production) {
                Ok(value) => value,
                Err(message) => return inconclusive(Some(shadow), None, message),
            };
            match limit {
                Limit::RatioToProduction(ratio) => (
                    ratio * production,
                    format!("{ratio:.2} × production {}", unit.format(production)),
                ),
                _ => {
                    let above = match limit {
                        Limit::AboveProduction(above) => above,
                        _ => 0.0,
                    };
                    (
                        production + above,
                        format!(
                            "production {} + {}",
                            unit.format(production),
                            unit.format_delta(above)
                        ),
                    )
                }
            }
        }
    };
    let passed = shadow <= limit_value;
    let relation = if passed { "≤" } else { ">" };
    let suffix = match limit {
        Limit::Absolute(_) => String::new(),
        _ => format!(" (limit {})", unit.format(limit_value)),
    };
    let message = format!(
        "shadow {label} {} {relation} {description}{suffix}",
        unit.format(shadow)
    );
    let mut outcome = if passed { Outcome::Pass } else { Outcome::Fail };
    // A handful of errors can put a rate over its limit by chance: a rate
    // fails only when even its 95 % lower bound is over the limit.
    let mut message = message;
    if !passed && unit == Unit::Percent {
        let invocations = measurements.shadow.get(INVOCATIONS).unwrap_or(0.0);
        let errors = shadow * invocations / 100.0;
        let lower = wilson_lower_bound(errors, invocations) * 100.0;
        if lower <= limit_value {
            outcome = Outcome::Inconclusive;
            message = format!(
                "{message}, but {errors:.0} errors in {invocations:.0} invocations are too few to tell (95 % lower bound {})",
                unit.format(lower)
            );
        }
    }
    CheckResult {
        metric: metric_name(metric),
        value: Some(shadow),
        limit: Some(limit_value),
        unit,
        outcome,
        message,
    }
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

fn metric_name(metric: CheckMetric) -> String {
    serde_json::to_value(metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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
