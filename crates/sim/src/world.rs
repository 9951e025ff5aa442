//! The simulated SageMaker and CloudWatch: one world behind a mutex, on a
//! virtual clock that the runner moves. It implements the same ports as the
//! AWS adapters, so the controller cannot tell the difference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::histogram::{MinuteHistogram, WindowHistogram};
use super::rng::{fnv1a, Draws, Purpose};
use super::scenario::{Conditions, ExperimentSpec, Scenario, VariantModel};
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentSummary, ExperimentUpdate, SamplingUpdate,
};
use shadowpilot_core::metrics::{SageMakerMetric, Series, SeriesQuery, Statistic, VariantRole};
use shadowpilot_core::ports::{ExperimentStore, MetricError, MetricSource, StoreError};
use shadowpilot_core::schedule::chrono_duration;
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

const ACCOUNT_ARN: &str = "arn:aws:sagemaker:us-east-1:123456789012:inference-experiment";
/// Minutes older than this behind the clock are dropped from the cache; a
/// query that reaches further back recomputes them (same seed, same answer).
const RETAIN_MINUTES: i64 = 24 * 60;

/// A request as UpdateInferenceExperiment takes it, including the StartTime
/// that the controller never sends but AWS's rules are about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimUpdate {
    pub name: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub sampling: Option<SamplingUpdate>,
}

impl From<&ExperimentUpdate> for SimUpdate {
    fn from(update: &ExperimentUpdate) -> Self {
        Self {
            name: update.name.clone(),
            start_time: None,
            end_time: update.end_time,
            sampling: update.sampling.clone(),
        }
    }
}

/// One UpdateInferenceExperiment call and what the simulated SageMaker said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub at: DateTime<Utc>,
    pub request: SimUpdate,
    /// `None` when accepted; else the error's label and message.
    pub rejected: Option<(String, String)>,
}

/// What really happened on one variant over a stretch of time, regardless of
/// what CloudWatch has published yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct VariantObservation {
    pub invocations: u64,
    pub p99_ms: Option<f64>,
    pub error_5xx_percent: Option<f64>,
    pub model_error_percent: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Observation {
    pub production: VariantObservation,
    pub shadow: VariantObservation,
}

/// Answers CloudWatch would refuse a GetMetricData call with.
#[derive(Debug, thiserror::Error)]
#[error("simulated CloudWatch refused GetMetricData: {0}")]
pub struct CloudWatchRejection(pub String);

/// The simulated world. Cloning shares it.
#[derive(Clone)]
pub struct SimWorld {
    inner: Arc<Mutex<World>>,
}

struct World {
    now: DateTime<Utc>,
    seed: u64,
    first_minute: i64,
    update_takes: chrono::Duration,
    publish_delay: chrono::Duration,
    experiments: Vec<SimExperiment>,
    by_name: HashMap<String, usize>,
    writes: Vec<WriteRecord>,
    /// The last window merged per (experiment, role, overhead?): the
    /// controller asks for a window that moved by one tick, so it is cheaper
    /// to take out the minutes that left and add those that came.
    windows: HashMap<(usize, usize, u8), MergedWindow>,
}

#[derive(Default)]
struct MergedWindow {
    minutes: std::ops::Range<i64>,
    counts: Counts,
    histogram: WindowHistogram,
}

struct SimExperiment {
    spec: ExperimentSpec,
    arn: String,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    sampling: u8,
    /// (in force from, percentage); the first entry is the creation.
    sampling_history: Vec<(DateTime<Utc>, u8)>,
    end_time_history: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    created: DateTime<Utc>,
    last_modified: DateTime<Utc>,
    updating_until: Option<DateTime<Utc>>,
    keys: [u64; 2],
    /// StartTime and EndTime as Unix seconds, and where each segment of
    /// conditions begins in Unix minutes: compared once per minute drawn.
    start_secs: i64,
    end_secs: i64,
    segment_minutes: Vec<i64>,
    /// Per minute since the scenario start, filled lazily.
    minutes: Vec<Option<Box<MinuteData>>>,
    evicted_to: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    invocations: u64,
    e4xx: u64,
    e5xx: u64,
    model: u64,
}

impl Counts {
    fn change(&mut self, other: &Counts, adding: bool) {
        let apply = |total: &mut u64, part: u64| {
            *total = if adding { *total + part } else { *total - part };
        };
        apply(&mut self.invocations, other.invocations);
        apply(&mut self.e4xx, other.e4xx);
        apply(&mut self.e5xx, other.e5xx);
        apply(&mut self.model, other.model);
    }
}

#[derive(Debug, Default)]
struct MinuteData {
    counts: [Counts; 2],
    latency: [Option<MinuteHistogram>; 2],
    overhead: [Option<MinuteHistogram>; 2],
}

fn role_index(role: VariantRole) -> usize {
    match role {
        VariantRole::Production => 0,
        VariantRole::Shadow => 1,
    }
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

impl SimExperiment {
    fn status(&self, now: DateTime<Utc>) -> ExperimentStatus {
        if now >= self.end_time {
            ExperimentStatus::Completed
        } else if self.updating_until.is_some_and(|until| now < until) {
            ExperimentStatus::Updating
        } else if now < self.start_time {
            ExperimentStatus::Created
        } else {
            ExperimentStatus::Running
        }
    }

    fn sampling_at(&self, at: DateTime<Utc>) -> u8 {
        let index = self
            .sampling_history
            .partition_point(|(from, _)| *from <= at);
        self.sampling_history[index.saturating_sub(1)].1
    }

    fn conditions(&self, minute: i64) -> &Conditions {
        let index = self
            .segment_minutes
            .partition_point(|&from| from <= minute)
            .saturating_sub(1);
        &self.spec.segments[index].1
    }

    fn model(&self, minute: i64, role: VariantRole) -> &VariantModel {
        let conditions = self.conditions(minute);
        match role {
            VariantRole::Production => &conditions.production,
            VariantRole::Shadow => &conditions.shadow,
        }
    }
}

impl World {
    fn experiment(&self, name: &str) -> Result<usize, StoreError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_string(),
            })
    }

    /// The minute's counts, drawn on first use.
    fn counts(&mut self, index: usize, minute: i64) -> [Counts; 2] {
        let slot = (minute - self.first_minute) as usize;
        if let Some(Some(data)) = self.experiments[index].minutes.get(slot) {
            return data.counts;
        }
        let seed = self.seed;
        let experiment = &mut self.experiments[index];
        let at_secs = minute * 60;
        // One stream per endpoint and minute, production first, so the
        // production draws never depend on the shadow's sampling.
        let mut draws = Draws::new(seed, experiment.keys[0], minute, Purpose::Traffic);
        let production_model = experiment.model(minute, VariantRole::Production);
        let production = draws.poisson(experiment.conditions(minute).mean_requests(at_secs));
        let mut counts = [Counts::default(); 2];
        counts[0] = Counts {
            invocations: production,
            e4xx: draws.binomial(production, production_model.rate_4xx),
            e5xx: draws.binomial(production, production_model.rate_5xx),
            model: draws.binomial(production, production_model.rate_model),
        };
        if experiment.start_secs <= at_secs && at_secs < experiment.end_secs {
            let fraction = f64::from(experiment.sampling_at(minute_start(minute))) / 100.0;
            let shadow = draws.binomial(production, fraction);
            let shadow_model = experiment.model(minute, VariantRole::Shadow);
            counts[1] = Counts {
                invocations: shadow,
                e4xx: draws.binomial(shadow, shadow_model.rate_4xx),
                e5xx: draws.binomial(shadow, shadow_model.rate_5xx),
                model: draws.binomial(shadow, shadow_model.rate_model),
            };
        }
        if experiment.minutes.len() <= slot {
            experiment.minutes.resize_with(slot + 1, || None);
        }
        experiment.minutes[slot] = Some(Box::new(MinuteData {
            counts,
            ..MinuteData::default()
        }));
        counts
    }

    /// Makes sure the minute's latency histogram exists (after its counts).
    fn ensure_histogram(&mut self, index: usize, minute: i64, role: VariantRole, overhead: bool) {
        let counts = self.counts(index, minute);
        let seed = self.seed;
        let slot = (minute - self.first_minute) as usize;
        let experiment = &mut self.experiments[index];
        let i = role_index(role);
        let model = experiment.model(minute, role);
        let (table, purpose) = if overhead {
            (model.overhead.table.clone(), Purpose::OverheadLatency)
        } else {
            (model.latency.table.clone(), Purpose::ModelLatency)
        };
        let key = experiment.keys[i];
        let Some(Some(data)) = experiment.minutes.get_mut(slot) else {
            return;
        };
        let target = if overhead {
            &mut data.overhead[i]
        } else {
            &mut data.latency[i]
        };
        if target.is_none() {
            let mut draws = Draws::new(seed, key, minute, purpose);
            *target = Some(table.sample(counts[i].invocations, &mut draws));
        }
    }

    fn histogram(
        &self,
        index: usize,
        minute: i64,
        role: VariantRole,
        overhead: bool,
    ) -> Option<&MinuteHistogram> {
        let slot = (minute - self.first_minute) as usize;
        let data = self.experiments[index].minutes.get(slot)?.as_ref()?;
        let i = role_index(role);
        if overhead {
            data.overhead[i].as_ref()
        } else {
            data.latency[i].as_ref()
        }
    }

    /// Whole minutes in [from, to) that have ended by `until` and lie in the
    /// simulated time.
    fn minutes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> std::ops::Range<i64> {
        let first =
            from.timestamp().div_euclid(60) + i64::from(from.timestamp().rem_euclid(60) != 0);
        let first = first.max(self.first_minute);
        let end = to.timestamp().div_euclid(60) + i64::from(to.timestamp().rem_euclid(60) != 0);
        let complete = until.timestamp().div_euclid(60);
        first..end.min(complete).max(first)
    }

    fn answer(&mut self, query: &SeriesQuery) -> Series {
        let mut points = Series::new();
        let Some(&index) = self.by_name.get(&query.experiment.name) else {
            return points;
        };
        let (role, metric) = (query.role, query.metric);
        let published = self.now - self.publish_delay;
        let minutes = self.minutes_between(query.window.start, query.window.end, published);
        let period_minutes =
            (i64::try_from(query.period.as_secs()).unwrap_or(i64::MAX) / 60).max(1);
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
            let merged = self.merged(index, role, overhead, slot, minutes.clone());
            if let Some(value) =
                statistic(metric, query.statistic, &merged.counts, &merged.histogram)
            {
                let k = (minutes.start - start_minute).div_euclid(period_minutes);
                points.insert(
                    start + chrono::Duration::seconds(k * period_minutes * 60),
                    value,
                );
            }
            self.windows.insert((index, role_index(role), slot), merged);
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
            let counts = self.counts(index, minute)[role_index(role)];
            total.invocations += counts.invocations;
            total.e4xx += counts.e4xx;
            total.e5xx += counts.e5xx;
            total.model += counts.model;
            if let Some(overhead) = latency_kind {
                if counts.invocations > 0 {
                    self.ensure_histogram(index, minute, role, overhead);
                    if let Some(minute_histogram) = self.histogram(index, minute, role, overhead) {
                        histogram.add(minute_histogram);
                    }
                }
            }
        }
        flush(bucket, &mut points);
        points
    }

    /// The latency samples of `minutes`, merged, reusing the last window of
    /// the same series. The caller puts the result back in `windows`.
    fn merged(
        &mut self,
        index: usize,
        role: VariantRole,
        overhead: bool,
        slot: u8,
        minutes: std::ops::Range<i64>,
    ) -> MergedWindow {
        let key = (index, role_index(role), slot);
        let cached = self.windows.remove(&key).unwrap_or_default();
        let overlap = cached.minutes.start < minutes.end && minutes.start < cached.minutes.end;
        let changes =
            (cached.minutes.start - minutes.start).abs() + (cached.minutes.end - minutes.end).abs();
        let (mut merged, add, remove) = if overlap && changes < minutes.end - minutes.start {
            let add = [
                minutes.start..cached.minutes.start,
                cached.minutes.end..minutes.end,
            ];
            let remove = [
                cached.minutes.start..minutes.start,
                minutes.end..cached.minutes.end,
            ];
            (cached, add, remove)
        } else {
            (
                MergedWindow::default(),
                [minutes.clone(), 0..0],
                [0..0, 0..0],
            )
        };
        merged.minutes = minutes;
        for (ranges, adding) in [(add, true), (remove, false)] {
            for minute in ranges.into_iter().flatten() {
                let counts = self.counts(index, minute)[role_index(role)];
                if counts.invocations == 0 {
                    continue;
                }
                merged.counts.change(&counts, adding);
                self.ensure_histogram(index, minute, role, overhead);
                if let Some(h) = self.histogram(index, minute, role, overhead) {
                    if adding {
                        merged.histogram.add(h);
                    } else {
                        merged.histogram.subtract(h);
                    }
                }
            }
        }
        merged
    }

    fn observe(&mut self, index: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Observation {
        let minutes = self.minutes_between(from, to, self.now);
        let mut result = [VariantObservation::default(); 2];
        for role in [VariantRole::Production, VariantRole::Shadow] {
            let i = role_index(role);
            // Slot 2: the observer's own moving window, apart from the controller's.
            let merged = self.merged(index, role, false, 2, minutes.clone());
            let total = merged.counts;
            let histogram = &merged.histogram;
            let percent = |n: u64| {
                (total.invocations > 0).then(|| n as f64 * 100.0 / total.invocations as f64)
            };
            result[i] = VariantObservation {
                invocations: total.invocations,
                p99_ms: histogram.percentile(99.0).map(|us| us / 1000.0),
                error_5xx_percent: percent(total.e5xx),
                model_error_percent: percent(total.model),
            };
            self.windows.insert((index, i, 2), merged);
        }
        Observation {
            production: result[0],
            shadow: result[1],
        }
    }

    fn evict(&mut self) {
        let keep_from = (self.now.timestamp().div_euclid(60) - RETAIN_MINUTES - self.first_minute)
            .max(0) as usize;
        for experiment in &mut self.experiments {
            let to = keep_from.min(experiment.minutes.len());
            for slot in experiment.evicted_to..to {
                experiment.minutes[slot] = None;
            }
            experiment.evicted_to = experiment.evicted_to.max(to);
        }
    }

    fn check_update(&self, index: usize, request: &SimUpdate) -> Result<(), StoreError> {
        let experiment = &self.experiments[index];
        let name = &request.name;
        let rejected = |message: String| StoreError::Rejected {
            name: name.clone(),
            message,
        };
        let status = experiment.status(self.now);
        if !matches!(
            status,
            ExperimentStatus::Created | ExperimentStatus::Running
        ) {
            return Err(StoreError::Conflict {
                name: name.clone(),
                message: format!("ConflictException: an inference experiment in status {status} cannot be updated"),
            });
        }
        if request.start_time.is_none() && request.end_time.is_none() && request.sampling.is_none()
        {
            return Err(rejected(
                "ValidationException: the request changes nothing".into(),
            ));
        }
        if let Some(start) = request.start_time {
            if status == ExperimentStatus::Running {
                return Err(rejected(format!(
                    "ValidationException: StartTime can change only while the experiment is Created; it is Running since {}",
                    experiment.start_time.to_rfc3339()
                )));
            }
            if start < self.now {
                return Err(rejected(format!(
                    "ValidationException: StartTime {} is in the past",
                    start.to_rfc3339()
                )));
            }
        }
        let start = request.start_time.unwrap_or(experiment.start_time);
        let end = request.end_time.unwrap_or(experiment.end_time);
        if request.end_time.is_some() || request.start_time.is_some() {
            if end <= self.now {
                return Err(rejected(format!(
                    "ValidationException: EndTime {} is in the past",
                    end.to_rfc3339()
                )));
            }
            if end <= start {
                return Err(rejected(format!(
                    "ValidationException: EndTime {} is not after StartTime {}",
                    end.to_rfc3339(),
                    start.to_rfc3339()
                )));
            }
            if end - start > chrono_duration(MAX_EXPERIMENT_DURATION) {
                return Err(rejected(format!(
                    "ValidationException: EndTime {} is more than 30 days after StartTime {}",
                    end.to_rfc3339(),
                    start.to_rfc3339()
                )));
            }
        }
        if let Some(sampling) = &request.sampling {
            if sampling.source_variant != experiment.spec.production_variant {
                return Err(rejected(format!(
                    "ValidationException: SourceModelVariantName {} is not the production variant {}",
                    sampling.source_variant, experiment.spec.production_variant
                )));
            }
            if sampling.shadow_variant != experiment.spec.shadow_variant {
                return Err(rejected(format!(
                    "ValidationException: ShadowModelVariantName {} is not the shadow variant {}",
                    sampling.shadow_variant, experiment.spec.shadow_variant
                )));
            }
            if !(1..=100).contains(&sampling.percentage) {
                return Err(rejected(format!(
                    "ValidationException: SamplingPercentage {} is outside 1–100 (the simulator refuses 0, which AWS may or may not accept)",
                    sampling.percentage
                )));
            }
        }
        Ok(())
    }

    fn update(&mut self, request: &SimUpdate) -> Result<(), StoreError> {
        let result = self.experiment(&request.name).and_then(|index| {
            self.check_update(index, request)?;
            let now = self.now;
            let takes = self.update_takes;
            let experiment = &mut self.experiments[index];
            if let Some(start) = request.start_time {
                experiment.start_time = start;
                experiment.start_secs = start.timestamp();
            }
            if let Some(end) = request.end_time {
                if end != experiment.end_time {
                    experiment.end_time_history.push((now, end));
                }
                experiment.end_time = end;
                experiment.end_secs = end.timestamp();
            }
            if let Some(sampling) = &request.sampling {
                let effective = now + takes;
                experiment
                    .sampling_history
                    .retain(|(from, _)| *from < effective);
                experiment
                    .sampling_history
                    .push((effective, sampling.percentage));
                experiment.sampling = sampling.percentage;
            }
            experiment.last_modified = now;
            experiment.updating_until = (takes > chrono::Duration::zero()).then_some(now + takes);
            Ok(())
        });
        self.writes.push(WriteRecord {
            at: self.now,
            request: request.clone(),
            rejected: result
                .as_ref()
                .err()
                .map(|e| (e.label().to_string(), e.to_string())),
        });
        result
    }

    fn describe(&self, name: &str) -> Result<Experiment, StoreError> {
        let experiment = &self.experiments[self.experiment(name)?];
        Ok(Experiment {
            name: experiment.spec.name.clone(),
            arn: experiment.arn.clone(),
            status: experiment.status(self.now),
            endpoint_name: experiment.spec.endpoint.clone(),
            production_variant: experiment.spec.production_variant.clone(),
            shadow_variant: experiment.spec.shadow_variant.clone(),
            sampling_percentage: experiment.sampling,
            start_time: Some(experiment.start_time),
            end_time: Some(experiment.end_time),
            last_modified: experiment.last_modified,
            tags: experiment.spec.tags.clone(),
        })
    }
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

impl SimWorld {
    pub fn new(scenario: &Scenario) -> Self {
        let mut experiments = Vec::new();
        let mut by_name = HashMap::new();
        for (index, spec) in scenario.experiments.iter().enumerate() {
            by_name.insert(spec.name.clone(), index);
            experiments.push(SimExperiment {
                arn: format!("{ACCOUNT_ARN}/{}", spec.name),
                start_time: spec.start_time,
                end_time: spec.end_time,
                sampling: spec.sampling,
                sampling_history: vec![(scenario.start, spec.sampling)],
                end_time_history: vec![(scenario.start, spec.end_time)],
                created: scenario.start,
                last_modified: scenario.start,
                updating_until: None,
                keys: [
                    fnv1a(&format!("{}/{}", spec.endpoint, spec.production_variant)),
                    fnv1a(&format!("{}/{}", spec.endpoint, spec.shadow_variant)),
                ],
                start_secs: spec.start_time.timestamp(),
                end_secs: spec.end_time.timestamp(),
                segment_minutes: spec
                    .segments
                    .iter()
                    .map(|(from, _)| from.timestamp().div_euclid(60))
                    .collect(),
                minutes: Vec::new(),
                evicted_to: 0,
                spec: spec.clone(),
            });
        }
        Self {
            inner: Arc::new(Mutex::new(World {
                now: scenario.start,
                seed: scenario.seed,
                first_minute: scenario.start.timestamp().div_euclid(60),
                update_takes: chrono_duration(scenario.update_takes),
                publish_delay: chrono_duration(scenario.publish_delay),
                experiments,
                by_name,
                writes: Vec::new(),
                windows: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    /// Moves the virtual clock. Minutes already drawn stay as drawn, so move
    /// it forward only (as the runner does); going back is for reading.
    pub fn set_now(&self, now: DateTime<Utc>) {
        let mut world = self.lock();
        world.now = now;
        world.evict();
    }

    /// UpdateInferenceExperiment with every field AWS takes, StartTime included.
    pub fn request_update(&self, request: &SimUpdate) -> Result<(), StoreError> {
        self.lock().update(request)
    }

    /// Every update call so far, accepted or not, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().writes.clone()
    }

    /// (in force from, percentage) for an experiment, creation first.
    pub fn sampling_history(&self, name: &str) -> Option<Vec<(DateTime<Utc>, u8)>> {
        let world = self.lock();
        let index = world.experiment(name).ok()?;
        Some(world.experiments[index].sampling_history.clone())
    }

    /// (when, new EndTime) for an experiment, creation first.
    pub fn end_time_history(&self, name: &str) -> Option<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let world = self.lock();
        let index = world.experiment(name).ok()?;
        Some(world.experiments[index].end_time_history.clone())
    }

    /// The status an experiment has now.
    pub fn status(&self, name: &str) -> Option<ExperimentStatus> {
        let world = self.lock();
        let index = world.experiment(name).ok()?;
        Some(world.experiments[index].status(world.now))
    }

    /// True when every experiment has Completed.
    pub fn all_completed(&self) -> bool {
        let world = self.lock();
        world
            .experiments
            .iter()
            .all(|e| e.status(world.now) == ExperimentStatus::Completed)
    }

    /// What happened on both variants in [from, to) (whole minutes that have
    /// ended by now), whether or not CloudWatch has published it.
    pub fn observe(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<Observation> {
        let mut world = self.lock();
        let index = world.experiment(name).ok()?;
        Some(world.observe(index, from, to))
    }

    /// Status, configured sampling and EndTime as Describe would show them now.
    pub fn snapshot(&self, name: &str) -> Option<(ExperimentStatus, u8, DateTime<Utc>)> {
        let world = self.lock();
        let index = world.experiment(name).ok()?;
        let experiment = &world.experiments[index];
        Some((
            experiment.status(world.now),
            experiment.sampling,
            experiment.end_time,
        ))
    }

    /// When the experiment was created (the scenario start).
    pub fn created(&self, name: &str) -> Option<DateTime<Utc>> {
        let world = self.lock();
        let index = world.experiment(name).ok()?;
        Some(world.experiments[index].created)
    }
}

#[async_trait]
impl ExperimentStore for SimWorld {
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        let world = self.lock();
        let mut summaries: Vec<ExperimentSummary> = world
            .experiments
            .iter()
            .map(|e| ExperimentSummary {
                name: e.spec.name.clone(),
                status: e.status(world.now),
            })
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(summaries)
    }

    async fn describe(&self, name: &str) -> Result<Experiment, StoreError> {
        self.lock().describe(name)
    }

    async fn update(&self, update: &ExperimentUpdate) -> Result<(), StoreError> {
        self.lock().update(&SimUpdate::from(update))
    }
}

#[async_trait]
impl MetricSource for SimWorld {
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<Series>, MetricError> {
        check_queries(queries).map_err(|message| MetricError::Service {
            source: Box::new(CloudWatchRejection(message)),
        })?;
        let mut world = self.lock();
        Ok(queries.iter().map(|query| world.answer(query)).collect())
    }
}
