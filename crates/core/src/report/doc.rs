//! The report's JSON as its readers see it: the Lambda's answer and the
//! CLI's `--output json`, as typed values that parse it back.
//!
//! The report itself ([`super::Report`]) is written by hand in
//! [`super::render`] and cannot be read back: its entries hold the errors
//! they came from. [`ReportDoc`] mirrors what that writer emits, field for
//! field and in the same order, so a program can
//! `serde_json::from_str::<ReportDoc>(&answer)` and match on enums instead
//! of strings. Every struct refuses unknown fields, and every enumerated
//! string is an enum: a field or a label the writer emits but this mirror
//! does not know is a parse error (and a failure of the round-trip test,
//! `tests/report_roundtrip.rs`), never silently dropped. The messages
//! (`reason`, `decisive`, a check's `message`, an error's `message`) are for
//! people and may change wording; programs read `verdict`, `outcome`,
//! `decisive_check` and `error.kind`.
//!
//! Numbers that are not finite cannot be written in JSON: where the report
//! has an optional number (an estimate, a bound) such a value is written as
//! `null`, like a missing one. The numbers written are exact; serde_json
//! reads every one of them back exactly only with its `float_roundtrip`
//! feature (without it about one in ten comes back a unit or two in the
//! last place off).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::CheckMetric;

// The schema of a time (core's schemars is built without chrono support).
/// A time as the report writes it: RFC 3339 in UTC with `Z`, and
/// fractions of a second only when there are any (`2026-11-02T10:30:00Z`).
#[derive(JsonSchema)]
#[schemars(rename = "DateTime", extend("format" = "date-time"))]
struct Rfc3339(#[allow(dead_code)] String);

/// What one tick did: every experiment it saw, and the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Report")]
pub struct ReportDoc {
    /// A dry run: the tick planned and wrote nothing (each entry's `tags`
    /// say what it would write).
    pub dry_run: bool,
    /// When the tick began.
    #[schemars(with = "Rfc3339")]
    pub started_at: DateTime<Utc>,
    /// When the schedule runs the next tick: extensions are planned so that
    /// the experiment outlives it by the policy's margin.
    #[schemars(with = "Rfc3339")]
    pub next_tick: DateTime<Utc>,
    /// One entry per experiment seen (listed, or asked for by name).
    pub experiments: Vec<ExperimentDoc>,
    /// The entries counted.
    pub summary: SummaryDoc,
}

/// One experiment's entry: what was seen, judged, planned and written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Experiment")]
pub struct ExperimentDoc {
    /// The inference experiment's name.
    pub name: String,
    /// Its status as SageMaker reported it, `unknown` when it was asked for
    /// by name and not listed.
    pub status: StatusDoc,
    /// The policy that selects it, when one does.
    pub policy: Option<String>,
    /// The endpoint it runs on, when it was described.
    pub endpoint: Option<String>,
    /// `SamplingPercentage` as described (before this tick's write).
    pub sampling_percentage: Option<u8>,
    /// `Schedule.EndTime` as described (before this tick's write).
    #[schemars(with = "Option<Rfc3339>")]
    pub end_time: Option<DateTime<Utc>>,
    /// The judge's verdict, or why there is none (`skipped`, `error`,
    /// `deferred`).
    pub verdict: VerdictDoc,
    /// Where each confidence sequence's evidence starts and ends; null when
    /// the experiment was not judged.
    pub evidence: Option<EvidenceDoc>,
    /// One result per check of the policy (empty when not judged).
    pub checks: Vec<CheckDoc>,
    /// The message of the check that decided the verdict (for a pass: the
    /// one closest to its margin).
    pub decisive: Option<String>,
    /// That check's identifier: `window` or a policy metric such as
    /// `latency_p99`.
    pub decisive_check: Option<CheckIdDoc>,
    /// What the plan does, in the order it is written.
    pub actions: Vec<ActionDoc>,
    /// The tag changes the plan wants (written with the update, or what a
    /// dry run would write); null when the experiment was not planned.
    pub tags: Option<TagsDoc>,
    /// The update reached SageMaker (even when its tags then failed).
    pub applied: bool,
    /// What happened to the write the plan asked for.
    pub outcome: WriteOutcomeDoc,
    /// The entry's reason, in words: actions, notes, skip or error.
    pub reason: String,
    /// States an operator acts on.
    pub attention: Vec<AttentionDoc>,
    /// The tag `shadowpilot:hold=true` is set: judged and reported, never
    /// written.
    pub held: bool,
    /// The EventBridge events of a write that landed: their detail-types,
    /// or `failed` when publishing failed (the write stands). Absent when
    /// there were none to publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsDoc>,
    /// What went wrong, if anything did; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDoc>,
}

/// An inference experiment's status. A status SageMaker adds later is
/// kept as it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Status")]
pub enum StatusDoc {
    Creating,
    Created,
    Updating,
    Starting,
    Running,
    Stopping,
    Completed,
    Cancelled,
    /// Asked for by name and not listed.
    #[serde(rename = "unknown")]
    Unknown,
    /// Any other status, as SageMaker wrote it.
    #[serde(untagged)]
    Other(String),
}

/// The verdict of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Verdict")]
pub enum VerdictDoc {
    /// Every check passes.
    Pass,
    /// A check fails.
    Fail,
    /// Neither (or the metrics could not be read).
    Inconclusive,
    /// Looked at, not judged: a status nothing is done in, no policy,
    /// Created.
    Skipped,
    /// Could not be steered at all; see `error`.
    Error,
    /// Not read in time: judged next tick.
    Deferred,
}

/// Where the evidence of each confidence sequence starts and ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Evidence")]
pub struct EvidenceDoc {
    /// The whole-experiment sequence's start: the later of StartTime and
    /// the tag `shadowpilot:since`.
    #[schemars(with = "Rfc3339")]
    pub whole_start: DateTime<Utc>,
    /// The current step's start (never before `whole_start`).
    #[schemars(with = "Rfc3339")]
    pub step_start: DateTime<Utc>,
    /// Where the step's start came from.
    pub step_origin: StepOriginDoc,
    /// The end of the evidence: whole minutes, the publish delay before now.
    #[schemars(with = "Rfc3339")]
    pub end: DateTime<Utc>,
}

/// Where the current step's start came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(rename = "StepOrigin")]
pub enum StepOriginDoc {
    /// The tag `shadowpilot:step` names the percentage AWS reports.
    Tagged,
    /// No readable step tag: the step starts at LastModifiedTime.
    Untagged,
    /// The tag names another percentage: someone else changed the sampling,
    /// at LastModifiedTime.
    ChangedElsewhere {
        /// The percentage the step tag names.
        tagged: u8,
    },
}

/// One check's result: the estimate, its always-valid interval and the
/// margin, in the check's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Check")]
pub struct CheckDoc {
    /// The check: `window` (nothing could be measured) or a policy metric.
    pub metric: CheckIdDoc,
    /// The estimate; null when there is none (or it is not finite).
    pub value: Option<f64>,
    /// The margin the interval is judged against; null only if it is not
    /// finite (a loaded policy's limits always are).
    pub limit: Option<f64>,
    /// The interval's lower bound; null when there is none (or it is not
    /// finite).
    pub lower: Option<f64>,
    /// The interval's upper bound; null when there is none (or it is not
    /// finite).
    pub upper: Option<f64>,
    /// The unit of `value`, `limit`, `lower` and `upper`.
    pub unit: UnitDoc,
    /// `fail` when the lower bound is over the margin, `pass` when the
    /// upper bound is under it, else `inconclusive`.
    pub outcome: CheckOutcomeDoc,
    /// The confidence sequence shown: the failing one, else the step's.
    pub sequence: SequenceDoc,
    /// At the current sampling: the minutes a decision still needs,
    /// `undecidable`, `never`, or null when decided.
    pub time_to_decision: Option<TimeDoc>,
    /// The same at the policy's top sampling.
    pub time_at_ceiling: Option<TimeDoc>,
    /// The result in words: `p99 ratio 1.08 [0.97, 1.19] ≤ 1.20 (pass)`.
    pub message: String,
}

/// Which check a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "CheckId")]
pub enum CheckIdDoc {
    /// Nothing could be measured (the metric source failed).
    Window,
    /// A policy check's metric.
    #[serde(untagged)]
    Metric(CheckMetric),
}

/// The unit of a check's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Unit")]
pub enum UnitDoc {
    /// Percent (a rate).
    #[serde(rename = "%")]
    Percent,
    /// Milliseconds.
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

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "CheckOutcome")]
pub enum CheckOutcomeDoc {
    Pass,
    Fail,
    Inconclusive,
}

/// A confidence sequence: `step`, `whole`, or `epoch_<j>` (j from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(rename = "Sequence", extend("pattern" = "^(step|whole|epoch_[0-9]+)$"))]
pub enum SequenceDoc {
    /// Since the current sampling took effect.
    Step,
    /// Since the later of StartTime and `shadowpilot:since`.
    Whole,
    /// Restarted epoch `j` within the step.
    Epoch(u32),
}

impl From<SequenceDoc> for String {
    fn from(sequence: SequenceDoc) -> Self {
        match sequence {
            SequenceDoc::Step => "step".into(),
            SequenceDoc::Whole => "whole".into(),
            SequenceDoc::Epoch(j) => format!("epoch_{j}"),
        }
    }
}

impl TryFrom<String> for SequenceDoc {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "step" => Ok(Self::Step),
            "whole" => Ok(Self::Whole),
            other => other
                .strip_prefix("epoch_")
                .filter(|j| !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|j| j.parse().ok())
                .map(Self::Epoch)
                .ok_or_else(|| format!("{text:?} is not step, whole or epoch_<j>")),
        }
    }
}

/// The time a check's decision still needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "TimeToDecision")]
pub enum TimeDoc {
    /// The estimate sits on the margin: no amount of evidence decides it.
    Undecidable,
    /// Too little traffic per period to ever decide at this sampling.
    Never,
    /// Minutes, to a tenth, if the estimate stays where it is.
    #[serde(untagged)]
    Minutes(f64),
}

/// One planned action, by `kind`, with its reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(rename = "Action")]
pub enum ActionDoc {
    /// UpdateInferenceExperiment's `SamplingPercentage`.
    SetSampling {
        /// The percentage described.
        from: u8,
        /// The percentage written.
        to: u8,
        /// Why, in words.
        reason: String,
    },
    /// UpdateInferenceExperiment's `Schedule.EndTime`.
    ExtendEndTime {
        /// The end time described.
        #[schemars(with = "Rfc3339")]
        from: DateTime<Utc>,
        /// The end time written.
        #[schemars(with = "Rfc3339")]
        to: DateTime<Utc>,
        /// Why, in words.
        reason: String,
    },
    /// StopInferenceExperiment: the end of the test.
    StopExperiment {
        /// Why it ends.
        stop: StopDoc,
        /// Every variant of the experiment, by name, and what becomes of it.
        variant_actions: BTreeMap<String, VariantActionDoc>,
        /// The state the experiment ends in.
        desired_state: StopStateDoc,
        /// Why, in words.
        reason: String,
    },
}

/// Why shadowpilot ends a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Stop")]
pub enum StopDoc {
    /// The shadow passed at 100 % for long enough: it is promoted.
    Promote,
    /// It failed at the floor for long enough: the shadow is removed.
    RemoveShadow,
}

/// What StopInferenceExperiment does with one variant (the API's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "VariantAction")]
pub enum VariantActionDoc {
    /// The shadow becomes the production variant.
    Promote,
    /// The variant is deleted.
    Remove,
    /// The variant stays as it is.
    Retain,
}

/// StopInferenceExperiment's `DesiredState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "StopState")]
pub enum StopStateDoc {
    /// Completed: the shadow is promoted.
    Completed,
    /// Cancelled: the shadow failed and is removed.
    Cancelled,
}

/// The tag changes a plan wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tags")]
pub struct TagsDoc {
    /// AddTags: keys and values, sorted by key.
    pub set: BTreeMap<String, String>,
    /// DeleteTags: keys, sorted.
    pub remove: Vec<String>,
}

/// What happened to the write an entry's plan asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "WriteOutcome")]
pub enum WriteOutcomeDoc {
    /// Nothing to write (or the experiment was not planned).
    None,
    /// The update (and its tags) landed.
    Applied,
    /// A dry run: planned, not written.
    DryRun,
    /// Not written: the tag `shadowpilot:hold=true`.
    Held,
    /// Not written: every change window of the policy is shut.
    OutsideChangeWindow,
    /// Not written: the experiment changed between the read and the write.
    ChangedSinceRead,
    /// SageMaker refused the request (ValidationException).
    Rejected,
    /// The data capture could not be read (S3 failed, the bucket is
    /// missing); an S3 or KMS denial is `access_denied`.
    Capture,
    /// SageMaker answered ConflictException.
    Conflict,
    /// The experiment was gone.
    NotFound,
    /// Any other failure of the re-read or the update; see `error`.
    Failed,
    /// No update was needed; only shadowpilot's tags were written.
    TagsWritten,
    /// AddTags or DeleteTags failed (after the update, if any).
    TagWriteFailed,
    /// Not read, or the write not started, before the deadline: the next
    /// tick tries again.
    Deferred,
}

/// A state an operator acts on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Attention")]
pub enum AttentionDoc {
    /// Passing at the policy's top step: time to promote the shadow.
    ReadyToPromote,
    /// A check failed (now or earlier, latched): stepped down to the floor.
    Failing,
    /// Failing and already at the floor: a person must look.
    FailingAtFloor,
    /// It needs more time but the 30-day or policy cap stops it.
    CannotExtend,
    /// The evidence needs longer than the cap leaves, even at the top
    /// sampling: no more extensions.
    Undecidable,
}

/// The events of a write that landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Events")]
pub enum EventsDoc {
    /// Publishing failed; the write stands (the entry's error is `events`).
    Failed,
    /// The detail-types published (`Shadow Sampling Changed`, ...).
    #[serde(untagged)]
    Published(Vec<String>),
}

/// What went wrong for an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Error")]
pub struct ErrorDoc {
    /// A stable label: read this, not the message.
    pub kind: ErrorKindDoc,
    /// The error and its causes, in words.
    pub message: String,
    /// Other kinds of trouble the entry also had (CloudWatch failing behind
    /// a rejected write, a failed publish), each counted in
    /// `summary.errors` too.
    pub also: Vec<ErrorKindDoc>,
}

/// A stable label for what went wrong.
///
/// Declared in alphabetical order: `summary.errors` is keyed by these, and
/// a map of them is then written in the report's own (sorted) key order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "ErrorKind")]
pub enum ErrorKindDoc {
    /// The role may not make the call (SageMaker, CloudWatch, S3 or KMS).
    AccessDenied,
    /// Two or more policies select the experiment: never written.
    AmbiguousPolicy,
    /// The data capture could not be read (S3 failed, the bucket is
    /// missing); an S3 or KMS denial is `access_denied`.
    Capture,
    /// SageMaker answered ConflictException.
    Conflict,
    /// The write landed, but its events could not be published.
    Events,
    /// SageMaker answered without a usable field.
    InvalidResponse,
    /// The metric source failed: judged without measurements.
    Metrics,
    /// The experiment was not found (or, asked for by name, not listed).
    NotFound,
    /// Asked for by name, but no policy selects it.
    NotSelected,
    /// SageMaker refused the write (ValidationException).
    Rejected,
    /// Any other failure of a SageMaker call.
    Service,
    /// The update landed (or none was needed) but AddTags or DeleteTags
    /// failed.
    TagWrite,
    /// Throttled on every attempt.
    Throttled,
    /// The tag `shadowpilot:policy` names no loaded policy.
    UnknownPolicy,
}

/// The entries counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Summary")]
pub struct SummaryDoc {
    /// Entries in `experiments`.
    pub experiments: u64,
    /// Entries whose verdict is `pass`.
    pub pass: u64,
    /// Entries whose verdict is `fail`.
    pub fail: u64,
    /// Entries whose verdict is `inconclusive`.
    pub inconclusive: u64,
    /// Entries whose verdict is `skipped`.
    pub skipped: u64,
    /// Entries whose verdict is `error`.
    pub error: u64,
    /// Entries whose verdict is `deferred`: not read in time (judged
    /// entries whose write was put off are `writes_deferred`).
    pub deferred: u64,
    /// Actions of every entry.
    pub actions_planned: u64,
    /// Entries whose update reached SageMaker (`applied`).
    pub updates_applied: u64,
    /// Judged, but the write was not started before the deadline.
    pub writes_deferred: u64,
    /// SageMaker refused the write (outcome `rejected`).
    pub writes_rejected: u64,
    /// Every entry with an `error`, by its kind, whatever its verdict; kinds
    /// without one are left out.
    #[schemars(extend("propertyNames" = { "$ref": "#/$defs/ErrorKind" }))]
    pub errors: BTreeMap<ErrorKindDoc, u64>,
    /// Entries in the attention state `ready_to_promote`.
    pub ready_to_promote: u64,
    /// Entries in the attention state `failing`.
    pub failing: u64,
    /// Entries in the attention state `failing_at_floor`.
    pub failing_at_floor: u64,
    /// Entries in the attention state `cannot_extend`.
    pub cannot_extend: u64,
    /// Entries in the attention state `undecidable`.
    pub undecidable: u64,
}

/// The JSON Schema of the report as it is written, generated from
/// [`ReportDoc`]: every field the writer always emits is required (null
/// where the field is optional); `events` and `error` may be absent.
pub fn report_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::default()
        .for_serialize()
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<ReportDoc>())
        .unwrap_or(serde_json::Value::Null);
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "shadowpilot report".into());
    }
    schema
}
