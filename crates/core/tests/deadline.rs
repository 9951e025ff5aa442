//! The tick's time budget on tokio's paused clock: slow and stuck calls,
//! a deadline reached mid-tick, and what is written and deferred.

mod common;

use std::time::Duration as StdDuration;

use chrono::Duration;
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use shadowpilot_core::controller::{Budget, Controller, RunOptions, WRITE_SLACK};
use shadowpilot_core::experiment::Experiment;
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::ports::MetricError;
use shadowpilot_core::report::{Deferral, Report, VerdictKind, WriteOutcome};
use tokio::time::Instant;

/// Ten experiments that each want a write this tick: their EndTime is an
/// hour away, under the default policy's extension margin.
fn ending(n: usize) -> Vec<Experiment> {
    (0..n)
        .map(|i| {
            let mut e = experiment(&format!("exp-{i:02}"), 5);
            e.end_time = Some(t0() + Duration::hours(4));
            e
        })
        .collect()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    t0() + Duration::hours(3)
}

async fn tick(
    store: &FakeStore,
    metrics: &FakeMetrics,
    budget: Budget,
    concurrency: usize,
) -> (Report, StdDuration) {
    let policies = builtin_policies().unwrap();
    store.set_now(now());
    let options = RunOptions {
        dry_run: false,
        only: None,
        budget: Some(budget),
    };
    let started = Instant::now();
    let report = Controller::new(store, metrics, &policies)
        .with_concurrency(concurrency)
        .run_tick(&options, now(), now() + Duration::minutes(10))
        .await
        .expect("tick");
    (report, started.elapsed())
}

fn healthy() -> FakeMetrics {
    FakeMetrics::new(Profile::healthy(), Profile::healthy())
}

/// `n` ending experiments where every SageMaker and CloudWatch call takes 2 s.
fn two_seconds_a_call(n: usize) -> (FakeStore, FakeMetrics) {
    let store = FakeStore::new(ending(n));
    store.delay_calls(StdDuration::from_secs(2));
    let metrics = healthy();
    metrics.delay_fetches(StdDuration::from_secs(2));
    (store, metrics)
}

/// Every write group began with more than its margin left: its first call
/// (the re-describe) is the second describe of that experiment.
fn assert_no_write_inside_the_margin(store: &FakeStore, budget: &Budget) {
    let starts = store.call_starts();
    let updates: Vec<&(Instant, String)> = starts
        .iter()
        .filter(|(_, what)| what.starts_with("update "))
        .collect();
    for (at, what) in updates {
        let name = what.trim_start_matches("update ");
        let group_start = starts
            .iter()
            .filter(|(t, w)| *w == format!("describe {name}") && t <= at)
            .map(|(t, _)| *t)
            .max()
            .expect("a re-describe before the update");
        let left = budget.deadline.saturating_duration_since(group_start);
        assert!(
            left > budget.write_margin(3),
            "{name}: a write group began {left:?} before the deadline"
        );
        assert!(*at < budget.deadline, "{name}: updated after the deadline");
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_reached_mid_tick_defers_the_rest_and_the_report_comes_back() {
    let (store, metrics) = two_seconds_a_call(10);
    let budget = Budget {
        deadline: Instant::now() + StdDuration::from_secs(21),
        attempt_timeout: StdDuration::from_secs(1),
    };
    // Four calls at a time, 2 s each. List 0–2 s; describes 2–4, 4–6 and
    // 6–8 s, but the describe cut-off is 30 % of 21 s = 6.3 s, so the last
    // two are not read. The two metric rounds run 6.3–10.3 s. A write
    // group is three calls (6 s) and needs 3 × 1 s + 2 s = 5 s: the first
    // four begin at 10.3 s, the next four would begin at 16.3 s with
    // 4.7 s left and are deferred.
    let (report, took) = tick(&store, &metrics, budget, 4).await;
    assert!(took <= StdDuration::from_secs(21), "took {took:?}");
    assert_eq!(
        report.experiments.len(),
        10,
        "every experiment accounted for"
    );
    let outcomes: Vec<(&str, &str)> = report
        .experiments
        .iter()
        .map(|e| (e.name.as_str(), e.outcome_str()))
        .collect();
    let written = |o: &str| outcomes.iter().filter(|(_, w)| *w == o).count();
    assert_eq!(written("applied"), 4, "{outcomes:?}");
    assert_eq!(written("deferred"), 6, "{outcomes:?}");
    assert_eq!(report.summary.verdicts.deferred, 2);
    assert_eq!(report.summary.writes_deferred, 4);
    for entry in &report.experiments {
        match entry.deferral() {
            None => assert!(entry.applied(), "{}", entry.name),
            Some(Deferral::NotRead { waited }) => {
                assert!(["exp-08", "exp-09"].contains(&entry.name.as_str()));
                assert_eq!(waited, StdDuration::from_millis(6300));
            }
            Some(Deferral::NoTimeToWrite { left, margin }) => {
                assert!(left <= margin, "{left:?} {margin:?}");
                assert_eq!(margin, StdDuration::from_secs(3) + WRITE_SLACK);
                // Judged; only its write waits.
                assert_ne!(entry.verdict(), VerdictKind::Deferred);
            }
        }
    }
    assert_no_write_inside_the_margin(&store, &budget);
    let entry = report
        .experiments
        .iter()
        .find(|e| matches!(e.write(), Some(WriteOutcome::Deferred(_))))
        .unwrap();
    let json = serde_json::to_value(entry).unwrap();
    assert_eq!(json["outcome"], "deferred");
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("4.7 s left before the deadline, under the 5.0 s a write group needs"),
        "{json}"
    );
}

#[tokio::test(start_paused = true)]
async fn two_seconds_a_call_under_a_fifteen_second_deadline_with_default_timeouts_writes_nothing_late(
) {
    let (store, metrics) = two_seconds_a_call(10);
    // The adapters' default 10 s attempts: a group needs 32 s, more than
    // the whole budget, so nothing may start, and the report says why.
    let budget = Budget {
        deadline: Instant::now() + StdDuration::from_secs(15),
        attempt_timeout: StdDuration::from_secs(10),
    };
    let (report, took) = tick(&store, &metrics, budget, 64).await;
    assert!(took <= StdDuration::from_secs(15), "took {took:?}");
    assert_eq!(report.experiments.len(), 10);
    assert!(store.updates().is_empty());
    assert_eq!(report.summary.writes_deferred, 10);
    assert!(report
        .experiments
        .iter()
        .all(|e| e.verdict() != VerdictKind::Error));
}

#[tokio::test(start_paused = true)]
async fn a_stuck_describe_defers_only_its_experiment_and_the_others_are_written() {
    let store = FakeStore::new(ending(5));
    store.delay_calls(StdDuration::from_millis(50));
    store.stall_describes_of("exp-02");
    let metrics = healthy();
    let budget = Budget {
        deadline: Instant::now() + StdDuration::from_secs(110),
        attempt_timeout: StdDuration::from_secs(10),
    };
    let (report, took) = tick(&store, &metrics, budget, 64).await;
    // The metrics round is sent at the describe cut-off (30 % of 110 s)
    // and the writes follow at once; nobody waits for the hour-long call.
    assert!(took < StdDuration::from_secs(40), "took {took:?}");
    let stuck = report
        .experiments
        .iter()
        .find(|e| e.name == "exp-02")
        .unwrap();
    assert_eq!(stuck.verdict(), VerdictKind::Deferred);
    assert_eq!(stuck.outcome_str(), "deferred");
    assert_eq!(
        stuck.deferral(),
        Some(Deferral::NotRead {
            waited: StdDuration::from_secs(33)
        })
    );
    assert!(
        stuck.reason().contains("not described within 33 s"),
        "{}",
        stuck.reason()
    );
    let written: Vec<&str> = report
        .experiments
        .iter()
        .filter(|e| e.applied())
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(written, ["exp-00", "exp-01", "exp-03", "exp-04"]);
    assert_eq!(report.summary.verdicts.deferred, 1);
    assert!(store.updates().iter().all(|(_, u)| u.name != "exp-02"));
}

#[tokio::test(start_paused = true)]
async fn a_metrics_round_past_its_cutoff_leaves_its_experiments_inconclusive_and_never_ramps() {
    let store = FakeStore::new((0..3).map(|i| experiment(&format!("exp-{i}"), 5)));
    let metrics = healthy();
    metrics.delay_fetches(StdDuration::from_secs(600));
    let budget = Budget {
        deadline: Instant::now() + StdDuration::from_secs(110),
        attempt_timeout: StdDuration::from_secs(10),
    };
    let (report, took) = tick(&store, &metrics, budget, 64).await;
    assert!(took <= StdDuration::from_secs(110), "took {took:?}");
    for entry in &report.experiments {
        let steered = entry.steered().expect("judged without evidence");
        let failure = steered.metrics_error.as_ref().expect("out of time");
        assert!(
            matches!(*failure.0, MetricError::OutOfTime { waited } if waited == StdDuration::from_secs(66)),
            "{failure:?}"
        );
        assert_eq!(entry.verdict(), VerdictKind::Inconclusive);
    }
    assert!(store.updates().iter().all(|(_, u)| u.sampling.is_none()));
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_nothing_is_cut() {
    let store = FakeStore::new(ending(3));
    store.delay_calls(StdDuration::from_secs(30));
    let metrics = healthy();
    let policies = builtin_policies().unwrap();
    store.set_now(now());
    let options = RunOptions {
        dry_run: false,
        only: None,
        budget: None,
    };
    let report = Controller::new(&store, &metrics, &policies)
        .run_tick(&options, now(), now() + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(report.experiments.iter().filter(|e| e.applied()).count(), 3);
}
