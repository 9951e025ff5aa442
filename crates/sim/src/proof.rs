//! The judge's claims, measured: each case runs many copies of one
//! experiment in the simulator with fixed seeds and reports what issue 8
//! asks of it (share of copies stepped down, time to FAIL, time to 100 %).
//! Copies run in chunks of independent worlds so that a 200-copy week fits
//! in memory; each chunk has its own seed.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::judge::{Outcome, Sequence};
use shadowpilot_core::plan::Action;
use shadowpilot_core::policy::{builtin_policies, parse_policy, PolicySet};

use crate::runner::{run, ExperimentRun};
use crate::scenario::Scenario;

/// Anything that stops a case: a scenario or policy that does not load (a
/// bug here), or the simulation itself.
pub type ProofError = Box<dyn std::error::Error + Send + Sync>;

/// Copies per simulated world.
const CHUNK: u16 = 20;

/// A measured claim.
pub struct Case {
    pub name: &'static str,
    pub claim: &'static str,
    /// Production requests a minute.
    per_minute: f64,
    /// Starting sampling percentage.
    sampling: u8,
    days: u32,
    /// Extra YAML under the experiment (shadow, changes).
    body: &'static str,
    /// A policy of its own (YAML), or the built-in default.
    policy: Option<&'static str>,
    measure: Measure,
}

#[derive(Clone, Copy)]
enum Measure {
    /// Share of copies ever stepped down; which sequence failed.
    SteppedDown,
    /// Time from `from` (hours after the start) to the first FAIL.
    TimeToFail { from_hours: u32 },
    /// Time to reach 100 %, and the time the evidence needed.
    TimeToTop,
    /// Once passed at a step, how many are stepped down.
    DownAfterPass,
    /// Never ramps up; time to FAIL; latched and stepped down.
    NeverUpAndFails,
}

const ERROR_POLICY: &str = "name: errors-only\nselect:\n  experiments: [\"*\"]\nchecks:\n  - metric: error_rate_5xx\n    max: 1.0\nramp:\n  steps: [5, 25, 100]\n  bake_time: 15m\nextend:\n  margin: 6h\n  by: 2d\n";

/// The same with evidence ramps, to show what they cost on this case.
const ERROR_POLICY_RAMPS: &str = "name: errors-ramps\nselect:\n  experiments: [\"*\"]\nchecks:\n  - metric: error_rate_5xx\n    max: 1.0\nramp:\n  steps: [5, 25, 100]\n  bake_time: 15m\n  evidence_ramps: true\nextend:\n  margin: 6h\n  by: 2d\n";

const NEAR_LIMIT_POLICY: &str = "name: p99-only\nselect:\n  experiments: [\"*\"]\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [5, 25, 100]\n  bake_time: 15m\n  evidence_ramps: true\n";

pub fn cases() -> Vec<Case> {
    let aa = |name, per_minute| Case {
        name,
        claim: "A/A: share of copies ever stepped down ≤ α (0.05)",
        per_minute,
        sampling: 5,
        days: 7,
        body: "",
        policy: None,
        measure: Measure::SteppedDown,
    };
    vec![
        aa("aa-60", 60.0),
        aa("aa-150", 150.0),
        aa("aa-1000", 1000.0),
        aa("aa-5000", 5000.0),
        Case {
            name: "errors-1.3",
            claim: "5xx 1.3 % against max 1.0 at 150 rpm: none ramps up; median time to FAIL; every FAILed one latched and stepped down",
            per_minute: 150.0,
            sampling: 5,
            days: 7,
            body: "    shadow:\n      errors: {5xx: 1.3}\n",
            policy: Some(ERROR_POLICY),
            measure: Measure::NeverUpAndFails,
        },
        Case {
            name: "errors-1.3-ramps",
            claim: "the same under evidence ramps (on in the default policy): none ramps up",
            per_minute: 150.0,
            sampling: 5,
            days: 7,
            body: "    shadow:\n      errors: {5xx: 1.3}\n",
            policy: Some(ERROR_POLICY_RAMPS),
            measure: Measure::NeverUpAndFails,
        },
        Case {
            name: "p99-1.5x",
            claim: "p99 ×1.5 from the start at 10 %: FAIL within 70 min in the median",
            per_minute: 1000.0,
            sampling: 10,
            days: 1,
            body: "    shadow:\n      latency: {median_ms: 50, p99_ms: 225}\n",
            policy: None,
            measure: Measure::TimeToFail { from_hours: 0 },
        },
        Case {
            name: "p99-3x-late",
            claim: "p99 ×3 after 24 h at 100 %: FAIL within 60 min in the median",
            per_minute: 1000.0,
            sampling: 100,
            days: 2,
            body: "    changes:\n      - at: 24h\n        shadow:\n          latency: {median_ms: 50, p99_ms: 450}\n",
            policy: None,
            measure: Measure::TimeToFail { from_hours: 24 },
        },
        Case {
            name: "p99-1.15x",
            claim: "p99 ×1.15 under a 1.2 limit: once passed at a step, stepped down in at most 1 of 200",
            per_minute: 1000.0,
            sampling: 5,
            days: 7,
            body: "    shadow:\n      latency: {median_ms: 50, p99_ms: 172.5}\n",
            policy: Some(NEAR_LIMIT_POLICY),
            measure: Measure::DownAfterPass,
        },
        Case {
            name: "healthy-1200",
            claim: "healthy shadow at 1200 rpm reaches 100 % under the default policy in a median ≤ 3.5 h, within 1.2 × its evidence time",
            per_minute: 1200.0,
            sampling: 5,
            days: 1,
            body: "",
            policy: None,
            measure: Measure::TimeToTop,
        },
    ]
}

fn scenario_text(case: &Case, copies: u16, seed: u64) -> String {
    let policy = match case.policy {
        Some(text) => text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("name: ")
            .to_string(),
        None => "default".to_string(),
    };
    format!(
        "name: proof-{name}\nseed: {seed}\nstart: 2026-03-02T00:00:00Z\nschedule: rate(10 minutes)\ncloudwatch:\n  publish_delay: 3m\ndefaults:\n  traffic: {{per_minute: {per_minute}, daily_swing: 0}}\n  production:\n    latency: {{median_ms: 50, p99_ms: 150}}\n    errors: {{4xx: 0, 5xx: 0.1, model: 0}}\nexperiments:\n  - name: copy\n    copies: {copies}\n    policy: {policy}\n    sampling: {sampling}\n    duration: {days}d\n{body}",
        name = case.name,
        per_minute = case.per_minute,
        sampling = case.sampling,
        days = case.days,
        body = case.body,
    )
}

/// What one copy went through, reduced to what the measures need.
struct CopyResult {
    stepped_down: bool,
    ramped_up: bool,
    first_fail: Option<(DateTime<Utc>, Sequence)>,
    failed_and_down: bool,
    reached_top: Option<DateTime<Utc>>,
    evidence_minutes: f64,
    down_after_pass: bool,
    passed: bool,
}

fn reduce(run: &ExperimentRun, start: DateTime<Utc>, ceiling: u8) -> CopyResult {
    let mut result = CopyResult {
        stepped_down: false,
        ramped_up: false,
        first_fail: None,
        failed_and_down: false,
        reached_top: None,
        evidence_minutes: 0.0,
        down_after_pass: false,
        passed: false,
    };
    let mut step_start = start;
    let mut first_pass_in_step: Option<DateTime<Utc>> = None;
    for tick in &run.ticks {
        if let Some(steered) = tick.entry.steered() {
            if steered.verdict.outcome == Outcome::Fail && result.first_fail.is_none() {
                let sequence = steered
                    .verdict
                    .decisive_check()
                    .map_or(Sequence::Step, |c| c.sequence);
                result.first_fail = Some((tick.at, sequence));
            }
            if steered.verdict.outcome == Outcome::Pass {
                result.passed = true;
                first_pass_in_step.get_or_insert(tick.at);
            }
        }
        for action in tick.actions() {
            if let Action::SetSampling { from, to, .. } = action {
                if !tick.applied() {
                    continue;
                }
                if to < from {
                    result.stepped_down = true;
                    if result.passed {
                        result.down_after_pass = true;
                    }
                    if result.first_fail.is_some() {
                        result.failed_and_down = true;
                    }
                } else {
                    result.ramped_up = true;
                    if let Some(pass) = first_pass_in_step {
                        result.evidence_minutes += (pass - step_start).num_seconds() as f64 / 60.0;
                    }
                    if *to >= ceiling && result.reached_top.is_none() {
                        result.reached_top = Some(tick.at);
                    }
                }
                step_start = tick.at;
                first_pass_in_step = None;
            }
        }
    }
    if result.reached_top.is_some() {
        // The top step's own evidence: its first pass.
        if let Some(pass) = first_pass_in_step {
            result.evidence_minutes += (pass - step_start).num_seconds() as f64 / 60.0;
        }
    }
    result
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

fn minutes(value: Option<f64>) -> String {
    value.map_or("-".into(), |m| format!("{m:.0} min"))
}

/// Runs a case over `copies` copies and returns its result lines.
pub async fn run_case(case: &Case, copies: u16, seed: u64) -> Result<String, ProofError> {
    let policies: PolicySet = match case.policy {
        Some(text) => PolicySet::new(vec![parse_policy("proof policy", text)?])
            .map_err(|problems| format!("proof policy: {problems:?}"))?,
        None => builtin_policies()?,
    };
    let ceiling = policies.policies()[0].ramp.ceiling;
    let alpha = policies.policies()[0].alpha;
    let mut results = Vec::new();
    let mut left = copies;
    let mut chunk = 0;
    let start: DateTime<Utc> = "2026-03-02T00:00:00Z".parse()?;
    while left > 0 {
        let n = left.min(CHUNK);
        let text = scenario_text(case, n, seed + chunk);
        let scenario = Scenario::parse(case.name, &text)?;
        let outcome = run(&scenario, &policies, None).await?;
        results.extend(
            outcome
                .experiments
                .iter()
                .map(|r| reduce(r, start, ceiling)),
        );
        left -= n;
        chunk += 1;
    }
    let total = results.len() as f64;
    let mut out = String::new();
    match case.measure {
        Measure::SteppedDown => {
            let down = results.iter().filter(|r| r.stepped_down).count();
            let by = |kind: fn(Sequence) -> bool| {
                results
                    .iter()
                    .filter(|r| r.first_fail.is_some_and(|(_, s)| kind(s)))
                    .count()
            };
            let _ = write!(
                out,
                "stepped down {down}/{} = {:.3} (α {alpha}); first FAIL by step {}, whole {}, epochs {}",
                results.len(),
                down as f64 / total,
                by(|s| s == Sequence::Step),
                by(|s| s == Sequence::Whole),
                by(|s| matches!(s, Sequence::Epoch(_))),
            );
        }
        Measure::TimeToFail { from_hours } => {
            let from = start + Duration::hours(i64::from(from_hours));
            let times: Vec<f64> = results
                .iter()
                .filter_map(|r| r.first_fail)
                .filter(|(at, _)| *at >= from)
                .map(|(at, _)| (at - from).num_seconds() as f64 / 60.0)
                .collect();
            let early = results
                .iter()
                .filter(|r| r.first_fail.is_some_and(|(at, _)| at < from))
                .count();
            let _ = write!(
                out,
                "FAILed {}/{}; median time to FAIL {}; FAILed before the change {early}",
                times.len(),
                results.len(),
                minutes(median(times.clone())),
            );
        }
        Measure::TimeToTop => {
            let reached: Vec<&CopyResult> =
                results.iter().filter(|r| r.reached_top.is_some()).collect();
            let to_top: Vec<f64> = reached
                .iter()
                .filter_map(|r| r.reached_top)
                .map(|at| (at - start).num_seconds() as f64 / 60.0)
                .collect();
            let evidence: Vec<f64> = reached.iter().map(|r| r.evidence_minutes).collect();
            let _ = write!(
                out,
                "reached 100 % {}/{}; median time to 100 % {}; median evidence time {}; stepped down {}",
                reached.len(),
                results.len(),
                minutes(median(to_top)),
                minutes(median(evidence)),
                results.iter().filter(|r| r.stepped_down).count(),
            );
        }
        Measure::DownAfterPass => {
            let passed = results.iter().filter(|r| r.passed).count();
            let down = results.iter().filter(|r| r.down_after_pass).count();
            let _ = write!(
                out,
                "passed at some step {passed}/{}; stepped down after a pass {down}",
                results.len()
            );
        }
        Measure::NeverUpAndFails => {
            let up = results.iter().filter(|r| r.ramped_up).count();
            let failed: Vec<&CopyResult> =
                results.iter().filter(|r| r.first_fail.is_some()).collect();
            let times: Vec<f64> = failed
                .iter()
                .filter_map(|r| r.first_fail)
                .map(|(at, _)| (at - start).num_seconds() as f64 / 60.0)
                .collect();
            let at_floor_or_down = failed
                .iter()
                .filter(|r| r.failed_and_down || !r.ramped_up)
                .count();
            let _ = write!(
                out,
                "ramped up {up}/{}; FAILed {}/{} within the run; median time to FAIL {}; FAILed and latched down (or already at the floor) {at_floor_or_down}",
                results.len(),
                failed.len(),
                results.len(),
                minutes(median(times)),
            );
        }
    }
    Ok(out)
}
