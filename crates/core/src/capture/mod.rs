//! Data capture of a shadow test (pure): the JSON Lines records SageMaker
//! writes for both variants, their payloads decoded, the two copies of a
//! request paired, their outputs compared and the agreement judged with the
//! same always-valid machinery as the error rates. Reading the files is the
//! shell's job, behind a port; nothing here does I/O.
//!
//! - [`record`]: one capture file's lines → records and line problems.
//! - [`pair`]: shadow and production records of the same request.
//! - [`compare`]: what "the same answer" means, as a policy declares it.
//! - [`read`]: a variant's capture for a span, over [`crate::ports::CaptureSource`].
//! - [`sample`]: the nested sample that keeps the sequences valid.
//! - [`report`]: the agreement report of `shadowpilot compare`.
//! - [`agreement`]: the two output checks' evidence.

pub mod agreement;
pub mod compare;
pub mod pair;
pub mod read;
pub mod record;
pub mod report;
pub mod sample;

use chrono::{DateTime, Duration, Utc};

use crate::ports::{CaptureError, CaptureSource, ExperimentStore, StoreError};
use read::{read_variant, Destination, DestinationError, ReadLimits};
use report::{agreement_report, AgreementReport, CompareOptions};

/// Capture files land a few minutes after the inference ("a couple of
/// minutes", AWS says): the newest minutes of a span are left out.
pub const DELIVERY_DELAY: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "inference experiment {name} has no DataStorageConfig: nothing is captured to compare"
    )]
    NoCapture { name: String },
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("reading the {role} variant's capture")]
    Capture {
        role: &'static str,
        #[source]
        source: CaptureError,
    },
}

/// `shadowpilot compare`: the experiment's capture over
/// `[since, now − DELIVERY_DELAY)`, both variants read in full (no sample),
/// paired, compared and judged by `options`, without writing anything.
pub async fn compare_experiment(
    store: &dyn ExperimentStore,
    capture: &dyn CaptureSource,
    name: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limits: ReadLimits,
    options: &CompareOptions,
) -> Result<(AgreementReport, (DateTime<Utc>, DateTime<Utc>)), CompareError> {
    let experiment = store.describe(name).await?;
    let config = experiment
        .capture
        .as_ref()
        .ok_or_else(|| CompareError::NoCapture {
            name: name.to_string(),
        })?;
    let destination = Destination::parse(&config.destination)?;
    let span = (since, now - DELIVERY_DELAY);
    let read = |role: &'static str, variant: &str| {
        let destination = &destination;
        let endpoint = experiment.endpoint_name.clone();
        let variant = variant.to_string();
        async move {
            read_variant(capture, destination, &endpoint, &variant, span, 1.0, limits)
                .await
                .map_err(|source| CompareError::Capture { role, source })
        }
    };
    let shadow = read("shadow", &experiment.shadow_variant).await?;
    let production = read("production", &experiment.production_variant).await?;
    Ok((agreement_report(&shadow, &production, options), span))
}
