use std::fmt;
use std::time::Duration;

use globset::GlobSet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metrics::{SageMakerMetric, SeriesKey, Statistic};
use crate::schedule::CronWindow;

/// A shadowpilot policy: which inference experiments it steers, how their
/// shadow is judged, how sampling ramps and when the end time moves.
/// Unknown fields are errors, so a typo never silently turns a check off.
// Only ever read to be validated and compiled into a `Policy`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Policy")]
pub(crate) struct PolicyDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Besides the `shadowpilot:policy` tag, which always selects.
    #[serde(default)]
    pub select: SelectorDoc,
    #[serde(default)]
    pub window: WindowSpec,
    /// Deprecated: every field of it is ignored (evidence minimums are the
    /// judge's, per check).
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// Two-sided level of each check's confidence sequences (default 0.05);
    /// its step, whole-experiment and epoch sequences share it in thirds.
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub checks: Vec<CheckDoc>,
    pub ramp: RampDoc,
    #[serde(default)]
    pub extend: Extend,
    /// The end of the test: off unless set.
    #[serde(default)]
    pub stop: Stop,
    /// When empty, writes may happen at any tick.
    #[serde(default)]
    pub change_windows: Vec<ChangeWindowDoc>,
    /// How the two variants' captured outputs are read, paired and
    /// compared, for the output checks (and `shadowpilot compare`).
    #[serde(default)]
    pub outputs: OutputsDoc,
}

/// The output comparison as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Outputs")]
pub(crate) struct OutputsDoc {
    /// What is compared; without it, outputs are compared whole.
    #[serde(default)]
    pub compare: CompareDoc,
    /// Also pair records whose inputs are byte-for-byte equal and whose
    /// inferenceTime is at most this far apart (whole seconds), when no
    /// inferenceId pairs them; an ambiguous match stays unpaired. Off
    /// unless set.
    #[serde(default, with = "crate::duration::optional")]
    #[schemars(with = "Option<crate::duration::Written>")]
    pub pair_by_input_within: Option<Duration>,
    /// Percent of shadow records that must be paired for the output checks
    /// to decide (default 90); below it they are inconclusive.
    #[serde(default)]
    pub min_pairing_rate: Option<f64>,
    /// Records kept per variant per tick (default 10000).
    #[serde(default)]
    pub max_records: Option<u64>,
    /// Bytes of capture files read per variant per tick (default 16 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// `output_mean_abs_diff` judges `min(|d|, clip)`: default 10 × its max.
    #[serde(default)]
    pub clip: Option<f64>,
}

/// The value of an output that matters, and how it must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Compare")]
pub(crate) struct CompareDoc {
    /// A JSON Pointer (RFC 6901) into a JSON output: `/label`.
    #[serde(default)]
    pub pointer: Option<String>,
    /// A 0-based column of the first line of a CSV output.
    #[serde(default)]
    pub csv_column: Option<usize>,
    /// `exact` (default), `top1` (the index of the largest of an array of
    /// scores), `{absolute: x}` or `{relative: x}` for numbers.
    #[serde(default, rename = "match")]
    pub matching: Option<MatchDoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[schemars(rename = "Match")]
pub(crate) enum MatchDoc {
    Exact,
    Top1,
    /// Numbers at most this far apart.
    Absolute(f64),
    /// Numbers at most this fraction of the larger magnitude apart.
    Relative(f64),
}

/// Experiments a policy selects besides those whose tag names it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Selector")]
pub(crate) struct SelectorDoc {
    /// Glob patterns on the experiment name.
    #[serde(default)]
    pub experiments: Vec<String>,
    /// Glob patterns on the endpoint name.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// One limit on the shadow: set exactly one of max,
/// max_ratio_to_production and max_above_production (`min` instead for
/// output_agreement).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Check")]
pub(crate) struct CheckDoc {
    pub metric: CheckMetric,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub max_ratio_to_production: Option<f64>,
    #[serde(default)]
    pub max_above_production: Option<f64>,
    /// At least this: the limit of output_agreement (percent of pairs).
    #[serde(default)]
    pub min: Option<f64>,
}

/// When writes may happen: from each opening for `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ChangeWindow")]
pub(crate) struct ChangeWindowDoc {
    /// An EventBridge-style `cron(...)` (6 fields, UTC) marking each opening.
    pub cron: String,
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub duration: Duration,
}

/// A validated policy with everything compiled: limits as one variant each,
/// globs as matchers, change windows as schedules. Only [`parse_policy`]
/// and the loaders make one, so every value here has been checked.
///
/// [`parse_policy`]: super::parse_policy
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// Where it came from, for messages (`policies/default.yaml`).
    pub source: String,
    pub select: Selector,
    pub window: WindowSpec,
    /// Two-sided level of each check.
    pub alpha: f64,
    pub checks: Vec<Check>,
    pub ramp: Ramp,
    pub extend: Extend,
    /// When shadowpilot ends the test itself.
    pub stop: Stop,
    /// When empty, writes may happen at any tick.
    pub change_windows: Vec<CronWindow>,
    /// Fields the file sets that no longer mean anything.
    pub deprecations: Vec<Deprecation>,
    /// How captured outputs are compared.
    pub outputs: Outputs,
}

/// How the output checks read, pair and compare the capture, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub comparison: crate::capture::compare::Comparison,
    pub pairing: crate::capture::pair::PairingOptions,
    /// A fraction (0.9).
    pub min_pairing_rate: f64,
    pub limits: crate::capture::read::ReadLimits,
    /// Set when the policy has an output_mean_abs_diff check.
    pub clip: Option<f64>,
}

pub const DEFAULT_MIN_PAIRING_RATE: f64 = 0.9;
pub const DEFAULT_MAX_RECORDS: u64 = 10_000;
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

impl Default for Outputs {
    fn default() -> Self {
        Self {
            comparison: crate::capture::compare::Comparison::default(),
            pairing: crate::capture::pair::PairingOptions {
                by_input_within: None,
            },
            min_pairing_rate: DEFAULT_MIN_PAIRING_RATE,
            limits: crate::capture::read::ReadLimits {
                max_records: DEFAULT_MAX_RECORDS,
                max_bytes: DEFAULT_MAX_BYTES,
            },
            clip: None,
        }
    }
}

/// The default of [`Policy::alpha`] (statistics.md §5).
pub const DEFAULT_ALPHA: f64 = 0.05;

impl Policy {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether any check reads the capture.
    pub fn has_output_checks(&self) -> bool {
        self.checks.iter().any(|check| check.metric.is_output())
    }
}

/// A field a policy still sets though it has lost its meaning: the file
/// loads, and whoever loads it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub source: String,
    pub field: &'static str,
    pub why: &'static str,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is deprecated and ignored: {}",
            self.source, self.field, self.why
        )
    }
}

/// Name and endpoint globs, compiled once at load.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub(crate) experiments: Option<GlobSet>,
    pub(crate) endpoints: Option<GlobSet>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.experiments.is_none() && self.endpoints.is_none()
    }

    /// Every kind of glob the policy gives must match (name and endpoint);
    /// a policy without globs selects nothing by name.
    pub fn matches(&self, experiment_name: &str, endpoint_name: &str) -> bool {
        !self.is_empty()
            && self
                .experiments
                .as_ref()
                .is_none_or(|globs| globs.is_match(experiment_name))
            && self
                .endpoints
                .as_ref()
                .is_none_or(|globs| globs.is_match(endpoint_name))
    }
}

/// One limit on one metric of the shadow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub metric: CheckMetric,
    pub limit: Limit,
}

/// What the shadow's value is compared with, in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this (percent or ms).
    Absolute(f64),
    /// At most this many times production's value; never on rates.
    RatioToProduction(f64),
    /// At most production's value plus this (points for rates, ms for latency).
    AboveProduction(f64),
    /// At least this (percent): output_agreement only.
    Min(f64),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
// Fields left out take the values of `Default`, as the README documents.
#[serde(default, deny_unknown_fields)]
pub struct WindowSpec {
    /// Deprecated and ignored: evidence runs from the start of the step and
    /// of the experiment, never over a sliding window.
    #[serde(with = "crate::duration::optional", skip_serializing)]
    #[schemars(with = "Option<crate::duration::Written>")]
    pub lookback: Option<Duration>,
    /// CloudWatch publishes a few minutes late; the newest minutes are left out.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub publish_delay: Duration,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            lookback: None,
            publish_delay: Duration::from_secs(300),
        }
    }
}

/// Deprecated: the judge's own minimums (1000 shadow requests and 5 errors
/// for a rate, 10 periods for latency) replace these.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Evidence {
    /// Deprecated and ignored.
    pub min_shadow_invocations: Option<u64>,
    /// Deprecated and ignored.
    pub min_production_invocations: Option<u64>,
}

/// What a check measures on a variant, in the unit operators think in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
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
    /// The share of paired requests whose outputs match, percent (from
    /// data capture).
    OutputAgreement,
    /// The mean of |shadow − production| over paired numeric outputs, in
    /// the output's own unit, each difference clipped (from data capture).
    OutputMeanAbsDiff,
}

impl CheckMetric {
    pub fn unit(self) -> Unit {
        match self {
            Self::ErrorRate5xx | Self::ErrorRate4xx | Self::ModelErrorRate => Unit::Percent,
            Self::OutputAgreement => Unit::Percent,
            Self::OutputMeanAbsDiff => Unit::Output,
            _ => Unit::Milliseconds,
        }
    }

    /// Judged from the data capture rather than CloudWatch.
    pub fn is_output(self) -> bool {
        matches!(self, Self::OutputAgreement | Self::OutputMeanAbsDiff)
    }

    /// The name policies and reports use: `error_rate_5xx`, `latency_p99`.
    pub fn id(self) -> &'static str {
        match self {
            Self::ErrorRate5xx => "error_rate_5xx",
            Self::ErrorRate4xx => "error_rate_4xx",
            Self::ModelErrorRate => "model_error_rate",
            Self::LatencyP50 => "latency_p50",
            Self::LatencyP90 => "latency_p90",
            Self::LatencyP99 => "latency_p99",
            Self::LatencyAverage => "latency_average",
            Self::OverheadLatencyP99 => "overhead_latency_p99",
            Self::OverheadLatencyAverage => "overhead_latency_average",
            Self::OutputAgreement => "output_agreement",
            Self::OutputMeanAbsDiff => "output_mean_abs_diff",
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
            Self::OutputAgreement => "output agreement",
            Self::OutputMeanAbsDiff => "mean |output difference|",
        }
    }

    /// The CloudWatch series this metric is computed from (none for the
    /// output checks). Rates need the invocation count as denominator,
    /// which every judge fetches anyway.
    pub fn series(self) -> Option<SeriesKey> {
        use SageMakerMetric::*;
        Some(match self {
            Self::OutputAgreement | Self::OutputMeanAbsDiff => return None,
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
        })
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
    /// Percentage points: a difference of two rates.
    #[serde(rename = "pts")]
    Points,
    /// Shadow over production.
    #[serde(rename = "ratio")]
    Ratio,
    /// The unit of the captured output's own numbers.
    #[serde(rename = "output")]
    Output,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Percent => "%",
            Self::Milliseconds => "ms",
            Self::Invocations => "invocations",
            Self::Points => "pts",
            Self::Ratio => "ratio",
            Self::Output => "output units",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Down to the next step below the current percentage.
    StepDown,
    /// Straight to the floor.
    Floor,
}

/// How sampling moves from step to step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Ramp")]
pub(crate) struct RampDoc {
    /// Increasing sampling percentages, each 1–100.
    pub steps: Vec<u8>,
    /// Never sample more than this; defaults to the last step.
    #[serde(default)]
    pub max: Option<u8>,
    /// The least time at a step before the next step up, counted from the
    /// later of StartTime and the step's start (default 15m).
    #[serde(default = "default_bake_time", with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub bake_time: Duration,
    #[serde(default = "default_on_fail")]
    pub on_fail: OnFail,
    /// The lowest percentage a failing shadow is taken down to (at least 1).
    #[serde(default = "default_floor")]
    pub floor: u8,
    /// Step up for evidence while inconclusive only for lack of it, every
    /// estimate on the passing side and none failing (default false).
    #[serde(default)]
    pub evidence_ramps: bool,
    /// Re-arm a latched failure by itself after this long (default: never;
    /// `shadowpilot rearm` does it by hand).
    #[serde(default, with = "crate::duration::optional")]
    #[schemars(with = "Option<crate::duration::Written>")]
    pub rearm_after: Option<Duration>,
}

fn default_bake_time() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_on_fail() -> OnFail {
    OnFail::StepDown
}

fn default_floor() -> u8 {
    1
}

impl RampDoc {
    /// The highest percentage the policy allows; `None` without steps.
    pub(crate) fn ceiling(&self) -> Option<u8> {
        let top = *self.steps.last()?;
        Some(self.max.map_or(top, |max| max.min(top)))
    }
}

/// How sampling moves, checked: steps strictly increasing within 1–100,
/// `floor ≤ ceiling`, both at least 1 (whether AWS accepts 0 is unverified).
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    pub steps: Vec<u8>,
    /// The highest percentage this policy will ever set.
    pub ceiling: u8,
    /// The lowest percentage a failing shadow is taken down to.
    pub floor: u8,
    /// The least time at a step before the next step up (the dwell).
    pub bake_time: Duration,
    pub on_fail: OnFail,
    pub evidence_ramps: bool,
    pub rearm_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
// Fields left out take the values of `Default`, as the README documents.
#[serde(default, deny_unknown_fields)]
pub struct Extend {
    pub enabled: bool,
    /// Extend when the experiment would end before the next tick plus this.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub margin: Duration,
    /// The largest single extension, and the step when the evidence cannot
    /// say how long it needs.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub by: Duration,
    /// From StartTime; never more than AWS's 30 days.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
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

/// When shadowpilot ends the test with StopInferenceExperiment. Each part
/// is off unless the policy sets it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Stop {
    /// Promote a shadow that has passed at 100 %.
    pub promote: Option<Promote>,
    /// Remove a shadow that keeps failing at the floor.
    pub on_failure: Option<StopOnFailure>,
}

/// Promotion of a passing shadow: the policy's ramp must reach 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// How long the 100 % step must have run, from its `shadowpilot:step`
    /// tag, with the step's own evidence passing now. Until then a passing
    /// experiment is extended instead of expiring.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub after_passing: Duration,
    /// What becomes of the production variant once the shadow is promoted.
    pub production: ProductionAction,
    /// When the experiment cannot run until `after_passing` (StartTime plus
    /// `extend.max_duration`, at most 30 days, comes first): `promote` at
    /// the last tick before it ends, or `report` ready_to_promote and let
    /// it end (default).
    #[serde(default)]
    pub at_cap: AtCap,
}

/// StopInferenceExperiment's action for the production variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductionAction {
    /// Keep the old production variant as it is.
    Retain,
    /// Delete the old production variant.
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AtCap {
    /// Promote at the last tick before the experiment ends.
    Promote,
    /// Report ready_to_promote and let the experiment end.
    #[default]
    Report,
}

/// Stopping a shadow that fails at the floor, removing it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopOnFailure {
    /// How long failing_at_floor must have held, from the later of the
    /// floor step's tag and the failure latch.
    #[serde(with = "crate::duration")]
    #[schemars(with = "crate::duration::Written")]
    pub after: Duration,
}
