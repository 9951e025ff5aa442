use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{SageMakerMetric, SeriesKey, Statistic};
use crate::schedule::CronWindow;

/// A policy as written in YAML. Unknown fields are errors so that a typo
/// never silently turns a check off.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Besides the `shadowpilot:policy` tag, which always selects.
    #[serde(default)]
    pub select: Selector,
    #[serde(default)]
    pub window: WindowSpec,
    #[serde(default)]
    pub evidence: Evidence,
    #[serde(default)]
    pub checks: Vec<Check>,
    pub ramp: Ramp,
    #[serde(default)]
    pub extend: Extend,
    /// When empty, writes may happen at any tick.
    #[serde(default)]
    pub change_windows: Vec<ChangeWindow>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Glob patterns on the experiment name.
    #[serde(default)]
    pub experiments: Vec<String>,
    /// Glob patterns on the endpoint name.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.experiments.is_empty() && self.endpoints.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
// Fields left out take the values of `Default`, as the README documents.
#[serde(default, deny_unknown_fields)]
pub struct WindowSpec {
    /// How far back evidence is taken (never before the last change).
    #[serde(with = "super::duration")]
    pub lookback: Duration,
    /// CloudWatch publishes a few minutes late; the newest minutes are left out.
    #[serde(with = "super::duration")]
    pub publish_delay: Duration,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            lookback: Duration::from_secs(3600),
            publish_delay: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
// Fields left out take the values of `Default`, as the README documents.
#[serde(default, deny_unknown_fields)]
pub struct Evidence {
    /// Shadow invocations in the window below which nothing is concluded.
    pub min_shadow_invocations: u64,
    /// Production invocations needed before a check relative to production
    /// can be trusted.
    #[serde(default = "default_min_production_invocations")]
    pub min_production_invocations: u64,
}

fn default_min_production_invocations() -> u64 {
    100
}

impl Default for Evidence {
    fn default() -> Self {
        Self {
            min_shadow_invocations: 200,
            min_production_invocations: default_min_production_invocations(),
        }
    }
}

/// What a check measures on a variant, in the unit operators think in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckMetric {
    /// Invocation5XXErrors / Invocations, percent.
    #[serde(rename = "error_rate_5xx")]
    ErrorRate5xx,
    /// Invocation4XXErrors / Invocations, percent.
    #[serde(rename = "error_rate_4xx")]
    ErrorRate4xx,
    /// InvocationModelErrors / Invocations, percent.
    ModelErrorRate,
    LatencyP50,
    LatencyP90,
    LatencyP99,
    LatencyAverage,
    OverheadLatencyP99,
    OverheadLatencyAverage,
}

impl CheckMetric {
    pub fn unit(self) -> Unit {
        match self {
            Self::ErrorRate5xx | Self::ErrorRate4xx | Self::ModelErrorRate => Unit::Percent,
            _ => Unit::Milliseconds,
        }
    }

    /// A short label for messages: `5xx rate`, `p99`, `overhead p99`.
    pub fn label(self) -> &'static str {
        match self {
            Self::ErrorRate5xx => "5xx rate",
            Self::ErrorRate4xx => "4xx rate",
            Self::ModelErrorRate => "model error rate",
            Self::LatencyP50 => "p50",
            Self::LatencyP90 => "p90",
            Self::LatencyP99 => "p99",
            Self::LatencyAverage => "average latency",
            Self::OverheadLatencyP99 => "overhead p99",
            Self::OverheadLatencyAverage => "average overhead",
        }
    }

    /// The series this metric is computed from. Rates need the invocation
    /// count as denominator, which every judge fetches anyway.
    pub fn series(self) -> SeriesKey {
        use SageMakerMetric::*;
        match self {
            Self::ErrorRate5xx => SeriesKey::new(Invocation5XXErrors, Statistic::Sum),
            Self::ErrorRate4xx => SeriesKey::new(Invocation4XXErrors, Statistic::Sum),
            Self::ModelErrorRate => SeriesKey::new(InvocationModelErrors, Statistic::Sum),
            Self::LatencyP50 => SeriesKey::new(ModelLatency, Statistic::percentile(50.0)),
            Self::LatencyP90 => SeriesKey::new(ModelLatency, Statistic::percentile(90.0)),
            Self::LatencyP99 => SeriesKey::new(ModelLatency, Statistic::percentile(99.0)),
            Self::LatencyAverage => SeriesKey::new(ModelLatency, Statistic::Average),
            Self::OverheadLatencyP99 => {
                SeriesKey::new(OverheadLatency, Statistic::percentile(99.0))
            }
            Self::OverheadLatencyAverage => SeriesKey::new(OverheadLatency, Statistic::Average),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "invocations")]
    Invocations,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Self::Percent => format!("{value:.2} %"),
            Self::Milliseconds if value >= 100.0 => format!("{value:.0} ms"),
            Self::Milliseconds => format!("{value:.1} ms"),
            Self::Invocations => format!("{value:.0} invocations"),
        }
    }

    /// How a difference is spoken of: points for rates, ms for latency.
    pub fn format_delta(self, value: f64) -> String {
        match self {
            Self::Percent => format!("{value:.2} points"),
            other => other.format(value),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Percent => "%",
            Self::Milliseconds => "ms",
            Self::Invocations => "invocations",
        })
    }
}

/// One limit on the shadow. Exactly one of the three limits is set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub metric: CheckMetric,
    /// Absolute limit in the metric's unit (percent or ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Shadow may be at most this many times production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio_to_production: Option<f64>,
    /// Shadow may exceed production by at most this much (points for rates,
    /// ms for latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_above_production: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Absolute(f64),
    RatioToProduction(f64),
    AboveProduction(f64),
}

impl Check {
    /// The one limit this check sets; validation guarantees there is one.
    pub fn limit(&self) -> Option<Limit> {
        match (
            self.max,
            self.max_ratio_to_production,
            self.max_above_production,
        ) {
            (Some(v), None, None) => Some(Limit::Absolute(v)),
            (None, Some(v), None) => Some(Limit::RatioToProduction(v)),
            (None, None, Some(v)) => Some(Limit::AboveProduction(v)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Down to the next step below the current percentage.
    StepDown,
    /// Straight to the floor.
    Floor,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Increasing sampling percentages, each 1–100.
    pub steps: Vec<u8>,
    /// Never sample more than this; defaults to the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u8>,
    /// How long a percentage must have been in force before the next step up.
    #[serde(with = "super::duration")]
    pub bake_time: Duration,
    #[serde(default = "default_on_fail")]
    pub on_fail: OnFail,
    /// The lowest percentage a failing shadow is taken down to (at least 1).
    #[serde(default = "default_floor")]
    pub floor: u8,
}

fn default_on_fail() -> OnFail {
    OnFail::StepDown
}

fn default_floor() -> u8 {
    1
}

impl Ramp {
    /// The highest percentage this policy will ever set.
    pub fn ceiling(&self) -> u8 {
        let top = self.steps.last().copied().unwrap_or(100);
        self.max.map_or(top, |max| max.min(top))
    }

    /// The floor, never below 1 whatever the file says: whether AWS accepts 0
    /// is unverified.
    pub fn effective_floor(&self) -> u8 {
        self.floor.max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
// Fields left out take the values of `Default`, as the README documents.
#[serde(default, deny_unknown_fields)]
pub struct Extend {
    pub enabled: bool,
    /// Extend when the experiment would end before the next tick plus this.
    #[serde(with = "super::duration")]
    pub margin: Duration,
    /// How much later each extension moves EndTime.
    #[serde(with = "super::duration")]
    pub by: Duration,
    /// From StartTime; never more than AWS's 30 days.
    #[serde(with = "super::duration")]
    pub max_duration: Duration,
}

impl Default for Extend {
    fn default() -> Self {
        Self {
            enabled: true,
            margin: Duration::from_secs(2 * 3600),
            by: Duration::from_secs(24 * 3600),
            max_duration: crate::MAX_EXPERIMENT_DURATION,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeWindow {
    /// An EventBridge-style `cron(...)` (6 fields, UTC) marking each opening.
    pub cron: String,
    #[serde(with = "super::duration")]
    pub duration: Duration,
}

/// A policy after validation, with its change windows parsed.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    /// Where it came from, for messages (`policies/default.yaml`, `built-in`).
    pub source: String,
    pub change_windows: Vec<CronWindow>,
}

impl LoadedPolicy {
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// Every series the judge of this policy reads, per variant.
    pub fn needed_series(&self) -> BTreeSet<SeriesKey> {
        let mut keys = BTreeSet::from([crate::judge::INVOCATIONS]);
        keys.extend(self.policy.checks.iter().map(|check| check.metric.series()));
        keys
    }
}
