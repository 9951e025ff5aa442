//! Table tests of the pure core: the always-valid judge on evidence
//! gathered as a tick gathers it, and the plan at its boundaries, tags
//! included.

mod common;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::{check_result, experiment, gather, t0, verdict_of, FakeMetrics, Profile};
use shadowpilot_core::evidence::{Form, StepOrigin, Timeline};
use shadowpilot_core::experiment::{
    tag_time, Experiment, StepMark, StopState, VariantAction, FAILED_TAG, MAX_TAG_VALUE_CHARS,
    SINCE_TAG, STEPS_TAG, STEP_TAG,
};
use shadowpilot_core::judge::{
    epoch_alpha, judge, Amount, CheckId, CheckResult, Outcome, Reason, Sequence, Verdict,
};
use shadowpilot_core::plan::{
    plan, Action, Attention, Cadence, Extension, NeedsTime, Note, Plan, SamplingChange,
};
use shadowpilot_core::policy::{parse_policy, CheckMetric, Policy, Unit};
use shadowpilot_core::stats::{boundary, TimeToDecision};

// ---------------------------------------------------------------- judge

/// Two error checks (relative and absolute) and a p99 ratio: the shapes
/// the default policy judges.
fn judge_policy() -> Policy {
    parse_policy(
        "t.yaml",
        "name: t\nwindow:\n  publish_delay: 5m\nchecks:\n  - metric: error_rate_5xx\n    max_above_production: 0.5\n  - metric: error_rate_5xx\n    max: 1.0\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [1, 5, 10, 25, 50, 100]\n  bake_time: 30m\n",
    )
    .unwrap()
}

/// Production at `per_minute`, everything else healthy.
fn production(per_minute: f64) -> Profile {
    Profile {
        invocations_per_minute: per_minute,
        ..Profile::healthy()
    }
}

/// A healthy shadow copying `percentage` of production's `per_minute`.
fn shadow(percentage: f64, per_minute: f64) -> Profile {
    production(per_minute * percentage / 100.0)
}

fn judged(
    policy: &Policy,
    e: &Experiment,
    now: DateTime<Utc>,
    metrics: &FakeMetrics,
) -> (Timeline, Verdict) {
    let timeline = Timeline::of(e, policy, now);
    let evidence = gather(metrics, e, policy, &timeline);
    let verdict = judge(policy, &timeline, &evidence);
    (timeline, verdict)
}

fn minutes_of(time: Option<TimeToDecision>) -> Option<f64> {
    match time? {
        TimeToDecision::Needs { minutes, .. } => Some(minutes),
        TimeToDecision::Undecidable => Some(f64::INFINITY),
    }
}

const PASS: Outcome = Outcome::Pass;
const FAIL: Outcome = Outcome::Fail;
const INC: Outcome = Outcome::Inconclusive;

struct JudgeCase {
    name: &'static str,
    sampling: u8,
    production: Profile,
    shadow: Profile,
    /// Since StartTime (= the step's start: no step tag, LastModifiedTime
    /// is StartTime).
    after: Duration,
    /// Per check of `judge_policy`: 5xx above production, 5xx max, p99.
    outcomes: [Outcome; 3],
    /// Why each undecided check is undecided.
    reasons: [Option<Reason>; 3],
    /// The decisive check's index, and words of its message.
    decisive: usize,
    words: &'static str,
}

#[test]
fn judge_table() {
    let p = judge_policy();
    let nan = f64::NAN;
    let cases = vec![
        JudgeCase {
            name: "a healthy shadow passes on its step sequence",
            sampling: 25,
            production: production(1000.0),
            shadow: shadow(25.0, 1000.0),
            after: Duration::hours(2),
            outcomes: [PASS, PASS, PASS],
            decisive: 0,
            reasons: [None, None, None],
            words: "≤ +0.50 (pass)",
        },
        JudgeCase {
            name: "a healthy shadow at 5 % passes once ten 10-minute periods are in",
            sampling: 5,
            production: production(1000.0),
            shadow: shadow(5.0, 1000.0),
            after: Duration::hours(2),
            outcomes: [PASS, PASS, PASS],
            decisive: 0,
            reasons: [None, None, None],
            words: "(pass)",
        },
        JudgeCase {
            name: "an hour at 5 %: the rate straddles its margin, too few p99 periods",
            sampling: 5,
            production: production(1000.0),
            shadow: shadow(5.0, 1000.0),
            after: Duration::hours(1),
            outcomes: [INC, PASS, INC],
            reasons: [Some(Reason::Straddles), None, Some(Reason::Insufficient)],
            decisive: 0,
            words: "pts vs +0.50 (inconclusive, ",
        },
        JudgeCase {
            name: "a 1.5× p99 regression fails",
            sampling: 10,
            production: production(1000.0),
            shadow: Profile {
                p99_ms: 450.0,
                ..shadow(10.0, 1000.0)
            },
            after: Duration::hours(2),
            outcomes: [PASS, PASS, FAIL],
            decisive: 2,
            reasons: [None, None, None],
            words: "> 1.20 (fail)",
        },
        JudgeCase {
            name: "a 5xx rate over the absolute max fails though it is near production",
            sampling: 25,
            production: Profile {
                error_5xx_percent: 1.2,
                ..production(1000.0)
            },
            shadow: Profile {
                error_5xx_percent: 1.5,
                ..shadow(25.0, 1000.0)
            },
            after: Duration::hours(3),
            outcomes: [INC, FAIL, PASS],
            decisive: 1,
            reasons: [Some(Reason::Straddles), None, None],
            words: "5xx rate 1.50 [",
        },
        JudgeCase {
            name: "5xx far above production fails both error checks; the first decides",
            sampling: 25,
            production: production(1000.0),
            shadow: Profile {
                error_5xx_percent: 3.0,
                ..shadow(25.0, 1000.0)
            },
            after: Duration::hours(1),
            outcomes: [FAIL, FAIL, PASS],
            decisive: 0,
            reasons: [None, None, None],
            words: "pts > +0.50 (fail",
        },
        JudgeCase {
            name: "thin data is inconclusive: too few shadow requests",
            sampling: 1,
            production: production(1000.0),
            shadow: shadow(1.0, 1000.0),
            after: Duration::minutes(30),
            outcomes: [INC, INC, INC],
            decisive: 0,
            reasons: [
                Some(Reason::Insufficient),
                Some(Reason::Insufficient),
                Some(Reason::NoEvidence),
            ],
            words: "250 of 1000 shadow requests",
        },
        JudgeCase {
            name: "thin data never fails, whatever its errors",
            sampling: 1,
            production: production(1000.0),
            shadow: Profile {
                error_5xx_percent: 50.0,
                ..shadow(1.0, 1000.0)
            },
            after: Duration::minutes(30),
            outcomes: [INC, INC, INC],
            decisive: 0,
            reasons: [
                Some(Reason::Insufficient),
                Some(Reason::Insufficient),
                Some(Reason::NoEvidence),
            ],
            words: "250 of 1000 shadow requests",
        },
        JudgeCase {
            name: "no latency period holds enough requests at this sampling",
            sampling: 5,
            production: production(100.0),
            shadow: shadow(5.0, 100.0),
            after: Duration::hours(3),
            outcomes: [INC, INC, INC],
            decisive: 0,
            reasons: [
                Some(Reason::Insufficient),
                Some(Reason::Insufficient),
                Some(Reason::TooLittleTraffic {
                    shadow_per_minute: 5.0,
                    needed_per_minute: (500.0 - 500f64.sqrt()) / 60.0,
                }),
            ],
            words: "875 of 1000 shadow requests",
        },
        JudgeCase {
            name: "a shadow error series missing is no evidence, not zero errors",
            sampling: 25,
            production: production(1000.0),
            shadow: Profile {
                error_5xx_percent: nan,
                ..shadow(25.0, 1000.0)
            },
            after: Duration::hours(2),
            outcomes: [INC, INC, PASS],
            decisive: 0,
            reasons: [Some(Reason::NoEvidence), Some(Reason::NoEvidence), None],
            words: "no usable period since the step began",
        },
        JudgeCase {
            name: "production's latency missing leaves the p99 without evidence",
            sampling: 25,
            production: Profile {
                p99_ms: nan,
                ..production(1000.0)
            },
            shadow: shadow(25.0, 1000.0),
            after: Duration::hours(2),
            outcomes: [PASS, PASS, INC],
            decisive: 2,
            reasons: [None, None, Some(Reason::NoEvidence)],
            words: "p99 ratio vs 1.20",
        },
        JudgeCase {
            name: "a fail outweighs an inconclusive check",
            sampling: 25,
            production: Profile {
                p99_ms: nan,
                ..production(1000.0)
            },
            shadow: Profile {
                error_5xx_percent: 10.0,
                ..shadow(25.0, 1000.0)
            },
            after: Duration::hours(2),
            outcomes: [FAIL, FAIL, INC],
            decisive: 0,
            reasons: [None, None, Some(Reason::NoEvidence)],
            words: "(fail",
        },
        JudgeCase {
            name: "without production only the absolute limit can be judged",
            sampling: 25,
            production: production(0.0),
            shadow: shadow(25.0, 1000.0),
            after: Duration::hours(2),
            outcomes: [INC, PASS, INC],
            decisive: 0,
            reasons: [
                Some(Reason::NoEvidence),
                None,
                Some(Reason::TooLittleTraffic {
                    shadow_per_minute: 0.0,
                    needed_per_minute: (500.0 - 500f64.sqrt()) / 60.0,
                }),
            ],
            words: "5xx vs +0.50",
        },
    ];
    for case in cases {
        let metrics = FakeMetrics::new(case.production, case.shadow);
        let e = experiment("x", case.sampling);
        let (_, verdict) = judged(&p, &e, t0() + case.after, &metrics);
        let outcomes: Vec<Outcome> = verdict.checks.iter().map(|c| c.outcome).collect();
        let name = case.name;
        assert_eq!(outcomes, case.outcomes, "{name}: {:#?}", verdict.checks);
        let expected = if outcomes.contains(&FAIL) {
            FAIL
        } else if outcomes.contains(&INC) {
            INC
        } else {
            PASS
        };
        assert_eq!(verdict.outcome, expected, "{name}");
        let decisive = verdict.decisive_check().unwrap();
        assert!(
            std::ptr::eq(decisive, &verdict.checks[case.decisive]),
            "{name}: decisive {decisive}"
        );
        let reasons: Vec<Option<Reason>> =
            verdict.checks.iter().map(|c| c.reason.clone()).collect();
        assert_eq!(reasons, case.reasons, "{name}");
        let words = decisive.to_string();
        assert!(
            words.contains(case.words),
            "{name}: {words:?} lacks {:?}",
            case.words
        );
        for check in &verdict.checks {
            // Shown: the failing sequence, else the step's.
            if check.outcome != FAIL {
                assert_eq!(check.sequence, Sequence::Step, "{name}: {check}");
            }
            // The estimate inside its interval; a reason exactly when
            // undecided, with the time it still needs.
            if let (Some(value), Some(lower), Some(upper)) = (check.value, check.lower, check.upper)
            {
                assert!(lower <= value && value <= upper, "{name}: {check}");
                match check.outcome {
                    Outcome::Pass => assert!(upper < check.limit, "{name}: {check}"),
                    Outcome::Fail => assert!(lower > check.limit, "{name}: {check}"),
                    Outcome::Inconclusive => {}
                }
            }
            assert_eq!(
                check.reason.is_some(),
                check.outcome == INC,
                "{name}: {check}"
            );
            assert_eq!(
                check.time_to_decision.is_some(),
                check.outcome == INC,
                "{name}: {check}"
            );
            assert_eq!(check.sampling, case.sampling, "{name}");
        }
    }
}

#[test]
fn thin_data_says_how_long_it_still_needs() {
    let p = judge_policy();
    // 1 % of 1000 requests a minute: 10 shadow requests a minute.
    let metrics = FakeMetrics::new(production(1000.0), shadow(1.0, 1000.0));
    let (_, verdict) = judged(
        &p,
        &experiment("x", 1),
        t0() + Duration::minutes(30),
        &metrics,
    );
    for check in &verdict.checks[..2] {
        assert_eq!(check.reason, Some(Reason::Insufficient), "{check}");
        let minutes = minutes_of(check.time_to_decision).unwrap();
        // At least the 750 requests still missing of the 1000 a rate needs.
        assert!(minutes.is_finite() && minutes >= 75.0, "{check}: {minutes}");
        // Far less at the policy's top step.
        let at_top = minutes_of(check.at_ceiling).unwrap();
        assert!(at_top < minutes / 10.0, "{check}: {at_top}");
    }
    let p99 = &verdict.checks[2];
    // An hour-long period at 10 requests a minute, none complete yet.
    assert_eq!(p99.reason, Some(Reason::NoEvidence), "{p99}");
    assert_eq!(minutes_of(p99.time_to_decision), Some(600.0), "{p99}");
}

#[test]
fn too_little_traffic_for_a_p99_cannot_decide_at_this_sampling_but_can_at_the_top() {
    let p = judge_policy();
    let metrics = FakeMetrics::new(production(100.0), shadow(5.0, 100.0));
    let (_, verdict) = judged(&p, &experiment("x", 5), t0() + Duration::hours(3), &metrics);
    let p99 = &verdict.checks[2];
    assert!(
        matches!(p99.reason, Some(Reason::TooLittleTraffic { .. })),
        "{p99}"
    );
    assert_eq!(
        p99.to_string(),
        "p99 ratio vs 1.20: too little traffic at this sampling: 5.0 shadow requests/min, an hour-long period needs 8.0/min (inconclusive, too little traffic per period to decide at 5 %)"
    );
    assert_eq!(minutes_of(p99.time_to_decision), Some(f64::INFINITY));
    // At 100 %, 100 requests a minute: ten five-minute periods.
    assert_eq!(minutes_of(p99.at_ceiling), Some(50.0));
    assert_eq!(
        verdict.time_to_decision(),
        p99.time_to_decision,
        "T is the longest of the undecided checks"
    );
}

#[test]
fn a_failure_seen_only_by_the_whole_experiment_sequence_reports_it() {
    let p = judge_policy();
    // 3 h at 5 %, then a step to 25 % 15 minutes of evidence ago: the
    // earlier step is remembered in the history tag.
    let step_at = t0() + Duration::hours(3);
    let mut e = experiment("x", 25);
    e.tags
        .insert(STEPS_TAG.into(), format!("5@{}", tag_time(t0())));
    e.tags
        .insert(STEP_TAG.into(), format!("25@{}", tag_time(step_at)));
    e.last_modified = step_at;
    let now = step_at + Duration::minutes(20);

    let cases = [
        (
            "p99 3× during the earlier step",
            Profile {
                p99_ms: 900.0,
                ..shadow(5.0, 1000.0)
            },
            2,
            "p99 ratio",
        ),
        (
            "5xx 5 % during the earlier step",
            Profile {
                error_5xx_percent: 5.0,
                ..shadow(5.0, 1000.0)
            },
            0,
            "5xx +",
        ),
    ];
    for (name, earlier, index, subject) in cases {
        let metrics = FakeMetrics::new(production(1000.0), earlier);
        metrics.set_from("shadow", step_at, shadow(25.0, 1000.0));
        let (timeline, verdict) = judged(&p, &e, now, &metrics);
        let segments: Vec<(u8, DateTime<Utc>)> = timeline
            .segments
            .iter()
            .map(|s| (s.percentage, s.start))
            .collect();
        assert_eq!(segments, [(5, t0()), (25, step_at)], "{name}");
        assert_eq!(timeline.step_start, step_at);
        assert_eq!(
            verdict.outcome,
            Outcome::Fail,
            "{name}: {:#?}",
            verdict.checks
        );
        let failed = &verdict.checks[index];
        assert_eq!(failed.outcome, Outcome::Fail, "{name}: {failed}");
        assert_eq!(failed.sequence, Sequence::Whole, "{name}: {failed}");
        let words = failed.to_string();
        assert!(
            words.starts_with(subject) && words.ends_with("(fail, whole experiment)"),
            "{name}: {words}"
        );

        // Re-armed after the earlier step: the whole-experiment sequence
        // starts at `shadowpilot:since` and no longer sees it.
        let mut rearmed = e.clone();
        rearmed.tags.insert(SINCE_TAG.into(), tag_time(step_at));
        let (timeline, verdict) = judged(&p, &rearmed, now, &metrics);
        assert_eq!(timeline.whole_start, step_at);
        assert_eq!(timeline.segments.len(), 1, "{name}");
        assert_ne!(
            verdict.outcome,
            Outcome::Fail,
            "{name}: {:#?}",
            verdict.checks
        );
    }
}

#[test]
fn a_regression_that_begins_late_in_a_long_step_fails_in_an_epoch_within_the_hour() {
    let p = judge_policy();
    let onset = t0() + Duration::hours(24);
    let metrics = FakeMetrics::new(production(1000.0), production(1000.0));
    metrics.set_from(
        "shadow",
        onset,
        Profile {
            p99_ms: 900.0,
            ..production(1000.0)
        },
    );
    let e = experiment("x", 100);
    let (_, before) = judged(&p, &e, onset, &metrics);
    assert_eq!(before.outcome, Outcome::Pass, "{:#?}", before.checks);
    // One-minute periods would hold enough requests, but the top step can
    // outlive CloudWatch's 15 days of them: five-minute periods.
    assert!(
        matches!(
            before.checks[2].amount,
            Amount::Periods {
                period_secs: 300,
                ..
            }
        ),
        "{:?}",
        before.checks[2].amount
    );
    let mut first_fail = None;
    for tick in 1..=6 {
        let now = onset + Duration::minutes(10 * tick);
        let (_, verdict) = judged(&p, &e, now, &metrics);
        if verdict.outcome == Outcome::Fail {
            first_fail = Some((now, verdict));
            break;
        }
    }
    let (at, verdict) = first_fail.expect("fails within 60 minutes of the onset");
    let p99 = &verdict.checks[2];
    assert_eq!(p99.outcome, Outcome::Fail, "{p99}");
    // A day of healthy periods hides it from the step sequence; an epoch
    // that starts near the onset sees it.
    assert!(
        matches!(p99.sequence, Sequence::Epoch(j) if j >= 20),
        "{at}: {p99}"
    );
    assert!(p99.to_string().contains("epoch"), "{p99}");
}

#[test]
fn the_step_sequence_is_judged_at_a_third_of_alpha() {
    let p = judge_policy();
    let metrics = FakeMetrics::new(production(1000.0), shadow(25.0, 1000.0));
    let (_, verdict) = judged(
        &p,
        &experiment("x", 25),
        t0() + Duration::hours(2),
        &metrics,
    );
    let level = p.alpha / 3.0;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);

    // The absolute 5xx limit, one-sample: V = p†(1 − p†)/N_s with
    // p† = max(p̃_s, δ), τ = δ = 1 %.
    let rate = &verdict.checks[1];
    let Amount::Requests { shadow, errors } = rate.amount else {
        panic!("{rate:?}");
    };
    // 23 whole five-minute strata before the publish delay, 250 a minute.
    assert_eq!((shadow, errors), (23.0 * 5.0 * 250.0, 23.0 * 5.0 * 0.25));
    let smoothed: f64 = (errors + 1.0) / (shadow + 2.0);
    let at_margin = smoothed.max(0.01);
    let v = at_margin * (1.0 - at_margin) / shadow;
    let h = boundary::h(v, 0.01, level) * 100.0;
    assert!(close(rate.value.unwrap(), 0.1), "{rate}");
    assert!(
        close(rate.upper.unwrap() - rate.value.unwrap(), h),
        "{rate}"
    );
    assert!(
        close(rate.value.unwrap() - rate.lower.unwrap(), h),
        "{rate}"
    );

    // The p99 ratio: identical log ratios, so s takes its floor 0.05 and
    // V = 0.05²/n, τ = ln 1.2.
    let p99 = &verdict.checks[2];
    let Amount::Periods {
        eligible,
        period_secs,
    } = p99.amount
    else {
        panic!("{p99:?}");
    };
    // 250 requests a minute: two minutes would hold the 500 a p99 needs,
    // but no period is shorter than five minutes.
    assert_eq!((eligible, period_secs), (23, 300));
    let h = boundary::h(0.05f64.powi(2) / eligible as f64, 1.2f64.ln(), level);
    let (value, lower, upper) = (p99.value.unwrap(), p99.lower.unwrap(), p99.upper.unwrap());
    assert!(close((upper / value).ln(), h), "{p99}");
    assert!(close((value / lower).ln(), h), "{p99}");
}

#[test]
fn epochs_spend_a_third_of_alpha_between_them() {
    let alpha = 0.05;
    let first = epoch_alpha(alpha, 1);
    assert!((first - alpha / 3.0 * 6.0 / std::f64::consts::PI.powi(2)).abs() < 1e-15);
    assert!((epoch_alpha(alpha, 4) - first / 16.0).abs() < 1e-15);
    let spent: f64 = (1..=1_000_000).map(|j| epoch_alpha(alpha, j)).sum();
    assert!(spent < alpha / 3.0 && alpha / 3.0 - spent < 1e-7, "{spent}");
}

#[test]
fn an_error_regression_just_over_the_margin_late_in_a_step_waits_for_its_epochs_level() {
    // 0.6 points above production against a 0.5-point margin, after a day
    // at 100 %: only an epoch that starts near the onset sees it, and at
    // its level (α/3)·6/(π²j²), j ≈ 24, that takes a few hours of traffic.
    let p = parse_policy(
        "t.yaml",
        "name: t\nchecks:\n  - metric: error_rate_5xx\n    max_above_production: 0.5\nramp:\n  steps: [10, 100]\n",
    )
    .unwrap();
    let onset = t0() + Duration::hours(24);
    let metrics = FakeMetrics::new(production(1000.0), production(1000.0));
    metrics.set_from(
        "shadow",
        onset,
        Profile {
            error_5xx_percent: 0.7,
            ..production(1000.0)
        },
    );
    let e = experiment("x", 100);
    let mut first_fail = None;
    for tick in 1..=(8 * 6) {
        let now = onset + Duration::minutes(10 * tick);
        let (_, verdict) = judged(&p, &e, now, &metrics);
        if verdict.outcome == Outcome::Fail {
            first_fail = Some((now - onset, verdict));
            break;
        }
    }
    let (after, verdict) = first_fail.expect("fails within 8 hours");
    assert!(
        (Duration::hours(3)..=Duration::hours(6)).contains(&after),
        "{after}: {}",
        verdict.checks[0]
    );
    assert!(
        matches!(verdict.checks[0].sequence, Sequence::Epoch(j) if j >= 20),
        "{}",
        verdict.checks[0]
    );
}

#[test]
fn check_results_carry_estimate_interval_margin_unit_and_time() {
    let p = parse_policy(
        "t.yaml",
        "name: t\nchecks:\n  - metric: latency_p99\n    max: 800\n  - metric: error_rate_5xx\n    max_above_production: 0.5\nramp:\n  steps: [10, 100]\n",
    )
    .unwrap();
    let metrics = FakeMetrics::new(
        production(1000.0),
        Profile {
            p99_ms: 412.0,
            ..shadow(10.0, 1000.0)
        },
    );
    let (_, verdict) = judged(
        &p,
        &experiment("x", 10),
        t0() + Duration::hours(2),
        &metrics,
    );
    let p99 = &verdict.checks[0];
    assert_eq!(p99.id, CheckId::Metric(CheckMetric::LatencyP99));
    assert_eq!(p99.form, Form::LatencyMax { ms: 800.0 });
    assert_eq!(
        (p99.unit, p99.limit, p99.outcome),
        (Unit::Milliseconds, 800.0, PASS)
    );
    // The shadow's own p99, up a little by the small-sample bias term.
    let value = p99.value.unwrap();
    assert!((412.0..440.0).contains(&value), "{p99}");
    let json = serde_json::to_value(p99).unwrap();
    assert_eq!(json["unit"], "ms");
    assert_eq!(json["metric"], "latency_p99");
    assert_eq!(json["outcome"], "pass");
    assert_eq!(json["sequence"], "step");
    assert_eq!(json["limit"], 800.0);
    assert!(json["lower"].as_f64().unwrap() < value && value < json["upper"].as_f64().unwrap());
    assert!(json["time_to_decision"].is_null());
    assert_eq!(json["message"], p99.to_string());

    // Thirty minutes in, the rate is undecided and says for how long.
    let (_, early) = judged(
        &p,
        &experiment("x", 10),
        t0() + Duration::minutes(30),
        &metrics,
    );
    let errors = &early.checks[1];
    assert_eq!((errors.unit, errors.outcome), (Unit::Points, INC));
    let json = serde_json::to_value(errors).unwrap();
    assert_eq!(json["unit"], "pts");
    assert_eq!(json["limit"], 0.5);
    let minutes = json["time_to_decision"].as_f64().unwrap();
    assert!(minutes > 0.0, "{json}");
    assert!(errors.to_string().contains("more at 10 %"), "{errors}");
}

// ----------------------------------------------------------------- plan

fn plan_policy(ramp_tail: &str, extend: &str) -> Policy {
    parse_policy(
        "t.yaml",
        &format!(
            "name: t\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [5, 10, 25, 50, 100]\n{ramp_tail}extend:\n{extend}"
        ),
    )
    .unwrap()
}

const TICK_MINUTES: i64 = 10;

fn cadence(now: DateTime<Utc>) -> Cadence {
    Cadence {
        now,
        next_write: now + Duration::minutes(TICK_MINUTES),
        tick: Duration::minutes(TICK_MINUTES),
    }
}

fn plan_at(e: &Experiment, verdict: &Verdict, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let timeline = Timeline::of(e, policy, now);
    plan(e, &timeline, verdict, policy, cadence(now))
}

/// What a live write of `plan` does to the experiment: the update (which
/// moves LastModifiedTime), then the tags (which do not).
fn apply(e: &mut Experiment, plan: &Plan, now: DateTime<Utc>) {
    if let Some(update) = plan.update_for(e) {
        if let Some(sampling) = update.sampling {
            e.sampling_percentage = sampling.percentage;
        }
        if let Some(end) = update.end_time {
            e.end_time = Some(end);
        }
        e.last_modified = now;
    }
    let tags = plan.tags_for(e);
    e.tags.extend(tags.set);
    for key in tags.remove {
        e.tags.remove(&key);
    }
}

/// An action without its reason, for comparing plans.
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    Set(u8, u8),
    Extend(DateTime<Utc>, DateTime<Utc>),
    /// DesiredState, then (shadow, production) actions.
    Stop(StopState, VariantAction, VariantAction),
}

fn strip(actions: &[Action]) -> Vec<Planned> {
    actions
        .iter()
        .map(|a| match a {
            Action::SetSampling { from, to, .. } => Planned::Set(*from, *to),
            Action::ExtendEndTime { from, to, .. } => Planned::Extend(*from, *to),
            Action::Stop {
                variant_actions,
                desired_state,
                ..
            } => Planned::Stop(
                *desired_state,
                variant_actions["shadow"],
                variant_actions["production"],
            ),
        })
        .collect()
}

fn p99(outcome: Outcome) -> CheckResult {
    check_result(CheckMetric::LatencyP99, outcome, None, None, None, None)
}

struct PlanCase {
    name: &'static str,
    sampling: u8,
    verdict: Verdict,
    latched: bool,
    since_change: Duration,
    ends_in: Duration,
    started_ago: Duration,
    actions: Vec<Planned>,
    attention: Vec<Attention>,
}

#[test]
fn plan_table() {
    let p = plan_policy(
        "  max: 50\n  bake_time: 2h\n  on_fail: step_down\n  floor: 2\n",
        "  enabled: true\n  margin: 6h\n  by: 2d\n  max_duration: 30d\n",
    );
    let now = t0() + Duration::days(10);
    let far = Duration::days(5);
    let set = Planned::Set;
    let extend = Planned::Extend;
    let soon = now + Duration::hours(3);
    let pass = || Verdict::from_outcome(PASS);
    let fail = || verdict_of(vec![p99(FAIL)]);
    let inconclusive = || Verdict::from_outcome(INC);
    let case = |name, sampling, verdict, since_change, ends_in, actions, attention| PlanCase {
        name,
        sampling,
        verdict,
        latched: false,
        since_change,
        ends_in,
        started_ago: Duration::days(10),
        actions,
        attention,
    };
    let h = Duration::hours;
    let cases = vec![
        case(
            "pass, dwelt: next step",
            10,
            pass(),
            h(2),
            far,
            vec![set(10, 25)],
            vec![],
        ),
        case(
            "pass, dwell not over",
            10,
            pass(),
            h(2) - Duration::seconds(1),
            far,
            vec![],
            vec![],
        ),
        case(
            "pass, hand-set between steps goes to the next step",
            12,
            pass(),
            h(3),
            far,
            vec![set(12, 25)],
            vec![],
        ),
        case(
            "pass, next step capped at max",
            25,
            pass(),
            h(3),
            far,
            vec![set(25, 50)],
            vec![],
        ),
        case(
            "pass at the ceiling",
            50,
            pass(),
            h(3),
            far,
            vec![],
            vec![Attention::ReadyToPromote],
        ),
        case(
            "above max comes down even when inconclusive",
            80,
            inconclusive(),
            h(3),
            far,
            vec![set(80, 50)],
            vec![],
        ),
        case(
            "fail steps down",
            25,
            fail(),
            Duration::minutes(1),
            far,
            vec![set(25, 10)],
            vec![Attention::Failing],
        ),
        case(
            "fail below the lowest step goes to the floor",
            5,
            fail(),
            h(1),
            far,
            vec![set(5, 2)],
            vec![Attention::Failing],
        ),
        case(
            "fail at the floor",
            2,
            fail(),
            h(1),
            far,
            vec![],
            vec![Attention::FailingAtFloor],
        ),
        case(
            "fail under the floor never goes up",
            1,
            fail(),
            h(1),
            far,
            vec![],
            vec![Attention::FailingAtFloor],
        ),
        case(
            "inconclusive holds",
            10,
            inconclusive(),
            h(5),
            far,
            vec![],
            vec![],
        ),
        case(
            "inconclusive near the end, no estimate of T: extended by `by`",
            10,
            inconclusive(),
            h(5),
            h(3),
            vec![extend(soon, soon + Duration::days(2))],
            vec![],
        ),
        case(
            "exactly at the margin does not extend",
            10,
            inconclusive(),
            h(5),
            h(6) + Duration::minutes(TICK_MINUTES),
            vec![],
            vec![],
        ),
        case(
            "pass at the top near the end: no extension",
            50,
            pass(),
            h(3),
            h(3),
            vec![],
            vec![Attention::ReadyToPromote],
        ),
        case(
            "fail near the end: never extended",
            25,
            fail(),
            h(3),
            h(3),
            vec![set(25, 10)],
            vec![Attention::Failing],
        ),
        PlanCase {
            latched: true,
            ..case(
                "latched and passing now: still down, never extended",
                25,
                pass(),
                h(3),
                h(3),
                vec![set(25, 10)],
                vec![Attention::Failing],
            )
        },
        PlanCase {
            latched: true,
            ..case(
                "latched at the floor",
                2,
                pass(),
                h(3),
                h(3),
                vec![],
                vec![Attention::FailingAtFloor],
            )
        },
        PlanCase {
            started_ago: Duration::days(29),
            ..case(
                "extension capped at StartTime + 30 d",
                10,
                inconclusive(),
                h(3),
                h(3),
                vec![extend(soon, now + Duration::days(1))],
                vec![],
            )
        },
        PlanCase {
            started_ago: Duration::days(30) - h(3),
            ..case(
                "at the 30-day cap: cannot extend",
                10,
                inconclusive(),
                h(3),
                h(3),
                vec![],
                vec![Attention::CannotExtend],
            )
        },
    ];
    for case in cases {
        let mut e = experiment("x", case.sampling);
        e.last_modified = now - case.since_change;
        e.end_time = Some(now + case.ends_in);
        e.start_time = Some(now - case.started_ago);
        if case.latched {
            e.tags.insert(
                FAILED_TAG.into(),
                format!("latency_p99@{}", tag_time(now - h(1))),
            );
        }
        let planned = plan_at(&e, &case.verdict, &p, now);
        let name = case.name;
        assert_eq!(
            strip(&planned.actions),
            case.actions,
            "{name}: {planned:#?}"
        );
        assert_eq!(planned.attention, case.attention, "{name}");
        let failing = case.latched || case.verdict.outcome == FAIL;
        for action in &planned.actions {
            match action {
                // The reason given must be the one the outcome explains.
                Action::SetSampling { from, to, why } => {
                    let explained = match why {
                        SamplingChange::Passing { dwelt, dwell } => {
                            to > from && case.verdict.outcome == PASS && dwelt >= dwell
                        }
                        SamplingChange::Failing => to < from && case.verdict.outcome == FAIL,
                        SamplingChange::Latched => to < from && case.latched,
                        SamplingChange::AboveMaximum { ceiling } => to == ceiling && from > ceiling,
                        SamplingChange::ForEvidence { .. } => false,
                    };
                    assert!(explained, "{name}: {action:?}");
                    // Every sampling change starts a step: tagged now.
                    assert_eq!(
                        planned.tags.set.get(STEP_TAG),
                        Some(&format!("{to}@{}", tag_time(now))),
                        "{name}"
                    );
                }
                Action::ExtendEndTime { to, .. } => {
                    assert!(!failing, "{name}: a failing shadow is never extended");
                    assert!(*to <= e.start_time.unwrap() + Duration::days(30), "{name}");
                    assert!(*to > now, "{name}");
                }
                Action::Stop { .. } => panic!("{name}: this policy never stops"),
            }
        }
        // Only a new failure writes the latch.
        assert_eq!(
            planned.tags.set.contains_key(FAILED_TAG),
            case.verdict.outcome == FAIL && !case.latched,
            "{name}"
        );
    }
}

/// One experiment at the end of its test: sampling, how long ago its step
/// was tagged (`None`: untagged), the latch's age, and when it ends.
struct StopCase {
    name: &'static str,
    at_cap: &'static str,
    sampling: u8,
    verdict: Verdict,
    step_tagged: Option<Duration>,
    latched: Option<Duration>,
    started_ago: Duration,
    ends_in: Duration,
    actions: Vec<Planned>,
    attention: Vec<Attention>,
    note: Option<fn(&Note) -> bool>,
}

#[test]
fn stop_table() {
    use StopState::{Cancelled, Completed};
    use VariantAction::{Promote, Remove, Retain};
    let policy = |at_cap: &str| {
        parse_policy(
            "t.yaml",
            &format!(
                "name: t\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [5, 10, 25, 50, 100]\n  bake_time: 2h\n  floor: 2\nextend:\n  margin: 6h\n  by: 2d\nstop:\n  promote:\n    after_passing: 6h\n    production: remove\n    at_cap: {at_cap}\n  on_failure:\n    after: 1d\n"
            ),
        )
        .unwrap()
    };
    let now = t0() + Duration::days(10);
    let h = Duration::hours;
    let far = Duration::days(5);
    let pass = || Verdict::from_outcome(PASS);
    let fail = || verdict_of(vec![p99(FAIL)]);
    let case = |name, sampling, verdict, step_tagged: Option<Duration>| StopCase {
        name,
        at_cap: "report",
        sampling,
        verdict,
        step_tagged,
        latched: None,
        started_ago: Duration::days(10),
        ends_in: far,
        actions: vec![],
        attention: vec![],
        note: None,
    };
    let promoted = Planned::Stop(Completed, Promote, Remove);
    let removed = Planned::Stop(Cancelled, Remove, Retain);
    let ready = vec![Attention::ReadyToPromote];
    let at_floor = vec![Attention::FailingAtFloor];
    let cases = vec![
        StopCase {
            actions: vec![promoted.clone()],
            attention: ready.clone(),
            ..case(
                "passed at 100 % for after_passing: promoted",
                100,
                pass(),
                Some(h(6)),
            )
        },
        StopCase {
            attention: ready.clone(),
            note: Some(|n| {
                matches!(
                    n,
                    Note::PromotionDue {
                        ends_first: None,
                        ..
                    }
                )
            }),
            ..case(
                "passed at 100 % not yet long enough: due later",
                100,
                pass(),
                Some(h(5)),
            )
        },
        StopCase {
            ends_in: h(3),
            attention: ready.clone(),
            actions: vec![Planned::Extend(
                now + h(3),
                now + h(6) + Duration::minutes(20),
            )],
            ..case(
                "due later and ending soon: extended, not left to expire",
                100,
                pass(),
                Some(h(5)),
            )
        },
        StopCase {
            attention: ready.clone(),
            note: Some(|n| matches!(n, Note::PromotionDue { .. })),
            ..case(
                "an untagged 100 % step is not promoted on the tick that tags it",
                100,
                pass(),
                None,
            )
        },
        StopCase {
            started_ago: Duration::days(30) - Duration::minutes(5),
            ends_in: Duration::minutes(5),
            attention: vec![Attention::ReadyToPromote, Attention::CannotExtend],
            note: Some(|n| matches!(n, Note::PromotionOutrun { .. })),
            ..case(
                "the cap comes first, at_cap report: left to end",
                100,
                pass(),
                Some(h(5)),
            )
        },
        StopCase {
            at_cap: "promote",
            started_ago: Duration::days(30) - Duration::minutes(5),
            ends_in: Duration::minutes(5),
            actions: vec![promoted.clone()],
            attention: ready.clone(),
            ..case(
                "the cap comes first, at_cap promote: promoted at the last tick",
                100,
                pass(),
                Some(h(5)),
            )
        },
        StopCase {
            at_cap: "promote",
            started_ago: Duration::days(30) - h(2),
            ends_in: h(2),
            attention: vec![Attention::ReadyToPromote, Attention::CannotExtend],
            note: Some(|n| {
                matches!(
                    n,
                    Note::PromotionDue {
                        ends_first: Some(_),
                        ..
                    }
                )
            }),
            ..case(
                "the cap comes first, not the last tick yet: waits",
                100,
                pass(),
                Some(h(1)),
            )
        },
        StopCase {
            actions: vec![Planned::Set(50, 100)],
            ..case(
                "passing below 100 % climbs, never promoted",
                50,
                pass(),
                Some(h(6)),
            )
        },
        case(
            "inconclusive at 100 % is never promoted",
            100,
            Verdict::from_outcome(INC),
            Some(h(30)),
        ),
        StopCase {
            latched: Some(h(25)),
            actions: vec![removed.clone()],
            attention: at_floor.clone(),
            ..case(
                "failing at the floor for a day: shadow removed",
                2,
                pass(),
                Some(h(48)),
            )
        },
        StopCase {
            latched: Some(h(23)),
            attention: at_floor.clone(),
            note: Some(|n| matches!(n, Note::StopDue { .. })),
            ..case(
                "failing at the floor for under a day: due later",
                2,
                pass(),
                Some(h(48)),
            )
        },
        StopCase {
            latched: Some(h(48)),
            attention: at_floor.clone(),
            note: Some(|n| matches!(n, Note::StopDue { .. })),
            ..case(
                "counted from the floor step's tag when it is later",
                2,
                pass(),
                Some(h(12)),
            )
        },
        StopCase {
            attention: at_floor.clone(),
            note: Some(|n| matches!(n, Note::StopDue { .. })),
            ..case(
                "a new failure at the floor starts the count now",
                2,
                fail(),
                Some(h(48)),
            )
        },
        StopCase {
            latched: Some(h(48)),
            actions: vec![Planned::Set(25, 10)],
            attention: vec![Attention::Failing],
            ..case(
                "latched above the floor steps down, never stops",
                25,
                pass(),
                Some(h(48)),
            )
        },
    ];
    for case in cases {
        let policy = policy(case.at_cap);
        let mut e = experiment("x", case.sampling);
        e.start_time = Some(now - case.started_ago);
        e.end_time = Some(now + case.ends_in);
        e.last_modified = now - h(50);
        if let Some(ago) = case.step_tagged {
            e.tags.insert(
                STEP_TAG.into(),
                format!("{}@{}", case.sampling, tag_time(now - ago)),
            );
        }
        if let Some(ago) = case.latched {
            e.tags.insert(
                FAILED_TAG.into(),
                format!("latency_p99@{}", tag_time(now - ago)),
            );
        }
        let planned = plan_at(&e, &case.verdict, &policy, now);
        let name = case.name;
        assert_eq!(
            strip(&planned.actions),
            case.actions,
            "{name}: {planned:#?}"
        );
        assert_eq!(planned.attention, case.attention, "{name}");
        if let Some(note) = case.note {
            assert!(
                planned.notes.iter().any(note),
                "{name}: {:#?}",
                planned.notes
            );
        }
        // A stop is the only action of its plan, and sends no update.
        if planned.stop().is_some() {
            assert_eq!(planned.actions.len(), 1, "{name}");
            assert_eq!(planned.update_for(&e), None, "{name}");
        }
    }
}

#[test]
fn floor_mode_goes_straight_to_the_floor() {
    let p = plan_policy("  bake_time: 2h\n  on_fail: floor\n", "  enabled: true\n");
    let e = experiment("x", 50);
    let planned = plan_at(
        &e,
        &verdict_of(vec![p99(FAIL)]),
        &p,
        t0() + Duration::hours(1),
    );
    assert!(matches!(
        planned.actions[..],
        [Action::SetSampling {
            from: 50,
            to: 1,
            why: SamplingChange::Failing,
        }]
    ));
}

#[test]
fn a_fail_writes_the_latch_and_the_new_step_and_steps_down() {
    let p = plan_policy("  bake_time: 30m\n", "  enabled: true\n");
    let now = t0() + Duration::hours(5);
    let mut e = experiment("x", 25);
    e.tags
        .insert(STEPS_TAG.into(), format!("10@{}", tag_time(t0())));
    e.tags.insert(
        STEP_TAG.into(),
        format!("25@{}", tag_time(t0() + Duration::hours(2))),
    );
    // Ending soon: a failing shadow still gets no extension.
    e.end_time = Some(now + Duration::minutes(30));
    let planned = plan_at(&e, &verdict_of(vec![p99(PASS), p99(FAIL)]), &p, now);
    assert_eq!(strip(&planned.actions), [Planned::Set(25, 10)]);
    assert_eq!(planned.attention, [Attention::Failing]);
    assert_eq!(
        planned.tags.set.get(FAILED_TAG).map(String::as_str),
        Some(format!("latency_p99@{}", tag_time(now)).as_str())
    );
    assert_eq!(
        planned.tags.set.get(STEP_TAG),
        Some(&format!("10@{}", tag_time(now)))
    );
    assert_eq!(
        planned.tags.set.get(STEPS_TAG),
        Some(&format!(
            "10@{} 25@{}",
            tag_time(t0()),
            tag_time(t0() + Duration::hours(2))
        ))
    );
    assert!(planned.tags.remove.is_empty());
}

#[test]
fn a_latched_experiment_steps_down_every_tick_to_the_floor_and_is_never_ramped_or_extended() {
    let p = plan_policy(
        "  bake_time: 10m\n  evidence_ramps: true\n",
        "  enabled: true\n  margin: 6h\n  by: 1d\n",
    );
    let mut now = t0() + Duration::hours(3);
    let mut e = experiment("x", 50);
    e.end_time = Some(now + Duration::hours(1));
    // One failing tick, then a shadow that looks healthy (or lacks
    // evidence, which would otherwise ramp it) every tick after.
    let first = plan_at(&e, &verdict_of(vec![p99(FAIL)]), &p, now);
    apply(&mut e, &first, now);
    assert!(e.failed_mark().is_some());
    let mut percentages = vec![e.sampling_percentage];
    let mut attention = vec![first.attention.clone()];
    for tick in 0..8 {
        now += Duration::minutes(TICK_MINUTES);
        let verdict = if tick % 2 == 0 {
            Verdict::from_outcome(PASS)
        } else {
            verdict_of(vec![check_result(
                CheckMetric::LatencyP99,
                INC,
                Some(Reason::Insufficient),
                Some(true),
                Some(600.0),
                Some(60.0),
            )])
        };
        let planned = plan_at(&e, &verdict, &p, now);
        assert!(
            planned
                .notes
                .iter()
                .any(|n| matches!(n, Note::Latched { mark } if mark.check == "latency_p99")),
            "{planned:#?}"
        );
        assert!(!planned.tags.set.contains_key(FAILED_TAG), "written once");
        for action in &planned.actions {
            assert!(
                matches!(action, Action::SetSampling { from, to, why: SamplingChange::Latched } if to < from),
                "{action:?}"
            );
        }
        apply(&mut e, &planned, now);
        percentages.push(e.sampling_percentage);
        attention.push(planned.attention.clone());
    }
    assert_eq!(percentages, [25, 10, 5, 1, 1, 1, 1, 1, 1]);
    let failing = vec![Attention::Failing];
    let at_floor = vec![Attention::FailingAtFloor];
    assert_eq!(
        attention,
        [
            failing.clone(),
            failing.clone(),
            failing.clone(),
            failing,
            at_floor.clone(),
            at_floor.clone(),
            at_floor.clone(),
            at_floor.clone(),
            at_floor
        ]
    );
    assert_eq!(
        e.end_time,
        Some(t0() + Duration::hours(4)),
        "never extended"
    );
}

#[test]
fn rearm_after_deletes_the_latch_and_restarts_the_whole_experiment_sequence() {
    let p = plan_policy("  bake_time: 30m\n  rearm_after: 2h\n", "  enabled: true\n");
    let never = plan_policy("  bake_time: 30m\n", "  enabled: true\n");
    let now = t0() + Duration::hours(10);
    let latched = |ago: Duration| {
        let mut e = experiment("x", 1);
        e.tags.insert(
            FAILED_TAG.into(),
            format!("error_rate_5xx@{}", tag_time(now - ago)),
        );
        e.tags.insert(
            STEP_TAG.into(),
            format!("1@{}", tag_time(t0() + Duration::hours(1))),
        );
        e
    };
    let pass = Verdict::from_outcome(PASS);

    // Not yet: still latched at the floor.
    let early = plan_at(&latched(Duration::minutes(119)), &pass, &p, now);
    assert_eq!(early.attention, [Attention::FailingAtFloor]);
    assert!(early.tags.remove.is_empty());
    // Without rearm_after, never.
    let kept = plan_at(&latched(Duration::days(9)), &pass, &never, now);
    assert_eq!(kept.attention, [Attention::FailingAtFloor]);
    assert!(kept.tags.remove.is_empty());

    // Re-armed: the latch goes, the whole-experiment sequence restarts now,
    // and nothing else happens this tick.
    let mut e = latched(Duration::hours(2));
    let rearmed = plan_at(&e, &pass, &p, now);
    assert!(rearmed.actions.is_empty(), "{rearmed:#?}");
    assert!(rearmed.attention.is_empty());
    assert_eq!(rearmed.tags.remove.iter().collect::<Vec<_>>(), [FAILED_TAG]);
    assert_eq!(rearmed.tags.set.get(SINCE_TAG), Some(&tag_time(now)));
    assert!(
        matches!(&rearmed.notes[..], [Note::Rearmed { mark }] if mark.check == "error_rate_5xx"),
        "{:?}",
        rearmed.notes
    );
    apply(&mut e, &rearmed, now);
    assert!(e.failed_mark().is_none());
    let later = now + Duration::minutes(TICK_MINUTES);
    let timeline = Timeline::of(&e, &p, later);
    assert_eq!(timeline.whole_start, now);
    // The step's evidence, and its dwell, start again with it.
    assert_eq!(timeline.step_start, now);
    let next = plan_at(&e, &pass, &p, later);
    assert!(next.attention.is_empty(), "{next:#?}");
    assert!(
        matches!(next.notes[..], [Note::Dwelling { at: 1, .. }]),
        "{next:#?}"
    );
}

#[test]
fn a_sampling_change_tags_the_new_step_and_appends_the_ended_one_to_the_history() {
    let p = plan_policy("  bake_time: 1h\n", "  enabled: true\n");
    let now = t0() + Duration::hours(5);
    let at = |h: i64| t0() + Duration::hours(h);
    let mut e = experiment("x", 10);
    e.tags
        .insert(STEPS_TAG.into(), format!("5@{}", tag_time(at(0))));
    e.tags
        .insert(STEP_TAG.into(), format!("10@{}", tag_time(at(2))));
    e.last_modified = at(4); // an extension since: not a step
    let planned = plan_at(&e, &Verdict::from_outcome(PASS), &p, now);
    assert!(matches!(
        planned.actions[..],
        [Action::SetSampling {
            from: 10,
            to: 25,
            why: SamplingChange::Passing { .. }
        }]
    ));
    assert_eq!(
        planned.tags.set.get(STEP_TAG),
        Some(&format!("25@{}", tag_time(now)))
    );
    assert_eq!(
        planned.tags.set.get(STEPS_TAG),
        Some(&format!("5@{} 10@{}", tag_time(at(0)), tag_time(at(2))))
    );

    // A long history keeps the newest steps that fit in a tag value.
    let mut long = experiment("x", 50);
    let marks: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "{}@{}",
                5 + i % 2 * 5,
                tag_time(t0() + Duration::minutes(10 * i))
            )
        })
        .collect();
    long.tags.insert(STEPS_TAG.into(), marks.join(" "));
    let step_at = t0() + Duration::hours(7);
    long.tags
        .insert(STEP_TAG.into(), format!("50@{}", tag_time(step_at)));
    let later = step_at + Duration::hours(2);
    let planned = plan_at(&long, &Verdict::from_outcome(PASS), &p, later);
    let history = &planned.tags.set[STEPS_TAG];
    assert!(history.len() <= MAX_TAG_VALUE_CHARS, "{}", history.len());
    let kept: Vec<StepMark> = history
        .split(' ')
        .map(|raw| StepMark::parse(raw).unwrap_or_else(|| panic!("{raw:?} in {history}")))
        .collect();
    assert_eq!(
        kept.last(),
        Some(&StepMark {
            percentage: 50,
            since: step_at
        })
    );
    assert!(kept.len() >= 8, "{history}");
    assert!(
        kept.windows(2).all(|w| w[0].since < w[1].since),
        "{history}"
    );
}

#[test]
fn the_step_tag_decides_where_a_step_starts() {
    let p = plan_policy("  bake_time: 2h\n", "  enabled: true\n");
    let now = t0() + Duration::hours(6);
    let at = |h: i64| t0() + Duration::hours(h);
    let pass = Verdict::from_outcome(PASS);

    // A sampling someone else set (the tag says 10, AWS says 25): the step
    // starts at LastModifiedTime and the tags are rewritten to say so.
    let mut elsewhere = experiment("x", 25);
    elsewhere
        .tags
        .insert(STEP_TAG.into(), format!("10@{}", tag_time(at(1))));
    elsewhere.last_modified = at(5);
    let timeline = Timeline::of(&elsewhere, &p, now);
    assert_eq!(
        timeline.step_origin,
        StepOrigin::ChangedElsewhere { tagged: 10 }
    );
    assert_eq!(timeline.step_start, at(5));
    let planned_elsewhere = plan_at(&elsewhere, &pass, &p, now);
    assert!(
        planned_elsewhere.actions.is_empty(),
        "dwelling since the change"
    );
    assert!(planned_elsewhere.notes.contains(&Note::ChangedElsewhere {
        tagged: 10,
        now: 25
    }));
    assert!(planned_elsewhere
        .notes
        .iter()
        .any(|n| matches!(n, Note::Dwelling { at: 25, .. })));
    assert_eq!(
        planned_elsewhere.tags.set.get(STEP_TAG),
        Some(&format!("25@{}", tag_time(at(5))))
    );
    assert_eq!(
        planned_elsewhere.tags.set.get(STEPS_TAG),
        Some(&format!("10@{}", tag_time(at(1))))
    );
    apply(&mut elsewhere, &planned_elsewhere, now);
    assert_eq!(
        Timeline::of(&elsewhere, &p, now).step_origin,
        StepOrigin::Tagged,
        "read back as shadowpilot's own"
    );

    // An EndTime-only extension moved LastModifiedTime 5 minutes ago: with
    // the tag the dwell still counts from the step, without it (an
    // experiment from before the tags) from LastModifiedTime.
    let mut extended = experiment("x", 10);
    extended.last_modified = now - Duration::minutes(5);
    let untagged = plan_at(&extended, &pass, &p, now);
    assert!(untagged.actions.is_empty());
    assert!(
        matches!(
            untagged.notes[..],
            [Note::Dwelling { dwelt, at: 10, .. }] if dwelt == StdDuration::from_secs(5 * 60)
        ),
        "{:?}",
        untagged.notes
    );
    assert_eq!(
        untagged.tags.set.get(STEP_TAG),
        Some(&format!("10@{}", tag_time(now - Duration::minutes(5)))),
        "an untagged step is tagged where it starts"
    );
    extended
        .tags
        .insert(STEP_TAG.into(), format!("10@{}", tag_time(at(1))));
    let tagged = plan_at(&extended, &pass, &p, now);
    assert!(
        matches!(
            tagged.actions[..],
            [Action::SetSampling { from: 10, to: 25, why: SamplingChange::Passing { dwelt, .. } }]
                if dwelt == StdDuration::from_secs(5 * 3600)
        ),
        "{tagged:#?}"
    );

    // An extension alone never touches the step tags.
    extended.end_time = Some(now + Duration::minutes(30));
    let only_extended = plan_at(&extended, &Verdict::from_outcome(INC), &p, now);
    assert!(matches!(
        only_extended.actions[..],
        [Action::ExtendEndTime { .. }]
    ));
    assert!(only_extended.tags.is_empty(), "{:?}", only_extended.tags);
}

#[test]
fn the_dwell_counts_from_the_later_of_start_time_and_the_step_start() {
    let p = plan_policy("  bake_time: 2h\n", "  enabled: true\n");
    let pass = Verdict::from_outcome(PASS);
    let m = Duration::minutes;
    let cases = [
        // (name, step tag's time from StartTime, LastModifiedTime from it,
        //  now from it, ramps, dwelt)
        (
            "Created a day before it started, untagged",
            None,
            m(-24 * 60),
            m(30),
            false,
            30,
        ),
        (
            "the same, once two hours ran",
            None,
            m(-24 * 60),
            m(120),
            true,
            120,
        ),
        (
            "a tag from before StartTime",
            Some(m(-600)),
            m(-600),
            m(90),
            false,
            90,
        ),
        (
            "a tag after StartTime",
            Some(m(60)),
            m(100),
            m(150),
            false,
            90,
        ),
        (
            "a tag after StartTime, dwelt",
            Some(m(60)),
            m(170),
            m(180),
            true,
            120,
        ),
    ];
    for (name, tag, modified, now, ramps, dwelt) in cases {
        let mut e = experiment("x", 5);
        e.last_modified = t0() + modified;
        if let Some(tag) = tag {
            e.tags
                .insert(STEP_TAG.into(), format!("5@{}", tag_time(t0() + tag)));
        }
        let now = t0() + now;
        let planned = plan_at(&e, &pass, &p, now);
        let dwelt = StdDuration::from_secs(dwelt * 60);
        if ramps {
            assert!(
                matches!(planned.actions[..], [Action::SetSampling { to: 10, why: SamplingChange::Passing { dwelt: d, .. }, .. }] if d == dwelt),
                "{name}: {planned:#?}"
            );
        } else {
            assert!(planned.actions.is_empty(), "{name}: {planned:#?}");
            assert!(
                matches!(planned.notes[..], [Note::Dwelling { dwelt: d, .. }] if d == dwelt),
                "{name}: {:?}",
                planned.notes
            );
        }
    }
}

#[test]
fn evidence_ramps_only_when_every_estimate_passes_its_side_and_time_exceeds_the_dwell() {
    let on = plan_policy(
        "  bake_time: 30m\n  evidence_ramps: true\n",
        "  enabled: true\n",
    );
    let off = plan_policy("  bake_time: 30m\n", "  enabled: true\n");
    let lacking = |passing: Option<bool>, minutes: f64| {
        check_result(
            CheckMetric::LatencyP99,
            INC,
            Some(Reason::Insufficient),
            passing,
            Some(minutes),
            Some(minutes / 10.0),
        )
    };
    let too_little = check_result(
        CheckMetric::LatencyP99,
        INC,
        Some(Reason::TooLittleTraffic {
            shadow_per_minute: 2.0,
            needed_per_minute: 500.0 / 60.0,
        }),
        None,
        Some(f64::INFINITY),
        Some(50.0),
    );
    let straddles = check_result(
        CheckMetric::ErrorRate5xx,
        INC,
        Some(Reason::Straddles),
        Some(true),
        Some(120.0),
        Some(12.0),
    );
    let unmeasured = check_result(
        CheckMetric::ErrorRate5xx,
        INC,
        Some(Reason::NoMeasurements {
            error: shadowpilot_core::ports::MetricFailure(std::sync::Arc::new(
                shadowpilot_core::ports::MetricError::Misaligned {
                    asked: 2,
                    answered: 1,
                },
            )),
        }),
        None,
        None,
        None,
    );
    let pass = check_result(
        CheckMetric::ErrorRate5xx,
        PASS,
        None,
        Some(true),
        None,
        None,
    );
    // (name, policy, sampling, minutes at it, checks, evidence ramp to)
    type Case<'a> = (&'a str, &'a Policy, u8, i64, Vec<CheckResult>, Option<u8>);
    let cases: Vec<Case> = vec![
        (
            "lacking evidence on the passing side, T beyond the dwell",
            &on,
            10,
            40,
            vec![lacking(Some(true), 120.0), pass.clone()],
            Some(25),
        ),
        (
            "a straddling interval on the passing side is lack of evidence too",
            &on,
            10,
            40,
            vec![straddles.clone()],
            Some(25),
        ),
        (
            "no period qualifies at this sampling: the next step may have one",
            &on,
            5,
            40,
            vec![too_little.clone(), pass.clone()],
            Some(10),
        ),
        (
            "not opted in",
            &off,
            10,
            40,
            vec![lacking(Some(true), 120.0)],
            None,
        ),
        (
            "an estimate on the failing side",
            &on,
            10,
            40,
            vec![lacking(Some(false), 120.0), lacking(Some(true), 120.0)],
            None,
        ),
        (
            "T within the dwell: waiting here is as fast",
            &on,
            10,
            40,
            vec![lacking(Some(true), 30.0)],
            None,
        ),
        (
            "T just beyond the dwell",
            &on,
            10,
            40,
            vec![lacking(Some(true), 30.5)],
            Some(25),
        ),
        (
            "not measured is not lack of evidence",
            &on,
            10,
            40,
            vec![lacking(Some(true), 120.0), unmeasured],
            None,
        ),
        (
            "still dwelling",
            &on,
            10,
            20,
            vec![lacking(Some(true), 120.0)],
            None,
        ),
        (
            "at the top step",
            &on,
            100,
            40,
            vec![lacking(Some(true), 120.0)],
            None,
        ),
    ];
    let now = t0() + Duration::hours(10);
    for (name, policy, sampling, dwelt, checks, expected) in cases {
        let mut e = experiment("x", sampling);
        e.tags.insert(
            STEP_TAG.into(),
            format!("{sampling}@{}", tag_time(now - Duration::minutes(dwelt))),
        );
        let verdict = verdict_of(checks);
        assert_eq!(verdict.outcome, INC, "{name}");
        let planned = plan_at(&e, &verdict, policy, now);
        match expected {
            Some(to) => {
                assert!(
                    matches!(planned.actions[..], [Action::SetSampling { from, to: t, why: SamplingChange::ForEvidence { minutes, dwell } }]
                        if from == sampling && t == to && minutes > dwell.as_secs_f64() / 60.0),
                    "{name}: {planned:#?}"
                );
                assert_eq!(
                    planned.tags.set.get(STEP_TAG),
                    Some(&format!("{to}@{}", tag_time(now))),
                    "{name}"
                );
            }
            None => {
                assert!(planned.actions.is_empty(), "{name}: {planned:#?}");
                assert!(
                    planned.notes.contains(&Note::Holding { at: sampling }),
                    "{name}: {:?}",
                    planned.notes
                );
            }
        }
    }
    // A failing check is a failing verdict: down, never up for evidence.
    let mut e = experiment("x", 10);
    e.last_modified = now - Duration::hours(1);
    let planned = plan_at(
        &e,
        &verdict_of(vec![lacking(Some(true), 120.0), p99(FAIL)]),
        &on,
        now,
    );
    assert_eq!(strip(&planned.actions), [Planned::Set(10, 5)]);
}

#[test]
fn extensions_are_sized_by_the_time_the_evidence_needs() {
    let now = t0() + Duration::days(5);
    let m = Duration::minutes;
    let end = now + m(30);
    // Due: EndTime before the next tick (now + 10 min) plus the margin 1 h.
    // next chance + margin + tick = now + 80 min; old EndTime + by = now +
    // 30 min + 1 d.
    let by_end = end + Duration::days(1);
    let undecided = |minutes: f64| {
        check_result(
            CheckMetric::LatencyP99,
            INC,
            Some(Reason::Straddles),
            Some(true),
            Some(minutes),
            Some(minutes / 10.0),
        )
    };
    // (name, max_duration, started ago, checks, new EndTime, needs, capped)
    type Case<'a> = (
        &'a str,
        &'a str,
        Duration,
        Vec<CheckResult>,
        Option<DateTime<Utc>>,
        Option<f64>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "T = 100 min: now + 10·⌈125/10⌉ + 10",
            "30d",
            Duration::days(5),
            vec![undecided(100.0)],
            Some(now + m(140)),
            Some(100.0),
            false,
        ),
        (
            "T = 10 min: the next chance + margin + tick",
            "30d",
            Duration::days(5),
            vec![undecided(10.0)],
            Some(now + m(80)),
            Some(10.0),
            false,
        ),
        (
            "T = 0: the next chance + margin + tick",
            "30d",
            Duration::days(5),
            vec![undecided(0.0)],
            Some(now + m(80)),
            Some(0.0),
            false,
        ),
        (
            "T is the longest undecided check's",
            "30d",
            Duration::days(5),
            vec![undecided(10.0), undecided(100.0), undecided(50.0)],
            Some(now + m(140)),
            Some(100.0),
            false,
        ),
        (
            "a long T: at most the old EndTime + by",
            "30d",
            Duration::days(5),
            vec![undecided(5000.0)],
            Some(by_end),
            Some(5000.0),
            false,
        ),
        (
            "no traffic (T infinite): old EndTime + by",
            "30d",
            Duration::days(5),
            vec![undecided(f64::INFINITY)],
            Some(by_end),
            None,
            false,
        ),
        (
            "capped at StartTime + 30 d",
            "30d",
            Duration::days(30) - m(60),
            vec![undecided(100.0)],
            Some(now + m(60)),
            Some(100.0),
            true,
        ),
        (
            "capped at StartTime + the policy's maximum",
            "5d 1h",
            Duration::days(5),
            vec![undecided(100.0)],
            Some(now + m(60)),
            Some(100.0),
            true,
        ),
        (
            "the cap before the old EndTime: cannot extend",
            "5d 20m",
            Duration::days(5),
            vec![undecided(100.0)],
            None,
            None,
            false,
        ),
    ];
    for (name, max_duration, started_ago, checks, expected, needs, capped) in cases {
        let p = plan_policy(
            "  bake_time: 30m\n",
            &format!("  enabled: true\n  margin: 1h\n  by: 1d\n  max_duration: {max_duration}\n"),
        );
        let mut e = experiment("x", 10);
        e.start_time = Some(now - started_ago);
        e.end_time = Some(end);
        let planned = plan_at(&e, &verdict_of(checks), &p, now);
        match expected {
            Some(to) => {
                let [Action::ExtendEndTime { from, to: got, why }] = &planned.actions[..] else {
                    panic!("{name}: {planned:#?}");
                };
                assert_eq!((*from, *got), (end, to), "{name}");
                let Extension {
                    because,
                    needs_minutes,
                    capped_at,
                    ..
                } = why;
                assert_eq!(*because, NeedsTime::Inconclusive, "{name}");
                assert_eq!(*needs_minutes, needs, "{name}");
                assert_eq!(capped_at.is_some(), capped, "{name}");
                assert!(planned.attention.is_empty(), "{name}");
            }
            None => {
                assert!(planned.actions.is_empty(), "{name}: {planned:#?}");
                assert_eq!(planned.attention, [Attention::CannotExtend], "{name}");
                assert!(
                    planned
                        .notes
                        .iter()
                        .any(|n| matches!(n, Note::AtCap { .. })),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn a_tick_never_re_extends_what_the_last_one_extended() {
    let p = plan_policy(
        "  bake_time: 30m\n",
        "  enabled: true\n  margin: 1h\n  by: 1d\n",
    );
    let mut now = t0() + Duration::days(2);
    let mut e = experiment("x", 10);
    e.end_time = Some(now + Duration::minutes(30));
    let verdict = verdict_of(vec![check_result(
        CheckMetric::LatencyP99,
        INC,
        Some(Reason::Straddles),
        Some(true),
        Some(5.0),
        Some(1.0),
    )]);
    let mut extensions = Vec::new();
    for _ in 0..30 {
        let planned = plan_at(&e, &verdict, &p, now);
        if !planned.actions.is_empty() {
            extensions.push(now);
        }
        apply(&mut e, &planned, now);
        now += Duration::minutes(TICK_MINUTES);
    }
    // Each extension lands a tick past the margin of the next chance to
    // write, so the tick after it is never due again.
    assert!(
        extensions
            .windows(2)
            .all(|w| w[1] - w[0] > Duration::minutes(TICK_MINUTES)),
        "{extensions:?}"
    );
    assert!(extensions.len() >= 2, "{extensions:?}");
}

#[test]
fn a_passing_shadow_below_the_top_is_extended_for_the_rest_of_its_climb() {
    let p = plan_policy(
        "  bake_time: 2h\n",
        "  enabled: true\n  margin: 6h\n  by: 2d\n",
    );
    let now = t0() + Duration::days(10);
    let mut e = experiment("x", 10);
    e.last_modified = now - Duration::hours(3);
    e.end_time = Some(now + Duration::hours(3));
    let planned = plan_at(&e, &Verdict::from_outcome(PASS), &p, now);
    // Three steps above 10 at 2 h each: T = 6 h, so now + 10·⌈45⌉ + 10 min.
    let [Action::SetSampling {
        from: 10, to: 25, ..
    }, Action::ExtendEndTime { to, why, .. }] = &planned.actions[..]
    else {
        panic!("{planned:#?}");
    };
    assert_eq!(*to, now + Duration::minutes(460));
    assert_eq!(why.because, NeedsTime::StillClimbing);
    assert_eq!(why.needs_minutes, Some(360.0));
}

#[test]
fn undecidable_when_even_the_top_step_needs_longer_than_the_time_left() {
    let p = plan_policy(
        "  bake_time: 30m\n",
        "  enabled: true\n  margin: 1h\n  by: 1d\n  max_duration: 10d\n",
    );
    let now = t0() + Duration::days(8);
    let left = StdDuration::from_secs(2 * 86_400);
    let needing = |at_top: Option<TimeToDecision>| {
        let mut check = check_result(
            CheckMetric::LatencyP99,
            INC,
            Some(Reason::Straddles),
            Some(true),
            Some(1e6),
            None,
        );
        check.at_ceiling = at_top;
        verdict_of(vec![check])
    };
    let needs = |minutes: f64| {
        Some(TimeToDecision::Needs {
            extra: 1.0,
            minutes,
        })
    };
    let cases = [
        (
            "three days at the top, two left",
            needs(3.0 * 1440.0),
            Some(3.0 * 1440.0),
        ),
        (
            "on the margin",
            Some(TimeToDecision::Undecidable),
            Some(f64::INFINITY),
        ),
        ("a day at the top: extend", needs(1440.0), None),
        (
            "no traffic even at the top: extend by `by`",
            needs(f64::INFINITY),
            None,
        ),
    ];
    for (name, at_top, undecidable) in cases {
        let mut e = experiment("x", 10);
        e.end_time = Some(now + Duration::minutes(30));
        let planned = plan_at(&e, &needing(at_top), &p, now);
        match undecidable {
            Some(minutes) => {
                assert!(planned.actions.is_empty(), "{name}: {planned:#?}");
                assert_eq!(planned.attention, [Attention::Undecidable], "{name}");
                assert!(
                    planned.notes.contains(&Note::Undecidable { minutes, left }),
                    "{name}: {:?}",
                    planned.notes
                );
            }
            None => {
                assert!(
                    matches!(planned.actions[..], [Action::ExtendEndTime { .. }]),
                    "{name}: {planned:#?}"
                );
                assert!(planned.attention.is_empty(), "{name}");
            }
        }
    }
}
