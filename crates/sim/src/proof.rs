//! The judge's claims, measured: each case runs many copies of one
//! experiment in the simulator with fixed seeds and reports what issue 8
//! asks of it (share of copies stepped down, time to FAIL, time to 100 %).
//! Copies run in chunks of independent worlds so that a 200-copy week fits
//! in memory; each chunk has its own seed.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::judge::{Outcome, Sequence};
use shadowpilot_core::plan::{evidence_ramp_justified, Action};
use shadowpilot_core::policy::{builtin_policies, parse_policy, Policy, PolicySet};

use crate::histogram::{BucketTable, WindowHistogram};
use crate::rng::{inverse_normal_cdf, Draws, Purpose};
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
    /// Turns the policy's evidence ramps off, to measure ramping on PASS only.
    without_evidence_ramps: bool,
    measure: Measure,
}

#[derive(Clone, Copy)]
enum Measure {
    /// Share of copies ever stepped down; which sequence failed.
    SteppedDown,
    /// Time from `from` (hours after the start) to the first FAIL.
    TimeToFail { from_hours: u32 },
    /// Time to reach 100 %, and the time the evidence needed: per step
    /// below the top, the first tick that allowed leaving it (a PASS, or
    /// an evidence ramp's conditions met, the dwell aside) minus the step's
    /// start.
    TimeToTop,
    /// Once passed at a step, how many are stepped down.
    DownAfterPass,
    /// Never ramps up; time to FAIL; latched and stepped down.
    NeverUpAndFails,
    /// No controller: the simulator's own per-period p99 against the
    /// model's true p99, for production (150 ms) and a 1.15 × shadow.
    PercentileBias,
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
        without_evidence_ramps: false,
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
            without_evidence_ramps: false,
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
            without_evidence_ramps: false,
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
            without_evidence_ramps: false,
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
            without_evidence_ramps: false,
            measure: Measure::TimeToFail { from_hours: 24 },
        },
        Case {
            name: "p99-bias",
            claim: "the simulator's own p99 bias, per period, before trusting the 1.15 × case",
            per_minute: 1000.0,
            sampling: 5,
            days: 0,
            body: "",
            policy: None,
            without_evidence_ramps: false,
            measure: Measure::PercentileBias,
        },
        Case {
            name: "p99-1.15x",
            claim: "p99 ×1.15 under a 1.2 limit: once passed at a step, stepped down in at most 1 of 200",
            per_minute: 1000.0,
            sampling: 5,
            days: 7,
            body: "    shadow:\n      latency: {median_ms: 50, p99_ms: 172.5}\n",
            policy: Some(NEAR_LIMIT_POLICY),
            without_evidence_ramps: false,
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
            without_evidence_ramps: false,
            measure: Measure::TimeToTop,
        },
        Case {
            name: "healthy-1200-pass-only",
            claim: "the same with evidence ramps off: every step left on its first PASS once the dwell is over",
            per_minute: 1200.0,
            sampling: 5,
            days: 1,
            body: "",
            policy: None,
            without_evidence_ramps: true,
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

fn reduce(run: &ExperimentRun, start: DateTime<Utc>, ceiling: u8, policy: &Policy) -> CopyResult {
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
    let mut first_allowed_in_step: Option<DateTime<Utc>> = None;
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
            }
            if steered.verdict.outcome == Outcome::Pass
                || evidence_ramp_justified(&steered.verdict, policy)
            {
                first_allowed_in_step.get_or_insert(tick.at);
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
                    if let Some(allowed) = first_allowed_in_step {
                        result.evidence_minutes +=
                            (allowed - step_start).num_seconds() as f64 / 60.0;
                    }
                    if *to >= ceiling && result.reached_top.is_none() {
                        result.reached_top = Some(tick.at);
                    }
                }
                step_start = tick.at;
                first_allowed_in_step = None;
            }
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
    let policies = if case.without_evidence_ramps {
        let mut all = policies.policies().to_vec();
        for policy in &mut all {
            policy.ramp.evidence_ramps = false;
        }
        PolicySet::new(all).map_err(|problems| format!("proof policy: {problems:?}"))?
    } else {
        policies
    };
    let policy = policies.policies()[0].clone();
    let ceiling = policy.ramp.ceiling;
    let alpha = policy.alpha;
    let mut results = Vec::new();
    // The bias measure runs no controller: it draws its own periods.
    let mut left = if matches!(case.measure, Measure::PercentileBias) {
        0
    } else {
        copies
    };
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
                .map(|r| reduce(r, start, ceiling, &policy)),
        );
        left -= n;
        chunk += 1;
    }
    let total = results.len() as f64;
    let mut out = String::new();
    match case.measure {
        Measure::PercentileBias => out = percentile_bias(case.per_minute, seed),
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
            let ratios: Vec<f64> = to_top
                .iter()
                .zip(&evidence)
                .filter(|(_, e)| **e > 0.0)
                .map(|(t, e)| t / e)
                .collect();
            let _ = write!(
                out,
                "reached 100 % {}/{}; median time to 100 % {}; median evidence time {}; median ratio {}; stepped down {}",
                reached.len(),
                results.len(),
                minutes(median(to_top.clone())),
                minutes(median(evidence)),
                median(ratios).map_or("-".into(), |r| format!("{r:.2} ×")),
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

/// Per-period p99s drawn exactly as the simulated CloudWatch computes them
/// (sampled into the latency histogram, read back by rank), at the sample
/// sizes a five-minute period holds at each default step of `per_minute`.
/// A bias common to both variants cancels in the judge's ratio; what is
/// left is reported as the ratio's median against the true 1.15.
fn percentile_bias(per_minute: f64, seed: u64) -> String {
    const PERIODS: i64 = 2000;
    const PERIOD_MINUTES: i64 = 5;
    let z99 = inverse_normal_cdf(0.99);
    let table = |p99_ms: f64| BucketTable::lognormal(50_000.0, (p99_ms / 50.0).ln() / z99);
    let (production, shadow) = (table(150.0), table(172.5));
    let mut parts = Vec::new();
    for sampling in [5u32, 25, 100] {
        let per_period_minute = (per_minute * f64::from(sampling) / 100.0).round() as u64;
        let mut p_ratios = Vec::new();
        let mut s_ratios = Vec::new();
        let mut pair_ratios = Vec::new();
        for period in 0..PERIODS {
            let p99 = |table: &BucketTable, stream: u64| {
                let mut window = WindowHistogram::default();
                for minute in 0..PERIOD_MINUTES {
                    let mut draws = Draws::new(
                        seed,
                        stream,
                        period * PERIOD_MINUTES + minute,
                        Purpose::ModelLatency,
                    );
                    window.add(&table.sample(per_period_minute, &mut draws));
                }
                window.percentile(99.0).unwrap_or(f64::NAN) / 1000.0
            };
            let p = p99(&production, 1);
            let s = p99(&shadow, 2);
            p_ratios.push(p / 150.0);
            s_ratios.push(s / 172.5);
            pair_ratios.push(s / p);
        }
        let geometric_mean = |values: &[f64]| {
            (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
        };
        parts.push(format!(
            "{sampling} % ({} a period): production {:.3}, shadow {:.3}, shadow/production {:.3} (geometric mean {:.3})",
            per_period_minute * PERIOD_MINUTES as u64,
            median(p_ratios).unwrap_or(f64::NAN),
            median(s_ratios).unwrap_or(f64::NAN),
            median(pair_ratios.clone()).unwrap_or(f64::NAN),
            geometric_mean(&pair_ratios),
        ));
    }
    format!(
        "median per-period p99 / true p99 over {PERIODS} five-minute periods at {per_minute} rpm: {}",
        parts.join("; ")
    )
}
