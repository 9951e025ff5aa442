//! `MetricSource` over CloudWatch GetMetricData.
//!
//! How domain queries become calls:
//! - Every query is a raw `MetricStat` on namespace `AWS/SageMaker` with
//!   dimensions EndpointName and VariantName, and an id of the adapter's
//!   own: its position in the fetch, the role, metric and statistic
//!   (`q7_s_lat_p99_9`), so ids are unique and CloudWatch's messages stay
//!   readable.
//! - A call has one StartTime and EndTime, so there is a call per distinct
//!   window, cut into calls of at most 500 queries; a few run at once.
//! - A period CloudWatch cannot take fails the fetch before any call.
//!
//! How answers are read:
//! - A query CloudWatch answered with no datapoints becomes an empty series:
//!   a minute without traffic has no datapoint, and zero would be a lie.
//! - StatusCode `PartialData` means "more on the next page"; pages are
//!   followed and merged per query. A query still partial after the last
//!   page is that query's error. CloudWatch also pages a call whose answer
//!   would pass 100,800 datapoints, so series of many periods need no
//!   batching of their own.
//! - Answers are read per query: StatusCode `InternalError`, `Forbidden` or
//!   one CloudWatch added later, a `Messages` entry on the query, or values
//!   that do not fit its timestamps make that query's answer an error
//!   ([`MetricError::Service`] whose source is a [`GetMetricDataProblem`]
//!   naming the query, status and messages), so only the experiment it
//!   belongs to goes without measurements. CloudWatch documents messages as
//!   "as much of the operation as possible was still executed": a judge fed
//!   that query's incomplete data could pass a shadow on evidence that is
//!   not there.
//! - A failed call (the SDK's error after its retries, or an answer naming
//!   no query or one never asked) is the error of every query of that call.
//! - `Messages` on the call itself name no query and may concern any of
//!   them: they fail the whole fetch, and every experiment of the round is
//!   judged without measurements.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    Dimension, MessageData, Metric, MetricDataQuery, MetricDataResult, MetricStat, StatusCode,
};
use futures::stream::{self, StreamExt};

use crate::time::{to_chrono, to_smithy};
use shadowpilot_core::metrics::{
    SageMakerMetric, Series, SeriesQuery, Statistic, VariantRole, Window,
};
use shadowpilot_core::ports::{MetricError, MetricSource, SeriesAnswer};

/// Where SageMaker publishes endpoint metrics.
const NAMESPACE: &str = "AWS/SageMaker";
/// GetMetricData accepts at most this many queries per call.
const MAX_QUERIES_PER_CALL: usize = 500;
/// GetMetricData calls in flight at once.
const CONCURRENT_CALLS: usize = 4;

/// Metric series as CloudWatch keeps them.
#[derive(Debug, Clone)]
pub struct CloudWatchSource {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchSource {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &aws_sdk_cloudwatch::Client {
        &self.client
    }
}

/// Why a GetMetricData answer could not be used although the call itself
/// succeeded; the source of [`MetricError::Service`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GetMetricDataProblem {
    #[error("query {id} came back with status {status}{messages}")]
    QueryFailed {
        id: String,
        status: String,
        messages: CloudWatchMessages,
    },
    #[error("query {id} came back with messages{messages}")]
    QueryMessages {
        id: String,
        messages: CloudWatchMessages,
    },
    #[error("GetMetricData answered with messages, so some queries may be incomplete{messages}")]
    CallMessages { messages: CloudWatchMessages },
    #[error("query {id} was still PartialData after the last page")]
    Incomplete { id: String },
    /// CloudWatch takes 1, 5, 10, 30 or a multiple of 60 whole seconds.
    #[error("query {id} has a period of {period:?}, which CloudWatch cannot take")]
    Period { id: String, period: Duration },
}

/// CloudWatch's (code, value) messages, shown as `: code: value; ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudWatchMessages(pub Vec<(String, String)>);

impl CloudWatchMessages {
    fn from_sdk(messages: &[MessageData]) -> Self {
        Self(
            messages
                .iter()
                .map(|m| {
                    (
                        m.code().unwrap_or("?").to_string(),
                        m.value().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        )
    }
}

impl fmt::Display for CloudWatchMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (code, value)) in self.0.iter().enumerate() {
            f.write_str(if index == 0 { ": " } else { "; " })?;
            write!(f, "{code}: {value}")?;
        }
        Ok(())
    }
}

/// What a call's failure spoils.
enum CallFailure {
    /// Messages on the call itself: every answer of the round is in doubt.
    Round(MetricError),
    /// The call's own queries.
    Call(MetricError),
}

/// A query as it goes out, and where its answer goes back to.
struct Outgoing {
    /// Position in the fetched slice.
    index: usize,
    id: String,
    query: MetricDataQuery,
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError> {
        // Experiments changed recently have windows of their own, so a tick
        // can need several calls; a few at once keep the tick short while
        // staying far below GetMetricData's ~50 calls per second.
        let results: Vec<_> = stream::iter(calls(queries)?)
            .map(|(window, batch)| async move {
                let indexes: Vec<usize> = batch.iter().map(|q| q.index).collect();
                (indexes, self.fetch_batch(window, &batch).await)
            })
            .buffer_unordered(CONCURRENT_CALLS)
            .collect()
            .await;
        let mut answers: Vec<SeriesAnswer> = vec![Ok(Series::new()); queries.len()];
        for (indexes, result) in results {
            match result {
                Ok(answered) => {
                    for (index, answer) in answered {
                        answers[index] = answer;
                    }
                }
                Err(CallFailure::Round(error)) => return Err(error),
                Err(CallFailure::Call(error)) => {
                    let error = Arc::new(error);
                    for index in indexes {
                        answers[index] = Err(error.clone());
                    }
                }
            }
        }
        Ok(answers)
    }
}

/// Splits queries into GetMetricData calls: one group per window (a call has
/// a single StartTime and EndTime), each cut into calls of at most 500.
fn calls(queries: &[SeriesQuery]) -> Result<Vec<(Window, Vec<Outgoing>)>, MetricError> {
    let mut by_window: BTreeMap<Window, Vec<Outgoing>> = BTreeMap::new();
    for (index, query) in queries.iter().enumerate() {
        let id = query_id(index, query);
        let outgoing = Outgoing {
            index,
            query: sdk_query(&id, query)?,
            id,
        };
        by_window.entry(query.window).or_default().push(outgoing);
    }
    let mut calls = Vec::new();
    for (window, group) in by_window {
        let mut group = group.into_iter().peekable();
        while group.peek().is_some() {
            calls.push((window, group.by_ref().take(MAX_QUERIES_PER_CALL).collect()));
        }
    }
    Ok(calls)
}

impl CloudWatchSource {
    /// One GetMetricData call (all its pages) for queries sharing `window`;
    /// each answer comes back with its query's position.
    async fn fetch_batch(
        &self,
        window: Window,
        batch: &[Outgoing],
    ) -> Result<Vec<(usize, SeriesAnswer)>, CallFailure> {
        let sdk_queries = batch.iter().map(|q| q.query.clone()).collect();
        let mut pages = self
            .client
            .get_metric_data()
            .set_metric_data_queries(Some(sdk_queries))
            .start_time(to_smithy(window.start))
            .end_time(to_smithy(window.end))
            .into_paginator()
            .send();

        let mut merged: BTreeMap<String, Answer> = batch
            .iter()
            .map(|q| {
                (
                    q.id.clone(),
                    Answer {
                        index: q.index,
                        ..Answer::default()
                    },
                )
            })
            .collect();
        let mut page_count = 0;
        while let Some(page) = pages.next().await {
            page_count += 1;
            let page = page.map_err(|err| {
                CallFailure::Call(MetricError::Service {
                    source: Box::new(err),
                })
            })?;
            if !page.messages().is_empty() {
                let messages = CloudWatchMessages::from_sdk(page.messages());
                tracing::warn!(%messages, "GetMetricData answered with messages for the call");
                return Err(CallFailure::Round(problem(
                    GetMetricDataProblem::CallMessages { messages },
                )));
            }
            for (index, result) in page.metric_data_results().iter().enumerate() {
                merge_result(index, result, &mut merged).map_err(CallFailure::Call)?;
            }
        }
        // GetMetricData is billed per metric requested: worth seeing per tick.
        tracing::debug!(
            queries = batch.len(),
            pages = page_count,
            start = %window.start,
            end = %window.end,
            "GetMetricData"
        );

        Ok(merged
            .into_iter()
            .map(|(id, answer)| {
                let result = match (answer.failed, answer.partial) {
                    (Some(error), _) => Err(Arc::new(error)),
                    (None, true) => Err(Arc::new(problem(GetMetricDataProblem::Incomplete { id }))),
                    (None, false) => Ok(answer.points),
                };
                (answer.index, result)
            })
            .collect())
    }
}

#[derive(Default)]
struct Answer {
    index: usize,
    points: Series,
    /// The status of the last page that mentioned this query was PartialData.
    partial: bool,
    /// The first problem with this query's answer; later pages cannot
    /// repair it.
    failed: Option<MetricError>,
}

/// Folds one result into its query's answer. `Err` only when the result
/// cannot be attributed to a query; a problem with a known query is
/// recorded on that query alone.
fn merge_result(
    index: usize,
    result: &MetricDataResult,
    merged: &mut BTreeMap<String, Answer>,
) -> Result<(), MetricError> {
    let field = |name: &str| format!("MetricDataResults[{index}].{name}");
    let id = result.id().ok_or_else(|| invalid(field("Id"), "missing"))?;
    let answer = merged
        .get_mut(id)
        .ok_or_else(|| invalid(field("Id"), format!("{id:?} was not asked for")))?;
    if answer.failed.is_some() {
        return Ok(());
    }
    if let Err(error) = merge_into(answer, id, &field, result) {
        answer.failed = Some(error);
    }
    Ok(())
}

fn merge_into(
    answer: &mut Answer,
    id: &str,
    field: &dyn Fn(&str) -> String,
    result: &MetricDataResult,
) -> Result<(), MetricError> {
    match result.status_code() {
        Some(StatusCode::Complete) => answer.partial = false,
        Some(StatusCode::PartialData) => answer.partial = true,
        Some(other) => {
            return Err(problem(GetMetricDataProblem::QueryFailed {
                id: id.to_string(),
                status: other.as_str().to_string(),
                messages: CloudWatchMessages::from_sdk(result.messages()),
            }))
        }
        None => return Err(invalid(field("StatusCode"), format!("missing for {id}"))),
    }
    if !result.messages().is_empty() {
        return Err(problem(GetMetricDataProblem::QueryMessages {
            id: id.to_string(),
            messages: CloudWatchMessages::from_sdk(result.messages()),
        }));
    }

    let (timestamps, values) = (result.timestamps(), result.values());
    if timestamps.len() != values.len() {
        return Err(invalid(
            field("Values"),
            format!(
                "{} values for {} timestamps of {id}",
                values.len(),
                timestamps.len()
            ),
        ));
    }
    for (timestamp, &value) in timestamps.iter().zip(values) {
        let at = to_chrono(timestamp).ok_or_else(|| {
            invalid(
                field("Timestamps"),
                format!("{} s since the epoch is out of range", timestamp.secs()),
            )
        })?;
        match answer.points.insert(at, value) {
            Some(earlier) if earlier.to_bits() != value.to_bits() => {
                return Err(invalid(
                    field("Values"),
                    format!("{id} at {at} is {value} on one page and {earlier} on another"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn sdk_query(id: &str, query: &SeriesQuery) -> Result<MetricDataQuery, MetricError> {
    let dimensions = [
        ("EndpointName", query.experiment.endpoint.as_str()),
        ("VariantName", query.variant()),
    ]
    .into_iter()
    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
    .collect();
    let metric = Metric::builder()
        .namespace(NAMESPACE)
        .metric_name(metric_name(query.metric))
        .set_dimensions(Some(dimensions))
        .build();
    Ok(MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period_seconds(id, query.period)?)
                .stat(stat(query.statistic))
                .build(),
        )
        .return_data(true)
        .build())
}

/// The period as `MetricStat.Period` takes it: the high-resolution 1, 5, 10
/// or 30 seconds, or whole minutes.
fn period_seconds(id: &str, period: Duration) -> Result<i32, MetricError> {
    let seconds = period.as_secs();
    let allowed = period.subsec_nanos() == 0
        && (matches!(seconds, 1 | 5 | 10 | 30) || (seconds > 0 && seconds % 60 == 0));
    allowed
        .then(|| i32::try_from(seconds).ok())
        .flatten()
        .ok_or_else(|| {
            problem(GetMetricDataProblem::Period {
                id: id.to_string(),
                period,
            })
        })
}

/// Unique within a fetch because of the position; the rest is for people
/// reading CloudWatch's messages.
fn query_id(index: usize, query: &SeriesQuery) -> String {
    let role = match query.role {
        VariantRole::Production => "p",
        VariantRole::Shadow => "s",
    };
    let metric = match query.metric {
        SageMakerMetric::Invocations => "inv",
        SageMakerMetric::Invocation4XXErrors => "e4xx",
        SageMakerMetric::Invocation5XXErrors => "e5xx",
        SageMakerMetric::InvocationModelErrors => "emodel",
        SageMakerMetric::ModelLatency => "lat",
        SageMakerMetric::OverheadLatency => "ovh",
    };
    let statistic = stat(query.statistic).to_lowercase().replace('.', "_");
    format!("q{index}_{role}_{metric}_{statistic}")
}

fn metric_name(metric: SageMakerMetric) -> &'static str {
    match metric {
        SageMakerMetric::Invocations => "Invocations",
        SageMakerMetric::Invocation4XXErrors => "Invocation4XXErrors",
        SageMakerMetric::Invocation5XXErrors => "Invocation5XXErrors",
        SageMakerMetric::InvocationModelErrors => "InvocationModelErrors",
        SageMakerMetric::ModelLatency => "ModelLatency",
        SageMakerMetric::OverheadLatency => "OverheadLatency",
    }
}

/// The name CloudWatch expects in `MetricStat.Stat`.
fn stat(statistic: Statistic) -> String {
    match statistic {
        Statistic::Sum => "Sum".into(),
        Statistic::Average => "Average".into(),
        Statistic::SampleCount => "SampleCount".into(),
        Statistic::Minimum => "Minimum".into(),
        Statistic::Maximum => "Maximum".into(),
        Statistic::PercentileTenths(t) if t % 10 == 0 => format!("p{}", t / 10),
        Statistic::PercentileTenths(t) => format!("p{}.{}", t / 10, t % 10),
    }
}

fn problem(problem: GetMetricDataProblem) -> MetricError {
    MetricError::Service {
        source: Box::new(problem),
    }
}

fn invalid(field: String, problem: impl Into<String>) -> MetricError {
    MetricError::InvalidResponse {
        field,
        problem: problem.into(),
    }
}
