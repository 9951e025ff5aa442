//! The scenario file as written: every field optional where a level above
//! may give it, so that layers can be merged before anything is checked.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) seed: u64,
    /// RFC 3339; defaults to 2026-03-02T00:00:00Z (a Monday).
    #[serde(default)]
    pub(super) start: Option<DateTime<Utc>>,
    /// The EventBridge expression the controller runs on.
    pub(super) schedule: String,
    #[serde(default)]
    pub(super) sagemaker: SageMakerDoc,
    #[serde(default)]
    pub(super) cloudwatch: CloudWatchDoc,
    #[serde(default)]
    pub(super) defaults: LayerDoc,
    pub(super) experiments: Vec<ExperimentDoc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SageMakerDoc {
    /// How long an experiment shows Updating after an accepted update.
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) update_takes: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloudWatchDoc {
    /// How long after a minute ends its datapoint appears.
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) publish_delay: Option<Duration>,
}

/// Settings that every level may give.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LayerDoc {
    #[serde(default)]
    pub(super) traffic: TrafficDoc,
    #[serde(default)]
    pub(super) production: VariantDoc,
    #[serde(default)]
    pub(super) shadow: VariantDoc,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrafficDoc {
    /// Production requests per minute on average over a day.
    pub(super) per_minute: Option<f64>,
    /// Daily swing as a fraction: 0.5 is ±50 % around `per_minute`.
    pub(super) daily_swing: Option<f64>,
    /// Hour of day (UTC) when traffic peaks.
    pub(super) peak_hour: Option<f64>,
    /// Multiplies the traffic; what a change uses to dry it up (0.02) or to
    /// bring a surge (3).
    pub(super) factor: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VariantDoc {
    pub(super) latency: Option<LatencyDoc>,
    pub(super) overhead: Option<LatencyDoc>,
    pub(super) errors: Option<ErrorsDoc>,
    /// What the variant answers, for data capture.
    pub(super) output: Option<OutputDoc>,
}

/// A variant's answers: one of the two kinds. Production sets what the
/// answers are; the shadow sets only how far it strays from production's
/// answer to the same request, so that agreement is a number the scenario
/// states rather than an accident of two independent draws.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputDoc {
    pub(super) classifier: Option<ClassifierDoc>,
    pub(super) regressor: Option<RegressorDoc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClassifierDoc {
    /// Production's labels, drawn uniformly per request.
    pub(super) labels: Option<Vec<String>>,
    /// The shadow's: percent of requests it labels otherwise than production.
    pub(super) disagree: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegressorDoc {
    /// Production's prediction: normal with this mean and sd.
    pub(super) mean: Option<f64>,
    pub(super) sd: Option<f64>,
    /// The shadow's: production's prediction plus N(0, noise_sd).
    pub(super) noise_sd: Option<f64>,
}

/// The experiment's DataStorageConfig and how its files arrive. Not a
/// layer: SageMaker fixes it when the experiment is created.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaptureDoc {
    /// `s3://bucket/prefix`; defaults to `s3://shadowpilot-sim-capture/<experiment>`.
    pub(super) destination: Option<String>,
    /// Callers send InvokeEndpoint's InferenceId (default true); without
    /// it records carry only their eventId.
    pub(super) inference_ids: Option<bool>,
    /// How long after a minute ends its file is listed (default 3m).
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) delivery_delay: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LatencyDoc {
    pub(super) median_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
}

/// Percent of requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ErrorsDoc {
    #[serde(rename = "4xx")]
    pub(super) e4xx: Option<f64>,
    #[serde(rename = "5xx")]
    pub(super) e5xx: Option<f64>,
    pub(super) model: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExperimentDoc {
    pub(super) name: String,
    /// Defaults to `<name>-endpoint`.
    pub(super) endpoint: Option<String>,
    #[serde(default = "default_production_variant")]
    pub(super) production_variant: String,
    #[serde(default = "default_shadow_variant")]
    pub(super) shadow_variant: String,
    /// The value of the tag shadowpilot:policy.
    #[serde(default = "default_policy")]
    pub(super) policy: String,
    /// Sets the tag shadowpilot:hold=true.
    #[serde(default)]
    pub(super) hold: bool,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    /// StartTime, counted from the scenario start.
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) start: Option<Duration>,
    /// From StartTime to EndTime; AWS's default is 7 days.
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) duration: Option<Duration>,
    /// The starting SamplingPercentage.
    pub(super) sampling: u16,
    /// Data capture of both variants; off without it.
    #[serde(default)]
    pub(super) capture: Option<CaptureDoc>,
    /// Makes this many experiments `<name>-01`, `<name>-02`, ...: same
    /// settings, their own endpoints and random draws.
    #[serde(default = "one")]
    pub(super) copies: u16,
    #[serde(default)]
    pub(super) traffic: TrafficDoc,
    #[serde(default)]
    pub(super) production: VariantDoc,
    #[serde(default)]
    pub(super) shadow: VariantDoc,
    #[serde(default)]
    pub(super) changes: Vec<ChangeDoc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeDoc {
    /// Counted from the scenario start.
    #[serde(deserialize_with = "duration")]
    pub(super) at: Duration,
    /// When the change ends; without it, it lasts to the end.
    #[serde(default, deserialize_with = "some_duration")]
    pub(super) until: Option<Duration>,
    #[serde(default)]
    pub(super) traffic: TrafficDoc,
    #[serde(default)]
    pub(super) production: VariantDoc,
    #[serde(default)]
    pub(super) shadow: VariantDoc,
}

impl ExperimentDoc {
    pub(super) fn layer(&self) -> LayerDoc {
        layer(&self.traffic, &self.production, &self.shadow)
    }
}

impl ChangeDoc {
    pub(super) fn layer(&self) -> LayerDoc {
        layer(&self.traffic, &self.production, &self.shadow)
    }
}

/// The settings an experiment or a change gives, as a level to merge; serde
/// cannot flatten them into those structs and still deny unknown fields.
fn layer(traffic: &TrafficDoc, production: &VariantDoc, shadow: &VariantDoc) -> LayerDoc {
    LayerDoc {
        traffic: traffic.clone(),
        production: production.clone(),
        shadow: shadow.clone(),
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
    shadowpilot_core::duration::deserialize(deserializer)
}

fn some_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    shadowpilot_core::duration::deserialize(deserializer).map(Some)
}
