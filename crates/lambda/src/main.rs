//! The Lambda bootstrap: configuration, policies and AWS clients are built
//! once at cold start; each invocation runs one tick.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shadowpilot_aws::{CloudWatchSource, SageMakerStore};
use shadowpilot_core::config::Config;
use shadowpilot_core::handler::App;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Honours AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL.
    lambda_runtime::tracing::init_default_subscriber();

    let app = match build_app().await {
        Ok(app) => app,
        Err(error) => {
            // Logged through tracing so the cause reaches CloudWatch Logs in
            // the configured format before Lambda reports Runtime.ExitError.
            tracing::error!(error = format!("{error:#}"), "shadowpilot cannot start");
            return Err(error.into());
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = app.handle(&event.payload, chrono::Utc::now()).await?;
        Ok::<_, lambda_runtime::Error>(report)
    }))
    .await
}

async fn build_app() -> anyhow::Result<App<SageMakerStore, CloudWatchSource>> {
    let config = Config::from_env().context("invalid configuration")?;
    let schedule = config
        .require_schedule()
        .context("the function cannot start")?
        .clone();
    let policies = config
        .load_policies()
        .context("the function cannot start")?;
    for policy in policies.policies() {
        for deprecation in &policy.deprecations {
            tracing::warn!(policy = %policy.name, field = deprecation.field, "{deprecation}");
        }
    }
    let (store, metrics) = shadowpilot_aws::clients_from_env()
        .await
        .context("the function cannot start")?;
    Ok(App::new(store, metrics, policies, &config, schedule))
}
