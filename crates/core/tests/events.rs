//! Lambda input: real EventBridge envelopes, ScheduleV2 input, manual
//! payloads, and the typos that must never cause a live run.

mod common;

use chrono::Duration;
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use serde_json::Value;
use shadowpilot_core::config::{Config, ConfigError};
use shadowpilot_core::event::{parse_event, EventError, RunRequest, Trigger};
use shadowpilot_core::handler::{App, HandlerError};
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::schedule::Schedule;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn accepted_inputs() {
    let named = Some(vec![
        "fraud-shadow-2026-11".to_string(),
        "ranking-v7".to_string(),
    ]);
    let cases = [
        ("scheduled-event.json", Trigger::Schedule, false, None),
        ("schedulev2-input.json", Trigger::Manual, false, None),
        ("manual-empty.json", Trigger::Manual, true, None),
        ("manual-dry-named.json", Trigger::Manual, true, named),
        (
            "manual-live-named.json",
            Trigger::Manual,
            false,
            Some(vec!["fraud-shadow-2026-11".to_string()]),
        ),
    ];
    for (file, trigger, dry_run, experiments) in cases {
        assert_eq!(
            parse_event(&fixture(file)).unwrap(),
            RunRequest {
                trigger,
                dry_run,
                experiments
            },
            "{file}"
        );
    }
}

#[test]
fn a_scheduled_envelope_honours_an_added_dry_run_and_refuses_other_keys() {
    let mut envelope = fixture("scheduled-event.json");
    envelope["dry_run"] = Value::Bool(true);
    let request = parse_event(&envelope).unwrap();
    assert_eq!(
        (request.trigger, request.dry_run),
        (Trigger::Schedule, true)
    );
    let mut typo = fixture("scheduled-event.json");
    typo["dryrun"] = Value::Bool(true);
    let error = parse_event(&typo).unwrap_err().to_string();
    assert!(error.contains("unknown field \"dryrun\""), "{error}");
}

#[test]
fn rejected_inputs_name_the_field() {
    let cases = [
        ("typo-dryrun.json", "unknown field \"dryrun\""),
        (
            "wrong-type-dry-run.json",
            "field dry_run must be true or false, not the string \"false\"",
        ),
        (
            "empty-experiments.json",
            "experiments must name at least one",
        ),
        (
            "experiments-not-a-list.json",
            "field experiments must be a list of experiment names",
        ),
        (
            "invalid-name.json",
            "experiments[0]: \"bad_name!\" is not a valid",
        ),
        ("not-an-object.json", "must be a JSON object"),
        // Another EventBridge event is not a schedule: its fields are unknown.
        ("other-eventbridge-event.json", "unknown field"),
    ];
    for (file, expected) in cases {
        let error = parse_event(&fixture(file)).unwrap_err().to_string();
        assert!(error.contains(expected), "{file}: {error}");
    }
    assert!(matches!(
        parse_event(&Value::Null),
        Err(EventError::NotAnObject { .. })
    ));
    let names: Vec<String> = (0..=1000).map(|i| format!("e{i}")).collect();
    assert_eq!(
        parse_event(&serde_json::json!({ "experiments": names })),
        Err(EventError::TooManyExperiments { count: 1001 })
    );
}

fn app(force_dry_run: bool, store: FakeStore) -> App<FakeStore, FakeMetrics> {
    let config = Config::from_lookup(|name| match name {
        "SHADOWPILOT_DRY_RUN" => Some(force_dry_run.to_string()),
        _ => None,
    })
    .unwrap();
    App::new(
        store,
        FakeMetrics::new(Profile::healthy(), Profile::healthy()),
        builtin_policies().unwrap(),
        &config,
        Schedule::parse("rate(10 minutes)").unwrap(),
        std::time::Duration::from_secs(10),
    )
}

#[tokio::test]
async fn the_handler_runs_live_only_when_asked_and_not_forced_dry() {
    let now = t0() + Duration::hours(3);
    let cases = [
        (false, "scheduled-event.json", 1),
        (false, "schedulev2-input.json", 1),
        (false, "manual-empty.json", 0),
        (true, "scheduled-event.json", 0),
        (true, "manual-live-named.json", 0),
    ];
    for (forced, file, writes) in cases {
        let app = app(
            forced,
            FakeStore::new([experiment("fraud-shadow-2026-11", 5)]),
        );
        app.store.set_now(now);
        let report = app.handle(&fixture(file), now, None).await.unwrap();
        assert_eq!(
            app.store.updates().len(),
            writes,
            "forced dry {forced}, {file}"
        );
        assert_eq!(report.dry_run, writes == 0, "{file}");
        assert_eq!(report.next_tick, now + Duration::minutes(10));
    }
}

#[tokio::test]
async fn the_schedule_beats_the_heart_even_on_a_stack_forced_dry_and_a_person_does_not() {
    let now = t0() + Duration::hours(3);
    let cases = [
        (false, "scheduled-event.json", true),
        (false, "schedulev2-input.json", true),
        // DryRun=true: the scheduler's {"dry_run": false} still is the schedule.
        (true, "schedulev2-input.json", true),
        (true, "scheduled-event.json", true),
        (false, "manual-empty.json", false),
    ];
    for (forced, file, heartbeat) in cases {
        let app = app(forced, FakeStore::new([experiment("fraud", 5)]));
        app.store.set_now(now);
        let (_, facts) = app.tick(&fixture(file), now, None).await.unwrap();
        assert_eq!(facts.scheduled, heartbeat, "forced dry {forced}, {file}");
    }
}

#[tokio::test]
async fn an_invalid_payload_does_nothing_and_says_why() {
    let app = app(false, FakeStore::new([experiment("fraud", 5)]));
    app.store.set_now(t0() + Duration::hours(3));
    let error = app
        .handle(
            &fixture("typo-dryrun.json"),
            t0() + Duration::hours(3),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        HandlerError::Payload(EventError::UnknownField { .. })
    ));
    assert!(error.to_string().contains("dryrun"));
    assert!(app.store.updates().is_empty());
}

#[test]
fn configuration_table() {
    let config = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    };
    assert!(!config(&[]).unwrap().force_dry_run);
    assert!(
        config(&[("SHADOWPILOT_DRY_RUN", "true")])
            .unwrap()
            .force_dry_run
    );
    assert!(matches!(
        config(&[("SHADOWPILOT_DRY_RUN", "yes")]),
        Err(ConfigError::DryRun { .. })
    ));
    assert!(matches!(
        config(&[]).unwrap().require_schedule(),
        Err(ConfigError::MissingSchedule)
    ));
    use shadowpilot_core::config::EventBus;
    assert_eq!(config(&[]).unwrap().event_bus, EventBus::Default);
    assert_eq!(
        config(&[("SHADOWPILOT_EVENT_BUS", "none")])
            .unwrap()
            .event_bus,
        EventBus::Off
    );
    assert_eq!(
        config(&[("SHADOWPILOT_EVENT_BUS", "shadow-events")])
            .unwrap()
            .event_bus,
        EventBus::Named("shadow-events".into())
    );
    let bus = config(&[("SHADOWPILOT_EVENT_BUS", "my bus")]).unwrap_err();
    assert!(
        bus.to_string()
            .starts_with("SHADOWPILOT_EVENT_BUS=\"my bus\": must be default, none"),
        "{bus}"
    );
    let bad = config(&[("SHADOWPILOT_SCHEDULE", "cron(0 12 L * ? *)")]).unwrap_err();
    assert!(format!("{:?}", anyhow::Error::from(bad)).contains("L, W or #"));
    let ok = config(&[("SHADOWPILOT_SCHEDULE", "cron(0/10 * * * ? *)")]).unwrap();
    assert_eq!(
        ok.require_schedule().unwrap().expression(),
        "cron(0/10 * * * ? *)"
    );
    let missing = config(&[("SHADOWPILOT_POLICIES", "/nonexistent/policies")]).unwrap();
    assert!(matches!(
        missing.load_policies(),
        Err(ConfigError::Policies(_))
    ));
}
