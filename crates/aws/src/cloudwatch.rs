//! `MetricSource` over CloudWatch GetMetricData.
//!
//! How answers are read:
//! - A query CloudWatch answered with no datapoints becomes an empty series:
//!   a minute without traffic has no datapoint, and zero would be a lie.
//! - StatusCode `PartialData` means "more on the next page"; pages are
//!   followed and merged per query id. A query still partial after the last
//!   page fails the fetch.
//! - StatusCode `InternalError`, `Forbidden` or one CloudWatch added later,
//!   and any `Messages` entry (per query or for the whole call), fail the
//!   fetch with [`MetricError::Service`] whose source is a
//!   [`GetMetricDataProblem`] naming the query, status and messages.
//!   CloudWatch documents messages as "as much of the operation as possible
//!   was still executed", so the data may be incomplete; a judge fed
//!   incomplete data could pass a shadow on evidence that is not there,
//!   while a failed fetch only costs one tick without writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    Dimension, MessageData, Metric, MetricDataQuery, MetricDataResult, MetricStat, StatusCode,
};
use futures::stream::{self, StreamExt};

use crate::time::{to_chrono, to_smithy};
use shadowpilot_core::metrics::{batch_queries, MetricQuery, MetricSeries, Window};
use shadowpilot_core::ports::{Datapoints, MetricError, MetricSource};

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
    #[error("query {id} has a period of {seconds} s, which CloudWatch cannot take")]
    Period { id: String, seconds: i64 },
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

/// GetMetricData calls in flight at once.
const CONCURRENT_CALLS: usize = 4;

#[async_trait]
impl MetricSource for CloudWatchSource {
    async fn fetch(&self, queries: &[MetricQuery]) -> Result<Vec<MetricSeries>, MetricError> {
        // Keyed by window too: two windows are two calls, and an id reused
        // across them must not mix their datapoints.
        let mut answered: HashMap<(Window, String), Datapoints> = HashMap::new();
        // Experiments changed recently have windows of their own, so a tick
        // can need several calls; a few at once keep the tick short while
        // staying far below GetMetricData's ~50 calls per second.
        let batches: Vec<Vec<MetricQuery>> = batch_queries(queries)
            .into_iter()
            .filter(|batch| !batch.is_empty())
            .collect();
        let results: Vec<_> = stream::iter(batches)
            .map(|batch| async move {
                let window = batch[0].window;
                self.fetch_batch(window, &batch)
                    .await
                    .map(|series| (window, series))
            })
            .buffer_unordered(CONCURRENT_CALLS)
            .collect()
            .await;
        for result in results {
            let (window, series) = result?;
            for (id, points) in series {
                answered.insert((window, id), points);
            }
        }
        Ok(queries
            .iter()
            .map(|query| MetricSeries {
                id: query.id.clone(),
                points: answered
                    .remove(&(query.window, query.id.clone()))
                    .unwrap_or_default(),
            })
            .collect())
    }
}

impl CloudWatchSource {
    /// One GetMetricData call (all its pages) for queries sharing `window`.
    async fn fetch_batch(
        &self,
        window: Window,
        batch: &[MetricQuery],
    ) -> Result<BTreeMap<String, Datapoints>, MetricError> {
        let sdk_queries = batch.iter().map(sdk_query).collect::<Result<Vec<_>, _>>()?;
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
            .map(|q| (q.id.clone(), Answer::default()))
            .collect();
        let mut page_count = 0;
        while let Some(page) = pages.next().await {
            page_count += 1;
            let page = page.map_err(|err| MetricError::Service {
                source: Box::new(err),
            })?;
            if !page.messages().is_empty() {
                return Err(problem(GetMetricDataProblem::CallMessages {
                    messages: CloudWatchMessages::from_sdk(page.messages()),
                }));
            }
            for (index, result) in page.metric_data_results().iter().enumerate() {
                merge_result(index, result, &mut merged)?;
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

        merged
            .into_iter()
            .map(|(id, answer)| {
                if answer.partial {
                    Err(problem(GetMetricDataProblem::Incomplete { id }))
                } else {
                    Ok((id, answer.points))
                }
            })
            .collect()
    }
}

#[derive(Default)]
struct Answer {
    points: Datapoints,
    /// The status of the last page that mentioned this query was PartialData.
    partial: bool,
}

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

fn sdk_query(query: &MetricQuery) -> Result<MetricDataQuery, MetricError> {
    let period = i32::try_from(query.period_seconds).map_err(|_| {
        problem(GetMetricDataProblem::Period {
            id: query.id.clone(),
            seconds: query.period_seconds,
        })
    })?;
    let dimensions = query
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let metric = Metric::builder()
        .namespace(&query.namespace)
        .metric_name(&query.metric_name)
        .set_dimensions(Some(dimensions))
        .build();
    Ok(MetricDataQuery::builder()
        .id(&query.id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(query.statistic.cloudwatch_name())
                .build(),
        )
        .return_data(true)
        .build())
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
