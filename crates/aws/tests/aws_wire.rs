//! The adapters over real HTTP against a local server: what goes on the wire
//! (awsJson1.1 for SageMaker, Smithy RPC v2 CBOR for CloudWatch) and how
//! recorded answers and wire-level errors are read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_sagemaker::config::{Credentials, Region};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use shadowpilot_aws::{CloudWatchSource, SageMakerStore};
use shadowpilot_core::experiment::{ExperimentStatus, ExperimentUpdate, SamplingUpdate};
use shadowpilot_core::metrics::{
    MeasuredExperiment, SageMakerMetric, SeriesQuery, Statistic, VariantRole, Window,
};
use shadowpilot_core::ports::{ExperimentStore, MetricSource, StoreError};
use shadowpilot_core::report::render::error_chain;
use shadowpilot_core::report::ErrorKind;
use shadowpilot_testkit::http::{cbor_to_json, Cbor, Recorded, Reply, Server};

const NAME: &str = "churn-v2-shadow";

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamps are valid")
        .with_timezone(&Utc)
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/aws/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "wire-test")
}

fn sagemaker_at(server: &Server) -> SageMakerStore {
    let config = aws_sdk_sagemaker::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(credentials())
        .endpoint_url(&server.url)
        .build();
    SageMakerStore::new(aws_sdk_sagemaker::Client::from_conf(config))
}

fn cloudwatch_at(server: &Server) -> CloudWatchSource {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new("eu-west-1"))
        .credentials_provider(credentials())
        .endpoint_url(&server.url)
        .build();
    CloudWatchSource::new(aws_sdk_cloudwatch::Client::from_conf(config))
}

fn target(request: &Recorded) -> &str {
    request.header("x-amz-target").unwrap_or_default()
}

#[tokio::test]
async fn update_is_one_awsjson_request_with_exactly_these_fields() {
    let server = Server::start(|_| {
        Reply::json(
            200,
            &json!({"InferenceExperimentArn": "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/churn-v2-shadow"}),
        )
    });
    let store = sagemaker_at(&server);

    store
        .update(&ExperimentUpdate {
            name: NAME.into(),
            sampling: Some(SamplingUpdate {
                source_variant: "production".into(),
                shadow_variant: "shadow".into(),
                percentage: 25,
            }),
            end_time: Some(at("2025-03-20T12:00:00Z")),
        })
        .await
        .expect("update succeeds");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/")
    );
    assert_eq!(target(request), "SageMaker.UpdateInferenceExperiment");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(
        request.json(),
        json!({
            "Name": NAME,
            "Schedule": {"EndTime": 1742472000},
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 25}
                ]
            }
        })
    );
}

#[tokio::test]
async fn wire_error_codes_map_to_store_errors() {
    let server = Server::start(|request| {
        let body = request.json();
        let (kind, message) = match body["Name"].as_str() {
            Some("busy") => ("ConflictException", "Updating"),
            Some("gone") => ("ResourceNotFound", "no such experiment"),
            Some("too-long") => ("ValidationException", "EndTime too late"),
            Some("denied") => ("AccessDeniedException", "denied"),
            _ => ("UnknownOperationException", "what"),
        };
        Reply::json(400, &json!({"__type": kind, "message": message}))
    });
    let store = sagemaker_at(&server);
    let update = |name: &str| ExperimentUpdate {
        name: name.into(),
        sampling: None,
        end_time: Some(at("2025-03-20T12:00:00Z")),
    };

    let err = store.update(&update("busy")).await.expect_err("conflict");
    assert!(
        matches!(&err, StoreError::Conflict { name, message } if name == "busy" && message == "Updating"),
        "{err:?}"
    );
    let err = store.update(&update("gone")).await.expect_err("not found");
    assert!(
        matches!(&err, StoreError::NotFound { name } if name == "gone"),
        "{err:?}"
    );
    // Not in the service model: recognised by its wire code alone.
    let err = store
        .update(&update("too-long"))
        .await
        .expect_err("rejected");
    assert!(
        matches!(&err, StoreError::Rejected { name, message } if name == "too-long" && message == "EndTime too late"),
        "{err:?}"
    );
    let err = store.update(&update("denied")).await.expect_err("denied");
    assert!(
        matches!(
            &err,
            StoreError::AccessDenied {
                operation: "UpdateInferenceExperiment",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store.update(&update("other")).await.expect_err("service");
    assert_eq!(ErrorKind::of_store_error(&err).as_str(), "service");

    let err = store.describe("gone").await.expect_err("not found");
    assert!(
        matches!(&err, StoreError::NotFound { name } if name == "gone"),
        "{err:?}"
    );
}

#[tokio::test]
async fn describe_reads_a_recorded_answer_and_its_tags() {
    let server = Server::start(|request| match target(request) {
        "SageMaker.DescribeInferenceExperiment" => {
            Reply::json(200, &fixture("describe_inference_experiment.json"))
        }
        "SageMaker.ListTags" => Reply::json(200, &fixture("list_tags.json")),
        other => Reply::json(
            400,
            &json!({"__type": "UnknownOperationException", "message": other}),
        ),
    });
    let store = sagemaker_at(&server);

    let experiment = store.describe(NAME).await.expect("describe succeeds");

    assert_eq!(experiment.name, NAME);
    assert_eq!(experiment.status, ExperimentStatus::Running);
    assert_eq!(experiment.endpoint_name, "churn-endpoint");
    assert_eq!(
        (
            experiment.production_variant.as_str(),
            experiment.shadow_variant.as_str()
        ),
        ("production", "shadow")
    );
    assert_eq!(experiment.sampling_percentage, 25);
    assert_eq!(experiment.start_time, Some(at("2025-03-01T09:00:00Z")));
    assert_eq!(experiment.end_time, Some(at("2025-03-08T09:00:00Z")));
    assert_eq!(experiment.last_modified, at("2025-03-02T10:15:00.5Z"));
    assert_eq!(
        experiment.tags,
        BTreeMap::from([
            ("empty".to_string(), String::new()),
            ("shadowpilot:policy".to_string(), "careful".to_string()),
            ("team".to_string(), "churn".to_string()),
        ])
    );

    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(target).collect();
    assert_eq!(
        targets,
        vec![
            "SageMaker.DescribeInferenceExperiment",
            "SageMaker.ListTags"
        ]
    );
    assert_eq!(requests[0].json(), json!({"Name": NAME}));
    assert_eq!(
        requests[1].json(),
        json!({"ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/churn-v2-shadow"})
    );
}

#[tokio::test]
async fn list_sends_the_type_filter_and_page_size() {
    let server = Server::start(|request| {
        let body = request.json();
        let page = if body.get("NextToken").is_none() {
            json!({
                "InferenceExperiments": [
                    {"Name": "a", "Type": "ShadowMode", "Status": "Running", "CreationTime": 1740762000, "LastModifiedTime": 1740762000}
                ],
                "NextToken": "p2"
            })
        } else {
            json!({
                "InferenceExperiments": [
                    {"Name": "b", "Type": "ShadowMode", "Status": "Created", "CreationTime": 1740762000, "LastModifiedTime": 1740762000}
                ]
            })
        };
        Reply::json(200, &page)
    });
    let store = sagemaker_at(&server);

    let listed = store.list().await.expect("list succeeds");

    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let bodies: Vec<Value> = server.requests().iter().map(Recorded::json).collect();
    assert_eq!(
        bodies,
        vec![
            json!({"Type": "ShadowMode", "MaxResults": 100}),
            json!({"Type": "ShadowMode", "MaxResults": 100, "NextToken": "p2"}),
        ]
    );
}

#[tokio::test]
async fn get_metric_data_speaks_rpc_v2_cbor() {
    let server = Server::start(|_| {
        let mut body = Cbor::default();
        body.map(1).text("MetricDataResults").array(2);
        body.map(4)
            .text("Id")
            .text("q0_s_lat_p99")
            .text("StatusCode")
            .text("Complete")
            .text("Timestamps")
            .array(1)
            .epoch(1_740_909_600)
            .text("Values")
            .array(1)
            .f64(412_000.5);
        body.map(4)
            .text("Id")
            .text("q1_s_inv_sum")
            .text("StatusCode")
            .text("Complete")
            .text("Timestamps")
            .array(0)
            .text("Values")
            .array(0);
        Reply::cbor(200, body.0)
    });
    let source = cloudwatch_at(&server);
    let window = Window {
        start: at("2025-03-02T10:00:00Z"),
        end: at("2025-03-02T11:00:00Z"),
    };
    let experiment = std::sync::Arc::new(MeasuredExperiment {
        name: "churn-v2-shadow".into(),
        endpoint: "churn-endpoint".into(),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
    });
    let query = |metric: SageMakerMetric, statistic: Statistic| SeriesQuery {
        experiment: experiment.clone(),
        role: VariantRole::Shadow,
        metric,
        statistic,
        window,
        period: std::time::Duration::from_secs(3600),
    };

    let series = source
        .fetch(&[
            query(SageMakerMetric::ModelLatency, Statistic::percentile(99.0)),
            query(SageMakerMetric::Invocations, Statistic::Sum),
        ])
        .await
        .expect("fetch succeeds");

    assert_eq!(series.len(), 2);
    let answered = |index: usize| series[index].as_ref().expect("answered");
    assert_eq!(
        answered(0).iter().collect::<Vec<_>>(),
        vec![(&at("2025-03-02T10:00:00Z"), &412_000.5)]
    );
    assert!(answered(1).is_empty());

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    );
    assert_eq!(request.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(request.header("content-type"), Some("application/cbor"));
    assert_eq!(
        request.header("x-amz-target"),
        None,
        "not the old awsQuery/JSON"
    );
    let metric_stat = |metric: &str, stat: &str| {
        json!({
            "Metric": {
                "Namespace": "AWS/SageMaker",
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": "churn-endpoint"},
                    {"Name": "VariantName", "Value": "shadow"}
                ]
            },
            "Period": 3600,
            "Stat": stat
        })
    };
    assert_eq!(
        cbor_to_json(&request.body),
        json!({
            "MetricDataQueries": [
                {"Id": "q0_s_lat_p99", "MetricStat": metric_stat("ModelLatency", "p99"), "ReturnData": true},
                {"Id": "q1_s_inv_sum", "MetricStat": metric_stat("Invocations", "Sum"), "ReturnData": true}
            ],
            "StartTime": {"$epoch": 1_740_909_600.0},
            "EndTime": {"$epoch": 1_740_913_200.0}
        })
    );
}

const ARN: &str = "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/churn-v2-shadow";

#[tokio::test]
async fn add_and_delete_tags_are_awsjson_requests_on_the_arn() {
    let server = Server::start(|request| match target(request) {
        // AddTags answers the tags it set; DeleteTags an empty object.
        "SageMaker.AddTags" => Reply::json(200, &json!({"Tags": request.json()["Tags"]})),
        "SageMaker.DeleteTags" => Reply::json(200, &json!({})),
        other => Reply::json(
            400,
            &json!({"__type": "UnknownOperationException", "message": other}),
        ),
    });
    let store = sagemaker_at(&server);

    store
        .add_tags(
            ARN,
            &BTreeMap::from([
                (
                    "shadowpilot:step".to_string(),
                    "25@2025-03-02T10:00:00Z".to_string(),
                ),
                ("shadowpilot:since".to_string(), String::new()),
            ]),
        )
        .await
        .expect("AddTags succeeds");
    store
        .delete_tags(
            ARN,
            &BTreeSet::from([
                "shadowpilot:failed".to_string(),
                "shadowpilot:hold".to_string(),
            ]),
        )
        .await
        .expect("DeleteTags succeeds");

    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(target).collect();
    assert_eq!(targets, vec!["SageMaker.AddTags", "SageMaker.DeleteTags"]);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/")
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/x-amz-json-1.1")
        );
    }
    assert_eq!(
        requests[0].json(),
        json!({
            "ResourceArn": ARN,
            "Tags": [
                {"Key": "shadowpilot:since", "Value": ""},
                {"Key": "shadowpilot:step", "Value": "25@2025-03-02T10:00:00Z"}
            ]
        })
    );
    assert_eq!(
        requests[1].json(),
        json!({
            "ResourceArn": ARN,
            "TagKeys": ["shadowpilot:failed", "shadowpilot:hold"]
        })
    );
}

/// What IAM answers when the role's policy does not cover the ARN: the
/// report's error text must carry the message, since it names the resource
/// (policies/iam/README.md tells operators to read it).
#[tokio::test]
async fn a_denied_tag_call_reports_the_operation_and_aws_s_message() {
    let denial = format!(
        "User: arn:aws:sts::123456789012:assumed-role/shadowpilot-role/shadowpilot is not \
         authorized to perform: sagemaker:AddTags on resource: {ARN} because no \
         identity-based policy allows the sagemaker:AddTags action"
    );
    let message = denial.clone();
    let server = Server::start(move |_| {
        Reply::json(
            400,
            &json!({"__type": "AccessDeniedException", "message": message}),
        )
    });
    let store = sagemaker_at(&server);

    let err = store
        .add_tags(
            ARN,
            &BTreeMap::from([(
                "shadowpilot:step".to_string(),
                "25@2025-03-02T10:00:00Z".to_string(),
            )]),
        )
        .await
        .expect_err("denied");
    assert!(
        matches!(
            err,
            StoreError::AccessDenied {
                operation: "AddTags",
                ..
            }
        ),
        "{err:?}"
    );
    let text = error_chain(&err);
    assert!(text.starts_with("SageMaker AddTags was denied"), "{text}");
    assert!(text.contains(&denial), "{text}");

    let err = store
        .delete_tags(ARN, &BTreeSet::from(["shadowpilot:failed".to_string()]))
        .await
        .expect_err("denied");
    assert!(
        matches!(
            err,
            StoreError::AccessDenied {
                operation: "DeleteTags",
                ..
            }
        ),
        "{err:?}"
    );
    // Denied calls are not retried: one request each.
    assert_eq!(server.requests().len(), 2);
}

/// A GetMetricData double that holds every answer a while and counts the
/// requests it holds at once.
#[tokio::test]
async fn at_most_eight_get_metric_data_calls_are_in_flight() {
    const HOLD: std::time::Duration = std::time::Duration::from_millis(250);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let server = Server::start(move |request| {
        let held = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(held, Ordering::SeqCst);
        std::thread::sleep(HOLD);
        let body = cbor_to_json(&request.body);
        let ids: Vec<String> = body["MetricDataQueries"]
            .as_array()
            .expect("queries")
            .iter()
            .map(|q| q["Id"].as_str().expect("an Id").to_string())
            .collect();
        let mut answer = Cbor::default();
        answer.map(1).text("MetricDataResults").array(ids.len());
        for id in &ids {
            answer
                .map(4)
                .text("Id")
                .text(id)
                .text("StatusCode")
                .text("Complete")
                .text("Timestamps")
                .array(0)
                .text("Values")
                .array(0);
        }
        now.fetch_sub(1, Ordering::SeqCst);
        Reply::cbor(200, answer.0)
    });
    let source = cloudwatch_at(&server);
    let experiment = std::sync::Arc::new(MeasuredExperiment {
        name: "churn-v2-shadow".into(),
        endpoint: "churn-endpoint".into(),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
    });
    // A window each, so a call each: 24 calls, three times the limit.
    let queries: Vec<SeriesQuery> = (0..24)
        .map(|minute| {
            let start = at("2025-03-02T10:00:00Z") + chrono::Duration::minutes(minute);
            SeriesQuery {
                experiment: experiment.clone(),
                role: VariantRole::Shadow,
                metric: SageMakerMetric::Invocations,
                statistic: Statistic::Sum,
                window: Window {
                    start,
                    end: start + chrono::Duration::hours(1),
                },
                period: std::time::Duration::from_secs(3600),
            }
        })
        .collect();

    let answers = source.fetch(&queries).await.expect("fetch succeeds");

    assert_eq!(answers.len(), 24);
    assert!(answers
        .iter()
        .all(|a| a.as_ref().is_ok_and(|s| s.is_empty())));
    assert_eq!(server.requests().len(), 24);
    // Never more than 8, and the 8 are used: with every answer held, the
    // first 8 calls all wait at once.
    assert_eq!(most.load(Ordering::SeqCst), 8);
}
