//! The agreement report (pure): what was read of each variant, how the
//! records paired, how the outputs compared, the output checks with their
//! intervals, and a few disagreements side by side. `shadowpilot compare`
//! prints it; it judges nothing and writes nothing. Its words are in
//! [`crate::report::render`].

use std::borrow::Cow;

use serde::Serialize;

use super::agreement::{agreement_evidence, mean_abs_diff_evidence, OutputCounts};
use super::compare::{compare, Compared, Comparison};
use super::pair::{pair, EventIdCheck, Pairing, PairingOptions, Unpaired};
use super::read::{sample_key, VariantRead};
use super::record::{Body, CaptureRecord};
use crate::stats::errors::ErrorEvidence;
use crate::stats::Decision;

/// An output check as a policy declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputCheck {
    /// `output_agreement` min: the share of pairs that match (0.99).
    Agreement { min: f64 },
    /// `output_mean_abs_diff` max, with differences clipped at `clip`.
    MeanAbsDiff { max: f64, clip: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    pub comparison: Comparison,
    pub pairing: PairingOptions,
    /// Below this pairing rate the checks are inconclusive (default 0.9).
    pub min_pairing_rate: f64,
    pub checks: Vec<OutputCheck>,
    pub alpha: f64,
    /// Disagreements shown side by side.
    pub examples: usize,
}

impl CompareOptions {
    /// The policy's declaration and output checks, judged like its step
    /// sequences (at α/3); a policy without output checks still gets the
    /// default agreement check, so that `compare` always says something.
    pub fn of_policy(policy: &crate::policy::Policy) -> Self {
        let outputs = &policy.outputs;
        let mut checks: Vec<OutputCheck> = policy
            .checks
            .iter()
            .filter_map(|check| OutputCheck::of(check, outputs.clip))
            .collect();
        if checks.is_empty() {
            checks = Self::default().checks;
        }
        Self {
            comparison: outputs.comparison.clone(),
            pairing: outputs.pairing,
            min_pairing_rate: outputs.min_pairing_rate,
            checks,
            alpha: policy.alpha / 3.0,
            examples: Self::default().examples,
        }
    }
}

impl OutputCheck {
    /// The output check a policy check declares, if it is one. A mean
    /// difference is clipped at the policy's `outputs.clip`, else 10 × its
    /// max.
    pub fn of(check: &crate::policy::Check, clip: Option<f64>) -> Option<Self> {
        use crate::policy::{CheckMetric, Limit};
        match (check.metric, check.limit) {
            (CheckMetric::OutputAgreement, Limit::Min(percent)) => Some(Self::Agreement {
                min: percent / 100.0,
            }),
            (CheckMetric::OutputMeanAbsDiff, Limit::Absolute(max)) => Some(Self::MeanAbsDiff {
                max,
                clip: clip.unwrap_or(10.0 * max),
            }),
            _ => None,
        }
    }
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            comparison: Comparison::default(),
            pairing: PairingOptions {
                by_input_within: None,
            },
            min_pairing_rate: 0.9,
            checks: vec![OutputCheck::Agreement { min: 0.99 }],
            alpha: crate::policy::DEFAULT_ALPHA,
            examples: 5,
        }
    }
}

/// One variant's reading, without its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantSummary {
    pub prefix: String,
    pub objects: u64,
    pub bytes: u64,
    pub records: u64,
    pub outside_sample: u64,
    pub unreadable_lines: u64,
    /// The first few, `key:line: problem`.
    pub first_problems: Vec<String>,
    pub capped: bool,
    pub out_of_time: bool,
    /// Records read after the other variant's reading stopped: not judged.
    pub after_common_end: u64,
}

/// A check's state, as the judge would see it.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckState {
    Decided(ErrorEvidence),
    /// The pairing rate is under the threshold: never a pass.
    TooFewPaired {
        rate: f64,
        min: f64,
    },
    /// No numeric pairs for a difference.
    NoNumbers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub check: OutputCheck,
    pub state: CheckState,
}

impl CheckReport {
    pub fn decision(&self) -> Option<Decision> {
        match &self.state {
            CheckState::Decided(evidence) => Some(evidence.decision),
            _ => None,
        }
    }
}

/// One disagreement, both outputs as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub key: Option<String>,
    pub shadow: String,
    pub production: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgreementReport {
    pub shadow: VariantSummary,
    pub production: VariantSummary,
    pub pairs: usize,
    pub pairing_rate: Option<f64>,
    pub production_per_shadow_record: Option<f64>,
    pub unpaired_shadow: Unpaired,
    pub unpaired_production: Unpaired,
    pub event_id_check: EventIdCheck,
    pub counts: OutputCounts,
    pub checks: Vec<CheckReport>,
    pub examples: Vec<Disagreement>,
    /// Set when a reading stopped early: pairs are judged before it only.
    pub judged_until: Option<chrono::DateTime<chrono::Utc>>,
}

fn summary(read: &VariantRead) -> VariantSummary {
    VariantSummary {
        prefix: read.prefix.clone(),
        objects: read.objects,
        bytes: read.bytes,
        records: read.records.len() as u64,
        outside_sample: read.outside_sample,
        unreadable_lines: read.problems.len() as u64,
        first_problems: read
            .problems
            .iter()
            .take(3)
            .map(|(key, p)| format!("{key}:{}: {}", p.line, p.problem))
            .collect(),
        capped: read.capped,
        out_of_time: read.out_of_time,
        after_common_end: 0,
    }
}

fn shown(body: Option<&Body>) -> String {
    match body {
        Some(Body::Text(text)) => {
            let text = text.trim();
            if text.chars().count() > 200 {
                format!("{}…", text.chars().take(199).collect::<String>())
            } else {
                text.to_string()
            }
        }
        Some(Body::Bytes(bytes)) => format!("<{} bytes>", bytes.len()),
        None => "<no output>".into(),
    }
}

/// Records of the span read before `end`, whether kept or not.
fn seen_before(read: &VariantRead, end: Option<chrono::DateTime<chrono::Utc>>) -> u64 {
    let before = |at: &chrono::DateTime<chrono::Utc>| end.is_none_or(|end| *at < end);
    (read
        .records
        .iter()
        .filter(|r| before(&r.inference_time))
        .count()
        + read.skipped_at.iter().filter(|at| before(at)).count()) as u64
}

/// The records before `end`, and how many were left out.
fn records_before(
    read: &VariantRead,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> (Cow<'_, [CaptureRecord]>, u64) {
    let Some(end) = end else {
        return (Cow::Borrowed(&read.records[..]), 0);
    };
    let kept: Vec<CaptureRecord> = read
        .records
        .iter()
        .filter(|record| record.inference_time < end)
        .cloned()
        .collect();
    let after = (read.records.len() - kept.len()) as u64;
    (Cow::Owned(kept), after)
}

pub fn agreement_report(
    shadow: &VariantRead,
    production: &VariantRead,
    options: &CompareOptions,
) -> AgreementReport {
    // A reading that stopped early (a cap, the tick's time) leaves the
    // other variant's later records without their partners: only the span
    // both readings covered is judged, which keeps it a prefix in time.
    let judged_until = [shadow.reached, production.reached]
        .into_iter()
        .flatten()
        .min();
    let (shadow_records, shadow_after) = records_before(shadow, judged_until);
    let (production_records, production_after) = records_before(production, judged_until);
    let pairing: Pairing = pair(&shadow_records, &production_records, options.pairing);
    let clip = options
        .checks
        .iter()
        .find_map(|check| match check {
            OutputCheck::MeanAbsDiff { clip, .. } => Some(*clip),
            OutputCheck::Agreement { .. } => None,
        })
        .unwrap_or(f64::INFINITY);
    let mut counts = OutputCounts::default();
    let mut examples = Vec::new();
    for pair in &pairing.pairs {
        let (s, p) = (
            &shadow_records[pair.shadow],
            &production_records[pair.production],
        );
        let compared = compare(&options.comparison, s.output.as_ref(), p.output.as_ref());
        counts.add(&compared, clip);
        if matches!(compared, Compared::Disagree { .. }) && examples.len() < options.examples {
            examples.push(Disagreement {
                key: sample_key(s).map(str::to_string),
                shadow: shown(s.output.as_ref().map(|o| &o.body)),
                production: shown(p.output.as_ref().map(|o| &o.body)),
            });
        }
    }
    let rate = pairing.rate();
    let checks = options
        .checks
        .iter()
        .map(|check| {
            let state = match rate {
                Some(rate) if rate < options.min_pairing_rate => CheckState::TooFewPaired {
                    rate,
                    min: options.min_pairing_rate,
                },
                // No shadow records yet is no evidence, judged as such.
                _ => match check {
                    OutputCheck::Agreement { min } => {
                        CheckState::Decided(agreement_evidence(&counts, *min, options.alpha))
                    }
                    OutputCheck::MeanAbsDiff { .. }
                        if counts.compared() > 0 && counts.numeric == 0 =>
                    {
                        CheckState::NoNumbers
                    }
                    OutputCheck::MeanAbsDiff { max, clip } => CheckState::Decided(
                        mean_abs_diff_evidence(&counts, *max, *clip, options.alpha),
                    ),
                },
            };
            CheckReport {
                check: *check,
                state,
            }
        })
        .collect();
    AgreementReport {
        shadow: VariantSummary {
            after_common_end: shadow_after,
            ..summary(shadow)
        },
        production: VariantSummary {
            after_common_end: production_after,
            ..summary(production)
        },
        judged_until,
        pairs: pairing.pairs.len(),
        pairing_rate: rate,
        production_per_shadow_record: {
            // Every record of the judged span, kept or not: production's
            // reading leaves out what no shadow record can pair with.
            let (shadow_seen, production_seen) = (
                seen_before(shadow, judged_until),
                seen_before(production, judged_until),
            );
            (shadow_seen > 0).then(|| production_seen as f64 / shadow_seen as f64)
        },
        unpaired_shadow: pairing.unpaired_shadow,
        unpaired_production: pairing.unpaired_production,
        event_id_check: pairing.event_id_check,
        counts,
        checks,
        examples,
    }
}
