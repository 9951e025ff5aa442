//! Pure planning: (experiment, timeline, verdict, policy, now, next chance
//! to write) → actions, tag changes and notes. Everything it needs comes
//! from what AWS reports now and the few tags shadowpilot keeps on the
//! experiment, so a repeated tick finds nothing new to do. Reasons are
//! data; the report words them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evidence::{StepOrigin, Timeline};
use crate::experiment::{
    tag_time, Experiment, ExperimentUpdate, FailedMark, SamplingUpdate, StepMark, StopState,
    VariantAction, ATTENTION_TAG, FAILED_TAG, MAX_TAG_VALUE_CHARS, SINCE_TAG, STEPS_TAG, STEP_TAG,
};
use crate::judge::{Blocker, CheckId, Outcome, Reason, Verdict};
use crate::policy::{AtCap, OnFail, Policy, ProductionAction, Promote};
use crate::schedule::chrono_duration;
use crate::stats::TimeToDecision;
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
    /// StopInferenceExperiment: the end of the test. Never planned with
    /// another action.
    Stop {
        conclusion: Conclusion,
        /// Every variant of the experiment and what becomes of it.
        variant_actions: BTreeMap<String, VariantAction>,
        desired_state: StopState,
    },
}

impl Conclusion {
    /// The label reports and events carry: `promote`, `remove_shadow`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Promote { .. } => "promote",
            Self::RemoveShadow { .. } => "remove_shadow",
        }
    }
}

/// Why shadowpilot ends the test.
#[derive(Debug, Clone, PartialEq)]
pub enum Conclusion {
    /// The 100 % step's own evidence passes, and the step has run for
    /// `passed_for` ≥ `after` (or the experiment ends first: `ends`).
    Promote {
        passed_for: Duration,
        after: Duration,
        /// Set when promoted at the last tick before this end, short of
        /// `after`.
        ends: Option<DateTime<Utc>>,
    },
    /// failing_at_floor has held for `failing_for` ≥ `after`.
    RemoveShadow {
        mark: Option<FailedMark>,
        failing_for: Duration,
        after: Duration,
    },
}

/// Why the sampling percentage moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplingChange {
    /// A check failed just now: down one step, or to the floor.
    Failing,
    /// Latched by an earlier failure: down until the floor.
    Latched,
    /// Set above what the policy ever allows.
    AboveMaximum { ceiling: u8 },
    /// Passing, and at the step for at least the dwell.
    Passing { dwelt: Duration, dwell: Duration },
    /// Inconclusive only for lack of evidence, every estimate on the passing
    /// side: the next step gathers it faster (`minutes` is `T` here).
    ForEvidence { minutes: f64, dwell: Duration },
}

/// Why and how far the end time moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extension {
    pub because: NeedsTime,
    pub margin: Duration,
    /// `T`, the minutes the evidence still needs, when known.
    pub needs_minutes: Option<f64>,
    /// The cap that shortened it: StartTime + this.
    pub capped_at: Option<Duration>,
}

/// Why an experiment needs more time: a failing one never gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedsTime {
    /// Passing, below the top step.
    StillClimbing,
    Inconclusive,
    /// Passing at 100 %, to be promoted at this time.
    AwaitingPromotion {
        due: DateTime<Utc>,
    },
}

/// Why nothing (more) is done.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    FailingAtFloor {
        floor: u8,
    },
    /// Latched: `shadowpilot:failed` holds the check and when it failed.
    Latched {
        mark: FailedMark,
    },
    /// `rearm_after` has passed since the latch: re-armed.
    Rearmed {
        mark: FailedMark,
    },
    ReadyToPromote {
        ceiling: u8,
    },
    /// Promotion is on: the 100 % step has passed for `passed_for` of
    /// `after`; `ends_first` when the experiment cannot run until `due`.
    PromotionDue {
        passed_for: Duration,
        after: Duration,
        due: DateTime<Utc>,
        ends_first: Option<DateTime<Utc>>,
    },
    /// The last tick before the experiment ends, short of the promotion
    /// time, and the policy says report: it is left to end.
    PromotionOutrun {
        due: DateTime<Utc>,
        ends: DateTime<Utc>,
    },
    /// Stopping on failure is on: failing at the floor since `since`.
    StopDue {
        since: DateTime<Utc>,
        after: Duration,
        due: DateTime<Utc>,
    },
    Dwelling {
        dwelt: Duration,
        dwell: Duration,
        at: u8,
    },
    Holding {
        at: u8,
    },
    /// Even at the policy's top sampling the evidence needs longer than the
    /// experiment may still run (`minutes` infinite: the estimate sits on
    /// the margin).
    Undecidable {
        minutes: f64,
        left: Duration,
    },
    /// A check can never decide as the experiment is set up (no capture,
    /// nothing pairs, no numbers): not extended for it.
    Blocked {
        check: CheckId,
        blocker: Blocker,
    },
    NoStartTime,
    AtCap {
        end: DateTime<Utc>,
        max_duration: Duration,
    },
    /// The sampling was changed by someone else; the step tag is rewritten
    /// to start the step then.
    ChangedElsewhere {
        tagged: u8,
        now: u8,
    },
}

/// States an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Passing at the policy's top step: time to promote the shadow.
    ReadyToPromote,
    /// A check failed (now or earlier, latched): stepped down to the floor.
    Failing,
    /// Failing and already at the floor: a person must look.
    FailingAtFloor,
    /// It needs more time but the 30-day or policy cap stops it.
    CannotExtend,
    /// The evidence needs longer than the cap leaves, even at the top
    /// sampling, or a check can never decide as the experiment is set up
    /// (an output check without capture or pairs): no more extensions.
    Undecidable,
}

impl Attention {
    pub const ALL: [Self; 5] = [
        Self::ReadyToPromote,
        Self::Failing,
        Self::FailingAtFloor,
        Self::CannotExtend,
        Self::Undecidable,
    ];

    /// `failing` or `failing_at_floor`.
    pub fn is_failing(self) -> bool {
        matches!(self, Self::Failing | Self::FailingAtFloor)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadyToPromote => "ready_to_promote",
            Self::Failing => "failing",
            Self::FailingAtFloor => "failing_at_floor",
            Self::CannotExtend => "cannot_extend",
            Self::Undecidable => "undecidable",
        }
    }

    /// The states an [`ATTENTION_TAG`] value names; unknown names (a newer
    /// version's, or a person's edit) are left out.
    pub fn parse_tag(value: &str) -> BTreeSet<Self> {
        value
            .split(',')
            .filter_map(|name| Self::ALL.into_iter().find(|a| a.as_str() == name.trim()))
            .collect()
    }

    /// The tag value for `states`, or `None` when there are none.
    pub fn tag_value(states: &[Self]) -> Option<String> {
        let set: BTreeSet<Self> = states.iter().copied().collect();
        (!set.is_empty()).then(|| set.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(","))
    }
}

/// What the experiment's tag says its attention was at the last write.
pub fn recorded_attention(experiment: &Experiment) -> BTreeSet<Attention> {
    experiment
        .tags
        .get(ATTENTION_TAG)
        .map(|value| Attention::parse_tag(value))
        .unwrap_or_default()
}

/// The attention tag follows the plan's states; planned only where it
/// differs from what the experiment carries.
fn record_attention(experiment: &Experiment, plan: &mut Plan) {
    let current = experiment.tags.get(ATTENTION_TAG);
    match Attention::tag_value(&plan.attention) {
        Some(value) if current != Some(&value) => {
            plan.tags.set.insert(ATTENTION_TAG.to_string(), value);
        }
        None if current.is_some() => {
            plan.tags.remove.insert(ATTENTION_TAG.to_string());
        }
        _ => {}
    }
}

/// Tag changes on the experiment: AddTags for `set`, DeleteTags for
/// `remove`, sent after the update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagChanges {
    pub set: BTreeMap<String, String>,
    pub remove: BTreeSet<String>,
}

impl TagChanges {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub tags: TagChanges,
    pub attention: Vec<Attention>,
    /// Why nothing (more) is done: dwelling, at the top, ...
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
                Action::Stop { .. } => {}
            }
        }
        (!update.is_empty()).then_some(update)
    }

    /// The StopInferenceExperiment this plan ends the test with, if any.
    pub fn stop(&self) -> Option<&Action> {
        self.actions
            .iter()
            .find(|action| matches!(action, Action::Stop { .. }))
    }

    /// The tag changes only, without the ones that change nothing.
    pub fn tags_for(&self, experiment: &Experiment) -> TagChanges {
        TagChanges {
            set: self
                .tags
                .set
                .iter()
                .filter(|(k, v)| experiment.tags.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            remove: self
                .tags
                .remove
                .iter()
                .filter(|k| experiment.tags.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}

/// When the next write can happen and how often ticks come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub now: DateTime<Utc>,
    /// The next tick, or the first one in the next change window.
    pub next_write: DateTime<Utc>,
    pub tick: chrono::Duration,
}

/// Plans the next step of a Running experiment.
pub fn plan(
    experiment: &Experiment,
    timeline: &Timeline,
    verdict: &Verdict,
    policy: &Policy,
    cadence: Cadence,
) -> Plan {
    let mut plan = Plan::default();
    let now = cadence.now;
    let latch = experiment.failed_mark();
    if let (Some(mark), Some(after)) = (&latch, policy.ramp.rearm_after) {
        // A latch whose time cannot be read is never re-armed by itself.
        if mark.at != DateTime::<Utc>::MIN_UTC && now - mark.at >= chrono_duration(after) {
            plan.tags.remove.insert(FAILED_TAG.to_string());
            plan.tags.set.insert(SINCE_TAG.to_string(), tag_time(now));
            plan.notes.push(Note::Rearmed { mark: mark.clone() });
            // The verdict was reached on the old evidence; the next tick
            // judges the restarted sequence.
            rewrite_step_tag(timeline, &mut plan);
            record_attention(experiment, &mut plan);
            return plan;
        }
    }
    if let Some(mark) = latch {
        plan.notes.push(Note::Latched { mark: mark.clone() });
        step_down(experiment, policy, SamplingChange::Latched, &mut plan);
        if plan.attention.contains(&Attention::FailingAtFloor) {
            plan_failure_stop(experiment, timeline, policy, Some(mark), now, &mut plan);
        }
    } else if verdict.outcome == Outcome::Fail {
        let check = verdict
            .decisive_check()
            .map_or("unknown", |c| c.id.as_str());
        plan.tags.set.insert(
            FAILED_TAG.to_string(),
            FailedMark {
                check: check.to_string(),
                at: now,
            }
            .to_string(),
        );
        step_down(experiment, policy, SamplingChange::Failing, &mut plan);
        if plan.attention.contains(&Attention::FailingAtFloor) {
            // The latch starts now: `after` counts from this tick.
            plan_failure_stop(experiment, timeline, policy, None, now, &mut plan);
        }
    } else {
        plan_sampling(experiment, timeline, verdict, policy, now, &mut plan);
        let awaiting = plan_promotion(experiment, timeline, verdict, policy, cadence, &mut plan);
        if plan.stop().is_none() {
            plan_extension(experiment, verdict, policy, cadence, awaiting, &mut plan);
        }
    }
    let changed_to = plan.actions.iter().find_map(|a| match a {
        Action::SetSampling { to, .. } => Some(*to),
        _ => None,
    });
    match changed_to {
        Some(to) => record_step(timeline, to, now, true, &mut plan),
        None => rewrite_step_tag(timeline, &mut plan),
    }
    record_attention(experiment, &mut plan);
    plan
}

/// A sampling change starts a new step: the step tag names it, and the
/// step it ends joins the history (oldest dropped to fit a tag value).
fn record_step(
    timeline: &Timeline,
    to: u8,
    now: DateTime<Utc>,
    ending_current: bool,
    plan: &mut Plan,
) {
    let known = if ending_current {
        &timeline.segments[..]
    } else {
        &timeline.segments[..timeline.segments.len().saturating_sub(1)]
    };
    plan.tags.set.insert(
        STEP_TAG.to_string(),
        StepMark {
            percentage: to,
            since: now,
        }
        .to_string(),
    );
    let mut history: Vec<String> = known
        .iter()
        .map(|segment| {
            StepMark {
                percentage: segment.percentage,
                since: segment.start,
            }
            .to_string()
        })
        .collect();
    while history.iter().map(|h| h.len() + 1).sum::<usize>() > MAX_TAG_VALUE_CHARS + 1 {
        history.remove(0);
    }
    plan.tags
        .set
        .insert(STEPS_TAG.to_string(), history.join(" "));
}

/// Without a sampling change, the tag only needs writing when it does not
/// describe the current step: none yet, or someone else changed it.
fn rewrite_step_tag(timeline: &Timeline, plan: &mut Plan) {
    match timeline.step_origin {
        StepOrigin::Tagged => {}
        StepOrigin::Untagged => {
            plan.tags
                .set
                .insert(STEP_TAG.to_string(), timeline.step_mark().to_string());
        }
        StepOrigin::ChangedElsewhere { tagged } => {
            plan.notes.push(Note::ChangedElsewhere {
                tagged,
                now: timeline.percentage,
            });
            let since = timeline.step_began;
            record_step(timeline, timeline.percentage, since, false, plan);
        }
    }
}

fn step_down(experiment: &Experiment, policy: &Policy, why: SamplingChange, plan: &mut Plan) {
    let ramp = &policy.ramp;
    let current = experiment.sampling_percentage;
    if current <= ramp.floor {
        plan.attention.push(Attention::FailingAtFloor);
        plan.notes.push(Note::FailingAtFloor { floor: ramp.floor });
        return;
    }
    plan.attention.push(Attention::Failing);
    let to = match ramp.on_fail {
        OnFail::Floor => ramp.floor,
        OnFail::StepDown => ramp
            .steps
            .iter()
            .rev()
            .copied()
            .find(|step| *step < current)
            .unwrap_or(ramp.floor)
            .max(ramp.floor),
    }
    .min(ramp.ceiling);
    plan.actions.push(Action::SetSampling {
        from: current,
        to,
        why,
    });
}

/// Both variants' names, with their actions.
fn variant_actions(
    experiment: &Experiment,
    shadow: VariantAction,
    production: VariantAction,
) -> BTreeMap<String, VariantAction> {
    BTreeMap::from([
        (experiment.shadow_variant.clone(), shadow),
        (experiment.production_variant.clone(), production),
    ])
}

/// The moment the current step's time counts from: its tag, or this tick
/// when the tag is only being written now.
fn step_tagged_since(timeline: &Timeline, now: DateTime<Utc>) -> DateTime<Utc> {
    match timeline.step_origin {
        StepOrigin::Tagged => timeline.step_start,
        StepOrigin::Untagged | StepOrigin::ChangedElsewhere { .. } => now,
    }
}

/// failing_at_floor, with stopping on failure in the policy: the shadow is
/// removed once it has held for `after`, counted from the later of the
/// floor step's tag and the latch (`None`: the latch is written now).
fn plan_failure_stop(
    experiment: &Experiment,
    timeline: &Timeline,
    policy: &Policy,
    mark: Option<FailedMark>,
    now: DateTime<Utc>,
    plan: &mut Plan,
) {
    let Some(on_failure) = policy.stop.on_failure else {
        return;
    };
    let latched_at = mark.as_ref().map_or(now, |m| m.at);
    let since = step_tagged_since(timeline, now).max(latched_at);
    let failing_for = (now - since).to_std().unwrap_or_default();
    if failing_for < on_failure.after {
        plan.notes.push(Note::StopDue {
            since,
            after: on_failure.after,
            due: since + chrono_duration(on_failure.after),
        });
        return;
    }
    plan.actions.push(Action::Stop {
        conclusion: Conclusion::RemoveShadow {
            mark,
            failing_for,
            after: on_failure.after,
        },
        variant_actions: variant_actions(experiment, VariantAction::Remove, VariantAction::Retain),
        desired_state: StopState::Cancelled,
    });
}

/// The latest the experiment can run: its end time, or the cap extensions
/// can reach.
fn last_possible_end(experiment: &Experiment, policy: &Policy) -> Option<DateTime<Utc>> {
    let end = experiment.end_time?;
    if !policy.extend.enabled {
        return Some(end);
    }
    let Some(start) = experiment.start_time else {
        return Some(end);
    };
    let max_duration = policy.extend.max_duration.min(MAX_EXPERIMENT_DURATION);
    Some(end.max(start + chrono_duration(max_duration)))
}

/// Passing at 100 % with promotion in the policy: promote once the step
/// has run for `after_passing` from its tag; before that, the time it is
/// due (the extension keeps the experiment running until then).
fn plan_promotion(
    experiment: &Experiment,
    timeline: &Timeline,
    verdict: &Verdict,
    policy: &Policy,
    cadence: Cadence,
    plan: &mut Plan,
) -> Option<DateTime<Utc>> {
    let promote: &Promote = policy.stop.promote.as_ref()?;
    if verdict.outcome != Outcome::Pass
        || experiment.sampling_percentage != 100
        || policy.ramp.ceiling != 100
        || !plan.actions.is_empty()
    {
        return None;
    }
    let now = cadence.now;
    let since = step_tagged_since(timeline, now);
    let passed_for = (now - since).to_std().unwrap_or_default();
    let due = since + chrono_duration(promote.after_passing);
    let production = match promote.production {
        ProductionAction::Retain => VariantAction::Retain,
        ProductionAction::Remove => VariantAction::Remove,
    };
    let mut stop = |ends: Option<DateTime<Utc>>| {
        plan.actions.push(Action::Stop {
            conclusion: Conclusion::Promote {
                passed_for,
                after: promote.after_passing,
                ends,
            },
            variant_actions: variant_actions(experiment, VariantAction::Promote, production),
            desired_state: StopState::Completed,
        });
    };
    if passed_for >= promote.after_passing {
        stop(None);
        return None;
    }
    let ends = last_possible_end(experiment, policy);
    let ends_first = ends.filter(|end| *end <= due);
    // The last tick: the next chance to write comes after the end.
    if let Some(end) = ends.filter(|end| cadence.next_write >= *end) {
        match promote.at_cap {
            AtCap::Promote => {
                stop(Some(end));
                return None;
            }
            // Still awaiting: the extension finds the cap and says so.
            AtCap::Report => {
                plan.notes.push(Note::PromotionOutrun { due, ends: end });
                return Some(due);
            }
        }
    }
    plan.notes.push(Note::PromotionDue {
        passed_for,
        after: promote.after_passing,
        due,
        ends_first,
    });
    Some(due)
}

fn next_step(policy: &Policy, current: u8) -> u8 {
    let ramp = &policy.ramp;
    ramp.steps
        .iter()
        .copied()
        .find(|step| *step > current)
        .unwrap_or(ramp.ceiling)
        .min(ramp.ceiling)
}

/// Every check undecided only for want of evidence, none failing, every
/// estimate on the passing side of its margin.
/// Whether an inconclusive verdict lets the policy take the next step to
/// gather evidence faster (the dwell aside): evidence ramps are on, every
/// check lacks only evidence with its estimate on the passing side, and
/// waiting here would take longer than the dwell.
pub fn evidence_ramp_justified(verdict: &Verdict, policy: &Policy) -> bool {
    let minutes = minutes_of(verdict.time_to_decision());
    policy.ramp.evidence_ramps
        && verdict.outcome == Outcome::Inconclusive
        && minutes > policy.ramp.bake_time.as_secs_f64() / 60.0
        && only_lacks_evidence(verdict)
}

fn only_lacks_evidence(verdict: &Verdict) -> bool {
    !verdict.checks.is_empty()
        && verdict.checks.iter().all(|check| match check.outcome {
            Outcome::Fail => false,
            Outcome::Pass => true,
            // An estimate must already lie on the passing side: a check with
            // no estimate yet (its first periods still running) may be the
            // regression. Only "too little traffic for a period" has none
            // and is cured by the step itself.
            Outcome::Inconclusive => match &check.reason {
                Some(Reason::TooLittleTraffic { .. }) => check.passing_side != Some(false),
                Some(reason) => reason.is_lack_of_evidence() && check.passing_side == Some(true),
                None => false,
            },
        })
}

fn minutes_of(time: Option<TimeToDecision>) -> f64 {
    match time {
        Some(TimeToDecision::Needs { minutes, .. }) => minutes,
        Some(TimeToDecision::Undecidable) => f64::INFINITY,
        None => 0.0,
    }
}

fn plan_sampling(
    experiment: &Experiment,
    timeline: &Timeline,
    verdict: &Verdict,
    policy: &Policy,
    now: DateTime<Utc>,
    plan: &mut Plan,
) {
    let ramp = &policy.ramp;
    let current = experiment.sampling_percentage;
    let ceiling = ramp.ceiling;
    let dwell = ramp.bake_time;
    let dwelt = (now - timeline.step_start).to_std().unwrap_or_default();
    let mut set = |to: u8, why: SamplingChange| {
        plan.actions.push(Action::SetSampling {
            from: current,
            to,
            why,
        })
    };
    if current > ceiling {
        set(ceiling, SamplingChange::AboveMaximum { ceiling });
        return;
    }
    match verdict.outcome {
        Outcome::Pass if current == ceiling => {
            plan.attention.push(Attention::ReadyToPromote);
            plan.notes.push(Note::ReadyToPromote { ceiling });
        }
        Outcome::Pass | Outcome::Inconclusive if dwelt < dwell && current < ceiling => {
            plan.notes.push(Note::Dwelling {
                dwelt,
                dwell,
                at: current,
            });
            if verdict.outcome == Outcome::Inconclusive {
                plan.notes.push(Note::Holding { at: current });
            }
        }
        Outcome::Pass => set(
            next_step(policy, current),
            SamplingChange::Passing { dwelt, dwell },
        ),
        Outcome::Inconclusive => {
            if current < ceiling && evidence_ramp_justified(verdict, policy) {
                let minutes = minutes_of(verdict.time_to_decision());
                set(
                    next_step(policy, current),
                    SamplingChange::ForEvidence { minutes, dwell },
                );
            } else {
                plan.notes.push(Note::Holding { at: current });
            }
        }
        Outcome::Fail => {}
    }
}

fn plan_extension(
    experiment: &Experiment,
    verdict: &Verdict,
    policy: &Policy,
    cadence: Cadence,
    awaiting_promotion: Option<DateTime<Utc>>,
    plan: &mut Plan,
) {
    let extend = &policy.extend;
    let Some(end) = experiment.end_time else {
        return;
    };
    let Cadence {
        now,
        next_write,
        tick,
    } = cadence;
    let margin = chrono_duration(extend.margin);
    if !extend.enabled || end >= next_write + margin {
        return;
    }
    let current = experiment.sampling_percentage;
    let climbing = current < policy.ramp.ceiling;
    let (because, needs) = match verdict.outcome {
        Outcome::Inconclusive => (NeedsTime::Inconclusive, verdict.time_to_decision()),
        // The rest of the climb: one dwell per step still to take.
        Outcome::Pass if climbing => {
            let ceiling = policy.ramp.ceiling;
            let mut steps_left = policy
                .ramp
                .steps
                .iter()
                .filter(|s| **s > current && **s <= ceiling)
                .count();
            if !policy.ramp.steps.contains(&ceiling) {
                steps_left += 1;
            }
            let steps_left = steps_left.max(1);
            let minutes = policy.ramp.bake_time.as_secs_f64() / 60.0 * steps_left as f64;
            (
                NeedsTime::StillClimbing,
                Some(TimeToDecision::Needs {
                    extra: 0.0,
                    minutes,
                }),
            )
        }
        // Passing at the top with promotion on: until it is due.
        Outcome::Pass => match awaiting_promotion {
            Some(due) => (
                NeedsTime::AwaitingPromotion { due },
                Some(TimeToDecision::Needs {
                    extra: 0.0,
                    minutes: (due - now).num_seconds().max(0) as f64 / 60.0,
                }),
            ),
            None => return,
        },
        Outcome::Fail => return,
    };
    let Some(start) = experiment.start_time else {
        plan.attention.push(Attention::CannotExtend);
        plan.notes.push(Note::NoStartTime);
        return;
    };
    let max_duration = extend.max_duration.min(MAX_EXPERIMENT_DURATION);
    let cap = start + chrono_duration(max_duration);
    let left = (cap - now).to_std().unwrap_or_default();
    if because == NeedsTime::Inconclusive {
        if let Some((check, blocker)) = verdict.blocked_check() {
            plan.attention.push(Attention::Undecidable);
            plan.notes.push(Note::Blocked { check, blocker });
            return;
        }
        let at_top = verdict.time_at_ceiling();
        let hopeless = match at_top {
            Some(TimeToDecision::Undecidable) => Some(f64::INFINITY),
            Some(TimeToDecision::Needs { minutes, .. })
                if minutes.is_finite() && minutes * 60.0 > left.as_secs_f64() =>
            {
                Some(minutes)
            }
            _ => None,
        };
        if let Some(minutes) = hopeless {
            plan.attention.push(Attention::Undecidable);
            plan.notes.push(Note::Undecidable { minutes, left });
            return;
        }
    }
    let by = chrono_duration(extend.by);
    let needs_minutes = match needs {
        Some(TimeToDecision::Needs { minutes, .. }) if minutes.is_finite() => Some(minutes),
        _ => None,
    };
    let tick_secs = tick.num_seconds().max(60);
    let sized = needs_minutes.map(|minutes| {
        let ticks = (1.25 * minutes * 60.0 / tick_secs as f64).ceil().max(0.0);
        // Far beyond any cap; keeps the multiplication finite.
        let ticks = ticks.min(1e6) as i64;
        now + chrono::Duration::seconds(tick_secs * ticks + tick_secs)
    });
    let floor = next_write + margin + chrono::Duration::seconds(tick_secs);
    let wanted = match sized {
        Some(sized) => sized.max(floor).min(end + by),
        None => end + by,
    };
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
            needs_minutes,
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

/// Whether writes (updates and tags alike) are allowed for this experiment
/// now.
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
