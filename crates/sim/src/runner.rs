//! Runs the controller at every tick of a scenario's schedule over the
//! simulated world and keeps what it decided, for the timeline, the summary
//! and the plot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::scenario::Scenario;
use super::world::{Observation, SimWorld, WriteRecord};
use shadowpilot_core::controller::{Controller, RunOptions, TickError};
use shadowpilot_core::experiment::ExperimentStatus;
use shadowpilot_core::plan::{Action, Attention};
use shadowpilot_core::policy::PolicySet;
use shadowpilot_core::report::VerdictKind;
use shadowpilot_core::schedule::chrono_duration;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{source_file}: experiments use {} that no loaded policy is called (loaded: {})", missing.join(", "), loaded.join(", "))]
    UnknownPolicies {
        source_file: String,
        missing: Vec<String>,
        loaded: Vec<String>,
    },
    #[error("tick at {at} failed")]
    Tick {
        at: DateTime<Utc>,
        #[source]
        source: TickError,
    },
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Every experiment reached Completed.
    AllCompleted,
    /// `--until` was reached first.
    Until,
    /// 30 days after the last start, nothing can still run.
    Horizon,
}

/// One experiment at one tick: what the controller decided and what the
/// world looked like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickRecord {
    pub at: DateTime<Utc>,
    pub status: String,
    pub verdict: VerdictKind,
    pub decisive: Option<String>,
    pub decisive_check: Option<String>,
    pub actions: Vec<Action>,
    pub applied: bool,
    pub reason: String,
    pub attention: Vec<Attention>,
    /// The error label when the tick failed for this experiment.
    pub error: Option<String>,
    /// Sampling percentage and EndTime after the tick.
    pub sampling: u8,
    pub end_time: DateTime<Utc>,
    /// What really happened in the hour before the tick.
    #[serde(skip)]
    pub observed: Observation,
}

/// Counts and outcome of one experiment over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentSummary {
    pub name: String,
    pub policy: String,
    pub held: bool,
    pub start_time: DateTime<Utc>,
    pub first_end_time: DateTime<Utc>,
    pub final_end_time: DateTime<Utc>,
    pub starting_sampling: u8,
    pub final_sampling: u8,
    pub max_sampling: u8,
    /// From StartTime to the moment 100 % was in force.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub time_to_100: Option<chrono::Duration>,
    pub ramps_up: usize,
    pub ramps_down: usize,
    pub extensions: usize,
    pub rejected_writes: usize,
    pub first_fail_at: Option<DateTime<Utc>>,
    pub verdicts: VerdictCounts,
    pub final_status: String,
    pub last_attention: Vec<Attention>,
    /// In words: `completed at 100 % after 7d`, `still running at --until`.
    pub ended: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub skipped: usize,
    pub error: usize,
}

fn serialize_opt_duration<S: serde::Serializer>(
    value: &Option<chrono::Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serializer.serialize_str(&show(*duration)),
        None => serializer.serialize_none(),
    }
}

/// Everything one experiment went through.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRun {
    pub name: String,
    pub policy: String,
    pub held: bool,
    pub start_time: DateTime<Utc>,
    pub first_end_time: DateTime<Utc>,
    pub starting_sampling: u8,
    pub ticks: Vec<TickRecord>,
    /// (in force from, percentage), creation first.
    pub sampling_history: Vec<(DateTime<Utc>, u8)>,
    /// (when, new EndTime), creation first.
    pub end_time_history: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A finished simulation.
#[derive(Debug, Clone)]
pub struct SimulationOutcome {
    pub scenario: String,
    pub source: String,
    pub seed: u64,
    pub schedule: String,
    pub start: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ticks: usize,
    pub stop: Stop,
    pub experiments: Vec<ExperimentRun>,
    /// Every UpdateInferenceExperiment the controller sent, in order.
    pub writes: Vec<WriteRecord>,
}

/// Runs the controller (live, not dry) at every tick of the scenario's
/// schedule from its start until every experiment has Completed, `until`
/// (counted from the scenario start) has passed, or 30 days after the last
/// experiment start.
pub async fn run(
    scenario: &Scenario,
    policies: &PolicySet,
    until: Option<Duration>,
) -> Result<SimulationOutcome, SimError> {
    let loaded: Vec<String> = policies
        .policies()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let missing: Vec<String> = scenario
        .policy_names()
        .into_iter()
        .filter(|name| policies.get(name).is_none())
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(SimError::UnknownPolicies {
            source_file: scenario.source.clone(),
            missing,
            loaded,
        });
    }

    let world = SimWorld::new(scenario);
    let controller = Controller::new(&world, &world, policies);
    let horizon = scenario.horizon() + chrono::Duration::days(1);
    let (stop_at, limited) = match until {
        Some(until) if scenario.start + chrono_duration(until) < horizon => {
            (scenario.start + chrono_duration(until), true)
        }
        _ => (horizon, false),
    };
    let mut runs: Vec<ExperimentRun> = scenario
        .experiments
        .iter()
        .map(|spec| ExperimentRun {
            name: spec.name.clone(),
            policy: spec.policy.clone(),
            held: spec.hold,
            start_time: spec.start_time,
            first_end_time: spec.end_time,
            starting_sampling: spec.sampling,
            ticks: Vec::new(),
            sampling_history: Vec::new(),
            end_time_history: Vec::new(),
        })
        .collect();
    let options = RunOptions {
        dry_run: false,
        only: None,
    };

    let mut ticks = 0;
    let mut stop = if limited { Stop::Until } else { Stop::Horizon };
    let mut finished_at = scenario.start;
    for at in scenario.schedule.ticks_between(scenario.start, stop_at) {
        world.set_now(at);
        let next_tick = scenario.schedule.next_tick_after(at);
        let report = controller
            .run_tick(&options, at, next_tick)
            .await
            .map_err(|source| SimError::Tick { at, source })?;
        ticks += 1;
        finished_at = at;
        for entry in report.experiments {
            let Some(run) = runs.iter_mut().find(|run| run.name == entry.name) else {
                continue;
            };
            let Some((status, sampling, end_time)) = world.snapshot(&run.name) else {
                continue;
            };
            let observed = if matches!(
                status,
                ExperimentStatus::Running | ExperimentStatus::Updating
            ) {
                world
                    .observe(&run.name, at - chrono::Duration::hours(1), at)
                    .unwrap_or_default()
            } else {
                Observation::default()
            };
            run.ticks.push(TickRecord {
                at,
                status: entry.status,
                verdict: entry.verdict,
                decisive: entry.decisive,
                decisive_check: entry.decisive_check,
                actions: entry.actions,
                applied: entry.applied,
                reason: entry.reason,
                attention: entry.attention,
                error: entry.error.map(|e| e.kind),
                sampling,
                end_time,
                observed,
            });
        }
        if world.all_completed() {
            stop = Stop::AllCompleted;
            break;
        }
    }
    for run in &mut runs {
        run.sampling_history = world.sampling_history(&run.name).unwrap_or_default();
        run.end_time_history = world.end_time_history(&run.name).unwrap_or_default();
    }
    Ok(SimulationOutcome {
        scenario: scenario.name.clone(),
        source: scenario.source.clone(),
        seed: scenario.seed,
        schedule: scenario.schedule.expression().to_string(),
        start: scenario.start,
        finished_at,
        ticks,
        stop,
        experiments: runs,
        writes: world.writes(),
    })
}

/// `2d 4h`, `35m`: how long, as people say it.
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

fn describe_action(action: &Action) -> String {
    match action {
        Action::SetSampling { from, to, .. } => format!("sampling {from} → {to} %"),
        Action::ExtendEndTime { from, to, .. } => {
            format!(
                "end {} → {}",
                from.format("%m-%d %H:%M"),
                to.format("%m-%d %H:%M")
            )
        }
    }
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
    pub actions: Vec<String>,
    pub applied: bool,
    pub reason: String,
}

impl ExperimentRun {
    pub fn summary(&self, stop: Stop, writes: &[WriteRecord]) -> ExperimentSummary {
        let mut verdicts = VerdictCounts::default();
        let (mut ramps_up, mut ramps_down, mut extensions) = (0, 0, 0);
        let mut first_fail_at = None;
        for tick in &self.ticks {
            match tick.verdict {
                VerdictKind::Pass => verdicts.pass += 1,
                VerdictKind::Fail => {
                    verdicts.fail += 1;
                    first_fail_at.get_or_insert(tick.at);
                }
                VerdictKind::Inconclusive => verdicts.inconclusive += 1,
                VerdictKind::Skipped => verdicts.skipped += 1,
                VerdictKind::Error => verdicts.error += 1,
            }
            if !tick.applied {
                continue;
            }
            for action in &tick.actions {
                match action {
                    Action::SetSampling { from, to, .. } if to > from => ramps_up += 1,
                    Action::SetSampling { .. } => ramps_down += 1,
                    Action::ExtendEndTime { .. } => extensions += 1,
                }
            }
        }
        let time_to_100 = self
            .sampling_history
            .iter()
            .find(|(_, percentage)| *percentage == 100)
            .map(|(at, _)| (*at).max(self.start_time) - self.start_time);
        let max_sampling = self
            .sampling_history
            .iter()
            .map(|(_, p)| *p)
            .max()
            .unwrap_or(self.starting_sampling);
        let last = self.ticks.last();
        let final_sampling = last.map_or(self.starting_sampling, |t| t.sampling);
        let final_end_time = last.map_or(self.first_end_time, |t| t.end_time);
        let final_status = last.map_or("not seen".to_string(), |t| t.status.clone());
        // The last tick that was judged says what state it was left in.
        let last_attention = self
            .ticks
            .iter()
            .rev()
            .find(|t| !matches!(t.verdict, VerdictKind::Skipped))
            .map(|t| t.attention.clone())
            .unwrap_or_default();
        let ran_for = show(final_end_time - self.start_time);
        let ended = if final_status == "Completed" {
            let capped = final_end_time - self.start_time >= chrono::Duration::days(30);
            format!(
                "completed at {final_sampling} % after {ran_for}{}{}",
                if extensions > 0 {
                    format!(" ({extensions} extension(s))")
                } else {
                    String::new()
                },
                if capped { ", at the 30-day cap" } else { "" }
            )
        } else {
            let why = match stop {
                Stop::Until => "--until",
                Stop::Horizon => "the horizon",
                Stop::AllCompleted => "the end",
            };
            format!(
                "{} at {final_sampling} % when the run stopped ({why})",
                final_status.to_lowercase()
            )
        };
        ExperimentSummary {
            name: self.name.clone(),
            policy: self.policy.clone(),
            held: self.held,
            start_time: self.start_time,
            first_end_time: self.first_end_time,
            final_end_time,
            starting_sampling: self.starting_sampling,
            final_sampling,
            max_sampling,
            time_to_100,
            ramps_up,
            ramps_down,
            extensions,
            rejected_writes: writes
                .iter()
                .filter(|w| w.request.name == self.name && w.rejected.is_some())
                .count(),
            first_fail_at,
            verdicts,
            final_status,
            last_attention,
            ended,
        }
    }

    /// The highest sampling percentage in force at any moment from `from` on.
    pub fn max_sampling_from(&self, from: DateTime<Utc>) -> u8 {
        let before = self
            .sampling_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= from)
            .map_or(0, |(_, p)| *p);
        self.sampling_history
            .iter()
            .filter(|(at, _)| *at > from)
            .map(|(_, p)| *p)
            .fold(before, u8::max)
    }
}

impl SimulationOutcome {
    pub fn experiment(&self, name: &str) -> Option<&ExperimentRun> {
        self.experiments.iter().find(|run| run.name == name)
    }

    pub fn summaries(&self) -> Vec<ExperimentSummary> {
        self.experiments
            .iter()
            .map(|run| run.summary(self.stop, &self.writes))
            .collect()
    }

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
                    p.status != tick.status
                        || p.verdict != tick.verdict
                        || decisive_kind(p) != decisive_kind(tick)
                });
                if changed || !tick.actions.is_empty() || tick.error.is_some() {
                    rows.push(Decision {
                        at: tick.at,
                        experiment: run.name.clone(),
                        status: tick.status.clone(),
                        sampling: tick.sampling,
                        verdict: tick.verdict,
                        decisive: tick.decisive.clone(),
                        actions: tick.actions.iter().map(describe_action).collect(),
                        applied: tick.applied,
                        reason: tick.reason.clone(),
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

fn decisive_kind(tick: &TickRecord) -> Option<&str> {
    // A passing shadow's decisive check is merely the one closest to its
    // limit and flips between checks from tick to tick: not news.
    if tick.verdict == VerdictKind::Pass {
        return None;
    }
    // Messages carry numbers that change every tick; compare the check, the
    // part before the first digit.
    tick.decisive
        .as_deref()
        .map(|m| m.split(|c: char| c.is_ascii_digit()).next().unwrap_or(m))
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
