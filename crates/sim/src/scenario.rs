//! Scenario files: the world a simulation runs in. YAML, validated once at
//! load with every problem named by file, field and value, like policies.
//!
//! Every model setting can be given at three levels, each overriding the one
//! before field by field: `defaults`, the experiment, and the `changes` in
//! force at a moment. The shadow falls back to production for anything it
//! does not set, so `shadow: {}` is a shadow identical to production.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};

use super::histogram::BucketTable;
use super::rng::inverse_normal_cdf;
use shadowpilot_core::policy::duration::format as show;
use shadowpilot_core::schedule::{chrono_duration, Schedule};
use shadowpilot_core::validation::{self, is_valid_aws_name, Problem, Problems};
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

/// One thing wrong with a scenario, located by file and field.
pub type ScenarioProblem = Problem;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", validation::list("scenario", problems))]
    Invalid { problems: Vec<ScenarioProblem> },
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDoc {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
    /// RFC 3339; defaults to 2026-03-02T00:00:00Z (a Monday).
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    /// The EventBridge expression the controller runs on.
    schedule: String,
    #[serde(default)]
    sagemaker: SageMakerDoc,
    #[serde(default)]
    cloudwatch: CloudWatchDoc,
    #[serde(default)]
    defaults: LayerDoc,
    experiments: Vec<ExperimentDoc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SageMakerDoc {
    /// How long an experiment shows Updating after an accepted update.
    #[serde(default, deserialize_with = "some_duration")]
    update_takes: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudWatchDoc {
    /// How long after a minute ends its datapoint appears.
    #[serde(default, deserialize_with = "some_duration")]
    publish_delay: Option<Duration>,
}

/// Settings that every level may give.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerDoc {
    #[serde(default)]
    traffic: TrafficDoc,
    #[serde(default)]
    production: VariantDoc,
    #[serde(default)]
    shadow: VariantDoc,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficDoc {
    /// Production requests per minute on average over a day.
    per_minute: Option<f64>,
    /// Daily swing as a fraction: 0.5 is ±50 % around `per_minute`.
    daily_swing: Option<f64>,
    /// Hour of day (UTC) when traffic peaks.
    peak_hour: Option<f64>,
    /// Multiplies the traffic; what a change uses to dry it up (0.02) or to
    /// bring a surge (3).
    factor: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantDoc {
    latency: Option<LatencyDoc>,
    overhead: Option<LatencyDoc>,
    errors: Option<ErrorsDoc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyDoc {
    median_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// Percent of requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorsDoc {
    #[serde(rename = "4xx")]
    e4xx: Option<f64>,
    #[serde(rename = "5xx")]
    e5xx: Option<f64>,
    model: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentDoc {
    name: String,
    /// Defaults to `<name>-endpoint`.
    endpoint: Option<String>,
    #[serde(default = "default_production_variant")]
    production_variant: String,
    #[serde(default = "default_shadow_variant")]
    shadow_variant: String,
    /// The value of the tag shadowpilot:policy.
    #[serde(default = "default_policy")]
    policy: String,
    /// Sets the tag shadowpilot:hold=true.
    #[serde(default)]
    hold: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// StartTime, counted from the scenario start.
    #[serde(default, deserialize_with = "some_duration")]
    start: Option<Duration>,
    /// From StartTime to EndTime; AWS's default is 7 days.
    #[serde(default, deserialize_with = "some_duration")]
    duration: Option<Duration>,
    /// The starting SamplingPercentage.
    sampling: u16,
    /// Makes this many experiments `<name>-01`, `<name>-02`, ...: same
    /// settings, their own endpoints and random draws.
    #[serde(default = "one")]
    copies: u16,
    #[serde(default)]
    traffic: TrafficDoc,
    #[serde(default)]
    production: VariantDoc,
    #[serde(default)]
    shadow: VariantDoc,
    #[serde(default)]
    changes: Vec<ChangeDoc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeDoc {
    /// Counted from the scenario start.
    #[serde(deserialize_with = "duration")]
    at: Duration,
    /// When the change ends; without it, it lasts to the end.
    #[serde(default, deserialize_with = "some_duration")]
    until: Option<Duration>,
    #[serde(default)]
    traffic: TrafficDoc,
    #[serde(default)]
    production: VariantDoc,
    #[serde(default)]
    shadow: VariantDoc,
}

impl ExperimentDoc {
    fn layer(&self) -> LayerDoc {
        LayerDoc {
            traffic: self.traffic.clone(),
            production: self.production.clone(),
            shadow: self.shadow.clone(),
        }
    }
}

impl ChangeDoc {
    fn layer(&self) -> LayerDoc {
        LayerDoc {
            traffic: self.traffic.clone(),
            production: self.production.clone(),
            shadow: self.shadow.clone(),
        }
    }
}

fn default_production_variant() -> String {
    "production".into()
}
fn default_shadow_variant() -> String {
    "shadow".into()
}
fn default_policy() -> String {
    "default".into()
}
fn one() -> u16 {
    1
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    shadowpilot_core::policy::duration::deserialize(deserializer)
}

fn some_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    shadowpilot_core::policy::duration::deserialize(deserializer).map(Some)
}

// ---------------------------------------------------------------------------
// The validated model.

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Where it came from, for messages.
    pub source: String,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub schedule: Schedule,
    pub update_takes: Duration,
    pub publish_delay: Duration,
    pub experiments: Vec<ExperimentSpec>,
}

/// One simulated inference experiment and the traffic on its endpoint.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    pub name: String,
    pub endpoint: String,
    pub production_variant: String,
    pub shadow_variant: String,
    pub policy: String,
    pub hold: bool,
    pub tags: BTreeMap<String, String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub sampling: u8,
    /// Conditions from each moment on, in time order; the first starts at the
    /// scenario start.
    pub segments: Vec<(DateTime<Utc>, Arc<Conditions>)>,
}

impl ExperimentSpec {
    pub fn conditions_at(&self, at: DateTime<Utc>) -> &Conditions {
        let index = self
            .segments
            .partition_point(|(from, _)| *from <= at)
            .saturating_sub(1);
        &self.segments[index].1
    }
}

/// The traffic and both variants' behaviour over one stretch of time.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditions {
    pub per_minute: f64,
    pub daily_swing: f64,
    pub peak_hour: f64,
    pub factor: f64,
    pub production: VariantModel,
    pub shadow: VariantModel,
}

impl Conditions {
    /// Mean production requests in the minute starting at `unix_seconds`.
    pub fn mean_requests(&self, unix_seconds: i64) -> f64 {
        let seconds = unix_seconds.rem_euclid(86_400) as f64;
        let hour = seconds / 3600.0;
        let phase = (hour - self.peak_hour) / 24.0 * std::f64::consts::TAU;
        (self.per_minute * self.factor * (1.0 + self.daily_swing * phase.cos())).max(0.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariantModel {
    pub latency: LatencyModel,
    pub overhead: LatencyModel,
    /// Fractions of requests (0.01 is 1 %).
    pub rate_4xx: f64,
    pub rate_5xx: f64,
    pub rate_model: f64,
}

/// A lognormal latency given by its median and 99th percentile.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub table: Arc<BucketTable>,
}

impl LatencyModel {
    fn new(median_ms: f64, p99_ms: f64) -> Self {
        let sigma = (p99_ms / median_ms).ln() / inverse_normal_cdf(0.99);
        Self {
            median_ms,
            p99_ms,
            table: Arc::new(BucketTable::lognormal(median_ms * 1000.0, sigma)),
        }
    }
}

/// Built-in values under `defaults`.
const BASE_PER_MINUTE: f64 = 300.0;
const BASE_PEAK_HOUR: f64 = 14.0;
const BASE_LATENCY: (f64, f64) = (50.0, 150.0);
const BASE_OVERHEAD: (f64, f64) = (2.0, 6.0);
const DEFAULT_START: (i32, u32, u32) = (2026, 3, 2);

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates scenario text; `source` names it in messages.
    pub fn parse(source: &str, text: &str) -> Result<Self, ScenarioError> {
        let doc: ScenarioDoc =
            validation::parse_yaml(source, text).map_err(|problem| ScenarioError::Invalid {
                problems: vec![problem],
            })?;
        let mut problems = Problems::new(source);
        let scenario = build(source, doc, &mut problems);
        match scenario {
            Some(scenario) if problems.is_empty() => Ok(scenario),
            _ => Err(ScenarioError::Invalid {
                problems: problems.into_vec(),
            }),
        }
    }

    /// Every policy name the experiments' tags ask for.
    pub fn policy_names(&self) -> BTreeSet<&str> {
        self.experiments.iter().map(|e| e.policy.as_str()).collect()
    }

    /// The latest moment any experiment could still be running: its start
    /// plus AWS's 30 days.
    pub fn horizon(&self) -> DateTime<Utc> {
        self.experiments
            .iter()
            .map(|e| e.start_time + chrono_duration(MAX_EXPERIMENT_DURATION))
            .max()
            .unwrap_or(self.start)
    }
}

fn check_layer(problems: &mut Problems<'_>, path: &str, layer: &LayerDoc) {
    let join = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let traffic = &layer.traffic;
    problems.range(
        join("traffic.per_minute"),
        traffic.per_minute,
        0.0,
        1_000_000.0,
        "",
    );
    problems.range(
        join("traffic.daily_swing"),
        traffic.daily_swing,
        0.0,
        1.0,
        "",
    );
    problems.range(join("traffic.peak_hour"), traffic.peak_hour, 0.0, 24.0, "");
    problems.range(join("traffic.factor"), traffic.factor, 0.0, 1000.0, "");
    for (role, variant) in [("production", &layer.production), ("shadow", &layer.shadow)] {
        for (kind, latency) in [
            ("latency", &variant.latency),
            ("overhead", &variant.overhead),
        ] {
            if let Some(latency) = latency {
                problems.positive(join(&format!("{role}.{kind}.median_ms")), latency.median_ms);
                problems.positive(join(&format!("{role}.{kind}.p99_ms")), latency.p99_ms);
                if let (Some(median), Some(p99)) = (latency.median_ms, latency.p99_ms) {
                    if p99 <= median {
                        problems.add(
                            join(&format!("{role}.{kind}.p99_ms")),
                            format!("{p99} is not above median_ms {median}"),
                        );
                    }
                }
            }
        }
        if let Some(errors) = &variant.errors {
            for (name, value) in [
                ("4xx", errors.e4xx),
                ("5xx", errors.e5xx),
                ("model", errors.model),
            ] {
                problems.range(
                    join(&format!("{role}.errors.{name}")),
                    value,
                    0.0,
                    100.0,
                    " %",
                );
            }
        }
    }
}

/// Field-by-field override of settings, later layers winning.
#[derive(Debug, Clone, Default)]
struct Resolved {
    per_minute: Option<f64>,
    daily_swing: Option<f64>,
    peak_hour: Option<f64>,
    factor: Option<f64>,
    production: ResolvedVariant,
    shadow: ResolvedVariant,
}

#[derive(Debug, Clone, Default)]
struct ResolvedVariant {
    latency: (Option<f64>, Option<f64>),
    overhead: (Option<f64>, Option<f64>),
    errors: [Option<f64>; 3],
}

impl ResolvedVariant {
    fn apply(&mut self, doc: &VariantDoc) {
        if let Some(l) = &doc.latency {
            self.latency = (l.median_ms.or(self.latency.0), l.p99_ms.or(self.latency.1));
        }
        if let Some(l) = &doc.overhead {
            self.overhead = (
                l.median_ms.or(self.overhead.0),
                l.p99_ms.or(self.overhead.1),
            );
        }
        if let Some(e) = &doc.errors {
            for (slot, value) in self.errors.iter_mut().zip([e.e4xx, e.e5xx, e.model]) {
                *slot = value.or(*slot);
            }
        }
    }

    /// Unset fields fall back to `fallback`, then to the built-in values.
    fn finish(&self, fallback: Option<&ResolvedVariant>) -> ResolvedVariant {
        let pick =
            |own: Option<f64>, other: Option<f64>, base: f64| Some(own.or(other).unwrap_or(base));
        let f = fallback.cloned().unwrap_or_default();
        ResolvedVariant {
            latency: (
                pick(self.latency.0, f.latency.0, BASE_LATENCY.0),
                pick(self.latency.1, f.latency.1, BASE_LATENCY.1),
            ),
            overhead: (
                pick(self.overhead.0, f.overhead.0, BASE_OVERHEAD.0),
                pick(self.overhead.1, f.overhead.1, BASE_OVERHEAD.1),
            ),
            errors: [
                pick(self.errors[0], f.errors[0], 0.0),
                pick(self.errors[1], f.errors[1], 0.0),
                pick(self.errors[2], f.errors[2], 0.0),
            ],
        }
    }
}

impl Resolved {
    fn apply(&mut self, layer: &LayerDoc) {
        let t = &layer.traffic;
        self.per_minute = t.per_minute.or(self.per_minute);
        self.daily_swing = t.daily_swing.or(self.daily_swing);
        self.peak_hour = t.peak_hour.or(self.peak_hour);
        self.factor = t.factor.or(self.factor);
        self.production.apply(&layer.production);
        self.shadow.apply(&layer.shadow);
    }

    /// The final conditions, or the problem with the merged values.
    fn conditions(&self) -> Result<Conditions, String> {
        let production = self.production.finish(None);
        let shadow = self.shadow.finish(Some(&production));
        let model = |role: &str, v: &ResolvedVariant| -> Result<VariantModel, String> {
            let (median, p99) = (v.latency.0.unwrap_or(1.0), v.latency.1.unwrap_or(2.0));
            let (o_median, o_p99) = (v.overhead.0.unwrap_or(1.0), v.overhead.1.unwrap_or(2.0));
            if p99 <= median {
                return Err(format!(
                    "{role} latency p99_ms {p99} is not above median_ms {median}"
                ));
            }
            if o_p99 <= o_median {
                return Err(format!(
                    "{role} overhead p99_ms {o_p99} is not above median_ms {o_median}"
                ));
            }
            let rate = |i: usize| v.errors[i].unwrap_or(0.0) / 100.0;
            Ok(VariantModel {
                latency: LatencyModel::new(median, p99),
                overhead: LatencyModel::new(o_median, o_p99),
                rate_4xx: rate(0),
                rate_5xx: rate(1),
                rate_model: rate(2),
            })
        };
        Ok(Conditions {
            per_minute: self.per_minute.unwrap_or(BASE_PER_MINUTE),
            daily_swing: self.daily_swing.unwrap_or(0.0),
            peak_hour: self.peak_hour.unwrap_or(BASE_PEAK_HOUR),
            factor: self.factor.unwrap_or(1.0),
            production: model("production", &production)?,
            shadow: model("shadow", &shadow)?,
        })
    }
}

fn build(source: &str, doc: ScenarioDoc, problems: &mut Problems<'_>) -> Option<Scenario> {
    if doc.name.trim().is_empty() {
        problems.add("name", "must not be empty");
    }
    let schedule = match Schedule::parse(&doc.schedule) {
        Ok(schedule) => Some(schedule),
        Err(error) => {
            problems.add("schedule", error.to_string());
            None
        }
    };
    let start = doc.start.unwrap_or_else(|| {
        let (y, m, d) = DEFAULT_START;
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    });
    if start.timestamp() % 60 != 0 {
        problems.add(
            "start",
            format!("{} is not on a whole minute", start.to_rfc3339()),
        );
    }
    let update_takes = doc
        .sagemaker
        .update_takes
        .unwrap_or(Duration::from_secs(60));
    problems.duration(
        "sagemaker.update_takes",
        update_takes,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    let publish_delay = doc
        .cloudwatch
        .publish_delay
        .unwrap_or(Duration::from_secs(120));
    problems.duration(
        "cloudwatch.publish_delay",
        publish_delay,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    check_layer(problems, "defaults", &doc.defaults);
    if doc.experiments.is_empty() {
        problems.add("experiments", "needs at least one experiment");
    }

    let mut experiments = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, String> = BTreeMap::new();
    for (index, experiment) in doc.experiments.iter().enumerate() {
        let path = format!("experiments[{index}]");
        check_layer(problems, &path, &experiment.layer());
        if !(1..=100).contains(&experiment.copies) {
            problems.add(
                format!("{path}.copies"),
                format!("{} is outside 1–100", experiment.copies),
            );
        }
        let sampling = match u8::try_from(experiment.sampling) {
            Ok(s @ 1..=100) => s,
            _ => {
                problems.add(
                    format!("{path}.sampling"),
                    format!("{} is outside 1–100", experiment.sampling),
                );
                1
            }
        };
        let duration = experiment
            .duration
            .unwrap_or(Duration::from_secs(7 * 86_400));
        if duration < Duration::from_secs(60) || duration > MAX_EXPERIMENT_DURATION {
            problems.add(
                format!("{path}.duration"),
                format!(
                    "{} is outside 1m–30d (AWS allows at most 30 days)",
                    show(duration)
                ),
            );
        }
        for (kind, variant) in [
            ("production_variant", &experiment.production_variant),
            ("shadow_variant", &experiment.shadow_variant),
        ] {
            if !is_valid_aws_name(variant, 63) {
                problems.add(
                    format!("{path}.{kind}"),
                    format!("{variant:?} must be 1–63 letters, digits or inner hyphens"),
                );
            }
        }
        if experiment.production_variant == experiment.shadow_variant {
            problems.add(
                format!("{path}.shadow_variant"),
                format!(
                    "{:?} is also the production variant",
                    experiment.shadow_variant
                ),
            );
        }
        let start_time = start + chrono_duration(experiment.start.unwrap_or_default());
        let end_time = start_time + chrono_duration(duration);

        let mut layers = Resolved::default();
        layers.apply(&doc.defaults);
        layers.apply(&experiment.layer());
        let mut moments: BTreeSet<Duration> = BTreeSet::from([Duration::ZERO]);
        for (c, change) in experiment.changes.iter().enumerate() {
            let cpath = format!("{path}.changes[{c}]");
            check_layer(problems, &cpath, &change.layer());
            if let Some(until) = change.until {
                if until <= change.at {
                    problems.add(
                        format!("{cpath}.until"),
                        format!("{} is not after at {}", show(until), show(change.at)),
                    );
                }
                moments.insert(until);
            }
            moments.insert(change.at);
        }
        let mut segments = Vec::new();
        for moment in moments {
            let mut resolved = layers.clone();
            for change in &experiment.changes {
                if change.at <= moment && change.until.is_none_or(|until| moment < until) {
                    resolved.apply(&change.layer());
                }
            }
            match resolved.conditions() {
                Ok(conditions) => {
                    let from = start + chrono_duration(moment);
                    if segments
                        .last()
                        .is_none_or(|(_, last): &(DateTime<Utc>, Arc<Conditions>)| {
                            **last != conditions
                        })
                    {
                        segments.push((from, Arc::new(conditions)));
                    }
                }
                Err(message) => {
                    problems.add(path.clone(), format!("{message} from {} on", show(moment)))
                }
            }
        }

        let copies = experiment.copies.clamp(1, 100);
        for copy in 1..=copies {
            let name = if copies == 1 {
                experiment.name.clone()
            } else {
                format!("{}-{copy:02}", experiment.name)
            };
            let endpoint = match &experiment.endpoint {
                Some(endpoint) if copies == 1 => endpoint.clone(),
                Some(endpoint) => format!("{endpoint}-{copy:02}"),
                None => format!("{name}-endpoint"),
            };
            if !is_valid_aws_name(&name, 120) {
                problems.add(
                    format!("{path}.name"),
                    format!("{name:?} must be 1–120 letters, digits or inner hyphens"),
                );
            }
            if !is_valid_aws_name(&endpoint, 63) {
                problems.add(
                    format!("{path}.endpoint"),
                    format!("{endpoint:?} must be 1–63 letters, digits or inner hyphens"),
                );
            }
            if let Some(first) = names.insert(name.clone(), path.clone()) {
                problems.add(
                    format!("{path}.name"),
                    format!("{name:?} is already the name of {first}"),
                );
            }
            if let Some(first) = endpoints.insert(endpoint.clone(), path.clone()) {
                problems.add(
                    format!("{path}.endpoint"),
                    format!("{endpoint:?} is already the endpoint of {first}"),
                );
            }
            let mut tags = experiment.tags.clone();
            tags.insert(
                shadowpilot_core::experiment::POLICY_TAG.to_string(),
                experiment.policy.clone(),
            );
            if experiment.hold {
                tags.insert(
                    shadowpilot_core::experiment::HOLD_TAG.to_string(),
                    "true".to_string(),
                );
            }
            experiments.push(ExperimentSpec {
                name,
                endpoint,
                production_variant: experiment.production_variant.clone(),
                shadow_variant: experiment.shadow_variant.clone(),
                policy: experiment.policy.clone(),
                hold: experiment.hold,
                tags,
                start_time,
                end_time,
                sampling,
                segments: segments.clone(),
            });
        }
    }
    Some(Scenario {
        name: doc.name,
        description: doc.description,
        source: source.to_string(),
        seed: doc.seed,
        start,
        schedule: schedule?,
        update_takes,
        publish_delay,
        experiments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "name: t\nschedule: rate(10 minutes)\nexperiments:\n  - name: a\n    sampling: 5\n";

    #[test]
    fn minimal_scenario_takes_defaults() {
        let scenario = Scenario::parse("s.yaml", MINIMAL).unwrap();
        let experiment = &scenario.experiments[0];
        assert_eq!(experiment.endpoint, "a-endpoint");
        assert_eq!(
            experiment.end_time - experiment.start_time,
            chrono::Duration::days(7)
        );
        assert_eq!(
            experiment
                .tags
                .get("shadowpilot:policy")
                .map(String::as_str),
            Some("default")
        );
        let conditions = experiment.conditions_at(scenario.start);
        assert_eq!(conditions.production, conditions.shadow);
        assert_eq!(conditions.per_minute, BASE_PER_MINUTE);
    }

    #[test]
    fn changes_override_field_by_field_and_end() {
        let text = "name: t\nschedule: rate(10 minutes)\ndefaults:\n  production:\n    latency: {median_ms: 40, p99_ms: 120}\n    errors: {5xx: 0.1}\nexperiments:\n  - name: a\n    sampling: 5\n    changes:\n      - at: 2d\n        shadow:\n          latency: {p99_ms: 400}\n      - at: 3d\n        until: 3d 2h\n        shadow:\n          errors: {5xx: 8}\n";
        let scenario = Scenario::parse("s.yaml", text).unwrap();
        let e = &scenario.experiments[0];
        let at = |h: i64| e.conditions_at(scenario.start + chrono::Duration::hours(h));
        assert_eq!(at(1).shadow.latency.p99_ms, 120.0);
        assert_eq!(at(49).shadow.latency.p99_ms, 400.0);
        assert_eq!(at(49).shadow.latency.median_ms, 40.0);
        assert_eq!(at(73).shadow.rate_5xx, 0.08);
        assert_eq!(at(73).production.rate_5xx, 0.001);
        assert_eq!(at(75).shadow.rate_5xx, 0.001);
        assert_eq!(at(75).shadow.latency.p99_ms, 400.0);
    }

    #[test]
    fn copies_get_their_own_names_and_endpoints() {
        let text = "name: t\nschedule: rate(10 minutes)\nexperiments:\n  - name: fleet\n    sampling: 5\n    copies: 3\n";
        let scenario = Scenario::parse("s.yaml", text).unwrap();
        let names: Vec<_> = scenario
            .experiments
            .iter()
            .map(|e| (e.name.as_str(), e.endpoint.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("fleet-01", "fleet-01-endpoint"),
                ("fleet-02", "fleet-02-endpoint"),
                ("fleet-03", "fleet-03-endpoint")
            ]
        );
    }

    #[test]
    fn invalid_scenarios_name_file_field_and_value() {
        let base = "name: t\nschedule: rate(10 minutes)\nexperiments:\n";
        let cases = [
            ("  - name: a\n    sampling: 5\n  - name: b\n    sampling: 5\n  - name: c\n    sampling: 0\n", "x.yaml: experiments[2].sampling: 0 is outside 1–100"),
            ("  - name: a\n    sampling: 101\n", "experiments[0].sampling: 101 is outside 1–100"),
            ("  - name: a\n    sampling: 5\n    duration: 31d\n", "experiments[0].duration: 31d is outside 1m–30d"),
            ("  - name: a\n    sampling: 5\n  - name: a\n    sampling: 5\n", "experiments[1].name: \"a\" is already the name of experiments[0]"),
            ("  - name: a\n    sampling: 5\n    endpoint: e\n  - name: b\n    endpoint: e\n    sampling: 5\n", "experiments[1].endpoint: \"e\" is already the endpoint"),
            ("  - name: a_b\n    sampling: 5\n", "experiments[0].name: \"a_b\" must be"),
            ("  - name: a\n    sampling: 5\n    shadow_variant: production\n", "experiments[0].shadow_variant: \"production\" is also the production variant"),
            ("  - name: a\n    sampling: 5\n    shadow:\n      latency: {median_ms: 50, p99_ms: 40}\n", "experiments[0].shadow.latency.p99_ms: 40 is not above median_ms 50"),
            ("  - name: a\n    sampling: 5\n    production:\n      errors: {5xx: 120}\n", "experiments[0].production.errors.5xx: 120 is outside 0–100 %"),
            ("  - name: a\n    sampling: 5\n    traffic: {daily_swing: 1.5}\n", "experiments[0].traffic.daily_swing: 1.5 is outside 0–1"),
            ("  - name: a\n    sampling: 5\n    changes:\n      - at: 2d\n        until: 1d\n", "experiments[0].changes[0].until: 1d is not after at 2d"),
            ("  - name: a\n    sampling: 5\n    changes:\n      - at: 1d\n        shadow:\n          latency: {median_ms: 500}\n", "experiments[0]: shadow latency p99_ms 150 is not above median_ms 500 from 1d on"),
            ("  - name: a\n    sampling: 5\n    colour: red\n", "unknown field"),
            ("  - name: a\n    sampling: 5\n    start: soon\n", "not a duration"),
        ];
        for (experiments, expected) in cases {
            let error = Scenario::parse("x.yaml", &format!("{base}{experiments}"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in:\n{error}"
            );
        }
        let error = Scenario::parse(
            "x.yaml",
            "name: t\nschedule: every minute\nexperiments:\n  - name: a\n    sampling: 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("x.yaml: schedule: schedule expression \"every minute\""),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let error = Scenario::load(Path::new("scenarios/does-not-exist.yaml")).unwrap_err();
        assert!(matches!(error, ScenarioError::Read { .. }));
        assert!(
            error.to_string().contains("scenarios/does-not-exist.yaml"),
            "{error}"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let text = "name: t\nschedule: rate(10 minutes)\nexperiments:\n  - name: a\n    sampling: 0\n    duration: 40d\n";
        let Err(ScenarioError::Invalid { problems }) = Scenario::parse("x.yaml", text) else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
