//! Every word shadowpilot says about a decision comes from here: check
//! messages, action reasons, notes, skip and error reasons, the JSON shape
//! of an entry, the operator's table and the per-decision log line.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::{
    Deferral, Disposition, EntryError, ErrorKind, EventsOutcome, ExperimentReport, Report,
    SkipReason, Staleness, Steered, Summary, Trouble, WriteOutcome,
};
use crate::duration::format as show_duration;
use crate::evidence::Form;
use crate::experiment::{FAILED_TAG, HOLD_TAG, POLICY_TAG};
use crate::judge::{Amount, Blocker, CheckId, CheckResult, Outcome, Reason, Sequence};
use crate::plan::{
    Action, Attention, Conclusion, Extension, NeedsTime, Note, SamplingChange, WriteBlock,
};
use crate::policy::CheckMetric;
use crate::policy::Unit;
use crate::ports::MetricError;
use crate::stats::TimeToDecision;

/// `412 ms`, `1.25 %`, `500 invocations`, `+0.12 pts`, `1.08`.
pub fn show(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Percent => format!("{value:.2} %"),
        Unit::Milliseconds if value.abs() >= 100.0 => format!("{value:.0} ms"),
        Unit::Milliseconds => format!("{value:.1} ms"),
        Unit::Invocations => format!("{value:.0} invocations"),
        Unit::Points => format!("{value:+.2} pts"),
        Unit::Ratio => format!("{value:.2}"),
        Unit::Output => format!("{value:.4}"),
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
        Unit::Output => format!("{value:.4}"),
    }
}

fn utc_minute(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `~40 min`, `~3 h 20 min`, `~2.5 d`.
fn show_minutes(minutes: f64) -> String {
    if !minutes.is_finite() {
        "an unknown time (no period qualifies yet)".into()
    } else if minutes < 1.0 {
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
        Form::LatencyAbove { ms } => format!(
            "{short} vs production +{} ratio",
            show(Unit::Milliseconds, ms)
        ),
        Form::OutputAgreement { .. } | Form::OutputMeanAbsDiff { .. } => short.to_string(),
    }
}

fn time_text(time: Option<TimeToDecision>, sampling: u8, form: Form) -> Option<String> {
    match time? {
        // Without one pair there is no rate of pairs to size the wait from.
        TimeToDecision::Needs { minutes, .. } if !minutes.is_finite() && form.is_output() => Some(
            format!("no pairs yet at {sampling} % to size the wait from"),
        ),
        TimeToDecision::Undecidable => Some("undecidable: within ±h of the margin".into()),
        TimeToDecision::Needs { minutes, .. } if minutes.is_finite() => {
            Some(format!("{} more at {sampling} %", show_minutes(minutes)))
        }
        TimeToDecision::Needs { .. } => Some(format!(
            "too little traffic per period to decide at {sampling} %"
        )),
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
            return write!(f, "no measurements: {}", metrics_failure_text(&error.0));
        }
        let unit = self.unit;
        let subject = subject(self);
        let at_least = matches!(self.form, Form::OutputAgreement { .. });
        let relation = match (self.outcome, at_least) {
            (Outcome::Pass, false) => "≤",
            (Outcome::Fail, false) => ">",
            (Outcome::Pass, true) => "≥",
            (Outcome::Fail, true) => "<",
            (Outcome::Inconclusive, _) => "vs",
        };
        match (self.value, self.lower, self.upper) {
            (Some(value), Some(lower), Some(upper)) => {
                let unit_text = match unit {
                    Unit::Points => " pts",
                    Unit::Percent => " %",
                    Unit::Milliseconds => " ms",
                    _ => "",
                };
                // The estimate and the margin of a difference carry their
                // sign; the bounds read as plain numbers, as people write
                // intervals: `+0.12 [-0.05, 0.31] pts vs +0.50`.
                let bound = |v: f64| match unit {
                    Unit::Points => format!("{v:.2}"),
                    _ => bare(unit, v),
                };
                write!(
                    f,
                    "{subject} {} [{}, {}]{unit_text} {relation} {}",
                    bare(unit, value),
                    bound(lower),
                    bound(upper),
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
                    Some(reason) if reason.blocker().is_some() => {
                        reason.blocker().map(blocker_text).unwrap_or_default()
                    }
                    Some(Reason::CaptureUnread { error }) => {
                        format!("the capture was not read: {}", error_chain(&*error.0))
                    }
                    Some(Reason::TooFewPaired { rate, min, .. }) => format!(
                        "{:.1} % of the shadow's records paired with production's, {:.0} % needed (callers must send InferenceId)",
                        rate * 100.0,
                        min * 100.0
                    ),
                    _ if self.form.is_output() => "no pairs since the step began".into(),
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
                Amount::Pairs { compared, .. } if compared < 1000 => {
                    parts.push(format!("{compared} of 1000 pairs"))
                }
                Amount::Pairs { events, .. } => {
                    parts.push(format!("{events:.0} disagreements, 5 needed to fail"))
                }
                Amount::Nothing => {}
            }
        }
        if let Amount::Pairs {
            compared,
            capped: true,
            ..
        } = self.amount
        {
            parts.push(format!(
                "capture reading stopped early at {compared} pairs (outputs.max_records, max_bytes or the tick's time)"
            ));
        }
        if let Some(time) = time_text(self.time_to_decision, self.sampling, self.form) {
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
                // To a tenth, unless rounding would overflow: a finite time is
                // never written as null (decided).
                let rounded = (minutes * 10.0).round() / 10.0;
                serializer.serialize_f64(if rounded.is_finite() {
                    rounded
                } else {
                    minutes
                })
            }
            Some(TimeToDecision::Needs { .. }) => serializer.serialize_str("never"),
            None => serializer.serialize_none(),
        }
    }
}

/// Why an action is taken, in words.
pub(crate) fn action_reason(action: &Action) -> String {
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
                NeedsTime::StillClimbing => "passing below the top step".to_string(),
                NeedsTime::Inconclusive => "inconclusive".to_string(),
                NeedsTime::AwaitingPromotion { due } =>
                    format!("passing at 100 %, to be promoted at {}", utc_minute(*due)),
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
        Action::Stop {
            conclusion,
            variant_actions,
            desired_state,
        } => {
            let variants = variant_actions
                .iter()
                .map(|(variant, action)| format!("{} {variant}", action.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let why = match conclusion {
                Conclusion::Promote {
                    passed_for,
                    after,
                    ends: None,
                } => format!(
                    "passing at 100 % for {} (promote after {})",
                    show_duration(whole_minutes(*passed_for)),
                    show_duration(*after)
                ),
                Conclusion::Promote {
                    passed_for,
                    after,
                    ends: Some(end),
                } => format!(
                    "passing at 100 % for {} of {}, and the experiment ends {} before the next chance to write (at_cap: promote)",
                    show_duration(whole_minutes(*passed_for)),
                    show_duration(*after),
                    utc_minute(*end)
                ),
                Conclusion::RemoveShadow {
                    mark,
                    failing_for,
                    after,
                } => format!(
                    "failing at the floor for {} (stop after {}){}",
                    show_duration(whole_minutes(*failing_for)),
                    show_duration(*after),
                    mark.as_ref()
                        .map_or(String::new(), |mark| format!(", latched {FAILED_TAG}={mark}"))
                ),
            };
            format!("{why}: stopped as {}, {variants}", desired_state.as_str())
        }
    }
}

/// How long something has held, to the minute: the step's clock starts on
/// a whole minute and the tick does not.
fn whole_minutes(duration: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(duration.as_secs() / 60 * 60)
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
        Action::Stop { conclusion, .. } => match conclusion {
            Conclusion::Promote { .. } => "stop: promote the shadow".into(),
            Conclusion::RemoveShadow { .. } => "stop: remove the shadow".into(),
        },
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
            Action::Stop {
                conclusion,
                variant_actions,
                desired_state,
            } => {
                out.serialize_entry("kind", "stop_experiment")?;
                out.serialize_entry("stop", conclusion.as_str())?;
                let actions: std::collections::BTreeMap<&str, &str> = variant_actions
                    .iter()
                    .map(|(variant, action)| (variant.as_str(), action.as_str()))
                    .collect();
                out.serialize_entry("variant_actions", &actions)?;
                out.serialize_entry("desired_state", desired_state.as_str())?;
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
        Note::PromotionDue {
            passed_for,
            after,
            due,
            ends_first,
        } => format!(
            "passing at 100 % for {} of {}: promoted at {}{}",
            show_duration(whole_minutes(*passed_for)),
            show_duration(*after),
            utc_minute(*due),
            ends_first.map_or(String::new(), |end| format!(
                ", but the experiment cannot run past {}",
                utc_minute(end)
            ))
        ),
        Note::PromotionOutrun { due, ends } => format!(
            "the experiment ends {} before the promotion time {} (at_cap: report): left to end, ready to promote",
            utc_minute(*ends),
            utc_minute(*due)
        ),
        Note::StopDue { since, after, due } => format!(
            "failing at the floor since {}: stopped and the shadow removed at {} (after {})",
            utc_minute(*since),
            utc_minute(*due),
            show_duration(*after)
        ),
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
        Note::Blocked { check, blocker } => format!(
            "undecidable: {} can never decide: {}; not extended",
            check.as_str(),
            blocker_text(*blocker)
        ),
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

fn deferral_text(deferral: &Deferral) -> String {
    match deferral {
        Deferral::NotRead { waited } => format!(
            "deferred: not described within {} of the tick's start, when the metrics round had to be sent; the next tick reads it again",
            seconds_text(*waited)
        ),
        Deferral::NoTimeToWrite { left, margin } => format!(
            "deferred: {} left before the deadline, under the {} a write group needs; the next tick plans again",
            seconds_text(*left),
            seconds_text(*margin)
        ),
    }
}

/// `4.2 s`, `110 s`.
fn seconds_text(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{seconds:.0} s")
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
    if !steered.plan.tags.is_empty() {
        let mut tags: Vec<String> = steered
            .plan
            .tags
            .set
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        tags.extend(steered.plan.tags.remove.iter().map(|key| format!("-{key}")));
        reasons.push(format!("tags {}", tags.join(" ")));
    }
    if let WriteOutcome::Blocked(block) = &steered.write {
        reasons.push(format!("not written: {}", write_block_text(block)));
    }
    let reason = reasons.join("; ");
    match &steered.write {
        WriteOutcome::DryRun => format!("dry run, not written: {reason}"),
        WriteOutcome::TagWriteFailed {
            arn,
            updated,
            error,
        } => format!(
            "{}tags not written on {arn}: {} ({reason})",
            if *updated { "update applied, " } else { "" },
            error_chain(error.as_ref())
        ),
        WriteOutcome::Deferred(deferral) => {
            format!("not written: {} ({reason})", deferral_text(deferral))
        }
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
            Disposition::Deferred(deferral) => deferral_text(deferral),
        }
    }

    /// The error's kind and message, as the report's `error` field shows it.
    fn error_text(&self) -> Option<(&'static str, String)> {
        let troubles = self.troubles();
        let first = troubles.first()?;
        let message = match first {
            Trouble::Entry(error) => entry_error_text(&self.name, error).0,
            Trouble::Write { error, .. } => error_chain(*error),
            Trouble::Metrics(error) => metrics_failure_text(error),
            Trouble::Capture(error) => format!("data capture: {}", error_chain(*error)),
            Trouble::Events(error) => error_chain(*error),
        };
        Some((first.kind().as_str(), message))
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
            outcome = self.outcome_str(),
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
            /// The entry's other kinds of trouble, counted in the summary too.
            also: Vec<&'static str>,
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
        out.serialize_entry("tags", &self.steered().map(|s| TagsView(&s.plan.tags)))?;
        out.serialize_entry("applied", &self.applied())?;
        out.serialize_entry("outcome", self.outcome_str())?;
        out.serialize_entry("reason", &self.reason())?;
        out.serialize_entry("attention", self.attention())?;
        out.serialize_entry("held", &self.held)?;
        if let Some(steered) = self.steered() {
            match &steered.events {
                EventsOutcome::None => {}
                EventsOutcome::Published(types) => out.serialize_entry("events", types)?,
                EventsOutcome::Failed(_) => out.serialize_entry("events", "failed")?,
            }
        }
        if let Some((kind, message)) = self.error_text() {
            let also = self
                .error_kinds()
                .into_iter()
                .skip(1)
                .map(ErrorKind::as_str)
                .collect();
            out.serialize_entry(
                "error",
                &ErrorView {
                    kind,
                    message,
                    also,
                },
            )?;
        }
        out.end()
    }
}

/// The tag changes a plan wants (written with the update, or reported by a
/// dry run): `{"set": {...}, "remove": [...]}`.
struct TagsView<'a>(&'a crate::plan::TagChanges);

impl Serialize for TagsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(2))?;
        out.serialize_entry("set", &self.0.set)?;
        out.serialize_entry("remove", &self.0.remove)?;
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
fn metrics_failure_text(error: &MetricError) -> String {
    format!("CloudWatch: {}", error_chain(error))
}

/// Why a check can never decide, in words.
fn blocker_text(blocker: Blocker) -> String {
    match blocker {
        Blocker::NoCapture => {
            "the experiment has no DataStorageConfig: no outputs are captured".into()
        }
        Blocker::NothingPairs { shadow_records } => format!(
            "none of {shadow_records} shadow records paired with production's (callers must send InferenceId)"
        ),
        Blocker::NoNumericOutputs => "no pair has two numeric outputs to compare".into(),
    }
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
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::experiment::{ExperimentStatus, FailedMark};
    use crate::judge::Verdict;
    use crate::plan::Plan;
    use crate::ports::MetricFailure;
    use crate::ports::{MetricError, StoreError};
    use crate::report::ErrorKind;

    /// A result with no interval yet; the cases fill in what they show.
    fn result(metric: CheckMetric, form: Form, unit: Unit, outcome: Outcome) -> CheckResult {
        CheckResult {
            id: CheckId::Metric(metric),
            form,
            unit,
            outcome,
            reason: None,
            sequence: Sequence::Step,
            value: None,
            lower: None,
            upper: None,
            limit: 0.0,
            time_to_decision: None,
            at_ceiling: None,
            passing_side: None,
            amount: Amount::Nothing,
            sampling: 10,
            closeness: 0.0,
        }
    }

    fn p99_ratio(outcome: Outcome) -> CheckResult {
        CheckResult {
            limit: 1.2,
            ..result(
                CheckMetric::LatencyP99,
                Form::LatencyRatio { ratio: 1.2 },
                Unit::Ratio,
                outcome,
            )
        }
    }

    fn errors_above(outcome: Outcome) -> CheckResult {
        CheckResult {
            limit: 0.5,
            ..result(
                CheckMetric::ErrorRate5xx,
                Form::ErrorAbove { points: 0.5 },
                Unit::Points,
                outcome,
            )
        }
    }

    fn errors_max(metric: CheckMetric, outcome: Outcome) -> CheckResult {
        CheckResult {
            limit: 1.0,
            ..result(
                metric,
                Form::ErrorMax { percent: 1.0 },
                Unit::Percent,
                outcome,
            )
        }
    }

    fn interval(check: CheckResult, value: f64, lower: f64, upper: f64) -> CheckResult {
        CheckResult {
            value: Some(value),
            lower: Some(lower),
            upper: Some(upper),
            ..check
        }
    }

    fn needs(minutes: f64) -> Option<TimeToDecision> {
        Some(TimeToDecision::Needs {
            extra: 1.0,
            minutes,
        })
    }

    fn undecided(check: CheckResult, reason: Reason, minutes: Option<f64>) -> CheckResult {
        CheckResult {
            reason: Some(reason),
            time_to_decision: minutes.and_then(needs),
            ..check
        }
    }

    fn misaligned() -> MetricFailure {
        MetricFailure(Arc::new(MetricError::Misaligned {
            asked: 4,
            answered: 3,
        }))
    }

    /// Every check message as an operator reads it: the one table of
    /// wording, so a change of words is a change of this test.
    #[test]
    fn every_check_reads_as_documented() {
        use Outcome::{Fail, Inconclusive, Pass};
        let ms = |ms: f64| Form::LatencyMax { ms };
        let checks = [
            (
                interval(p99_ratio(Pass), 1.08, 0.97, 1.19),
                "p99 ratio 1.08 [0.97, 1.19] ≤ 1.20 (pass)",
            ),
            (
                interval(errors_above(Pass), -0.2, -0.4, -0.01),
                "5xx -0.20 [-0.40, -0.01] pts ≤ +0.50 (pass)",
            ),
            (
                interval(errors_max(CheckMetric::ErrorRate5xx, Fail), 1.5, 1.28, 1.72),
                "5xx rate 1.50 [1.28, 1.72] % > 1.00 (fail)",
            ),
            (
                interval(errors_max(CheckMetric::ModelErrorRate, Pass), 0.1, 0.02, 0.31),
                "model errors rate 0.10 [0.02, 0.31] % ≤ 1.00 (pass)",
            ),
            (
                CheckResult {
                    limit: 800.0,
                    ..interval(
                        result(CheckMetric::LatencyP99, ms(800.0), Unit::Milliseconds, Pass),
                        412.4,
                        380.0,
                        449.6,
                    )
                },
                "p99 412 [380, 450] ms ≤ 800 (pass)",
            ),
            (
                CheckResult {
                    limit: 80.0,
                    ..interval(
                        result(CheckMetric::LatencyP50, ms(80.0), Unit::Milliseconds, Pass),
                        41.25,
                        38.0,
                        45.06,
                    )
                },
                "p50 41.2 [38.0, 45.1] ms ≤ 80.0 (pass)",
            ),
            (
                CheckResult {
                    limit: 1.0,
                    ..interval(
                        result(
                            CheckMetric::OverheadLatencyP99,
                            Form::LatencyAbove { ms: 20.0 },
                            Unit::Ratio,
                            Pass,
                        ),
                        0.95,
                        0.9,
                        0.99,
                    )
                },
                "overhead p99 vs production +20.0 ms ratio 0.95 [0.90, 0.99] ≤ 1.00 (pass)",
            ),
            (
                CheckResult {
                    limit: 1.1,
                    ..interval(
                        result(
                            CheckMetric::LatencyAverage,
                            Form::LatencyRatio { ratio: 1.1 },
                            Unit::Ratio,
                            Pass,
                        ),
                        1.01,
                        0.98,
                        1.04,
                    )
                },
                "average latency ratio 1.01 [0.98, 1.04] ≤ 1.10 (pass)",
            ),
            (
                CheckResult {
                    sequence: Sequence::Whole,
                    ..interval(p99_ratio(Fail), 2.28, 1.59, 3.26)
                },
                "p99 ratio 2.28 [1.59, 3.26] > 1.20 (fail, whole experiment)",
            ),
            (
                CheckResult {
                    sequence: Sequence::Epoch(24),
                    ..interval(p99_ratio(Fail), 3.0, 2.77, 3.25)
                },
                "p99 ratio 3.00 [2.77, 3.25] > 1.20 (fail, epoch 24 of the step)",
            ),
            (
                CheckResult {
                    sampling: 1,
                    amount: Amount::Requests {
                        shadow: 250.0,
                        errors: 0.0,
                    },
                    ..undecided(
                        interval(errors_max(CheckMetric::ErrorRate5xx, Inconclusive), 0.1, -2.19, 2.39),
                        Reason::Insufficient,
                        Some(117.78),
                    )
                },
                "5xx rate 0.10 [-2.19, 2.39] % vs 1.00 (inconclusive, 250 of 1000 shadow requests, ~1 h 58 min more at 1 %)",
            ),
            (
                CheckResult {
                    amount: Amount::Requests {
                        shadow: 5000.0,
                        errors: 3.0,
                    },
                    ..undecided(
                        interval(errors_max(CheckMetric::ErrorRate5xx, Inconclusive), 1.2, 1.05, 1.35),
                        Reason::Insufficient,
                        Some(0.5),
                    )
                },
                "5xx rate 1.20 [1.05, 1.35] % vs 1.00 (inconclusive, 3 shadow errors, 5 needed to fail, <1 min more at 10 %)",
            ),
            (
                CheckResult {
                    amount: Amount::Periods {
                        eligible: 5,
                        period_secs: 300,
                    },
                    ..undecided(
                        interval(p99_ratio(Inconclusive), 1.03, 0.95, 1.12),
                        Reason::Insufficient,
                        Some(25.0),
                    )
                },
                "p99 ratio 1.03 [0.95, 1.12] vs 1.20 (inconclusive, 5 of 10 periods of 5m, ~25 min more at 10 %)",
            ),
            (
                undecided(
                    interval(p99_ratio(Inconclusive), 1.15, 1.08, 1.23),
                    Reason::Straddles,
                    Some(200.0),
                ),
                "p99 ratio 1.15 [1.08, 1.23] vs 1.20 (inconclusive, ~3 h 20 min more at 10 %)",
            ),
            (
                undecided(
                    interval(p99_ratio(Inconclusive), 1.18, 1.1, 1.27),
                    Reason::Straddles,
                    Some(3600.0),
                ),
                "p99 ratio 1.18 [1.10, 1.27] vs 1.20 (inconclusive, ~2.5 d more at 10 %)",
            ),
            (
                CheckResult {
                    time_to_decision: Some(TimeToDecision::Undecidable),
                    ..undecided(
                        interval(p99_ratio(Inconclusive), 1.2, 1.1, 1.31),
                        Reason::Straddles,
                        None,
                    )
                },
                "p99 ratio 1.20 [1.10, 1.31] vs 1.20 (inconclusive, undecidable: within ±h of the margin)",
            ),
            (
                CheckResult {
                    sampling: 1,
                    ..undecided(p99_ratio(Inconclusive), Reason::NoEvidence, Some(600.0))
                },
                "p99 ratio vs 1.20: no usable period since the step began (inconclusive, ~10 h 0 min more at 1 %)",
            ),
            (
                CheckResult {
                    sampling: 5,
                    ..undecided(
                        p99_ratio(Inconclusive),
                        Reason::TooLittleTraffic {
                            shadow_per_minute: 5.0,
                            needed_per_minute: 500.0 / 60.0,
                        },
                        Some(f64::INFINITY),
                    )
                },
                "p99 ratio vs 1.20: too little traffic at this sampling: 5.0 shadow requests/min, an hour-long period needs 8.3/min (inconclusive, too little traffic per period to decide at 5 %)",
            ),
            (
                undecided(p99_ratio(Inconclusive), Reason::PeriodPending, None),
                "p99 ratio vs 1.20: no production traffic before the step to choose a period from yet (inconclusive)",
            ),
            (
                undecided(errors_above(Inconclusive), Reason::NoEvidence, Some(4.0)),
                "5xx vs +0.50: no usable period since the step began (inconclusive, ~4 min more at 10 %)",
            ),
            (
                Verdict::unmeasured(misaligned()).checks.remove(0),
                "no measurements: CloudWatch: the metric source answered 3 series for 4 queries",
            ),
        ];
        for (check, words) in &checks {
            assert_eq!(check.to_string(), *words);
        }
    }

    /// The issue's own example of a difference in points: the bounds of
    /// the interval carry no sign, unlike the estimate and the margin.
    #[test]
    fn an_interval_in_points_reads_as_the_issue_writes_it() {
        let check = undecided(
            interval(errors_above(Outcome::Inconclusive), 0.12, -0.05, 0.31),
            Reason::Straddles,
            Some(40.0),
        );
        assert_eq!(
            check.to_string(),
            "5xx +0.12 [-0.05, 0.31] pts vs +0.50 (inconclusive, ~40 min more at 10 %)"
        );
    }

    #[test]
    fn check_results_serialize_with_interval_sequence_and_times() {
        let check = CheckResult {
            sequence: Sequence::Epoch(3),
            time_to_decision: needs(41.26),
            at_ceiling: Some(TimeToDecision::Undecidable),
            ..undecided(
                interval(p99_ratio(Outcome::Inconclusive), 1.15, 1.08, 1.23),
                Reason::Straddles,
                None,
            )
        };
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "metric": "latency_p99",
                "value": 1.15,
                "limit": 1.2,
                "lower": 1.08,
                "upper": 1.23,
                "unit": "ratio",
                "outcome": "inconclusive",
                "sequence": "epoch_3",
                "time_to_decision": 41.3,
                "time_at_ceiling": "undecidable",
                "message": check.to_string(),
            })
        );
        let never = CheckResult {
            time_to_decision: needs(f64::INFINITY),
            ..errors_above(Outcome::Inconclusive)
        };
        let json = serde_json::to_value(&never).unwrap();
        assert_eq!(json["time_to_decision"], "never");
        assert_eq!(json["time_at_ceiling"], serde_json::Value::Null);
        assert_eq!(json["sequence"], "step");
        assert_eq!(json["unit"], "pts");
    }

    /// Every action, note, attention state and write outcome in words.
    #[test]
    fn every_action_note_and_attention_reads_as_documented() {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 15).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap();
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let set = |from, to, why| Action::SetSampling { from, to, why };
        let extend = |to, because, needs_minutes, capped_at| Action::ExtendEndTime {
            from: end,
            to,
            why: Extension {
                because,
                margin: hours(6),
                needs_minutes,
                capped_at,
            },
        };
        let actions = [
            (set(25, 10, SamplingChange::Failing), "failing: latched, down from 25 % to 10 %"),
            (
                set(10, 5, SamplingChange::Latched),
                "latched by an earlier failure: down from 10 % to 5 %",
            ),
            (
                set(60, 50, SamplingChange::AboveMaximum { ceiling: 50 }),
                "60 % is above the policy maximum 50 %",
            ),
            (
                set(
                    5,
                    10,
                    SamplingChange::Passing {
                        dwelt: hours(3),
                        dwell: minutes(30),
                    },
                ),
                "passing after 3h at 5 % (dwell 30m): up to 10 %",
            ),
            (
                set(
                    5,
                    25,
                    SamplingChange::ForEvidence {
                        minutes: 100.0,
                        dwell: minutes(15),
                    },
                ),
                "inconclusive for lack of evidence, every estimate on the passing side, ~1 h 40 min more needed at 5 % (dwell 15m): up to 25 % for evidence",
            ),
            (
                extend(
                    end + chrono::Duration::days(1),
                    NeedsTime::Inconclusive,
                    Some(200.0),
                    Some(hours(720)),
                ),
                "inconclusive and ends 2026-11-09 00:00 UTC, before the next chance to write + margin 6h: extended by 1d (the evidence needs ~3 h 20 min), capped at StartTime + 30d",
            ),
            (
                extend(
                    end + chrono::Duration::days(2),
                    NeedsTime::Inconclusive,
                    None,
                    None,
                ),
                "inconclusive and ends 2026-11-09 00:00 UTC, before the next chance to write + margin 6h: extended by 2d (the evidence cannot say how long it needs)",
            ),
            (
                extend(
                    end + chrono::Duration::hours(7) + chrono::Duration::minutes(40),
                    NeedsTime::StillClimbing,
                    Some(360.0),
                    None,
                ),
                "passing below the top step and ends 2026-11-09 00:00 UTC, before the next chance to write + margin 6h: extended by 7h 40m (the evidence needs ~6 h 0 min)",
            ),
        ];
        for (action, words) in &actions {
            assert_eq!(action_reason(action), *words);
        }
        assert_eq!(action_summary(&actions[0].0), "sampling 25 → 10 %");
        assert_eq!(
            action_summary(&actions[5].0),
            "end 11-09 00:00 → 11-10 00:00"
        );
        let json = serde_json::to_value(&actions[0].0).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "set_sampling",
                "from": 25,
                "to": 10,
                "reason": "failing: latched, down from 25 % to 10 %",
            })
        );

        let mark = FailedMark {
            check: "latency_p99".into(),
            at,
        };
        let notes = [
            (
                Note::FailingAtFloor { floor: 1 },
                "failing at the floor 1 %: cannot go lower".to_string(),
            ),
            (
                Note::Latched { mark: mark.clone() },
                "latched: shadowpilot:failed=latency_p99@2026-11-02T10:30:15Z; never ramped or extended until re-armed (shadowpilot rearm)".into(),
            ),
            (
                Note::Rearmed { mark },
                "re-armed: the latch latency_p99@2026-11-02T10:30:15Z is older than the policy's rearm_after; the whole-experiment evidence restarts now".into(),
            ),
            (
                Note::ReadyToPromote { ceiling: 100 },
                "passing at the top step 100 %: ready to promote".into(),
            ),
            (
                Note::Dwelling {
                    dwelt: minutes(10),
                    dwell: minutes(30),
                    at: 5,
                },
                "dwelling: 10m of 30m at 5 %".into(),
            ),
            (Note::Holding { at: 5 }, "inconclusive: holding at 5 %".into()),
            (
                Note::Undecidable {
                    minutes: 3.0 * 1440.0,
                    left: hours(48),
                },
                "undecidable: even at the top step the evidence needs ~3.0 d, but only 2d are left before the cap; not extended".into(),
            ),
            (
                Note::Undecidable {
                    minutes: f64::INFINITY,
                    left: hours(48),
                },
                "undecidable: the estimate sits within ±h of the margin; not extended".into(),
            ),
            (
                Note::NoStartTime,
                "cannot extend: the experiment reports no StartTime".into(),
            ),
            (
                Note::AtCap {
                    end,
                    max_duration: hours(720),
                },
                "cannot extend: EndTime 2026-11-09 00:00 UTC is already at the cap StartTime + 30d".into(),
            ),
            (
                Note::ChangedElsewhere { tagged: 10, now: 25 },
                "sampling changed outside shadowpilot (10 % → 25 %): the step starts at LastModifiedTime".into(),
            ),
        ];
        for (note, words) in &notes {
            assert_eq!(note_text(note), *words);
        }

        let attention = [
            (
                Attention::ReadyToPromote,
                "READY TO PROMOTE",
                "ready_to_promote",
            ),
            (Attention::Failing, "FAILING", "failing"),
            (
                Attention::FailingAtFloor,
                "FAILING AT FLOOR",
                "failing_at_floor",
            ),
            (Attention::CannotExtend, "CANNOT EXTEND", "cannot_extend"),
            (Attention::Undecidable, "UNDECIDABLE", "undecidable"),
        ];
        for (state, text, json) in attention {
            assert_eq!(attention_text(state), text);
            assert_eq!(serde_json::to_value(state).unwrap(), json);
        }

        assert_eq!(
            write_block_text(&WriteBlock::Held),
            "held by tag shadowpilot:hold=true"
        );
        assert_eq!(
            write_block_text(&WriteBlock::OutsideChangeWindows {
                policy: "office".into(),
                windows: vec![("cron(0 8 ? * MON-FRI *)".into(), hours(9))],
            }),
            "outside the change windows of policy office (cron(0 8 ? * MON-FRI *) for 9h)"
        );
        let skips = [
            (
                SkipReason::Inactive(ExperimentStatus::Completed),
                "status Completed: nothing to steer",
            ),
            (SkipReason::NotSelected, "no policy selects it"),
            (
                SkipReason::Created { start: Some(end) },
                "Created, starts 2026-11-09 00:00 UTC: no traffic to judge yet",
            ),
            (
                SkipReason::Created { start: None },
                "Created: no traffic to judge yet",
            ),
            (
                SkipReason::NotJudged(ExperimentStatus::Stopping),
                "status Stopping: not judged this tick",
            ),
        ];
        for (skip, words) in &skips {
            assert_eq!(skip_text(skip), *words);
        }
        let stale = [
            (
                Staleness::Status(ExperimentStatus::Stopping),
                "status is now Stopping",
            ),
            (
                Staleness::Sampling { from: 5, to: 50 },
                "sampling changed 5 → 50 %",
            ),
            (Staleness::EndTime, "EndTime changed"),
            (Staleness::LastModifiedTime, "LastModifiedTime changed"),
            (Staleness::Held, "it was held (shadowpilot:hold=true)"),
            (Staleness::PolicyTag, "its shadowpilot:policy tag changed"),
        ];
        for (staleness, words) in &stale {
            assert_eq!(staleness_text(staleness), *words);
        }
    }

    /// A failed AddTags after an applied update: a `tag_write` entry whose
    /// words name the action, the ARN and the denial, and what was planned.
    #[test]
    fn a_failed_tag_write_reads_as_an_entry_of_its_own_kind() {
        let arn = "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/fraud";
        let steered = |write: WriteOutcome| {
            Disposition::Steered(Box::new(Steered {
                verdict: Verdict::from_outcome(Outcome::Pass),
                plan: Plan {
                    actions: vec![Action::SetSampling {
                        from: 5,
                        to: 25,
                        why: SamplingChange::Passing {
                            dwelt: Duration::from_secs(3600),
                            dwell: Duration::from_secs(900),
                        },
                    }],
                    ..Plan::default()
                },
                write,
                metrics_error: None,
                events: EventsOutcome::default(),
            }))
        };
        let denied = || {
            Arc::new(StoreError::AccessDenied {
                operation: "AddTags",
                source: "AccessDeniedException: not authorized to perform sagemaker:AddTags"
                    .to_string()
                    .into(),
            })
        };
        let entry = ExperimentReport::new(
            "fraud",
            Some(ExperimentStatus::Running),
            steered(WriteOutcome::TagWriteFailed {
                arn: arn.into(),
                updated: true,
                error: denied(),
            }),
        );
        assert_eq!(entry.error_kind(), Some(ErrorKind::TagWrite));
        assert!(entry.applied(), "the update landed");
        assert_eq!(
            entry.reason(),
            format!("update applied, tags not written on {arn}: SageMaker AddTags was denied: AccessDeniedException: not authorized to perform sagemaker:AddTags (passing after 1h at 5 % (dwell 15m): up to 25 %)")
        );
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["outcome"], "tag_write_failed");
        assert_eq!(json["applied"], true);
        assert_eq!(json["error"]["kind"], "tag_write");
        assert_eq!(
            json["error"]["message"],
            "SageMaker AddTags was denied: AccessDeniedException: not authorized to perform sagemaker:AddTags"
        );

        // Tags alone (no update in the plan) that fail: nothing applied.
        let tags_only = ExperimentReport::new(
            "fraud",
            Some(ExperimentStatus::Running),
            steered(WriteOutcome::TagWriteFailed {
                arn: arn.into(),
                updated: false,
                error: denied(),
            }),
        );
        assert!(!tags_only.applied());
        assert!(
            tags_only.reason().starts_with(&format!(
                "tags not written on {arn}: SageMaker AddTags was denied"
            )),
            "{}",
            tags_only.reason()
        );
    }

    #[test]
    fn the_summary_counts_every_attention_state() {
        let steered = |attention: Vec<Attention>| {
            ExperimentReport::new(
                "x",
                Some(ExperimentStatus::Running),
                Disposition::Steered(Box::new(Steered {
                    verdict: Verdict::from_outcome(Outcome::Inconclusive),
                    plan: Plan {
                        attention,
                        ..Plan::default()
                    },
                    write: WriteOutcome::Nothing,
                    metrics_error: None,
                    events: EventsOutcome::default(),
                })),
            )
        };
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 0).unwrap();
        let report = Report::new(
            true,
            at,
            at,
            vec![
                steered(vec![Attention::Failing]),
                steered(vec![Attention::FailingAtFloor]),
                steered(vec![Attention::Undecidable]),
                steered(vec![Attention::CannotExtend]),
            ],
        );
        assert_eq!(
            summary_line(report.dry_run, &report.summary),
            "DRY RUN (nothing written) — 4 experiments: 0 pass, 0 fail, 4 inconclusive, 0 skipped, 0 error; 0 actions planned, 0 updates applied; 1 failing, 1 failing at floor, 1 cannot extend, 1 undecidable"
        );
    }
}
