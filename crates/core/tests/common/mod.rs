//! In-memory fakes of the two ports, strict where AWS is strict: updates only
//! while Running, LastModifiedTime moves on every write.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentSummary, ExperimentUpdate, POLICY_TAG,
};
use shadowpilot_core::metrics::{SageMakerMetric, Series, SeriesQuery, Statistic};
use shadowpilot_core::ports::{
    ExperimentStore, MetricError, MetricSource, SeriesAnswer, StoreError,
};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap()
}

pub fn experiment(name: &str, sampling: u8) -> Experiment {
    Experiment {
        name: name.to_string(),
        arn: format!("arn:aws:sagemaker:us-east-1:123456789012:inference-experiment/{name}"),
        status: ExperimentStatus::Running,
        endpoint_name: format!("{name}-endpoint"),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
        sampling_percentage: sampling,
        start_time: Some(t0()),
        end_time: Some(t0() + Duration::days(7)),
        last_modified: t0(),
        tags: BTreeMap::from([(POLICY_TAG.to_string(), "default".to_string())]),
    }
}

#[derive(Default)]
struct StoreState {
    experiments: BTreeMap<String, Experiment>,
    updates: Vec<(DateTime<Utc>, ExperimentUpdate)>,
    /// name → the error its updates answer with.
    update_failures: BTreeMap<String, fn(&str) -> StoreError>,
    /// name → the error its describes answer with.
    describe_failures: BTreeMap<String, fn(&str) -> StoreError>,
    now: Option<DateTime<Utc>>,
    describes: usize,
}

#[derive(Default)]
pub struct FakeStore {
    state: Mutex<StoreState>,
}

impl FakeStore {
    pub fn new(experiments: impl IntoIterator<Item = Experiment>) -> Self {
        let store = Self::default();
        {
            let mut state = store.state.lock().unwrap();
            for e in experiments {
                state.experiments.insert(e.name.clone(), e);
            }
        }
        store
    }

    /// The time written as LastModifiedTime by the next updates.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.state.lock().unwrap().now = Some(now);
    }

    pub fn answer_conflict_for(&self, name: &str) {
        self.fail_updates_of(name, |name| StoreError::Conflict {
            name: name.into(),
            message: "simulated ConflictException".into(),
        });
    }

    pub fn fail_updates_of(&self, name: &str, error: fn(&str) -> StoreError) {
        let mut state = self.state.lock().unwrap();
        state.update_failures.insert(name.to_string(), error);
    }

    pub fn fail_describes_of(&self, name: &str, error: fn(&str) -> StoreError) {
        let mut state = self.state.lock().unwrap();
        state.describe_failures.insert(name.to_string(), error);
    }

    pub fn updates(&self) -> Vec<(DateTime<Utc>, ExperimentUpdate)> {
        self.state.lock().unwrap().updates.clone()
    }

    pub fn get(&self, name: &str) -> Experiment {
        self.state.lock().unwrap().experiments[name].clone()
    }

    pub fn modify(&self, name: &str, change: impl FnOnce(&mut Experiment)) {
        change(
            self.state
                .lock()
                .unwrap()
                .experiments
                .get_mut(name)
                .unwrap(),
        );
    }
}

#[async_trait]
impl ExperimentStore for FakeStore {
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .experiments
            .values()
            .map(|e| ExperimentSummary {
                name: e.name.clone(),
                status: e.status.clone(),
            })
            .collect())
    }

    async fn describe(&self, name: &str) -> Result<Experiment, StoreError> {
        let mut state = self.state.lock().unwrap();
        state.describes += 1;
        if let Some(error) = state.describe_failures.get(name) {
            return Err(error(name));
        }
        state
            .experiments
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound { name: name.into() })
    }

    async fn update(&self, update: &ExperimentUpdate) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        let now = state.now.expect("set_now before a write");
        if let Some(error) = state.update_failures.get(&update.name) {
            return Err(error(&update.name));
        }
        let experiment =
            state
                .experiments
                .get_mut(&update.name)
                .ok_or_else(|| StoreError::NotFound {
                    name: update.name.clone(),
                })?;
        if experiment.status != ExperimentStatus::Running {
            return Err(StoreError::Conflict {
                name: update.name.clone(),
                message: format!("status {}", experiment.status),
            });
        }
        if let Some(sampling) = &update.sampling {
            assert_eq!(sampling.source_variant, experiment.production_variant);
            assert_eq!(sampling.shadow_variant, experiment.shadow_variant);
            assert!((1..=100).contains(&sampling.percentage));
            experiment.sampling_percentage = sampling.percentage;
        }
        if let Some(end) = update.end_time {
            let start = experiment.start_time.unwrap();
            if end <= now || end > start + Duration::days(30) {
                return Err(StoreError::Rejected {
                    name: update.name.clone(),
                    message: format!("EndTime {end} outside (now, StartTime + 30 days]"),
                });
            }
            experiment.end_time = Some(end);
        }
        experiment.last_modified = now;
        state.updates.push((now, update.clone()));
        Ok(())
    }
}

/// Per-minute behaviour of one variant.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub invocations_per_minute: f64,
    pub error_5xx_percent: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Profile {
    pub fn healthy() -> Self {
        Self {
            invocations_per_minute: 1000.0,
            error_5xx_percent: 0.1,
            p50_ms: 40.0,
            p99_ms: 300.0,
        }
    }
}

/// Answers every query from a profile per variant name. The shadow's
/// traffic is scaled by `shadow_share` (a fraction), like SageMaker copying
/// a percentage of production requests.
pub struct FakeMetrics {
    profiles: Mutex<BTreeMap<String, Profile>>,
    pub calls: Mutex<Vec<Vec<SeriesQuery>>>,
}

impl FakeMetrics {
    pub fn new(production: Profile, shadow: Profile) -> Self {
        Self {
            profiles: Mutex::new(BTreeMap::from([
                ("production".to_string(), production),
                ("shadow".to_string(), shadow),
            ])),
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn set(&self, variant: &str, profile: Profile) {
        self.profiles
            .lock()
            .unwrap()
            .insert(variant.into(), profile);
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl MetricSource for FakeMetrics {
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError> {
        self.calls.lock().unwrap().push(queries.to_vec());
        let profiles = self.profiles.lock().unwrap();
        Ok(queries
            .iter()
            .map(|q| {
                let mut series = Series::new();
                let Some(p) = profiles.get(q.variant()) else {
                    return series;
                };
                let minutes = q.period.as_secs_f64() / 60.0;
                let invocations = p.invocations_per_minute * minutes;
                if invocations <= 0.0 {
                    return series;
                }
                let value = match (q.metric, q.statistic) {
                    (SageMakerMetric::Invocations, Statistic::Sum) => invocations,
                    (SageMakerMetric::Invocation5XXErrors, Statistic::Sum) => {
                        invocations * p.error_5xx_percent / 100.0
                    }
                    (
                        SageMakerMetric::Invocation4XXErrors
                        | SageMakerMetric::InvocationModelErrors,
                        Statistic::Sum,
                    ) => 0.0,
                    (SageMakerMetric::ModelLatency, s) if s == Statistic::percentile(99.0) => {
                        p.p99_ms * 1000.0
                    }
                    (SageMakerMetric::ModelLatency, s) if s == Statistic::percentile(50.0) => {
                        p.p50_ms * 1000.0
                    }
                    (SageMakerMetric::ModelLatency, _) => p.p50_ms * 1100.0,
                    (_, _) => 1000.0,
                };
                series.insert(q.window.start, value);
                series
            })
            .map(Ok)
            .collect())
    }
}
