//! The controller over several ticks on in-memory fakes: what it wrote, and
//! what it did not.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::experiment::{ExperimentStatus, HOLD_TAG, POLICY_TAG};
use shadowpilot_core::plan::{Action, Attention, WriteBlock};
use shadowpilot_core::policy::{builtin_policies, parse_policy, PolicySet};
use shadowpilot_core::ports::StoreError;
use shadowpilot_core::report::{
    Disposition, EntryError, ErrorKind, Report, SkipReason, Staleness, VerdictKind, WriteOutcome,
};

const TICK: i64 = 10;

fn live() -> RunOptions {
    RunOptions {
        dry_run: false,
        only: None,
    }
}

async fn tick_at(
    store: &FakeStore,
    metrics: &FakeMetrics,
    policies: &PolicySet,
    options: &RunOptions,
    now: DateTime<Utc>,
) -> Report {
    store.set_now(now);
    Controller::new(store, metrics, policies)
        .run_tick(options, now, now + Duration::minutes(TICK))
        .await
        .expect("tick")
}

fn slow_shadow() -> Profile {
    Profile {
        p99_ms: 900.0,
        ..Profile::healthy()
    }
}

#[tokio::test]
async fn healthy_shadow_climbs_one_step_per_bake_period() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([experiment("fraud", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let mut now = t0();
    for _ in 0..(6 * 12) {
        now += Duration::minutes(TICK);
        tick_at(&store, &metrics, &policies, &live(), now).await;
    }
    let updates = store.updates();
    let percentages: Vec<u8> = updates
        .iter()
        .filter_map(|(_, u)| u.sampling.as_ref().map(|s| s.percentage))
        .collect();
    assert_eq!(percentages, [10, 25, 50, 100]);
    // The default policy bakes 2 h: each step comes at least 2 h after the last.
    let mut last_change = t0();
    for (at, _) in &updates {
        assert!(
            *at - last_change >= Duration::hours(2),
            "step at {at} after {last_change}"
        );
        last_change = *at;
    }
    // At the top and passing: ready to promote, and nothing more is written.
    now += Duration::hours(3);
    let report = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert_eq!(
        report.experiments[0].attention(),
        [Attention::ReadyToPromote]
    );
    assert_eq!(store.updates().len(), 4);
}

#[tokio::test]
async fn regression_ramps_down_to_the_floor_and_never_up() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([experiment("fraud", 50)]);
    let metrics = FakeMetrics::new(Profile::healthy(), slow_shadow());
    let mut now = t0() + Duration::hours(3);
    let mut reports = Vec::new();
    for _ in 0..12 {
        now += Duration::minutes(TICK);
        reports.push(tick_at(&store, &metrics, &policies, &live(), now).await);
    }
    let percentages: Vec<u8> = store
        .updates()
        .iter()
        .filter_map(|(_, u)| u.sampling.as_ref().map(|s| s.percentage))
        .collect();
    assert_eq!(percentages, [25, 10, 5, 1]);
    assert!(
        percentages.windows(2).all(|w| w[1] < w[0]),
        "never up: {percentages:?}"
    );
    let last = &reports.last().unwrap().experiments[0];
    assert_eq!(last.verdict(), VerdictKind::Fail);
    assert_eq!(last.attention(), [Attention::FailingAtFloor]);
    let decisive = last.decisive().map(|c| c.to_string()).unwrap();
    assert!(
        decisive.contains("shadow p99 900 ms > 1.20 × production 300 ms (limit 360 ms)"),
        "{decisive}"
    );
    assert!(
        store.updates().iter().all(|(_, u)| u.end_time.is_none()),
        "a failing shadow is never extended"
    );
}

#[tokio::test]
async fn thin_traffic_near_the_end_is_extended_once_per_need_and_never_past_the_cap() {
    let policies = builtin_policies().unwrap();
    let mut thin = experiment("quiet", 10);
    thin.end_time = Some(t0() + Duration::days(20));
    let store = FakeStore::new([thin]);
    let metrics = FakeMetrics::new(
        Profile::healthy(),
        Profile {
            invocations_per_minute: 1.0,
            ..Profile::healthy()
        },
    );
    // Tick every 10 minutes from day 19 to day 31.
    let mut now = t0() + Duration::days(19);
    let mut cannot_extend_seen = false;
    while now < t0() + Duration::days(31) {
        now += Duration::minutes(TICK);
        if store.get("quiet").end_time.unwrap() <= now {
            break;
        }
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        let entry = &report.experiments[0];
        assert_eq!(
            entry.verdict(),
            VerdictKind::Inconclusive,
            "{}",
            entry.reason()
        );
        cannot_extend_seen |= entry.attention().contains(&Attention::CannotExtend);
    }
    let ends: Vec<DateTime<Utc>> = store
        .updates()
        .iter()
        .filter_map(|(_, u)| u.end_time)
        .collect();
    // Default policy: by 2 d, margin 6 h, cap StartTime + 30 d: day 22, 24,
    // 26, 28, 30 and then the cap stops it.
    let expected: Vec<DateTime<Utc>> = [22, 24, 26, 28, 30]
        .iter()
        .map(|d| t0() + Duration::days(*d))
        .collect();
    assert_eq!(ends, expected);
    assert!(
        store.updates().iter().all(|(_, u)| u.sampling.is_none()),
        "thin data never ramps"
    );
    assert!(cannot_extend_seen);
}

#[tokio::test]
async fn a_duplicated_tick_writes_nothing_new() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([experiment("fraud", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let first = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert!(first.experiments[0].applied());
    let second = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert_eq!(store.updates().len(), 1);
    assert!(
        second.experiments[0].actions().is_empty(),
        "{:?}",
        second.experiments[0]
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_reports_what_a_live_run_would_do() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([experiment("fraud", 5), experiment("slow", 50)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let dry = RunOptions {
        dry_run: true,
        only: None,
    };
    let report = tick_at(&store, &metrics, &policies, &dry, now).await;
    assert!(store.updates().is_empty());
    assert!(report.dry_run);
    assert!(matches!(
        report.experiments[0].actions()[..],
        [Action::SetSampling {
            from: 5,
            to: 10,
            ..
        }]
    ));
    assert!(!report.experiments[0].applied());
    // The live run right after does exactly what the dry run said.
    let live_report = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert_eq!(
        live_report.experiments[0].actions(),
        report.experiments[0].actions()
    );
    assert_eq!(
        live_report.experiments[1].actions(),
        report.experiments[1].actions()
    );
}

#[tokio::test]
async fn held_and_doubly_selected_experiments_are_never_written() {
    let glob_policy = parse_policy(
        "glob.yaml",
        "name: by-glob\nselect:\n  experiments: [\"double-*\"]\nramp:\n  steps: [5, 50]\n  bake_time: 1h\n",
    )
    .unwrap();
    let mut all = builtin_policies().unwrap().policies().to_vec();
    all.push(glob_policy);
    let policies = PolicySet::new(all).unwrap();

    let mut held = experiment("held", 5);
    held.tags.insert(HOLD_TAG.into(), "true".into());
    let double = experiment("double-claimed", 5);
    let store = FakeStore::new([held, double, experiment("free", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let mut now = t0();
    for _ in 0..30 {
        now += Duration::minutes(TICK);
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        let by_name = |name: &str| {
            report
                .experiments
                .iter()
                .find(|e| e.name == name)
                .unwrap()
                .clone()
        };
        let held = by_name("held");
        assert!(held.held && !held.applied());
        let double = by_name("double-claimed");
        assert_eq!(double.verdict(), VerdictKind::Error);
        assert!(
            matches!(&double.disposition, Disposition::Failed(EntryError::AmbiguousPolicy { policies })
                if policies == &["default", "by-glob"]),
            "{double:?}"
        );
    }
    let written: Vec<String> = store
        .updates()
        .iter()
        .map(|(_, u)| u.name.clone())
        .collect();
    assert!(written.iter().all(|name| name == "free"), "{written:?}");
    assert!(!written.is_empty());
}

#[tokio::test]
async fn an_updating_or_conflicting_experiment_does_not_stop_the_others() {
    let policies = builtin_policies().unwrap();
    let mut updating = experiment("busy", 5);
    updating.status = ExperimentStatus::Updating;
    let store = FakeStore::new([updating, experiment("conflicted", 5), experiment("fine", 5)]);
    store.answer_conflict_for("conflicted");
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(3),
    )
    .await;
    let by_name = |name: &str| report.experiments.iter().find(|e| e.name == name).unwrap();
    assert_eq!(by_name("busy").verdict(), VerdictKind::Skipped);
    assert_eq!(
        by_name("busy").reason(),
        "status Updating: nothing to steer"
    );
    let conflicted = by_name("conflicted");
    assert!(!conflicted.applied());
    assert_eq!(conflicted.error_kind(), Some(ErrorKind::Conflict));
    assert!(by_name("fine").applied());
    assert_eq!(report.summary.updates_applied, 1);
}

#[tokio::test]
async fn throttled_and_denied_calls_are_typed_and_the_others_go_on() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([
        experiment("denied", 5),
        experiment("fine", 5),
        experiment("throttled", 5),
    ]);
    store.fail_updates_of("throttled", |_| StoreError::Throttled {
        operation: "UpdateInferenceExperiment",
        source: "ThrottlingException: Rate exceeded".to_string().into(),
    });
    store.fail_describes_of("denied", |_| StoreError::AccessDenied {
        operation: "DescribeInferenceExperiment",
        source: "AccessDeniedException: not authorized".to_string().into(),
    });
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(3),
    )
    .await;
    let by_name = |name: &str| report.experiments.iter().find(|e| e.name == name).unwrap();

    let throttled = by_name("throttled");
    assert_eq!(
        throttled.verdict(),
        VerdictKind::Pass,
        "judged before the write"
    );
    assert!(
        matches!(
            throttled.write(),
            Some(WriteOutcome::Failed(error)) if matches!(**error, StoreError::Throttled { .. })
        ),
        "{throttled:?}"
    );
    assert_eq!(throttled.error_kind(), Some(ErrorKind::Throttled));
    assert!(
        throttled.reason().contains("Rate exceeded"),
        "{}",
        throttled.reason()
    );

    let denied = by_name("denied");
    assert!(
        matches!(&denied.disposition, Disposition::Failed(EntryError::Store(error))
            if matches!(**error, StoreError::AccessDenied { .. })),
        "{denied:?}"
    );
    assert_eq!(denied.error_kind(), Some(ErrorKind::AccessDenied));

    assert!(by_name("fine").applied());
    let written: Vec<String> = store.updates().into_iter().map(|(_, u)| u.name).collect();
    assert_eq!(written, ["fine"]);
}

#[tokio::test]
async fn named_experiments_are_evaluated_exactly_and_unknown_names_are_errors() {
    let policies = builtin_policies().unwrap();
    let mut untagged = experiment("untagged", 5);
    untagged.tags.remove(POLICY_TAG);
    let store = FakeStore::new([experiment("a", 5), experiment("b", 5), untagged]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let options = RunOptions {
        dry_run: true,
        only: Some(vec!["a".into(), "missing".into(), "untagged".into()]),
    };
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &options,
        t0() + Duration::hours(3),
    )
    .await;
    let names: Vec<&str> = report.experiments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "missing", "untagged"]);
    assert_eq!(
        report.experiments[1].error_kind(),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        report.experiments[2].error_kind(),
        Some(ErrorKind::NotSelected)
    );
    assert_eq!(report.summary.verdicts.error, 2);
}

#[tokio::test]
async fn untagged_and_created_experiments_are_skipped_with_the_reason() {
    let policies = builtin_policies().unwrap();
    let mut untagged = experiment("untagged", 5);
    untagged.tags.clear();
    let mut created = experiment("later", 5);
    created.status = ExperimentStatus::Created;
    let mut done = experiment("old", 5);
    done.status = ExperimentStatus::Completed;
    let store = FakeStore::new([untagged, created, done]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(3),
    )
    .await;
    let skipped: Vec<(&str, Option<&SkipReason>)> = report
        .experiments
        .iter()
        .map(|e| match &e.disposition {
            Disposition::Skipped(reason) => (e.name.as_str(), Some(reason)),
            _ => (e.name.as_str(), None),
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("later", Some(&SkipReason::Created { start: Some(t0()) })),
            (
                "old",
                Some(&SkipReason::Inactive(ExperimentStatus::Completed))
            ),
            ("untagged", Some(&SkipReason::NotSelected)),
        ]
    );
    let reasons: Vec<String> = report.experiments.iter().map(|e| e.reason()).collect();
    assert_eq!(
        reasons,
        [
            "Created, starts 2026-11-02 00:00 UTC: no traffic to judge yet",
            "status Completed: nothing to steer",
            "no policy selects it",
        ]
    );
    assert!(store.updates().is_empty());
    assert_eq!(
        metrics.call_count(),
        0,
        "nothing to measure, no GetMetricData"
    );
}

#[tokio::test]
async fn outside_a_change_window_the_plan_is_reported_but_not_applied() {
    let policy = parse_policy(
        "office.yaml",
        "name: default\nramp:\n  steps: [5, 10]\n  bake_time: 1h\nchange_windows:\n  - cron: \"cron(0 9 ? * MON-FRI *)\"\n    duration: 8h\n",
    )
    .unwrap();
    let policies = PolicySet::new(vec![policy]).unwrap();
    let store = FakeStore::new([experiment("fraud", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    // 2026-11-02 is a Monday: 03:00 is outside, 10:00 inside.
    let night = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(3),
    )
    .await;
    assert_eq!(night.experiments[0].actions().len(), 1);
    assert!(!night.experiments[0].applied());
    assert!(
        matches!(
            night.experiments[0].write(),
            Some(WriteOutcome::Blocked(
                WriteBlock::OutsideChangeWindows { .. }
            ))
        ),
        "{:?}",
        night.experiments[0]
    );
    assert!(store.updates().is_empty());
    let day = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(10),
    )
    .await;
    assert!(day.experiments[0].applied());
}

#[tokio::test]
async fn all_experiments_are_measured_in_one_fetch() {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new((0..120).map(|i| experiment(&format!("exp-{i:03}"), 5)));
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(3),
    )
    .await;
    assert_eq!(metrics.call_count(), 1);
    let queries = &metrics.calls.lock().unwrap()[0];
    // default policy: 5 series × 2 variants × 120 experiments
    assert_eq!(queries.len(), 1200);
    let distinct: std::collections::BTreeSet<_> = queries
        .iter()
        .map(|q| (q.experiment.name.as_str(), q.role, q.key()))
        .collect();
    assert_eq!(distinct.len(), queries.len(), "no series is asked twice");
    assert_eq!(report.summary.updates_applied, 120);
}

/// Plans a tick on a healthy experiment due for its next step, lets
/// someone change it, then applies: the write must not happen.
async fn changed_between_plan_and_apply(
    change: impl FnOnce(&mut shadowpilot_core::experiment::Experiment, DateTime<Utc>),
    expected: Staleness,
    expected_reason: &str,
) {
    let policies = builtin_policies().unwrap();
    let store = FakeStore::new([experiment("fraud", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    store.set_now(now);
    let controller = Controller::new(&store, &metrics, &policies);
    let plan = controller
        .plan_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    assert_eq!(plan.updates().len(), 1);
    store.modify("fraud", |e| change(e, now));
    let report = controller.apply(plan).await;
    let entry = &report.experiments[0];
    assert!(!entry.applied());
    assert!(
        matches!(entry.write(), Some(WriteOutcome::ChangedSinceRead(staleness)) if *staleness == expected),
        "{entry:?}"
    );
    // The words an operator reads for it.
    assert!(
        entry.reason().contains(expected_reason),
        "{}",
        entry.reason()
    );
    assert!(store.updates().is_empty());
}

#[tokio::test]
async fn a_change_by_someone_else_between_plan_and_apply_is_not_overwritten() {
    changed_between_plan_and_apply(
        |e, now| {
            e.sampling_percentage = 2;
            e.last_modified = now;
        },
        Staleness::Sampling { from: 5, to: 2 },
        "sampling changed 5 → 2 %",
    )
    .await;
}

#[tokio::test]
async fn a_hold_set_between_plan_and_apply_is_respected() {
    changed_between_plan_and_apply(
        |e, _| {
            e.tags.insert(HOLD_TAG.into(), "true".into());
        },
        Staleness::Held,
        "it was held",
    )
    .await;
}

#[tokio::test]
async fn a_new_policy_tag_between_plan_and_apply_is_respected() {
    changed_between_plan_and_apply(
        |e, _| {
            e.tags.insert(POLICY_TAG.into(), "conservative".into());
        },
        Staleness::PolicyTag,
        "its shadowpilot:policy tag changed",
    )
    .await;
}

#[tokio::test]
async fn closed_change_windows_are_planned_around_so_a_weekend_does_not_end_the_experiment() {
    let policy = parse_policy(
        "office.yaml",
        "name: default\nramp:\n  steps: [5, 10]\n  bake_time: 1h\nextend:\n  margin: 6h\n  by: 3d\nchange_windows:\n  - cron: \"cron(0 8 ? * MON-FRI *)\"\n    duration: 9h\n",
    )
    .unwrap();
    let policies = PolicySet::new(vec![policy]).unwrap();
    // 2026-11-06 is a Friday; the experiment ends Sunday noon, long before
    // the windows open again on Monday.
    let friday = t0() + Duration::days(4);
    let mut e = experiment("weekend", 5);
    e.end_time = Some(friday + Duration::days(2) + Duration::hours(12));
    let store = FakeStore::new([e]);
    let metrics = FakeMetrics::new(
        Profile::healthy(),
        Profile {
            invocations_per_minute: 1.0,
            ..Profile::healthy()
        },
    );
    let report = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        friday + Duration::hours(16) + Duration::minutes(50),
    )
    .await;
    assert!(
        report.experiments[0].applied(),
        "{}",
        report.experiments[0].reason()
    );
    let ends: Vec<_> = store
        .updates()
        .iter()
        .filter_map(|(_, u)| u.end_time)
        .collect();
    assert_eq!(ends, [friday + Duration::days(5) + Duration::hours(12)]);
}

#[tokio::test]
async fn a_cloudwatch_failure_still_lets_an_experiment_be_extended_but_never_ramped() {
    struct Failing;
    #[async_trait::async_trait]
    impl shadowpilot_core::ports::MetricSource for Failing {
        async fn fetch(
            &self,
            _: &[shadowpilot_core::metrics::SeriesQuery],
        ) -> Result<Vec<shadowpilot_core::ports::SeriesAnswer>, shadowpilot_core::ports::MetricError>
        {
            Err(shadowpilot_core::ports::MetricError::InvalidResponse {
                field: "MetricDataResults".into(),
                problem: "simulated outage".into(),
            })
        }
    }
    let policies = builtin_policies().unwrap();
    let now = t0() + Duration::days(3);
    let mut ending = experiment("ending", 5);
    ending.end_time = Some(now + Duration::hours(1));
    let store = FakeStore::new([ending, experiment("steady", 5)]);
    store.set_now(now);
    let report = Controller::new(&store, &Failing, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    for entry in &report.experiments {
        assert_eq!(entry.verdict(), VerdictKind::Inconclusive);
        assert_eq!(entry.error_kind(), Some(ErrorKind::Metrics));
    }
    let updates = store.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1.name, "ending");
    assert!(updates[0].1.sampling.is_none() && updates[0].1.end_time.is_some());
}

#[tokio::test]
async fn a_metric_source_answering_fewer_series_than_asked_judges_nothing() {
    /// Answers every query but the last: the rest would be misaligned.
    struct OneShort(FakeMetrics);
    #[async_trait::async_trait]
    impl shadowpilot_core::ports::MetricSource for OneShort {
        async fn fetch(
            &self,
            queries: &[shadowpilot_core::metrics::SeriesQuery],
        ) -> Result<Vec<shadowpilot_core::ports::SeriesAnswer>, shadowpilot_core::ports::MetricError>
        {
            let mut series = self.0.fetch(queries).await?;
            series.pop();
            Ok(series)
        }
    }
    let policies = builtin_policies().unwrap();
    let now = t0() + Duration::hours(3);
    let store = FakeStore::new([experiment("a", 5), experiment("b", 5)]);
    store.set_now(now);
    let metrics = OneShort(FakeMetrics::new(Profile::healthy(), Profile::healthy()));
    let report = Controller::new(&store, &metrics, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    for entry in &report.experiments {
        assert_eq!(entry.verdict(), VerdictKind::Inconclusive, "{entry:?}");
        assert_eq!(entry.error_kind(), Some(ErrorKind::Metrics));
        let failure = entry.steered().and_then(|s| s.metrics_error.as_ref());
        assert!(
            matches!(
                failure.map(|f| f.0.as_ref()),
                Some(shadowpilot_core::ports::MetricError::Misaligned { .. })
            ),
            "{entry:?}"
        );
    }
    assert!(
        store.updates().is_empty(),
        "healthy, but nothing to stand on"
    );
}

#[tokio::test]
async fn a_failed_query_costs_only_the_experiment_it_belongs_to() {
    /// CloudWatch answering one experiment's p99 with a message.
    struct OneQueryFails(FakeMetrics);
    #[async_trait::async_trait]
    impl shadowpilot_core::ports::MetricSource for OneQueryFails {
        async fn fetch(
            &self,
            queries: &[shadowpilot_core::metrics::SeriesQuery],
        ) -> Result<Vec<shadowpilot_core::ports::SeriesAnswer>, shadowpilot_core::ports::MetricError>
        {
            let mut answers = self.0.fetch(queries).await?;
            for (query, answer) in queries.iter().zip(&mut answers) {
                if query.experiment.name == "broken"
                    && query.metric == shadowpilot_core::metrics::SageMakerMetric::ModelLatency
                {
                    *answer = Err(std::sync::Arc::new(
                        shadowpilot_core::ports::MetricError::InvalidResponse {
                            field: "MetricDataResults[3].Messages".into(),
                            problem: "ArithmeticError".into(),
                        },
                    ));
                }
            }
            Ok(answers)
        }
    }
    let policies = builtin_policies().unwrap();
    let now = t0() + Duration::hours(3);
    let store = FakeStore::new([experiment("broken", 5), experiment("fine", 5)]);
    store.set_now(now);
    let metrics = OneQueryFails(FakeMetrics::new(Profile::healthy(), Profile::healthy()));
    let report = Controller::new(&store, &metrics, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    let by_name = |name: &str| report.experiments.iter().find(|e| e.name == name).unwrap();
    assert_eq!(by_name("broken").verdict(), VerdictKind::Inconclusive);
    assert_eq!(by_name("broken").error_kind(), Some(ErrorKind::Metrics));
    assert_eq!(by_name("fine").verdict(), VerdictKind::Pass);
    assert!(by_name("fine").applied());
    let written: Vec<String> = store.updates().into_iter().map(|(_, u)| u.name).collect();
    assert_eq!(written, ["fine"]);
}
