//! What a tick did, as typed values until the very end: one
//! [`ExperimentReport`] per experiment seen, whose [`Disposition`] says
//! whether it was steered (with its verdict, plan and write outcome),
//! skipped (and why) or failed (and how). [`render`] is the one place that
//! turns them into words: the Lambda's JSON answer, `--output json`, logs
//! and the table an operator reads.

pub mod agreement;
mod doc;
pub mod emf;
pub mod render;
pub use doc::*;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capture::CompareError;
use crate::evidence::Timeline;
use crate::experiment::ExperimentStatus;
use crate::judge::{CheckResult, Outcome, Verdict};
use crate::plan::{Action, Attention, Plan, WriteBlock};
use crate::ports::{EventError, MetricError, MetricFailure, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Pass,
    Fail,
    Inconclusive,
    Skipped,
    Error,
    /// Not read in time: judged next tick.
    Deferred,
}

impl From<Outcome> for VerdictKind {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Pass => Self::Pass,
            Outcome::Fail => Self::Fail,
            Outcome::Inconclusive => Self::Inconclusive,
        }
    }
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
            Self::Skipped => "skipped",
            Self::Error => "error",
            Self::Deferred => "deferred",
        }
    }
}

/// A stable label for what went wrong, for reports, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    NotSelected,
    AmbiguousPolicy,
    UnknownPolicy,
    Conflict,
    Rejected,
    Throttled,
    AccessDenied,
    InvalidResponse,
    Service,
    /// The metric source failed; the experiment was judged without data.
    Metrics,
    /// The update landed (or none was needed) but AddTags or DeleteTags
    /// failed: the next tick reads the step as changed elsewhere.
    TagWrite,
    /// The write landed, but its events could not be published.
    Events,
    /// The data capture could not be read (S3 failed, the bucket is
    /// missing, no reader in this run); denials and invalid answers keep
    /// their own kinds.
    Capture,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::NotSelected => "not_selected",
            Self::AmbiguousPolicy => "ambiguous_policy",
            Self::UnknownPolicy => "unknown_policy",
            Self::Conflict => "conflict",
            Self::Rejected => "rejected",
            Self::Throttled => "throttled",
            Self::AccessDenied => "access_denied",
            Self::InvalidResponse => "invalid_response",
            Self::Service => "service",
            Self::Metrics => "metrics",
            Self::TagWrite => "tag_write",
            Self::Events => "events",
            Self::Capture => "capture",
        }
    }

    pub fn of_store_error(error: &StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::NotFound,
            StoreError::Conflict { .. } => Self::Conflict,
            StoreError::Rejected { .. } => Self::Rejected,
            StoreError::InvalidResponse { .. } => Self::InvalidResponse,
            StoreError::Throttled { .. } => Self::Throttled,
            StoreError::AccessDenied { .. } => Self::AccessDenied,
            StoreError::Service { .. } => Self::Service,
        }
    }
}

/// Why an experiment could not be steered at all.
#[derive(Debug, Clone)]
pub enum EntryError {
    /// Asked for by name, but not in the list.
    NotListed,
    /// Asked for by name, but no policy selects it.
    NotSelected,
    AmbiguousPolicy {
        policies: Vec<String>,
    },
    UnknownPolicy {
        name: String,
    },
    /// Describing it failed; the store's error is kept as the source.
    Store(Arc<StoreError>),
}

impl EntryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotListed => ErrorKind::NotFound,
            Self::NotSelected => ErrorKind::NotSelected,
            Self::AmbiguousPolicy { .. } => ErrorKind::AmbiguousPolicy,
            Self::UnknownPolicy { .. } => ErrorKind::UnknownPolicy,
            Self::Store(error) => ErrorKind::of_store_error(error),
        }
    }
}

/// Why an experiment was looked at but not judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Listed with a status that nothing can be done in (Completed, ...).
    Inactive(ExperimentStatus),
    /// No policy selects it (and it was not asked for by name).
    NotSelected,
    /// Created: no traffic until it starts.
    Created { start: Option<DateTime<Utc>> },
    /// Described in a status that is not judged (it changed since the list).
    NotJudged(ExperimentStatus),
}

/// What made a planned write stale between reading and writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    Status(ExperimentStatus),
    Sampling { from: u8, to: u8 },
    EndTime,
    LastModifiedTime,
    Held,
    PolicyTag,
}

/// What happened to the write a steered experiment's plan asked for.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// The plan needs no write.
    Nothing,
    Applied,
    DryRun,
    /// Planned, not sent: held by tag, or outside the change windows.
    Blocked(WriteBlock),
    ChangedSinceRead(Staleness),
    /// SageMaker refused the request (ValidationException).
    Rejected(Arc<StoreError>),
    Conflict(Arc<StoreError>),
    NotFound(Arc<StoreError>),
    /// Any other failure of the re-read or the update: throttled, denied, ...
    Failed(Arc<StoreError>),
    /// No update was needed; only shadowpilot's tags were written.
    TagsWritten,
    /// AddTags or DeleteTags failed on `arn`, after the update (if any)
    /// was applied.
    TagWriteFailed {
        arn: String,
        updated: bool,
        error: Arc<StoreError>,
    },
    /// Not started: the tick's deadline was too close.
    Deferred(Deferral),
}

/// Why an experiment's turn was put off to the next tick. Nothing about it
/// was written, and the next tick derives its step afresh from AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Its describe or tags had not answered when the metrics round had to
    /// be sent (`waited` after the tick began).
    NotRead { waited: std::time::Duration },
    /// Its write group (re-describe, update, tags) would have started with
    /// only `left` before the deadline, under the `margin` the group needs
    /// so that it is never cut in half.
    NoTimeToWrite {
        left: std::time::Duration,
        margin: std::time::Duration,
    },
}

impl WriteOutcome {
    pub(crate) fn from_store_error(error: StoreError) -> Self {
        let kind = ErrorKind::of_store_error(&error);
        let error = Arc::new(error);
        match kind {
            ErrorKind::Rejected => Self::Rejected(error),
            ErrorKind::Conflict => Self::Conflict(error),
            ErrorKind::NotFound => Self::NotFound(error),
            _ => Self::Failed(error),
        }
    }

    /// The label the report's `outcome` field carries.
    pub(crate) fn tag_write(arn: &str, error: StoreError, updated: bool) -> Self {
        Self::TagWriteFailed {
            arn: arn.to_string(),
            updated,
            error: Arc::new(error),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TagWriteFailed { .. } => "tag_write_failed",
            Self::TagsWritten => "tags_written",
            Self::Nothing => "none",
            Self::Applied => "applied",
            Self::DryRun => "dry_run",
            Self::Blocked(WriteBlock::Held) => "held",
            Self::Blocked(WriteBlock::OutsideChangeWindows { .. }) => "outside_change_window",
            Self::ChangedSinceRead(_) => "changed_since_read",
            Self::Rejected(_) => "rejected",
            Self::Conflict(_) => "conflict",
            Self::NotFound(_) => "not_found",
            Self::Failed(_) => "failed",
            Self::Deferred(_) => "deferred",
        }
    }

    /// The store's error behind a failed write, if that is what happened.
    pub fn error(&self) -> Option<&StoreError> {
        match self {
            Self::Rejected(error)
            | Self::Conflict(error)
            | Self::NotFound(error)
            | Self::Failed(error)
            | Self::TagWriteFailed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A judged and planned experiment.
#[derive(Debug, Clone)]
pub struct Steered {
    pub verdict: Verdict,
    pub plan: Plan,
    pub write: WriteOutcome,
    /// The metric source failed: judged without measurements (never ramps;
    /// an extension may still be planned).
    pub metrics_error: Option<MetricFailure>,
    /// What happened to the events the write announced.
    pub events: EventsOutcome,
}

/// The events of an entry whose write landed.
#[derive(Debug, Clone, Default)]
pub enum EventsOutcome {
    /// No sink, nothing to announce, or nothing written.
    #[default]
    None,
    Published(Vec<&'static str>),
    /// Publishing failed; the write stands.
    Failed(Arc<crate::ports::EventError>),
}

#[derive(Debug, Clone)]
pub enum Disposition {
    Steered(Box<Steered>),
    Skipped(SkipReason),
    Failed(EntryError),
    /// Listed but not read before the tick had to move on.
    Deferred(Deferral),
}

/// One experiment's entry in the report.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub name: String,
    /// `None` when it was asked for by name and not listed.
    pub status: Option<ExperimentStatus>,
    pub policy: Option<String>,
    pub endpoint: Option<String>,
    pub sampling_percentage: Option<u8>,
    pub end_time: Option<DateTime<Utc>>,
    /// Where each sequence's evidence starts and ends.
    pub timeline: Option<Timeline>,
    pub held: bool,
    pub disposition: Disposition,
}

impl ExperimentReport {
    pub fn new(name: &str, status: Option<ExperimentStatus>, disposition: Disposition) -> Self {
        Self {
            name: name.to_string(),
            status,
            policy: None,
            endpoint: None,
            sampling_percentage: None,
            end_time: None,
            timeline: None,
            held: false,
            disposition,
        }
    }

    pub fn steered(&self) -> Option<&Steered> {
        match &self.disposition {
            Disposition::Steered(steered) => Some(steered),
            _ => None,
        }
    }

    pub fn verdict(&self) -> VerdictKind {
        match &self.disposition {
            Disposition::Steered(steered) => steered.verdict.outcome.into(),
            Disposition::Skipped(_) => VerdictKind::Skipped,
            Disposition::Failed(_) => VerdictKind::Error,
            Disposition::Deferred(_) => VerdictKind::Deferred,
        }
    }

    /// Why this experiment waits for the next tick, if it does.
    pub fn deferral(&self) -> Option<Deferral> {
        match &self.disposition {
            Disposition::Deferred(deferral) => Some(*deferral),
            Disposition::Steered(steered) => match steered.write {
                WriteOutcome::Deferred(deferral) => Some(deferral),
                _ => None,
            },
            _ => None,
        }
    }

    /// The report's `outcome` field: what happened to the write.
    pub fn outcome_str(&self) -> &'static str {
        match &self.disposition {
            Disposition::Deferred(_) => "deferred",
            _ => self.write().map_or("none", WriteOutcome::as_str),
        }
    }

    pub fn checks(&self) -> &[CheckResult] {
        self.steered().map_or(&[], |s| s.verdict.checks.as_slice())
    }

    pub fn decisive(&self) -> Option<&CheckResult> {
        self.steered().and_then(|s| s.verdict.decisive_check())
    }

    pub fn actions(&self) -> &[Action] {
        self.steered().map_or(&[], |s| s.plan.actions.as_slice())
    }

    pub fn attention(&self) -> &[Attention] {
        self.steered().map_or(&[], |s| s.plan.attention.as_slice())
    }

    /// `None` for an experiment that was not steered.
    pub fn write(&self) -> Option<&WriteOutcome> {
        self.steered().map(|s| &s.write)
    }

    /// The update reached AWS (even when its tags then failed).
    pub fn applied(&self) -> bool {
        matches!(
            self.write(),
            Some(WriteOutcome::Applied | WriteOutcome::TagWriteFailed { updated: true, .. })
        )
    }

    /// Everything that went wrong for this experiment, the entry's own
    /// error first: its describe or write, then the metrics, then the
    /// capture, then the events. One place orders them, so the `error`
    /// field, the summary, the exit code and the EMF `AwsErrors` agree.
    pub fn troubles(&self) -> Vec<Trouble<'_>> {
        let steered = match &self.disposition {
            Disposition::Failed(error) => return vec![Trouble::Entry(error)],
            Disposition::Skipped(_) | Disposition::Deferred(_) => return Vec::new(),
            Disposition::Steered(steered) => steered,
        };
        let mut troubles = Vec::new();
        if let Some(error) = steered.write.error() {
            troubles.push(Trouble::Write {
                tags: matches!(steered.write, WriteOutcome::TagWriteFailed { .. }),
                error,
            });
        }
        if let Some(failure) = &steered.metrics_error {
            troubles.push(Trouble::Metrics(failure.0.as_ref()));
        }
        if let Some(error) = steered.verdict.capture_error() {
            troubles.push(Trouble::Capture(error));
        }
        if let EventsOutcome::Failed(error) = &steered.events {
            troubles.push(Trouble::Events(error.as_ref()));
        }
        troubles
    }

    /// What went wrong for this experiment, if anything did.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.troubles().first().map(Trouble::kind)
    }

    /// Every kind of trouble this entry had, the one its `error` field
    /// names first: CloudWatch failing and the write then being rejected
    /// are both counted, and so is a failed publish behind either.
    pub fn error_kinds(&self) -> Vec<ErrorKind> {
        let mut kinds: Vec<ErrorKind> = Vec::new();
        for kind in self.troubles().iter().map(Trouble::kind) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }
}

/// One thing that went wrong for an entry, with the error behind it.
#[derive(Debug, Clone, Copy)]
pub enum Trouble<'a> {
    /// It could not be steered at all.
    Entry(&'a EntryError),
    /// The re-read, the update, or (`tags`) AddTags/DeleteTags failed.
    Write { tags: bool, error: &'a StoreError },
    /// CloudWatch failed: judged without measurements.
    Metrics(&'a MetricError),
    /// The data capture could not be read: the output checks stay
    /// inconclusive.
    Capture(&'a CompareError),
    /// The write landed, but its events were not published.
    Events(&'a EventError),
}

impl Trouble<'_> {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Entry(error) => error.kind(),
            // Access denied on a tag action is still a tag_write entry; the
            // message names the action, the ARN and the denial.
            Self::Write { tags: true, .. } => ErrorKind::TagWrite,
            Self::Write { error, .. } => ErrorKind::of_store_error(error),
            Self::Metrics(MetricError::AccessDenied { .. }) => ErrorKind::AccessDenied,
            Self::Metrics(_) => ErrorKind::Metrics,
            Self::Capture(error) => error.kind(),
            Self::Events(_) => ErrorKind::Events,
        }
    }

    /// The AWS call that failed, as EMF's `Operation` dimension names it.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Entry(EntryError::Store(error)) => {
                error.operation().unwrap_or("DescribeInferenceExperiment")
            }
            Self::Entry(_) => "shadowpilot",
            Self::Write { tags: true, error } => error.operation().unwrap_or("AddTags"),
            Self::Write { error, .. } => error.operation().unwrap_or("UpdateInferenceExperiment"),
            Self::Metrics(_) => "GetMetricData",
            Self::Capture(error) => error.operation(),
            Self::Events(_) => "PutEvents",
        }
    }
}

/// Verdicts counted, for the report's summary and the simulator's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub skipped: usize,
    pub error: usize,
    /// Not read in time (their writes deferred are counted in
    /// [`Summary::writes_deferred`]).
    pub deferred: usize,
}

impl VerdictCounts {
    pub fn add(&mut self, verdict: VerdictKind) {
        match verdict {
            VerdictKind::Pass => self.pass += 1,
            VerdictKind::Fail => self.fail += 1,
            VerdictKind::Inconclusive => self.inconclusive += 1,
            VerdictKind::Skipped => self.skipped += 1,
            VerdictKind::Error => self.error += 1,
            VerdictKind::Deferred => self.deferred += 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub experiments: usize,
    #[serde(flatten)]
    pub verdicts: VerdictCounts,
    pub actions_planned: usize,
    pub updates_applied: usize,
    /// Judged, but the write was not started before the deadline.
    pub writes_deferred: usize,
    /// SageMaker refused the write (ValidationException).
    pub writes_rejected: usize,
    /// Entries by each kind of error they had (`metrics`, `rejected`,
    /// `access_denied`, ...), whatever their verdict: an entry whose
    /// metrics failed and whose write was then rejected counts in both.
    pub errors: std::collections::BTreeMap<&'static str, usize>,
    pub ready_to_promote: usize,
    pub failing: usize,
    pub failing_at_floor: usize,
    pub cannot_extend: usize,
    pub undecidable: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub next_tick: DateTime<Utc>,
    pub experiments: Vec<ExperimentReport>,
    pub summary: Summary,
}

/// How a run that produced a report ends, for a shell or a scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunVerdict {
    /// Nothing went wrong.
    Clean,
    /// The only trouble: writes SageMaker rejected, or writes and reads
    /// deferred to the next tick.
    WritesHeldBack,
    /// Some entry has an error of another kind (AWS unreachable or
    /// denying, metrics unavailable, a bad selection, ...).
    Errors,
}

impl RunVerdict {
    /// The CLI's exit code: 0, 3, 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::WritesHeldBack => 3,
            Self::Errors => 2,
        }
    }
}

impl Report {
    pub fn run_verdict(&self) -> RunVerdict {
        let summary = &self.summary;
        let rejected = summary.errors.get("rejected").copied().unwrap_or(0);
        let other_errors = summary.errors.values().sum::<usize>() - rejected;
        if other_errors > 0 {
            RunVerdict::Errors
        } else if rejected + summary.writes_deferred + summary.verdicts.deferred > 0 {
            RunVerdict::WritesHeldBack
        } else {
            RunVerdict::Clean
        }
    }

    pub fn new(
        dry_run: bool,
        started_at: DateTime<Utc>,
        next_tick: DateTime<Utc>,
        experiments: Vec<ExperimentReport>,
    ) -> Self {
        let mut summary = Summary {
            experiments: experiments.len(),
            ..Summary::default()
        };
        for entry in &experiments {
            summary.verdicts.add(entry.verdict());
            summary.actions_planned += entry.actions().len();
            summary.updates_applied += usize::from(entry.applied());
            summary.writes_deferred +=
                usize::from(matches!(entry.write(), Some(WriteOutcome::Deferred(_))));
            summary.writes_rejected +=
                usize::from(matches!(entry.write(), Some(WriteOutcome::Rejected(_))));
            for kind in entry.error_kinds() {
                *summary.errors.entry(kind.as_str()).or_default() += 1;
            }
            for attention in entry.attention() {
                match attention {
                    Attention::ReadyToPromote => summary.ready_to_promote += 1,
                    Attention::Failing => summary.failing += 1,
                    Attention::FailingAtFloor => summary.failing_at_floor += 1,
                    Attention::CannotExtend => summary.cannot_extend += 1,
                    Attention::Undecidable => summary.undecidable += 1,
                }
            }
        }
        Self {
            dry_run,
            started_at,
            next_tick,
            experiments,
            summary,
        }
    }
}
