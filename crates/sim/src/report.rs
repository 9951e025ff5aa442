//! A finished simulation in words: the timeline of decisions that changed
//! something, one summary row per experiment, and the JSON of both. Cells
//! and tables come from the core's report rendering, so the simulator says
//! what the Lambda would say.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::runner::{ExperimentRun, SimulationOutcome, Stop, TickRecord};
use super::world::WriteRecord;
use shadowpilot_core::experiment::ExperimentStatus;
use shadowpilot_core::judge::{CheckId, CheckResult};
use shadowpilot_core::plan::{Action, Attention, Conclusion};
use shadowpilot_core::report::render::{action_summary, table};
use shadowpilot_core::report::{ErrorKind, VerdictCounts, VerdictKind, WriteOutcome};

/// `2d 4h`, `35m`: how long, as policies write it, to the minute.
pub fn show(duration: chrono::Duration) -> String {
    let minutes = u64::try_from(duration.num_minutes()).unwrap_or(0);
    shadowpilot_core::duration::format(std::time::Duration::from_secs(minutes * 60))
}

/// How an experiment's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Completed {
        sampling: u8,
        ran_for: chrono::Duration,
        extensions: usize,
        at_cap: bool,
    },
    /// shadowpilot ended the test with StopInferenceExperiment.
    Concluded {
        promoted: bool,
        sampling: u8,
        /// From StartTime to the stop.
        after: chrono::Duration,
        status: Option<ExperimentStatus>,
    },
    /// The simulation stopped first; `status` is `None` when no tick saw it.
    Stopped {
        status: Option<ExperimentStatus>,
        sampling: u8,
        stop: Stop,
    },
}

/// `completed at 100 % after 7d (2 extension(s))`,
/// `running at 25 % when the run stopped (--until)`.
impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completed {
                sampling,
                ran_for,
                extensions,
                at_cap,
            } => {
                write!(f, "completed at {sampling} % after {}", show(*ran_for))?;
                if *extensions > 0 {
                    write!(f, " ({extensions} extension(s))")?;
                }
                if *at_cap {
                    f.write_str(", at the 30-day cap")?;
                }
                Ok(())
            }
            Self::Concluded {
                promoted,
                sampling,
                after,
                status,
            } => write!(
                f,
                "{} at {sampling} % after {} ({})",
                if *promoted {
                    "promoted by shadowpilot"
                } else {
                    "stopped by shadowpilot, shadow removed,"
                },
                show(*after),
                status
                    .as_ref()
                    .map_or("not seen".to_string(), |s| s.as_str().to_string()),
            ),
            Self::Stopped {
                status,
                sampling,
                stop,
            } => write!(
                f,
                "{} at {sampling} % when the run stopped ({})",
                status
                    .as_ref()
                    .map_or("not seen".to_string(), |s| s.as_str().to_lowercase()),
                match stop {
                    Stop::Until => "--until",
                    Stop::Horizon => "the horizon",
                    Stop::AllCompleted => "the end",
                }
            ),
        }
    }
}

fn serialize_ended<S: serde::Serializer>(value: &Ended, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Counts and outcome of one experiment over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
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
    /// `None` when no tick saw it.
    #[serde(serialize_with = "serialize_status")]
    pub final_status: Option<ExperimentStatus>,
    pub last_attention: Vec<Attention>,
    #[serde(serialize_with = "serialize_ended")]
    pub ended: Ended,
}

fn serialize_status<S: serde::Serializer>(
    value: &Option<ExperimentStatus>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_ref().map_or("not seen", ExperimentStatus::as_str))
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

impl ExperimentRun {
    pub fn summary(&self, stop: Stop, writes: &[WriteRecord]) -> RunSummary {
        let mut verdicts = VerdictCounts::default();
        let (mut ramps_up, mut ramps_down, mut extensions) = (0, 0, 0);
        let mut first_fail_at = None;
        let mut concluded = None;
        for tick in &self.ticks {
            verdicts.add(tick.verdict());
            if tick.verdict() == VerdictKind::Fail {
                first_fail_at.get_or_insert(tick.at);
            }
            if !tick.applied() {
                continue;
            }
            for action in tick.actions() {
                match action {
                    Action::SetSampling { from, to, .. } if to > from => ramps_up += 1,
                    Action::SetSampling { .. } => ramps_down += 1,
                    Action::ExtendEndTime { .. } => extensions += 1,
                    Action::Stop { conclusion, .. } => {
                        concluded = Some((
                            tick.at,
                            matches!(conclusion, Conclusion::Promote { .. }),
                            tick.sampling,
                        ))
                    }
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
        let final_status = last.and_then(|t| t.status().cloned());
        // The last tick that was judged says what state it was left in.
        let last_attention = self
            .ticks
            .iter()
            .rev()
            .find(|t| t.verdict() != VerdictKind::Skipped)
            .map(|t| t.attention().to_vec())
            .unwrap_or_default();
        let ended = if let Some((at, promoted, sampling)) = concluded {
            Ended::Concluded {
                promoted,
                sampling,
                after: at - self.start_time,
                status: final_status.clone(),
            }
        } else if final_status == Some(ExperimentStatus::Completed) {
            Ended::Completed {
                sampling: final_sampling,
                ran_for: final_end_time - self.start_time,
                extensions,
                at_cap: final_end_time - self.start_time >= chrono::Duration::days(30),
            }
        } else {
            Ended::Stopped {
                status: final_status.clone(),
                sampling: final_sampling,
                stop,
            }
        };
        RunSummary {
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
                .filter(|w| w.request.name == self.name && w.refused.is_some())
                .count(),
            first_fail_at,
            verdicts,
            final_status,
            last_attention,
            ended,
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
    pub fn summaries(&self) -> Vec<RunSummary> {
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
                    s.ended.to_string(),
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
                    "rejected": w.refused.as_ref().map(|refusal| serde_json::json!({
                        "kind": ErrorKind::of_store_error(&refusal.clone().into_store_error(&w.request.name)).as_str(),
                        "message": refusal.to_string(),
                    })),
                })
            })
            .collect();
        let stops: Vec<serde_json::Value> = self
            .stops
            .iter()
            .map(|stop| {
                let serving = self
                    .experiment(&stop.request.name)
                    .and_then(|run| run.serving_after_stop.as_ref());
                serde_json::json!({
                    "at": stop.at,
                    "experiment": stop.request.name,
                    "variant_actions": stop.request.variant_actions.iter().map(|(v, a)| (v.clone(), a.as_str())).collect::<std::collections::BTreeMap<_, _>>(),
                    "desired_state": stop.request.desired_state.as_str(),
                    "reason": stop.request.reason,
                    "serving_after": serving.filter(|_| stop.refused.is_none()).map(|s| serde_json::json!({
                        "production": s.production,
                        "retained": s.retained,
                        "removed": s.removed,
                    })),
                    "rejected": stop.refused.as_ref().map(|refusal| refusal.to_string()),
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
            "stops": stops,
        })
    }
}
