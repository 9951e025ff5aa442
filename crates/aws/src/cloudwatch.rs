//! `MetricSource` over CloudWatch GetMetricData.
//!
//! How domain queries become calls:
//! - Every query is a raw `MetricStat` on namespace `AWS/SageMaker` with
//!   dimensions EndpointName and VariantName, and an id of the adapter's
//!   own: its position in the fetch, the role, metric and statistic
//!   (`q7_s_lat_p99_9`), so ids are unique and CloudWatch's messages stay
//!   readable.
//! - A call has one StartTime and EndTime, so there is a call per distinct
//!   window, cut into calls of at most 500 queries and at most 100,800
//!   datapoints, the most one call answers (a query's datapoints are
//!   ceil((end − start) / period)). A query bigger than that on its own gets
//!   a call to itself and its answer comes over several NextToken pages. At
//!   most 8 calls are in flight at once.
//! - A period CloudWatch cannot take fails the fetch before any call.
//!
//! How answers are read:
//! - A query CloudWatch answered with no datapoints becomes an empty series:
//!   a minute without traffic has no datapoint, and zero would be a lie.
//! - StatusCode `PartialData` means "more on the next page"; pages are
//!   followed and each page is folded into its queries' answers as it
//!   arrives, so no raw page outlives its own reading. A query still partial
//!   after the last page is that query's error.
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

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::sagemaker::ACCESS_DENIED_CODES;
use crate::time::{to_chrono, to_smithy};
use shadowpilot_core::metrics::{
    SageMakerMetric, Series, SeriesQuery, Statistic, VariantRole, Window,
};
use shadowpilot_core::ports::{MetricError, MetricSource, SeriesAnswer};

/// Where SageMaker publishes endpoint metrics.
const NAMESPACE: &str = "AWS/SageMaker";
/// GetMetricData accepts at most this many queries per call.
pub(crate) const MAX_QUERIES_PER_CALL: usize = 500;
/// GetMetricData answers at most this many datapoints per call; beyond that
/// it pages, and every page is another request against the ~50 calls per
/// second. Packing calls below it keeps a tick's answers to one page each
/// wherever a query allows.
pub(crate) const MAX_DATAPOINTS_PER_CALL: u64 = 100_800;
/// GetMetricData calls in flight at once: long evidence windows make more,
/// bigger calls, and 8 keep such a tick well inside the function's timeout.
/// 8 in flight pass the ~50 calls per second only while answers take under
/// 160 ms, and then the standard retries absorb the throttle.
pub(crate) const CONCURRENT_CALLS: usize = 8;

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
        // Experiments changed recently have windows of their own and long
        // windows fill calls by datapoints, so a tick can need many calls;
        // several at once keep the tick short. Answers go back by position,
        // so the order calls finish in does not matter.
        let results: Vec<_> = stream::iter(calls(queries)?)
            .map(|call| async move {
                let indexes: Vec<usize> = call.queries.iter().map(|q| q.index).collect();
                (indexes, self.fetch_batch(&call).await)
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

/// One GetMetricData call as planned: its window and its queries.
struct Call {
    window: Window,
    queries: Vec<Outgoing>,
    /// What the call's answer holds at most, for the log.
    datapoints: u64,
}

/// Splits queries into GetMetricData calls: one group per window (a call has
/// a single StartTime and EndTime), each cut by [`pack`].
fn calls(queries: &[SeriesQuery]) -> Result<Vec<Call>, MetricError> {
    let mut by_window: BTreeMap<Window, Vec<(Outgoing, u64)>> = BTreeMap::new();
    for (index, query) in queries.iter().enumerate() {
        let id = query_id(index, query);
        let outgoing = Outgoing {
            index,
            query: sdk_query(&id, query)?,
            id,
        };
        let points = datapoints(query.window, query.period);
        by_window
            .entry(query.window)
            .or_default()
            .push((outgoing, points));
    }
    let mut calls = Vec::new();
    for (window, group) in by_window {
        let sizes: Vec<u64> = group.iter().map(|(_, points)| *points).collect();
        let mut group: Vec<Option<(Outgoing, u64)>> = group.into_iter().map(Some).collect();
        for members in pack(&sizes) {
            let mut call = Call {
                window,
                queries: Vec::with_capacity(members.len()),
                datapoints: 0,
            };
            // pack hands out every position exactly once.
            for (outgoing, points) in members.iter().filter_map(|&at| group[at].take()) {
                call.queries.push(outgoing);
                call.datapoints = call.datapoints.saturating_add(points);
            }
            calls.push(call);
        }
    }
    Ok(calls)
}

/// The most datapoints a query can answer: ceil((end − start) / period).
/// An empty or inverted window has none; a zero period (refused before any
/// call) would have no bound and counts as the most there can be.
pub(crate) fn datapoints(window: Window, period: Duration) -> u64 {
    let span = (window.end - window.start)
        .to_std()
        .map_or(0, |span| span.as_nanos());
    match period.as_nanos() {
        0 => u64::MAX,
        period => u64::try_from(span.div_ceil(period)).unwrap_or(u64::MAX),
    }
}

/// Groups the queries of one window, given as each one's datapoints, into
/// calls of at most [`MAX_QUERIES_PER_CALL`] queries and
/// [`MAX_DATAPOINTS_PER_CALL`] datapoints; each call lists positions into
/// `datapoints`, and every position is in exactly one call.
///
/// A query over the datapoint limit on its own gets a call to itself and
/// CloudWatch pages its answer; kept out of the others' calls, it does not
/// make them page too. The rest are packed greedily in order rather than
/// bin-packed: the queries of one window mostly share a period, and keeping
/// the order keeps the calls predictable.
pub(crate) fn pack(datapoints: &[u64]) -> Vec<Vec<usize>> {
    let mut calls = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    // At most MAX_DATAPOINTS_PER_CALL, so adding one more query's (also at
    // most that) cannot overflow.
    let mut points: u64 = 0;
    for (index, &size) in datapoints.iter().enumerate() {
        if size > MAX_DATAPOINTS_PER_CALL {
            calls.push(vec![index]);
            continue;
        }
        if open.len() == MAX_QUERIES_PER_CALL || points + size > MAX_DATAPOINTS_PER_CALL {
            calls.push(std::mem::take(&mut open));
            points = 0;
        }
        open.push(index);
        points += size;
    }
    if !open.is_empty() {
        calls.push(open);
    }
    calls
}

impl CloudWatchSource {
    /// One GetMetricData call (all its pages); each answer comes back with
    /// its query's position.
    async fn fetch_batch(&self, call: &Call) -> Result<Vec<(usize, SeriesAnswer)>, CallFailure> {
        let (window, batch) = (call.window, &call.queries);
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
            let page = page.map_err(|err| CallFailure::Call(call_error(err)))?;
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
            datapoints = call.datapoints,
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

/// A denial is told apart from every other failure, so the report and the
/// alarms name a missing cloudwatch:GetMetricData; the SDK error stays the
/// source.
fn call_error<E>(err: SdkError<E, HttpResponse>) -> MetricError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let denied = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| ACCESS_DENIED_CODES.contains(&code));
    let source = Box::new(err);
    if denied {
        MetricError::AccessDenied { source }
    } else {
        MetricError::Service { source }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test timestamps are valid")
            .with_timezone(&Utc)
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: at(start),
            end: at(end),
        }
    }

    #[test]
    fn datapoints_are_the_periods_the_window_spans_rounded_up() {
        let minute = Duration::from_secs(60);
        let hour = window("2025-03-02T10:00:00Z", "2025-03-02T11:00:00Z");
        assert_eq!(datapoints(hour, minute), 60);
        assert_eq!(datapoints(hour, Duration::from_secs(3600)), 1);
        assert_eq!(datapoints(hour, Duration::from_secs(1)), 3600);
        // A part period still has a datapoint.
        let hour_and_a_bit = window("2025-03-02T10:00:00Z", "2025-03-02T11:01:00Z");
        assert_eq!(datapoints(hour_and_a_bit, Duration::from_secs(3600)), 2);
        let seconds = window("2025-03-02T10:00:00Z", "2025-03-02T10:00:10Z");
        assert_eq!(datapoints(seconds, minute), 1);
        // The longest experiment (30 days) at one-minute periods.
        let month = window("2025-03-01T00:00:00Z", "2025-03-31T00:00:00Z");
        assert_eq!(datapoints(month, minute), 43_200);
        assert_eq!(datapoints(month, Duration::from_secs(1)), 2_592_000);

        let empty = window("2025-03-02T10:00:00Z", "2025-03-02T10:00:00Z");
        assert_eq!(datapoints(empty, minute), 0);
        let inverted = window("2025-03-02T11:00:00Z", "2025-03-02T10:00:00Z");
        assert_eq!(datapoints(inverted, minute), 0);
        assert_eq!(datapoints(hour, Duration::ZERO), u64::MAX);
    }

    fn ranges(calls: &[std::ops::Range<usize>]) -> Vec<Vec<usize>> {
        calls.iter().map(|range| range.clone().collect()).collect()
    }

    #[test]
    fn pack_cuts_by_query_count() {
        assert_eq!(pack(&[]), Vec::<Vec<usize>>::new());
        assert_eq!(pack(&[1]), vec![vec![0]]);
        assert_eq!(pack(&[1; 500]), vec![(0..500).collect::<Vec<_>>()]);
        assert_eq!(
            pack(&[1; 1_100]),
            ranges(&[0..500, 500..1_000, 1_000..1_100])
        );
        // Queries with no datapoints still count against the 500.
        assert_eq!(pack(&[0; 501]), ranges(&[0..500, 500..501]));
    }

    #[test]
    fn pack_cuts_by_datapoints() {
        const MAX: u64 = MAX_DATAPOINTS_PER_CALL;
        // Exactly the limit fits in one call; one more datapoint does not.
        assert_eq!(pack(&[MAX / 2, MAX / 2]), vec![vec![0, 1]]);
        assert_eq!(pack(&[MAX / 2, MAX / 2, 1]), vec![vec![0, 1], vec![2]]);
        assert_eq!(pack(&[MAX, 1]), vec![vec![0], vec![1]]);
        // 30 days of minutes: two such queries fit, a third does not.
        assert_eq!(pack(&[43_200; 5]), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn a_query_too_big_for_any_call_goes_alone_and_the_rest_still_share() {
        const MAX: u64 = MAX_DATAPOINTS_PER_CALL;
        assert_eq!(pack(&[MAX + 1]), vec![vec![0]]);
        assert_eq!(
            pack(&[10, 2_592_000, 10, u64::MAX, 10]),
            vec![vec![1], vec![3], vec![0, 2, 4]]
        );
        assert_eq!(pack(&[MAX, MAX + 1, 1]), vec![vec![1], vec![0], vec![2]]);
    }

    /// Sizes from a fixed linear congruential sequence: varied, repeatable,
    /// a few of them too big for any call.
    fn sizes(count: usize, seed: u64) -> Vec<u64> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                match state >> 60 {
                    0 => 150_000,
                    1..=3 => (state >> 20) % 50_000,
                    _ => (state >> 20) % 500,
                }
            })
            .collect()
    }

    #[test]
    fn every_call_keeps_both_limits_and_every_query_is_in_one_call() {
        for seed in 0..50 {
            let sizes = sizes(3_000, seed);
            let calls = pack(&sizes);
            let mut seen = vec![0; sizes.len()];
            let mut shared: Vec<&Vec<usize>> = Vec::new();
            for call in &calls {
                assert!(!call.is_empty(), "seed {seed}: no empty call");
                assert!(call.len() <= MAX_QUERIES_PER_CALL, "seed {seed}");
                for &at in call {
                    seen[at] += 1;
                }
                let points: u64 = call.iter().map(|&at| sizes[at]).sum();
                if call.len() == 1 && points > MAX_DATAPOINTS_PER_CALL {
                    continue;
                }
                assert!(
                    points <= MAX_DATAPOINTS_PER_CALL,
                    "seed {seed}: {} queries hold {points} datapoints",
                    call.len()
                );
                assert!(
                    call.windows(2).all(|w| w[0] < w[1]),
                    "seed {seed}: in order"
                );
                shared.push(call);
            }
            assert!(seen.iter().all(|&n| n == 1), "seed {seed}: each query once");
            // Greedy: a call is cut only when the next query of the shared
            // calls would not have fitted.
            for pair in shared.windows(2) {
                let points: u64 = pair[0].iter().map(|&at| sizes[at]).sum();
                let following = sizes[pair[1][0]];
                assert!(
                    pair[0].len() == MAX_QUERIES_PER_CALL
                        || points + following > MAX_DATAPOINTS_PER_CALL,
                    "seed {seed}: a call of {} queries and {points} datapoints was cut early",
                    pair[0].len()
                );
            }
        }
    }
}
