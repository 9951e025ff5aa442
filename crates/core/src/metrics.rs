//! Which CloudWatch series a policy needs, the queries that fetch them, and
//! the measurements the judge reads back. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::Datapoints;

pub const SAGEMAKER_NAMESPACE: &str = "AWS/SageMaker";
/// GetMetricData accepts at most this many queries per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// The raw CloudWatch metrics shadowpilot reads, all in namespace
/// `AWS/SageMaker` with dimensions EndpointName and VariantName.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SageMakerMetric {
    Invocations,
    Invocation4XXErrors,
    Invocation5XXErrors,
    InvocationModelErrors,
    /// Microseconds.
    ModelLatency,
    /// Microseconds.
    OverheadLatency,
}

impl SageMakerMetric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Invocations => "Invocations",
            Self::Invocation4XXErrors => "Invocation4XXErrors",
            Self::Invocation5XXErrors => "Invocation5XXErrors",
            Self::InvocationModelErrors => "InvocationModelErrors",
            Self::ModelLatency => "ModelLatency",
            Self::OverheadLatency => "OverheadLatency",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Invocations,
            Self::Invocation4XXErrors,
            Self::Invocation5XXErrors,
            Self::InvocationModelErrors,
            Self::ModelLatency,
            Self::OverheadLatency,
        ]
        .into_iter()
        .find(|metric| metric.name() == name)
    }

    fn id_fragment(self) -> &'static str {
        match self {
            Self::Invocations => "inv",
            Self::Invocation4XXErrors => "e4xx",
            Self::Invocation5XXErrors => "e5xx",
            Self::InvocationModelErrors => "emodel",
            Self::ModelLatency => "lat",
            Self::OverheadLatency => "ovh",
        }
    }
}

/// A CloudWatch statistic. Percentiles are kept in tenths so the type stays
/// `Eq` and `Ord` (p99.9 is `Percentile(999)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Statistic {
    Sum,
    Average,
    SampleCount,
    Minimum,
    Maximum,
    PercentileTenths(u16),
}

impl Statistic {
    pub fn percentile(p: f64) -> Self {
        Self::PercentileTenths((p * 10.0).round() as u16)
    }

    /// The name CloudWatch expects in `MetricStat.Stat`.
    pub fn cloudwatch_name(self) -> String {
        match self {
            Self::Sum => "Sum".into(),
            Self::Average => "Average".into(),
            Self::SampleCount => "SampleCount".into(),
            Self::Minimum => "Minimum".into(),
            Self::Maximum => "Maximum".into(),
            Self::PercentileTenths(t) if t % 10 == 0 => format!("p{}", t / 10),
            Self::PercentileTenths(t) => format!("p{}.{}", t / 10, t % 10),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "Sum" => Some(Self::Sum),
            "Average" => Some(Self::Average),
            "SampleCount" => Some(Self::SampleCount),
            "Minimum" => Some(Self::Minimum),
            "Maximum" => Some(Self::Maximum),
            other => {
                let p: f64 = other.strip_prefix('p')?.parse().ok()?;
                (p > 0.0 && p < 100.0).then(|| Self::percentile(p))
            }
        }
    }

    /// The percentile as a fraction of 100 (99.9 for p99.9), if this is one.
    pub fn as_percentile(self) -> Option<f64> {
        match self {
            Self::PercentileTenths(t) => Some(f64::from(t) / 10.0),
            _ => None,
        }
    }

    fn id_fragment(self) -> String {
        self.cloudwatch_name().to_lowercase().replace('.', "_")
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cloudwatch_name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantRole {
    Production,
    Shadow,
}

impl VariantRole {
    fn id_fragment(self) -> &'static str {
        match self {
            Self::Production => "p",
            Self::Shadow => "s",
        }
    }
}

impl fmt::Display for VariantRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Production => "production",
            Self::Shadow => "shadow",
        })
    }
}

/// One series a judge needs: a metric and a statistic of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub metric: SageMakerMetric,
    pub statistic: Statistic,
}

impl SeriesKey {
    pub const fn new(metric: SageMakerMetric, statistic: Statistic) -> Self {
        Self { metric, statistic }
    }
}

/// The time range evidence is taken from. Both ends sit on whole minutes and
/// the range is read as one period, so percentiles cover the whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn period_seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }
}

/// One GetMetricData `MetricStat` query, with the window it must be asked
/// over. Queries of the same window can share a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    /// Starts with a lowercase letter, then `[a-zA-Z0-9_]`; unique per tick.
    pub id: String,
    pub namespace: String,
    pub metric_name: String,
    /// (name, value) pairs, in the order CloudWatch is sent them.
    pub dimensions: Vec<(String, String)>,
    pub statistic: Statistic,
    pub period_seconds: i64,
    pub window: Window,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricSeries {
    pub id: String,
    pub points: Datapoints,
}

/// The queries for one experiment's two variants, and where their answers go.
#[derive(Debug, Clone)]
pub struct ExperimentQueries {
    pub queries: Vec<MetricQuery>,
    /// query id → (variant, series)
    pub routes: BTreeMap<String, (VariantRole, SeriesKey)>,
}

/// Builds the queries one experiment needs. `prefix` keeps ids unique across
/// experiments in the same tick (use the experiment's position: `e0`, `e1`, ...).
pub fn queries_for(
    prefix: &str,
    endpoint_name: &str,
    variants: [(VariantRole, &str); 2],
    needed: &BTreeSet<SeriesKey>,
    window: Window,
) -> ExperimentQueries {
    let mut queries = Vec::new();
    let mut routes = BTreeMap::new();
    for (role, variant_name) in variants {
        for key in needed {
            let id = format!(
                "{prefix}_{}_{}_{}",
                role.id_fragment(),
                key.metric.id_fragment(),
                key.statistic.id_fragment()
            );
            queries.push(MetricQuery {
                id: id.clone(),
                namespace: SAGEMAKER_NAMESPACE.to_string(),
                metric_name: key.metric.name().to_string(),
                dimensions: vec![
                    ("EndpointName".to_string(), endpoint_name.to_string()),
                    ("VariantName".to_string(), variant_name.to_string()),
                ],
                statistic: key.statistic,
                period_seconds: window.period_seconds(),
                window,
            });
            routes.insert(id, (role, *key));
        }
    }
    ExperimentQueries { queries, routes }
}

/// What was measured for one variant over the window: `None` means CloudWatch
/// had no datapoint, which is not the same as zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantMeasurements {
    values: BTreeMap<SeriesKey, f64>,
}

impl VariantMeasurements {
    pub fn get(&self, key: SeriesKey) -> Option<f64> {
        self.values.get(&key).copied()
    }

    pub fn set(&mut self, key: SeriesKey, value: f64) {
        self.values.insert(key, value);
    }

    pub fn with(mut self, key: SeriesKey, value: f64) -> Self {
        self.set(key, value);
        self
    }
}

/// Both variants' measurements over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    pub production: VariantMeasurements,
    pub shadow: VariantMeasurements,
}

impl Measurements {
    pub fn variant(&self, role: VariantRole) -> &VariantMeasurements {
        match role {
            VariantRole::Production => &self.production,
            VariantRole::Shadow => &self.shadow,
        }
    }

    /// Folds the answered series of one experiment into measurements. The
    /// window is one period, so a series normally has at most one point;
    /// should CloudWatch split it, counts add up and other statistics keep the
    /// largest value, which errs on the side of a worse shadow.
    pub fn collect<'a>(
        routes: &BTreeMap<String, (VariantRole, SeriesKey)>,
        series: impl IntoIterator<Item = &'a MetricSeries>,
    ) -> Self {
        let mut measurements = Self::default();
        for answered in series {
            let Some(&(role, key)) = routes.get(&answered.id) else {
                continue;
            };
            let Some(value) = combine(key.statistic, answered.points.values().copied()) else {
                continue;
            };
            let target = match role {
                VariantRole::Production => &mut measurements.production,
                VariantRole::Shadow => &mut measurements.shadow,
            };
            target.set(key, value);
        }
        measurements
    }
}

fn combine(statistic: Statistic, values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values = values.filter(|v| v.is_finite());
    let first = values.next()?;
    Some(match statistic {
        Statistic::Sum | Statistic::SampleCount => values.fold(first, |acc, v| acc + v),
        Statistic::Minimum => values.fold(first, f64::min),
        _ => values.fold(first, f64::max),
    })
}

/// Splits queries into GetMetricData calls: one group per window (a call has
/// a single StartTime and EndTime), each cut into chunks of at most 500.
pub fn batch_queries(queries: &[MetricQuery]) -> Vec<Vec<MetricQuery>> {
    let mut by_window: BTreeMap<Window, Vec<MetricQuery>> = BTreeMap::new();
    for query in queries {
        by_window
            .entry(query.window)
            .or_default()
            .push(query.clone());
    }
    by_window
        .into_values()
        .flat_map(|group| {
            group
                .chunks(MAX_QUERIES_PER_CALL)
                .map(<[MetricQuery]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}
