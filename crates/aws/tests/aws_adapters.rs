//! The AWS adapters against mocked SDK clients: the exact requests they
//! build and how they read the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataInput, GetMetricDataOutput};
use aws_sdk_cloudwatch::types::{MessageData, MetricDataResult, StatusCode};
use aws_sdk_sagemaker::operation::describe_inference_experiment::{
    DescribeInferenceExperimentError, DescribeInferenceExperimentOutput,
};
use aws_sdk_sagemaker::operation::list_inference_experiments::ListInferenceExperimentsOutput;
use aws_sdk_sagemaker::operation::list_tags::ListTagsOutput;
use aws_sdk_sagemaker::operation::update_inference_experiment::{
    UpdateInferenceExperimentError, UpdateInferenceExperimentInput, UpdateInferenceExperimentOutput,
};
use aws_sdk_sagemaker::types::error::{ConflictException, ResourceNotFound};
use aws_sdk_sagemaker::types::{
    EndpointMetadata, InferenceExperimentSchedule, InferenceExperimentStatus,
    InferenceExperimentSummary, InferenceExperimentType, ShadowModeConfig,
    ShadowModelVariantConfig, Tag,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime as SmithyTime;
use chrono::{DateTime, Utc};

use shadowpilot_aws::{CloudWatchMessages, CloudWatchSource, GetMetricDataProblem, SageMakerStore};
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentSummary, ExperimentUpdate, SamplingUpdate,
};
use shadowpilot_core::metrics::{
    queries_for, MetricQuery, SageMakerMetric, SeriesKey, Statistic, VariantRole, Window,
};
use shadowpilot_core::ports::{ExperimentStore, MetricError, MetricSource, StoreError};

const NAME: &str = "churn-v2-shadow";
const ARN: &str = "arn:aws:sagemaker:eu-west-1:123456789012:inference-experiment/churn-v2-shadow";

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamps are valid")
        .with_timezone(&Utc)
}

fn smithy(rfc3339: &str) -> SmithyTime {
    SmithyTime::from_secs(at(rfc3339).timestamp())
}

/// Records every input a rule sees, for whole-request assertions.
fn recorder<T>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

// ---------------------------------------------------------------- update

async fn send_update(update: ExperimentUpdate) -> UpdateInferenceExperimentInput {
    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sagemaker::Client::update_inference_experiment)
        .match_requests(|req| req.name() == Some(NAME))
        .then_compute_output(move |req| {
            sink.lock().expect("not poisoned").push(req.clone());
            UpdateInferenceExperimentOutput::builder()
                .inference_experiment_arn(ARN)
                .build()
        });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));

    store.update(&update).await.expect("update succeeds");

    assert_eq!(rule.num_calls(), 1, "exactly one UpdateInferenceExperiment");
    let mut seen = seen.lock().expect("not poisoned");
    seen.pop().expect("the request was recorded")
}

fn sampling_to(percentage: u8) -> SamplingUpdate {
    SamplingUpdate {
        source_variant: "production".into(),
        shadow_variant: "shadow".into(),
        percentage,
    }
}

fn whole_shadow_mode_config(percentage: i32) -> ShadowModeConfig {
    ShadowModeConfig::builder()
        .source_model_variant_name("production")
        .shadow_model_variants(
            ShadowModelVariantConfig::builder()
                .shadow_model_variant_name("shadow")
                .sampling_percentage(percentage)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn sampling_change_sends_the_whole_shadow_mode_config_and_nothing_else() {
    let sent = send_update(ExperimentUpdate {
        name: NAME.into(),
        sampling: Some(sampling_to(25)),
        end_time: None,
    })
    .await;

    assert_eq!(sent.shadow_mode_config, Some(whole_shadow_mode_config(25)));
    assert_eq!(sent.model_variants, None, "ModelVariants must not be sent");
    assert_eq!(
        sent.data_storage_config, None,
        "DataStorageConfig must not be sent"
    );
    assert_eq!(
        sent.schedule, None,
        "no Schedule without an end-time change"
    );
    assert_eq!(sent.description, None);
    // And nothing we did not think of:
    let expected = UpdateInferenceExperimentInput::builder()
        .name(NAME)
        .shadow_mode_config(whole_shadow_mode_config(25))
        .build()
        .expect("valid input");
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn end_time_change_sends_a_schedule_with_only_the_end_time() {
    let end = at("2025-03-20T12:00:00Z");
    let sent = send_update(ExperimentUpdate {
        name: NAME.into(),
        sampling: None,
        end_time: Some(end),
    })
    .await;

    let schedule = sent.schedule.clone().expect("Schedule is sent");
    assert_eq!(
        schedule.start_time, None,
        "StartTime cannot change while Running"
    );
    assert_eq!(schedule.end_time, Some(smithy("2025-03-20T12:00:00Z")));
    assert_eq!(sent.shadow_mode_config, None);
    assert_eq!(sent.model_variants, None);
    assert_eq!(sent.data_storage_config, None);
    let expected = UpdateInferenceExperimentInput::builder()
        .name(NAME)
        .schedule(
            InferenceExperimentSchedule::builder()
                .end_time(smithy("2025-03-20T12:00:00Z"))
                .build(),
        )
        .build()
        .expect("valid input");
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn sampling_and_end_time_go_out_in_one_request() {
    let sent = send_update(ExperimentUpdate {
        name: NAME.into(),
        sampling: Some(sampling_to(100)),
        end_time: Some(at("2025-03-20T12:00:00Z")),
    })
    .await;

    let expected = UpdateInferenceExperimentInput::builder()
        .name(NAME)
        .shadow_mode_config(whole_shadow_mode_config(100))
        .schedule(
            InferenceExperimentSchedule::builder()
                .end_time(smithy("2025-03-20T12:00:00Z"))
                .build(),
        )
        .build()
        .expect("valid input");
    assert_eq!(sent, expected);
}

async fn update_failing_with(
    error: impl Fn() -> UpdateInferenceExperimentError + Send + Sync + 'static,
) -> StoreError {
    let rule = mock!(aws_sdk_sagemaker::Client::update_inference_experiment).then_error(error);
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    store
        .update(&ExperimentUpdate {
            name: NAME.into(),
            sampling: Some(sampling_to(50)),
            end_time: None,
        })
        .await
        .expect_err("the update fails")
}

#[tokio::test]
async fn conflict_exception_becomes_conflict() {
    let err = update_failing_with(|| {
        UpdateInferenceExperimentError::ConflictException(
            ConflictException::builder()
                .message("experiment is Updating")
                .build(),
        )
    })
    .await;
    match err {
        StoreError::Conflict { name, message } => {
            assert_eq!(name, NAME);
            assert_eq!(message, "experiment is Updating");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn resource_not_found_becomes_not_found() {
    let err = update_failing_with(|| {
        UpdateInferenceExperimentError::ResourceNotFound(
            ResourceNotFound::builder()
                .message("no such experiment")
                .build(),
        )
    })
    .await;
    assert!(
        matches!(&err, StoreError::NotFound { name } if name == NAME),
        "{err:?}"
    );
}

#[tokio::test]
async fn validation_exception_becomes_rejected_by_its_code() {
    let err = update_failing_with(|| {
        UpdateInferenceExperimentError::generic(
            ErrorMetadata::builder()
                .code("ValidationException")
                .message("EndTime must be within 30 days of StartTime")
                .build(),
        )
    })
    .await;
    match err {
        StoreError::Rejected { name, message } => {
            assert_eq!(name, NAME);
            assert_eq!(message, "EndTime must be within 30 days of StartTime");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn other_errors_stay_service_errors_with_the_sdk_error_as_source() {
    let err = update_failing_with(|| {
        UpdateInferenceExperimentError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        )
    })
    .await;
    assert_eq!(err.label(), "service");
    assert!(
        matches!(
            err,
            StoreError::Service {
                operation: "UpdateInferenceExperiment",
                ..
            }
        ),
        "{err:?}"
    );
    let source = err.source().expect("the SDK error is kept");
    let sdk = source
        .downcast_ref::<aws_sdk_sagemaker::error::SdkError<
            UpdateInferenceExperimentError,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >>()
        .expect("source is the SDK error itself, not a string");
    let service = sdk.as_service_error().expect("a service error");
    assert_eq!(
        aws_sdk_sagemaker::error::ProvideErrorMetadata::code(service),
        Some("AccessDeniedException")
    );
}

#[tokio::test]
async fn an_empty_update_is_not_sent() {
    // No rule at all: any call would panic in the mock.
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, []));
    store
        .update(&ExperimentUpdate {
            name: NAME.into(),
            sampling: None,
            end_time: None,
        })
        .await
        .expect("nothing to do");
}

// ---------------------------------------------------------------- list

fn summary(name: &str, status: InferenceExperimentStatus) -> InferenceExperimentSummary {
    InferenceExperimentSummary::builder()
        .name(name)
        .r#type(InferenceExperimentType::ShadowMode)
        .status(status)
        .build()
}

#[tokio::test]
async fn list_follows_every_page_with_the_shadow_mode_filter() {
    let is_list_request = |req: &aws_sdk_sagemaker::operation::list_inference_experiments::ListInferenceExperimentsInput,
                           token: Option<&str>| {
        req.r#type() == Some(&InferenceExperimentType::ShadowMode)
            && req.max_results() == Some(100)
            && req.next_token() == token
            && req.status_equals().is_none()
            && req.name_contains().is_none()
    };
    let first = mock!(aws_sdk_sagemaker::Client::list_inference_experiments)
        .match_requests(move |req| is_list_request(req, None))
        .then_output(|| {
            ListInferenceExperimentsOutput::builder()
                .inference_experiments(summary("a", InferenceExperimentStatus::Running))
                .inference_experiments(summary("b", InferenceExperimentStatus::Created))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_sagemaker::Client::list_inference_experiments)
        .match_requests(move |req| is_list_request(req, Some("page-2")))
        .then_output(|| {
            ListInferenceExperimentsOutput::builder()
                .inference_experiments(summary("c", InferenceExperimentStatus::Completed))
                .inference_experiments(summary("d", InferenceExperimentStatus::from("Hibernating")))
                .next_token("page-3")
                .build()
        });
    let third = mock!(aws_sdk_sagemaker::Client::list_inference_experiments)
        .match_requests(move |req| is_list_request(req, Some("page-3")))
        .then_output(|| {
            ListInferenceExperimentsOutput::builder()
                .inference_experiments(summary("e", InferenceExperimentStatus::Running))
                // Not a shadow test, whatever the filter said: skipped.
                .inference_experiments(
                    InferenceExperimentSummary::builder()
                        .name("other-kind")
                        .r#type(InferenceExperimentType::from("SomethingNew"))
                        .status(InferenceExperimentStatus::Running)
                        .build(),
                )
                .build()
        });
    let store = SageMakerStore::new(mock_client!(
        aws_sdk_sagemaker,
        RuleMode::Sequential,
        [&first, &second, &third]
    ));

    let listed = store.list().await.expect("list succeeds");

    let expect = |name: &str, status: ExperimentStatus| ExperimentSummary {
        name: name.into(),
        status,
    };
    assert_eq!(
        listed,
        vec![
            expect("a", ExperimentStatus::Running),
            expect("b", ExperimentStatus::Created),
            expect("c", ExperimentStatus::Completed),
            expect("d", ExperimentStatus::Other("Hibernating".into())),
            expect("e", ExperimentStatus::Running),
        ]
    );
    assert_eq!(
        (first.num_calls(), second.num_calls(), third.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn list_row_without_a_name_is_an_invalid_response() {
    let rule = mock!(aws_sdk_sagemaker::Client::list_inference_experiments).then_output(|| {
        ListInferenceExperimentsOutput::builder()
            .inference_experiments(summary("a", InferenceExperimentStatus::Running))
            .inference_experiments(
                InferenceExperimentSummary::builder()
                    .r#type(InferenceExperimentType::ShadowMode)
                    .status(InferenceExperimentStatus::Running)
                    .build(),
            )
            .build()
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    let err = store.list().await.expect_err("invalid answer");
    assert_invalid(
        &err,
        "ListInferenceExperiments",
        "InferenceExperiments[1].Name",
        "missing",
    );
}

// ---------------------------------------------------------------- describe

fn described() -> DescribeInferenceExperimentOutput {
    DescribeInferenceExperimentOutput::builder()
        .arn(ARN)
        .name(NAME)
        .r#type(InferenceExperimentType::ShadowMode)
        .status(InferenceExperimentStatus::Running)
        .schedule(
            InferenceExperimentSchedule::builder()
                .start_time(smithy("2025-03-01T09:00:00Z"))
                .end_time(smithy("2025-03-08T09:00:00Z"))
                .build(),
        )
        .endpoint_metadata(
            EndpointMetadata::builder()
                .endpoint_name("churn-endpoint")
                .endpoint_config_name("churn-config")
                .build(),
        )
        .shadow_mode_config(
            ShadowModeConfig::builder()
                .source_model_variant_name("production")
                .shadow_model_variants(
                    ShadowModelVariantConfig::builder()
                        .shadow_model_variant_name("shadow")
                        .sampling_percentage(10)
                        .build(),
                )
                .build(),
        )
        .creation_time(smithy("2025-02-28T17:00:00Z"))
        .last_modified_time(SmithyTime::from_secs_and_nanos(
            at("2025-03-02T10:15:00Z").timestamp(),
            500_000_000,
        ))
        .build()
}

fn tags_page(tags: &[(&str, &str)], next: Option<&str>) -> ListTagsOutput {
    let mut page = ListTagsOutput::builder().set_next_token(next.map(str::to_string));
    for (key, value) in tags {
        page = page.tags(Tag::builder().key(*key).value(*value).build());
    }
    page.build()
}

#[tokio::test]
async fn describe_reads_the_experiment_and_all_its_tags() {
    let describe = mock!(aws_sdk_sagemaker::Client::describe_inference_experiment)
        .match_requests(|req| req.name() == Some(NAME))
        .then_output(described);
    let tags_1 = mock!(aws_sdk_sagemaker::Client::list_tags)
        .match_requests(|req| req.resource_arn() == Some(ARN) && req.next_token().is_none())
        .then_output(|| {
            tags_page(
                &[("shadowpilot:policy", "careful"), ("team", "churn")],
                Some("t2"),
            )
        });
    let tags_2 = mock!(aws_sdk_sagemaker::Client::list_tags)
        .match_requests(|req| req.resource_arn() == Some(ARN) && req.next_token() == Some("t2"))
        .then_output(|| tags_page(&[("shadowpilot:hold", "TRUE")], None));
    let store = SageMakerStore::new(mock_client!(
        aws_sdk_sagemaker,
        [&describe, &tags_1, &tags_2]
    ));

    let experiment = store.describe(NAME).await.expect("describe succeeds");

    let expected = Experiment {
        name: NAME.into(),
        arn: ARN.into(),
        status: ExperimentStatus::Running,
        endpoint_name: "churn-endpoint".into(),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
        sampling_percentage: 10,
        start_time: Some(at("2025-03-01T09:00:00Z")),
        end_time: Some(at("2025-03-08T09:00:00Z")),
        last_modified: at("2025-03-02T10:15:00.5Z"),
        tags: BTreeMap::from([
            ("shadowpilot:policy".to_string(), "careful".to_string()),
            ("shadowpilot:hold".to_string(), "TRUE".to_string()),
            ("team".to_string(), "churn".to_string()),
        ]),
    };
    assert_eq!(experiment, expected);
    assert_eq!(experiment.policy_tag(), Some("careful"));
    assert!(experiment.is_held());
    assert_eq!(
        (describe.num_calls(), tags_1.num_calls(), tags_2.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn describe_of_an_unknown_name_is_not_found() {
    let rule = mock!(aws_sdk_sagemaker::Client::describe_inference_experiment).then_error(|| {
        DescribeInferenceExperimentError::ResourceNotFound(ResourceNotFound::builder().build())
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    let err = store.describe(NAME).await.expect_err("not found");
    assert!(
        matches!(&err, StoreError::NotFound { name } if name == NAME),
        "{err:?}"
    );
}

/// Describes `NAME` with a broken answer; ListTags must not be reached (the
/// mock client panics on a request no rule expects).
async fn describe_invalid(answer: DescribeInferenceExperimentOutput) -> StoreError {
    let rule = mock!(aws_sdk_sagemaker::Client::describe_inference_experiment)
        .then_output(move || answer.clone());
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    store.describe(NAME).await.expect_err("invalid answer")
}

#[track_caller]
fn assert_invalid(err: &StoreError, operation: &str, field: &str, problem_contains: &str) {
    match err {
        StoreError::InvalidResponse {
            operation: op,
            field: f,
            problem,
        } => {
            assert_eq!(*op, operation);
            assert_eq!(f, field);
            assert!(
                problem.contains(problem_contains),
                "problem {problem:?} should mention {problem_contains:?}"
            );
        }
        other => panic!("expected InvalidResponse for {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn two_shadow_variants_are_an_invalid_response() {
    let mut answer = described();
    answer.shadow_mode_config = Some(
        ShadowModeConfig::builder()
            .source_model_variant_name("production")
            .shadow_model_variants(
                ShadowModelVariantConfig::builder()
                    .shadow_model_variant_name("shadow-a")
                    .sampling_percentage(10)
                    .build(),
            )
            .shadow_model_variants(
                ShadowModelVariantConfig::builder()
                    .shadow_model_variant_name("shadow-b")
                    .sampling_percentage(20)
                    .build(),
            )
            .build(),
    );
    let err = describe_invalid(answer).await;
    assert_invalid(
        &err,
        "DescribeInferenceExperiment",
        "ShadowModeConfig.ShadowModelVariants",
        "2 variants [\"shadow-a\", \"shadow-b\"], expected exactly one",
    );
}

#[tokio::test]
async fn missing_last_modified_time_is_an_invalid_response() {
    let mut answer = described();
    answer.last_modified_time = None;
    let err = describe_invalid(answer).await;
    assert_invalid(
        &err,
        "DescribeInferenceExperiment",
        "LastModifiedTime",
        "missing",
    );
}

#[tokio::test]
async fn other_odd_describe_answers_name_the_field_and_value() {
    fn shadow_config(percentage: Option<i32>, shadow: &str) -> ShadowModeConfig {
        ShadowModeConfig::builder()
            .source_model_variant_name("production")
            .shadow_model_variants(
                ShadowModelVariantConfig::builder()
                    .shadow_model_variant_name(shadow)
                    .set_sampling_percentage(percentage)
                    .build(),
            )
            .build()
    }
    type Breaker = Box<dyn Fn(&mut DescribeInferenceExperimentOutput)>;
    let cases: Vec<(Breaker, &str, &str)> = vec![
        (
            Box::new(|a| a.shadow_mode_config = Some(shadow_config(Some(150), "shadow"))),
            "ShadowModeConfig.ShadowModelVariants[0].SamplingPercentage",
            "150 is outside 0..=100",
        ),
        (
            Box::new(|a| a.shadow_mode_config = Some(shadow_config(Some(-1), "shadow"))),
            "ShadowModeConfig.ShadowModelVariants[0].SamplingPercentage",
            "-1 is outside 0..=100",
        ),
        (
            Box::new(|a| a.shadow_mode_config = Some(shadow_config(None, "shadow"))),
            "ShadowModeConfig.ShadowModelVariants[0].SamplingPercentage",
            "missing",
        ),
        (
            Box::new(|a| a.shadow_mode_config = Some(shadow_config(Some(5), "production"))),
            "ShadowModeConfig.ShadowModelVariants[0].ShadowModelVariantName",
            "\"production\" is also the source variant",
        ),
        (
            Box::new(|a| {
                a.shadow_mode_config = Some(ShadowModeConfig::builder().build());
            }),
            "ShadowModeConfig.SourceModelVariantName",
            "missing",
        ),
        (
            Box::new(|a| a.shadow_mode_config = None),
            "ShadowModeConfig",
            "missing",
        ),
        (
            Box::new(|a| a.endpoint_metadata = Some(EndpointMetadata::builder().build())),
            "EndpointMetadata.EndpointName",
            "missing",
        ),
        (Box::new(|a| a.arn = None), "Arn", "missing"),
        (Box::new(|a| a.status = None), "Status", "missing"),
        (
            Box::new(|a| a.r#type = Some(InferenceExperimentType::from("Canary"))),
            "Type",
            "\"Canary\" is not ShadowMode",
        ),
        (
            Box::new(|a| a.name = Some("someone-else".into())),
            "Name",
            "\"someone-else\" answers a request for \"churn-v2-shadow\"",
        ),
    ];
    for (breaker, field, problem) in cases {
        let mut answer = described();
        breaker(&mut answer);
        let err = describe_invalid(answer).await;
        assert_invalid(&err, "DescribeInferenceExperiment", field, problem);
    }
}

#[tokio::test]
async fn describe_of_a_created_experiment_without_schedule_is_fine() {
    let mut answer = described();
    answer.status = Some(InferenceExperimentStatus::Created);
    answer.schedule = None;
    answer.shadow_mode_config = Some(whole_shadow_mode_config(0));
    let describe = mock!(aws_sdk_sagemaker::Client::describe_inference_experiment)
        .then_output(move || answer.clone());
    let tags = mock!(aws_sdk_sagemaker::Client::list_tags).then_output(|| tags_page(&[], None));
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&describe, &tags]));

    let experiment = store.describe(NAME).await.expect("describe succeeds");
    assert_eq!(experiment.status, ExperimentStatus::Created);
    assert_eq!((experiment.start_time, experiment.end_time), (None, None));
    assert_eq!(experiment.sampling_percentage, 0);
    assert!(experiment.tags.is_empty());
}

// ---------------------------------------------------------------- GetMetricData

fn window(start: &str, end: &str) -> Window {
    Window {
        start: at(start),
        end: at(end),
    }
}

/// `experiments` experiments × 2 variants × 5 series, as the controller
/// would build them.
fn tick_queries(experiments: usize, window: Window) -> Vec<MetricQuery> {
    let needed: BTreeSet<SeriesKey> = [
        SeriesKey::new(SageMakerMetric::Invocations, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::Invocation5XXErrors, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::InvocationModelErrors, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::ModelLatency, Statistic::percentile(99.0)),
        SeriesKey::new(SageMakerMetric::ModelLatency, Statistic::percentile(99.9)),
    ]
    .into();
    (0..experiments)
        .flat_map(|index| {
            queries_for(
                &format!("e{index}"),
                &format!("endpoint-{index}"),
                [
                    (VariantRole::Production, "production"),
                    (VariantRole::Shadow, "shadow"),
                ],
                &needed,
                window,
            )
            .queries
        })
        .collect()
}

fn complete(id: &str, points: &[(&str, f64)]) -> MetricDataResult {
    MetricDataResult::builder()
        .id(id)
        .status_code(StatusCode::Complete)
        .set_timestamps(Some(points.iter().map(|(t, _)| smithy(t)).collect()))
        .set_values(Some(points.iter().map(|(_, v)| *v).collect()))
        .build()
}

/// Answers each query of a call with one datapoint at the window start whose
/// value is the query's position in the call.
fn echo_answer(req: &GetMetricDataInput) -> GetMetricDataOutput {
    let start = req
        .start_time()
        .cloned()
        .unwrap_or(SmithyTime::from_secs(0));
    let mut out = GetMetricDataOutput::builder();
    for (index, query) in req.metric_data_queries().iter().enumerate() {
        out = out.metric_data_results(
            MetricDataResult::builder()
                .id(query.id().unwrap_or_default())
                .status_code(StatusCode::Complete)
                .timestamps(start)
                .values(index as f64)
                .build(),
        );
    }
    out.build()
}

fn is_valid_query_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[tokio::test]
async fn eleven_hundred_queries_of_one_window_take_three_calls() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T11:00:00Z");
    let queries = tick_queries(110, w);
    assert_eq!(queries.len(), 1_100);

    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        echo_answer(req)
    });
    let source = CloudWatchSource::new(mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&rule]
    ));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    let calls = seen.lock().expect("not poisoned").clone();
    assert_eq!(rule.num_calls(), 3);
    let sizes: Vec<usize> = calls
        .iter()
        .map(|c| c.metric_data_queries().len())
        .collect();
    assert_eq!(sizes, vec![500, 500, 100]);

    let by_id: BTreeMap<&str, &MetricQuery> = queries.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut sent_ids = BTreeSet::new();
    for call in &calls {
        assert_eq!(call.start_time(), Some(&smithy("2025-03-02T10:00:00Z")));
        assert_eq!(call.end_time(), Some(&smithy("2025-03-02T11:00:00Z")));
        assert_eq!(call.next_token(), None);
        assert_eq!(call.max_datapoints(), None);
        let mut call_ids = BTreeSet::new();
        for sent in call.metric_data_queries() {
            let id = sent.id().expect("every query has an id");
            assert!(is_valid_query_id(id), "invalid id {id:?}");
            assert!(call_ids.insert(id), "id {id:?} twice in one call");
            assert!(sent_ids.insert(id.to_string()), "id {id:?} sent twice");
            let built = by_id[id];
            assert_eq!(sent.return_data(), Some(true));
            assert_eq!(sent.expression(), None, "raw MetricStat only");
            assert_eq!(sent.period(), None, "Period belongs in the MetricStat");
            let stat = sent.metric_stat().expect("a MetricStat query");
            assert_eq!(stat.period(), Some(3600));
            assert_eq!(
                stat.stat(),
                Some(built.statistic.cloudwatch_name().as_str())
            );
            assert_eq!(stat.unit(), None);
            let metric = stat.metric().expect("the metric");
            assert_eq!(metric.namespace(), Some("AWS/SageMaker"));
            assert_eq!(metric.metric_name(), Some(built.metric_name.as_str()));
            let dimensions: Vec<(String, String)> = metric
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_string(),
                        d.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            assert_eq!(dimensions, built.dimensions);
        }
    }
    assert_eq!(sent_ids.len(), 1_100);
    // Spot-check one query in full, so the statistic names are pinned too.
    let p999 = calls[0]
        .metric_data_queries()
        .iter()
        .find(|q| q.id() == Some("e0_s_lat_p99_9"))
        .and_then(|q| q.metric_stat())
        .expect("e0's shadow p99.9 latency is in the first call");
    assert_eq!(p999.stat(), Some("p99.9"));
    let dims: Vec<_> = p999
        .metric()
        .map(|m| {
            m.dimensions()
                .iter()
                .map(|d| (d.name(), d.value()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        dims,
        vec![
            (Some("EndpointName"), Some("endpoint-0")),
            (Some("VariantName"), Some("shadow"))
        ]
    );

    assert_eq!(series.len(), 1_100);
    for (query, answered) in queries.iter().zip(&series) {
        assert_eq!(
            answered.id, query.id,
            "one series per query, in query order"
        );
        assert_eq!(answered.points.len(), 1);
        assert_eq!(answered.points.keys().next(), Some(&w.start));
    }
}

#[tokio::test]
async fn two_windows_are_two_calls_with_their_own_times() {
    let early = window("2025-03-02T09:00:00Z", "2025-03-02T10:00:00Z");
    let late = window("2025-03-02T10:30:00Z", "2025-03-02T10:55:00Z");
    let mut queries = tick_queries(1, late);
    for q in tick_queries(1, early) {
        queries.push(MetricQuery {
            id: q.id.replacen("e0", "e1", 1),
            ..q
        });
    }

    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        echo_answer(req)
    });
    let source = CloudWatchSource::new(mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&rule]
    ));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    let calls = seen.lock().expect("not poisoned").clone();
    assert_eq!(calls.len(), 2);
    let mut windows_seen = Vec::new();
    for call in &calls {
        let start = call.start_time().cloned();
        let end = call.end_time().cloned();
        let prefix = if start == Some(smithy("2025-03-02T09:00:00Z")) {
            assert_eq!(end, Some(smithy("2025-03-02T10:00:00Z")));
            "e1_"
        } else {
            assert_eq!(start, Some(smithy("2025-03-02T10:30:00Z")));
            assert_eq!(end, Some(smithy("2025-03-02T10:55:00Z")));
            "e0_"
        };
        windows_seen.push(prefix);
        assert_eq!(call.metric_data_queries().len(), 10);
        for q in call.metric_data_queries() {
            assert!(q.id().is_some_and(|id| id.starts_with(prefix)), "{q:?}");
            let expected_period = if prefix == "e1_" { 3600 } else { 1500 };
            assert_eq!(
                q.metric_stat().and_then(|s| s.period()),
                Some(expected_period)
            );
        }
    }
    windows_seen.sort();
    assert_eq!(windows_seen, vec!["e0_", "e1_"]);
    for (query, answered) in queries.iter().zip(&series) {
        assert_eq!(answered.id, query.id);
        assert_eq!(answered.points.keys().next(), Some(&query.window.start));
    }
}

fn simple_query(id: &str, w: Window) -> MetricQuery {
    MetricQuery {
        id: id.into(),
        namespace: "AWS/SageMaker".into(),
        metric_name: "Invocations".into(),
        dimensions: vec![
            ("EndpointName".into(), "ep".into()),
            ("VariantName".into(), "shadow".into()),
        ],
        statistic: Statistic::Sum,
        period_seconds: 60,
        window: w,
    }
}

#[tokio::test]
async fn next_token_pages_are_merged_per_id_and_silent_queries_stay_empty() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let queries = vec![
        simple_query("busy", w),
        simple_query("quiet", w),
        simple_query("absent", w),
    ];
    let page_1 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| req.next_token().is_none() && req.metric_data_queries().len() == 3)
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("busy")
                        .status_code(StatusCode::PartialData)
                        .timestamps(smithy("2025-03-02T10:04:00Z"))
                        .timestamps(smithy("2025-03-02T10:03:00Z"))
                        .values(7.0)
                        .values(5.0)
                        .build(),
                )
                .metric_data_results(complete("quiet", &[]))
                .next_token("more")
                .build()
        });
    let page_2 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| {
            req.next_token() == Some("more")
                && req.start_time() == Some(&smithy("2025-03-02T10:00:00Z"))
                && req.metric_data_queries().len() == 3
        })
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(complete(
                    "busy",
                    &[("2025-03-02T10:01:00Z", 3.0), ("2025-03-02T10:00:00Z", 0.0)],
                ))
                .build()
        });
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&page_1, &page_2]));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    assert_eq!((page_1.num_calls(), page_2.num_calls()), (1, 1));
    let busy: Vec<(DateTime<Utc>, f64)> = series[0].points.iter().map(|(t, v)| (*t, *v)).collect();
    assert_eq!(series[0].id, "busy");
    assert_eq!(
        busy,
        vec![
            (at("2025-03-02T10:00:00Z"), 0.0),
            (at("2025-03-02T10:01:00Z"), 3.0),
            (at("2025-03-02T10:03:00Z"), 5.0),
            (at("2025-03-02T10:04:00Z"), 7.0),
        ]
    );
    assert_eq!(series[1].id, "quiet");
    assert!(
        series[1].points.is_empty(),
        "no datapoints is empty, not zero"
    );
    assert_eq!(series[2].id, "absent");
    assert!(series[2].points.is_empty());
}

#[tokio::test]
async fn no_queries_make_no_call() {
    // No rule at all: any call would panic in the mock.
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, []));
    assert_eq!(source.fetch(&[]).await.expect("nothing to fetch"), vec![]);
}

async fn fetch_answered_with(output: GetMetricDataOutput) -> MetricError {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let rule =
        mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(move || output.clone());
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&rule]));
    source
        .fetch(&[simple_query("a", w), simple_query("b", w)])
        .await
        .expect_err("the answer is unusable")
}

fn problem_of(err: &MetricError) -> &GetMetricDataProblem {
    assert!(matches!(err, MetricError::Service { .. }), "{err:?}");
    err.source()
        .and_then(|s| s.downcast_ref::<GetMetricDataProblem>())
        .unwrap_or_else(|| panic!("expected a GetMetricDataProblem source in {err:?}"))
}

fn message(code: &str, value: &str) -> MessageData {
    MessageData::builder().code(code).value(value).build()
}

#[tokio::test]
async fn forbidden_and_internal_error_fail_the_fetch_naming_the_query() {
    for status in [StatusCode::Forbidden, StatusCode::InternalError] {
        let err = fetch_answered_with(
            GetMetricDataOutput::builder()
                .metric_data_results(complete("a", &[("2025-03-02T10:00:00Z", 1.0)]))
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("b")
                        .status_code(status.clone())
                        .messages(message("AccessDenied", "cross-account access"))
                        .build(),
                )
                .build(),
        )
        .await;
        let expected = GetMetricDataProblem::QueryFailed {
            id: "b".into(),
            status: status.as_str().into(),
            messages: CloudWatchMessages(vec![(
                "AccessDenied".into(),
                "cross-account access".into(),
            )]),
        };
        assert_eq!(problem_of(&err), &expected);
        assert_eq!(
            expected.to_string(),
            format!(
                "query b came back with status {}: AccessDenied: cross-account access",
                status.as_str()
            )
        );
    }
}

#[tokio::test]
async fn messages_fail_the_fetch() {
    let err = fetch_answered_with(
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id("a")
                    .status_code(StatusCode::Complete)
                    .messages(message("ArithmeticError", "division by zero"))
                    .build(),
            )
            .build(),
    )
    .await;
    assert!(matches!(
        problem_of(&err),
        GetMetricDataProblem::QueryMessages { id, .. } if id == "a"
    ));

    let err = fetch_answered_with(
        GetMetricDataOutput::builder()
            .messages(message("MaxMetricsExceeded", "too many metrics"))
            .build(),
    )
    .await;
    assert_eq!(
        problem_of(&err).to_string(),
        "GetMetricData answered with messages, so some queries may be incomplete: MaxMetricsExceeded: too many metrics"
    );
}

#[tokio::test]
async fn partial_data_without_a_next_page_fails_the_fetch() {
    let err = fetch_answered_with(
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id("a")
                    .status_code(StatusCode::PartialData)
                    .build(),
            )
            .build(),
    )
    .await;
    assert_eq!(
        problem_of(&err),
        &GetMetricDataProblem::Incomplete { id: "a".into() }
    );
}

#[tokio::test]
async fn malformed_results_are_invalid_responses() {
    let cases = [
        (
            MetricDataResult::builder()
                .id("a")
                .status_code(StatusCode::Complete)
                .timestamps(smithy("2025-03-02T10:00:00Z"))
                .build(),
            "MetricDataResults[0].Values",
            "0 values for 1 timestamps of a",
        ),
        (
            MetricDataResult::builder()
                .id("zzz")
                .status_code(StatusCode::Complete)
                .build(),
            "MetricDataResults[0].Id",
            "\"zzz\" was not asked for",
        ),
        (
            MetricDataResult::builder()
                .status_code(StatusCode::Complete)
                .build(),
            "MetricDataResults[0].Id",
            "missing",
        ),
        (
            MetricDataResult::builder().id("a").build(),
            "MetricDataResults[0].StatusCode",
            "missing for a",
        ),
    ];
    for (result, field, problem) in cases {
        let err = fetch_answered_with(
            GetMetricDataOutput::builder()
                .metric_data_results(result)
                .build(),
        )
        .await;
        match err {
            MetricError::InvalidResponse {
                field: f,
                problem: p,
            } => {
                assert_eq!(f, field);
                assert_eq!(p, problem);
            }
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sdk_errors_keep_their_source() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
        aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::InvalidNextToken(
            aws_sdk_cloudwatch::types::error::InvalidNextToken::builder()
                .message("stale token")
                .build(),
        )
    });
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&rule]));
    let err = source
        .fetch(&[simple_query("a", w)])
        .await
        .expect_err("the call fails");
    let sdk = err
        .source()
        .and_then(|s| {
            s.downcast_ref::<aws_sdk_cloudwatch::error::SdkError<
                aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >>()
        })
        .expect("the SDK error is the source");
    assert!(sdk
        .as_service_error()
        .is_some_and(|e| e.is_invalid_next_token()));
}
