//! The end of the test over several ticks on in-memory fakes: a passing
//! shadow promoted with StopInferenceExperiment once it has passed at 100 %
//! for the policy's time, a shadow failing at the floor removed, and what
//! is never sent: in a dry run, while held, outside a change window, or
//! inside the write margin.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use common::{experiment, sampled, t0, FakeMetrics, FakeStore, Profile};
use shadowpilot_core::controller::{Budget, Controller, RunOptions};
use shadowpilot_core::events::{Change, ShadowEvent};
use shadowpilot_core::experiment::{
    tag_time, Experiment, ExperimentStatus, StopState, VariantAction, FAILED_TAG, HOLD_TAG,
    STEP_TAG,
};
use shadowpilot_core::plan::{Action, Attention, Note, WriteBlock};
use shadowpilot_core::policy::{parse_policy, PolicySet};
use shadowpilot_core::ports::{EventError, EventSink, StoreError};
use shadowpilot_core::report::{Deferral, Report, SkipReason, WriteOutcome};

const TICK: i64 = 10;

const CHECKS: &str = "checks:\n  - metric: error_rate_5xx\n    max: 1.0\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\n";

/// Dwell 30 min, floor 1; promotion after 2 h at 100 % (production
/// retained), removal after 3 h failing at the floor; `extra` is appended.
fn policies(extra: &str) -> PolicySet {
    let text = format!(
        "name: default\nwindow:\n  publish_delay: 5m\n{CHECKS}ramp:\n  steps: [5, 25, 100]\n  bake_time: 30m\n  floor: 1\nextend:\n  margin: 6h\n  by: 2d\nstop:\n  promote:\n    after_passing: 2h\n    production: retain\n  on_failure:\n    after: 3h\n{extra}"
    );
    PolicySet::new(vec![parse_policy("t.yaml", &text).unwrap()]).unwrap()
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ShadowEvent>>,
}

#[async_trait]
impl EventSink for Recorder {
    async fn publish(&self, events: &[ShadowEvent]) -> Result<(), EventError> {
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

fn options(dry_run: bool) -> RunOptions {
    RunOptions {
        dry_run,
        only: None,
        budget: None,
    }
}

async fn tick(
    store: &FakeStore,
    metrics: &FakeMetrics,
    policies: &PolicySet,
    sink: &Recorder,
    options: &RunOptions,
    now: DateTime<Utc>,
) -> Report {
    store.set_now(now);
    Controller::new(store, metrics, policies)
        .with_events(sink)
        .run_tick(options, now, now + Duration::minutes(TICK))
        .await
        .expect("tick")
}

/// At 100 % since `since`, tagged by shadowpilot then.
fn at_the_top(name: &str, since: DateTime<Utc>) -> Experiment {
    let mut e = experiment(name, 100);
    e.last_modified = since;
    e.tags
        .insert(STEP_TAG.into(), format!("100@{}", tag_time(since)));
    e
}

fn stops_of(report: &Report) -> Vec<&Action> {
    report
        .experiments
        .iter()
        .flat_map(|e| e.actions())
        .filter(|a| matches!(a, Action::Stop { .. }))
        .collect()
}

#[tokio::test]
async fn a_healthy_shadow_climbs_and_is_promoted_after_passing_at_100_for_the_policy_time() {
    let policies = policies("");
    let (store, metrics) = sampled([experiment("fraud", 5)]);
    let sink = Recorder::default();
    let mut now = t0();
    let mut reached_top: Option<DateTime<Utc>> = None;
    for _ in 0..(12 * 6) {
        now += Duration::minutes(TICK);
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        let entry = &report.experiments[0];
        if reached_top.is_none() && store.get("fraud").sampling_percentage == 100 {
            reached_top = Some(now);
        }
        if !store.stops().is_empty() {
            assert!(entry.applied(), "{entry:?}");
            break;
        }
        if entry.sampling_percentage == Some(100)
            && entry.verdict() == shadowpilot_core::report::VerdictKind::Pass
        {
            // Passing at the top and not yet due: extended, never left to
            // expire, and told when promotion comes.
            assert!(
                entry.steered().is_some_and(|s| s
                    .plan
                    .notes
                    .iter()
                    .any(|n| matches!(n, Note::PromotionDue { .. }))),
                "{:?}",
                entry.reason()
            );
        }
    }
    let reached_top = reached_top.expect("the shadow reached 100 %");
    let stops = store.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    let (stopped_at, stop) = &stops[0];
    // Two hours from the 100 % step's tag, at the first tick after.
    assert!(
        *stopped_at - reached_top >= Duration::hours(2),
        "{stopped_at}"
    );
    assert!(*stopped_at - reached_top < Duration::hours(2) + Duration::minutes(TICK));
    assert_eq!(stop.name, "fraud");
    assert_eq!(
        stop.variant_actions,
        BTreeMap::from([
            ("production".to_string(), VariantAction::Retain),
            ("shadow".to_string(), VariantAction::Promote),
        ])
    );
    assert_eq!(stop.desired_state, StopState::Completed);
    assert!(
        stop.reason
            .starts_with("shadowpilot: passing at 100 % for 2h"),
        "{}",
        stop.reason
    );
    // The evidence, with its intervals.
    assert!(stop.reason.contains("p99 ratio"), "{}", stop.reason);
    assert!(stop.reason.contains(" ≤ 1.20"), "{}", stop.reason);
    assert!(stop.reason.chars().count() <= 1024);
    // Stop first, then the tags: never a tag for a stop AWS refused.
    let writes = store.writes();
    let at = writes.iter().position(|w| w == "stop fraud").unwrap();
    assert!(writes[at + 1..].iter().all(|w| w.starts_with("add_tags")));
    let stopped: Vec<_> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.detail_type == "Experiment Stopped")
        .cloned()
        .collect();
    assert_eq!(stopped.len(), 1);
    assert!(matches!(
        &stopped[0].detail.change,
        Some(Change::StopExperiment { stop, desired_state, .. })
            if stop == "promote" && desired_state == "Completed"
    ));

    // Stopping: nothing more to steer, nothing more written or announced.
    let (writes, events) = (store.writes().len(), sink.events.lock().unwrap().len());
    for _ in 0..6 {
        now += Duration::minutes(TICK);
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        assert!(matches!(
            &report.experiments[0].disposition,
            shadowpilot_core::report::Disposition::Skipped(SkipReason::Inactive(
                ExperimentStatus::Stopping
            ))
        ));
    }
    assert_eq!(store.writes().len(), writes);
    assert_eq!(sink.events.lock().unwrap().len(), events);
}

#[tokio::test]
async fn without_stop_in_the_policy_a_shadow_at_100_is_only_ready_to_promote() {
    let text = format!(
        "name: default\nwindow:\n  publish_delay: 5m\n{CHECKS}ramp:\n  steps: [5, 25, 100]\n  bake_time: 30m\n"
    );
    let policies = PolicySet::new(vec![parse_policy("t.yaml", &text).unwrap()]).unwrap();
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    let sink = Recorder::default();
    let mut now = t0() + Duration::hours(3);
    for _ in 0..12 {
        now += Duration::minutes(TICK);
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        assert_eq!(
            report.experiments[0].attention(),
            [Attention::ReadyToPromote]
        );
    }
    assert!(store.stops().is_empty());
}

#[tokio::test]
async fn a_dry_run_plans_the_promotion_and_sends_nothing() {
    let policies = policies("");
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    let sink = Recorder::default();
    let now = t0() + Duration::hours(3);
    store.set_now(now);
    let plan = Controller::new(&*store, &metrics, &policies)
        .plan_tick(&options(true), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    let planned = plan.stops();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].variant_actions["shadow"], VariantAction::Promote);
    let report = tick(&store, &metrics, &policies, &sink, &options(true), now).await;
    assert_eq!(stops_of(&report).len(), 1);
    assert!(matches!(
        report.experiments[0].write(),
        Some(WriteOutcome::DryRun)
    ));
    assert!(store.writes().is_empty(), "{:?}", store.writes());
    assert!(sink.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_held_experiment_is_never_stopped_passing_or_failing() {
    let policies = policies("");
    let mut passing = at_the_top("passing", t0());
    passing.tags.insert(HOLD_TAG.into(), "true".into());
    let mut failing = experiment("failing", 1);
    failing.last_modified = t0();
    failing
        .tags
        .insert(STEP_TAG.into(), format!("1@{}", tag_time(t0())));
    failing
        .tags
        .insert(FAILED_TAG.into(), format!("latency_p99@{}", tag_time(t0())));
    failing.tags.insert(HOLD_TAG.into(), "true".into());
    let (store, metrics) = sampled([passing, failing]);
    let sink = Recorder::default();
    let mut now = t0() + Duration::hours(4);
    let mut planned = 0;
    for _ in 0..24 {
        now += Duration::minutes(TICK);
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        for entry in &report.experiments {
            if entry
                .actions()
                .iter()
                .any(|a| matches!(a, Action::Stop { .. }))
            {
                planned += 1;
                assert!(matches!(
                    entry.write(),
                    Some(WriteOutcome::Blocked(WriteBlock::Held))
                ));
            }
        }
    }
    assert_eq!(planned, 2 * 24, "both are due every tick, and held");
    assert!(store.stops().is_empty());
    assert!(store.writes().is_empty(), "{:?}", store.writes());
}

#[tokio::test]
async fn outside_the_change_windows_a_due_promotion_waits_for_the_window() {
    // Open from 09:00 for an hour every day; t0 is midnight.
    let policies = policies("change_windows:\n  - cron: \"cron(0 9 * * ? *)\"\n    duration: 1h\n");
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    let sink = Recorder::default();
    let mut now = t0() + Duration::hours(3);
    while now < t0() + Duration::hours(9) {
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        assert_eq!(stops_of(&report).len(), 1, "due all along");
        assert!(matches!(
            report.experiments[0].write(),
            Some(WriteOutcome::Blocked(
                WriteBlock::OutsideChangeWindows { .. }
            ))
        ));
        now += Duration::minutes(TICK);
    }
    assert!(store.stops().is_empty());
    tick(&store, &metrics, &policies, &sink, &options(false), now).await;
    assert_eq!(store.stops().len(), 1, "sent once the window opens");
}

#[tokio::test]
async fn a_stop_inside_the_write_margin_is_deferred() {
    let policies = policies("");
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    let sink = Recorder::default();
    let now = t0() + Duration::hours(3);
    let options = RunOptions {
        budget: Some(Budget {
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            // Three calls (describe, stop, tags) and the event: 4 × 20 s +
            // slack is more than the minute left.
            attempt_timeout: std::time::Duration::from_secs(20),
        }),
        ..options(false)
    };
    let report = tick(&store, &metrics, &policies, &sink, &options, now).await;
    assert_eq!(stops_of(&report).len(), 1);
    assert!(matches!(
        report.experiments[0].write(),
        Some(WriteOutcome::Deferred(Deferral::NoTimeToWrite { .. }))
    ));
    assert!(store.stops().is_empty());
}

#[tokio::test]
async fn a_shadow_failing_at_the_floor_is_removed_after_the_policy_time() {
    let policies = policies("");
    let (store, metrics) = sampled([experiment("slow", 25)]);
    metrics.set(
        "shadow",
        Profile {
            p99_ms: 900.0,
            ..Profile::healthy()
        },
    );
    let sink = Recorder::default();
    let mut now = t0();
    let mut at_floor: Option<DateTime<Utc>> = None;
    let mut latched: Option<DateTime<Utc>> = None;
    for _ in 0..(12 * 6) {
        now += Duration::minutes(TICK);
        let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
        let experiment = store.get("slow");
        if latched.is_none() && experiment.tags.contains_key(FAILED_TAG) {
            latched = Some(now);
        }
        if at_floor.is_none() && experiment.sampling_percentage == 1 {
            at_floor = Some(now);
        }
        assert!(
            report.experiments[0]
                .actions()
                .iter()
                .all(|a| !matches!(a, Action::ExtendEndTime { .. })),
            "a failing shadow is never extended"
        );
        if !store.stops().is_empty() {
            break;
        }
    }
    let since = at_floor.unwrap().max(latched.unwrap());
    let stops = store.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    let (stopped_at, stop) = &stops[0];
    assert!(*stopped_at - since >= Duration::hours(3));
    assert!(*stopped_at - since < Duration::hours(3) + Duration::minutes(TICK));
    assert_eq!(
        stop.variant_actions,
        BTreeMap::from([
            ("production".to_string(), VariantAction::Retain),
            ("shadow".to_string(), VariantAction::Remove),
        ])
    );
    assert_eq!(stop.desired_state, StopState::Cancelled);
    assert!(
        stop.reason
            .starts_with("shadowpilot: failing at the floor for 3h"),
        "{}",
        stop.reason
    );
    assert!(stop
        .reason
        .contains("latched shadowpilot:failed=latency_p99@"));
    assert!(store.updates().iter().all(|(at, _)| at < stopped_at));
    let report_stop = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.detail_type == "Experiment Stopped")
        .count();
    assert_eq!(report_stop, 1);
}

#[tokio::test]
async fn a_long_reason_is_cut_to_the_limit_aws_takes() {
    // Thirty checks: their messages alone are longer than 1024 characters.
    let checks = "  - metric: latency_p99\n    max_ratio_to_production: 1.2\n  - metric: error_rate_5xx\n    max: 1.0\n".repeat(15);
    let text = format!(
        "name: default\nwindow:\n  publish_delay: 5m\nchecks:\n{checks}ramp:\n  steps: [5, 100]\nstop:\n  promote:\n    after_passing: 1h\n    production: remove\n"
    );
    let policies = PolicySet::new(vec![parse_policy("t.yaml", &text).unwrap()]).unwrap();
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    let sink = Recorder::default();
    tick(
        &store,
        &metrics,
        &policies,
        &sink,
        &options(false),
        t0() + Duration::hours(3),
    )
    .await;
    let stops = store.stops();
    assert_eq!(stops.len(), 1);
    let reason = &stops[0].1.reason;
    assert_eq!(reason.chars().count(), 1024, "{reason}");
    assert!(reason.ends_with('…'));
    assert_eq!(
        stops[0].1.variant_actions["production"],
        VariantAction::Remove
    );
}

#[tokio::test]
async fn a_stop_whose_tags_fail_is_still_announced_and_never_sent_again() {
    let policies = policies("");
    let (store, metrics) = sampled([at_the_top("fraud", t0())]);
    store.fail_tags_of("fraud", |arn| StoreError::AccessDenied {
        operation: "AddTags",
        source: format!("not authorized on {arn}").into(),
    });
    let sink = Recorder::default();
    let mut now = t0() + Duration::hours(3);
    let report = tick(&store, &metrics, &policies, &sink, &options(false), now).await;
    let entry = &report.experiments[0];
    assert!(entry.applied(), "{entry:?}");
    assert!(matches!(
        entry.write(),
        Some(WriteOutcome::TagWriteFailed { updated: true, .. })
    ));
    let types: Vec<&str> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.detail_type)
        .collect();
    // The stop, not the attention its unwritten tag would have recorded.
    assert_eq!(types, ["Experiment Stopped"]);
    now += Duration::minutes(TICK);
    tick(&store, &metrics, &policies, &sink, &options(false), now).await;
    assert_eq!(store.stops().len(), 1);
    assert_eq!(sink.events.lock().unwrap().len(), 1);
}
