//! The simulated SageMaker rejects what AWS rejects, and its experiments
//! follow AWS's life cycle on the virtual clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::experiment::{
    ExperimentStatus, ExperimentStop, ExperimentUpdate, SamplingUpdate, StopState, VariantAction,
};
use shadowpilot_core::ports::{ExperimentStore, StoreError};
use shadowpilot_sim::{Refusal, Scenario, SimUpdate, SimWorld};

/// Experiment `a` runs from day 0 for 7 days; `later` starts on day 1.
const SCENARIO: &str = "
name: rules
schedule: rate(10 minutes)
sagemaker:
  update_takes: 3m
experiments:
  - name: a
    sampling: 5
    production_variant: blue
    shadow_variant: green
    tags: {team: search}
  - name: later
    start: 1d
    duration: 2d
    sampling: 10
    hold: true
";

fn setup() -> (SimWorld, DateTime<Utc>) {
    let scenario = Scenario::parse("rules.yaml", SCENARIO).expect("scenario is valid");
    let start = scenario.start;
    (SimWorld::new(&scenario), start)
}

fn sampling(name: &str, percentage: u8) -> ExperimentUpdate {
    ExperimentUpdate {
        name: name.into(),
        sampling: Some(SamplingUpdate {
            source_variant: "blue".into(),
            shadow_variant: "green".into(),
            percentage,
        }),
        end_time: None,
    }
}

fn end_time(name: &str, end: DateTime<Utc>) -> ExperimentUpdate {
    ExperimentUpdate {
        name: name.into(),
        sampling: None,
        end_time: Some(end),
    }
}

/// The call failed as a ValidationException, and the rule the simulated
/// SageMaker applied is the expected one.
fn rejected_with(world: &SimWorld, result: Result<(), StoreError>, expected: fn(&Refusal) -> bool) {
    let refused = world.writes().last().and_then(|w| w.refused.clone());
    match (result, refused) {
        (Err(StoreError::Rejected { message, .. }), Some(refusal)) => {
            assert!(expected(&refusal), "{refusal:?}");
            assert_eq!(message, refusal.to_string());
        }
        other => panic!("expected a ValidationException, got {other:?}"),
    }
}

fn conflict(result: Result<(), StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Conflict { .. })),
        "expected ConflictException, got {result:?}"
    );
}

#[tokio::test]
async fn status_follows_the_schedule() {
    let (world, start) = setup();
    let status = |name: &str| world.status(name).unwrap();
    assert_eq!(status("a"), ExperimentStatus::Running);
    assert_eq!(status("later"), ExperimentStatus::Created);
    world.set_now(start + Duration::days(1));
    assert_eq!(status("later"), ExperimentStatus::Running);
    world.set_now(start + Duration::days(3) - Duration::seconds(1));
    assert_eq!(status("later"), ExperimentStatus::Running);
    world.set_now(start + Duration::days(3));
    assert_eq!(status("later"), ExperimentStatus::Completed);
    world.set_now(start + Duration::days(7));
    assert_eq!(status("a"), ExperimentStatus::Completed);
    assert!(world.all_completed());
    let listed = world.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|s| s.status == ExperimentStatus::Completed));
}

#[tokio::test]
async fn describe_carries_config_times_and_tags() {
    let (world, start) = setup();
    let a = world.describe("a").await.unwrap();
    assert_eq!(a.endpoint_name, "a-endpoint");
    assert_eq!(
        (a.production_variant.as_str(), a.shadow_variant.as_str()),
        ("blue", "green")
    );
    assert_eq!(a.sampling_percentage, 5);
    assert_eq!(a.start_time, Some(start));
    assert_eq!(a.end_time, Some(start + Duration::days(7)));
    assert_eq!(a.last_modified, start);
    assert_eq!(a.policy_tag(), Some("default"));
    assert_eq!(a.tags.get("team").map(String::as_str), Some("search"));
    assert!(!a.is_held());
    assert!(a.arn.ends_with(":inference-experiment/a"));
    assert!(world.describe("later").await.unwrap().is_held());
}

#[tokio::test]
async fn unknown_names_are_resource_not_found() {
    let (world, _) = setup();
    assert!(matches!(
        world.describe("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        world.update(&sampling("nope", 10)).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_update_shows_updating_then_running_and_conflicts_meanwhile() {
    let (world, start) = setup();
    let now = start + Duration::hours(1);
    world.set_now(now);
    world.update(&sampling("a", 10)).await.unwrap();
    let a = world.describe("a").await.unwrap();
    assert_eq!(a.status, ExperimentStatus::Updating);
    assert_eq!(a.sampling_percentage, 10);
    assert_eq!(a.last_modified, now);
    conflict(world.update(&sampling("a", 25)).await);
    world.set_now(now + Duration::minutes(3));
    assert_eq!(world.status("a"), Some(ExperimentStatus::Running));
    world.update(&sampling("a", 25)).await.unwrap();
    // The new percentage is in force once the update has gone through.
    let history = world.sampling_history("a").unwrap();
    assert_eq!(
        history,
        [
            (start, 5),
            (now + Duration::minutes(3), 10),
            (now + Duration::minutes(6), 25)
        ]
    );
    let writes = world.writes();
    assert_eq!(writes.len(), 3);
    assert_eq!(
        writes[1].refused,
        Some(Refusal::NotUpdatable(ExperimentStatus::Updating))
    );
}

#[tokio::test]
async fn only_created_and_running_experiments_take_updates() {
    let (world, start) = setup();
    world.set_now(start + Duration::days(7));
    conflict(world.update(&sampling("a", 10)).await);
    conflict(
        world
            .update(&end_time("a", start + Duration::days(8)))
            .await,
    );
    // Created takes updates, including a new StartTime.
    let (world, start) = setup();
    world
        .request_update(&SimUpdate {
            name: "later".into(),
            start_time: Some(start + Duration::hours(2)),
            end_time: Some(start + Duration::days(2)),
            sampling: None,
        })
        .unwrap();
    world.set_now(start + Duration::hours(3));
    assert_eq!(world.status("later"), Some(ExperimentStatus::Running));
}

#[tokio::test]
async fn while_running_only_end_time_and_sampling_change() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    let result = world.request_update(&SimUpdate {
        name: "a".into(),
        start_time: Some(start + Duration::hours(2)),
        end_time: None,
        sampling: None,
    });
    rejected_with(&world, result, |r| {
        matches!(r, Refusal::StartTimeWhileRunning { .. })
    });
    world
        .update(&end_time("a", start + Duration::days(9)))
        .await
        .unwrap();
    assert_eq!(
        world.describe("a").await.unwrap().end_time,
        Some(start + Duration::days(9))
    );
}

#[tokio::test]
async fn end_time_in_the_past_or_past_thirty_days_is_rejected() {
    let (world, start) = setup();
    let now = start + Duration::days(2);
    world.set_now(now);
    rejected_with(
        &world,
        world
            .update(&end_time("a", now - Duration::minutes(1)))
            .await,
        |r| matches!(r, Refusal::EndTimeInPast(_)),
    );
    rejected_with(&world, world.update(&end_time("a", now)).await, |r| {
        matches!(r, Refusal::EndTimeInPast(_))
    });
    rejected_with(
        &world,
        world
            .update(&end_time(
                "a",
                start + Duration::days(30) + Duration::seconds(1),
            ))
            .await,
        |r| matches!(r, Refusal::LongerThanThirtyDays { .. }),
    );
    world
        .update(&end_time("a", start + Duration::days(30)))
        .await
        .unwrap();
    assert_eq!(
        world.describe("a").await.unwrap().end_time,
        Some(start + Duration::days(30))
    );
}

#[tokio::test]
async fn end_time_must_come_after_start_time_and_start_time_not_in_the_past() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    // `later` is Created and starts on day 1.
    rejected_with(
        &world,
        world
            .update(&end_time("later", start + Duration::hours(20)))
            .await,
        |r| matches!(r, Refusal::EndTimeNotAfterStart { .. }),
    );
    let result = world.request_update(&SimUpdate {
        name: "later".into(),
        start_time: Some(start),
        end_time: None,
        sampling: None,
    });
    rejected_with(&world, result, |r| matches!(r, Refusal::StartTimeInPast(_)));
    let result = world.request_update(&SimUpdate {
        name: "later".into(),
        start_time: Some(start + Duration::days(10)),
        end_time: None,
        sampling: None,
    });
    rejected_with(&world, result, |r| {
        matches!(r, Refusal::EndTimeNotAfterStart { .. })
    });
    assert_eq!(
        world.describe("later").await.unwrap().start_time,
        Some(start + Duration::days(1))
    );
}

#[tokio::test]
async fn sampling_must_name_the_variants_and_stay_within_one_to_hundred() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    rejected_with(&world, world.update(&sampling("a", 0)).await, |r| {
        *r == Refusal::SamplingOutOfRange(0)
    });
    rejected_with(&world, world.update(&sampling("a", 101)).await, |r| {
        *r == Refusal::SamplingOutOfRange(101)
    });
    let mut wrong = sampling("a", 10);
    if let Some(s) = wrong.sampling.as_mut() {
        s.source_variant = "green".into();
    }
    rejected_with(
        &world,
        world.update(&wrong).await,
        |r| matches!(r, Refusal::WrongSourceVariant { sent, production } if sent == "green" && production == "blue"),
    );
    let mut wrong = sampling("a", 10);
    if let Some(s) = wrong.sampling.as_mut() {
        s.shadow_variant = "red".into();
    }
    rejected_with(
        &world,
        world.update(&wrong).await,
        |r| matches!(r, Refusal::WrongShadowVariant { sent, .. } if sent == "red"),
    );
    rejected_with(
        &world,
        world
            .update(&ExperimentUpdate {
                name: "a".into(),
                sampling: None,
                end_time: None,
            })
            .await,
        |r| *r == Refusal::NothingToChange,
    );
    // Nothing rejected changed anything.
    let a = world.describe("a").await.unwrap();
    assert_eq!(
        (a.sampling_percentage, a.last_modified, a.status),
        (5, start, ExperimentStatus::Running)
    );
    assert_eq!(world.sampling_history("a").unwrap(), [(start, 5)]);
}

fn stop_request(name: &str, shadow: VariantAction, production: VariantAction) -> ExperimentStop {
    ExperimentStop {
        name: name.into(),
        variant_actions: BTreeMap::from([
            ("green".to_string(), shadow),
            ("blue".to_string(), production),
        ]),
        desired_state: StopState::Completed,
        reason: "shadowpilot: test".into(),
    }
}

#[tokio::test]
async fn a_stop_is_stopping_then_in_its_desired_state_and_the_shadow_takes_no_more_traffic() {
    let (world, start) = setup();
    let at = start + Duration::hours(2);
    world.set_now(at);
    world
        .stop(&stop_request(
            "a",
            VariantAction::Promote,
            VariantAction::Retain,
        ))
        .await
        .expect("a Running experiment stops");
    assert_eq!(
        world.describe("a").await.unwrap().status,
        ExperimentStatus::Stopping
    );
    // Stopping refuses everything, another stop included.
    conflict(world.update(&sampling("a", 10)).await);
    conflict(
        world
            .stop(&stop_request(
                "a",
                VariantAction::Promote,
                VariantAction::Retain,
            ))
            .await,
    );
    world.set_now(at + Duration::minutes(5));
    assert_eq!(
        world.describe("a").await.unwrap().status,
        ExperimentStatus::Completed
    );
    let after = world
        .observe("a", at, at + Duration::hours(1))
        .expect("observed");
    assert_eq!(after.shadow.invocations, 0, "{after:?}");
    assert!(after.production.invocations > 0);
    let serving = world.serving_after_stop("a").expect("stopped");
    assert_eq!(serving.production.as_deref(), Some("green"));
    assert_eq!(serving.retained, ["blue"]);
    assert_eq!(world.stops().len(), 2);
}

#[tokio::test]
async fn a_stop_must_name_both_variants_promote_only_the_shadow_and_fit_its_reason() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(2));
    let refused = |world: &SimWorld| world.stops().last().and_then(|s| s.refused.clone());

    let mut one_variant = stop_request("a", VariantAction::Remove, VariantAction::Retain);
    one_variant.variant_actions.remove("blue");
    let result = world.stop(&one_variant).await;
    assert!(
        matches!(result, Err(StoreError::Rejected { .. })),
        "{result:?}"
    );
    assert!(matches!(
        refused(&world),
        Some(Refusal::WrongVariantActions { .. })
    ));

    let result = world
        .stop(&stop_request(
            "a",
            VariantAction::Retain,
            VariantAction::Promote,
        ))
        .await;
    assert!(
        matches!(result, Err(StoreError::Rejected { .. })),
        "{result:?}"
    );
    assert_eq!(
        refused(&world),
        Some(Refusal::PromotesProduction("blue".into()))
    );

    let mut long = stop_request("a", VariantAction::Remove, VariantAction::Retain);
    long.reason = "x".repeat(1025);
    let result = world.stop(&long).await;
    assert!(
        matches!(result, Err(StoreError::Rejected { .. })),
        "{result:?}"
    );
    assert_eq!(refused(&world), Some(Refusal::ReasonTooLong(1025)));

    // Not yet started: Created cannot be stopped here.
    let result = world
        .stop(&stop_request(
            "later",
            VariantAction::Remove,
            VariantAction::Retain,
        ))
        .await;
    conflict(result);
    assert_eq!(
        world.describe("a").await.unwrap().status,
        ExperimentStatus::Running
    );
}
