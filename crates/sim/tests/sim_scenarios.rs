//! The shipped scenarios as regression tests of decision quality.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::experiment::{ExperimentStatus, StopState, VariantAction};
use shadowpilot_core::plan::{Action, Attention, SamplingChange};
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::report::VerdictKind;
use shadowpilot_sim::{run, ExperimentRun, Scenario, SimulationOutcome};

async fn simulate(file: &str) -> SimulationOutcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(file);
    let scenario = Scenario::load(&path).unwrap_or_else(|error| panic!("{error}"));
    let policies = builtin_policies().expect("built-in policies load");
    let outcome = run(&scenario, &policies, None)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    // SIM_PRINT=1 prints the tables, SIM_PLOT_DIR=dir draws each run.
    if std::env::var_os("SIM_PRINT").is_some() {
        eprintln!("{}\n{}", outcome.timeline_table(), outcome.summary_table());
    }
    if let Some(dir) = std::env::var_os("SIM_PLOT_DIR") {
        let svg = Path::new(&dir).join(file.replace(".yaml", ".svg"));
        shadowpilot_sim::write_svg(&outcome, &svg).unwrap_or_else(|error| panic!("{error}"));
    }
    outcome
}

/// Every EndTime the controller asked for is within 30 days of StartTime.
/// Checked on the planned actions, not on what the world accepted: the
/// simulated SageMaker rejects an EndTime past 30 days, so the EndTimes it
/// holds are within 30 days whatever the controller does.
fn assert_never_asks_past_thirty_days(run: &ExperimentRun) {
    for tick in &run.ticks {
        for action in tick.actions() {
            if let Action::ExtendEndTime { to, .. } = action {
                assert!(
                    *to - run.start_time <= Duration::days(30),
                    "{}: asked for EndTime {to} at {}",
                    run.name,
                    tick.at
                );
            }
        }
    }
}

fn experiment<'a>(outcome: &'a SimulationOutcome, name: &str) -> &'a ExperimentRun {
    outcome
        .experiment(name)
        .unwrap_or_else(|| panic!("no experiment {name}"))
}

#[tokio::test]
async fn healthy_shadow_reaches_100_and_is_never_extended() {
    let outcome = simulate("healthy.yaml").await;
    let summary = &outcome.summaries()[0];
    assert!(summary.time_to_100.is_some(), "{}", outcome.summary_table());
    assert_eq!(summary.ramps_down, 0, "{}", outcome.summary_table());
    assert_eq!(summary.extensions, 0);
    assert_eq!(summary.verdicts.fail, 0);
    assert_eq!(summary.final_status, Some(ExperimentStatus::Completed));
    assert!(
        outcome.writes.iter().all(|w| w.refused.is_none()),
        "{:?}",
        outcome.writes
    );
}

fn first_fail_after(run: &ExperimentRun, from: DateTime<Utc>) -> DateTime<Utc> {
    run.ticks
        .iter()
        .find(|t| t.at >= from && t.verdict() == VerdictKind::Fail)
        .map(|t| t.at)
        .unwrap_or_else(|| panic!("{} never failed after {from}", run.name))
}

/// The sampling percentage in force at `at`: the last history entry that
/// took effect at or before it. Computed here, from the history alone, so
/// that a bound taken from it cannot include the entries it is meant to
/// bound.
fn sampling_in_force_at(run: &ExperimentRun, at: DateTime<Utc>) -> u8 {
    run.sampling_history
        .iter()
        .take_while(|(from, _)| *from <= at)
        .last()
        .map(|(_, percentage)| *percentage)
        .unwrap_or_else(|| panic!("{}: no sampling in force at {at}", run.name))
}

/// Every rise in the sampling percentage in force from `from` on, as
/// (when, before, after): the percentage in force at `from` is the first
/// "before", and each later history entry is compared with the one in force
/// just before it.
fn climbs_from(run: &ExperimentRun, from: DateTime<Utc>) -> Vec<(DateTime<Utc>, u8, u8)> {
    let mut in_force = sampling_in_force_at(run, from);
    let mut climbs = Vec::new();
    for (at, percentage) in run.sampling_history.iter().filter(|(at, _)| *at > from) {
        if *percentage > in_force {
            climbs.push((*at, in_force, *percentage));
        }
        in_force = *percentage;
    }
    climbs
}

/// The sampling percentage in force never rises from `seen` on.
fn assert_never_climbs_from(run: &ExperimentRun, seen: DateTime<Utc>) {
    let climbs = climbs_from(run, seen);
    assert!(
        climbs.is_empty(),
        "{}: sampling in force rose after the regression was seen at {seen}: {climbs:?}",
        run.name
    );
}

#[tokio::test]
async fn a_regressed_shadow_never_climbs_once_the_regression_is_visible() {
    let outcome = simulate("latency-regression.yaml").await;
    for (name, regression) in [
        ("search-v2", Duration::days(2)),
        ("search-v3", Duration::hours(5)),
    ] {
        let run = experiment(&outcome, name);
        let starts = outcome.start + regression;
        let seen = first_fail_after(run, starts);
        assert!(
            seen - starts <= Duration::hours(2),
            "{name}: regression seen only at {seen}"
        );
        // From the first failing tick on, no sampling write goes up...
        for tick in run.ticks.iter().filter(|t| t.at >= seen) {
            for action in tick.actions() {
                if let Action::SetSampling { from, to, .. } = action {
                    assert!(to < from, "{name} climbed {from} → {to} at {}", tick.at);
                }
            }
        }
        // ...so the percentage in force never rises above what it was then.
        assert_never_climbs_from(run, seen);
        // And it was taken down to the floor.
        let summary = run.summary(outcome.stop, &outcome.writes);
        assert_eq!(summary.final_sampling, 1, "{}", outcome.summary_table());
        assert!(summary.ramps_down >= 1);
    }
    // search-v2 had reached 100 % before its regression.
    assert!(experiment(&outcome, "search-v2")
        .summary(outcome.stop, &outcome.writes)
        .time_to_100
        .is_some());
}

#[tokio::test]
async fn an_error_spike_steps_down_and_the_shadow_recovers_after() {
    let outcome = simulate("error-spike.yaml").await;
    let run = experiment(&outcome, "fraud-scorer-v4");
    let spike = (
        outcome.start + Duration::hours(36),
        outcome.start + Duration::hours(40),
    );
    let seen = first_fail_after(run, spike.0);
    assert!(seen < spike.1, "spike seen only at {seen}");
    // No climb while the spike is in the evidence (spike end + one lookback).
    for tick in run
        .ticks
        .iter()
        .filter(|t| t.at >= seen && t.at < spike.1 + Duration::hours(1))
    {
        for action in tick.actions() {
            if let Action::SetSampling { from, to, .. } = action {
                assert!(
                    to < from,
                    "climbed {from} → {to} at {} during the spike",
                    tick.at
                );
            }
        }
    }
    let summary = run.summary(outcome.stop, &outcome.writes);
    assert!(summary.ramps_down >= 1, "{}", outcome.summary_table());
    // Changed with the latch (issue 8): a spike that fails a check latches
    // the experiment, which goes down to the floor and stays there until a
    // person (or the policy's rearm_after) re-arms it; it used to climb back
    // to 100 % after the spike.
    assert_eq!(
        summary.final_sampling,
        1,
        "latched at the floor: {}",
        outcome.summary_table()
    );
    assert_never_climbs_from(run, seen);
    let last = run.ticks.iter().rev().find(|t| !t.attention().is_empty());
    assert!(
        last.is_some_and(|t| t.attention().contains(&Attention::FailingAtFloor)),
        "reported failing at the floor to the end"
    );
}

#[tokio::test]
async fn low_traffic_is_extended_and_never_past_thirty_days() {
    let outcome = simulate("low-traffic.yaml").await;
    for run in &outcome.experiments {
        let summary = run.summary(outcome.stop, &outcome.writes);
        assert!(
            summary.final_end_time - run.start_time <= Duration::days(30),
            "{}",
            run.name
        );
        assert_never_asks_past_thirty_days(run);
        assert_eq!(summary.final_status, Some(ExperimentStatus::Completed));
        // Thin evidence never ramps but for evidence (issue 8: a quiet
        // endpoint now ramps for evidence or becomes undecidable); without
        // any thin evidence, the loop would check nothing.
        assert!(
            run.ticks
                .iter()
                .any(|t| t.verdict() == VerdictKind::Inconclusive),
            "{} never had thin evidence",
            run.name
        );
        for tick in &run.ticks {
            if tick.verdict() == VerdictKind::Inconclusive {
                for action in tick.actions() {
                    if let Action::SetSampling { from, to, why } = action {
                        assert!(
                            to < from || matches!(why, SamplingChange::ForEvidence { .. }),
                            "{} ramped on thin evidence at {} ({why:?})",
                            run.name,
                            tick.at
                        );
                    }
                }
            }
        }
    }
    // Changed (issue 8): both used to be extended while inconclusive; with
    // evidence ramps they now reach 100 % and pass, and only a shadow still
    // undecided would be extended.
    for name in ["nightly-batch", "weekend-lull"] {
        let summary = experiment(&outcome, name).summary(outcome.stop, &outcome.writes);
        assert!(
            summary.time_to_100.is_some() || summary.extensions >= 1,
            "{name} neither ramped for evidence nor was extended: {}",
            outcome.summary_table()
        );
    }
    assert!(
        outcome.writes.iter().all(|w| w.refused.is_none()),
        "SageMaker rejected a write: {:?}",
        outcome.writes
    );
}

#[tokio::test]
async fn mixed_fleet_each_kind_ends_as_it_should() {
    let outcome = simulate("mixed-fleet.yaml").await;
    assert_eq!(outcome.experiments.len(), 20);
    let summaries = outcome.summaries();
    let table = outcome.summary_table();
    for summary in &summaries {
        let name = summary.name.as_str();
        assert_eq!(
            summary.final_status,
            Some(ExperimentStatus::Completed),
            "{name}: {table}"
        );
        assert_never_asks_past_thirty_days(experiment(&outcome, name));
        if name.starts_with("healthy") || name.starts_with("canary-fast") {
            assert!(
                summary.time_to_100.is_some(),
                "{name} never reached 100 %: {table}"
            );
        }
        if name.starts_with("regressed") {
            assert_eq!(summary.final_sampling, 1, "{name}: {table}");
            let run = experiment(&outcome, name);
            let seen = first_fail_after(run, outcome.start + Duration::hours(30));
            assert_never_climbs_from(run, seen);
            assert!(run.ticks.iter().filter(|t| t.at >= seen).all(|t| !t
                .actions()
                .iter()
                .any(|a| matches!(a, Action::SetSampling { from, to, .. } if to > from))));
        }
        if name.starts_with("spiky") {
            assert!(summary.ramps_down >= 1, "{name}: {table}");
        }
        // Changed (issue 8): quiet endpoints used to be extended; they now
        // ramp for evidence, or are extended while still undecided.
        if name.starts_with("quiet") {
            assert!(
                summary.extensions >= 1 || summary.time_to_100.is_some(),
                "{name}: {table}"
            );
        }
        if name == "careful-payments" {
            assert!(
                summary.max_sampling <= 20,
                "the conservative policy tops out at 20 %: {table}"
            );
        }
    }
    // Held: judged every tick, never written.
    assert!(outcome.writes.iter().all(|w| w.request.name != "frozen"));
    assert_eq!(experiment(&outcome, "frozen").sampling_history.len(), 1);
    // The conservative policy writes only on weekdays 08:00–17:00 UTC, and
    // does write: with no write, the loop would check nothing.
    let careful: Vec<_> = outcome
        .writes
        .iter()
        .filter(|w| w.request.name == "careful-payments")
        .collect();
    assert!(!careful.is_empty(), "careful-payments was never written");
    for write in careful {
        use chrono::{Datelike, Timelike};
        let at = write.at;
        assert!(
            at.weekday().num_days_from_monday() < 5 && (8..17).contains(&at.hour()),
            "written at {at}"
        );
    }
    assert!(
        outcome.writes.iter().all(|w| w.refused.is_none()),
        "SageMaker rejected a write"
    );
}

#[tokio::test]
async fn the_end_of_the_test_promotes_removes_and_never_stops_a_held_experiment() {
    let outcome = simulate("end-of-test.yaml").await;
    let table = outcome.summary_table();
    let stops_of = |name: &str| -> Vec<_> {
        outcome
            .stops
            .iter()
            .filter(|s| s.request.name == name)
            .collect()
    };
    assert!(
        outcome.stops.iter().all(|s| s.refused.is_none()),
        "{:?}",
        outcome.stops
    );

    // Promoted six hours (and less than a tick more) after 100 % began,
    // on a PASS at 100 %, and never written again.
    let promoted = experiment(&outcome, "promoted");
    let [stop] = stops_of("promoted")[..] else {
        panic!("one stop of promoted: {:?}", outcome.stops);
    };
    let top_since = promoted
        .sampling_history
        .iter()
        .find(|(_, p)| *p == 100)
        .map(|(at, _)| *at)
        .expect("reached 100 %");
    // The history records when 100 % took effect (a minute after the
    // update); the step tag and its clock start at the update.
    let waited = stop.at - top_since;
    assert!(
        waited >= Duration::hours(6) - Duration::minutes(1)
            && waited < Duration::hours(6) + Duration::minutes(10),
        "promoted {waited} after 100 %"
    );
    assert_eq!(
        stop.request.variant_actions["shadow"],
        VariantAction::Promote
    );
    assert_eq!(
        stop.request.variant_actions["production"],
        VariantAction::Retain
    );
    assert_eq!(stop.request.desired_state, StopState::Completed);
    let at_stop = promoted.ticks.iter().find(|t| t.at == stop.at).unwrap();
    assert_eq!(at_stop.verdict(), VerdictKind::Pass);
    assert_eq!(at_stop.sampling, 100);
    assert!(outcome
        .writes
        .iter()
        .all(|w| w.request.name != "promoted" || w.at < stop.at));
    let serving = promoted.serving_after_stop.as_ref().expect("stopped");
    assert_eq!(serving.production.as_deref(), Some("shadow"), "{serving:?}");
    assert_eq!(serving.retained, ["production"]);
    let summary = promoted.summary(outcome.stop, &outcome.writes);
    assert_eq!(
        summary.final_status,
        Some(ExperimentStatus::Completed),
        "{table}"
    );

    // Removed a day after it reached the floor latched, never above 5 %.
    let removed = experiment(&outcome, "removed");
    let [stop] = stops_of("removed")[..] else {
        panic!("one stop of removed: {:?}", outcome.stops);
    };
    let at_floor = removed
        .sampling_history
        .iter()
        .find(|(_, p)| *p == 1)
        .map(|(at, _)| *at)
        .expect("reached the floor");
    let waited = stop.at - at_floor;
    assert!(
        waited >= Duration::days(1) - Duration::minutes(1)
            && waited < Duration::days(1) + Duration::minutes(10),
        "removed {waited} after the floor"
    );
    assert_eq!(
        stop.request.variant_actions["shadow"],
        VariantAction::Remove
    );
    assert_eq!(
        stop.request.variant_actions["production"],
        VariantAction::Retain
    );
    assert_eq!(stop.request.desired_state, StopState::Cancelled);
    assert!(removed.sampling_history.iter().all(|(_, p)| *p <= 5));
    let serving = removed.serving_after_stop.as_ref().expect("stopped");
    assert_eq!(serving.production.as_deref(), Some("production"));
    assert_eq!(serving.removed, ["shadow"]);
    let summary = removed.summary(outcome.stop, &outcome.writes);
    assert_eq!(
        summary.final_status,
        Some(ExperimentStatus::Cancelled),
        "{table}"
    );

    // Held: a stop due (and blocked) at many ticks, never sent; each ends
    // by its schedule.
    for name in ["held-passing", "held-failing"] {
        let run = experiment(&outcome, name);
        assert!(stops_of(name).is_empty(), "{name}");
        assert!(outcome.writes.iter().all(|w| w.request.name != name));
        let blocked = run
            .ticks
            .iter()
            .filter(|t| t.actions().iter().any(|a| matches!(a, Action::Stop { .. })))
            .count();
        assert!(blocked > 10, "{name}: a stop was due only {blocked} times");
        let summary = run.summary(outcome.stop, &outcome.writes);
        assert_eq!(
            summary.final_status,
            Some(ExperimentStatus::Completed),
            "{name}: {table}"
        );
    }
}

#[tokio::test]
async fn a_run_is_reproducible() {
    let first = simulate("error-spike.yaml").await;
    let second = simulate("error-spike.yaml").await;
    assert_eq!(first.writes, second.writes);
    assert_eq!(first.timeline_table(), second.timeline_table());
}

async fn simulate_text(text: &str, until: Option<std::time::Duration>) -> SimulationOutcome {
    let scenario = Scenario::parse("inline.yaml", text).unwrap_or_else(|error| panic!("{error}"));
    let policies = builtin_policies().expect("built-in policies load");
    run(&scenario, &policies, until)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test]
async fn updates_slower_than_a_tick_are_waited_out_not_fought() {
    // Each update keeps the experiment Updating for 25 minutes: the next two
    // ticks see Updating, and a write then would be a ConflictException.
    let text = "
name: slow-updates
seed: 9
schedule: rate(10 minutes)
sagemaker:
  update_takes: 25m
defaults:
  traffic: {per_minute: 400}
experiments:
  - name: slow
    sampling: 5
    duration: 2d
";
    let outcome = simulate_text(text, None).await;
    let run = experiment(&outcome, "slow");
    assert!(
        run.ticks
            .iter()
            .any(|t| t.status() == Some(&ExperimentStatus::Updating)),
        "the controller should have met Updating"
    );
    assert!(
        outcome.writes.iter().all(|w| w.refused.is_none()),
        "{:?}",
        outcome.writes
    );
    let summary = run.summary(outcome.stop, &outcome.writes);
    assert!(summary.time_to_100.is_some(), "{}", outcome.summary_table());
}

#[tokio::test]
async fn a_cron_schedule_ticks_when_it_fires() {
    let text = "
name: cron
schedule: cron(0/15 * * * ? *)
experiments:
  - name: a
    sampling: 5
    duration: 3d
";
    let outcome = simulate_text(text, Some(std::time::Duration::from_secs(86_400))).await;
    assert_eq!(outcome.ticks, 96);
    let run = experiment(&outcome, "a");
    // Every tick judged the experiment, so the check below sees all 96.
    assert_eq!(run.ticks.len(), 96);
    assert!(run.ticks.iter().all(|t| t.at.timestamp() % 900 == 0));
}

#[tokio::test]
async fn a_shadow_that_disagrees_is_stepped_down_on_its_outputs_alone_and_one_that_agrees_climbs() {
    let outcome = simulate("output-disagreement.yaml").await;
    let flips = experiment(&outcome, "tagger-v3");
    // Every tick that failed it failed on the outputs; its latency and
    // errors never failed, so nothing but the capture could have.
    let failing: Vec<_> = flips
        .ticks
        .iter()
        .filter(|tick| tick.verdict() == VerdictKind::Fail)
        .collect();
    assert!(!failing.is_empty(), "{}", outcome.timeline_table());
    for tick in &failing {
        assert_eq!(
            tick.decisive().map(|check| check.id.as_str()),
            Some("output_agreement"),
            "{}",
            outcome.timeline_table()
        );
    }
    assert!(flips.ticks.iter().all(|tick| {
        tick.entry
            .checks()
            .iter()
            .filter(|check| check.id.as_str() != "output_agreement")
            .all(|check| check.outcome != shadowpilot_core::judge::Outcome::Fail)
    }));
    // Failed within the first hour, taken down and never up again.
    let first = failing[0].at;
    assert!(first <= flips.start_time + Duration::hours(1), "{first}");
    assert_never_climbs_from(flips, flips.start_time);
    assert!(flips
        .sampling_history
        .iter()
        .skip(1)
        .all(|(_, percentage)| *percentage < flips.starting_sampling));
    assert!(flips.sampling_history.len() > 1, "it was stepped down");

    let agrees = experiment(&outcome, "tagger-v4");
    let summary = outcome
        .summaries()
        .into_iter()
        .find(|s| s.name == "tagger-v4")
        .unwrap();
    assert_eq!(summary.verdicts.fail, 0, "{}", outcome.summary_table());
    assert!(
        summary.time_to_100.is_some_and(|t| t <= Duration::hours(3)),
        "{}",
        outcome.summary_table()
    );
    assert_eq!(agrees.sampling_history.last().map(|(_, p)| *p), Some(100));
}
