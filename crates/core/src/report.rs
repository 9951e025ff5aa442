//! What a tick did, for the Lambda's answer, `--output json` and the table
//! an operator reads.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::judge::{CheckResult, Outcome};
use crate::metrics::Window;
use crate::plan::{Action, Attention};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Pass,
    Fail,
    Inconclusive,
    Skipped,
    Error,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorInfo {
    /// A stable label: not_found, conflict, invalid_response, ...
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentReport {
    pub name: String,
    pub status: String,
    pub policy: Option<String>,
    pub endpoint: Option<String>,
    pub sampling_percentage: Option<u8>,
    pub end_time: Option<DateTime<Utc>>,
    pub verdict: VerdictKind,
    pub window: Option<Window>,
    pub checks: Vec<CheckResult>,
    /// The message of the check that decided the verdict.
    pub decisive: Option<String>,
    /// Which check decided it: `shadow_invocations`, `window` or a policy metric.
    pub decisive_check: Option<String>,
    pub actions: Vec<Action>,
    /// True once AWS accepted the update.
    pub applied: bool,
    pub reason: String,
    pub attention: Vec<Attention>,
    pub held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl ExperimentReport {
    pub fn new(name: &str, status: &str, verdict: VerdictKind, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            status: status.to_string(),
            policy: None,
            endpoint: None,
            sampling_percentage: None,
            end_time: None,
            verdict,
            window: None,
            checks: Vec::new(),
            decisive: None,
            decisive_check: None,
            actions: Vec::new(),
            applied: false,
            reason: reason.into(),
            attention: Vec::new(),
            held: false,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub experiments: usize,
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub skipped: usize,
    pub error: usize,
    pub actions_planned: usize,
    pub updates_applied: usize,
    pub ready_to_promote: usize,
    pub failing_at_floor: usize,
    pub cannot_extend: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub next_tick: DateTime<Utc>,
    pub experiments: Vec<ExperimentReport>,
    pub summary: Summary,
}

impl Report {
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
            match entry.verdict {
                VerdictKind::Pass => summary.pass += 1,
                VerdictKind::Fail => summary.fail += 1,
                VerdictKind::Inconclusive => summary.inconclusive += 1,
                VerdictKind::Skipped => summary.skipped += 1,
                VerdictKind::Error => summary.error += 1,
            }
            summary.actions_planned += entry.actions.len();
            summary.updates_applied += usize::from(entry.applied);
            for attention in &entry.attention {
                match attention {
                    Attention::ReadyToPromote => summary.ready_to_promote += 1,
                    Attention::FailingAtFloor => summary.failing_at_floor += 1,
                    Attention::CannotExtend => summary.cannot_extend += 1,
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
        let rows: Vec<[String; 7]> = self
            .experiments
            .iter()
            .map(|entry| {
                [
                    entry.name.clone(),
                    entry.status.clone(),
                    entry
                        .sampling_percentage
                        .map_or("-".into(), |p| format!("{p} %")),
                    entry
                        .end_time
                        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                    entry.verdict.as_str().to_string(),
                    entry
                        .decisive
                        .clone()
                        .unwrap_or_else(|| entry.reason.clone()),
                    action_cell(entry, self.dry_run),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = vec![line(&header.map(String::from))];
        out.extend(rows.iter().map(|row| line(row)));
        let s = &self.summary;
        out.push(String::new());
        out.push(format!(
            "{}{} experiments: {} pass, {} fail, {} inconclusive, {} skipped, {} error; {} actions planned, {} updates applied{}",
            if self.dry_run { "DRY RUN (nothing written) — " } else { "" },
            s.experiments, s.pass, s.fail, s.inconclusive, s.skipped, s.error,
            s.actions_planned, s.updates_applied,
            attention_summary(s)
        ));
        out.join("\n")
    }
}

fn attention_summary(summary: &Summary) -> String {
    let parts: Vec<String> = [
        (summary.ready_to_promote, "ready to promote"),
        (summary.failing_at_floor, "failing at floor"),
        (summary.cannot_extend, "cannot extend"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, label)| format!("{n} {label}"))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

fn action_cell(entry: &ExperimentReport, dry_run: bool) -> String {
    let mut parts: Vec<String> = entry
        .actions
        .iter()
        .map(|action| match action {
            Action::SetSampling { from, to, .. } => format!("sampling {from} → {to} %"),
            Action::ExtendEndTime { to, .. } => format!("end → {}", to.format("%m-%d %H:%M")),
        })
        .collect();
    parts.extend(entry.attention.iter().map(|a| match a {
        Attention::ReadyToPromote => "READY TO PROMOTE".to_string(),
        Attention::FailingAtFloor => "FAILING AT FLOOR".to_string(),
        Attention::CannotExtend => "CANNOT EXTEND".to_string(),
    }));
    if parts.is_empty() {
        return "-".into();
    }
    let mut cell = parts.join("; ");
    if !entry.actions.is_empty() {
        if entry.applied {
            cell.push_str(" (applied)");
        } else if dry_run {
            cell.push_str(" (dry run)");
        } else {
            cell.push_str(" (not applied)");
        }
    }
    cell
}
