//! The tick's metrics as CloudWatch Embedded Metric Format lines, from
//! real ticks over the fakes, and the run's exit verdict.

mod common;

use chrono::Duration;
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use serde_json::Value;
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::ports::StoreError;
use shadowpilot_core::report::emf::{lines, TickFacts, MAX_ITEMISED, NAMESPACE};
use shadowpilot_core::report::{Report, RunVerdict};

async fn tick(store: &FakeStore, dry_run: bool) -> Report {
    let policies = builtin_policies().unwrap();
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let now = t0() + Duration::hours(3);
    store.set_now(now);
    let options = RunOptions {
        dry_run,
        only: None,
        budget: None,
    };
    Controller::new(store, &metrics, &policies)
        .run_tick(&options, now, now + Duration::minutes(10))
        .await
        .unwrap()
}

fn facts(scheduled: bool) -> TickFacts {
    TickFacts {
        scheduled,
        duration: std::time::Duration::from_millis(1234),
        timestamp_ms: 1_800_000_000_000,
    }
}

fn parsed(report: &Report, scheduled: bool) -> Vec<Value> {
    lines(report, &facts(scheduled))
        .iter()
        .map(|line| {
            assert!(!line.contains('\n'), "one line per document");
            serde_json::from_str(line).expect("JSON")
        })
        .collect()
}

/// Each document declares exactly the metrics and dimensions it carries,
/// as CloudWatch requires of EMF.
fn assert_well_formed(document: &Value) {
    let aws = &document["_aws"];
    assert_eq!(aws["Timestamp"], 1_800_000_000_000i64);
    let directive = &aws["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], NAMESPACE);
    for dimension in directive["Dimensions"][0].as_array().unwrap() {
        assert!(
            document[dimension.as_str().unwrap()].is_string(),
            "{document}"
        );
    }
    for metric in directive["Metrics"].as_array().unwrap() {
        let name = metric["Name"].as_str().unwrap();
        assert!(document[name].is_number(), "{name}: {document}");
        assert!(metric["Unit"].is_string());
    }
}

#[tokio::test]
async fn a_tick_s_metrics_count_verdicts_writes_and_errors_and_itemise_at_most_a_hundred() {
    let mut fleet: Vec<_> = (0..(MAX_ITEMISED + 20))
        .map(|i| experiment(&format!("exp-{i:03}"), 5))
        .collect();
    fleet.push(experiment("denied", 5));
    let store = FakeStore::new(fleet);
    store.fail_describes_of("denied", |_| StoreError::AccessDenied {
        operation: "DescribeInferenceExperiment",
        source: "not authorized".into(),
    });
    let report = tick(&store, false).await;
    let documents = parsed(&report, true);
    for document in &documents {
        assert_well_formed(document);
    }
    let tick = &documents[0];
    assert_eq!(tick["Experiments"], 121.0);
    assert_eq!(tick["VerdictError"], 1.0);
    assert_eq!(tick["VerdictPass"], 120.0);
    assert_eq!(tick["WritesPlanned"], 120.0);
    assert_eq!(tick["WritesApplied"], 120.0);
    assert_eq!(tick["AwsErrors"], 1.0);
    assert_eq!(tick["ExperimentsNotItemised"], 20.0);
    assert_eq!(tick["TickDuration"], 1234.0);
    assert_eq!(tick["Heartbeat"], 1);
    let errors: Vec<&Value> = documents
        .iter()
        .filter(|d| d.get("Operation").is_some())
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["Operation"], "DescribeInferenceExperiment");
    assert_eq!(errors[0]["Kind"], "access_denied");
    let itemised = documents
        .iter()
        .filter(|d| d.get("Experiment").is_some())
        .count();
    assert_eq!(itemised, MAX_ITEMISED);
    assert_eq!(report.summary.errors.get("access_denied"), Some(&1));
    assert_eq!(report.run_verdict(), RunVerdict::Errors);
    assert_eq!(report.run_verdict().exit_code(), 2);
}

#[tokio::test]
async fn a_dry_run_by_hand_beats_no_heart_and_a_rejected_write_alone_exits_three() {
    let store = FakeStore::new([experiment("a", 5), experiment("b", 5)]);
    let dry = tick(&store, true).await;
    let documents = parsed(&dry, false);
    assert!(documents[0].get("Heartbeat").is_none());
    let declared: Vec<&str> = documents[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(!declared.contains(&"Heartbeat"));
    assert_eq!(dry.run_verdict(), RunVerdict::Clean);

    store.fail_updates_of("b", |name| StoreError::Rejected {
        name: name.into(),
        message: "EndTime too late".into(),
    });
    let live = tick(&store, false).await;
    let documents = parsed(&live, true);
    assert_eq!(documents[0]["WritesRejected"], 1.0);
    assert_eq!(live.summary.writes_rejected, 1);
    assert_eq!(live.summary.errors.get("rejected"), Some(&1));
    assert_eq!(live.run_verdict(), RunVerdict::WritesHeldBack);
    assert_eq!(live.run_verdict().exit_code(), 3);
}

#[tokio::test]
async fn a_tick_whose_list_is_denied_still_counts_the_error_and_beats_no_heart() {
    use shadowpilot_core::controller::TickError;
    use shadowpilot_core::report::emf::failed_tick_lines;
    let error = TickError::List(StoreError::AccessDenied {
        operation: "ListInferenceExperiments",
        source: "AccessDeniedException".into(),
    });
    let (kind, operation) = error.kind_and_operation();
    let documents: Vec<Value> = failed_tick_lines(kind, operation, &facts(false))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for document in &documents {
        assert_well_formed(document);
        assert!(document.get("Heartbeat").is_none());
    }
    assert_eq!(documents[0]["AwsErrors"], 1);
    assert_eq!(documents[1]["Operation"], "ListInferenceExperiments");
    assert_eq!(documents[1]["Kind"], "access_denied");
    let (kind, operation) = TickError::ListOutOfTime {
        waited: std::time::Duration::from_secs(40),
    }
    .kind_and_operation();
    assert_eq!(
        (kind.as_str(), operation),
        ("service", "ListInferenceExperiments")
    );
}
