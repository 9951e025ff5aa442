//! `ExperimentStore` over the SageMaker inference-experiment API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::operation::add_tags::AddTagsError;
use aws_sdk_sagemaker::operation::delete_tags::DeleteTagsError;
use aws_sdk_sagemaker::operation::describe_inference_experiment::{
    DescribeInferenceExperimentError, DescribeInferenceExperimentOutput,
};
use aws_sdk_sagemaker::operation::list_inference_experiments::ListInferenceExperimentsError;
use aws_sdk_sagemaker::operation::list_tags::ListTagsError;
use aws_sdk_sagemaker::operation::stop_inference_experiment::StopInferenceExperimentError;
use aws_sdk_sagemaker::operation::update_inference_experiment::UpdateInferenceExperimentError;
use aws_sdk_sagemaker::types::{
    InferenceExperimentSchedule, InferenceExperimentStopDesiredState, InferenceExperimentSummary,
    InferenceExperimentType, ModelVariantAction, ShadowModeConfig, ShadowModelVariantConfig, Tag,
};
use aws_smithy_runtime_api::box_error::BoxError as SdkBoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    Error as ErasedError, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use chrono::{DateTime, Utc};

use crate::time::{to_chrono, to_smithy};
use shadowpilot_core::experiment::{
    CaptureConfig, Experiment, ExperimentStatus, ExperimentStop, ExperimentSummary,
    ExperimentUpdate, StopState, VariantAction, MAX_TAG_VALUE_CHARS,
};
use shadowpilot_core::limit::{AdaptiveLimit, LimitStats, DEFAULT_LIMIT};
use shadowpilot_core::ports::{BoxError, ExperimentStore, StoreError};

const LIST: &str = "ListInferenceExperiments";
const DESCRIBE: &str = "DescribeInferenceExperiment";
const LIST_TAGS: &str = "ListTags";
const UPDATE: &str = "UpdateInferenceExperiment";
const STOP: &str = "StopInferenceExperiment";
const ADD_TAGS: &str = "AddTags";
const DELETE_TAGS: &str = "DeleteTags";

/// AddTags takes at most this many tags and DeleteTags this many keys
/// (`TagList` and `TagKeyList` in the service model).
const MAX_TAGS_PER_CALL: usize = 50;
/// AWS's limit on a tag key, in characters (not bytes).
const MAX_TAG_KEY_CHARS: usize = 128;

/// The API's maximum page size: fewer round trips per tick.
const LIST_PAGE_SIZE: i32 = 100;

/// Inference experiments as SageMaker keeps them. Describes, tag calls and
/// updates share one [`AdaptiveLimit`]: the controller may start 64 at
/// once, and the limit halves while SageMaker throttles.
#[derive(Debug, Clone)]
pub struct SageMakerStore {
    client: aws_sdk_sagemaker::Client,
    limit: Arc<AdaptiveLimit>,
}

impl SageMakerStore {
    /// A client built elsewhere. Its throttles reach the limit only if its
    /// config carries [`SageMakerStore::throttle_signal`]'s interceptor.
    pub fn new(client: aws_sdk_sagemaker::Client) -> Self {
        Self::with_limit(client, Arc::new(AdaptiveLimit::new(DEFAULT_LIMIT)))
    }

    pub fn with_limit(client: aws_sdk_sagemaker::Client, limit: Arc<AdaptiveLimit>) -> Self {
        Self { client, limit }
    }

    /// A store over `config`, with the interceptor that tells its limit
    /// about every throttled attempt.
    pub fn from_conf(config: aws_sdk_sagemaker::config::Builder) -> Self {
        let limit = Arc::new(AdaptiveLimit::new(DEFAULT_LIMIT));
        let config = config
            .interceptor(Self::throttle_signal(limit.clone()))
            .build();
        Self::with_limit(aws_sdk_sagemaker::Client::from_conf(config), limit)
    }

    /// The interceptor that reports throttled attempts to `limit`.
    pub fn throttle_signal(limit: Arc<AdaptiveLimit>) -> impl Intercept + 'static {
        ThrottleSignal(limit)
    }

    pub fn client(&self) -> &aws_sdk_sagemaker::Client {
        &self.client
    }

    /// What the call limit went through so far.
    pub fn limit_stats(&self) -> LimitStats {
        self.limit.stats()
    }

    /// Runs one SageMaker call in a place under the limit, and counts its
    /// success (throttles are counted per attempt by the classifier).
    async fn limited<T, E>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let _permit = self.limit.acquire().await;
        let result = call.await;
        if result.is_ok() {
            self.limit.succeeded();
        }
        result
    }
}

/// Sees every attempt's outcome, once (a retry classifier may be asked
/// more than once per attempt); it changes nothing, it only reports
/// throttles to the limit.
#[derive(Debug)]
struct ThrottleSignal(Arc<AdaptiveLimit>);

impl Intercept for ThrottleSignal {
    fn name(&self) -> &'static str {
        "shadowpilot throttle signal"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            let too_many = context
                .response()
                .is_some_and(|response| response.status().as_u16() == 429);
            let code = error.as_operation_error().and_then(error_code);
            if too_many || code.is_some_and(|code| THROTTLING_CODES.contains(&code)) {
                self.0.throttled();
            }
        }
        Ok(())
    }
}

/// The modeled error code of any SageMaker operation this store calls.
fn error_code(error: &ErasedError) -> Option<&str> {
    macro_rules! code_of {
        ($($error:ty),+) => {
            $(if let Some(error) = error.downcast_ref::<$error>() {
                return error.code();
            })+
        };
    }
    code_of!(
        DescribeInferenceExperimentError,
        ListTagsError,
        UpdateInferenceExperimentError,
        StopInferenceExperimentError,
        AddTagsError,
        DeleteTagsError,
        ListInferenceExperimentsError
    );
    None
}

#[async_trait]
impl ExperimentStore for SageMakerStore {
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        let mut pages = self
            .client
            .list_inference_experiments()
            .r#type(InferenceExperimentType::ShadowMode)
            .into_paginator()
            .page_size(LIST_PAGE_SIZE)
            .send();
        let mut summaries = Vec::new();
        while let Some(page) = pages.next().await {
            // No experiment is named here, so nothing to call NotFound or
            // Conflict; throttling and denial are still told apart.
            let page = page.map_err(|err| unclassified(LIST, err))?;
            for (index, row) in page.inference_experiments().iter().enumerate() {
                if let Some(summary) = summary_from(index, row)? {
                    summaries.push(summary);
                }
            }
        }
        Ok(summaries)
    }

    async fn describe(&self, name: &str) -> Result<Experiment, StoreError> {
        let described = self
            .limited(
                self.client
                    .describe_inference_experiment()
                    .name(name)
                    .send(),
            )
            .await
            .map_err(|err| store_error(DESCRIBE, name, err, describe_failure))?;
        let mut experiment = experiment_from(name, &described)?;
        experiment.tags = self.tags(name, &experiment.arn).await?;
        Ok(experiment)
    }

    async fn update(&self, update: &ExperimentUpdate) -> Result<(), StoreError> {
        if update.is_empty() {
            // A call with only the name changes nothing but may still move
            // the experiment through Updating, blocking the next real change.
            tracing::debug!(experiment = %update.name, "empty update not sent");
            return Ok(());
        }
        let mut request = self.client.update_inference_experiment().name(&update.name);
        if let Some(sampling) = &update.sampling {
            // AWS replaces the whole ShadowModeConfig, so the production
            // variant travels with every sampling change.
            request = request.shadow_mode_config(
                ShadowModeConfig::builder()
                    .source_model_variant_name(&sampling.source_variant)
                    .shadow_model_variants(
                        ShadowModelVariantConfig::builder()
                            .shadow_model_variant_name(&sampling.shadow_variant)
                            .sampling_percentage(i32::from(sampling.percentage))
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(end_time) = update.end_time {
            // StartTime is left out so the current one stays: only a Created
            // experiment may change it, and whether a Running one accepts a
            // resend of the same value is not documented.
            request = request.schedule(
                InferenceExperimentSchedule::builder()
                    .end_time(to_smithy(end_time))
                    .build(),
            );
        }
        self.limited(request.send())
            .await
            .map_err(|err| store_error(UPDATE, &update.name, err, update_failure))?;
        Ok(())
    }

    async fn stop(&self, stop: &ExperimentStop) -> Result<(), StoreError> {
        let mut request = self
            .client
            .stop_inference_experiment()
            .name(&stop.name)
            .desired_state(match stop.desired_state {
                StopState::Completed => InferenceExperimentStopDesiredState::Completed,
                StopState::Cancelled => InferenceExperimentStopDesiredState::Cancelled,
            })
            .reason(&stop.reason);
        for (variant, action) in &stop.variant_actions {
            request = request.model_variant_actions(
                variant,
                match action {
                    VariantAction::Promote => ModelVariantAction::Promote,
                    VariantAction::Remove => ModelVariantAction::Remove,
                    VariantAction::Retain => ModelVariantAction::Retain,
                },
            );
        }
        // DesiredModelVariants is left out: the variants keep the
        // infrastructure they run on now.
        self.limited(request.send())
            .await
            .map_err(|err| store_error(STOP, &stop.name, err, stop_failure))?;
        Ok(())
    }

    /// Errors name the ARN: it is what the call was made on, and what an
    /// AccessDenied must be compared with (policies/iam/README.md).
    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        if tags.is_empty() {
            // AWS wants at least one tag; nothing to set is not a failure.
            tracing::debug!(%arn, "no tags to add, AddTags not sent");
            return Ok(());
        }
        // Checked here so a bad tag is a Rejected naming it, not a
        // ValidationException after a round trip; nothing is sent, so no
        // part of the set is written without the rest.
        check_count(ADD_TAGS, arn, tags.len())?;
        for (key, value) in tags {
            check_key(ADD_TAGS, arn, key)?;
            let chars = value.chars().count();
            if chars > MAX_TAG_VALUE_CHARS {
                return Err(rejected_locally(
                    ADD_TAGS,
                    arn,
                    format!(
                        "the value of tag {key:?} is {chars} characters, \
                         AWS allows at most {MAX_TAG_VALUE_CHARS}"
                    ),
                ));
            }
        }
        let sdk_tags = tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        self.limited(
            self.client
                .add_tags()
                .resource_arn(arn)
                .set_tags(Some(sdk_tags))
                .send(),
        )
        .await
        .map_err(|err| store_error(ADD_TAGS, arn, err, add_tags_failure))?;
        Ok(())
    }

    /// Errors name the ARN, as for [`Self::add_tags`].
    async fn delete_tags(&self, arn: &str, keys: &BTreeSet<String>) -> Result<(), StoreError> {
        if keys.is_empty() {
            // AWS wants at least one key; nothing to delete is not a failure.
            tracing::debug!(%arn, "no tags to delete, DeleteTags not sent");
            return Ok(());
        }
        check_count(DELETE_TAGS, arn, keys.len())?;
        for key in keys {
            check_key(DELETE_TAGS, arn, key)?;
        }
        self.limited(
            self.client
                .delete_tags()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.iter().cloned().collect()))
                .send(),
        )
        .await
        .map_err(|err| store_error(DELETE_TAGS, arn, err, delete_tags_failure))?;
        Ok(())
    }
}

fn check_count(operation: &str, arn: &str, count: usize) -> Result<(), StoreError> {
    if count > MAX_TAGS_PER_CALL {
        return Err(rejected_locally(
            operation,
            arn,
            format!("{count} tags, {operation} takes at most {MAX_TAGS_PER_CALL}"),
        ));
    }
    Ok(())
}

fn check_key(operation: &str, arn: &str, key: &str) -> Result<(), StoreError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_TAG_KEY_CHARS {
        return Err(rejected_locally(
            operation,
            arn,
            format!(
                "tag key {key:?} is {chars} characters, \
                 AWS allows 1 to {MAX_TAG_KEY_CHARS}"
            ),
        ));
    }
    Ok(())
}

/// A request refused before it was sent: the same `Rejected` AWS's
/// ValidationException would have become, saying it never left.
fn rejected_locally(operation: &str, arn: &str, problem: String) -> StoreError {
    StoreError::Rejected {
        name: arn.to_string(),
        message: format!("{problem} ({operation} not sent)"),
    }
}

impl SageMakerStore {
    async fn tags(&self, name: &str, arn: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut pages = self
            .client
            .list_tags()
            .resource_arn(arn)
            .into_paginator()
            .send();
        let mut tags = BTreeMap::new();
        let mut index = 0;
        loop {
            let page = {
                let _permit = self.limit.acquire().await;
                pages.next().await
            };
            let Some(page) = page else { break };
            let page = page.map_err(|err| store_error(LIST_TAGS, name, err, list_tags_failure))?;
            self.limit.succeeded();
            for tag in page.tags() {
                let key = tag
                    .key()
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| invalid(LIST_TAGS, format!("Tags[{index}].Key"), "missing"))?;
                // AWS allows an empty tag value and may leave it out.
                tags.insert(key.to_string(), tag.value().unwrap_or_default().to_string());
                index += 1;
            }
        }
        Ok(tags)
    }
}

/// `None` for a row that is not a shadow test: the Type filter should have
/// dropped it already, and anything else has no shadow variant to steer.
fn summary_from(
    index: usize,
    row: &InferenceExperimentSummary,
) -> Result<Option<ExperimentSummary>, StoreError> {
    let field = |name: &str| format!("InferenceExperiments[{index}].{name}");
    if let Some(kind) = row.r#type() {
        if *kind != InferenceExperimentType::ShadowMode {
            return Ok(None);
        }
    }
    let name = non_empty(row.name()).ok_or_else(|| invalid(LIST, field("Name"), "missing"))?;
    let status = row
        .status()
        .ok_or_else(|| invalid(LIST, field("Status"), format!("missing for {name}")))?;
    Ok(Some(ExperimentSummary {
        name: name.to_string(),
        status: ExperimentStatus::parse(status.as_str()),
    }))
}

/// Checks a describe answer field by field; tags are filled in afterwards.
fn experiment_from(
    requested: &str,
    out: &DescribeInferenceExperimentOutput,
) -> Result<Experiment, StoreError> {
    let bad = |field: &str, problem: String| invalid(DESCRIBE, field.to_string(), problem);

    let name = non_empty(out.name()).ok_or_else(|| bad("Name", "missing".into()))?;
    if name != requested {
        return Err(bad(
            "Name",
            format!("{name:?} answers a request for {requested:?}"),
        ));
    }
    let arn = non_empty(out.arn()).ok_or_else(|| bad("Arn", "missing".into()))?;
    match out.r#type() {
        Some(InferenceExperimentType::ShadowMode) => {}
        Some(other) => {
            return Err(bad(
                "Type",
                format!("{:?} is not ShadowMode", other.as_str()),
            ))
        }
        None => return Err(bad("Type", "missing".into())),
    }
    let status = out
        .status()
        .map(|status| ExperimentStatus::parse(status.as_str()))
        .ok_or_else(|| bad("Status", "missing".into()))?;
    let endpoint_name = non_empty(
        out.endpoint_metadata()
            .and_then(|endpoint| endpoint.endpoint_name()),
    )
    .ok_or_else(|| bad("EndpointMetadata.EndpointName", "missing".into()))?;

    let shadow_mode = out
        .shadow_mode_config()
        .ok_or_else(|| bad("ShadowModeConfig", "missing".into()))?;
    let production_variant = non_empty(shadow_mode.source_model_variant_name())
        .ok_or_else(|| bad("ShadowModeConfig.SourceModelVariantName", "missing".into()))?;
    let shadow = match shadow_mode.shadow_model_variants() {
        [only] => only,
        variants => {
            let names: Vec<&str> = variants
                .iter()
                .map(|v| v.shadow_model_variant_name().unwrap_or("?"))
                .collect();
            return Err(bad(
                "ShadowModeConfig.ShadowModelVariants",
                format!(
                    "{} variants {names:?}, expected exactly one",
                    variants.len()
                ),
            ));
        }
    };
    let shadow_variant = non_empty(shadow.shadow_model_variant_name()).ok_or_else(|| {
        bad(
            "ShadowModeConfig.ShadowModelVariants[0].ShadowModelVariantName",
            "missing".into(),
        )
    })?;
    if shadow_variant == production_variant {
        // Both would report under one VariantName, so the judge would compare
        // the production variant with itself.
        return Err(bad(
            "ShadowModeConfig.ShadowModelVariants[0].ShadowModelVariantName",
            format!("{shadow_variant:?} is also the source variant"),
        ));
    }
    let raw_percentage = shadow.sampling_percentage().ok_or_else(|| {
        bad(
            "ShadowModeConfig.ShadowModelVariants[0].SamplingPercentage",
            "missing".into(),
        )
    })?;
    let sampling_percentage = u8::try_from(raw_percentage)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| {
            bad(
                "ShadowModeConfig.ShadowModelVariants[0].SamplingPercentage",
                format!("{raw_percentage} is outside 0..=100"),
            )
        })?;

    let schedule = out.schedule();
    let start_time = optional_time("Schedule.StartTime", schedule.and_then(|s| s.start_time()))?;
    let end_time = optional_time("Schedule.EndTime", schedule.and_then(|s| s.end_time()))?;
    let last_modified = optional_time("LastModifiedTime", out.last_modified_time())?
        .ok_or_else(|| bad("LastModifiedTime", "missing".into()))?;

    Ok(Experiment {
        name: name.to_string(),
        arn: arn.to_string(),
        status,
        endpoint_name: endpoint_name.to_string(),
        production_variant: production_variant.to_string(),
        shadow_variant: shadow_variant.to_string(),
        sampling_percentage,
        start_time,
        end_time,
        last_modified,
        tags: BTreeMap::new(),
        capture: out.data_storage_config().and_then(|config| {
            Some(CaptureConfig {
                destination: non_empty(config.destination())?.to_string(),
                kms_key: non_empty(config.kms_key()).map(str::to_string),
            })
        }),
    })
}

fn optional_time(
    field: &str,
    time: Option<&aws_smithy_types::DateTime>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    time.map(|t| {
        to_chrono(t).ok_or_else(|| {
            invalid(
                DESCRIBE,
                field.to_string(),
                format!("{} s since the epoch is out of range", t.secs()),
            )
        })
    })
    .transpose()
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fn invalid(
    operation: &'static str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> StoreError {
    StoreError::InvalidResponse {
        operation,
        field: field.into(),
        problem: problem.into(),
    }
}

/// The answers the controller reacts to; everything else stays a
/// `StoreError::Service` with the SDK error as its source.
enum Failure {
    Conflict,
    NotFound,
    Rejected,
}

/// A failure and the service's message. Modelled errors carry the message
/// in their own field, which is not always mirrored in the error metadata.
type Classified = (Failure, Option<String>);

/// The error codes SageMaker puts on the wire (`__type` of awsJson1.1).
/// ValidationException is not in the service model, so only its code can
/// identify it.
fn by_code(err: &impl ProvideErrorMetadata) -> Option<Classified> {
    let failure = match err.code()? {
        "ConflictException" => Failure::Conflict,
        "ResourceNotFound" => Failure::NotFound,
        "ValidationException" => Failure::Rejected,
        _ => return None,
    };
    Some((failure, err.message().map(str::to_string)))
}

fn update_failure(err: &UpdateInferenceExperimentError) -> Option<Classified> {
    match err {
        UpdateInferenceExperimentError::ConflictException(e) => {
            Some((Failure::Conflict, own_message(e.message(), e)))
        }
        UpdateInferenceExperimentError::ResourceNotFound(e) => {
            Some((Failure::NotFound, own_message(e.message(), e)))
        }
        other => by_code(other),
    }
}

fn stop_failure(err: &StopInferenceExperimentError) -> Option<Classified> {
    match err {
        StopInferenceExperimentError::ConflictException(e) => {
            Some((Failure::Conflict, own_message(e.message(), e)))
        }
        StopInferenceExperimentError::ResourceNotFound(e) => {
            Some((Failure::NotFound, own_message(e.message(), e)))
        }
        other => by_code(other),
    }
}

fn describe_failure(err: &DescribeInferenceExperimentError) -> Option<Classified> {
    match err {
        DescribeInferenceExperimentError::ResourceNotFound(e) => {
            Some((Failure::NotFound, own_message(e.message(), e)))
        }
        other => by_code(other),
    }
}

fn list_tags_failure(err: &ListTagsError) -> Option<Classified> {
    by_code(err)
}

// The service model gives the tag operations no modelled errors: only the
// wire codes tell them apart.
fn add_tags_failure(err: &AddTagsError) -> Option<Classified> {
    by_code(err)
}

fn delete_tags_failure(err: &DeleteTagsError) -> Option<Classified> {
    by_code(err)
}

fn own_message(field: Option<&str>, err: &impl ProvideErrorMetadata) -> Option<String> {
    field.or(err.message()).map(str::to_string)
}

/// Codes AWS uses for throttling, as the SDK's own retry classifier knows
/// them: SageMaker answers ThrottlingException, other services the rest.
const THROTTLING_CODES: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];
pub(crate) const ACCESS_DENIED_CODES: [&str; 2] = ["AccessDeniedException", "AccessDenied"];

/// A failure the controller does not react to by name, labelled by its
/// wire code so the report and the alarms can tell throttling and missing
/// permissions from everything else; the SDK error stays the source.
fn unclassified<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_string);
    let source: BoxError = Box::new(err);
    match code.as_deref() {
        Some(code) if THROTTLING_CODES.contains(&code) => {
            StoreError::Throttled { operation, source }
        }
        Some(code) if ACCESS_DENIED_CODES.contains(&code) => {
            StoreError::AccessDenied { operation, source }
        }
        _ => StoreError::Service { operation, source },
    }
}

fn store_error<E>(
    operation: &'static str,
    name: &str,
    err: SdkError<E, HttpResponse>,
    classify: fn(&E) -> Option<Classified>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Some((failure, message)) = err.as_service_error().and_then(classify) else {
        return unclassified(operation, err);
    };
    let name = name.to_string();
    let message = message.unwrap_or_else(|| "no message".to_string());
    match failure {
        Failure::Conflict => StoreError::Conflict { name, message },
        Failure::NotFound => StoreError::NotFound { name },
        Failure::Rejected => StoreError::Rejected { name, message },
    }
}
