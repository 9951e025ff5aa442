//! Invariants of the planner over arbitrary experiments, tags, verdicts and
//! policies.

mod common;

use chrono::Duration;
use common::{check_result, experiment, t0, verdict_of};
use proptest::prelude::*;
use shadowpilot_core::evidence::{StepOrigin, Timeline};
use shadowpilot_core::experiment::{
    tag_time, StopState, VariantAction, FAILED_TAG, MAX_TAG_VALUE_CHARS, SINCE_TAG, STEPS_TAG,
    STEP_TAG, TAG_PREFIX,
};
use shadowpilot_core::judge::{CheckResult, Outcome, Reason};
use shadowpilot_core::plan::{plan, Action, Attention, Cadence, Conclusion, SamplingChange};
use shadowpilot_core::policy::{parse_policy, CheckMetric, OnFail};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Pass),
        Just(Outcome::Fail),
        Just(Outcome::Inconclusive)
    ]
}

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::NoEvidence),
        Just(Reason::Insufficient),
        Just(Reason::Straddles),
        Just(Reason::PeriodPending),
        (0.0f64..10.0).prop_map(|shadow_per_minute| Reason::TooLittleTraffic {
            shadow_per_minute,
            needed_per_minute: 500.0 / 60.0,
        }),
    ]
}

/// Minutes to a decision: none, finite, or infinite (no traffic).
fn minutes() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (0.0f64..100_000.0).prop_map(Some),
        Just(Some(f64::INFINITY)),
    ]
}

fn check() -> impl Strategy<Value = CheckResult> {
    (
        any::<bool>(),
        outcome(),
        reason(),
        proptest::option::of(any::<bool>()),
        minutes(),
        minutes(),
    )
        .prop_map(|(latency, outcome, reason, passing, minutes, at_top)| {
            let metric = if latency {
                CheckMetric::LatencyP99
            } else {
                CheckMetric::ErrorRate5xx
            };
            // A decided check's estimate lies on its side of the margin.
            let passing = match outcome {
                Outcome::Pass => Some(true),
                Outcome::Fail => Some(false),
                Outcome::Inconclusive => passing,
            };
            check_result(metric, outcome, Some(reason), passing, minutes, at_top)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_plan_stays_inside_every_limit(
        steps in proptest::collection::btree_set(1u8..=100, 1..6),
        max in proptest::option::of(1u8..=100),
        floor in 1u8..=10,
        on_fail_floor in any::<bool>(),
        evidence_ramps in any::<bool>(),
        rearm_minutes in proptest::option::of(1i64..(3 * 24 * 60)),
        // Weighted towards the two ends, where the test ends.
        sampling in prop_oneof![0u8..=100, Just(100u8), 1u8..=10],
        reaches_100 in any::<bool>(),
        checks in proptest::collection::vec(check(), 0..4),
        latch_minutes in proptest::option::of(0i64..(4 * 24 * 60)),
        // The step tag: none, this sampling, or another one (someone else's).
        step_tag in proptest::option::of((any::<bool>(), 1u8..=100, 0i64..(3 * 24 * 60))),
        minutes_since_change in 0i64..(3 * 24 * 60),
        minutes_to_end in 1i64..(10 * 24 * 60),
        days_since_start in 0i64..30,
        bake_minutes in 0i64..(24 * 60),
        margin_hours in 0i64..24,
        by_hours in 25i64..(4 * 24),
        max_days in 1i64..=30,
        // stop.promote: after_passing, production removed, at_cap promote.
        promote in proptest::option::of((0i64..(12 * 60), any::<bool>(), any::<bool>())),
        // stop.on_failure.after
        stop_after in proptest::option::of(0i64..(2 * 24 * 60)),
    ) {
        let mut steps = steps;
        if reaches_100 {
            steps.insert(100);
        }
        let steps: Vec<u8> = steps.into_iter().collect();
        let steps_yaml = steps.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
        let top = *steps.last().unwrap();
        let ceiling = max.map_or(top, |max| max.min(top));
        let text = format!(
            "name: p\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [{steps_yaml}]\n  bake_time: {bake_minutes}m\n  floor: {}\n  on_fail: {}\n  evidence_ramps: {evidence_ramps}\n{}{}extend:\n  enabled: true\n  margin: {margin_hours}h\n  by: {by_hours}h\n  max_duration: {max_days}d\nstop:{}\n{}{}",
            floor.min(ceiling),
            if on_fail_floor { "floor" } else { "step_down" },
            max.map_or(String::new(), |max| format!("  max: {max}\n")),
            rearm_minutes.map_or(String::new(), |m| format!("  rearm_after: {m}m\n")),
            if promote.is_none() && stop_after.is_none() { " {}" } else { "" },
            promote.map_or(String::new(), |(after, remove, at_cap)| format!(
                "  promote:\n    after_passing: {after}m\n    production: {}\n    at_cap: {}\n",
                if remove { "remove" } else { "retain" },
                if at_cap { "promote" } else { "report" },
            )),
            stop_after.map_or(String::new(), |after| format!("  on_failure:\n    after: {after}m\n")),
        );
        // Promotion in a policy whose ramp stops short of 100 % is refused.
        if promote.is_some() && ceiling < 100 {
            let error = parse_policy("p.yaml", &text).unwrap_err().to_string();
            prop_assert!(error.contains("stop.promote: promotion needs a ramp that reaches 100 %"), "{}", error);
            return Ok(());
        }
        // Every policy the loader accepts, through the loader.
        let policy = parse_policy("p.yaml", &text).unwrap();
        prop_assert_eq!(policy.ramp.ceiling, ceiling);
        prop_assert_eq!(policy.ramp.on_fail == OnFail::Floor, on_fail_floor);

        let now = t0() + Duration::days(days_since_start) + Duration::hours(1);
        let start = now - Duration::days(days_since_start) - Duration::hours(1);
        let mut e = experiment("x", sampling);
        e.start_time = Some(start);
        e.last_modified = now - Duration::minutes(minutes_since_change);
        e.end_time = Some(now + Duration::minutes(minutes_to_end));
        if let Some(ago) = latch_minutes {
            e.tags.insert(FAILED_TAG.into(), format!("latency_p99@{}", tag_time(now - Duration::minutes(ago))));
        }
        if let Some((same, other, ago)) = step_tag {
            let percentage = if same { sampling.max(1) } else { other };
            e.tags.insert(STEP_TAG.into(), format!("{percentage}@{}", tag_time(now - Duration::minutes(ago))));
        }
        let verdict = verdict_of(checks);
        let timeline = Timeline::of(&e, &policy, now);
        let tick = Duration::minutes(10);
        let cadence = Cadence { now, next_write: now + tick, tick };
        let planned = plan(&e, &timeline, &verdict, &policy, cadence);

        let rearmed = matches!((latch_minutes, rearm_minutes), (Some(ago), Some(after)) if ago >= after);
        let latched = latch_minutes.is_some() && !rearmed;
        let failing = latched || verdict.outcome == Outcome::Fail;
        if rearmed {
            prop_assert!(planned.actions.is_empty(), "a re-arm does nothing else that tick");
            prop_assert!(planned.tags.remove.contains(FAILED_TAG));
            prop_assert_eq!(planned.tags.set.get(SINCE_TAG), Some(&tag_time(now)));
        } else {
            prop_assert!(planned.tags.remove.is_empty(), "only a re-arm deletes tags");
        }
        // Only a new failure writes the latch, naming the decisive check.
        let new_failure = !rearmed && !latched && verdict.outcome == Outcome::Fail;
        prop_assert_eq!(planned.tags.set.contains_key(FAILED_TAG), new_failure);
        if new_failure {
            let check = verdict.decisive_check().unwrap().id.as_str();
            prop_assert_eq!(&planned.tags.set[FAILED_TAG], &format!("{check}@{}", tag_time(now)));
        }
        for (key, value) in &planned.tags.set {
            prop_assert!(key.starts_with(TAG_PREFIX), "{}", key);
            prop_assert!(value.chars().count() <= MAX_TAG_VALUE_CHARS, "{}={}", key, value);
        }

        if let Some(stop) = planned.stop() {
            prop_assert_eq!(planned.actions.len(), 1, "a stop is the only action");
            prop_assert!(planned.update_for(&e).is_none());
            let Action::Stop { conclusion, variant_actions, desired_state } = stop else { unreachable!() };
            prop_assert_eq!(variant_actions.len(), 2, "both variants, by name");
            let since_tag = match timeline.step_origin {
                StepOrigin::Tagged => timeline.step_start,
                _ => now,
            };
            match conclusion {
                Conclusion::Promote { ends, .. } => {
                    let (after, _, at_cap) = promote.expect("promotion is opt-in");
                    prop_assert!(!failing);
                    prop_assert_eq!(verdict.outcome, Outcome::Pass);
                    prop_assert_eq!(sampling, 100);
                    prop_assert_eq!(*desired_state, StopState::Completed);
                    prop_assert_eq!(variant_actions["shadow"], VariantAction::Promote);
                    prop_assert_ne!(variant_actions["production"], VariantAction::Promote);
                    if now - since_tag < Duration::minutes(after) {
                        // Short of the time only at the last tick, when asked.
                        prop_assert!(at_cap);
                        prop_assert!(ends.is_some_and(|end| now + tick >= end));
                    }
                }
                Conclusion::RemoveShadow { .. } => {
                    let after = stop_after.expect("stopping on failure is opt-in");
                    prop_assert!(failing);
                    prop_assert!(sampling <= policy.ramp.floor);
                    prop_assert_eq!(*desired_state, StopState::Cancelled);
                    prop_assert_eq!(variant_actions["shadow"], VariantAction::Remove);
                    prop_assert_eq!(variant_actions["production"], VariantAction::Retain);
                    let latched_at = latch_minutes.map(|ago| now - Duration::minutes(ago)).filter(|_| latched);
                    let since = latched_at.map_or(now, |at| at.max(since_tag));
                    prop_assert!(now - since >= Duration::minutes(after));
                }
            }
        }

        let dwelt = now - timeline.step_start;
        let mut sampling_actions = 0;
        for action in &planned.actions {
            match action {
                Action::SetSampling { from, to, why } => {
                    sampling_actions += 1;
                    prop_assert_eq!(*from, sampling);
                    prop_assert_ne!(*from, *to, "a write must change something");
                    prop_assert!(*to >= 1, "never below 1");
                    prop_assert!(*to <= ceiling, "never above the ceiling");
                    if *to > *from {
                        prop_assert!(!failing, "a failing or latched shadow never ramps up");
                        prop_assert!(dwelt >= Duration::minutes(bake_minutes), "only after the dwell");
                        match why {
                            SamplingChange::Passing { .. } => prop_assert_eq!(verdict.outcome, Outcome::Pass),
                            SamplingChange::ForEvidence { minutes, dwell } => {
                                prop_assert!(evidence_ramps, "evidence ramps are opt-in");
                                prop_assert_eq!(verdict.outcome, Outcome::Inconclusive);
                                prop_assert!(*minutes > dwell.as_secs_f64() / 60.0);
                                for check in &verdict.checks {
                                    prop_assert_ne!(check.outcome, Outcome::Fail);
                                    prop_assert_ne!(check.passing_side, Some(false), "every estimate on the passing side");
                                }
                            }
                            other => prop_assert!(false, "up for {:?}", other),
                        }
                    }
                    if failing {
                        prop_assert!(*to < *from, "a failing shadow only goes down");
                    }
                    // A sampling change starts a step, tagged now, and keeps
                    // the one it ends.
                    prop_assert_eq!(planned.tags.set.get(STEP_TAG), Some(&format!("{to}@{}", tag_time(now))));
                    prop_assert!(planned.tags.set.contains_key(STEPS_TAG));
                }
                Action::ExtendEndTime { from, to, .. } => {
                    prop_assert!(!failing, "a failing or latched shadow is never extended");
                    prop_assert_eq!(Some(*from), e.end_time);
                    prop_assert!(*to > *from && *to > now);
                    prop_assert!(*to <= *from + Duration::hours(by_hours), "at most extend.by");
                    prop_assert!(*to <= start + Duration::days(max_days.min(30)), "never past the cap");
                    prop_assert!(!planned.attention.contains(&Attention::Undecidable));
                }
                Action::Stop { .. } => {}
            }
        }
        prop_assert!(sampling_actions <= 1);
        if planned.attention.contains(&Attention::ReadyToPromote) {
            prop_assert_eq!(verdict.outcome, Outcome::Pass);
            prop_assert_eq!(sampling, ceiling);
        }
        if planned.attention.contains(&Attention::FailingAtFloor) {
            prop_assert!(failing);
            prop_assert!(sampling <= policy.ramp.floor);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The end of the test comes exactly when the policy says: promotion
    /// after `after_passing` at 100 % from the step's tag with the verdict
    /// passing (or at the last tick before the end, when asked), removal
    /// after `after` failing at the floor, from the later of its tag and
    /// the latch; never otherwise.
    #[test]
    fn the_test_ends_exactly_when_the_policy_says(
        at_top in any::<bool>(),
        floor in 1u8..=5,
        checks in proptest::collection::vec(check(), 0..3),
        step_tag_minutes in proptest::option::of(0i64..(2 * 24 * 60)),
        latch_minutes in proptest::option::of(0i64..(2 * 24 * 60)),
        after_passing in 0i64..(24 * 60),
        remove_production in any::<bool>(),
        at_cap_promote in any::<bool>(),
        stop_after in 0i64..(24 * 60),
        hours_since_start in 1i64..(30 * 24),
        minutes_to_end in 1i64..(3 * 24 * 60),
    ) {
        let text = format!(
            "name: p\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [5, 25, 100]\n  floor: {floor}\nextend:\n  margin: 2h\n  by: 1d\nstop:\n  promote:\n    after_passing: {after_passing}m\n    production: {}\n    at_cap: {}\n  on_failure:\n    after: {stop_after}m\n",
            if remove_production { "remove" } else { "retain" },
            if at_cap_promote { "promote" } else { "report" },
        );
        let policy = parse_policy("p.yaml", &text).unwrap();
        let now = t0() + Duration::days(31);
        let start = now - Duration::hours(hours_since_start);
        let sampling = if at_top { 100 } else { floor };
        let mut e = experiment("x", sampling);
        e.start_time = Some(start);
        e.last_modified = start;
        let cap = start + Duration::days(30);
        let end = (now + Duration::minutes(minutes_to_end)).min(cap);
        e.end_time = Some(end);
        let tagged_at = step_tag_minutes.map(|ago| (now - Duration::minutes(ago)).max(start));
        if let Some(at) = tagged_at {
            e.tags.insert(STEP_TAG.into(), format!("{sampling}@{}", tag_time(at)));
        }
        let latched_at = latch_minutes.map(|ago| now - Duration::minutes(ago));
        if let Some(at) = latched_at {
            e.tags.insert(FAILED_TAG.into(), format!("latency_p99@{}", tag_time(at)));
        }
        let verdict = verdict_of(checks);
        let timeline = Timeline::of(&e, &policy, now);
        let tick = Duration::minutes(10);
        let cadence = Cadence { now, next_write: now + tick, tick };
        let planned = plan(&e, &timeline, &verdict, &policy, cadence);

        // The step's time counts from its tag (minute-aligned, as the
        // timeline keeps it), or from now when the tag is written now.
        let since_tag = tagged_at.map_or(now, |_| timeline.step_start);
        let failing = latched_at.is_some() || verdict.outcome == Outcome::Fail;
        let promote_due = !failing
            && at_top
            && verdict.outcome == Outcome::Pass
            && (now - since_tag >= Duration::minutes(after_passing)
                || (at_cap_promote && now + tick >= cap));
        let remove_due = failing
            && !at_top
            && now - since_tag.max(latched_at.unwrap_or(now)) >= Duration::minutes(stop_after);
        match planned.stop() {
            Some(Action::Stop { conclusion, variant_actions, .. }) => {
                prop_assert_eq!(planned.actions.len(), 1);
                match conclusion {
                    Conclusion::Promote { .. } => {
                        prop_assert!(promote_due, "promoted too early: {:?}", planned);
                        let production = if remove_production { VariantAction::Remove } else { VariantAction::Retain };
                        prop_assert_eq!(variant_actions["production"], production);
                    }
                    Conclusion::RemoveShadow { .. } => prop_assert!(remove_due, "removed too early: {:?}", planned),
                }
            }
            _ => {
                prop_assert!(!promote_due, "a due promotion was not planned: {:?}", planned);
                prop_assert!(!remove_due, "a due removal was not planned: {:?}", planned);
            }
        }
        // Awaiting promotion, a passing experiment near its end is
        // extended unless the cap stops it.
        let awaiting = at_top && !failing && verdict.outcome == Outcome::Pass && planned.stop().is_none();
        if awaiting && end < now + tick + Duration::hours(2) && end < cap {
            prop_assert!(
                planned.actions.iter().any(|a| matches!(a, Action::ExtendEndTime { .. })),
                "awaiting promotion and ending: {:?}", planned
            );
        }
    }
}
