//! The agreement report (pure): what was read of each variant, how the
//! records paired, how the outputs compared, the output checks with their
//! intervals, and a few disagreements side by side. `shadowpilot compare`
//! prints it; it judges nothing and writes nothing. Its words are in
//! [`crate::report::render`].

use serde::Serialize;

use super::agreement::{agreement_evidence, mean_abs_diff_evidence, OutputCounts};
use super::compare::{compare, Compared, Comparison};
use super::pair::{pair, EventIdCheck, Pairing, PairingOptions, Unpaired};
use super::read::{sample_key, VariantRead};
use super::record::Body;
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

pub fn agreement_report(
    shadow: &VariantRead,
    production: &VariantRead,
    options: &CompareOptions,
) -> AgreementReport {
    let pairing: Pairing = pair(&shadow.records, &production.records, options.pairing);
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
            &shadow.records[pair.shadow],
            &production.records[pair.production],
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
                Some(rate) if rate >= options.min_pairing_rate => match check {
                    OutputCheck::Agreement { min } => {
                        CheckState::Decided(agreement_evidence(&counts, *min, options.alpha))
                    }
                    OutputCheck::MeanAbsDiff { .. } if counts.numeric == 0 => CheckState::NoNumbers,
                    OutputCheck::MeanAbsDiff { max, clip } => CheckState::Decided(
                        mean_abs_diff_evidence(&counts, *max, *clip, options.alpha),
                    ),
                },
                rate => CheckState::TooFewPaired {
                    rate: rate.unwrap_or(0.0),
                    min: options.min_pairing_rate,
                },
            };
            CheckReport {
                check: *check,
                state,
            }
        })
        .collect();
    AgreementReport {
        shadow: summary(shadow),
        production: summary(production),
        pairs: pairing.pairs.len(),
        pairing_rate: rate,
        production_per_shadow_record: pairing.production_per_shadow_record(),
        unpaired_shadow: pairing.unpaired_shadow,
        unpaired_production: pairing.unpaired_production,
        event_id_check: pairing.event_id_check,
        counts,
        checks,
        examples,
    }
}
