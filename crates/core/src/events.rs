//! EventBridge events for people and other systems (pure): what an applied
//! write and a change of attention state announce. The controller publishes
//! them through [`crate::ports::EventSink`] after the write group's tags
//! landed, so a repeated tick, which finds the attention tag already
//! written, announces nothing again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::plan::{Action, Attention};
use crate::report::ExperimentReport;

/// Every event's `source`.
pub const SOURCE: &str = "shadowpilot";

/// One event: PutEvents' `DetailType` and `Detail`, about `resource`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowEvent {
    pub detail_type: &'static str,
    /// The experiment's ARN, the event's `Resources`.
    pub resource: String,
    pub detail: EventDetail,
}

/// The `detail` of every shadowpilot event (`schemas/event-detail.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EventDetail {
    /// The inference experiment.
    pub experiment: String,
    pub arn: String,
    pub endpoint: Option<String>,
    pub policy: Option<String>,
    /// After the write, if it changed.
    pub sampling_percentage: Option<u8>,
    /// RFC 3339, UTC.
    pub end_time: Option<String>,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// Every attention state now (`failing`, `ready_to_promote`, ...).
    pub attention: Vec<String>,
    /// The states this write left behind (only on `Attention Cleared`):
    /// a shadow that was `failing` and was re-armed, an experiment that
    /// could not be extended and now can.
    pub cleared: Vec<String>,
    /// What was applied: `set_sampling` from/to, `extend_end_time` from/to,
    /// `stop_experiment`.
    pub change: Option<Change>,
    /// The checks that decided the verdict, with their intervals.
    pub decisive: Vec<DecisiveCheck>,
    /// The report's reason, in words.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    SetSampling {
        from: u8,
        to: u8,
    },
    /// RFC 3339, UTC.
    ExtendEndTime {
        from: String,
        to: String,
    },
    /// StopInferenceExperiment: `promote` or `remove_shadow`, with each
    /// variant's action (`Promote`, `Remove`, `Retain`) and the state it
    /// ends in (`Completed`, `Cancelled`).
    StopExperiment {
        stop: String,
        variant_actions: std::collections::BTreeMap<String, String>,
        desired_state: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DecisiveCheck {
    /// The policy metric, e.g. `latency_p99`.
    pub check: String,
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub limit: f64,
    pub unit: String,
    /// `p99 ratio 1.08 [0.97, 1.19] ≤ 1.20 (pass)`.
    pub message: String,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The detail-type an attention state announces when it is new.
fn attention_event(attention: Attention) -> &'static str {
    match attention {
        Attention::ReadyToPromote => "Shadow Ready To Promote",
        Attention::Failing => "Shadow Failing",
        Attention::FailingAtFloor => "Shadow Failing At Floor",
        Attention::CannotExtend => "Experiment Cannot Extend",
        Attention::Undecidable => "Experiment Undecidable",
    }
}

/// Announces that attention states ended, with the ones that did.
pub const ATTENTION_CLEARED: &str = "Attention Cleared";

/// The events of one entry whose write group landed: one per applied
/// action (`updated`), one per attention state not in `before` (the
/// attention tag as the tick read it), and one [`ATTENTION_CLEARED`] when
/// states in `before` are gone, so whoever was told of one is told it
/// ended.
pub fn events_for(
    entry: &ExperimentReport,
    arn: &str,
    before: &BTreeSet<Attention>,
    updated: bool,
) -> Vec<ShadowEvent> {
    let Some(steered) = entry.steered() else {
        return Vec::new();
    };
    let decisive: Vec<DecisiveCheck> = steered
        .verdict
        .decisive_check()
        .into_iter()
        .map(|check| DecisiveCheck {
            check: check.id.as_str().to_string(),
            outcome: check.outcome.as_str().to_string(),
            value: check.value,
            lower: check.lower,
            upper: check.upper,
            limit: check.limit,
            unit: check.unit.to_string(),
            message: check.to_string(),
        })
        .collect();
    let mut sampling = entry.sampling_percentage;
    let mut end_time = entry.end_time;
    let changes: Vec<Change> = if updated {
        entry
            .actions()
            .iter()
            .map(|action| match action {
                Action::SetSampling { from, to, .. } => {
                    sampling = Some(*to);
                    Change::SetSampling {
                        from: *from,
                        to: *to,
                    }
                }
                Action::ExtendEndTime { from, to, .. } => {
                    end_time = Some(*to);
                    Change::ExtendEndTime {
                        from: rfc3339(*from),
                        to: rfc3339(*to),
                    }
                }
                Action::Stop {
                    conclusion,
                    variant_actions,
                    desired_state,
                } => Change::StopExperiment {
                    stop: conclusion.as_str().to_string(),
                    variant_actions: variant_actions
                        .iter()
                        .map(|(variant, action)| (variant.clone(), action.as_str().to_string()))
                        .collect(),
                    desired_state: desired_state.as_str().to_string(),
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let now: BTreeSet<Attention> = entry.attention().iter().copied().collect();
    let detail = |change: Option<Change>, cleared: Vec<String>| EventDetail {
        experiment: entry.name.clone(),
        arn: arn.to_string(),
        endpoint: entry.endpoint.clone(),
        policy: entry.policy.clone(),
        sampling_percentage: sampling,
        end_time: end_time.map(rfc3339),
        verdict: entry.verdict().as_str().to_string(),
        attention: entry
            .attention()
            .iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        cleared,
        change,
        decisive: decisive.clone(),
        reason: entry.reason(),
    };
    let mut events: Vec<ShadowEvent> = changes
        .into_iter()
        .map(|change| ShadowEvent {
            detail_type: match change {
                Change::SetSampling { .. } => "Shadow Sampling Changed",
                Change::ExtendEndTime { .. } => "Experiment Extended",
                Change::StopExperiment { .. } => "Experiment Stopped",
            },
            resource: arn.to_string(),
            detail: detail(Some(change), Vec::new()),
        })
        .collect();
    for attention in now.difference(before) {
        events.push(ShadowEvent {
            detail_type: attention_event(*attention),
            resource: arn.to_string(),
            detail: detail(None, Vec::new()),
        });
    }
    // Failing at the floor is failing still: moving between the two ends
    // neither.
    let failing = |states: &BTreeSet<Attention>| {
        states.contains(&Attention::Failing) || states.contains(&Attention::FailingAtFloor)
    };
    let cleared: Vec<String> = before
        .difference(&now)
        .filter(|a| !(a.is_failing() && failing(&now)))
        .map(|a| a.as_str().to_string())
        .collect();
    if !cleared.is_empty() {
        events.push(ShadowEvent {
            detail_type: ATTENTION_CLEARED,
            resource: arn.to_string(),
            detail: detail(None, cleared),
        });
    }
    events
}

/// The JSON Schema of [`EventDetail`], as committed in `schemas/`.
pub fn detail_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(EventDetail)).unwrap_or_default()
}
