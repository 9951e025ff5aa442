//! A finished simulation in words: the timeline of decisions that changed
//! something, one summary row per experiment, and the JSON of both. Cells
//! and tables come from the core's report rendering, so the simulator says
//! what the Lambda would say.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::runner::{SimulationOutcome, Stop, TickRecord};
use shadowpilot_core::judge::{CheckId, CheckResult};
use shadowpilot_core::report::render::{action_summary, table};
use shadowpilot_core::report::{VerdictKind, WriteOutcome};

/// `2d 4h`, `35m`: how long, as people say it, to the minute.
pub fn show(duration: chrono::Duration) -> String {
    let minutes = duration.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if mins > 0 || parts.is_empty() {
        parts.push(format!("{mins}m"));
    }
    parts.join(" ")
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at: DateTime<Utc>,
    pub experiment: String,
    pub status: String,
    pub sampling: u8,
    pub verdict: VerdictKind,
    pub decisive: Option<String>,
    pub decisive_check: Option<&'static str>,
    pub actions: Vec<String>,
    pub applied: bool,
    pub outcome: &'static str,
    pub reason: String,
}

/// What makes a tick news: a failing or inconclusive shadow's decisive
/// check. A passing shadow's is merely the one closest to its limit and
/// flips between checks from tick to tick.
fn decisive_news(tick: &TickRecord) -> Option<CheckId> {
    if tick.verdict() == VerdictKind::Pass {
        return None;
    }
    tick.decisive().map(|check| check.id)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

impl SimulationOutcome {
    /// The decisions worth reading: each experiment's first tick, every tick
    /// with an action or an error, and every change of status, verdict or
    /// decisive check. Quiet repeats are left out (they are counted).
    pub fn timeline(&self) -> (Vec<Decision>, usize) {
        let mut rows = Vec::new();
        let mut omitted = 0;
        for run in &self.experiments {
            let mut previous: Option<&TickRecord> = None;
            for tick in &run.ticks {
                let changed = previous.is_none_or(|p| {
                    p.status() != tick.status()
                        || p.verdict() != tick.verdict()
                        || decisive_news(p) != decisive_news(tick)
                });
                if changed || !tick.actions().is_empty() || tick.error().is_some() {
                    rows.push(Decision {
                        at: tick.at,
                        experiment: run.name.clone(),
                        status: tick
                            .status()
                            .map_or("unknown".to_string(), |s| s.to_string()),
                        sampling: tick.sampling,
                        verdict: tick.verdict(),
                        decisive: tick.decisive().map(CheckResult::to_string),
                        decisive_check: tick.decisive().map(|c| c.id.as_str()),
                        actions: tick.actions().iter().map(action_summary).collect(),
                        applied: tick.applied(),
                        outcome: tick.entry.write().map_or("none", WriteOutcome::as_str),
                        reason: tick.entry.reason(),
                    });
                } else {
                    omitted += 1;
                }
                previous = Some(tick);
            }
        }
        rows.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then_with(|| a.experiment.cmp(&b.experiment))
        });
        (rows, omitted)
    }

    /// The timeline as a table for a terminal.
    pub fn timeline_table(&self) -> String {
        let (rows, omitted) = self.timeline();
        let header = [
            "TIME",
            "EXPERIMENT",
            "STATUS",
            "SAMPLING",
            "VERDICT",
            "DECISIVE CHECK / REASON",
            "ACTION",
        ];
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let action = if row.actions.is_empty() {
                    "-".to_string()
                } else if row.applied {
                    row.actions.join("; ")
                } else {
                    format!("{} (not applied: {})", row.actions.join("; "), row.reason)
                };
                vec![
                    row.at.format("%m-%d %H:%M").to_string(),
                    row.experiment.clone(),
                    row.status.clone(),
                    format!("{} %", row.sampling),
                    row.verdict.as_str().to_string(),
                    truncate(row.decisive.as_deref().unwrap_or(&row.reason), 80),
                    action,
                ]
            })
            .collect();
        let mut out = format!(
            "{} ({}), seed {}, {} on {}: {} ticks from {} to {}\n",
            self.scenario,
            self.source,
            self.seed,
            self.experiments.len(),
            self.schedule,
            self.ticks,
            self.start.format("%Y-%m-%d %H:%M"),
            self.finished_at.format("%Y-%m-%d %H:%M"),
        );
        out.push_str(&table(&header, &cells));
        out.push_str(&format!(
            "{omitted} quiet tick(s) left out: same status, verdict and decisive check, no action\n"
        ));
        out
    }

    /// One row per experiment.
    pub fn summary_table(&self) -> String {
        let header = [
            "EXPERIMENT",
            "POLICY",
            "TO 100 %",
            "MAX",
            "UP",
            "DOWN",
            "EXTENDED",
            "REJECTED",
            "PASS/FAIL/INCONCL",
            "ENDED",
        ];
        let cells: Vec<Vec<String>> = self
            .summaries()
            .iter()
            .map(|s| {
                vec![
                    format!("{}{}", s.name, if s.held { " (hold)" } else { "" }),
                    s.policy.clone(),
                    s.time_to_100.map_or("never".into(), show),
                    format!("{} %", s.max_sampling),
                    s.ramps_up.to_string(),
                    s.ramps_down.to_string(),
                    s.extensions.to_string(),
                    s.rejected_writes.to_string(),
                    format!(
                        "{}/{}/{}",
                        s.verdicts.pass, s.verdicts.fail, s.verdicts.inconclusive
                    ),
                    s.ended.clone(),
                ]
            })
            .collect();
        let stop = match self.stop {
            Stop::AllCompleted => "every experiment completed",
            Stop::Until => "stopped at --until",
            Stop::Horizon => "stopped 30 days after the last start",
        };
        format!("{}{} ticks, {stop}\n", table(&header, &cells), self.ticks)
    }

    /// The run for `--output json`: the summary per experiment, the timeline
    /// rows, the sampling and EndTime histories and every write.
    pub fn to_json(&self) -> serde_json::Value {
        let (timeline, omitted) = self.timeline();
        let experiments: Vec<serde_json::Value> = self
            .experiments
            .iter()
            .zip(self.summaries())
            .map(|(run, summary)| {
                serde_json::json!({
                    "summary": summary,
                    "sampling_history": run.sampling_history.iter().map(|(at, p)| serde_json::json!({"from": at, "percentage": p})).collect::<Vec<_>>(),
                    "end_time_history": run.end_time_history.iter().map(|(at, end)| serde_json::json!({"at": at, "end_time": end})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let writes: Vec<serde_json::Value> = self
            .writes
            .iter()
            .map(|w| {
                serde_json::json!({
                    "at": w.at,
                    "experiment": w.request.name,
                    "sampling": w.request.sampling.as_ref().map(|s| s.percentage),
                    "end_time": w.request.end_time,
                    "rejected": w.rejected.as_ref().map(|(label, message)| serde_json::json!({"kind": label, "message": message})),
                })
            })
            .collect();
        serde_json::json!({
            "scenario": self.scenario,
            "source": self.source,
            "seed": self.seed,
            "schedule": self.schedule,
            "start": self.start,
            "finished_at": self.finished_at,
            "ticks": self.ticks,
            "stop": self.stop,
            "experiments": experiments,
            "timeline": timeline,
            "quiet_ticks_omitted": omitted,
            "writes": writes,
        })
    }
}
