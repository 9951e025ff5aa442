//! Runs the controller at every tick of a scenario's schedule over the
//! simulated world and keeps what it decided, as the controller's own typed
//! entries, for the timeline, the summary and the plot (see `report`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::scenario::Scenario;
use super::world::{Observation, ServingAfterStop, SimWorld, StopRecord, WriteRecord};
use shadowpilot_core::controller::{Controller, RunOptions, TickError};
use shadowpilot_core::experiment::ExperimentStatus;
use shadowpilot_core::judge::CheckResult;
use shadowpilot_core::plan::{Action, Attention};
use shadowpilot_core::policy::PolicySet;
use shadowpilot_core::report::{ErrorKind, ExperimentReport, VerdictKind};
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
#[derive(Debug, Clone)]
pub struct TickRecord {
    pub at: DateTime<Utc>,
    /// The controller's entry for the experiment, as the report has it.
    pub entry: ExperimentReport,
    /// Sampling percentage and EndTime after the tick.
    pub sampling: u8,
    pub end_time: DateTime<Utc>,
    /// What really happened in the hour before the tick.
    pub observed: Observation,
}

impl TickRecord {
    /// `None` when the experiment was not listed.
    pub fn status(&self) -> Option<&ExperimentStatus> {
        self.entry.status.as_ref()
    }

    pub fn verdict(&self) -> VerdictKind {
        self.entry.verdict()
    }

    pub fn decisive(&self) -> Option<&CheckResult> {
        self.entry.decisive()
    }

    pub fn actions(&self) -> &[Action] {
        self.entry.actions()
    }

    pub fn applied(&self) -> bool {
        self.entry.applied()
    }

    pub fn attention(&self) -> &[Attention] {
        self.entry.attention()
    }

    pub fn error(&self) -> Option<ErrorKind> {
        self.entry.error_kind()
    }
}

/// Everything one experiment went through.
#[derive(Debug, Clone)]
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
    /// What serves on the endpoint once shadowpilot stopped the experiment.
    pub serving_after_stop: Option<ServingAfterStop>,
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
    /// Every StopInferenceExperiment the controller sent, in order.
    pub stops: Vec<StopRecord>,
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
    run_keeping_world(scenario, policies, until)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`run`], and the world as it is at the end, to be read further
/// (`shadowpilot compare` reads its data capture).
pub async fn run_keeping_world(
    scenario: &Scenario,
    policies: &PolicySet,
    until: Option<Duration>,
) -> Result<(SimulationOutcome, SimWorld), SimError> {
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
    // The world also serves its experiments' data capture, so that a
    // policy's output checks read it as they would read S3.
    let controller = Controller::new(&world, &world, policies).with_capture(&world);
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
            serving_after_stop: None,
        })
        .collect();
    let options = RunOptions {
        dry_run: false,
        only: None,
        budget: None,
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
                entry,
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
        run.serving_after_stop = world.serving_after_stop(&run.name);
    }
    let outcome = SimulationOutcome {
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
        stops: world.stops(),
    };
    Ok((outcome, world))
}

impl SimulationOutcome {
    pub fn experiment(&self, name: &str) -> Option<&ExperimentRun> {
        self.experiments.iter().find(|run| run.name == name)
    }
}
