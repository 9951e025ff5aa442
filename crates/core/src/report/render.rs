//! Every word shadowpilot says about a decision comes from here: check
//! messages, action reasons, notes, skip and error reasons, the JSON shape
//! of an entry, the operator's table and the per-decision log line.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::{
    Disposition, EntryError, ExperimentReport, Report, SkipReason, Staleness, Steered, Summary,
    WriteOutcome,
};
use crate::duration::format as show_duration;
use crate::evidence::Form;
use crate::experiment::{FAILED_TAG, HOLD_TAG, POLICY_TAG};
use crate::judge::{Amount, CheckId, CheckResult, Outcome, Reason, Sequence};
use crate::policy::CheckMetric;
use crate::stats::TimeToDecision;
use crate::plan::{Action, Attention, Extension, NeedsTime, Note, SamplingChange, WriteBlock};
use crate::policy::Unit;
use crate::ports::MetricFailure;

/// `412 ms`, `1.25 %`, `500 invocations`, `+0.12 pts`, `1.08`.
pub fn show(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Percent => format!("{value:.2} %"),
        Unit::Milliseconds if value.abs() >= 100.0 => format!("{value:.0} ms"),
        Unit::Milliseconds => format!("{value:.1} ms"),
        Unit::Invocations => format!("{value:.0} invocations"),
        Unit::Points => format!("{value:+.2} pts"),
        Unit::Ratio => format!("{value:.2}"),
    }
}

/// A number of the check's unit without the unit (the interval's parts).
fn bare(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Points => format!("{value:+.2}"),
        Unit::Milliseconds if value.abs() >= 100.0 => format!("{value:.0}"),
        Unit::Milliseconds => format!("{value:.1}"),
        Unit::Invocations => format!("{value:.0}"),
        Unit::Percent | Unit::Ratio => format!("{value:.2}"),
    }
}

fn utc_minute(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `~40 min`, `~3 h 20 min`, `~2.5 d`.
fn show_minutes(minutes: f64) -> String {
    if minutes < 1.0 {
        "<1 min".into()
    } else if minutes < 60.0 {
        format!("~{minutes:.0} min")
    } else if minutes < 48.0 * 60.0 {
        let whole = minutes.round() as u64;
        format!("~{} h {} min", whole / 60, whole % 60)
    } else {
        format!("~{:.1} d", minutes / 1440.0)
    }
}

/// The check's subject: `p99 ratio`, `5xx`, `p99 vs production +20 ms`.
fn subject(check: &CheckResult) -> String {
    let CheckId::Metric(metric) = check.id else {
        return String::new();
    };
    let short = match metric {
        CheckMetric::ErrorRate5xx => "5xx",
        CheckMetric::ErrorRate4xx => "4xx",
        CheckMetric::ModelErrorRate => "model errors",
        other => other.label(),
    };
    match check.form {
        Form::ErrorAbove { .. } => short.to_string(),
        Form::ErrorMax { .. } => format!("{short} rate"),
        Form::LatencyRatio { .. } => format!("{short} ratio"),
        Form::LatencyMax { .. } => short.to_string(),
        Form::LatencyAbove { ms } => format!("{short} vs production +{} ratio", bare(Unit::Milliseconds, ms)),
    }
}

fn time_text(time: Option<TimeToDecision>, sampling: u8) -> Option<String> {
    match time? {
        TimeToDecision::Undecidable => Some("undecidable: within ±h of the margin".into()),
        TimeToDecision::Needs { minutes, .. } if minutes.is_finite() => {
            Some(format!("{} more at {sampling} %", show_minutes(minutes)))
        }
        TimeToDecision::Needs { .. } => Some(format!("no traffic to decide at {sampling} %")),
    }
}

fn sequence_text(sequence: Sequence) -> Option<String> {
    match sequence {
        Sequence::Step => None,
        Sequence::Whole => Some("whole experiment".into()),
        Sequence::Epoch(j) => Some(format!("epoch {j} of the step")),
    }
}

/// `p99 ratio 1.08 [0.97, 1.19] ≤ 1.20 (pass)`,
/// `5xx +0.12 [-0.05, 0.31] pts vs +0.50 (inconclusive, ~40 min more at 10 %)`.
impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(Reason::NoMeasurements { error }) = &self.reason {
            return write!(f, "no measurements: {}", metrics_failure_text(error));
        }
        let unit = self.unit;
        let subject = subject(self);
        let relation = match self.outcome {
            Outcome::Pass => "≤",
            Outcome::Fail => ">",
            Outcome::Inconclusive => "vs",
        };
        match (self.value, self.lower, self.upper) {
            (Some(value), Some(lower), Some(upper)) => {
                let unit_text = match unit {
                    Unit::Points => " pts",
                    Unit::Percent => " %",
                    Unit::Milliseconds => " ms",
                    _ => "",
                };
                write!(
                    f,
                    "{subject} {} [{}, {}]{unit_text} {relation} {}",
                    bare(unit, value),
                    bare(unit, lower),
                    bare(unit, upper),
                    bare(unit, self.limit)
                )?;
            }
            _ => {
                let why = match &self.reason {
                    Some(Reason::TooLittleTraffic {
                        shadow_per_minute,
                        needed_per_minute,
                    }) => format!(
                        "too little traffic at this sampling: {shadow_per_minute:.1} shadow requests/min, an hour-long period needs {needed_per_minute:.1}/min"
                    ),
                    Some(Reason::PeriodPending) => {
                        "no production traffic before the step to choose a period from yet".into()
                    }
                    _ => "no usable period since the step began".into(),
                };
                write!(f, "{subject} {relation} {}: {why}", bare(unit, self.limit))?;
            }
        }
        let mut parts = vec![self.outcome.as_str().to_string()];
        if let Some(sequence) = sequence_text(self.sequence) {
            parts.push(sequence);
        }
        if self.reason == Some(Reason::Insufficient) {
            match self.amount {
                Amount::Requests { shadow, .. } if shadow < 1000.0 => {
                    parts.push(format!("{shadow:.0} of 1000 shadow requests"))
                }
                Amount::Requests { errors, .. } => {
                    parts.push(format!("{errors:.0} shadow errors, 5 needed to fail"))
                }
                Amount::Periods {
                    eligible,
                    period_secs,
                } => parts.push(format!(
                    "{eligible} of 10 periods of {}",
                    show_duration(std::time::Duration::from_secs(
                        u64::try_from(period_secs).unwrap_or(0)
                    ))
                )),
                Amount::Nothing => {}
            }
        }
        if let Some(time) = time_text(self.time_to_decision, self.sampling) {
            parts.push(time);
        }
        write!(f, " ({})", parts.join(", "))
    }
}

impl Serialize for CheckResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("CheckResult", 11)?;
        out.serialize_field("metric", self.id.as_str())?;
        out.serialize_field("value", &self.value)?;
        out.serialize_field("limit", &self.limit)?;
        out.serialize_field("lower", &self.lower)?;
        out.serialize_field("upper", &self.upper)?;
        out.serialize_field("unit", &self.unit)?;
        out.serialize_field("outcome", self.outcome.as_str())?;
        out.serialize_field(
            "sequence",
            &match self.sequence {
                Sequence::Step => "step".to_string(),
                Sequence::Whole => "whole".to_string(),
                Sequence::Epoch(j) => format!("epoch_{j}"),
            },
        )?;
        out.serialize_field("time_to_decision", &TimeView(self.time_to_decision))?;
        out.serialize_field("time_at_ceiling", &TimeView(self.at_ceiling))?;
        out.serialize_field("message", &self.to_string())?;
        out.end()
    }
}

/// Minutes, `"undecidable"`, or null when decided (or no traffic: never).
struct TimeView(Option<TimeToDecision>);

impl Serialize for TimeView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(TimeToDecision::Undecidable) => serializer.serialize_str("undecidable"),
            Some(TimeToDecision::Needs { minutes, .. }) if minutes.is_finite() => {
                serializer.serialize_f64((minutes * 10.0).round() / 10.0)
            }
            Some(TimeToDecision::Needs { .. }) => serializer.serialize_str("never"),
            None => serializer.serialize_none(),
        }
    }
}

/// Why an action is taken, in words.
fn action_reason(action: &Action) -> String {
    match action {
        Action::SetSampling { from, to, why } => match why {
            SamplingChange::Failing => {
                format!("failing: latched, down from {from} % to {to} %")
            }
            SamplingChange::Latched => format!("latched by an earlier failure: down from {from} % to {to} %"),
            SamplingChange::AboveMaximum { ceiling } => {
                format!("{from} % is above the policy maximum {ceiling} %")
            }
            SamplingChange::Passing { dwelt, dwell } => format!(
                "passing after {} at {from} % (dwell {}): up to {to} %",
                show_duration(*dwelt),
                show_duration(*dwell)
            ),
            SamplingChange::ForEvidence { minutes, dwell } => format!(
                "inconclusive for lack of evidence, every estimate on the passing side, {} more needed at {from} % (dwell {}): up to {to} % for evidence",
                show_minutes(*minutes),
                show_duration(*dwell)
            ),
        },
        Action::ExtendEndTime {
            from,
            to,
            why:
                Extension {
                    because,
                    margin,
                    needs_minutes,
                    capped_at,
                },
        } => format!(
            "{} and ends {}, before the next chance to write + margin {}: extended by {}{}{}",
            match because {
                NeedsTime::StillClimbing => "passing below the top step",
                NeedsTime::Inconclusive => "inconclusive",
            },
            utc_minute(*from),
            show_duration(*margin),
            show_duration((*to - *from).to_std().unwrap_or_default()),
            needs_minutes.map_or(" (the evidence cannot say how long it needs)".to_string(), |m| format!(
                " (the evidence needs {})",
                show_minutes(m)
            )),
            capped_at.map_or(String::new(), |cap| format!(
                ", capped at StartTime + {}",
                show_duration(cap)
            )),
        ),
    }
}

/// `sampling 5 → 10 %`, `end 03-09 00:00 → 03-11 00:00`.
pub fn action_summary(action: &Action) -> String {
    match action {
        Action::SetSampling { from, to, .. } => format!("sampling {from} → {to} %"),
        Action::ExtendEndTime { from, to, .. } => format!(
            "end {} → {}",
            from.format("%m-%d %H:%M"),
            to.format("%m-%d %H:%M")
        ),
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(4))?;
        match self {
            Action::SetSampling { from, to, .. } => {
                out.serialize_entry("kind", "set_sampling")?;
                out.serialize_entry("from", from)?;
                out.serialize_entry("to", to)?;
            }
            Action::ExtendEndTime { from, to, .. } => {
                out.serialize_entry("kind", "extend_end_time")?;
                out.serialize_entry("from", from)?;
                out.serialize_entry("to", to)?;
            }
        }
        out.serialize_entry("reason", &action_reason(self))?;
        out.end()
    }
}

fn note_text(note: &Note) -> String {
    match note {
        Note::FailingAtFloor { floor } => {
            format!("failing at the floor {floor} %: cannot go lower")
        }
        Note::ReadyToPromote { ceiling } => {
            format!("passing at the top step {ceiling} %: ready to promote")
        }
        Note::Latched { mark } => format!(
            "latched: {FAILED_TAG}={mark}; never ramped or extended until re-armed (shadowpilot rearm)"
        ),
        Note::Rearmed { mark } => format!(
            "re-armed: the latch {mark} is older than the policy's rearm_after; the whole-experiment evidence restarts now"
        ),
        Note::Dwelling { dwelt, dwell, at } => format!(
            "dwelling: {} of {} at {at} %",
            show_duration(*dwelt),
            show_duration(*dwell)
        ),
        Note::Holding { at } => format!("inconclusive: holding at {at} %"),
        Note::Undecidable { minutes, left } => {
            if minutes.is_finite() {
                format!(
                    "undecidable: even at the top step the evidence needs {}, but only {} are left before the cap; not extended",
                    show_minutes(*minutes),
                    show_duration(*left)
                )
            } else {
                "undecidable: the estimate sits within ±h of the margin; not extended".into()
            }
        }
        Note::ChangedElsewhere { tagged, now } => format!(
            "sampling changed outside shadowpilot ({tagged} % → {now} %): the step starts at LastModifiedTime"
        ),
        Note::NoStartTime => "cannot extend: the experiment reports no StartTime".into(),
        Note::AtCap { end, max_duration } => format!(
            "cannot extend: EndTime {} is already at the cap StartTime + {}",
            utc_minute(*end),
            show_duration(*max_duration)
        ),
    }
}

fn write_block_text(block: &WriteBlock) -> String {
    match block {
        WriteBlock::Held => format!("held by tag {HOLD_TAG}=true"),
        WriteBlock::OutsideChangeWindows { policy, windows } => format!(
            "outside the change windows of policy {policy} ({})",
            windows
                .iter()
                .map(|(cron, open_for)| format!("{cron} for {}", show_duration(*open_for)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn staleness_text(staleness: &Staleness) -> String {
    match staleness {
        Staleness::Status(status) => format!("status is now {status}"),
        Staleness::Sampling { from, to } => format!("sampling changed {from} → {to} %"),
        Staleness::EndTime => "EndTime changed".into(),
        Staleness::LastModifiedTime => "LastModifiedTime changed".into(),
        Staleness::Held => format!("it was held ({HOLD_TAG}=true)"),
        Staleness::PolicyTag => format!("its {POLICY_TAG} tag changed"),
    }
}

fn skip_text(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Inactive(status) => format!("status {status}: nothing to steer"),
        SkipReason::NotSelected => "no policy selects it".into(),
        SkipReason::Created { start: Some(start) } => format!(
            "Created, starts {}: no traffic to judge yet",
            start.format("%Y-%m-%d %H:%M UTC")
        ),
        SkipReason::Created { start: None } => "Created: no traffic to judge yet".into(),
        SkipReason::NotJudged(status) => format!("status {status}: not judged this tick"),
    }
}

/// The error's message, and the reason an entry gives for it.
fn entry_error_text(name: &str, error: &EntryError) -> (String, String) {
    match error {
        EntryError::NotListed => (
            format!("inference experiment {name} was not found"),
            "no inference experiment of this name was listed".into(),
        ),
        EntryError::NotSelected => {
            let text = format!(
                "no policy selects it: tag it {POLICY_TAG}=<policy> or match a policy's globs"
            );
            (text.clone(), text)
        }
        EntryError::AmbiguousPolicy { policies } => {
            let text = format!(
                "selected by {} policies ({}): never written until exactly one selects it",
                policies.len(),
                policies.join(", ")
            );
            (text.clone(), text)
        }
        EntryError::UnknownPolicy { name } => {
            let text = format!("tag {POLICY_TAG}={name} names no loaded policy");
            (text.clone(), text)
        }
        EntryError::Store(error) => {
            let text = error_chain(error.as_ref());
            (text.clone(), text)
        }
    }
}

/// What the plan did and did not do, and what happened to its write.
fn steered_reason(steered: &Steered) -> String {
    let mut reasons: Vec<String> = steered.plan.actions.iter().map(action_reason).collect();
    reasons.extend(steered.plan.notes.iter().map(note_text));
    if let WriteOutcome::Blocked(block) = &steered.write {
        reasons.push(format!("not written: {}", write_block_text(block)));
    }
    let reason = reasons.join("; ");
    match &steered.write {
        WriteOutcome::DryRun => format!("dry run, not written: {reason}"),
        WriteOutcome::TagWriteFailed { arn, updated, error } => format!(
            "{}tags not written on {arn}: {} ({reason})",
            if *updated { "update applied, " } else { "" },
            error_chain(error.as_ref())
        ),
        WriteOutcome::ChangedSinceRead(staleness) => format!(
            "not written: {} since it was read; the next tick plans again ({reason})",
            staleness_text(staleness)
        ),
        outcome => match outcome.error() {
            Some(error) => format!("not written: {}", error_chain(error)),
            None => reason,
        },
    }
}

impl ExperimentReport {
    /// The entry's reason in words.
    pub fn reason(&self) -> String {
        match &self.disposition {
            Disposition::Steered(steered) => steered_reason(steered),
            Disposition::Skipped(reason) => skip_text(reason),
            Disposition::Failed(error) => entry_error_text(&self.name, error).1,
        }
    }

    /// The error's kind and message, as the report's `error` field shows it.
    fn error_text(&self) -> Option<(&'static str, String)> {
        let kind = self.error_kind()?.as_str();
        let message = match &self.disposition {
            Disposition::Failed(error) => entry_error_text(&self.name, error).0,
            Disposition::Skipped(_) => return None,
            Disposition::Steered(steered) => match steered.write.error() {
                Some(error) => error_chain(error),
                None => metrics_failure_text(steered.metrics_error.as_ref()?),
            },
        };
        Some((kind, message))
    }

    fn status_text(&self) -> &str {
        self.status.as_ref().map_or("unknown", |s| s.as_str())
    }

    /// One structured log line per decision.
    pub fn log(&self, dry_run: bool) {
        let actions = serde_json::to_string(self.actions()).unwrap_or_default();
        let decisive = self.decisive().map(CheckResult::to_string);
        tracing::info!(
            experiment = %self.name,
            status = %self.status_text(),
            policy = self.policy.as_deref().unwrap_or("-"),
            verdict = self.verdict().as_str(),
            decisive = decisive.as_deref().unwrap_or("-"),
            outcome = self.write().map_or("none", WriteOutcome::as_str),
            actions = %actions,
            applied = self.applied(),
            dry_run,
            error = self.error_kind().map_or("-", |kind| kind.as_str()),
            reason = %self.reason(),
            "decision"
        );
    }
}

impl Serialize for ExperimentReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ErrorView<'a> {
            kind: &'a str,
            message: String,
        }
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("name", &self.name)?;
        out.serialize_entry("status", self.status_text())?;
        out.serialize_entry("policy", &self.policy)?;
        out.serialize_entry("endpoint", &self.endpoint)?;
        out.serialize_entry("sampling_percentage", &self.sampling_percentage)?;
        out.serialize_entry("end_time", &self.end_time)?;
        out.serialize_entry("verdict", &self.verdict())?;
        out.serialize_entry("evidence", &self.timeline.as_ref().map(TimelineView))?;
        out.serialize_entry("checks", self.checks())?;
        out.serialize_entry("decisive", &self.decisive().map(CheckResult::to_string))?;
        out.serialize_entry("decisive_check", &self.decisive().map(|c| c.id.as_str()))?;
        out.serialize_entry("actions", self.actions())?;
        out.serialize_entry("applied", &self.applied())?;
        out.serialize_entry("outcome", self.write().map_or("none", WriteOutcome::as_str))?;
        out.serialize_entry("reason", &self.reason())?;
        out.serialize_entry("attention", self.attention())?;
        out.serialize_entry("held", &self.held)?;
        if let Some((kind, message)) = self.error_text() {
            out.serialize_entry("error", &ErrorView { kind, message })?;
        }
        out.end()
    }
}

/// The evidence range of an entry: where each sequence starts.
struct TimelineView<'a>(&'a crate::evidence::Timeline);

impl Serialize for TimelineView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let timeline = self.0;
        let mut out = serializer.serialize_map(Some(4))?;
        out.serialize_entry("whole_start", &timeline.whole_start)?;
        out.serialize_entry("step_start", &timeline.step_start)?;
        out.serialize_entry("step_origin", &timeline.step_origin)?;
        out.serialize_entry("end", &timeline.end)?;
        out.end()
    }
}

/// `CloudWatch: ` and the failure with its causes.
fn metrics_failure_text(failure: &MetricFailure) -> String {
    format!("CloudWatch: {}", error_chain(failure.0.as_ref()))
}

/// The error and its causes on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn attention_text(attention: Attention) -> &'static str {
    match attention {
        Attention::ReadyToPromote => "READY TO PROMOTE",
        Attention::Failing => "FAILING",
        Attention::FailingAtFloor => "FAILING AT FLOOR",
        Attention::CannotExtend => "CANNOT EXTEND",
        Attention::Undecidable => "UNDECIDABLE",
    }
}

/// Columns padded to the widest cell, two spaces apart, no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn action_cell(entry: &ExperimentReport) -> String {
    let mut parts: Vec<String> = entry.actions().iter().map(action_summary).collect();
    parts.extend(
        entry
            .attention()
            .iter()
            .map(|a| attention_text(*a).to_string()),
    );
    if parts.is_empty() {
        return "-".into();
    }
    let mut cell = parts.join("; ");
    if !entry.actions().is_empty() {
        cell.push_str(match entry.write() {
            Some(WriteOutcome::Applied) => " (applied)",
            Some(WriteOutcome::DryRun) => " (dry run)",
            _ => " (not applied)",
        });
    }
    cell
}

fn summary_line(dry_run: bool, s: &Summary) -> String {
    let attention: Vec<String> = [
        (s.ready_to_promote, "ready to promote"),
        (s.failing, "failing"),
        (s.failing_at_floor, "failing at floor"),
        (s.cannot_extend, "cannot extend"),
        (s.undecidable, "undecidable"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, label)| format!("{n} {label}"))
    .collect();
    let v = &s.verdicts;
    format!(
        "{}{} experiments: {} pass, {} fail, {} inconclusive, {} skipped, {} error; {} actions planned, {} updates applied{}",
        if dry_run { "DRY RUN (nothing written) — " } else { "" },
        s.experiments, v.pass, v.fail, v.inconclusive, v.skipped, v.error,
        s.actions_planned, s.updates_applied,
        if attention.is_empty() { String::new() } else { format!("; {}", attention.join(", ")) }
    )
}

impl Report {
    /// One row per experiment, for a person at a terminal.
    pub fn table(&self) -> String {
        let header = [
            "EXPERIMENT",
            "STATUS",
            "SAMPLING",
            "ENDS",
            "VERDICT",
            "DECISIVE CHECK",
            "ACTION",
        ];
        let rows: Vec<Vec<String>> = self
            .experiments
            .iter()
            .map(|entry| {
                vec![
                    entry.name.clone(),
                    entry.status_text().to_string(),
                    entry
                        .sampling_percentage
                        .map_or("-".into(), |p| format!("{p} %")),
                    entry
                        .end_time
                        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                    entry.verdict().as_str().to_string(),
                    entry
                        .decisive()
                        .map_or_else(|| entry.reason(), CheckResult::to_string),
                    action_cell(entry),
                ]
            })
            .collect();
        let mut out = table(&header, &rows);
        out.push('\n');
        out.push_str(&summary_line(self.dry_run, &self.summary));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::experiment::ExperimentStatus;
    use crate::judge::CheckId;
    use crate::metrics::VariantRole;
    use crate::policy::CheckMetric;
    use crate::ports::MetricError;

    fn check(id: CheckId, unit: Unit, outcome: Outcome, finding: Finding) -> CheckResult {
        CheckResult {
            id,
            value: None,
            limit: None,
            unit,
            outcome,
            finding,
        }
    }

    /// Every finding, reason and note as an operator reads it: the one
    /// table of wording, so a change of words is a change of this test.
    #[test]
    fn every_decision_reads_as_documented() {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 15).unwrap();
        let p99 = CheckId::Metric(CheckMetric::LatencyP99);
        let e5xx = CheckId::Metric(CheckMetric::ErrorRate5xx);
        let ms = Unit::Milliseconds;
        let pct = Unit::Percent;
        let inv = Unit::Invocations;
        let checks = [
            (check(CheckId::Window, inv, Outcome::Inconclusive, Finding::NoWindow { last_modified: at, window_end: at }),
             "no complete minute of evidence since the last change at 2026-11-02 10:30:15 UTC (window would end at 10:30 UTC)"),
            (check(CheckId::Window, inv, Outcome::Inconclusive, Finding::NoMeasurements { error: MetricFailure(std::sync::Arc::new(MetricError::Misaligned { asked: 4, answered: 3 })) }),
             "no measurements: CloudWatch: the metric source answered 3 series for 4 queries"),
            (check(CheckId::ShadowInvocations, inv, Outcome::Pass, Finding::Evidence { invocations: Some(500.0), minimum: 200.0 }),
             "shadow invocations 500 ≥ minimum 200"),
            (check(CheckId::ShadowInvocations, inv, Outcome::Inconclusive, Finding::Evidence { invocations: None, minimum: 200.0 }),
             "shadow invocations 0 < minimum 200 (no datapoints)"),
            (check(p99, ms, Outcome::Inconclusive, Finding::NoDatapoints { role: VariantRole::Production }),
             "production p99: no datapoints in the window"),
            (check(e5xx, pct, Outcome::Inconclusive, Finding::NoInvocations { role: VariantRole::Shadow }),
             "shadow 5xx rate: no invocations in the window"),
            (check(p99, ms, Outcome::Inconclusive, Finding::ProductionTooThin { invocations: 20.0, minimum: 100.0 }),
             "production invocations 20 < minimum 100 for a check relative to production"),
            (check(p99, ms, Outcome::Fail, Finding::Compared { shadow: 412.0, against: Against::Ratio { ratio: 1.2, production: 298.0 }, limit: 357.6 }),
             "shadow p99 412 ms > 1.20 × production 298 ms (limit 358 ms)"),
            (check(p99, ms, Outcome::Pass, Finding::Compared { shadow: 41.25, against: Against::Absolute, limit: 800.0 }),
             "shadow p99 41.2 ms ≤ 800 ms"),
            (check(e5xx, pct, Outcome::Fail, Finding::Compared { shadow: 0.9, against: Against::Above { above: 0.5, production: 0.1 }, limit: 0.6 }),
             "shadow 5xx rate 0.90 % > production 0.10 % + 0.50 points (limit 0.60 %)"),
            (check(e5xx, pct, Outcome::Inconclusive, Finding::TooFewErrorsToTell { shadow: 1.2, against: Against::Absolute, limit: 1.0, errors: 6.0, invocations: 500.0, lower_bound: 0.62 }),
             "shadow 5xx rate 1.20 % > 1.00 %, but 6 errors in 500 invocations are too few to tell (95 % lower bound 0.62 %)"),
        ];
        for (result, words) in &checks {
            assert_eq!(result.to_string(), *words);
        }

        let end = Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap();
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let actions = [
            (Action::SetSampling { from: 25, to: 10, why: SamplingChange::Failing }, "failing: down from 25 % to 10 %"),
            (Action::SetSampling { from: 60, to: 50, why: SamplingChange::AboveMaximum { ceiling: 50 } }, "60 % is above the policy maximum 50 %"),
            (Action::SetSampling { from: 5, to: 10, why: SamplingChange::Passing { baked: hours(3), bake_time: hours(2) } }, "passing for 3h at 5 % (bake 2h): up to 10 %"),
            (Action::ExtendEndTime { from: end, to: end + chrono::Duration::days(1), why: Extension { because: NeedsTime::Inconclusive, margin: hours(6), capped_at: Some(hours(720)) } },
             "inconclusive and ends 2026-11-09 00:00 UTC, before the next chance to write + margin 6h: extended by 1d, capped at StartTime + 30d"),
        ];
        for (action, words) in &actions {
            assert_eq!(action_reason(action), *words);
        }
        assert_eq!(
            action_summary(&actions[3].0),
            "end 11-09 00:00 → 11-10 00:00"
        );

        let notes = [
            (
                Note::FailingAtFloor { floor: 1 },
                "failing at the floor 1 %: cannot go lower",
            ),
            (
                Note::ReadyToPromote { ceiling: 100 },
                "passing at the top step 100 %: ready to promote",
            ),
            (
                Note::Baking {
                    baked: hours(1),
                    bake_time: hours(2),
                    at: 5,
                },
                "baking: 1h of 2h at 5 %",
            ),
            (Note::Holding { at: 5 }, "inconclusive: holding at 5 %"),
            (
                Note::NoStartTime,
                "cannot extend: the experiment reports no StartTime",
            ),
            (
                Note::AtCap {
                    end,
                    max_duration: hours(720),
                },
                "cannot extend: EndTime 2026-11-09 00:00 UTC is already at the cap StartTime + 30d",
            ),
        ];
        for (note, words) in &notes {
            assert_eq!(note_text(note), *words);
        }
        assert_eq!(
            write_block_text(&WriteBlock::OutsideChangeWindows {
                policy: "office".into(),
                windows: vec![("cron(0 8 ? * MON-FRI *)".into(), hours(9))],
            }),
            "outside the change windows of policy office (cron(0 8 ? * MON-FRI *) for 9h)"
        );
        assert_eq!(
            skip_text(&SkipReason::Inactive(ExperimentStatus::Completed)),
            "status Completed: nothing to steer"
        );
        assert_eq!(
            staleness_text(&Staleness::Sampling { from: 5, to: 50 }),
            "sampling changed 5 → 50 %"
        );
    }
}
