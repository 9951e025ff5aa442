//! Table tests of the pure core: judge and plan, at their boundaries.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{experiment, t0};
use shadowpilot_core::judge::{evidence_window, judge, CheckId, Outcome, Verdict, INVOCATIONS};
use shadowpilot_core::metrics::{
    Measurements, SageMakerMetric, SeriesKey, Statistic, VariantMeasurements, Window,
};
use shadowpilot_core::plan::{plan, Action, Attention, Note, SamplingChange};
use shadowpilot_core::policy::{parse_policy, CheckMetric, Policy};

fn policy(yaml_tail: &str) -> Policy {
    let text = format!(
        "name: t\nevidence:\n  min_shadow_invocations: 100\n  min_production_invocations: 100\nramp:\n  steps: [5, 10, 25, 50, 100]\n  bake_time: 2h\n{yaml_tail}"
    );
    parse_policy("t.yaml", &text).unwrap()
}

const P99: SeriesKey = SeriesKey::new(
    SageMakerMetric::ModelLatency,
    Statistic::PercentileTenths(990),
);
const E5XX: SeriesKey = SeriesKey::new(SageMakerMetric::Invocation5XXErrors, Statistic::Sum);

fn variant(
    invocations: Option<f64>,
    errors: Option<f64>,
    p99_ms: Option<f64>,
) -> VariantMeasurements {
    let mut v = VariantMeasurements::default();
    if let Some(n) = invocations {
        v.set(INVOCATIONS, n);
    }
    if let Some(e) = errors {
        v.set(E5XX, e);
    }
    if let Some(ms) = p99_ms {
        v.set(P99, ms * 1000.0);
    }
    v
}

#[test]
fn judge_table() {
    let checks = "checks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\n  - metric: error_rate_5xx\n    max: 1.0\n  - metric: error_rate_5xx\n    max_above_production: 0.5\n";
    let p = policy(checks);
    let prod = || variant(Some(1000.0), Some(2.0), Some(300.0));
    // (case, production, shadow, outcome, decisive check, how it reads)
    let cases: Vec<(
        &str,
        VariantMeasurements,
        VariantMeasurements,
        Outcome,
        CheckId,
        &str,
    )> = vec![
        (
            "healthy",
            prod(),
            variant(Some(500.0), Some(1.0), Some(310.0)),
            Outcome::Pass,
            CheckId::Metric(CheckMetric::LatencyP99),
            "shadow p99 310 ms ≤ 1.20 × production 300 ms (limit 360 ms)",
        ),
        (
            "exactly at the ratio limit passes",
            prod(),
            variant(Some(500.0), Some(0.0), Some(360.0)),
            Outcome::Pass,
            CheckId::Metric(CheckMetric::LatencyP99),
            "360 ms ≤ 1.20 × production 300 ms",
        ),
        (
            "just over the ratio limit fails",
            prod(),
            variant(Some(500.0), Some(0.0), Some(360.5)),
            Outcome::Fail,
            CheckId::Metric(CheckMetric::LatencyP99),
            "shadow p99 360 ms > 1.20 × production 300 ms (limit 360 ms)",
        ),
        (
            "exactly 1 % 5xx passes",
            variant(Some(1000.0), Some(6.0), Some(300.0)),
            variant(Some(500.0), Some(5.0), Some(300.0)),
            Outcome::Pass,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate 1.00 % ≤ 1.00 %",
        ),
        (
            "well over 1 % 5xx fails",
            prod(),
            variant(Some(500.0), Some(15.0), Some(300.0)),
            Outcome::Fail,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate 3.00 % > 1.00 %",
        ),
        (
            "just over 1 % on a few errors is not conclusive",
            prod(),
            variant(Some(500.0), Some(6.0), Some(300.0)),
            Outcome::Inconclusive,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate 1.20 % > 1.00 %, but 6 errors in 500 invocations are too few to tell (95 % lower bound 0.62 %)",
        ),
        (
            "5xx over production + 0.5 points",
            variant(Some(10000.0), Some(10.0), Some(300.0)),
            variant(Some(10000.0), Some(90.0), Some(300.0)),
            Outcome::Fail,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate 0.90 % > production 0.10 % + 0.50 points (limit 0.60 %)",
        ),
        (
            "exactly the minimum evidence",
            prod(),
            variant(Some(100.0), Some(0.0), Some(300.0)),
            Outcome::Pass,
            CheckId::Metric(CheckMetric::LatencyP99),
            "shadow p99 300 ms ≤ 1.20 × production 300 ms (limit 360 ms)",
        ),
        (
            "thin shadow traffic",
            prod(),
            variant(Some(99.0), Some(0.0), Some(300.0)),
            Outcome::Inconclusive,
            CheckId::ShadowInvocations,
            "shadow invocations 99 < minimum 100",
        ),
        (
            "thin data never fails either",
            prod(),
            variant(Some(50.0), Some(50.0), Some(9000.0)),
            Outcome::Inconclusive,
            CheckId::ShadowInvocations,
            "shadow invocations 50 < minimum 100",
        ),
        (
            "no shadow data at all",
            prod(),
            variant(None, None, None),
            Outcome::Inconclusive,
            CheckId::ShadowInvocations,
            "shadow invocations 0 < minimum 100 (no datapoints)",
        ),
        (
            "shadow latency missing",
            prod(),
            variant(Some(500.0), Some(0.0), None),
            Outcome::Inconclusive,
            CheckId::Metric(CheckMetric::LatencyP99),
            "shadow p99: no datapoints in the window",
        ),
        (
            "shadow error series missing is not zero",
            prod(),
            variant(Some(500.0), None, Some(300.0)),
            Outcome::Inconclusive,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate: no datapoints",
        ),
        (
            "production missing",
            variant(None, None, None),
            variant(Some(500.0), Some(0.0), Some(300.0)),
            Outcome::Inconclusive,
            CheckId::Metric(CheckMetric::LatencyP99),
            "production invocations 0 < minimum 100",
        ),
        (
            "production latency missing",
            variant(Some(1000.0), Some(0.0), None),
            variant(Some(500.0), Some(0.0), Some(300.0)),
            Outcome::Inconclusive,
            CheckId::Metric(CheckMetric::LatencyP99),
            "production p99: no datapoints",
        ),
        (
            "a fail outweighs an inconclusive check",
            variant(Some(1000.0), Some(0.0), None),
            variant(Some(500.0), Some(50.0), Some(300.0)),
            Outcome::Fail,
            CheckId::Metric(CheckMetric::ErrorRate5xx),
            "shadow 5xx rate 10.00 % > 1.00 %",
        ),
    ];
    for (case, production, shadow, expected, decisive_id, fragment) in cases {
        let verdict = judge(&p, &Measurements { production, shadow });
        assert_eq!(verdict.outcome, expected, "{case}: {:#?}", verdict.checks);
        let decisive = verdict.decisive_check().unwrap();
        assert_eq!(decisive.id, decisive_id, "{case}: {decisive:#?}");
        // The report's rendering of the same result.
        let words = decisive.to_string();
        assert!(
            words.contains(fragment),
            "{case}: decisive {words:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn check_results_carry_value_limit_and_unit() {
    let p = policy("checks:\n  - metric: latency_p99\n    max: 800\n");
    let verdict = judge(
        &p,
        &Measurements {
            production: variant(Some(1000.0), Some(0.0), Some(300.0)),
            shadow: variant(Some(1000.0), Some(0.0), Some(412.0)),
        },
    );
    let check = &verdict.checks[1];
    assert_eq!((check.value, check.limit), (Some(412.0), Some(800.0)));
    let json = serde_json::to_value(check).unwrap();
    assert_eq!(json["unit"], "ms");
    assert_eq!(json["metric"], "latency_p99");
    assert_eq!(json["outcome"], "pass");
}

#[test]
fn evidence_window_table() {
    let spec = policy("window:\n  lookback: 1h\n  publish_delay: 5m\n").window;
    let at = |h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2026, 11, 2, h, m, s).unwrap();
    let cases = [
        // (last modified, now, expected window)
        (
            at(0, 0, 0),
            at(12, 0, 30),
            Some((at(10, 55, 0), at(11, 55, 0))),
        ),
        (
            at(11, 30, 0),
            at(12, 0, 0),
            Some((at(11, 30, 0), at(11, 55, 0))),
        ),
        (
            at(11, 30, 1),
            at(12, 0, 0),
            Some((at(11, 31, 0), at(11, 55, 0))),
        ),
        (
            at(11, 54, 0),
            at(12, 0, 0),
            Some((at(11, 54, 0), at(11, 55, 0))),
        ),
        (at(11, 55, 0), at(12, 0, 0), None),
        (at(11, 58, 0), at(12, 0, 0), None),
    ];
    for (last_modified, now, expected) in cases {
        let got = evidence_window(last_modified, &spec, now)
            .ok()
            .map(|w: Window| (w.start, w.end));
        assert_eq!(got, expected, "last modified {last_modified}, now {now}");
    }
}

/// An action without its reason, for comparing plans.
#[derive(Debug, PartialEq)]
enum Planned {
    Set(u8, u8),
    Extend(chrono::DateTime<Utc>, chrono::DateTime<Utc>),
}

struct PlanCase {
    name: &'static str,
    sampling: u8,
    outcome: Outcome,
    since_change: Duration,
    ends_in: Duration,
    started_ago: Duration,
    actions: Vec<Planned>,
    attention: Vec<Attention>,
}

#[test]
fn plan_table() {
    let p = parse_policy(
        "t.yaml",
        "name: t\nramp:\n  steps: [5, 10, 25, 50, 100]\n  max: 50\n  bake_time: 2h\n  on_fail: step_down\n  floor: 2\nextend:\n  enabled: true\n  margin: 6h\n  by: 2d\n  max_duration: 30d\n",
    )
    .unwrap();
    let now = t0() + Duration::days(10);
    let next_tick = now + Duration::minutes(10);
    let far = Duration::days(5);
    let set = |from, to| Planned::Set(from, to);
    let extend = |from: chrono::DateTime<Utc>, to| Planned::Extend(from, to);
    let soon = now + Duration::hours(3);
    let cases = vec![
        PlanCase {
            name: "pass, baked: next step",
            sampling: 10,
            outcome: Outcome::Pass,
            since_change: Duration::hours(2),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(10, 25)],
            attention: vec![],
        },
        PlanCase {
            name: "pass, bake not elapsed",
            sampling: 10,
            outcome: Outcome::Pass,
            since_change: Duration::hours(2) - Duration::seconds(1),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![],
        },
        PlanCase {
            name: "pass, hand-set between steps goes to next step",
            sampling: 12,
            outcome: Outcome::Pass,
            since_change: Duration::hours(3),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(12, 25)],
            attention: vec![],
        },
        PlanCase {
            name: "pass, next step capped at max",
            sampling: 25,
            outcome: Outcome::Pass,
            since_change: Duration::hours(3),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(25, 50)],
            attention: vec![],
        },
        PlanCase {
            name: "pass at the ceiling",
            sampling: 50,
            outcome: Outcome::Pass,
            since_change: Duration::hours(3),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![Attention::ReadyToPromote],
        },
        PlanCase {
            name: "above max comes down even when inconclusive",
            sampling: 80,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(3),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(80, 50)],
            attention: vec![],
        },
        PlanCase {
            name: "fail steps down",
            sampling: 25,
            outcome: Outcome::Fail,
            since_change: Duration::minutes(1),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(25, 10)],
            attention: vec![],
        },
        PlanCase {
            name: "fail below the lowest step goes to the floor",
            sampling: 5,
            outcome: Outcome::Fail,
            since_change: Duration::hours(1),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![set(5, 2)],
            attention: vec![],
        },
        PlanCase {
            name: "fail at the floor",
            sampling: 2,
            outcome: Outcome::Fail,
            since_change: Duration::hours(1),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![Attention::FailingAtFloor],
        },
        PlanCase {
            name: "fail under the floor never goes up",
            sampling: 1,
            outcome: Outcome::Fail,
            since_change: Duration::hours(1),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![Attention::FailingAtFloor],
        },
        PlanCase {
            name: "inconclusive holds",
            sampling: 10,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(5),
            ends_in: far,
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![],
        },
        PlanCase {
            name: "inconclusive near the end extends",
            sampling: 10,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(5),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(10),
            actions: vec![extend(soon, soon + Duration::days(2))],
            attention: vec![],
        },
        PlanCase {
            name: "exactly at the margin does not extend",
            sampling: 10,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(5),
            ends_in: Duration::hours(6) + Duration::minutes(10),
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![],
        },
        PlanCase {
            name: "pass below top near the end: ramp and extend together",
            sampling: 10,
            outcome: Outcome::Pass,
            since_change: Duration::hours(3),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(10),
            actions: vec![set(10, 25), extend(soon, soon + Duration::days(2))],
            attention: vec![],
        },
        PlanCase {
            name: "pass at top near the end: no extension",
            sampling: 50,
            outcome: Outcome::Pass,
            since_change: Duration::hours(3),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(10),
            actions: vec![],
            attention: vec![Attention::ReadyToPromote],
        },
        PlanCase {
            name: "fail near the end: never extended",
            sampling: 25,
            outcome: Outcome::Fail,
            since_change: Duration::hours(3),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(10),
            actions: vec![set(25, 10)],
            attention: vec![],
        },
        PlanCase {
            name: "extension capped at StartTime + 30 d",
            sampling: 10,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(3),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(29),
            actions: vec![extend(soon, now - Duration::days(29) + Duration::days(30))],
            attention: vec![],
        },
        PlanCase {
            name: "at the 30-day cap: cannot extend",
            sampling: 10,
            outcome: Outcome::Inconclusive,
            since_change: Duration::hours(3),
            ends_in: Duration::hours(3),
            started_ago: Duration::days(30) - Duration::hours(3),
            actions: vec![],
            attention: vec![Attention::CannotExtend],
        },
    ];
    for case in cases {
        let mut e = experiment("x", case.sampling);
        e.last_modified = now - case.since_change;
        e.end_time = Some(now + case.ends_in);
        e.start_time = Some(now - case.started_ago);
        let planned = plan(&e, &Verdict::from_outcome(case.outcome), &p, now, next_tick);
        let strip = |actions: &[Action]| -> Vec<Planned> {
            actions
                .iter()
                .map(|a| match a {
                    Action::SetSampling { from, to, .. } => set(*from, *to),
                    Action::ExtendEndTime { from, to, .. } => extend(*from, *to),
                })
                .collect()
        };
        assert_eq!(strip(&planned.actions), case.actions, "{}", case.name);
        assert_eq!(planned.attention, case.attention, "{}", case.name);
        for action in &planned.actions {
            // The reason given must be the one the outcome explains.
            if let Action::SetSampling { from, to, why } = action {
                let explained = match why {
                    SamplingChange::Passing { baked, bake_time } => {
                        to > from && case.outcome == Outcome::Pass && baked >= bake_time
                    }
                    SamplingChange::Failing => to < from && case.outcome == Outcome::Fail,
                    SamplingChange::AboveMaximum { ceiling } => to == ceiling && from > ceiling,
                };
                assert!(explained, "{}: {action:?}", case.name);
            }
            if let Action::ExtendEndTime { to, .. } = action {
                assert!(
                    *to <= e.start_time.unwrap() + Duration::days(30),
                    "{}",
                    case.name
                );
                assert!(*to > now, "{}", case.name);
            }
        }
    }
}

#[test]
fn floor_mode_goes_straight_to_the_floor() {
    let floor_policy = parse_policy(
        "t.yaml",
        "name: t\nramp:\n  steps: [5, 10, 25, 50, 100]\n  bake_time: 2h\n  on_fail: floor\n",
    )
    .unwrap();
    let e = experiment("x", 50);
    let planned = plan(
        &e,
        &Verdict::from_outcome(Outcome::Fail),
        &floor_policy,
        t0() + Duration::hours(1),
        t0() + Duration::hours(2),
    );
    assert!(matches!(
        planned.actions[..],
        [Action::SetSampling {
            from: 50,
            to: 1,
            ..
        }]
    ));
}

#[test]
fn thin_evidence_that_already_fails_a_check_is_not_extended() {
    let p = policy("checks:\n  - metric: latency_p99\n    max: 800\nextend:\n  enabled: true\n  margin: 6h\n  by: 2d\n  max_duration: 30d\n");
    let now = t0() + Duration::days(5);
    let mut e = experiment("x", 1);
    e.end_time = Some(now + Duration::hours(1));
    let thin = |p99_ms| Measurements {
        production: variant(Some(1000.0), Some(0.0), Some(300.0)),
        shadow: variant(Some(20.0), Some(0.0), Some(p99_ms)),
    };
    let cases = [(300.0, true), (900.0, false)];
    for (p99_ms, extended) in cases {
        let verdict = judge(&p, &thin(p99_ms));
        assert_eq!(verdict.outcome, Outcome::Inconclusive);
        let planned = plan(&e, &verdict, &p, now, now + Duration::minutes(10));
        let has_extension = planned
            .actions
            .iter()
            .any(|a| matches!(a, Action::ExtendEndTime { .. }));
        assert_eq!(has_extension, extended, "p99 {p99_ms} ms: {planned:?}");
        if !extended {
            assert!(
                planned
                    .notes
                    .iter()
                    .any(|n| matches!(n, Note::NotExtendedWhileFailing { check }
                        if check.id == CheckId::Metric(CheckMetric::LatencyP99)
                            && check.value == Some(900.0) && check.limit == Some(800.0))),
                "{:?}",
                planned.notes
            );
        }
    }
}
