//! The two capabilities the controller needs from the outside world. The AWS
//! adapters, the simulator and the test fakes implement them; nothing else
//! talks to SageMaker or CloudWatch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use crate::experiment::{Experiment, ExperimentStop, ExperimentSummary, ExperimentUpdate};
use crate::metrics::{Series, SeriesQuery};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("inference experiment {name} was not found")]
    NotFound { name: String },
    /// AWS answers ConflictException when the experiment is not in a status
    /// that allows the call (for example Updating).
    #[error("inference experiment {name} cannot be changed now: {message}")]
    Conflict { name: String, message: String },
    #[error("SageMaker rejected the request for {name}: {message}")]
    Rejected { name: String, message: String },
    #[error("SageMaker {operation} answered without a usable {field}: {problem}")]
    InvalidResponse {
        operation: &'static str,
        field: String,
        problem: String,
    },
    /// Throttled on every attempt the retry policy allowed.
    #[error("SageMaker {operation} was throttled")]
    Throttled {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    /// The role may not make this call on this resource.
    #[error("SageMaker {operation} was denied")]
    AccessDenied {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("SageMaker {operation} failed")]
    Service {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// The SageMaker operation that failed, where the error names one.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Self::InvalidResponse { operation, .. }
            | Self::Throttled { operation, .. }
            | Self::AccessDenied { operation, .. }
            | Self::Service { operation, .. } => Some(operation),
            Self::NotFound { .. } | Self::Conflict { .. } | Self::Rejected { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("CloudWatch GetMetricData failed")]
    Service {
        #[source]
        source: BoxError,
    },
    /// The role may not call GetMetricData.
    #[error("CloudWatch GetMetricData was denied")]
    AccessDenied {
        #[source]
        source: BoxError,
    },
    #[error("CloudWatch answered without a usable {field}: {problem}")]
    InvalidResponse { field: String, problem: String },
    /// Folding a misaligned answer would judge on another series' numbers.
    #[error("the metric source answered {answered} series for {asked} queries")]
    Misaligned { asked: usize, answered: usize },
    /// The tick's read budget ran out before the round was answered.
    #[error("no answer within the tick's read budget ({} s after the tick began)", .waited.as_secs_f64().round())]
    OutOfTime { waited: std::time::Duration },
}

/// One query's answer; an error may be shared by the queries of one call.
pub type SeriesAnswer = Result<Series, Arc<MetricError>>;

/// One failure of the metric source, shared by every experiment it left
/// without measurements; the error and its causes are kept.
#[derive(Debug, Clone)]
pub struct MetricFailure(pub Arc<MetricError>);

impl PartialEq for MetricFailure {
    /// The same failure, not merely the same words.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Where inference experiments live: SageMaker, or the simulator.
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Every experiment, all pages.
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError>;
    /// Describe plus tags, as one model.
    async fn describe(&self, name: &str) -> Result<Experiment, StoreError>;
    async fn update(&self, update: &ExperimentUpdate) -> Result<(), StoreError>;
    /// StopInferenceExperiment: the end of the test, with what becomes of
    /// each variant.
    async fn stop(&self, stop: &ExperimentStop) -> Result<(), StoreError>;
    /// SageMaker AddTags on the experiment's ARN: sets (adds or overwrites)
    /// these tags and leaves the others alone.
    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError>;
    /// SageMaker DeleteTags on the experiment's ARN; a key that is not there
    /// is not an error.
    async fn delete_tags(&self, arn: &str, keys: &BTreeSet<String>) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("EventBridge PutEvents failed")]
    Service {
        #[source]
        source: BoxError,
    },
    /// PutEvents answered, but refused some entries.
    #[error("EventBridge refused {failed} of {sent} events: {message}")]
    Refused {
        failed: usize,
        sent: usize,
        message: String,
    },
}

/// Where shadowpilot's events go: EventBridge PutEvents, or a recorder.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes every event, or says which failed.
    async fn publish(&self, events: &[crate::events::ShadowEvent]) -> Result<(), EventError>;
}

/// One object of a capture prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureObject {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// S3 refused the role (ListBucket on the bucket, GetObject on the key).
    #[error("S3 {operation} on s3://{bucket}/{key} was denied")]
    AccessDenied {
        operation: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: BoxError,
    },
    /// The object is encrypted with a KMS key the role may not use for
    /// decryption (kms:Decrypt).
    #[error("S3 GetObject of s3://{bucket}/{key}: KMS refused to decrypt it")]
    KmsAccessDenied {
        bucket: String,
        key: String,
        #[source]
        source: BoxError,
    },
    #[error("S3 bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    /// Larger than what the tick may still read.
    #[error("s3://{bucket}/{key} is {size} bytes, more than the {limit} the tick may still read")]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
    #[error("S3 {operation} answered without a usable {field}: {problem}")]
    InvalidResponse {
        operation: &'static str,
        field: String,
        problem: String,
    },
    #[error("S3 {operation} failed")]
    Service {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
}

/// Where captured requests and responses are: S3, or the simulator.
#[async_trait]
pub trait CaptureSource: Send + Sync {
    /// Every object whose key starts with `prefix`, all pages.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError>;
    /// The object's bytes; [`CaptureError::TooLarge`] above `max_bytes`,
    /// never a partial read.
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CaptureError>;
}

/// Where metric series come from: CloudWatch GetMetricData, or the simulator.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Answers every query, index-aligned: the `i`-th answer is the `i`-th
    /// query's, so the result is exactly as long as `queries`. A period
    /// without datapoints is absent from its series, never a zero; a query
    /// with none at all comes back as an empty series. A problem with one
    /// query (or one call's queries) is that answer's error, so it costs
    /// only the experiments it belongs to; `Err` is for what spoils every
    /// answer of the round.
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError>;
}
