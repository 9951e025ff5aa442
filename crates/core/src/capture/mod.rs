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

/// What a tick learned of an experiment's outputs, for the output checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputEvidence {
    /// Not read: the policy has no output checks.
    #[default]
    NotRead,
    /// The experiment has no DataStorageConfig.
    NoCapture,
    /// The capture could not be read (or no reader is configured).
    Failed(CaptureFailure),
    /// The step's capture, read over `span` at the sample `rate`.
    Read {
        report: std::sync::Arc<AgreementReport>,
        rate: f64,
        span: (DateTime<Utc>, DateTime<Utc>),
    },
}

/// A capture reading's error, shared by the report and the judge.
#[derive(Debug, Clone)]
pub struct CaptureFailure(pub std::sync::Arc<CompareError>);

impl PartialEq for CaptureFailure {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

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
    #[error("no capture reader is configured in this run")]
    NoReader,
    #[error("reading the {role} variant's capture")]
    Capture {
        role: &'static str,
        #[source]
        source: CaptureError,
    },
}

impl CompareError {
    /// The report's label for it: a denial by S3 or KMS is `access_denied`
    /// like SageMaker's, an answer that makes no sense `invalid_response`.
    pub fn kind(&self) -> crate::report::ErrorKind {
        use crate::report::ErrorKind;
        match self {
            Self::Store(error) => ErrorKind::of_store_error(error),
            Self::Destination(_) => ErrorKind::InvalidResponse,
            Self::Capture { source, .. } => match source {
                CaptureError::AccessDenied { .. } | CaptureError::KmsAccessDenied { .. } => {
                    ErrorKind::AccessDenied
                }
                CaptureError::InvalidResponse { .. } => ErrorKind::InvalidResponse,
                CaptureError::NoSuchBucket { .. }
                | CaptureError::TooLarge { .. }
                | CaptureError::Service { .. } => ErrorKind::Capture,
            },
            Self::NoCapture { .. } | Self::NoReader => ErrorKind::Capture,
        }
    }

    /// The call that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Store(error) => error.operation().unwrap_or("DescribeInferenceExperiment"),
            // SageMaker's DataStorageConfig named no usable S3 location.
            Self::Destination(_) | Self::NoCapture { .. } => "DescribeInferenceExperiment",
            Self::NoReader => "shadowpilot",
            Self::Capture { source, .. } => match source {
                CaptureError::AccessDenied { operation, .. }
                | CaptureError::InvalidResponse { operation, .. }
                | CaptureError::Service { operation, .. } => operation,
                CaptureError::KmsAccessDenied { .. } | CaptureError::TooLarge { .. } => "GetObject",
                CaptureError::NoSuchBucket { .. } => "ListObjectsV2",
            },
        }
    }
}

/// The comparison `shadowpilot compare` uses for an experiment: its
/// policy's declaration and output checks when exactly one policy selects
/// it, otherwise outputs compared whole against 99 % agreement.
pub fn options_for(
    policies: &crate::policy::PolicySet,
    experiment: &crate::experiment::Experiment,
) -> (Option<String>, CompareOptions) {
    match crate::policy::select_policy(policies, experiment) {
        crate::policy::Selection::Selected { policy, .. } => {
            (Some(policy.name.clone()), CompareOptions::of_policy(policy))
        }
        _ => (None, CompareOptions::default()),
    }
}

/// `shadowpilot compare`: the experiment's capture over
/// `[since, now − DELIVERY_DELAY)`, both variants read in full (no sample),
/// paired, compared and judged by the options `choose` gives for the
/// experiment as described (see [`options_for`]), without writing anything.
pub async fn compare_experiment(
    store: &dyn ExperimentStore,
    capture: &dyn CaptureSource,
    name: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limits: ReadLimits,
    choose: impl FnOnce(&crate::experiment::Experiment) -> CompareOptions,
) -> Result<(AgreementReport, (DateTime<Utc>, DateTime<Utc>)), CompareError> {
    let experiment = store.describe(name).await?;
    let options = &choose(&experiment);
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
            read_variant(
                capture,
                destination,
                &endpoint,
                &variant,
                span,
                1.0,
                limits,
                None,
            )
            .await
            .map_err(|source| CompareError::Capture { role, source })
        }
    };
    let shadow = read("shadow", &experiment.shadow_variant).await?;
    let production = read("production", &experiment.production_variant).await?;
    Ok((agreement_report(&shadow, &production, options), span))
}
