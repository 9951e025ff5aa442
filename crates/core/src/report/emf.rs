//! A tick's report as CloudWatch Embedded Metric Format documents: one JSON
//! object per line, `_aws` at the top level, which CloudWatch Logs turns
//! into metrics in the `shadowpilot` namespace without a PutMetricData
//! call. Pure: the caller prints the lines (the Lambda on stdout, the CLI
//! only with `--emf`).
//!
//! - One document without dimensions: experiments by verdict and by
//!   attention state, writes planned / applied / rejected / deferred, AWS
//!   errors, the tick's duration and, for scheduled runs, `Heartbeat` = 1.
//! - One per (operation, kind) of AWS error: `AwsErrors` with dimensions
//!   `Operation` and `Kind`.
//! - One per steered experiment, at most [`MAX_ITEMISED`]: its
//!   `SamplingPercentage` with the dimension `Experiment`; the rest are
//!   counted in `ExperimentsNotItemised` (CloudWatch charges per metric and
//!   dimension value, so a fleet of thousands would cost more than it tells).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{ErrorKind, ExperimentReport, Report, VerdictKind, WriteOutcome};
use crate::plan::Attention;

pub const NAMESPACE: &str = "shadowpilot";
/// Experiments whose sampling is a metric of its own, per tick.
pub const MAX_ITEMISED: usize = 100;

/// What the report does not know about its own tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickFacts {
    /// An EventBridge schedule ran it (not a person): it beats the heart.
    pub scheduled: bool,
    pub duration: std::time::Duration,
    /// Milliseconds since the epoch, the documents' `Timestamp`.
    pub timestamp_ms: i64,
}

/// The metric names of the tick document, in the order they are written.
pub const TICK_METRICS: &[(&str, &str)] = &[
    ("Experiments", "Count"),
    ("VerdictPass", "Count"),
    ("VerdictFail", "Count"),
    ("VerdictInconclusive", "Count"),
    ("VerdictSkipped", "Count"),
    ("VerdictError", "Count"),
    ("VerdictDeferred", "Count"),
    ("AttentionReadyToPromote", "Count"),
    ("AttentionFailing", "Count"),
    ("AttentionFailingAtFloor", "Count"),
    ("AttentionCannotExtend", "Count"),
    ("AttentionUndecidable", "Count"),
    ("WritesPlanned", "Count"),
    ("WritesApplied", "Count"),
    ("WritesRejected", "Count"),
    ("WritesDeferred", "Count"),
    ("AwsErrors", "Count"),
    ("ExperimentsNotItemised", "Count"),
    ("TickDuration", "Milliseconds"),
];

fn document(
    facts: &TickFacts,
    dimensions: &[&str],
    metrics: &[(&str, &str)],
    values: Map<String, Value>,
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": facts.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    root.extend(values);
    Value::Object(root).to_string()
}

/// Kinds that are AWS answering badly, not a policy or a selection problem.
fn is_aws_error(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::NotSelected | ErrorKind::AmbiguousPolicy | ErrorKind::UnknownPolicy
    )
}

/// The lines of a tick that failed whole (the list failed or ran out of
/// time): its AWS error by call and kind, and its duration. No heartbeat:
/// nothing was steered.
pub fn failed_tick_lines(kind: ErrorKind, operation: &str, facts: &TickFacts) -> Vec<String> {
    let mut values = Map::new();
    values.insert("AwsErrors".into(), json!(1));
    values.insert(
        "TickDuration".into(),
        json!(facts.duration.as_secs_f64() * 1000.0),
    );
    let mut by_call = Map::new();
    by_call.insert("Operation".into(), json!(operation));
    by_call.insert("Kind".into(), json!(kind.as_str()));
    by_call.insert("AwsErrors".into(), json!(1));
    vec![
        document(
            facts,
            &[],
            &[("AwsErrors", "Count"), ("TickDuration", "Milliseconds")],
            values,
        ),
        document(
            facts,
            &["Operation", "Kind"],
            &[("AwsErrors", "Count")],
            by_call,
        ),
    ]
}

/// Every EMF line for one tick.
pub fn lines(report: &Report, facts: &TickFacts) -> Vec<String> {
    let mut counts: BTreeMap<&str, f64> = TICK_METRICS.iter().map(|(n, _)| (*n, 0.0)).collect();
    let mut bump = |name: &'static str| *counts.entry(name).or_default() += 1.0;
    let mut errors: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for entry in &report.experiments {
        bump("Experiments");
        bump(match entry.verdict() {
            VerdictKind::Pass => "VerdictPass",
            VerdictKind::Fail => "VerdictFail",
            VerdictKind::Inconclusive => "VerdictInconclusive",
            VerdictKind::Skipped => "VerdictSkipped",
            VerdictKind::Error => "VerdictError",
            VerdictKind::Deferred => "VerdictDeferred",
        });
        for attention in entry.attention() {
            bump(match attention {
                Attention::ReadyToPromote => "AttentionReadyToPromote",
                Attention::Failing => "AttentionFailing",
                Attention::FailingAtFloor => "AttentionFailingAtFloor",
                Attention::CannotExtend => "AttentionCannotExtend",
                Attention::Undecidable => "AttentionUndecidable",
            });
        }
        if let Some(write) = entry.write() {
            if !matches!(write, WriteOutcome::Nothing) {
                bump("WritesPlanned");
            }
            match write {
                WriteOutcome::Applied | WriteOutcome::TagsWritten => bump("WritesApplied"),
                WriteOutcome::Rejected(_) => bump("WritesRejected"),
                WriteOutcome::Deferred(_) => bump("WritesDeferred"),
                _ => {}
            }
        }
        // One count per kind and entry, as the summary counts them, under
        // the call that failed first with that kind.
        let mut seen: Vec<ErrorKind> = Vec::new();
        for trouble in entry.troubles() {
            let kind = trouble.kind();
            if is_aws_error(kind) && !seen.contains(&kind) {
                seen.push(kind);
                *errors
                    .entry((trouble.operation(), kind.as_str()))
                    .or_default() += 1;
            }
        }
        if !seen.is_empty() {
            bump("AwsErrors");
        }
    }
    let steered: Vec<&ExperimentReport> = report
        .experiments
        .iter()
        .filter(|e| e.steered().is_some() && e.sampling_percentage.is_some())
        .collect();
    *counts.entry("ExperimentsNotItemised").or_default() +=
        steered.len().saturating_sub(MAX_ITEMISED) as f64;
    counts.insert("TickDuration", facts.duration.as_secs_f64() * 1000.0);

    let mut metrics: Vec<(&str, &str)> = TICK_METRICS.to_vec();
    let mut values: Map<String, Value> = counts
        .into_iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    if facts.scheduled {
        metrics.push(("Heartbeat", "Count"));
        values.insert("Heartbeat".into(), json!(1));
    }
    let mut out = vec![document(facts, &[], &metrics, values)];
    for ((operation, kind), count) in errors {
        let mut values = Map::new();
        values.insert("Operation".into(), json!(operation));
        values.insert("Kind".into(), json!(kind));
        values.insert("AwsErrors".into(), json!(count));
        out.push(document(
            facts,
            &["Operation", "Kind"],
            &[("AwsErrors", "Count")],
            values,
        ));
    }
    for entry in steered.into_iter().take(MAX_ITEMISED) {
        let mut values = Map::new();
        values.insert("Experiment".into(), json!(entry.name));
        values.insert(
            "SamplingPercentage".into(),
            json!(entry.sampling_percentage.unwrap_or_default()),
        );
        out.push(document(
            facts,
            &["Experiment"],
            &[("SamplingPercentage", "Percent")],
            values,
        ));
    }
    out
}
