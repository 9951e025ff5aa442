//! AWS SDK adapters: the only code that speaks to SageMaker and CloudWatch.

mod cloudwatch;
mod sagemaker;
mod time;

pub use cloudwatch::{CloudWatchMessages, CloudWatchSource, GetMetricDataProblem};
pub use sagemaker::SageMakerStore;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the AWS configuration once and builds both adapters from it. Call it
/// outside the Lambda handler so every invocation reuses the clients and
/// their connection pools.
///
/// Region, credentials and endpoints come from the usual chain (environment,
/// profile, container/instance metadata). Endpoint overrides need no code
/// here: `aws_config::defaults` reads `AWS_ENDPOINT_URL` (or `endpoint_url`
/// in the profile) into the shared config, and each service client's
/// `From<&SdkConfig>` first asks the shared config's service-config loader
/// for its own key, `AWS_ENDPOINT_URL_SAGEMAKER` / `AWS_ENDPOINT_URL_CLOUDWATCH`
/// (service ids `SageMaker` and `CloudWatch`), and falls back to the global
/// one. `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` turns all of them off.
/// `tests/aws_env.rs` proves the per-service routing against local servers.
///
/// Retries use the adaptive mode, which also slows down on throttling:
/// GetMetricData is limited to about 50 calls per second per account, and a
/// tick may describe many experiments at once. This replaces any
/// `AWS_RETRY_MODE` in the environment; `AWS_MAX_ATTEMPTS` (a whole number
/// of at least 1) still sets the attempts, three when it is absent or unusable.
pub async fn clients_from_env() -> (SageMakerStore, CloudWatchSource) {
    let max_attempts = std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|raw| raw.trim().parse::<u32>().ok())
        .filter(|attempts| *attempts >= 1)
        .unwrap_or(3);
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive().with_max_attempts(max_attempts))
        .load()
        .await;
    clients_from_config(&config)
}

/// Both adapters from an already loaded configuration (tests, tools that
/// load their own).
pub fn clients_from_config(config: &SdkConfig) -> (SageMakerStore, CloudWatchSource) {
    (
        SageMakerStore::new(aws_sdk_sagemaker::Client::new(config)),
        CloudWatchSource::new(aws_sdk_cloudwatch::Client::new(config)),
    )
}
