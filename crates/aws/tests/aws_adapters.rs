//! The AWS adapters against mocked SDK clients: the exact requests they
//! build and how they read the answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataInput, GetMetricDataOutput};
use aws_sdk_cloudwatch::types::{MessageData, MetricDataQuery, MetricDataResult, StatusCode};
use aws_sdk_sagemaker::operation::add_tags::{AddTagsError, AddTagsInput, AddTagsOutput};
use aws_sdk_sagemaker::operation::delete_tags::{
    DeleteTagsError, DeleteTagsInput, DeleteTagsOutput,
};
use aws_sdk_sagemaker::operation::describe_inference_experiment::{
    DescribeInferenceExperimentError, DescribeInferenceExperimentOutput,
};
use aws_sdk_sagemaker::operation::list_inference_experiments::ListInferenceExperimentsOutput;
use aws_sdk_sagemaker::operation::list_tags::ListTagsOutput;
use aws_sdk_sagemaker::operation::stop_inference_experiment::{
    StopInferenceExperimentError, StopInferenceExperimentInput, StopInferenceExperimentOutput,
};
use aws_sdk_sagemaker::operation::update_inference_experiment::{
    UpdateInferenceExperimentError, UpdateInferenceExperimentInput, UpdateInferenceExperimentOutput,
};
use aws_sdk_sagemaker::types::error::{ConflictException, ResourceNotFound};
use aws_sdk_sagemaker::types::{
    EndpointMetadata, InferenceExperimentDataStorageConfig, InferenceExperimentSchedule,
    InferenceExperimentStatus, InferenceExperimentStopDesiredState, InferenceExperimentSummary,
    InferenceExperimentType, ModelVariantAction, ShadowModeConfig, ShadowModelVariantConfig, Tag,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime as SmithyTime;
use chrono::{DateTime, Utc};

use shadowpilot_aws::{CloudWatchMessages, CloudWatchSource, GetMetricDataProblem, SageMakerStore};
use shadowpilot_core::experiment::{
    CaptureConfig, Experiment, ExperimentStatus, ExperimentStop, ExperimentSummary,
    ExperimentUpdate, SamplingUpdate, StopState, VariantAction,
};
use shadowpilot_core::metrics::{
    queries_for, MeasuredExperiment, SageMakerMetric, SeriesKey, SeriesQuery, Statistic,
    VariantRole, Window,
};
use shadowpilot_core::ports::{
    ExperimentStore, MetricError, MetricSource, SeriesAnswer, StoreError,
};
use shadowpilot_core::report::ErrorKind;

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

// ---------------------------------------------------------------- stop

fn promotion() -> ExperimentStop {
    ExperimentStop {
        name: NAME.into(),
        variant_actions: BTreeMap::from([
            ("production".to_string(), VariantAction::Remove),
            ("shadow".to_string(), VariantAction::Promote),
        ]),
        desired_state: StopState::Completed,
        reason: "shadowpilot: passing at 100 % for 6h (promote after 6h)".into(),
    }
}

#[tokio::test]
async fn a_stop_sends_every_variant_action_the_desired_state_and_the_reason() {
    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sagemaker::Client::stop_inference_experiment)
        .match_requests(|req| req.name() == Some(NAME))
        .then_compute_output(move |req| {
            sink.lock().expect("not poisoned").push(req.clone());
            StopInferenceExperimentOutput::builder()
                .inference_experiment_arn(ARN)
                .build()
        });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));

    store.stop(&promotion()).await.expect("the stop succeeds");

    assert_eq!(rule.num_calls(), 1, "exactly one StopInferenceExperiment");
    let sent: StopInferenceExperimentInput =
        seen.lock().expect("not poisoned").pop().expect("recorded");
    let expected = StopInferenceExperimentInput::builder()
        .name(NAME)
        .model_variant_actions("production", ModelVariantAction::Remove)
        .model_variant_actions("shadow", ModelVariantAction::Promote)
        .desired_state(InferenceExperimentStopDesiredState::Completed)
        .reason("shadowpilot: passing at 100 % for 6h (promote after 6h)")
        .build()
        .expect("a valid input");
    // No DesiredModelVariants: the variants keep their infrastructure.
    assert_eq!(sent, expected);
    assert!(sent.desired_model_variants.is_none());
}

#[tokio::test]
async fn a_removal_is_cancelled_with_the_shadow_removed() {
    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sagemaker::Client::stop_inference_experiment).then_compute_output(
        move |req| {
            sink.lock().expect("not poisoned").push(req.clone());
            StopInferenceExperimentOutput::builder().build()
        },
    );
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    let removal = ExperimentStop {
        variant_actions: BTreeMap::from([
            ("production".to_string(), VariantAction::Retain),
            ("shadow".to_string(), VariantAction::Remove),
        ]),
        desired_state: StopState::Cancelled,
        ..promotion()
    };
    store.stop(&removal).await.expect("the stop succeeds");
    let sent: StopInferenceExperimentInput =
        seen.lock().expect("not poisoned").pop().expect("recorded");
    let actions: BTreeMap<String, ModelVariantAction> = sent
        .model_variant_actions()
        .expect("variant actions sent")
        .clone()
        .into_iter()
        .collect();
    assert_eq!(
        actions,
        BTreeMap::from([
            ("production".to_string(), ModelVariantAction::Retain),
            ("shadow".to_string(), ModelVariantAction::Remove),
        ])
    );
    assert_eq!(
        sent.desired_state(),
        Some(&InferenceExperimentStopDesiredState::Cancelled)
    );
}

#[tokio::test]
async fn a_refused_stop_is_typed_like_an_update() {
    let conflict = mock!(aws_sdk_sagemaker::Client::stop_inference_experiment).then_error(|| {
        StopInferenceExperimentError::ConflictException(
            ConflictException::builder()
                .message("experiment is Stopping")
                .build(),
        )
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&conflict]));
    let err = store.stop(&promotion()).await.expect_err("refused");
    assert!(
        matches!(&err, StoreError::Conflict { name, message } if name == NAME && message == "experiment is Stopping"),
        "{err:?}"
    );

    let denied = mock!(aws_sdk_sagemaker::Client::stop_inference_experiment).then_error(|| {
        StopInferenceExperimentError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: sagemaker:StopInferenceExperiment")
                .build(),
        )
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&denied]));
    let err = store.stop(&promotion()).await.expect_err("denied");
    assert!(
        matches!(
            &err,
            StoreError::AccessDenied {
                operation: "StopInferenceExperiment",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(ErrorKind::of_store_error(&err), ErrorKind::AccessDenied);
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
async fn denied_calls_are_access_denied_with_the_sdk_error_as_source() {
    let err = update_failing_with(|| {
        UpdateInferenceExperimentError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        )
    })
    .await;
    assert_eq!(ErrorKind::of_store_error(&err).as_str(), "access_denied");
    assert!(
        matches!(
            err,
            StoreError::AccessDenied {
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

/// Throttling after the last retry, and codes nothing reacts to, keep the
/// SDK error as their source; only the label differs.
#[tokio::test]
async fn throttling_and_other_codes_are_told_apart() {
    for (code, label) in [
        ("ThrottlingException", "throttled"),
        ("TooManyRequestsException", "throttled"),
        ("AccessDenied", "access_denied"),
        ("InternalFailure", "service"),
        ("SomethingNew", "service"),
    ] {
        let err = update_failing_with(move || {
            UpdateInferenceExperimentError::generic(
                ErrorMetadata::builder().code(code).message("no").build(),
            )
        })
        .await;
        assert_eq!(
            ErrorKind::of_store_error(&err).as_str(),
            label,
            "{code}: {err:?}"
        );
        assert!(err.source().is_some(), "{code}: the SDK error is kept");
    }
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
        .data_storage_config(
            InferenceExperimentDataStorageConfig::builder()
                .destination("s3://churn-capture/shadow-tests")
                .kms_key("alias/capture")
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
        capture: Some(CaptureConfig {
            destination: "s3://churn-capture/shadow-tests".into(),
            kms_key: Some("alias/capture".into()),
        }),
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

// ---------------------------------------------------------------- tags

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn keys(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Sends `wanted` through AddTags and returns the one request made.
async fn send_add_tags(wanted: &BTreeMap<String, String>) -> AddTagsInput {
    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sagemaker::Client::add_tags).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        AddTagsOutput::builder().build()
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));

    store.add_tags(ARN, wanted).await.expect("AddTags succeeds");

    assert_eq!(rule.num_calls(), 1, "exactly one AddTags");
    let mut seen = seen.lock().expect("not poisoned");
    seen.pop().expect("the request was recorded")
}

#[tokio::test]
async fn add_tags_sends_the_arn_and_every_tag_as_given() {
    let wanted = tags(&[
        ("shadowpilot:step", "25@2025-03-02T10:00:00Z"),
        ("shadowpilot:failed", "latency_p99@2025-03-02T11:00:00Z"),
        // AWS allows an empty value; it is sent as one, not left out.
        ("shadowpilot:since", ""),
    ]);
    let sent = send_add_tags(&wanted).await;

    let expected = AddTagsInput::builder()
        .resource_arn(ARN)
        .tags(
            Tag::builder()
                .key("shadowpilot:failed")
                .value("latency_p99@2025-03-02T11:00:00Z")
                .build(),
        )
        .tags(Tag::builder().key("shadowpilot:since").value("").build())
        .tags(
            Tag::builder()
                .key("shadowpilot:step")
                .value("25@2025-03-02T10:00:00Z")
                .build(),
        )
        .build()
        .expect("valid input");
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn tags_at_the_limits_are_sent() {
    // Characters, not bytes: 128 two-byte characters are a valid key.
    let key = "é".repeat(128);
    let value = "v".repeat(256);
    let mut wanted = tags(&[(key.as_str(), value.as_str())]);
    for n in 1..50 {
        wanted.insert(format!("shadowpilot:k{n}"), String::new());
    }
    assert_eq!(wanted.len(), 50);
    let sent = send_add_tags(&wanted).await;
    assert_eq!(sent.resource_arn(), Some(ARN));
    assert_eq!(sent.tags().len(), 50);
    assert!(sent
        .tags()
        .iter()
        .any(|t| t.key() == Some(key.as_str()) && t.value() == Some(value.as_str())));
}

#[tokio::test]
async fn delete_tags_sends_the_arn_and_every_key() {
    let seen = recorder();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sagemaker::Client::delete_tags).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        DeleteTagsOutput::builder().build()
    });
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));

    store
        .delete_tags(ARN, &keys(&["shadowpilot:since", "shadowpilot:failed"]))
        .await
        .expect("DeleteTags succeeds");

    assert_eq!(rule.num_calls(), 1, "exactly one DeleteTags");
    let sent = seen.lock().expect("not poisoned").pop().expect("recorded");
    let expected = DeleteTagsInput::builder()
        .resource_arn(ARN)
        .tag_keys("shadowpilot:failed")
        .tag_keys("shadowpilot:since")
        .build()
        .expect("valid input");
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn no_tags_to_add_or_delete_send_nothing() {
    // No rule at all: any call would panic in the mock.
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, []));
    store
        .add_tags(ARN, &BTreeMap::new())
        .await
        .expect("nothing to add");
    store
        .delete_tags(ARN, &BTreeSet::new())
        .await
        .expect("nothing to delete");
}

#[track_caller]
fn assert_rejected_locally(err: StoreError, message_contains: &[&str]) {
    match err {
        StoreError::Rejected { name, message } => {
            assert_eq!(name, ARN, "the error names the ARN the call was for");
            for part in message_contains {
                assert!(
                    message.contains(part),
                    "message {message:?} should mention {part:?}"
                );
            }
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn tags_over_aws_limits_are_rejected_without_a_call() {
    // No rule at all: any call would panic in the mock.
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, []));

    let long_key = format!("shadowpilot:{}", "k".repeat(117));
    assert_eq!(long_key.chars().count(), 129);
    let err = store
        .add_tags(ARN, &tags(&[("shadowpilot:ok", "1"), (&long_key, "1")]))
        .await
        .expect_err("key too long");
    assert_rejected_locally(
        err,
        &[
            &format!("{long_key:?}"),
            "129 characters",
            "1 to 128",
            "AddTags not sent",
        ],
    );

    let long_value = "v".repeat(257);
    let err = store
        .add_tags(ARN, &tags(&[("shadowpilot:steps", &long_value)]))
        .await
        .expect_err("value too long");
    assert_rejected_locally(
        err,
        &["\"shadowpilot:steps\"", "257 characters", "at most 256"],
    );

    let err = store
        .add_tags(ARN, &tags(&[("", "1")]))
        .await
        .expect_err("empty key");
    assert_rejected_locally(err, &["tag key \"\" is 0 characters"]);

    let many: BTreeMap<String, String> = (0..51)
        .map(|n| (format!("shadowpilot:k{n}"), String::new()))
        .collect();
    let err = store.add_tags(ARN, &many).await.expect_err("too many");
    assert_rejected_locally(err, &["51 tags", "AddTags takes at most 50"]);

    let err = store
        .delete_tags(ARN, &keys(&[&long_key]))
        .await
        .expect_err("key too long");
    assert_rejected_locally(
        err,
        &[
            &format!("{long_key:?}"),
            "129 characters",
            "DeleteTags not sent",
        ],
    );
    let many: BTreeSet<String> = many.into_keys().collect();
    let err = store.delete_tags(ARN, &many).await.expect_err("too many");
    assert_rejected_locally(err, &["51 tags", "DeleteTags takes at most 50"]);
}

fn wire_error(code: &'static str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message("User: arn:aws:sts::123456789012:assumed-role/shadowpilot/x is not authorized")
        .build()
}

async fn add_tags_failing_with(code: &'static str) -> StoreError {
    let rule = mock!(aws_sdk_sagemaker::Client::add_tags)
        .then_error(move || AddTagsError::generic(wire_error(code)));
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    let err = store
        .add_tags(
            ARN,
            &tags(&[("shadowpilot:step", "25@2025-03-02T10:00:00Z")]),
        )
        .await
        .expect_err("AddTags fails");
    // Sent, not refused locally (the SDK retries a throttle, so maybe more
    // than once).
    assert!(rule.num_calls() >= 1);
    err
}

async fn delete_tags_failing_with(code: &'static str) -> StoreError {
    let rule = mock!(aws_sdk_sagemaker::Client::delete_tags)
        .then_error(move || DeleteTagsError::generic(wire_error(code)));
    let store = SageMakerStore::new(mock_client!(aws_sdk_sagemaker, [&rule]));
    let err = store
        .delete_tags(ARN, &keys(&["shadowpilot:failed"]))
        .await
        .expect_err("DeleteTags fails");
    assert!(rule.num_calls() >= 1);
    err
}

#[tokio::test]
async fn denied_tag_calls_are_access_denied_naming_the_operation() {
    let err = add_tags_failing_with("AccessDeniedException").await;
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
    let sdk = err
        .source()
        .and_then(|s| {
            s.downcast_ref::<aws_sdk_sagemaker::error::SdkError<
                AddTagsError,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >>()
        })
        .expect("the SDK error is the source");
    assert_eq!(
        sdk.as_service_error()
            .and_then(aws_sdk_sagemaker::error::ProvideErrorMetadata::code),
        Some("AccessDeniedException")
    );

    let err = delete_tags_failing_with("AccessDeniedException").await;
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
}

#[tokio::test]
async fn tag_call_failures_are_classified_like_the_others() {
    for (code, label) in [
        ("ThrottlingException", "throttled"),
        ("AccessDenied", "access_denied"),
        ("ValidationException", "rejected"),
        ("ResourceNotFound", "not_found"),
        ("InternalFailure", "service"),
    ] {
        for err in [
            add_tags_failing_with(code).await,
            delete_tags_failing_with(code).await,
        ] {
            assert_eq!(
                ErrorKind::of_store_error(&err).as_str(),
                label,
                "{code}: {err:?}"
            );
        }
    }
    let err = add_tags_failing_with("ThrottlingException").await;
    assert!(
        matches!(
            err,
            StoreError::Throttled {
                operation: "AddTags",
                ..
            }
        ),
        "{err:?}"
    );
    let err = delete_tags_failing_with("ThrottlingException").await;
    assert!(
        matches!(
            err,
            StoreError::Throttled {
                operation: "DeleteTags",
                ..
            }
        ),
        "{err:?}"
    );
    let err = add_tags_failing_with("ValidationException").await;
    assert!(
        matches!(&err, StoreError::Rejected { name, .. } if name == ARN),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- GetMetricData

fn window(start: &str, end: &str) -> Window {
    Window {
        start: at(start),
        end: at(end),
    }
}

fn measured(endpoint: &str) -> Arc<MeasuredExperiment> {
    Arc::new(MeasuredExperiment {
        name: format!("{endpoint}-experiment"),
        endpoint: endpoint.into(),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
    })
}

/// `experiments` experiments × 2 variants × 5 series, as the controller
/// would build them.
fn tick_queries(experiments: usize, window: Window) -> Vec<SeriesQuery> {
    tick_queries_of("endpoint", experiments, window)
}

/// As [`tick_queries`], for endpoints `<prefix>-<n>`.
fn tick_queries_of(prefix: &str, experiments: usize, window: Window) -> Vec<SeriesQuery> {
    let needed: BTreeSet<SeriesKey> = [
        SeriesKey::new(SageMakerMetric::Invocations, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::Invocation5XXErrors, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::InvocationModelErrors, Statistic::Sum),
        SeriesKey::new(SageMakerMetric::ModelLatency, Statistic::percentile(99.0)),
        SeriesKey::new(SageMakerMetric::ModelLatency, Statistic::percentile(99.9)),
    ]
    .into();
    (0..experiments)
        .flat_map(|index| queries_for(measured(&format!("{prefix}-{index}")), &needed, window))
        .collect()
}

/// What CloudWatch must receive for the metrics these tests ask for,
/// spelled out here rather than taken from the adapter, so a wrong name
/// fails the test.
const METRIC_NAMES: [(SageMakerMetric, &str); 5] = [
    (SageMakerMetric::Invocations, "Invocations"),
    (SageMakerMetric::Invocation4XXErrors, "Invocation4XXErrors"),
    (SageMakerMetric::Invocation5XXErrors, "Invocation5XXErrors"),
    (
        SageMakerMetric::InvocationModelErrors,
        "InvocationModelErrors",
    ),
    (SageMakerMetric::ModelLatency, "ModelLatency"),
];

fn expected_metric_name(metric: SageMakerMetric) -> &'static str {
    METRIC_NAMES
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, name)| *name)
        .unwrap_or_else(|| panic!("no expectation written for {metric:?}"))
}

fn expected_stat(statistic: Statistic) -> &'static str {
    match statistic {
        Statistic::Sum => "Sum",
        Statistic::PercentileTenths(990) => "p99",
        Statistic::PercentileTenths(999) => "p99.9",
        other => panic!("no expectation written for {other:?}"),
    }
}

/// (EndpointName, VariantName, MetricName, Stat) of a query as sent.
type SentSeries = (String, String, String, String);

fn sent_series(query: &MetricDataQuery) -> SentSeries {
    let stat = query.metric_stat().expect("a MetricStat query");
    let metric = stat.metric().expect("the metric");
    let dimension = |name: &str| {
        metric
            .dimensions()
            .iter()
            .find(|d| d.name() == Some(name))
            .and_then(|d| d.value())
            .unwrap_or_default()
            .to_string()
    };
    (
        dimension("EndpointName"),
        dimension("VariantName"),
        metric.metric_name().unwrap_or_default().to_string(),
        stat.stat().unwrap_or_default().to_string(),
    )
}

fn expected_series(query: &SeriesQuery) -> SentSeries {
    (
        query.experiment.endpoint.clone(),
        query.variant().to_string(),
        expected_metric_name(query.metric).to_string(),
        expected_stat(query.statistic).to_string(),
    )
}

/// Answers each query of a call with one datapoint at the call's start
/// whose value is the position of that series in `queries`, found from what
/// was sent, so the test sees where each answer was routed.
fn answer_by_series(
    queries: &[SeriesQuery],
) -> impl Fn(&GetMetricDataInput) -> GetMetricDataOutput + Send + Sync + 'static {
    let positions: HashMap<SentSeries, usize> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (expected_series(q), i))
        .collect();
    assert_eq!(positions.len(), queries.len(), "test queries are distinct");
    move |req| {
        let start = req
            .start_time()
            .cloned()
            .unwrap_or(SmithyTime::from_secs(0));
        let mut out = GetMetricDataOutput::builder();
        for query in req.metric_data_queries() {
            let position = positions
                .get(&sent_series(query))
                .unwrap_or_else(|| panic!("asked for a series nobody wanted: {query:?}"));
            out = out.metric_data_results(
                MetricDataResult::builder()
                    .id(query.id().unwrap_or_default())
                    .status_code(StatusCode::Complete)
                    .timestamps(start)
                    .values(*position as f64)
                    .build(),
            );
        }
        out.build()
    }
}

fn complete(id: &str, points: &[(&str, f64)]) -> MetricDataResult {
    MetricDataResult::builder()
        .id(id)
        .status_code(StatusCode::Complete)
        .set_timestamps(Some(points.iter().map(|(t, _)| smithy(t)).collect()))
        .set_values(Some(points.iter().map(|(_, v)| *v).collect()))
        .build()
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
    let answer = answer_by_series(&queries);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        answer(req)
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

    let wanted: BTreeSet<SentSeries> = queries.iter().map(expected_series).collect();
    let mut sent_ids = BTreeSet::new();
    let mut sent_series_seen = BTreeSet::new();
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
            assert_eq!(sent.return_data(), Some(true));
            assert_eq!(sent.expression(), None, "raw MetricStat only");
            assert_eq!(sent.period(), None, "Period belongs in the MetricStat");
            let stat = sent.metric_stat().expect("a MetricStat query");
            assert_eq!(stat.period(), Some(3600));
            assert_eq!(stat.unit(), None);
            let metric = stat.metric().expect("the metric");
            assert_eq!(metric.namespace(), Some("AWS/SageMaker"));
            let dimension_names: Vec<_> = metric.dimensions().iter().map(|d| d.name()).collect();
            assert_eq!(
                dimension_names,
                vec![Some("EndpointName"), Some("VariantName")]
            );
            let series = sent_series(sent);
            assert!(wanted.contains(&series), "nobody asked for {series:?}");
            assert!(
                sent_series_seen.insert(series.clone()),
                "{series:?} sent twice"
            );
        }
    }
    assert_eq!(sent_ids.len(), 1_100);
    assert_eq!(sent_series_seen, wanted, "every query was sent");
    // One query in full, so names, dimensions and the id scheme are pinned.
    let position = queries
        .iter()
        .position(|q| {
            q.experiment.endpoint == "endpoint-0"
                && q.role == VariantRole::Shadow
                && q.statistic == Statistic::percentile(99.9)
        })
        .expect("e0's shadow p99.9 latency is asked for");
    let p999 = calls[0]
        .metric_data_queries()
        .iter()
        .find(|q| q.id() == Some(format!("q{position}_s_lat_p99_9").as_str()))
        .expect("e0's shadow p99.9 latency is in the first call");
    assert_eq!(
        sent_series(p999),
        (
            "endpoint-0".to_string(),
            "shadow".to_string(),
            "ModelLatency".to_string(),
            "p99.9".to_string()
        )
    );

    assert_eq!(series.len(), 1_100);
    for (position, answered) in series.iter().enumerate() {
        assert_eq!(
            ok(answered).iter().collect::<Vec<_>>(),
            vec![(&w.start, &(position as f64))],
            "the answer to query {position} is its own"
        );
    }
}

/// How many datapoints a call can answer, read from the request itself:
/// ceil((EndTime − StartTime) / Period) summed over its queries.
fn call_datapoints(call: &GetMetricDataInput) -> u64 {
    let start = call.start_time().expect("StartTime").secs();
    let end = call.end_time().expect("EndTime").secs();
    let span = u64::try_from(end - start).expect("EndTime after StartTime");
    call.metric_data_queries()
        .iter()
        .map(|q| {
            let period = q.metric_stat().and_then(|s| s.period()).expect("a Period");
            span.div_ceil(u64::try_from(period).expect("a positive Period"))
        })
        .sum()
}

#[tokio::test]
async fn long_series_are_cut_into_calls_of_at_most_100_800_datapoints_in_order() {
    let minute = Duration::from_secs(60);
    // A week of minutes is 10,080 datapoints a query: 10 to a call.
    let week = window("2025-03-01T00:00:00Z", "2025-03-08T00:00:00Z");
    let weekly: Vec<SeriesQuery> = tick_queries_of("weekly", 12, week)
        .into_iter()
        .map(|q| SeriesQuery {
            period: minute,
            ..q
        })
        .collect();
    // An hour read as one period is one datapoint: 500 to a call.
    let hour = window("2025-03-08T09:00:00Z", "2025-03-08T10:00:00Z");
    let hourly = tick_queries_of("hourly", 60, hour);
    assert_eq!((weekly.len(), hourly.len()), (120, 600));
    // Interleaved, so each call gathers its queries from all over the slice
    // and the answers must find their way back.
    let mut queries = Vec::new();
    let mut hourly = hourly.into_iter();
    for q in weekly {
        queries.push(q);
        queries.extend(hourly.by_ref().take(5));
    }
    assert_eq!(queries.len(), 720);

    let seen = recorder();
    let sink = seen.clone();
    let answer = answer_by_series(&queries);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        answer(req)
    });
    let source = CloudWatchSource::new(mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&rule]
    ));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    let calls = seen.lock().expect("not poisoned").clone();
    let mut shapes: Vec<(usize, u64)> = calls
        .iter()
        .map(|c| (c.metric_data_queries().len(), call_datapoints(c)))
        .collect();
    for (queries_in_call, points) in &shapes {
        assert!(*queries_in_call <= 500, "{shapes:?}");
        assert!(*points <= 100_800, "{shapes:?}");
    }
    shapes.sort();
    let mut expected = vec![(10, 100_800); 12];
    expected.extend([(100, 100), (500, 500)]);
    expected.sort();
    assert_eq!(shapes, expected);
    let ids: BTreeSet<&str> = calls
        .iter()
        .flat_map(|c| c.metric_data_queries().iter().filter_map(|q| q.id()))
        .collect();
    assert_eq!(ids.len(), 720, "every query sent once, ids unique");

    assert_eq!(series.len(), 720);
    for (position, (query, answered)) in queries.iter().zip(&series).enumerate() {
        assert_eq!(
            ok(answered).iter().collect::<Vec<_>>(),
            vec![(&query.window.start, &(position as f64))],
            "the answer to query {position} is its own"
        );
    }
}

#[tokio::test]
async fn a_query_too_big_for_one_call_goes_alone_and_is_paged() {
    // 30 days of seconds, 2,592,000 datapoints: more than any call answers,
    // so CloudWatch pages it; the two hourly series share another call.
    let month = window("2025-03-01T00:00:00Z", "2025-03-31T00:00:00Z");
    let hourly = |metric| SeriesQuery {
        period: Duration::from_secs(3600),
        ..simple_query(metric, month)
    };
    let queries = vec![
        hourly(SageMakerMetric::Invocation5XXErrors),
        SeriesQuery {
            period: Duration::from_secs(1),
            ..simple_query(SageMakerMetric::Invocations, month)
        },
        hourly(SageMakerMetric::Invocation4XXErrors),
    ];
    let alone = |req: &GetMetricDataInput| {
        req.metric_data_queries().len() == 1
            && req.metric_data_queries()[0].id() == Some("q1_s_inv_sum")
            && req.max_datapoints().is_none()
    };
    let page_1 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(move |req| alone(req) && req.next_token().is_none())
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("q1_s_inv_sum")
                        .status_code(StatusCode::PartialData)
                        .timestamps(smithy("2025-03-30T23:59:59Z"))
                        .values(2.0)
                        .build(),
                )
                .next_token("more")
                .build()
        });
    let page_2 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(move |req| alone(req) && req.next_token() == Some("more"))
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(complete("q1_s_inv_sum", &[("2025-03-01T00:00:00Z", 1.0)]))
                .build()
        });
    let shared = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| {
            let ids: Vec<_> = req.metric_data_queries().iter().map(|q| q.id()).collect();
            ids == [Some("q0_s_e5xx_sum"), Some("q2_s_e4xx_sum")] && req.next_token().is_none()
        })
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(complete("q0_s_e5xx_sum", &[("2025-03-01T00:00:00Z", 5.0)]))
                .metric_data_results(complete("q2_s_e4xx_sum", &[("2025-03-01T00:00:00Z", 4.0)]))
                .build()
        });
    let source = CloudWatchSource::new(mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&page_1, &page_2, &shared]
    ));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    assert_eq!(
        (page_1.num_calls(), page_2.num_calls(), shared.num_calls()),
        (1, 1, 1)
    );
    let points = |index: usize| -> Vec<(DateTime<Utc>, f64)> {
        ok(&series[index]).iter().map(|(t, v)| (*t, *v)).collect()
    };
    assert_eq!(points(0), vec![(at("2025-03-01T00:00:00Z"), 5.0)]);
    assert_eq!(
        points(1),
        vec![
            (at("2025-03-01T00:00:00Z"), 1.0),
            (at("2025-03-30T23:59:59Z"), 2.0)
        ]
    );
    assert_eq!(points(2), vec![(at("2025-03-01T00:00:00Z"), 4.0)]);
}

#[tokio::test]
async fn two_windows_are_two_calls_with_their_own_times() {
    let early = window("2025-03-02T09:00:00Z", "2025-03-02T10:00:00Z");
    let late = window("2025-03-02T10:30:00Z", "2025-03-02T10:55:00Z");
    let mut queries = tick_queries(1, late);
    let needed: BTreeSet<SeriesKey> = queries.iter().map(SeriesQuery::key).collect();
    // Interleaved, so a call per window has to gather its queries.
    for (i, q) in queries_for(measured("endpoint-1"), &needed, early)
        .into_iter()
        .enumerate()
    {
        queries.insert(2 * i + 1, q);
    }

    let seen = recorder();
    let sink = seen.clone();
    let answer = answer_by_series(&queries);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        sink.lock().expect("not poisoned").push(req.clone());
        answer(req)
    });
    let source = CloudWatchSource::new(mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&rule]
    ));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    let calls = seen.lock().expect("not poisoned").clone();
    assert_eq!(calls.len(), 2);
    let mut endpoints_seen = Vec::new();
    for call in &calls {
        let start = call.start_time().cloned();
        let end = call.end_time().cloned();
        let (endpoint, expected_period) = if start == Some(smithy("2025-03-02T09:00:00Z")) {
            assert_eq!(end, Some(smithy("2025-03-02T10:00:00Z")));
            ("endpoint-1", 3600)
        } else {
            assert_eq!(start, Some(smithy("2025-03-02T10:30:00Z")));
            assert_eq!(end, Some(smithy("2025-03-02T10:55:00Z")));
            ("endpoint-0", 1500)
        };
        endpoints_seen.push(endpoint);
        assert_eq!(call.metric_data_queries().len(), 10);
        for q in call.metric_data_queries() {
            assert!(q.id().is_some_and(is_valid_query_id), "{q:?}");
            assert_eq!(sent_series(q).0, endpoint, "{q:?}");
            assert_eq!(
                q.metric_stat().and_then(|s| s.period()),
                Some(expected_period)
            );
        }
    }
    endpoints_seen.sort();
    assert_eq!(endpoints_seen, vec!["endpoint-0", "endpoint-1"]);
    for (position, (query, answered)) in queries.iter().zip(&series).enumerate() {
        assert_eq!(
            ok(answered).iter().collect::<Vec<_>>(),
            vec![(&query.window.start, &(position as f64))]
        );
    }
}

#[tokio::test]
async fn periods_cloudwatch_cannot_take_fail_before_any_call() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T11:00:00Z");
    for (period, shown) in [
        (Duration::ZERO, "0ns"),
        (Duration::from_secs(90), "90s"),
        (Duration::from_millis(60_500), "60.5s"),
        (Duration::from_secs(7), "7s"),
        (Duration::from_secs(60 * (1 << 31)), "128849018880s"),
    ] {
        // No rule at all: any call would panic in the mock.
        let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, []));
        let queries = [
            simple_query(SageMakerMetric::Invocations, w),
            SeriesQuery {
                period,
                ..simple_query(SageMakerMetric::Invocation5XXErrors, w)
            },
        ];
        let err = source.fetch(&queries).await.expect_err("refused");
        let expected = GetMetricDataProblem::Period {
            id: "q1_s_e5xx_sum".into(),
            period,
        };
        assert_eq!(problem_of(&err), &expected);
        assert_eq!(
            expected.to_string(),
            format!("query q1_s_e5xx_sum has a period of {shown}, which CloudWatch cannot take")
        );
    }
}

#[tokio::test]
async fn high_resolution_and_whole_minute_periods_go_out_as_seconds() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T11:00:00Z");
    for seconds in [1, 5, 10, 30, 60, 300, 3600] {
        let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(move |req| {
                req.metric_data_queries()
                    .iter()
                    .all(|q| q.metric_stat().and_then(|s| s.period()) == Some(seconds))
            })
            .then_output(|| GetMetricDataOutput::builder().build());
        let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&rule]));
        let query = SeriesQuery {
            period: Duration::from_secs(u64::try_from(seconds).expect("positive")),
            ..simple_query(SageMakerMetric::Invocations, w)
        };
        source.fetch(&[query]).await.expect("accepted");
        assert_eq!(rule.num_calls(), 1, "{seconds} s");
    }
}

/// A shadow-variant query of endpoint `ep`, one value per minute.
fn simple_query(metric: SageMakerMetric, w: Window) -> SeriesQuery {
    SeriesQuery {
        experiment: measured("ep"),
        role: VariantRole::Shadow,
        metric,
        statistic: Statistic::Sum,
        window: w,
        period: Duration::from_secs(60),
    }
}

/// The id the adapter gave the query for `metric` in this call.
fn id_for(req: &GetMetricDataInput, metric: &str) -> String {
    req.metric_data_queries()
        .iter()
        .find(|q| sent_series(q).2 == metric)
        .and_then(|q| q.id())
        .unwrap_or_else(|| panic!("no {metric} query in {req:?}"))
        .to_string()
}

#[tokio::test]
async fn next_token_pages_are_merged_per_query_and_silent_queries_stay_empty() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let queries = vec![
        simple_query(SageMakerMetric::Invocations, w),
        simple_query(SageMakerMetric::Invocation5XXErrors, w),
        simple_query(SageMakerMetric::Invocation4XXErrors, w),
    ];
    let page_1 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| req.next_token().is_none() && req.metric_data_queries().len() == 3)
        .then_compute_output(|req| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id(id_for(req, "Invocations"))
                        .status_code(StatusCode::PartialData)
                        .timestamps(smithy("2025-03-02T10:04:00Z"))
                        .timestamps(smithy("2025-03-02T10:03:00Z"))
                        .values(7.0)
                        .values(5.0)
                        .build(),
                )
                .metric_data_results(complete(&id_for(req, "Invocation5XXErrors"), &[]))
                .next_token("more")
                .build()
        });
    let page_2 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| {
            req.next_token() == Some("more")
                && req.start_time() == Some(&smithy("2025-03-02T10:00:00Z"))
                && req.metric_data_queries().len() == 3
        })
        .then_compute_output(|req| {
            GetMetricDataOutput::builder()
                .metric_data_results(complete(
                    &id_for(req, "Invocations"),
                    &[("2025-03-02T10:01:00Z", 3.0), ("2025-03-02T10:00:00Z", 0.0)],
                ))
                .build()
        });
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&page_1, &page_2]));

    let series = source.fetch(&queries).await.expect("fetch succeeds");

    assert_eq!((page_1.num_calls(), page_2.num_calls()), (1, 1));
    assert_eq!(series.len(), 3);
    let busy: Vec<(DateTime<Utc>, f64)> = ok(&series[0]).iter().map(|(t, v)| (*t, *v)).collect();
    assert_eq!(
        busy,
        vec![
            (at("2025-03-02T10:00:00Z"), 0.0),
            (at("2025-03-02T10:01:00Z"), 3.0),
            (at("2025-03-02T10:03:00Z"), 5.0),
            (at("2025-03-02T10:04:00Z"), 7.0),
        ]
    );
    assert!(
        ok(&series[1]).is_empty(),
        "no datapoints is empty, not zero"
    );
    assert!(ok(&series[2]).is_empty(), "never mentioned is empty too");
}

#[tokio::test]
async fn no_queries_make_no_call() {
    // No rule at all: any call would panic in the mock.
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, []));
    assert!(source
        .fetch(&[])
        .await
        .expect("nothing to fetch")
        .is_empty());
}

/// The ids the adapter gives the two queries of `fetch_answered_with`.
const A: &str = "q0_s_inv_sum";
const B: &str = "q1_s_e5xx_sum";

async fn fetch_answered_with(
    output: GetMetricDataOutput,
) -> Result<Vec<SeriesAnswer>, MetricError> {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|req| {
            let ids: Vec<_> = req.metric_data_queries().iter().map(|q| q.id()).collect();
            ids == [Some(A), Some(B)]
        })
        .then_output(move || output.clone());
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&rule]));
    source
        .fetch(&[
            simple_query(SageMakerMetric::Invocations, w),
            simple_query(SageMakerMetric::Invocation5XXErrors, w),
        ])
        .await
}

/// The two answers, when the round as a whole was usable.
async fn answers_with(output: GetMetricDataOutput) -> Vec<SeriesAnswer> {
    fetch_answered_with(output)
        .await
        .expect("the round as a whole is usable")
}

fn ok(answer: &SeriesAnswer) -> &shadowpilot_core::metrics::Series {
    answer
        .as_ref()
        .unwrap_or_else(|error| panic!("expected an answer, got {error:?}"))
}

fn failed(answer: &SeriesAnswer) -> &MetricError {
    match answer {
        Err(error) => error,
        Ok(series) => panic!("expected an error, got {series:?}"),
    }
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
async fn forbidden_and_internal_error_fail_only_their_query() {
    for status in [StatusCode::Forbidden, StatusCode::InternalError] {
        let answers = answers_with(
            GetMetricDataOutput::builder()
                .metric_data_results(complete(A, &[("2025-03-02T10:00:00Z", 1.0)]))
                .metric_data_results(
                    MetricDataResult::builder()
                        .id(B)
                        .status_code(status.clone())
                        .messages(message("AccessDenied", "cross-account access"))
                        .build(),
                )
                .build(),
        )
        .await;
        assert_eq!(ok(&answers[0]).len(), 1, "the other query is answered");
        let expected = GetMetricDataProblem::QueryFailed {
            id: B.into(),
            status: status.as_str().into(),
            messages: CloudWatchMessages(vec![(
                "AccessDenied".into(),
                "cross-account access".into(),
            )]),
        };
        assert_eq!(problem_of(failed(&answers[1])), &expected);
        assert_eq!(
            expected.to_string(),
            format!(
                "query {B} came back with status {}: AccessDenied: cross-account access",
                status.as_str()
            )
        );
    }
}

#[tokio::test]
async fn a_query_s_messages_fail_that_query_and_the_call_s_fail_the_round() {
    let answers = answers_with(
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id(A)
                    .status_code(StatusCode::Complete)
                    .messages(message("ArithmeticError", "division by zero"))
                    .build(),
            )
            .build(),
    )
    .await;
    assert!(matches!(
        problem_of(failed(&answers[0])),
        GetMetricDataProblem::QueryMessages { id, .. } if id == A
    ));
    assert!(ok(&answers[1]).is_empty(), "never mentioned: no datapoints");

    let err = fetch_answered_with(
        GetMetricDataOutput::builder()
            .messages(message("MaxMetricsExceeded", "too many metrics"))
            .build(),
    )
    .await
    .expect_err("messages on the call spoil the round");
    assert_eq!(
        problem_of(&err).to_string(),
        "GetMetricData answered with messages, so some queries may be incomplete: MaxMetricsExceeded: too many metrics"
    );
}

#[tokio::test]
async fn partial_data_without_a_next_page_fails_that_query() {
    let answers = answers_with(
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id(A)
                    .status_code(StatusCode::PartialData)
                    .build(),
            )
            .build(),
    )
    .await;
    assert_eq!(
        problem_of(failed(&answers[0])),
        &GetMetricDataProblem::Incomplete { id: A.into() }
    );
    assert!(ok(&answers[1]).is_empty());
}

#[tokio::test]
async fn malformed_results_are_invalid_responses() {
    // (result, field, problem, whether it names a query of the call)
    let cases = [
        (
            MetricDataResult::builder()
                .id(A)
                .status_code(StatusCode::Complete)
                .timestamps(smithy("2025-03-02T10:00:00Z"))
                .build(),
            "MetricDataResults[0].Values",
            "0 values for 1 timestamps of q0_s_inv_sum",
            true,
        ),
        (
            MetricDataResult::builder()
                .id("zzz")
                .status_code(StatusCode::Complete)
                .build(),
            "MetricDataResults[0].Id",
            "\"zzz\" was not asked for",
            false,
        ),
        (
            MetricDataResult::builder()
                .status_code(StatusCode::Complete)
                .build(),
            "MetricDataResults[0].Id",
            "missing",
            false,
        ),
        (
            MetricDataResult::builder().id(A).build(),
            "MetricDataResults[0].StatusCode",
            "missing for q0_s_inv_sum",
            true,
        ),
    ];
    for (result, field, problem, names_a_query) in cases {
        let answers = answers_with(
            GetMetricDataOutput::builder()
                .metric_data_results(result)
                .build(),
        )
        .await;
        match failed(&answers[0]) {
            MetricError::InvalidResponse {
                field: f,
                problem: p,
            } => {
                assert_eq!(f, field);
                assert_eq!(p, problem);
            }
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
        // A result that names no query of the call spoils the whole call.
        assert_eq!(answers[1].is_err(), !names_a_query, "{field}: {problem}");
    }
}

#[tokio::test]
async fn a_denied_get_metric_data_is_access_denied_with_its_source() {
    let w = window("2025-03-02T10:00:00Z", "2025-03-02T10:05:00Z");
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
        aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform: cloudwatch:GetMetricData")
                .build(),
        )
    });
    let source = CloudWatchSource::new(mock_client!(aws_sdk_cloudwatch, [&rule]));
    let answers = source
        .fetch(&[simple_query(SageMakerMetric::Invocations, w)])
        .await
        .expect("a failed call is its queries' error");
    let error = failed(&answers[0]);
    assert!(
        matches!(error, MetricError::AccessDenied { .. }),
        "{error:?}"
    );
    let chain = shadowpilot_core::report::render::error_chain(error);
    assert!(chain.contains("cloudwatch:GetMetricData"), "{chain}");
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
    let answers = source
        .fetch(&[simple_query(SageMakerMetric::Invocations, w)])
        .await
        .expect("a failed call is its queries' error");
    let sdk = failed(&answers[0])
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
