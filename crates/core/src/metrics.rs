//! What the judge measures, in the domain's words: which series a policy
//! needs, the queries that ask a metric source for them, the series it
//! answers with, and the measurements folded from those. No I/O here, and
//! nothing about how CloudWatch spells any of it: namespaces, dimensions,
//! query ids and call limits belong to the adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::experiment::Experiment;

/// The endpoint metrics shadowpilot reads, per variant.
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

/// A statistic over the samples of one period. Percentiles are kept in
/// tenths so the type stays `Eq` and `Ord` (p99.9 is `Percentile(999)`).
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

    /// The percentile as a fraction of 100 (99.9 for p99.9), if this is one.
    pub fn as_percentile(self) -> Option<f64> {
        match self {
            Self::PercentileTenths(t) => Some(f64::from(t) / 10.0),
            _ => None,
        }
    }
}

/// For messages: `sum`, `sample count`, `p99`, `p99.9`.
impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sum => f.write_str("sum"),
            Self::Average => f.write_str("average"),
            Self::SampleCount => f.write_str("sample count"),
            Self::Minimum => f.write_str("minimum"),
            Self::Maximum => f.write_str("maximum"),
            Self::PercentileTenths(t) => write!(f, "p{}", f64::from(*t) / 10.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantRole {
    Production,
    Shadow,
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

/// Every judge reads the shadow's invocations: the evidence count and the
/// denominator of every rate.
pub const INVOCATIONS: SeriesKey = SeriesKey::new(SageMakerMetric::Invocations, Statistic::Sum);

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

/// The experiment a query is about: what a metric source needs to find the
/// traffic of its two variants. Queries of one experiment share one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeasuredExperiment {
    pub name: String,
    pub endpoint: String,
    pub production_variant: String,
    pub shadow_variant: String,
}

impl MeasuredExperiment {
    pub fn of(experiment: &Experiment) -> Self {
        Self {
            name: experiment.name.clone(),
            endpoint: experiment.endpoint_name.clone(),
            production_variant: experiment.production_variant.clone(),
            shadow_variant: experiment.shadow_variant.clone(),
        }
    }

    /// The name of the variant playing `role`.
    pub fn variant(&self, role: VariantRole) -> &str {
        match role {
            VariantRole::Production => &self.production_variant,
            VariantRole::Shadow => &self.shadow_variant,
        }
    }
}

/// One series to fetch: a statistic of a metric of one variant of one
/// experiment, one value per `period` from `window.start` to `window.end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    pub experiment: Arc<MeasuredExperiment>,
    pub role: VariantRole,
    pub metric: SageMakerMetric,
    pub statistic: Statistic,
    pub window: Window,
    pub period: Duration,
}

impl SeriesQuery {
    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.metric, self.statistic)
    }

    /// The name of the variant the query is about.
    pub fn variant(&self) -> &str {
        self.experiment.variant(self.role)
    }
}

/// The answer to one [`SeriesQuery`]: one value per period, keyed by the
/// period's start. A period without datapoints is absent, never zero.
pub type Series = BTreeMap<DateTime<Utc>, f64>;

/// The queries one experiment needs over `window`, read as a single period:
/// production's series first, then the shadow's, each in `needed` order.
pub fn queries_for(
    experiment: impl Into<Arc<MeasuredExperiment>>,
    needed: &BTreeSet<SeriesKey>,
    window: Window,
) -> Vec<SeriesQuery> {
    let experiment = experiment.into();
    // An inverted window gets a zero period, which every source refuses.
    let period = Duration::from_secs(u64::try_from(window.period_seconds()).unwrap_or(0));
    [VariantRole::Production, VariantRole::Shadow]
        .into_iter()
        .flat_map(|role| {
            let experiment = &experiment;
            needed.iter().map(move |key| SeriesQuery {
                experiment: Arc::clone(experiment),
                role,
                metric: key.metric,
                statistic: key.statistic,
                window,
                period,
            })
        })
        .collect()
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

    /// Folds one experiment's answered series, each next to its query, into
    /// measurements. The window is normally one period, so a series has at
    /// most one value; should it have more, counts add up, minimums keep the
    /// smallest and other statistics the largest value, which errs on the
    /// side of a worse shadow.
    pub fn collect<'a>(answers: impl IntoIterator<Item = (&'a SeriesQuery, &'a Series)>) -> Self {
        let mut measurements = Self::default();
        for (query, series) in answers {
            let Some(value) = combine(query.statistic, series.values().copied()) else {
                continue;
            };
            let target = match query.role {
                VariantRole::Production => &mut measurements.production,
                VariantRole::Shadow => &mut measurements.shadow,
            };
            target.set(query.key(), value);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        let start = DateTime::from_timestamp(1_740_909_600, 0).expect("in range");
        Window {
            start,
            end: start + chrono::Duration::hours(1),
        }
    }

    fn experiment() -> MeasuredExperiment {
        MeasuredExperiment {
            name: "churn".into(),
            endpoint: "churn-endpoint".into(),
            production_variant: "blue".into(),
            shadow_variant: "green".into(),
        }
    }

    const P99: SeriesKey = SeriesKey::new(
        SageMakerMetric::ModelLatency,
        Statistic::PercentileTenths(990),
    );
    const MINIMUM: SeriesKey = SeriesKey::new(SageMakerMetric::ModelLatency, Statistic::Minimum);

    #[test]
    fn one_period_per_window_production_first_sharing_one_experiment() {
        let queries = queries_for(experiment(), &BTreeSet::from([P99, INVOCATIONS]), window());
        let asked: Vec<_> = queries
            .iter()
            .map(|q| (q.role, q.key(), q.variant(), q.period.as_secs()))
            .collect();
        assert_eq!(
            asked,
            [
                (VariantRole::Production, INVOCATIONS, "blue", 3600),
                (VariantRole::Production, P99, "blue", 3600),
                (VariantRole::Shadow, INVOCATIONS, "green", 3600),
                (VariantRole::Shadow, P99, "green", 3600),
            ]
        );
        assert!(queries.iter().all(|q| q.window == window()));
        assert!(queries
            .iter()
            .all(|q| Arc::ptr_eq(&q.experiment, &queries[0].experiment)));
    }

    #[test]
    fn series_fold_counts_add_minimums_keep_the_least_others_the_most() {
        let needed = BTreeSet::from([P99, INVOCATIONS, MINIMUM]);
        let queries = queries_for(experiment(), &needed, window());
        let at = |minutes: i64| window().start + chrono::Duration::minutes(minutes);
        let series = |values: &[f64]| -> Series {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (at(i as i64), *v))
                .collect()
        };
        // Production's invocations, minimum and p99 (key order), then the shadow's.
        let answers = [
            series(&[100.0, 20.0]),
            series(&[12.0, 9.0]),
            series(&[300.0, f64::NAN, 410.0]),
            series(&[]),
            series(&[f64::NAN]),
            series(&[500.0]),
        ];
        let measured = Measurements::collect(queries.iter().zip(&answers));
        assert_eq!(
            measured.production,
            VariantMeasurements::default()
                .with(INVOCATIONS, 120.0)
                .with(P99, 410.0)
                .with(MINIMUM, 9.0)
        );
        // No datapoint (or none that is a number) is no measurement, not zero.
        assert_eq!(
            measured.shadow,
            VariantMeasurements::default().with(P99, 500.0)
        );
    }

    #[test]
    fn statistics_read_as_in_messages() {
        let shown: Vec<String> = [
            Statistic::Sum,
            Statistic::SampleCount,
            Statistic::percentile(99.0),
            Statistic::percentile(99.9),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(shown, ["sum", "sample count", "p99", "p99.9"]);
    }
}
