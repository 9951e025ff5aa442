//! The retry settings against a local SageMaker that throttles: three
//! ThrottlingExceptions in a row on one call still go through with the
//! defaults, and a budget of two attempts ends as `Throttled` with the SDK
//! error kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_sagemaker::config::{Credentials, Region};
use serde_json::json;

use shadowpilot_aws::{CallSettings, SageMakerStore};
use shadowpilot_core::experiment::ExperimentUpdate;
use shadowpilot_core::ports::{ExperimentStore, StoreError};
use shadowpilot_testkit::http::{Reply, Server};

/// Answers ThrottlingException to the first `throttles` requests.
fn throttling_server(throttles: usize) -> Server {
    let seen = Arc::new(AtomicUsize::new(0));
    Server::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < throttles {
            Reply::json(
                400,
                &json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
            )
        } else {
            Reply::json(200, &json!({"InferenceExperimentArn": "arn"}))
        }
    })
}

fn store_at(server: &Server, settings: &CallSettings) -> SageMakerStore {
    let config = aws_sdk_sagemaker::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url(&server.url)
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config())
        .build();
    SageMakerStore::new(aws_sdk_sagemaker::Client::from_conf(config))
}

fn extension() -> ExperimentUpdate {
    ExperimentUpdate {
        name: "e".into(),
        sampling: None,
        end_time: chrono::DateTime::from_timestamp(1_900_000_000, 0),
    }
}

#[tokio::test]
async fn three_throttles_in_a_row_still_go_through() {
    let server = throttling_server(3);
    let store = store_at(&server, &CallSettings::default());
    store
        .update(&extension())
        .await
        .expect("the fourth attempt succeeds");
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn a_spent_budget_is_throttled_with_the_sdk_error_kept() {
    let server = throttling_server(usize::MAX);
    let settings = CallSettings {
        max_attempts: 2,
        ..CallSettings::default()
    };
    let error = store_at(&server, &settings)
        .update(&extension())
        .await
        .expect_err("every attempt is throttled");
    assert!(
        matches!(
            &error,
            StoreError::Throttled {
                operation: "UpdateInferenceExperiment",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert_eq!(server.requests().len(), 2);
}
