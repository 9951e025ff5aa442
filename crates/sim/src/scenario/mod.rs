//! Scenario files: the world a simulation runs in. YAML, validated once at
//! load with every problem named by file, field and value, like policies.
//!
//! Every model setting can be given at three levels, each overriding the one
//! before field by field: `defaults`, the experiment, and the `changes` in
//! force at a moment. The shadow falls back to production for anything it
//! does not set, so `shadow: {}` is a shadow identical to production.
//!
//! ## Layout
//! - `doc`: the file as written, every field optional where a level above
//!   may give it.
//! - `layers`: checks one level's settings and merges levels field by field.
//! - `build`: the steps from the file as written to a validated [`Scenario`].

mod build;
mod doc;
mod layers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::histogram::BucketTable;
use super::rng::inverse_normal_cdf;
use shadowpilot_core::schedule::{chrono_duration, Schedule};
use shadowpilot_core::validation::{self, Problem, Problems};
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

use build::build;
use doc::ScenarioDoc;

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
    /// Data capture of both variants, when the experiment has it.
    pub capture: Option<CaptureSpec>,
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
    /// What the variant answers, as its captured output.
    pub output: OutputModel,
}

/// A variant's answers. Production's are drawn per request; the shadow's
/// are production's answer to the same request, changed as often (or by as
/// much) as its own fields say. Both variants of a stretch of time are of
/// the same kind (the scenario is refused otherwise).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputModel {
    /// `{"label": ..., "score": ...}`.
    Classifier {
        /// Production's labels (at least two), the shadow's too.
        labels: Arc<[String]>,
        /// The shadow's share of requests labelled otherwise than by
        /// production (0.05 is 5 %); 0 for production.
        disagree: f64,
    },
    /// `{"prediction": ...}`.
    Regressor {
        /// Production's prediction is N(mean, sd).
        mean: f64,
        sd: f64,
        /// The shadow adds N(0, noise_sd) to production's; 0 for production.
        noise_sd: f64,
    },
}

/// An experiment's data capture: its DataStorageConfig and how the
/// simulated files arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpec {
    /// `s3://bucket/prefix`, as Describe returns it.
    pub destination: String,
    /// Whether callers send InferenceId (records then carry inferenceId).
    pub inference_ids: bool,
    /// A minute's file is listed this long after the minute ends.
    pub delivery_delay: Duration,
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

/// A scenario is a few pages of YAML (`copies` makes fleets from one entry).
pub const MAX_SCENARIO_BYTES: usize = 1024 * 1024;

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = validation::read_text(path, MAX_SCENARIO_BYTES).map_err(|source| {
            ScenarioError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates scenario text; `source` names it in messages.
    pub fn parse(source: &str, text: &str) -> Result<Self, ScenarioError> {
        let doc: ScenarioDoc =
            validation::parse_yaml(source, text, MAX_SCENARIO_BYTES).map_err(|problem| {
                ScenarioError::Invalid {
                    problems: vec![problem],
                }
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

#[cfg(test)]
mod tests {
    use super::layers::BASE_PER_MINUTE;
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
            error.contains("x.yaml: schedule: every minute: neither rate(...) nor cron(...)"),
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
