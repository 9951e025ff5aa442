//! The EventBridge sink against aws-smithy-mocks: the exact PutEvents
//! request, batches of at most ten, and refused entries as an error.

use std::sync::{Arc, Mutex};

use aws_sdk_eventbridge::operation::put_events::{PutEventsInput, PutEventsOutput};
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_smithy_mocks::{mock, mock_client};

use shadowpilot_aws::EventBridgeSink;
use shadowpilot_core::events::{EventDetail, ShadowEvent};
use shadowpilot_core::ports::{EventError, EventSink};

const ARN: &str = "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/fraud";

fn event(detail_type: &'static str) -> ShadowEvent {
    ShadowEvent {
        detail_type,
        resource: ARN.into(),
        detail: EventDetail {
            experiment: "fraud".into(),
            arn: ARN.into(),
            endpoint: Some("fraud-endpoint".into()),
            policy: Some("default".into()),
            sampling_percentage: Some(25),
            end_time: None,
            verdict: "pass".into(),
            attention: vec![],
            cleared: vec![],
            change: None,
            decisive: vec![],
            reason: "passing".into(),
        },
    }
}

fn recording(failed: i32) -> (aws_smithy_mocks::Rule, Arc<Mutex<Vec<PutEventsInput>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let rule = mock!(aws_sdk_eventbridge::Client::put_events).then_compute_output(move |req| {
        sink.lock().unwrap().push(req.clone());
        let mut entries: Vec<PutEventsResultEntry> = req
            .entries()
            .iter()
            .map(|_| PutEventsResultEntry::builder().event_id("id").build())
            .collect();
        if failed > 0 {
            entries[0] = PutEventsResultEntry::builder()
                .error_code("AccessDeniedException")
                .error_message("not authorized to put events on bus default")
                .build();
        }
        PutEventsOutput::builder()
            .failed_entry_count(failed)
            .set_entries(Some(entries))
            .build()
    });
    (rule, seen)
}

#[tokio::test]
async fn events_go_out_ten_at_a_time_with_source_type_resource_and_a_json_detail() {
    let (rule, seen) = recording(0);
    let sink = EventBridgeSink::new(
        mock_client!(
            aws_sdk_eventbridge,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&rule]
        ),
        Some("shadow-events".into()),
    );
    let events: Vec<ShadowEvent> = (0..12).map(|_| event("Shadow Sampling Changed")).collect();
    sink.publish(&events).await.expect("published");
    let calls = seen.lock().unwrap();
    assert_eq!(
        calls.iter().map(|c| c.entries().len()).collect::<Vec<_>>(),
        [10, 2]
    );
    let entry = &calls[0].entries()[0];
    assert_eq!(entry.source(), Some("shadowpilot"));
    assert_eq!(entry.detail_type(), Some("Shadow Sampling Changed"));
    assert_eq!(entry.resources(), [ARN]);
    assert_eq!(entry.event_bus_name(), Some("shadow-events"));
    let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
    assert_eq!(detail["experiment"], "fraud");
    assert_eq!(detail["sampling_percentage"], 25);
}

#[tokio::test]
async fn the_default_bus_is_left_unnamed_and_refused_entries_are_an_error() {
    let (rule, seen) = recording(1);
    let sink = EventBridgeSink::new(
        mock_client!(aws_sdk_eventbridge, [&rule]),
        Some("default".into()),
    );
    let error = sink
        .publish(&[event("Shadow Failing")])
        .await
        .expect_err("one entry refused");
    assert!(
        matches!(&error, EventError::Refused { failed: 1, sent: 1, message } if message.contains("AccessDeniedException")),
        "{error:?}"
    );
    assert_eq!(seen.lock().unwrap()[0].entries()[0].event_bus_name(), None);
}
