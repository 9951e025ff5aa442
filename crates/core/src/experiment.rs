//! Our model of a SageMaker inference experiment, free of SDK types.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The tag whose value names the policy that steers an experiment.
pub const POLICY_TAG: &str = "shadowpilot:policy";
/// The tag that freezes an experiment: judged and reported, never written.
pub const HOLD_TAG: &str = "shadowpilot:hold";
/// `<percentage>@<time>`: the sampling shadowpilot last set, and since when.
/// EndTime extensions move LastModifiedTime; this does not move with them.
pub const STEP_TAG: &str = "shadowpilot:step";
/// Earlier steps, oldest first, as space-separated `<percentage>@<time>`:
/// the whole-experiment latency sequence reads each at its own period.
pub const STEPS_TAG: &str = "shadowpilot:steps";
/// `<check>@<time>`: the latch a failed check leaves.
pub const FAILED_TAG: &str = "shadowpilot:failed";
/// `<time>`: where the whole-experiment sequence starts after a re-arm.
pub const SINCE_TAG: &str = "shadowpilot:since";
/// The attention states of the last write, comma-separated
/// (`failing,cannot_extend`): an event is emitted for a state only when it
/// is new against this tag, and only after the tag is written.
pub const ATTENTION_TAG: &str = "shadowpilot:attention";
/// Every tag shadowpilot writes starts with this (IAM scopes AddTags and
/// DeleteTags to it with `aws:TagKeys`).
pub const TAG_PREFIX: &str = "shadowpilot:";
/// AWS's limit on a tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// A time as shadowpilot writes it in tags: RFC 3339, whole seconds, `Z`.
pub fn tag_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_tag_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One `<percentage>@<time>` value of the step tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMark {
    pub percentage: u8,
    pub since: DateTime<Utc>,
}

impl StepMark {
    pub fn parse(raw: &str) -> Option<Self> {
        let (percentage, since) = raw.trim().split_once('@')?;
        let percentage: u8 = percentage.parse().ok()?;
        if !(1..=100).contains(&percentage) {
            return None;
        }
        Some(Self {
            percentage,
            since: parse_tag_time(since)?,
        })
    }
}

impl fmt::Display for StepMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.percentage, tag_time(self.since))
    }
}

/// The `<check>@<time>` value of the latch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMark {
    pub check: String,
    pub at: DateTime<Utc>,
}

impl FailedMark {
    /// A latch whose value cannot be read still latches (at an unknown
    /// time): a person wrote or damaged it, and failing safe means down.
    pub fn parse(raw: &str) -> Self {
        match raw.trim().rsplit_once('@') {
            Some((check, at)) => Self {
                check: check.to_string(),
                at: parse_tag_time(at).unwrap_or(DateTime::<Utc>::MIN_UTC),
            },
            None => Self {
                check: raw.trim().to_string(),
                at: DateTime::<Utc>::MIN_UTC,
            },
        }
    }
}

impl fmt::Display for FailedMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.check, tag_time(self.at))
    }
}

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
    /// DataStorageConfig: where both variants' requests and responses are
    /// captured, when the experiment captures them.
    pub capture: Option<CaptureConfig>,
}

/// An experiment's DataStorageConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// `s3://bucket/prefix`, as AWS returns it.
    pub destination: String,
    /// The KMS key the captured objects are encrypted with, if any.
    pub kms_key: Option<String>,
}

impl Experiment {
    pub fn policy_tag(&self) -> Option<&str> {
        self.tags.get(POLICY_TAG).map(String::as_str)
    }

    /// The step tag, when it parses.
    pub fn step_mark(&self) -> Option<StepMark> {
        self.tags.get(STEP_TAG).and_then(|raw| StepMark::parse(raw))
    }

    /// Earlier steps from the history tag, oldest first; unreadable entries
    /// are left out.
    pub fn step_history(&self) -> Vec<StepMark> {
        self.tags
            .get(STEPS_TAG)
            .map(|raw| raw.split_whitespace().filter_map(StepMark::parse).collect())
            .unwrap_or_default()
    }

    pub fn failed_mark(&self) -> Option<FailedMark> {
        self.tags.get(FAILED_TAG).map(|raw| FailedMark::parse(raw))
    }

    /// The re-arm time, when it parses.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.tags.get(SINCE_TAG).and_then(|raw| parse_tag_time(raw))
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

/// What StopInferenceExperiment does with one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VariantAction {
    /// The shadow becomes the production variant.
    Promote,
    /// The variant is deleted.
    Remove,
    /// The variant stays as it is.
    Retain,
}

impl VariantAction {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "Promote",
            Self::Remove => "Remove",
            Self::Retain => "Retain",
        }
    }
}

/// StopInferenceExperiment's `DesiredState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopState {
    /// The experiment completed successfully: the shadow is promoted.
    Completed,
    /// The experiment was cancelled: the shadow failed and is removed.
    Cancelled,
}

impl StopState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// AWS's limit on StopInferenceExperiment's `Reason`, in characters.
pub const MAX_STOP_REASON_CHARS: usize = 1024;

/// One StopInferenceExperiment call: the end of the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentStop {
    pub name: String,
    /// Every variant of the experiment, by name.
    pub variant_actions: BTreeMap<String, VariantAction>,
    pub desired_state: StopState,
    /// Names shadowpilot and the evidence; at most
    /// [`MAX_STOP_REASON_CHARS`].
    pub reason: String,
}
