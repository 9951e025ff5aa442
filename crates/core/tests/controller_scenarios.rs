//! The controller over several ticks on in-memory fakes: what it wrote,
//! updates and tags alike, in which order, and what it did not write.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::{experiment, sampled, t0, FailingMetrics, FakeMetrics, FakeStore, Profile};
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::evidence::StepOrigin;
use shadowpilot_core::experiment::{
    tag_time, Experiment, ExperimentStatus, ATTENTION_TAG, FAILED_TAG, HOLD_TAG, POLICY_TAG,
    SINCE_TAG, STEPS_TAG, STEP_TAG,
};
use shadowpilot_core::plan::{Action, Attention, SamplingChange, WriteBlock};
use shadowpilot_core::policy::{parse_policy, Policy, PolicySet};
use shadowpilot_core::ports::StoreError;
use shadowpilot_core::report::{
    Disposition, EntryError, ErrorKind, ExperimentReport, Report, SkipReason, Staleness,
    VerdictKind, WriteOutcome,
};

const TICK: i64 = 10;

/// The checks of the shipped default policy.
const CHECKS: &str = "checks:\n  - metric: error_rate_5xx\n    max: 1.0\n  - metric: error_rate_5xx\n    max_above_production: 0.5\n  - metric: model_error_rate\n    max: 1.0\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\n  - metric: latency_p50\n    max_ratio_to_production: 1.2\n";

/// A policy named `default` (the fixture experiments' tag), with these
/// ramp and extend sections, so that the scenarios do not move when the
/// shipped policies are tuned.
fn policy(ramp: &str, extend: &str) -> Policy {
    parse_policy(
        "t.yaml",
        &format!(
            "name: default\nwindow:\n  publish_delay: 5m\n{CHECKS}ramp:\n  steps: [5, 10, 25, 50, 100]\n{ramp}extend:\n  enabled: true\n{extend}"
        ),
    )
    .unwrap()
}

fn policies(ramp: &str, extend: &str) -> PolicySet {
    PolicySet::new(vec![policy(ramp, extend)]).unwrap()
}

/// Dwell 30 min, step down on failure to the floor 1, extensions of up to
/// 2 d when within 6 h of the end.
fn standard() -> PolicySet {
    policies(
        "  bake_time: 30m\n  on_fail: step_down\n  floor: 1\n",
        "  margin: 6h\n  by: 2d\n  max_duration: 30d\n",
    )
}

fn live() -> RunOptions {
    RunOptions {
        dry_run: false,
        only: None,
        budget: None,
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

fn percentages(store: &FakeStore) -> Vec<u8> {
    store
        .updates()
        .iter()
        .filter_map(|(_, u)| u.sampling.as_ref().map(|s| s.percentage))
        .collect()
}

fn by_name<'a>(report: &'a Report, name: &str) -> &'a ExperimentReport {
    report.experiments.iter().find(|e| e.name == name).unwrap()
}

fn tags(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn healthy_shadow_climbs_one_step_per_dwell_and_tags_every_step() {
    let policies = standard();
    let (store, metrics) = sampled([experiment("fraud", 5)]);
    let arn = store.get("fraud").arn;
    let mut now = t0();
    let mut first_pass: Option<DateTime<Utc>> = None;
    for _ in 0..(6 * 6) {
        now += Duration::minutes(TICK);
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        let entry = &report.experiments[0];
        if entry.verdict() == VerdictKind::Pass && first_pass.is_none() {
            first_pass = Some(now);
        }
    }
    let updates = store.updates();
    assert_eq!(percentages(&store), [10, 25, 50, 100]);
    assert!(updates.iter().all(|(_, u)| u.end_time.is_none()));
    // Ten 10-minute p99 periods at 5 % before the first pass; each step
    // after at least the 30-minute dwell after the last.
    assert_eq!(first_pass, Some(t0() + Duration::minutes(110)));
    assert_eq!(updates[0].0, t0() + Duration::minutes(110));
    let mut last_change = t0();
    for (at, _) in &updates {
        assert!(
            *at - last_change >= Duration::minutes(30),
            "step at {at} after {last_change}"
        );
        last_change = *at;
    }
    assert!(last_change <= t0() + Duration::hours(5), "{last_change}");

    // Every step is tagged where it starts, after its update; the ended
    // step joins the history. At the top, once, the attention tag
    // records `ready_to_promote`.
    let expected_writes: Vec<String> = std::iter::once("add_tags fraud".to_string())
        .chain(
            updates
                .iter()
                .flat_map(|_| ["update fraud".to_string(), "add_tags fraud".to_string()]),
        )
        .chain(std::iter::once("add_tags fraud".to_string()))
        .collect();
    assert_eq!(store.writes(), expected_writes);
    let added = store.added_tags();
    assert_eq!(
        added[0],
        (
            arn.clone(),
            tags(&[(STEP_TAG, format!("5@{}", tag_time(t0())))])
        ),
        "the first step, untagged, is tagged where it began"
    );
    let mut history = vec![format!("5@{}", tag_time(t0()))];
    for ((at, update), (tagged_arn, set)) in updates.iter().zip(&added[1..]) {
        let percentage = update.sampling.as_ref().unwrap().percentage;
        assert_eq!(tagged_arn, &arn);
        assert_eq!(set[STEP_TAG], format!("{percentage}@{}", tag_time(*at)));
        assert_eq!(set[STEPS_TAG], history.join(" "));
        history.push(format!("{percentage}@{}", tag_time(*at)));
    }

    // At the top and passing: ready to promote, and nothing more is written.
    let writes = store.writes().len();
    now += Duration::hours(3);
    let report = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert_eq!(
        report.experiments[0].attention(),
        [Attention::ReadyToPromote]
    );
    assert_eq!(store.writes().len(), writes);
}

#[tokio::test]
async fn a_regression_is_latched_and_stepped_down_every_tick_to_the_floor_and_never_up() {
    let policies = standard();
    let mut e = experiment("fraud", 50);
    // Within the margin of its end all along: extended while undecided,
    // never once failing.
    e.end_time = Some(t0() + Duration::hours(4));
    let (store, metrics) = sampled([e]);
    metrics.set("shadow", slow_shadow());
    let mut now = t0();
    let mut reports = Vec::new();
    for _ in 0..16 {
        now += Duration::minutes(TICK);
        reports.push(tick_at(&store, &metrics, &policies, &live(), now).await);
    }
    let first_fail = reports
        .iter()
        .position(|r| r.experiments[0].verdict() == VerdictKind::Fail)
        .expect("fails");
    let failed_at = t0() + Duration::minutes(TICK * (first_fail as i64 + 1));
    // Ten five-minute periods (the shortest) at 50 % — or an epoch, or a
    // failing step sequence before ten — and the publish delay.
    assert!(failed_at <= t0() + Duration::minutes(60), "{failed_at}");
    let decisive = reports[first_fail].experiments[0]
        .decisive()
        .map(|c| c.to_string())
        .unwrap();
    assert!(
        decisive.starts_with("p99 ratio 3.") && decisive.ends_with("> 1.20 (fail)"),
        "{decisive}"
    );
    assert_eq!(
        store.get("fraud").tags.get(FAILED_TAG),
        Some(&format!("latency_p99@{}", tag_time(failed_at)))
    );
    let latches = store
        .added_tags()
        .iter()
        .filter(|(_, set)| set.contains_key(FAILED_TAG))
        .count();
    assert_eq!(latches, 1, "the latch is written once");

    assert_eq!(percentages(&store), [25, 10, 5, 1]);
    let updates = store.updates();
    // Extended while it was still undecided; never once it failed.
    assert!(updates
        .iter()
        .all(|(at, u)| (*at < failed_at) == u.sampling.is_none()));
    assert!(
        updates
            .iter()
            .all(|(at, u)| *at < failed_at || u.end_time.is_none()),
        "a failing shadow is never extended"
    );
    let steps_down: Vec<DateTime<Utc>> = updates
        .iter()
        .filter(|(_, u)| u.sampling.is_some())
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(
        steps_down,
        (0..4)
            .map(|k| failed_at + Duration::minutes(TICK * k))
            .collect::<Vec<_>>(),
        "one step down every tick"
    );
    // Failing on the four ticks that step down, then at the floor every
    // tick after.
    let attention: Vec<&[Attention]> = reports[first_fail..]
        .iter()
        .map(|r| r.experiments[0].attention())
        .collect();
    assert!(attention.len() > 5, "{attention:?}");
    let expected: Vec<&[Attention]> = (0..attention.len())
        .map(|k| {
            if k < 4 {
                &[Attention::Failing][..]
            } else {
                &[Attention::FailingAtFloor][..]
            }
        })
        .collect();
    assert_eq!(attention, expected);
    let last = &reports.last().unwrap().experiments[0];
    assert_eq!(last.attention(), [Attention::FailingAtFloor]);
    assert!(
        last.reason()
            .contains("latched: shadowpilot:failed=latency_p99@"),
        "{}",
        last.reason()
    );
    assert_eq!(store.get("fraud").sampling_percentage, 1);
}

#[tokio::test]
async fn rearm_after_restarts_the_evidence_and_a_recovered_shadow_climbs_again() {
    let policies = policies(
        "  bake_time: 30m\n  on_fail: floor\n  floor: 1\n  rearm_after: 1h\n",
        "  margin: 6h\n  by: 2d\n",
    );
    let (store, metrics) = sampled([experiment("fraud", 50)]);
    // Production busy enough that 1 % holds a five-minute p99 period.
    let busy = Profile {
        invocations_per_minute: 10_000.0,
        ..Profile::healthy()
    };
    metrics.set("production", busy);
    // A transient regression in the first 90 minutes: long enough for ten
    // five-minute periods to see it.
    metrics.set(
        "shadow",
        Profile {
            p99_ms: 900.0,
            ..busy
        },
    );
    metrics.set_from("shadow", t0() + Duration::minutes(90), busy);
    let mut now = t0();
    let mut rearmed_at = None;
    for _ in 0..(8 * 6) {
        now += Duration::minutes(TICK);
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        if rearmed_at.is_none() && !store.deleted_tags().is_empty() {
            rearmed_at = Some(now);
            assert!(
                report.experiments[0].reason().contains("re-armed"),
                "{}",
                report.experiments[0].reason()
            );
        }
    }
    let updates = store.updates();
    let (latched_at, first) = &updates[0];
    assert_eq!(
        first.sampling.as_ref().unwrap().percentage,
        1,
        "straight to the floor"
    );
    let rearmed_at = rearmed_at.expect("re-armed");
    assert_eq!(rearmed_at, *latched_at + Duration::hours(1));
    let arn = store.get("fraud").arn;
    // The latch goes, and with it the attention tag that said `failing`.
    assert_eq!(
        store.deleted_tags(),
        [(
            arn,
            [FAILED_TAG.to_string(), ATTENTION_TAG.to_string()]
                .into_iter()
                .collect()
        )]
    );
    let since: Vec<String> = store
        .added_tags()
        .into_iter()
        .filter_map(|(_, mut set)| set.remove(SINCE_TAG))
        .collect();
    assert_eq!(since, [tag_time(rearmed_at)]);
    // Latched once: the restarted whole-experiment sequence no longer sees
    // the old regression.
    let latches = store
        .added_tags()
        .iter()
        .filter(|(_, set)| set.contains_key(FAILED_TAG))
        .count();
    assert_eq!(latches, 1);
    let climbed: Vec<u8> = updates[1..]
        .iter()
        .filter_map(|(at, u)| {
            assert!(
                *at > rearmed_at,
                "nothing moves between the latch and the re-arm"
            );
            u.sampling.as_ref().map(|s| s.percentage)
        })
        .collect();
    assert_eq!(climbed, [5, 10, 25, 50, 100]);
}

#[tokio::test]
async fn an_end_time_extension_does_not_restart_the_dwell() {
    let policies = policies("  bake_time: 1h\n", "  margin: 2h\n  by: 1d\n");
    let mut e = experiment("fraud", 50);
    e.end_time = Some(t0() + Duration::minutes(150));
    let (store, metrics) = sampled([e]);
    let mut now = t0();
    for _ in 0..9 {
        now += Duration::minutes(TICK);
        tick_at(&store, &metrics, &policies, &live(), now).await;
    }
    let updates = store.updates();
    let first_sampling = updates
        .iter()
        .position(|(_, u)| u.sampling.is_some())
        .expect("ramps");
    // Extended before, which moved LastModifiedTime...
    assert!(first_sampling > 0, "{updates:?}");
    assert!(updates[..first_sampling]
        .iter()
        .all(|(_, u)| u.sampling.is_none() && u.end_time.is_some()));
    assert!(updates[0].0 < t0() + Duration::minutes(60));
    // ...yet the step ramps a dwell after it began, as its tag says.
    let (at, update) = &updates[first_sampling];
    assert_eq!(*at, t0() + Duration::hours(1));
    assert_eq!(update.sampling.as_ref().unwrap().percentage, 100);
    let step_tags: Vec<String> = store
        .added_tags()
        .into_iter()
        .filter_map(|(_, mut set)| set.remove(STEP_TAG))
        .collect();
    assert_eq!(
        step_tags,
        [
            format!("50@{}", tag_time(t0())),
            format!("100@{}", tag_time(t0() + Duration::hours(1)))
        ],
        "extensions never touch the step tag"
    );
}

#[tokio::test]
async fn a_sampling_change_made_elsewhere_starts_the_step_at_last_modified_and_is_retagged() {
    let policies = standard();
    let mut e = experiment("fraud", 10);
    e.tags
        .insert(STEP_TAG.into(), format!("10@{}", tag_time(t0())));
    let (store, metrics) = sampled([e]);
    let changed = t0() + Duration::minutes(25);
    store.modify("fraud", |e| {
        e.sampling_percentage = 25;
        e.last_modified = changed;
    });
    let now = t0() + Duration::minutes(40);
    let report = tick_at(&store, &metrics, &policies, &live(), now).await;
    let entry = &report.experiments[0];
    let timeline = entry.timeline.as_ref().unwrap();
    assert_eq!(
        timeline.step_origin,
        StepOrigin::ChangedElsewhere { tagged: 10 }
    );
    assert_eq!(timeline.step_start, changed);
    assert!(entry.actions().is_empty(), "dwelling since the change");
    assert!(
        entry
            .reason()
            .contains("sampling changed outside shadowpilot (10 % → 25 %): the step starts at LastModifiedTime"),
        "{}",
        entry.reason()
    );
    assert_eq!(store.writes(), ["add_tags fraud"]);
    let tagged = &store.get("fraud").tags;
    assert_eq!(tagged[STEP_TAG], format!("25@{}", tag_time(changed)));
    assert_eq!(tagged[STEPS_TAG], format!("10@{}", tag_time(t0())));

    let next = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        now + Duration::minutes(TICK),
    )
    .await;
    assert_eq!(
        next.experiments[0].timeline.as_ref().unwrap().step_origin,
        StepOrigin::Tagged
    );
    assert_eq!(store.writes().len(), 1, "nothing more to write");
}

#[tokio::test]
async fn the_update_goes_first_then_the_tags() {
    let policies = standard();
    let mut e = experiment("fraud", 5);
    e.tags
        .insert(STEP_TAG.into(), format!("5@{}", tag_time(t0())));
    let store = FakeStore::new([e]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let report = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert!(report.experiments[0].applied());
    assert_eq!(store.writes(), ["update fraud", "add_tags fraud"]);
    assert_eq!(
        store.added_tags()[0].1,
        tags(&[
            (STEP_TAG, format!("10@{}", tag_time(now))),
            (STEPS_TAG, format!("5@{}", tag_time(t0()))),
        ])
    );
}

#[tokio::test]
async fn a_failed_add_tags_is_a_tag_write_entry_and_reads_next_tick_as_a_change_made_elsewhere() {
    let policies = standard();
    let mut broken = experiment("broken", 5);
    broken
        .tags
        .insert(STEP_TAG.into(), format!("5@{}", tag_time(t0())));
    let store = FakeStore::new([broken, experiment("fine", 5)]);
    store.fail_tags_of("broken", |arn| StoreError::AccessDenied {
        operation: "AddTags",
        source: format!(
            "AccessDeniedException: not authorized to perform sagemaker:AddTags on {arn}"
        )
        .into(),
    });
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let report = tick_at(&store, &metrics, &policies, &live(), now).await;

    let entry = by_name(&report, "broken");
    let arn = store.get("broken").arn;
    assert_eq!(entry.error_kind(), Some(ErrorKind::TagWrite));
    assert!(
        matches!(entry.write(), Some(WriteOutcome::TagWriteFailed { arn: a, updated: true, .. }) if *a == arn),
        "{entry:?}"
    );
    assert!(entry.applied(), "the update landed");
    assert!(
        entry.reason().starts_with(&format!(
            "update applied, tags not written on {arn}: SageMaker AddTags was denied"
        )),
        "{}",
        entry.reason()
    );
    let json = serde_json::to_value(entry).unwrap();
    assert_eq!(json["error"]["kind"], "tag_write");
    assert_eq!(json["outcome"], "tag_write_failed");
    assert_eq!(store.get("broken").sampling_percentage, 10);
    assert_eq!(
        store.get("broken").tags[STEP_TAG],
        format!("5@{}", tag_time(t0()))
    );
    // The other experiment is steered as if nothing happened.
    let fine = by_name(&report, "fine");
    assert!(fine.applied() && fine.error_kind().is_none(), "{fine:?}");
    assert_eq!(store.get("fine").sampling_percentage, 10);

    // Next tick the tag (5 %) and AWS (10 %) disagree: a change made
    // elsewhere, at LastModifiedTime, which the tags now record.
    store.heal_tags_of("broken");
    let later = now + Duration::minutes(TICK);
    let report = tick_at(&store, &metrics, &policies, &live(), later).await;
    let entry = by_name(&report, "broken");
    let timeline = entry.timeline.as_ref().unwrap();
    assert_eq!(
        timeline.step_origin,
        StepOrigin::ChangedElsewhere { tagged: 5 }
    );
    assert_eq!(timeline.step_start, now);
    assert!(
        entry.actions().is_empty(),
        "dwelling at 10 %: {}",
        entry.reason()
    );
    assert_eq!(
        store.get("broken").tags[STEP_TAG],
        format!("10@{}", tag_time(now))
    );
    assert_eq!(entry.error_kind(), None);
}

#[tokio::test]
async fn a_duplicated_tick_writes_nothing_new() {
    let policies = standard();
    let store = FakeStore::new([experiment("fraud", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let first = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert!(first.experiments[0].applied());
    let writes = store.writes();
    assert_eq!(writes, ["update fraud", "add_tags fraud"]);
    let second = tick_at(&store, &metrics, &policies, &live(), now).await;
    assert_eq!(store.writes(), writes);
    assert!(
        second.experiments[0].actions().is_empty(),
        "{:?}",
        second.experiments[0]
    );
    assert!(matches!(
        second.experiments[0].write(),
        Some(WriteOutcome::Nothing)
    ));
}

#[tokio::test]
async fn dry_run_writes_nothing_and_reports_what_a_live_run_would_write() {
    let policies = standard();
    let mut slow = experiment("slow", 50);
    slow.tags
        .insert(STEP_TAG.into(), format!("50@{}", tag_time(t0())));
    let store = FakeStore::new([experiment("fraud", 5), slow]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    let dry = RunOptions {
        dry_run: true,
        only: None,
        budget: None,
    };
    store.set_now(now);
    let controller = Controller::new(&store, &metrics, &policies);
    let plan = controller
        .plan_tick(&dry, now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    let would_tag: Vec<(String, BTreeMap<String, String>)> = plan
        .tag_changes()
        .into_iter()
        .map(|(name, changes)| {
            assert!(changes.remove.is_empty());
            (name.to_string(), changes.set.clone())
        })
        .collect();
    assert_eq!(
        would_tag,
        [
            (
                "fraud".to_string(),
                tags(&[
                    (STEP_TAG, format!("10@{}", tag_time(now))),
                    (STEPS_TAG, format!("5@{}", tag_time(t0()))),
                ])
            ),
            (
                "slow".to_string(),
                tags(&[
                    (STEP_TAG, format!("100@{}", tag_time(now))),
                    (STEPS_TAG, format!("50@{}", tag_time(t0()))),
                ])
            ),
        ]
    );
    assert_eq!(plan.updates().len(), 2);
    let report = plan.into_report();
    assert!(store.writes().is_empty());
    assert!(report.dry_run);
    let fraud = by_name(&report, "fraud");
    assert!(matches!(
        fraud.actions()[..],
        [Action::SetSampling {
            from: 5,
            to: 10,
            ..
        }]
    ));
    assert!(!fraud.applied());
    assert!(matches!(fraud.write(), Some(WriteOutcome::DryRun)));
    assert!(
        fraud.reason().starts_with("dry run, not written: "),
        "{}",
        fraud.reason()
    );
    // run_tick in dry-run mode writes nothing either.
    tick_at(&store, &metrics, &policies, &dry, now).await;
    assert!(store.writes().is_empty());

    // The live run right after does exactly what the dry run said.
    let live_report = tick_at(&store, &metrics, &policies, &live(), now).await;
    for name in ["fraud", "slow"] {
        assert_eq!(
            by_name(&live_report, name).actions(),
            by_name(&report, name).actions()
        );
    }
    let written: Vec<(String, BTreeMap<String, String>)> = store
        .added_tags()
        .into_iter()
        .map(|(arn, set)| (arn.rsplit('/').next().unwrap().to_string(), set))
        .collect();
    assert_eq!(written, would_tag);
}

#[tokio::test]
async fn held_and_doubly_selected_experiments_are_never_written_nor_tagged() {
    let glob_policy = parse_policy(
        "glob.yaml",
        &format!("name: by-glob\nselect:\n  experiments: [\"double-*\"]\n{CHECKS}ramp:\n  steps: [5, 50]\n  bake_time: 1h\n"),
    )
    .unwrap();
    let policies = PolicySet::new(vec![policy("  bake_time: 30m\n", ""), glob_policy]).unwrap();

    let mut held = experiment("held", 5);
    held.tags.insert(HOLD_TAG.into(), "true".into());
    // Ending soon and failing: it would be latched, tagged and stepped
    // down if it were not held.
    held.end_time = Some(t0() + Duration::hours(2));
    let double = experiment("double-claimed", 5);
    let store = FakeStore::new([held, double, experiment("free", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let held_arn = store.get("held").arn;
    let mut now = t0();
    let mut held_failed = false;
    for tick in 0..30 {
        if tick == 15 {
            metrics.set("shadow", slow_shadow());
        }
        now += Duration::minutes(TICK);
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        let held = by_name(&report, "held");
        assert!(held.held && !held.applied());
        held_failed |= held.verdict() == VerdictKind::Fail;
        if !held.actions().is_empty() || !held.attention().is_empty() {
            assert!(
                matches!(held.write(), Some(WriteOutcome::Blocked(WriteBlock::Held))),
                "{held:?}"
            );
            assert!(
                held.reason()
                    .contains("not written: held by tag shadowpilot:hold=true"),
                "{}",
                held.reason()
            );
        }
        let double = by_name(&report, "double-claimed");
        assert_eq!(double.verdict(), VerdictKind::Error);
        assert!(
            matches!(&double.disposition, Disposition::Failed(EntryError::AmbiguousPolicy { policies })
                if policies == &["default", "by-glob"]),
            "{double:?}"
        );
    }
    assert!(held_failed, "judged all the same");
    assert!(
        store.writes().iter().all(|w| w.ends_with(" free")),
        "{:?}",
        store.writes()
    );
    assert!(!store.updates().is_empty());
    assert!(store.added_tags().iter().all(|(arn, _)| *arn != held_arn));
    assert_eq!(store.get("held").tags.get(FAILED_TAG), None);
}

#[tokio::test]
async fn an_updating_or_conflicting_experiment_does_not_stop_the_others() {
    let policies = standard();
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
    assert_eq!(by_name(&report, "busy").verdict(), VerdictKind::Skipped);
    assert_eq!(
        by_name(&report, "busy").reason(),
        "status Updating: nothing to steer"
    );
    let conflicted = by_name(&report, "conflicted");
    assert!(!conflicted.applied());
    assert_eq!(conflicted.error_kind(), Some(ErrorKind::Conflict));
    assert!(by_name(&report, "fine").applied());
    assert_eq!(report.summary.updates_applied, 1);
    // The refused update took no tags with it.
    assert_eq!(store.writes(), ["update fine", "add_tags fine"]);
}

#[tokio::test]
async fn throttled_and_denied_calls_are_typed_and_the_others_go_on() {
    let policies = standard();
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

    let throttled = by_name(&report, "throttled");
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

    let denied = by_name(&report, "denied");
    assert!(
        matches!(&denied.disposition, Disposition::Failed(EntryError::Store(error))
            if matches!(**error, StoreError::AccessDenied { .. })),
        "{denied:?}"
    );
    assert_eq!(denied.error_kind(), Some(ErrorKind::AccessDenied));

    assert!(by_name(&report, "fine").applied());
    assert_eq!(store.writes(), ["update fine", "add_tags fine"]);
}

#[tokio::test]
async fn named_experiments_are_evaluated_exactly_and_unknown_names_are_errors() {
    let policies = standard();
    let mut untagged = experiment("untagged", 5);
    untagged.tags.remove(POLICY_TAG);
    let store = FakeStore::new([experiment("a", 5), experiment("b", 5), untagged]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let options = RunOptions {
        dry_run: true,
        only: Some(vec!["a".into(), "missing".into(), "untagged".into()]),
        budget: None,
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
    let policies = standard();
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
    assert!(store.writes().is_empty());
    assert_eq!(
        metrics.call_count(),
        0,
        "nothing to measure, no GetMetricData"
    );
}

#[tokio::test]
async fn outside_a_change_window_the_plan_is_reported_but_neither_updated_nor_tagged() {
    let office = parse_policy(
        "office.yaml",
        &format!("name: default\n{CHECKS}ramp:\n  steps: [5, 10]\n  bake_time: 1h\nchange_windows:\n  - cron: \"cron(0 9 ? * MON-FRI *)\"\n    duration: 8h\n"),
    )
    .unwrap();
    let policies = PolicySet::new(vec![office]).unwrap();
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
    let entry = &night.experiments[0];
    assert_eq!(entry.actions().len(), 1);
    assert!(!entry.applied());
    assert!(
        matches!(
            entry.write(),
            Some(WriteOutcome::Blocked(
                WriteBlock::OutsideChangeWindows { .. }
            ))
        ),
        "{entry:?}"
    );
    assert!(
        store.writes().is_empty(),
        "tags obey change windows like updates"
    );
    let day = tick_at(
        &store,
        &metrics,
        &policies,
        &live(),
        t0() + Duration::hours(10),
    )
    .await;
    assert!(day.experiments[0].applied());
    assert_eq!(store.writes(), ["update fraud", "add_tags fraud"]);
}

#[tokio::test]
async fn all_experiments_are_measured_in_one_fetch_per_round() {
    let policies = standard();
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
    assert_eq!(metrics.call_count(), 2, "counts, then latency");
    let calls = metrics.calls.lock().unwrap();
    // Counts: invocations, 5xx and model errors of both variants.
    assert_eq!(calls[0].len(), 6 * 120);
    assert!(calls[0].iter().all(|q| q.period.as_secs() == 300));
    // Latency: p99 at 10-minute periods (quantile and count of both, and
    // production's median for its tail) and p50 at one-minute periods
    // (quantile and count of both).
    assert_eq!(calls[1].len(), 9 * 120);
    for queries in calls.iter() {
        let distinct: std::collections::BTreeSet<_> = queries
            .iter()
            .map(|q| {
                (
                    q.experiment.name.as_str(),
                    q.role,
                    q.metric,
                    q.statistic,
                    q.period,
                    q.window,
                )
            })
            .collect();
        assert_eq!(distinct.len(), queries.len(), "no series is asked twice");
    }
    assert_eq!(report.summary.updates_applied, 120);
}

/// Plans a tick on a healthy experiment due for its next step, lets
/// someone change it, then applies: the write must not happen.
async fn changed_between_plan_and_apply(
    change: impl FnOnce(&mut Experiment, DateTime<Utc>),
    expected: Staleness,
    expected_reason: &str,
) {
    let policies = standard();
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
    assert!(store.writes().is_empty(), "neither the update nor its tags");
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
async fn thin_traffic_near_the_end_is_extended_once_per_need_and_never_past_the_cap() {
    let policies = standard();
    let mut thin = experiment("quiet", 10);
    thin.end_time = Some(t0() + Duration::days(20));
    let store = FakeStore::new([thin]);
    // 2 shadow requests a minute: too few for any p99 period at 10 %.
    let metrics = FakeMetrics::new(
        Profile {
            invocations_per_minute: 20.0,
            ..Profile::healthy()
        },
        Profile {
            invocations_per_minute: 2.0,
            ..Profile::healthy()
        },
    );
    // Tick every three hours from day 19 to day 31 (a long experiment
    // makes every tick read a month of five-minute counts).
    let tick = Duration::hours(3);
    let mut now = t0() + Duration::days(19);
    let mut cannot_extend_seen = false;
    let mut extended_ticks = Vec::new();
    while now < t0() + Duration::days(31) {
        now += tick;
        if store.get("quiet").end_time.unwrap() <= now {
            break;
        }
        store.set_now(now);
        let report = Controller::new(&store, &metrics, &policies)
            .run_tick(&live(), now, now + tick)
            .await
            .unwrap();
        let entry = &report.experiments[0];
        assert_eq!(
            entry.verdict(),
            VerdictKind::Inconclusive,
            "{}",
            entry.reason()
        );
        assert!(
            entry.checks().iter().any(|c| matches!(
                c.reason,
                Some(shadowpilot_core::judge::Reason::TooLittleTraffic { .. })
            )),
            "{}",
            entry.reason()
        );
        if entry
            .actions()
            .iter()
            .any(|a| matches!(a, Action::ExtendEndTime { .. }))
        {
            extended_ticks.push(now);
        }
        cannot_extend_seen |= entry.attention().contains(&Attention::CannotExtend);
    }
    let ends: Vec<DateTime<Utc>> = store
        .updates()
        .iter()
        .filter_map(|(_, u)| u.end_time)
        .collect();
    // No estimate of how long a p99 needs here: 2 d at a time within 6 h of
    // the end, up to StartTime + 30 d.
    let expected: Vec<DateTime<Utc>> = [22, 24, 26, 28, 30]
        .iter()
        .map(|d| t0() + Duration::days(*d))
        .collect();
    assert_eq!(ends, expected);
    assert!(extended_ticks.windows(2).all(|w| w[1] - w[0] > tick));
    assert!(
        store.updates().iter().all(|(_, u)| u.sampling.is_none()),
        "thin data never ramps without evidence ramps"
    );
    assert!(cannot_extend_seen);
}

#[tokio::test]
async fn a_quiet_endpoint_ramps_for_evidence_until_a_p99_can_be_judged() {
    let policies = policies(
        "  bake_time: 30m\n  evidence_ramps: true\n",
        "  margin: 6h\n  by: 2d\n",
    );
    let (store, metrics) = sampled([experiment("quiet", 5)]);
    // 100 requests a minute: 5 % gives 5 shadow requests a minute, too
    // few for an hour-long p99 period.
    metrics.set(
        "production",
        Profile {
            invocations_per_minute: 100.0,
            ..Profile::healthy()
        },
    );
    metrics.set(
        "shadow",
        Profile {
            invocations_per_minute: 100.0,
            ..Profile::healthy()
        },
    );
    let mut now = t0();
    let mut reasons = Vec::new();
    let mut promoted = None;
    // Three standard errors on the passing side take about 7 h of 5 shadow
    // requests a minute for the 5xx checks alone; a day is enough to climb.
    for _ in 0..(24 * 6) {
        now += Duration::minutes(TICK);
        let report = tick_at(&store, &metrics, &policies, &live(), now).await;
        let entry = &report.experiments[0];
        assert_ne!(entry.verdict(), VerdictKind::Fail, "{}", entry.reason());
        for action in entry.actions() {
            if let Action::SetSampling { why, .. } = action {
                reasons.push(*why);
            }
        }
        if entry.attention().contains(&Attention::ReadyToPromote) {
            promoted = Some(now);
            break;
        }
    }
    let climbed = percentages(&store);
    assert_eq!(climbed.last(), Some(&100), "{climbed:?}");
    assert!(
        matches!(reasons[0], SamplingChange::ForEvidence { minutes, .. } if minutes.is_infinite()),
        "no p99 period at 5 %: {reasons:?}"
    );
    assert!(
        reasons.iter().all(|r| matches!(
            r,
            SamplingChange::ForEvidence { .. } | SamplingChange::Passing { .. }
        )),
        "{reasons:?}"
    );
    let updates = store.updates();
    let mut last = t0();
    for (at, _) in &updates {
        assert!(*at - last >= Duration::minutes(30), "a dwell at every step");
        last = *at;
    }
    assert!(promoted.is_some(), "{climbed:?} {reasons:?}");
}

#[tokio::test]
async fn closed_change_windows_are_planned_around_so_a_weekend_does_not_end_the_experiment() {
    let office = parse_policy(
        "office.yaml",
        &format!("name: default\n{CHECKS}ramp:\n  steps: [5, 10]\n  bake_time: 1h\nextend:\n  margin: 6h\n  by: 3d\nchange_windows:\n  - cron: \"cron(0 8 ? * MON-FRI *)\"\n    duration: 9h\n"),
    )
    .unwrap();
    let policies = PolicySet::new(vec![office]).unwrap();
    // 2026-11-06 is a Friday; the experiments end Sunday noon, long before
    // the windows open again on Monday 08:00.
    let friday = t0() + Duration::days(4);
    let sunday_noon = friday + Duration::days(2) + Duration::hours(12);
    let ending = |name: &str| {
        let mut e = experiment(name, 5);
        e.end_time = Some(sunday_noon);
        e
    };
    let (store, metrics) = sampled([ending("busy"), ending("quiet")]);
    // "quiet" sees 20 requests a minute: 1 a minute at 5 %, too few for a
    // p99 at any period, so the evidence cannot say how long it needs.
    metrics.set("production", Profile::healthy());
    let quiet = Profile {
        invocations_per_minute: 20.0,
        ..Profile::healthy()
    };
    struct Split(FakeMetrics, FakeMetrics);
    #[async_trait::async_trait]
    impl shadowpilot_core::ports::MetricSource for Split {
        async fn fetch(
            &self,
            queries: &[shadowpilot_core::metrics::SeriesQuery],
        ) -> Result<Vec<shadowpilot_core::ports::SeriesAnswer>, shadowpilot_core::ports::MetricError>
        {
            Ok(queries
                .iter()
                .map(|q| {
                    Ok(if q.experiment.name == "quiet" {
                        self.1.answer(q)
                    } else {
                        self.0.answer(q)
                    })
                })
                .collect())
        }
    }
    let quiet_metrics = FakeMetrics::new(quiet, quiet);
    let seen = Arc::clone(&store);
    quiet_metrics.follow_sampling(move |name, at| f64::from(seen.sampling_at(name, at)) / 100.0);
    let both = Split(metrics, quiet_metrics);
    let now = friday + Duration::hours(16) + Duration::minutes(50);
    store.set_now(now);
    let report = Controller::new(&*store, &both, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    for entry in &report.experiments {
        assert!(entry.applied(), "{}", entry.reason());
    }
    let ends: BTreeMap<String, DateTime<Utc>> = store
        .updates()
        .into_iter()
        .filter_map(|(_, u)| u.end_time.map(|end| (u.name, end)))
        .collect();
    let monday_first_tick =
        friday + Duration::days(3) + Duration::hours(8) + Duration::minutes(TICK);
    assert_eq!(
        ends,
        BTreeMap::from([
            // Passing at 5 %, an hour's dwell from the top: the first tick
            // after Monday's opening, plus the margin and a tick.
            (
                "busy".to_string(),
                monday_first_tick + Duration::hours(6) + Duration::minutes(TICK)
            ),
            // No estimate: the old EndTime plus `by`.
            ("quiet".to_string(), sunday_noon + Duration::days(3)),
        ])
    );
}

#[tokio::test]
async fn a_cloudwatch_failure_still_lets_an_experiment_be_extended_but_never_ramped() {
    let failing = FailingMetrics(|| shadowpilot_core::ports::MetricError::InvalidResponse {
        field: "MetricDataResults".into(),
        problem: "simulated outage".into(),
    });
    let policies = standard();
    let now = t0() + Duration::days(3);
    let mut ending = experiment("ending", 5);
    ending.end_time = Some(now + Duration::hours(1));
    let store = FakeStore::new([ending, experiment("steady", 5)]);
    store.set_now(now);
    let report = Controller::new(&store, &failing, &policies)
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
async fn a_cloudwatch_failure_behind_a_rejected_extension_counts_both_and_exits_2() {
    let failing = FailingMetrics(|| shadowpilot_core::ports::MetricError::Service {
        source: "AccessDenied: not authorized to perform cloudwatch:GetMetricData".into(),
    });
    let policies = standard();
    let now = t0() + Duration::days(3);
    let mut ending = experiment("ending", 5);
    ending.end_time = Some(now + Duration::hours(1));
    let store = FakeStore::new([ending]);
    store.set_now(now);
    store.fail_updates_of("ending", |name| StoreError::Rejected {
        name: name.into(),
        message: "ValidationException".into(),
    });
    let report = Controller::new(&store, &failing, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    let entry = &report.experiments[0];
    assert_eq!(entry.error_kind(), Some(ErrorKind::Rejected));
    assert_eq!(
        entry.error_kinds(),
        [ErrorKind::Rejected, ErrorKind::Metrics]
    );
    assert_eq!(report.summary.errors.get("rejected"), Some(&1));
    assert_eq!(report.summary.errors.get("metrics"), Some(&1));
    // Not only a rejected write: CloudWatch is failing too.
    assert_eq!(report.run_verdict().exit_code(), 2);
}

#[tokio::test]
async fn a_denied_get_metric_data_is_access_denied_on_its_call_not_a_metrics_outage() {
    let denied = FailingMetrics(|| shadowpilot_core::ports::MetricError::AccessDenied {
        source: "not authorized to perform: cloudwatch:GetMetricData".into(),
    });
    let policies = standard();
    let now = t0() + Duration::days(3);
    let store = FakeStore::new([experiment("steady", 5)]);
    store.set_now(now);
    let report = Controller::new(&store, &denied, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    let entry = &report.experiments[0];
    assert_eq!(entry.verdict(), VerdictKind::Inconclusive);
    assert_eq!(entry.error_kinds(), [ErrorKind::AccessDenied]);
    let json = serde_json::to_value(entry).unwrap();
    assert_eq!(json["error"]["kind"], "access_denied");
    assert_eq!(
        json["error"]["message"],
        "CloudWatch: CloudWatch GetMetricData was denied: not authorized to perform: cloudwatch:GetMetricData"
    );
    assert_eq!(report.summary.errors.get("access_denied"), Some(&1));
    assert_eq!(report.run_verdict().exit_code(), 2);
    let facts = shadowpilot_core::report::emf::TickFacts {
        timestamp_ms: 0,
        duration: std::time::Duration::from_secs(1),
        scheduled: false,
    };
    let by_call: Vec<serde_json::Value> = shadowpilot_core::report::emf::lines(&report, &facts)
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line.get("Operation").is_some())
        .collect();
    assert_eq!(by_call.len(), 1, "{by_call:?}");
    assert_eq!(by_call[0]["Operation"], "GetMetricData");
    assert_eq!(by_call[0]["Kind"], "access_denied");
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
    let policies = standard();
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
    /// CloudWatch answering one experiment's latency with a message.
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
    let policies = standard();
    let now = t0() + Duration::hours(3);
    let store = FakeStore::new([experiment("broken", 5), experiment("fine", 5)]);
    store.set_now(now);
    let metrics = OneQueryFails(FakeMetrics::new(Profile::healthy(), Profile::healthy()));
    let report = Controller::new(&store, &metrics, &policies)
        .run_tick(&live(), now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    assert_eq!(
        by_name(&report, "broken").verdict(),
        VerdictKind::Inconclusive
    );
    assert_eq!(
        by_name(&report, "broken").error_kind(),
        Some(ErrorKind::Metrics)
    );
    assert_eq!(by_name(&report, "fine").verdict(), VerdictKind::Pass);
    assert!(by_name(&report, "fine").applied());
    let written: Vec<String> = store.updates().into_iter().map(|(_, u)| u.name).collect();
    assert_eq!(written, ["fine"]);
}

#[tokio::test]
async fn remembered_periods_save_a_metric_round_and_decide_exactly_the_same() {
    use shadowpilot_core::controller::PeriodMemo;
    let policies = standard();
    let fleet = || [experiment("a", 5), experiment("b", 25), experiment("c", 5)];
    let (plain_store, plain_metrics) = sampled(fleet());
    let (memo_store, memo_metrics) = sampled(fleet());
    let memo = PeriodMemo::default();
    let mut now = t0() + Duration::hours(3);
    let (mut last_ramp, mut one_round) = (0, 0);
    for tick in 0..(24 * 6) {
        now += Duration::minutes(TICK);
        plain_store.set_now(now);
        memo_store.set_now(now);
        let plain = Controller::new(&*plain_store, &plain_metrics, &policies)
            .run_tick(&live(), now, now + Duration::minutes(TICK))
            .await
            .unwrap();
        let calls_before = memo_metrics.call_count();
        let remembered = Controller::new(&*memo_store, &memo_metrics, &policies)
            .with_period_memo(&memo)
            .run_tick(&live(), now, now + Duration::minutes(TICK))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&plain).unwrap()["experiments"],
            serde_json::to_value(&remembered).unwrap()["experiments"],
            "tick {tick}"
        );
        // Once every step's period is final (its hour of traffic over for
        // 15 minutes), counts and latency go out together.
        let calls = memo_metrics.call_count() - calls_before;
        if tick > last_ramp + 2 {
            assert_eq!(calls, 1, "tick {tick}");
            one_round += 1;
        }
        if remembered.summary.actions_planned > 0 {
            last_ramp = tick;
        }
    }
    assert!(one_round > 100, "{one_round}");
    assert_eq!(plain_store.updates(), memo_store.updates());
    assert_eq!(memo.len(), 3);
}
