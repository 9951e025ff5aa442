//! Invariants of the planner over arbitrary experiments and policies.

mod common;

use chrono::Duration;
use common::{experiment, t0};
use proptest::prelude::*;
use shadowpilot_core::judge::{Outcome, Verdict};
use shadowpilot_core::plan::{plan, Action};
use shadowpilot_core::policy::{parse_policy, OnFail};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Pass),
        Just(Outcome::Fail),
        Just(Outcome::Inconclusive)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_plan_stays_inside_every_limit(
        steps in proptest::collection::btree_set(1u8..=100, 1..6),
        max in proptest::option::of(1u8..=100),
        floor in 1u8..=10,
        on_fail_floor in any::<bool>(),
        sampling in 0u8..=100,
        outcome in outcome(),
        minutes_since_change in 0i64..(3 * 24 * 60),
        minutes_to_end in 1i64..(10 * 24 * 60),
        days_since_start in 0i64..30,
        bake_minutes in 0i64..(24 * 60),
    ) {
        let steps: Vec<u8> = steps.into_iter().collect();
        let steps_yaml = steps.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
        let top = *steps.last().unwrap();
        let ceiling = max.map_or(top, |max| max.min(top));
        let text = format!(
            "name: p\nramp:\n  steps: [{steps_yaml}]\n  bake_time: {bake_minutes}m\n  floor: {}\n  on_fail: {}\n{}",
            floor.min(ceiling),
            if on_fail_floor { "floor" } else { "step_down" },
            max.map_or(String::new(), |max| format!("  max: {max}\n")),
        );
        // Every policy the loader accepts, through the loader.
        let policy = parse_policy("p.yaml", &text).unwrap();
        assert_eq!(policy.ramp.ceiling, ceiling);
        assert_eq!(policy.ramp.on_fail == OnFail::Floor, on_fail_floor);

        let now = t0() + Duration::days(days_since_start) + Duration::hours(1);
        let mut e = experiment("x", sampling);
        e.start_time = Some(now - Duration::days(days_since_start) - Duration::hours(1));
        e.last_modified = now - Duration::minutes(minutes_since_change);
        e.end_time = Some(now + Duration::minutes(minutes_to_end));
        let planned = plan(&e, &Verdict::from_outcome(outcome), &policy, now, now + Duration::minutes(10));

        let ceiling = policy.ramp.ceiling;
        let mut sampling_actions = 0;
        for action in &planned.actions {
            match action {
                Action::SetSampling { from, to, .. } => {
                    sampling_actions += 1;
                    prop_assert_eq!(*from, sampling);
                    prop_assert_ne!(*from, *to, "a write must change something");
                    prop_assert!(*to >= 1, "never below 1");
                    prop_assert!(*to <= ceiling, "never above the ceiling");
                    if *to > *from {
                        prop_assert_eq!(outcome, Outcome::Pass, "only a pass ramps up");
                        prop_assert!(now - e.last_modified >= Duration::minutes(bake_minutes), "only after the bake time");
                    }
                    if outcome == Outcome::Fail {
                        prop_assert!(*to < *from, "a fail only goes down");
                    }
                }
                Action::ExtendEndTime { from, to, .. } => {
                    prop_assert_ne!(outcome, Outcome::Fail, "a failing shadow is never extended");
                    prop_assert_eq!(Some(*from), e.end_time);
                    prop_assert!(*to > *from && *to > now);
                    prop_assert!(*to <= e.start_time.unwrap() + Duration::days(30), "never past the 30-day cap");
                }
            }
        }
        prop_assert!(sampling_actions <= 1);
    }
}
