//! The words of `shadowpilot compare`'s agreement report, next to those of
//! the tick's report in [`super::render`].

use std::fmt::Write as _;

use super::render::table;

use crate::capture::pair::{EventIdCheck, Unpaired};
use crate::capture::report::{AgreementReport, CheckReport, CheckState, OutputCheck};
use crate::stats::Decision;

/// The relation to the limit the decision shows: a pass holds it, a fail
/// breaks it, an interval that still straddles it is only set against it.
fn relation(decision: Decision, holds: &'static str, breaks: &'static str) -> &'static str {
    match decision {
        Decision::Pass => holds,
        Decision::Fail => breaks,
        Decision::Inconclusive(_) => "vs",
    }
}

fn decision_word(decision: Decision) -> &'static str {
    match decision {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Inconclusive(_) => "inconclusive",
    }
}

/// `agreement 99.52 % [99.31, 99.73] ≥ 99.00 % (pass)`,
/// `agreement 98.90 % [97.10, 100.00] vs 99.00 % (inconclusive)`,
/// `mean |difference| 0.021 [0.013, 0.029] ≤ 0.050 (pass, clipped at 0.5)`.
pub fn output_check_text(check: &CheckReport) -> String {
    let name = match check.check {
        OutputCheck::Agreement { .. } => "agreement",
        OutputCheck::MeanAbsDiff { .. } => "mean |difference|",
    };
    match (&check.state, check.check) {
        (CheckState::TooFewPaired { rate, min }, _) => format!(
            "{name}: inconclusive, {:.1} % of shadow records paired, under the {:.0} % the check needs",
            rate * 100.0,
            min * 100.0
        ),
        (CheckState::NoNumbers, _) => format!("{name}: inconclusive, no pair of numbers to compare"),
        (CheckState::Decided(evidence), OutputCheck::Agreement { min }) => match evidence.estimate {
            None => format!("{name}: inconclusive, no pairs"),
            Some(estimate) => {
                let i = estimate.interval;
                format!(
                    "{name} {:.2} % [{:.2}, {:.2}] {} {:.2} % ({}, {} pairs)",
                    (1.0 - i.estimate) * 100.0,
                    ((1.0 - i.hi) * 100.0).max(0.0),
                    ((1.0 - i.lo) * 100.0).min(100.0),
                    relation(evidence.decision, "≥", "<"),
                    min * 100.0,
                    decision_word(evidence.decision),
                    evidence.counts.shadow_requests
                )
            }
        },
        (CheckState::Decided(evidence), OutputCheck::MeanAbsDiff { max, clip }) => {
            match evidence.estimate {
                None => format!("{name}: inconclusive, no pairs"),
                Some(estimate) => {
                    let i = estimate.interval;
                    format!(
                        "{name} {:.3} [{:.3}, {:.3}] {} {:.3} ({}, clipped at {clip})",
                        i.estimate * clip,
                        (i.lo * clip).max(0.0),
                        (i.hi * clip).min(clip),
                        relation(evidence.decision, "≤", ">"),
                        max,
                        decision_word(evidence.decision)
                    )
                }
            }
        }
    }
}

fn unpaired_text(unpaired: &Unpaired) -> String {
    format!(
        "{} unpaired ({} without inferenceId, {} with a duplicated key, {} without a match, {} ambiguous)",
        unpaired.total(),
        unpaired.without_inference_id,
        unpaired.duplicate_key,
        unpaired.no_match,
        unpaired.ambiguous
    )
}

fn event_id_text(check: &EventIdCheck) -> String {
    match check {
        EventIdCheck::TooFewPairs { compared } => format!(
            "eventId not used: {compared} pairs by inferenceId carry eventIds, {} are needed to trust it",
            crate::capture::pair::EVENT_ID_PROOF
        ),
        EventIdCheck::AllEqual { compared } => {
            format!("eventId pairs too: all {compared} pairs by inferenceId have equal eventIds")
        }
        EventIdCheck::Differ {
            compared,
            differing,
        } => format!(
            "eventId not used: {differing} of {compared} pairs by inferenceId have different eventIds"
        ),
    }
}

/// `shadowpilot compare`'s table.
pub fn agreement_text(report: &AgreementReport) -> String {
    let mut out = String::new();
    for (role, read) in [
        ("shadow", &report.shadow),
        ("production", &report.production),
    ] {
        if read.records == 0 && read.outside_sample == 0 {
            let _ = writeln!(out, "{role}: no records under {}", read.prefix);
        } else {
            let _ = writeln!(
                out,
                "{role}: {} records from {} objects ({} bytes) under {}{}{}",
                read.records,
                read.objects,
                read.bytes,
                read.prefix,
                if read.outside_sample > 0 {
                    format!(", {} outside the sample", read.outside_sample)
                } else {
                    String::new()
                },
                if read.capped {
                    ", capped: the policy's limit stopped the reading"
                } else {
                    ""
                }
            );
        }
        if read.unreadable_lines > 0 {
            let _ = writeln!(
                out,
                "  {} unreadable lines skipped, e.g. {}",
                read.unreadable_lines,
                read.first_problems.join("; ")
            );
        }
    }
    let _ = writeln!(
        out,
        "paired: {} ({}), production/shadow records {}",
        report.pairs,
        report
            .pairing_rate
            .map_or("no shadow records".to_string(), |r| format!(
                "{:.1} % of shadow records",
                r * 100.0
            )),
        report
            .production_per_shadow_record
            .map_or("-".to_string(), |r| format!("{r:.2}"))
    );
    let _ = writeln!(out, "  shadow: {}", unpaired_text(&report.unpaired_shadow));
    let _ = writeln!(
        out,
        "  production: {}",
        unpaired_text(&report.unpaired_production)
    );
    let _ = writeln!(out, "  {}", event_id_text(&report.event_id_check));
    let c = &report.counts;
    let _ = writeln!(
        out,
        "compared: {} agree, {} disagree, {} unreadable",
        c.agree, c.disagree, c.unreadable
    );
    for check in &report.checks {
        let _ = writeln!(out, "{}", output_check_text(check));
    }
    if !report.examples.is_empty() {
        let rows: Vec<Vec<String>> = report
            .examples
            .iter()
            .map(|e| {
                vec![
                    e.key.clone().unwrap_or_else(|| "-".into()),
                    e.shadow.clone(),
                    e.production.clone(),
                ]
            })
            .collect();
        let _ = writeln!(out, "\n{}", table(&["KEY", "SHADOW", "PRODUCTION"], &rows));
    }
    out
}

/// `shadowpilot compare --output json`.
pub fn agreement_json(report: &AgreementReport) -> serde_json::Value {
    let unpaired = |u: &Unpaired| {
        serde_json::json!({
            "without_inference_id": u.without_inference_id,
            "duplicate_key": u.duplicate_key,
            "no_match": u.no_match,
            "ambiguous": u.ambiguous,
        })
    };
    let checks: Vec<serde_json::Value> = report
        .checks
        .iter()
        .map(|check| {
            let (kind, limit) = match check.check {
                OutputCheck::Agreement { min } => ("output_agreement", min),
                OutputCheck::MeanAbsDiff { max, .. } => ("output_mean_abs_diff", max),
            };
            serde_json::json!({
                "check": kind,
                "limit": limit,
                "outcome": check.decision().map_or("inconclusive", decision_word),
                "message": output_check_text(check),
            })
        })
        .collect();
    serde_json::json!({
        "shadow": report.shadow,
        "production": report.production,
        "pairs": report.pairs,
        "pairing_rate": report.pairing_rate,
        "production_per_shadow_record": report.production_per_shadow_record,
        "unpaired_shadow": unpaired(&report.unpaired_shadow),
        "unpaired_production": unpaired(&report.unpaired_production),
        "event_id": event_id_text(&report.event_id_check),
        "agree": report.counts.agree,
        "disagree": report.counts.disagree,
        "unreadable": report.counts.unreadable,
        "clipped": report.counts.clipped,
        "checks": checks,
        "examples": report.examples,
    })
}
