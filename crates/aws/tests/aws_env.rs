//! `clients_from_env` honours the endpoint variables and the retry and
//! timeout settings. This binary holds one test on purpose: it changes the
//! process environment, which no other test may read at the same time.

use aws_smithy_types::retry::RetryMode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use shadowpilot_aws::clients_from_env;
use shadowpilot_core::experiment::ExperimentUpdate;
use shadowpilot_core::metrics::{
    MeasuredExperiment, SageMakerMetric, SeriesQuery, Statistic, VariantRole, Window,
};
use shadowpilot_core::ports::{ExperimentStore, MetricSource};
use shadowpilot_testkit::http::{Cbor, Reply, Server};

fn sagemaker_server() -> Server {
    Server::start(|_| Reply::json(200, &json!({"InferenceExperimentArn": "arn"})))
}

fn cloudwatch_server() -> Server {
    Server::start(|_| {
        let mut body = Cbor::default();
        body.map(1).text("MetricDataResults").array(0);
        Reply::cbor(200, body.0)
    })
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamps are valid")
        .with_timezone(&Utc)
}

async fn one_call_each(
    store: &impl ExperimentStore,
    source: &impl MetricSource,
) -> Result<(), String> {
    store
        .update(&ExperimentUpdate {
            name: "e".into(),
            sampling: None,
            end_time: Some(at("2025-03-20T12:00:00Z")),
        })
        .await
        .map_err(|e| format!("update: {e:?}"))?;
    let window = Window {
        start: at("2025-03-02T10:00:00Z"),
        end: at("2025-03-02T11:00:00Z"),
    };
    source
        .fetch(&[SeriesQuery {
            experiment: std::sync::Arc::new(MeasuredExperiment {
                name: "e".into(),
                endpoint: "e-endpoint".into(),
                production_variant: "production".into(),
                shadow_variant: "shadow".into(),
            }),
            role: VariantRole::Shadow,
            metric: SageMakerMetric::Invocations,
            statistic: Statistic::Sum,
            window,
            period: std::time::Duration::from_secs(3600),
        }])
        .await
        .map_err(|e| format!("fetch: {e:?}"))?;
    Ok(())
}

#[tokio::test]
async fn endpoint_variables_route_each_service() {
    // A hermetic environment: static credentials, no profile files, no IMDS.
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        ),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        std::env::set_var(key, value);
    }
    for key in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    ] {
        std::env::remove_var(key);
    }

    // 1. The per-service variables win over the global one.
    let (global, sagemaker, cloudwatch) =
        (sagemaker_server(), sagemaker_server(), cloudwatch_server());
    std::env::set_var("AWS_ENDPOINT_URL", &global.url);
    std::env::set_var("AWS_ENDPOINT_URL_SAGEMAKER", &sagemaker.url);
    std::env::set_var("AWS_ENDPOINT_URL_CLOUDWATCH", &cloudwatch.url);

    let (store, source) = clients_from_env().await.expect("usable settings");
    one_call_each(&store, &source)
        .await
        .expect("both calls reach local servers");

    assert!(
        global.requests().is_empty(),
        "nothing went to AWS_ENDPOINT_URL"
    );
    let sm = sagemaker.requests();
    assert_eq!(sm.len(), 1);
    assert_eq!(
        sm[0].header("x-amz-target"),
        Some("SageMaker.UpdateInferenceExperiment")
    );
    let cw = cloudwatch.requests();
    assert_eq!(cw.len(), 1);
    assert_eq!(
        cw[0].path,
        "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    );
    assert!(
        sm[0]
            .header("authorization")
            .is_some_and(|auth| auth.contains("Credential=AKIDTEST/")
                && auth.contains("/eu-west-1/sagemaker/aws4_request")),
        "signed with the environment's credentials and region: {:?}",
        sm[0].header("authorization")
    );
    // Standard retries with a short backoff and per-attempt and
    // per-operation timeouts, on both clients.
    for (retry, timeouts) in [
        (
            store.client().config().retry_config().cloned(),
            store.client().config().timeout_config().cloned(),
        ),
        (
            source.client().config().retry_config().cloned(),
            source.client().config().timeout_config().cloned(),
        ),
    ] {
        let retry = retry.expect("a retry config");
        assert_eq!(retry.mode(), RetryMode::Standard);
        assert_eq!(retry.max_attempts(), 5);
        assert_eq!(retry.initial_backoff(), Duration::from_millis(200));
        let timeouts = timeouts.expect("a timeout config");
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(30)));
    }

    // 2. Without them, AWS_ENDPOINT_URL serves both services.
    let shared = Server::start(|request| {
        if request.header("smithy-protocol").is_some() {
            let mut body = Cbor::default();
            body.map(1).text("MetricDataResults").array(0);
            Reply::cbor(200, body.0)
        } else {
            Reply::json(200, &json!({"InferenceExperimentArn": "arn"}))
        }
    });
    std::env::set_var("AWS_ENDPOINT_URL", &shared.url);
    std::env::remove_var("AWS_ENDPOINT_URL_SAGEMAKER");
    std::env::remove_var("AWS_ENDPOINT_URL_CLOUDWATCH");

    // The SDK's own variables win, each for what it names.
    std::env::set_var("AWS_RETRY_MODE", "adaptive");
    std::env::set_var("AWS_MAX_ATTEMPTS", "2");
    std::env::set_var("SHADOWPILOT_ATTEMPT_TIMEOUT", "3s");
    let (store, source) = clients_from_env().await.expect("usable settings");
    let retry = store
        .client()
        .config()
        .retry_config()
        .cloned()
        .expect("retry");
    assert_eq!(
        (retry.mode(), retry.max_attempts(), retry.initial_backoff()),
        (RetryMode::Adaptive, 2, Duration::from_millis(200))
    );
    assert_eq!(
        store
            .client()
            .config()
            .timeout_config()
            .and_then(|t| t.operation_attempt_timeout()),
        Some(Duration::from_secs(3))
    );
    one_call_each(&store, &source)
        .await
        .expect("both calls reach the shared server");
    assert_eq!(shared.requests().len(), 2);
    assert_eq!(
        sagemaker.requests().len(),
        1,
        "the old servers saw nothing new"
    );
    assert_eq!(cloudwatch.requests().len(), 1);

    // A bad value names its variable instead of being ignored.
    std::env::set_var("AWS_MAX_ATTEMPTS", "many");
    let error = clients_from_env().await.expect_err("refused");
    assert!(
        error.to_string().starts_with("AWS_MAX_ATTEMPTS=\"many\""),
        "{error}"
    );
}
