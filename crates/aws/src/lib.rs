//! AWS SDK adapters: the only code that speaks to SageMaker and CloudWatch.

mod calls;
mod cloudwatch;
mod eventbridge;
mod s3;
mod sagemaker;
mod time;

pub use calls::{
    CallSettings, CallSettingsError, ATTEMPT_TIMEOUT_VAR, MAX_ATTEMPTS_VAR, OPERATION_TIMEOUT_VAR,
    RETRY_MODE_VAR,
};
pub use cloudwatch::{CloudWatchMessages, CloudWatchSource, GetMetricDataProblem};
pub use eventbridge::EventBridgeSink;
pub use s3::S3Capture;
pub use sagemaker::SageMakerStore;

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
/// Retries and timeouts come from [`CallSettings::from_env`]: standard
/// retries with a 200 ms initial backoff and 5 attempts unless
/// `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` say otherwise, and the timeouts of
/// `SHADOWPILOT_ATTEMPT_TIMEOUT` / `SHADOWPILOT_OPERATION_TIMEOUT`. A bad
/// value is an error naming the variable, so the function refuses to start.
pub async fn clients_from_env() -> Result<(SageMakerStore, CloudWatchSource), CallSettingsError> {
    Ok(clients_with(&CallSettings::from_env()?).await)
}

/// Both adapters from the usual configuration chain with these retries
/// and timeouts.
pub async fn clients_with(settings: &CallSettings) -> (SageMakerStore, CloudWatchSource) {
    clients_from_config(&load_config(settings).await)
}

/// The usual configuration chain with these retries and timeouts, loaded
/// once for every client built from it.
pub async fn load_config(settings: &CallSettings) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config())
        .load()
        .await
}

/// The event sink on `bus` (`None` or `default`: the default bus).
/// Captured requests and responses in S3 (path-style with an endpoint
/// override).
pub fn capture_from_config(config: &SdkConfig) -> S3Capture {
    S3Capture::from_config(config)
}

pub fn events_from_config(config: &SdkConfig, bus: Option<String>) -> EventBridgeSink {
    EventBridgeSink::new(aws_sdk_eventbridge::Client::new(config), bus)
}

/// Both adapters from an already loaded configuration (tests, tools that
/// load their own).
pub fn clients_from_config(config: &SdkConfig) -> (SageMakerStore, CloudWatchSource) {
    (
        SageMakerStore::from_conf(aws_sdk_sagemaker::config::Builder::from(config)),
        CloudWatchSource::new(aws_sdk_cloudwatch::Client::new(config)),
    )
}
