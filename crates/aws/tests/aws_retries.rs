//! The retry settings against a local SageMaker that throttles: three
//! ThrottlingExceptions in a row on one call still go through with the
//! defaults, a budget of two attempts ends as `Throttled` with the SDK
//! error kept, and the throttles the retries hide still reach the call
//! limit, which halves and grows back.

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
    // `from_conf` adds the throttle signal to exactly this configuration.
    SageMakerStore::from_conf(config.to_builder())
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

#[tokio::test]
async fn throttles_hidden_by_the_retries_halve_the_call_limit_and_successes_grow_it_back() {
    let server = throttling_server(3);
    let store = store_at(&server, &CallSettings::default());
    assert_eq!(store.limit_stats().limit, 64);
    store.update(&extension()).await.expect("retried through");
    let stats = store.limit_stats();
    // Three throttled attempts of one call: one halving, not three, since
    // they were all sent under the old limit.
    assert_eq!((stats.throttles, stats.halvings, stats.limit), (3, 1, 32));
    for _ in 0..shadowpilot_core::limit::GROW_EVERY {
        store.update(&extension()).await.expect("no more throttles");
    }
    assert_eq!(store.limit_stats().limit, 33);
    assert_eq!(store.limit_stats().in_flight, 0);
}

#[tokio::test]
async fn a_validation_error_is_no_throttle() {
    let server = Server::start(|_| {
        Reply::json(
            400,
            &json!({"__type": "ValidationException", "message": "EndTime too late"}),
        )
    });
    let store = store_at(&server, &CallSettings::default());
    store.update(&extension()).await.expect_err("rejected");
    let stats = store.limit_stats();
    assert_eq!((stats.throttles, stats.limit), (0, 64));
}
