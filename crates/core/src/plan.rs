//! Pure planning: (experiment, verdict, policy, now, next tick) → actions.
//! Stateless by design: everything it needs comes from what AWS reports now,
//! so a repeated tick finds nothing new to do. Reasons are data; the report
//! words them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::experiment::{Experiment, ExperimentUpdate, SamplingUpdate};
use crate::judge::{CheckResult, Outcome, Verdict};
use crate::policy::{OnFail, Policy};
use crate::schedule::chrono_duration;
use crate::MAX_EXPERIMENT_DURATION;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SetSampling {
        from: u8,
        to: u8,
        why: SamplingChange,
    },
    ExtendEndTime {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        why: Extension,
    },
}

/// Why the sampling percentage moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingChange {
    /// Failing: down one step, or to the floor.
    Failing,
    /// Set above what the policy ever allows.
    AboveMaximum { ceiling: u8 },
    /// Passing for at least the bake time.
    Passing {
        baked: Duration,
        bake_time: Duration,
    },
}

/// Why and how far the end time moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    pub because: NeedsTime,
    pub margin: Duration,
    /// The cap that shortened it: StartTime + this.
    pub capped_at: Option<Duration>,
}

/// Why an experiment needs more time: a failing one never gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedsTime {
    /// Passing, below the top step.
    StillClimbing,
    Inconclusive,
}

/// Why nothing (more) is done.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    FailingAtFloor {
        floor: u8,
    },
    ReadyToPromote {
        ceiling: u8,
    },
    Baking {
        baked: Duration,
        bake_time: Duration,
        at: u8,
    },
    Holding {
        at: u8,
    },
    /// Thin evidence already shows this check over its limit.
    NotExtendedWhileFailing {
        check: Box<CheckResult>,
    },
    NoStartTime,
    AtCap {
        end: DateTime<Utc>,
        max_duration: Duration,
    },
}

/// States an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Passing at the policy's top step: time to promote the shadow.
    ReadyToPromote,
    /// Failing and already at the floor: a person must look.
    FailingAtFloor,
    /// It needs more time but the 30-day or policy cap stops it.
    CannotExtend,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub attention: Vec<Attention>,
    /// Why nothing (more) is done: baking, at the top, ...
    pub notes: Vec<Note>,
}

impl Plan {
    /// The single UpdateInferenceExperiment this plan needs, if any.
    pub fn update_for(&self, experiment: &Experiment) -> Option<ExperimentUpdate> {
        let mut update = ExperimentUpdate {
            name: experiment.name.clone(),
            sampling: None,
            end_time: None,
        };
        for action in &self.actions {
            match action {
                Action::SetSampling { to, .. } => {
                    update.sampling = Some(SamplingUpdate {
                        source_variant: experiment.production_variant.clone(),
                        shadow_variant: experiment.shadow_variant.clone(),
                        percentage: *to,
                    })
                }
                Action::ExtendEndTime { to, .. } => update.end_time = Some(*to),
            }
        }
        (!update.is_empty()).then_some(update)
    }
}

/// Plans the next step of a Running experiment.
pub fn plan(
    experiment: &Experiment,
    verdict: &Verdict,
    policy: &Policy,
    now: DateTime<Utc>,
    next_tick: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    plan_sampling(experiment, verdict.outcome, policy, now, &mut plan);
    plan_extension(experiment, verdict, policy, now, next_tick, &mut plan);
    plan
}

fn plan_sampling(
    experiment: &Experiment,
    outcome: Outcome,
    policy: &Policy,
    now: DateTime<Utc>,
    plan: &mut Plan,
) {
    let ramp = &policy.ramp;
    let current = experiment.sampling_percentage;
    let (ceiling, floor) = (ramp.ceiling, ramp.floor);
    let mut set = |to: u8, why: SamplingChange| {
        plan.actions.push(Action::SetSampling {
            from: current,
            to,
            why,
        })
    };
    match outcome {
        Outcome::Fail if current <= floor => {
            plan.attention.push(Attention::FailingAtFloor);
            plan.notes.push(Note::FailingAtFloor { floor });
        }
        Outcome::Fail => {
            let to = match ramp.on_fail {
                OnFail::Floor => floor,
                OnFail::StepDown => ramp
                    .steps
                    .iter()
                    .rev()
                    .copied()
                    .find(|step| *step < current)
                    .unwrap_or(floor)
                    .max(floor),
            }
            .min(ceiling);
            set(to, SamplingChange::Failing);
        }
        _ if current > ceiling => set(ceiling, SamplingChange::AboveMaximum { ceiling }),
        Outcome::Pass if current == ceiling => {
            plan.attention.push(Attention::ReadyToPromote);
            plan.notes.push(Note::ReadyToPromote { ceiling });
        }
        Outcome::Pass => {
            let baked = now - experiment.last_modified;
            let needed = chrono_duration(ramp.bake_time);
            let baked_for = baked.to_std().unwrap_or_default();
            if baked < needed {
                plan.notes.push(Note::Baking {
                    baked: baked_for,
                    bake_time: ramp.bake_time,
                    at: current,
                });
                return;
            }
            let to = ramp
                .steps
                .iter()
                .copied()
                .find(|step| *step > current)
                .unwrap_or(ceiling)
                .min(ceiling);
            set(
                to,
                SamplingChange::Passing {
                    baked: baked_for,
                    bake_time: ramp.bake_time,
                },
            );
        }
        Outcome::Inconclusive => plan.notes.push(Note::Holding { at: current }),
    }
}

fn plan_extension(
    experiment: &Experiment,
    verdict: &Verdict,
    policy: &Policy,
    now: DateTime<Utc>,
    next_tick: DateTime<Utc>,
    plan: &mut Plan,
) {
    let extend = &policy.extend;
    let Some(end) = experiment.end_time else {
        return;
    };
    let deadline = next_tick + chrono_duration(extend.margin);
    if !extend.enabled || end >= deadline {
        return;
    }
    let outcome = verdict.outcome;
    let still_climbing = experiment.sampling_percentage < policy.ramp.ceiling;
    let because = match outcome {
        Outcome::Inconclusive => NeedsTime::Inconclusive,
        Outcome::Pass if still_climbing => NeedsTime::StillClimbing,
        Outcome::Pass | Outcome::Fail => return,
    };
    // Thin evidence that still shows a check over its limit is a failing
    // shadow in a quiet hour: more time would only prolong it.
    if let Some(failed) = verdict.first_failed_check() {
        plan.notes.push(Note::NotExtendedWhileFailing {
            check: Box::new(failed.clone()),
        });
        return;
    }
    let Some(start) = experiment.start_time else {
        plan.attention.push(Attention::CannotExtend);
        plan.notes.push(Note::NoStartTime);
        return;
    };
    let max_duration = extend.max_duration.min(MAX_EXPERIMENT_DURATION);
    let cap = start + chrono_duration(max_duration);
    let wanted = end + chrono_duration(extend.by);
    let to = wanted.min(cap);
    if to <= end || to <= now {
        plan.attention.push(Attention::CannotExtend);
        plan.notes.push(Note::AtCap { end, max_duration });
        return;
    }
    plan.actions.push(Action::ExtendEndTime {
        from: end,
        to,
        why: Extension {
            because,
            margin: extend.margin,
            capped_at: (to < wanted).then_some(max_duration),
        },
    });
}

/// The latest moment the next write can happen: the next tick, or, when the
/// policy's change windows are shut then, the first tick after the next
/// opening. Extensions are planned against it, so an experiment does not
/// run out over a weekend of closed windows.
pub(crate) fn next_write_opportunity(
    policy: &Policy,
    now: DateTime<Utc>,
    next_tick: DateTime<Utc>,
) -> DateTime<Utc> {
    let windows = &policy.change_windows;
    if windows.is_empty() || windows.iter().any(|w| w.is_open(next_tick)) {
        return next_tick;
    }
    let tick_interval = (next_tick - now).max(chrono::Duration::zero());
    windows
        .iter()
        .filter_map(|w| w.next_opening_after(next_tick))
        .min()
        .map_or(next_tick, |opening| opening + tick_interval)
}

/// Why a planned write may not be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteBlock {
    /// The tag `shadowpilot:hold=true`.
    Held,
    /// Every change window of the policy is shut.
    OutsideChangeWindows {
        policy: String,
        /// (cron expression, how long it stays open)
        windows: Vec<(String, Duration)>,
    },
}

/// Whether writes are allowed for this experiment now.
pub(crate) fn write_blocked(
    experiment: &Experiment,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<WriteBlock> {
    if experiment.is_held() {
        return Some(WriteBlock::Held);
    }
    if policy.change_windows.is_empty() || policy.change_windows.iter().any(|w| w.is_open(now)) {
        return None;
    }
    Some(WriteBlock::OutsideChangeWindows {
        policy: policy.name.clone(),
        windows: policy
            .change_windows
            .iter()
            .map(|w| (w.expression.clone(), w.duration))
            .collect(),
    })
}
