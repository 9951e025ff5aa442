//! EventBridge events over several ticks: one per applied action and per
//! new attention state, sent after the attention tag is written, so a
//! repeated tick announces nothing again; none from dry runs or held
//! experiments; a failed publish is recorded and the write stands.

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Duration;
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::events::{detail_schema, ShadowEvent};
use shadowpilot_core::experiment::{ATTENTION_TAG, HOLD_TAG};
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::ports::{EventError, EventSink};
use shadowpilot_core::report::{ErrorKind, Report};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ShadowEvent>>,
    fail: bool,
}

#[async_trait]
impl EventSink for Recorder {
    async fn publish(&self, events: &[ShadowEvent]) -> Result<(), EventError> {
        if self.fail {
            return Err(EventError::Refused {
                failed: events.len(),
                sent: events.len(),
                message: "AccessDeniedException: not authorized".into(),
            });
        }
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

impl Recorder {
    fn types(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.detail_type)
            .collect()
    }
}

async fn tick(
    store: &FakeStore,
    metrics: &FakeMetrics,
    sink: &Recorder,
    dry_run: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Report {
    let policies = builtin_policies().unwrap();
    store.set_now(at);
    let options = RunOptions {
        dry_run,
        only: None,
        budget: None,
    };
    Controller::new(store, metrics, &policies)
        .with_events(sink)
        .run_tick(&options, at, at + Duration::minutes(10))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_ramp_and_a_failure_are_each_announced_once() {
    let store = FakeStore::new([experiment("healthy", 5), experiment("slow", 25)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    metrics.set_from(
        "shadow",
        t0(),
        Profile {
            p99_ms: 900.0,
            ..Profile::healthy()
        },
    );
    let sink = Recorder::default();
    // Both shadows read the same profile: both fail, are latched and
    // stepped down one step per tick to the floor.
    let mut at = t0() + Duration::hours(3);
    for _ in 0..6 {
        tick(&store, &metrics, &sink, false, at).await;
        at += Duration::minutes(10);
    }
    let slow: Vec<ShadowEvent> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.detail.experiment == "slow")
        .cloned()
        .collect();
    let types: Vec<&str> = slow.iter().map(|e| e.detail_type).collect();
    // 25 → 10 → 5 → 1: three sampling changes, one failing, one at floor.
    assert_eq!(
        types.iter().filter(|t| **t == "Shadow Failing").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "Shadow Failing At Floor")
            .count(),
        1,
        "{types:?}"
    );
    assert!(types.contains(&"Shadow Sampling Changed"), "{types:?}");
    // Failing at the floor is failing still: nothing was cleared.
    assert!(!types.contains(&"Attention Cleared"), "{types:?}");
    let failing = slow
        .iter()
        .find(|e| e.detail_type == "Shadow Failing")
        .unwrap();
    assert_eq!(failing.resource, store.get("slow").arn);
    assert_eq!(failing.detail.verdict, "fail");
    let decisive = &failing.detail.decisive[0];
    assert_eq!(decisive.check, "latency_p99");
    assert!(decisive.lower.is_some() && decisive.upper.is_some());
    assert!(decisive.message.contains("> 1.20"), "{}", decisive.message);
    assert_eq!(
        store
            .get("slow")
            .tags
            .get(ATTENTION_TAG)
            .map(String::as_str),
        Some("failing_at_floor")
    );
    // More ticks at the floor: nothing new to say.
    let before = sink.types().len();
    for _ in 0..3 {
        tick(&store, &metrics, &sink, false, at).await;
        at += Duration::minutes(10);
    }
    assert_eq!(sink.types().len(), before, "{:?}", sink.types());
}

#[tokio::test]
async fn a_state_that_ends_is_announced_cleared_once() {
    // An earlier tick could not extend it; now it is passing at 100 % far
    // from its end: nothing needs attention any more.
    let mut recovered = experiment("recovered", 100);
    recovered
        .tags
        .insert(ATTENTION_TAG.to_string(), "cannot_extend".to_string());
    let store = FakeStore::new([recovered]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let sink = Recorder::default();
    let at = t0() + Duration::hours(3);
    tick(&store, &metrics, &sink, true, at).await;
    assert!(sink.types().is_empty(), "a dry run: {:?}", sink.types());

    let report = tick(&store, &metrics, &sink, false, at).await;
    let events = sink.events.lock().unwrap().clone();
    let cleared: Vec<&ShadowEvent> = events
        .iter()
        .filter(|e| e.detail_type == "Attention Cleared")
        .collect();
    assert_eq!(cleared.len(), 1, "{:?}", sink.types());
    assert_eq!(cleared[0].detail.cleared, ["cannot_extend"]);
    assert_eq!(
        cleared[0].detail.attention,
        report.experiments[0]
            .attention()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
    );
    assert!(!cleared[0]
        .detail
        .attention
        .contains(&"cannot_extend".to_string()));
    assert_ne!(
        store
            .get("recovered")
            .tags
            .get(ATTENTION_TAG)
            .map(String::as_str),
        Some("cannot_extend")
    );
    // The tag is written: the next tick has nothing to clear.
    let before = sink.types().len();
    tick(&store, &metrics, &sink, false, at + Duration::minutes(10)).await;
    assert_eq!(sink.types().len(), before, "{:?}", sink.types());
}

#[tokio::test]
async fn dry_runs_and_held_experiments_announce_nothing() {
    let mut held = experiment("held", 5);
    held.tags.insert(HOLD_TAG.into(), "true".into());
    let store = FakeStore::new([experiment("a", 5), held]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let sink = Recorder::default();
    let at = t0() + Duration::hours(3);
    tick(&store, &metrics, &sink, true, at).await;
    assert!(sink.types().is_empty());
    tick(&store, &metrics, &sink, false, at).await;
    let experiments: Vec<String> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.detail.experiment.clone())
        .collect();
    assert!(experiments.iter().all(|e| e == "a"), "{experiments:?}");
    assert_eq!(sink.types(), ["Shadow Sampling Changed"]);
}

#[tokio::test]
async fn a_failed_publish_is_recorded_and_the_write_stands() {
    let store = FakeStore::new([experiment("a", 5)]);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let sink = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let report = tick(&store, &metrics, &sink, false, t0() + Duration::hours(3)).await;
    let entry = &report.experiments[0];
    assert!(entry.applied());
    assert_eq!(store.updates().len(), 1);
    assert_eq!(entry.error_kind(), Some(ErrorKind::Events));
    let json = serde_json::to_value(entry).unwrap();
    assert_eq!(json["events"], "failed");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused 1 of 1 events"),
        "{json}"
    );
}

#[test]
fn the_committed_detail_schema_is_the_one_the_types_make() {
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../../schemas/event-detail.schema.json"))
            .expect("JSON");
    assert_eq!(
        committed,
        detail_schema(),
        "regenerate with: cargo run -p shadowpilot --no-default-features -- events schema > schemas/event-detail.schema.json"
    );
}
