//! Pure planning: (experiment, verdict, policy, now, next tick) → actions.
//! Stateless by design: everything it needs comes from what AWS reports now,
//! so a repeated tick finds nothing new to do.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::experiment::{Experiment, ExperimentUpdate, SamplingUpdate};
use crate::judge::{Outcome, Verdict};
use crate::policy::{duration, LoadedPolicy, OnFail, Policy};
use crate::schedule::chrono_duration;
use crate::MAX_EXPERIMENT_DURATION;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    SetSampling {
        from: u8,
        to: u8,
        reason: String,
    },
    ExtendEndTime {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reason: String,
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

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub attention: Vec<Attention>,
    /// Why nothing (more) is done, in words: baking, at the top, ...
    pub notes: Vec<String>,
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
    let ceiling = ramp.ceiling();
    let floor = ramp.effective_floor();
    let mut set = |to: u8, reason: String| {
        plan.actions.push(Action::SetSampling {
            from: current,
            to,
            reason,
        })
    };
    match outcome {
        Outcome::Fail if current <= floor => {
            plan.attention.push(Attention::FailingAtFloor);
            plan.notes
                .push(format!("failing at the floor {floor} %: cannot go lower"));
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
            set(to, format!("failing: down from {current} % to {to} %"));
        }
        _ if current > ceiling => set(
            ceiling,
            format!("{current} % is above the policy maximum {ceiling} %"),
        ),
        Outcome::Pass if current == ceiling => {
            plan.attention.push(Attention::ReadyToPromote);
            plan.notes.push(format!(
                "passing at the top step {ceiling} %: ready to promote"
            ));
        }
        Outcome::Pass => {
            let baked = now - experiment.last_modified;
            let needed = chrono_duration(ramp.bake_time);
            if baked < needed {
                plan.notes.push(format!(
                    "baking: {} of {} at {current} %",
                    duration::format(baked.to_std().unwrap_or_default()),
                    duration::format(ramp.bake_time)
                ));
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
                format!(
                    "passing for {} at {current} % (bake {}): up to {to} %",
                    duration::format(baked.to_std().unwrap_or_default()),
                    duration::format(ramp.bake_time)
                ),
            );
        }
        Outcome::Inconclusive => plan
            .notes
            .push(format!("inconclusive: holding at {current} %")),
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
    let still_climbing = experiment.sampling_percentage < policy.ramp.ceiling();
    let wants_time = match outcome {
        Outcome::Inconclusive => true,
        Outcome::Pass => still_climbing,
        Outcome::Fail => false,
    };
    if !wants_time {
        return;
    }
    // Thin evidence that still shows a check over its limit is a failing
    // shadow in a quiet hour: more time would only prolong it.
    if let Some(failed) = verdict.first_failed_check() {
        plan.notes.push(format!(
            "not extended: the evidence is thin but {}",
            failed.message
        ));
        return;
    }
    let Some(start) = experiment.start_time else {
        plan.attention.push(Attention::CannotExtend);
        plan.notes
            .push("cannot extend: the experiment reports no StartTime".into());
        return;
    };
    let max_duration = extend.max_duration.min(MAX_EXPERIMENT_DURATION);
    let cap = start + chrono_duration(max_duration);
    let wanted = end + chrono_duration(extend.by);
    let to = wanted.min(cap);
    if to <= end || to <= now {
        plan.attention.push(Attention::CannotExtend);
        plan.notes.push(format!(
            "cannot extend: EndTime {} is already at the cap StartTime + {}",
            end.format("%Y-%m-%d %H:%M UTC"),
            duration::format(max_duration)
        ));
        return;
    }
    let capped = if to < wanted {
        format!(", capped at StartTime + {}", duration::format(max_duration))
    } else {
        String::new()
    };
    plan.actions.push(Action::ExtendEndTime {
        from: end,
        to,
        reason: format!(
            "{} and ends {}, before the next chance to write + margin {}: extended by {}{capped}",
            match outcome {
                Outcome::Pass => "passing below the top step",
                _ => "inconclusive",
            },
            end.format("%Y-%m-%d %H:%M UTC"),
            duration::format(extend.margin),
            duration::format((to - end).to_std().unwrap_or_default()),
        ),
    });
}

/// The latest moment the next write can happen: the next tick, or, when the
/// policy's change windows are shut then, the first tick after the next
/// opening. Extensions are planned against it, so an experiment does not
/// run out over a weekend of closed windows.
pub fn next_write_opportunity(
    policy: &LoadedPolicy,
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

/// Why writes are not allowed for this experiment now, if they are not:
/// held by tag, or outside every change window of the policy.
pub fn write_blocked(
    experiment: &Experiment,
    policy: &LoadedPolicy,
    now: DateTime<Utc>,
) -> Option<String> {
    if experiment.is_held() {
        return Some(format!("held by tag {}=true", crate::experiment::HOLD_TAG));
    }
    if policy.change_windows.is_empty() || policy.change_windows.iter().any(|w| w.is_open(now)) {
        return None;
    }
    Some(format!(
        "outside the change windows of policy {} ({})",
        policy.name(),
        policy
            .change_windows
            .iter()
            .map(|w| format!("{} for {}", w.expression, duration::format(w.duration)))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
