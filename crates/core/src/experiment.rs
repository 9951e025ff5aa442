//! Our model of a SageMaker inference experiment, free of SDK types.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The tag whose value names the policy that steers an experiment.
pub const POLICY_TAG: &str = "shadowpilot:policy";
/// The tag that freezes an experiment: judged and reported, never written.
pub const HOLD_TAG: &str = "shadowpilot:hold";

/// Lifecycle states as SageMaker reports them. Unknown strings are kept so a
/// new AWS status is reported instead of failing the whole tick.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExperimentStatus {
    Creating,
    Created,
    Updating,
    Starting,
    Running,
    Stopping,
    Completed,
    Cancelled,
    Other(String),
}

impl ExperimentStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "Creating" => Self::Creating,
            "Created" => Self::Created,
            "Updating" => Self::Updating,
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            "Stopping" => Self::Stopping,
            "Completed" => Self::Completed,
            "Cancelled" => Self::Cancelled,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Creating => "Creating",
            Self::Created => "Created",
            Self::Updating => "Updating",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Completed => "Completed",
            Self::Cancelled => "Cancelled",
            Self::Other(raw) => raw,
        }
    }

    /// Statuses worth a describe call: only these can be judged or written.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Running | Self::Created)
    }
}

impl fmt::Display for ExperimentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of ListInferenceExperiments: AWS gives no endpoint or variants here.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSummary {
    pub name: String,
    pub status: ExperimentStatus,
}

/// What DescribeInferenceExperiment and ListTags tell us about one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub arn: String,
    pub status: ExperimentStatus,
    pub endpoint_name: String,
    pub production_variant: String,
    pub shadow_variant: String,
    pub sampling_percentage: u8,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub last_modified: DateTime<Utc>,
    pub tags: BTreeMap<String, String>,
}

impl Experiment {
    pub fn policy_tag(&self) -> Option<&str> {
        self.tags.get(POLICY_TAG).map(String::as_str)
    }

    pub fn is_held(&self) -> bool {
        self.tags
            .get(HOLD_TAG)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }
}

/// The shadow-mode part of an update. AWS wants the whole ShadowModeConfig
/// whenever the sampling percentage changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingUpdate {
    pub source_variant: String,
    pub shadow_variant: String,
    pub percentage: u8,
}

/// One UpdateInferenceExperiment call. While Running only the end time and the
/// sampling percentage may change, so nothing else can be expressed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentUpdate {
    pub name: String,
    pub sampling: Option<SamplingUpdate>,
    pub end_time: Option<DateTime<Utc>>,
}

impl ExperimentUpdate {
    pub fn is_empty(&self) -> bool {
        self.sampling.is_none() && self.end_time.is_none()
    }
}
