//! The Lambda bootstrap: configuration, policies and AWS clients are built
//! once at cold start; each invocation runs one tick.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shadowpilot_aws::{CloudWatchSource, SageMakerStore};
use shadowpilot_core::config::{Config, EventBus};
use shadowpilot_core::handler::{App, HandlerError};
use shadowpilot_core::report::emf::{self, TickFacts};

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
        let deadline = deadline_of(event.context.deadline);
        let (now, started) = (chrono::Utc::now(), tokio::time::Instant::now());
        let (report, facts) = match app.tick(&event.payload, now, Some(deadline)).await {
            Ok(done) => done,
            Err(error) => {
                // A tick that fails whole still says why in metrics, so the
                // errors alarm sees a denied or failing list.
                if let HandlerError::Tick(tick) = &error {
                    let (kind, operation) = tick.kind_and_operation();
                    let facts = TickFacts {
                        scheduled: false,
                        duration: started.elapsed(),
                        timestamp_ms: now.timestamp_millis(),
                    };
                    for line in emf::failed_tick_lines(kind, operation, &facts) {
                        println!("{line}");
                    }
                }
                return Err(error.into());
            }
        };
        // Raw lines on stdout, not through the tracing layer: CloudWatch
        // Logs reads a log event that is exactly an EMF object.
        for line in emf::lines(&report, &facts) {
            println!("{line}");
        }
        Ok::<_, lambda_runtime::Error>(report)
    }))
    .await
}

/// The invocation's deadline (milliseconds since the epoch, from the
/// runtime API) on the monotonic clock the controller measures with. A
/// deadline already past leaves no time: every read and write is deferred
/// and the report still comes back.
fn deadline_of(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
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
    let calls = shadowpilot_aws::CallSettings::from_env().context("the function cannot start")?;
    let aws = shadowpilot_aws::load_config(&calls).await;
    let (store, metrics) = shadowpilot_aws::clients_from_config(&aws);
    let app = App::new(
        store,
        metrics,
        policies,
        &config,
        schedule,
        calls.attempt_timeout,
    )
    // The role may read only the template's CaptureBucket/CapturePrefix: an
    // experiment capturing elsewhere gets its AccessDenied reported.
    .with_capture(Box::new(shadowpilot_aws::capture_from_config(&aws)));
    Ok(match &config.event_bus {
        EventBus::Off => app,
        EventBus::Default => {
            app.with_events(Box::new(shadowpilot_aws::events_from_config(&aws, None)))
        }
        EventBus::Named(bus) => app.with_events(Box::new(shadowpilot_aws::events_from_config(
            &aws,
            Some(bus.clone()),
        ))),
    })
}
