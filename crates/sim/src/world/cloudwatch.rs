//! The simulated CloudWatch: answers domain metric queries from the traffic
//! that has been published by now, with CloudWatch's statistics.

use chrono::{DateTime, Utc};

use super::sagemaker::SageMaker;
use super::traffic::{role_index, Counts, Traffic};
use crate::histogram::WindowHistogram;
use shadowpilot_core::metrics::{SageMakerMetric, Series, SeriesQuery, Statistic};
use shadowpilot_core::ports::MetricError;

/// Answers CloudWatch would refuse a GetMetricData call with.
#[derive(Debug, thiserror::Error)]
#[error("simulated CloudWatch refused GetMetricData: {0}")]
pub(crate) struct CloudWatchRejection(String);

/// Answers every query, in order, from the minutes published by `published`.
pub(crate) fn fetch(
    traffic: &mut Traffic,
    sagemaker: &SageMaker,
    published: DateTime<Utc>,
    queries: &[SeriesQuery],
) -> Result<Vec<Series>, MetricError> {
    check_queries(queries).map_err(|message| MetricError::Service {
        source: Box::new(CloudWatchRejection(message)),
    })?;
    Ok(queries
        .iter()
        .map(|query| answer(traffic, sagemaker, published, query))
        .collect())
}

fn answer(
    traffic: &mut Traffic,
    sagemaker: &SageMaker,
    published: DateTime<Utc>,
    query: &SeriesQuery,
) -> Series {
    let mut points = Series::new();
    let Some((index, experiment)) = sagemaker.find(&query.experiment.name) else {
        return points;
    };
    let (role, metric) = (query.role, query.metric);
    let minutes = traffic.minutes_between(query.window.start, query.window.end, published);
    let period_minutes = (i64::try_from(query.period.as_secs()).unwrap_or(i64::MAX) / 60).max(1);
    let start = query.window.start;
    let latency_kind = match metric {
        SageMakerMetric::ModelLatency => Some(false),
        SageMakerMetric::OverheadLatency => Some(true),
        _ => None,
    };
    // The controller asks for one period as long as the window: served
    // from the moving merged window (counts ride along with latency).
    let start_minute = start.timestamp().div_euclid(60);
    let single = minutes.is_empty() || minutes.end - 1 - start_minute < period_minutes;
    if single && minutes.start >= start_minute {
        let overhead = latency_kind == Some(true);
        let slot = u8::from(overhead);
        let merged = traffic.merged(experiment, index, role, overhead, slot, minutes.clone());
        if let Some(value) = statistic(metric, query.statistic, &merged.counts, &merged.histogram) {
            let k = (minutes.start - start_minute).div_euclid(period_minutes);
            points.insert(
                start + chrono::Duration::seconds(k * period_minutes * 60),
                value,
            );
        }
        traffic.keep(index, role, slot, merged);
        return points;
    }
    let mut bucket: Option<(i64, Counts, WindowHistogram)> = None;
    let flush = |bucket: Option<(i64, Counts, WindowHistogram)>, points: &mut Series| {
        if let Some((k, counts, histogram)) = bucket {
            let at = start + chrono::Duration::seconds(k * period_minutes * 60);
            if let Some(value) = statistic(metric, query.statistic, &counts, &histogram) {
                points.insert(at, value);
            }
        }
    };
    for minute in minutes {
        let k = (minute * 60 - start.timestamp()).div_euclid(period_minutes * 60);
        if bucket.as_ref().is_some_and(|(current, _, _)| *current != k) {
            flush(bucket.take(), &mut points);
        }
        let (_, total, histogram) =
            bucket.get_or_insert_with(|| (k, Counts::default(), WindowHistogram::default()));
        let counts = traffic.counts(experiment, index, minute)[role_index(role)];
        total.invocations += counts.invocations;
        total.e4xx += counts.e4xx;
        total.e5xx += counts.e5xx;
        total.model += counts.model;
        if let Some(overhead) = latency_kind {
            if counts.invocations > 0 {
                traffic.ensure_histogram(experiment, index, minute, role, overhead);
                if let Some(minute_histogram) = traffic.histogram(index, minute, role, overhead) {
                    histogram.add(minute_histogram);
                }
            }
        }
    }
    flush(bucket, &mut points);
    points
}

fn statistic(
    metric: SageMakerMetric,
    statistic: Statistic,
    counts: &Counts,
    histogram: &WindowHistogram,
) -> Option<f64> {
    let n = counts.invocations;
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let errors = match metric {
        SageMakerMetric::Invocations => n,
        SageMakerMetric::Invocation4XXErrors => counts.e4xx,
        SageMakerMetric::Invocation5XXErrors => counts.e5xx,
        SageMakerMetric::InvocationModelErrors => counts.model,
        SageMakerMetric::ModelLatency | SageMakerMetric::OverheadLatency => {
            return match statistic {
                Statistic::Sum => Some(histogram.sum()),
                Statistic::SampleCount => Some(histogram.count() as f64),
                Statistic::Average => histogram.average(),
                Statistic::Minimum => histogram.minimum(),
                Statistic::Maximum => histogram.maximum(),
                Statistic::PercentileTenths(_) => histogram.percentile(statistic.as_percentile()?),
            };
        }
    };
    // Count metrics are published as one sample per request: 1 when it
    // counts (an invocation, an error), 0 otherwise.
    let ones = errors as f64;
    Some(match statistic {
        Statistic::Sum => ones,
        Statistic::SampleCount => nf,
        Statistic::Average => ones / nf,
        Statistic::Minimum => f64::from(u8::from(errors == n)),
        Statistic::Maximum => f64::from(u8::from(errors > 0)),
        Statistic::PercentileTenths(_) => {
            let p = statistic.as_percentile()? / 100.0;
            f64::from(u8::from(p * nf > nf - ones))
        }
    })
}

/// The simulator's own rules for a query; CloudWatch's wire rules (ids,
/// queries per call) are the adapter's business and are not repeated here.
fn check_queries(queries: &[SeriesQuery]) -> Result<(), String> {
    for (index, query) in queries.iter().enumerate() {
        let what = || {
            format!(
                "query {index} ({} {} {:?} {})",
                query.experiment.name, query.role, query.metric, query.statistic
            )
        };
        let seconds = query.period.as_secs();
        if query.period.subsec_nanos() != 0 || seconds == 0 || seconds % 60 != 0 {
            return Err(format!(
                "{}: period {} s is not a positive multiple of 60",
                what(),
                query.period.as_secs_f64()
            ));
        }
        if query.window.end <= query.window.start {
            return Err(format!(
                "{}: EndTime {} is not after StartTime {}",
                what(),
                query.window.end,
                query.window.start
            ));
        }
    }
    Ok(())
}
