//! The simulated CloudWatch: answers domain metric queries from the traffic
//! that has been published by now, with CloudWatch's statistics.

use std::collections::HashMap;

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
    cache: &mut PeriodCache,
) -> Result<Vec<Series>, MetricError> {
    check_queries(queries).map_err(|message| MetricError::Service {
        source: Box::new(CloudWatchRejection(message)),
    })?;
    Ok(queries
        .iter()
        .map(|query| answer(traffic, sagemaker, published, query, cache))
        .collect())
}

/// Completed periods' answers, per series: (experiment, role, metric,
/// statistic, period seconds, window start in Unix seconds) → the value of
/// period `k` of that grid (`None`: no datapoint). A published period never
/// changes in the simulated world, so the controller's tick-after-tick
/// queries over the whole experiment read these instead of redrawing and
/// re-merging every minute; complete periods arrive in order, so each
/// series' cache is a vector.
pub(crate) type PeriodCache =
    HashMap<(usize, u8, SageMakerMetric, Statistic, i64, i64), Vec<(DateTime<Utc>, Option<f64>)>>;

fn answer(
    traffic: &mut Traffic,
    sagemaker: &SageMaker,
    published: DateTime<Utc>,
    query: &SeriesQuery,
    cache: &mut PeriodCache,
) -> Series {
    let Some((index, experiment)) = sagemaker.find(&query.experiment.name) else {
        return Series::new();
    };
    let (role, metric) = (query.role, query.metric);
    let minutes = traffic.minutes_between(query.window.start, query.window.end, published);
    if minutes.is_empty() {
        return Series::new();
    }
    let period_minutes = (i64::try_from(query.period.as_secs()).unwrap_or(i64::MAX) / 60).max(1);
    let start = query.window.start;
    let latency_kind = match metric {
        SageMakerMetric::ModelLatency => Some(false),
        SageMakerMetric::OverheadLatency => Some(true),
        _ => None,
    };
    let start_minute = start.timestamp().div_euclid(60);
    let published_minute = published.timestamp().div_euclid(60);
    let window_end_minute = query.window.end.timestamp().div_euclid(60);
    let first_k = (minutes.start - start_minute).div_euclid(period_minutes);
    let last_k = (minutes.end - 1 - start_minute).div_euclid(period_minutes);
    let role_key = u8::from(role == shadowpilot_core::metrics::VariantRole::Shadow);
    let key = (
        index,
        role_key,
        metric,
        query.statistic,
        period_minutes * 60,
        start.timestamp(),
    );
    let mut cached = cache.remove(&key).unwrap_or_default();
    // Periods before the first simulated minute hold no data: final, empty.
    let before_data = usize::try_from(first_k).unwrap_or(0);
    while cached.len() < before_data {
        let k = cached.len() as i64;
        cached.push((
            start + chrono::Duration::seconds(k * period_minutes * 60),
            None,
        ));
    }
    let mut points = Vec::new();
    for k in first_k..=last_k {
        let slot = usize::try_from(k).unwrap_or(usize::MAX);
        if let Some((at, value)) = cached.get(slot) {
            if let Some(value) = value {
                points.push((*at, *value));
            }
            continue;
        }
        let period_start = start_minute + k * period_minutes;
        let period_end = (period_start + period_minutes).min(window_end_minute);
        let at = start + chrono::Duration::seconds(k * period_minutes * 60);
        // Only a period wholly inside the window and published is final.
        let complete = period_start >= minutes.start
            && period_start + period_minutes <= window_end_minute
            && period_start + period_minutes <= published_minute;
        let mut total = Counts::default();
        let mut histogram = WindowHistogram::default();
        let from = period_start.max(minutes.start);
        let to = period_end.min(minutes.end);
        for minute in from..to {
            let counts = traffic.counts(experiment, index, minute)[role_index(role)];
            total.invocations += counts.invocations;
            total.e4xx += counts.e4xx;
            total.e5xx += counts.e5xx;
            total.model += counts.model;
            if let Some(overhead) = latency_kind {
                if counts.invocations > 0 {
                    traffic.ensure_histogram(experiment, index, minute, role, overhead);
                    if let Some(minute_histogram) = traffic.histogram(index, minute, role, overhead)
                    {
                        histogram.add(minute_histogram);
                    }
                }
            }
        }
        let value = statistic(metric, query.statistic, &total, &histogram);
        if complete && cached.len() == slot {
            cached.push((at, value));
        }
        if let Some(value) = value {
            points.push((at, value));
        }
    }
    cache.insert(key, cached);
    // In order, so the map is built in one pass.
    points.into_iter().collect()
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
