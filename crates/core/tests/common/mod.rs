//! In-memory fakes of the two ports, strict where AWS is strict: updates only
//! while Running, LastModifiedTime moves on every update (never on tags).
//! Also the pieces the pure tests share: evidence gathered from the fake
//! metrics exactly as the controller's two rounds gather it, and verdicts
//! built by hand.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use shadowpilot_core::evidence::{count_queries, latency_queries, Evidence, Form, Timeline};
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentStop, ExperimentSummary, ExperimentUpdate,
    VariantAction, POLICY_TAG,
};
use shadowpilot_core::judge::{CheckId, CheckResult, Outcome, Reason, Verdict};
use shadowpilot_core::metrics::{
    MeasuredExperiment, SageMakerMetric, Series, SeriesQuery, Statistic, VariantRole,
};
use shadowpilot_core::policy::{CheckMetric, Policy, Unit};
use shadowpilot_core::ports::{
    ExperimentStore, MetricError, MetricFailure, MetricSource, SeriesAnswer, StoreError,
};
use shadowpilot_core::stats::TimeToDecision;

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
        capture: None,
    }
}

#[derive(Default)]
struct StoreState {
    experiments: BTreeMap<String, Experiment>,
    updates: Vec<(DateTime<Utc>, ExperimentUpdate)>,
    stops: Vec<(DateTime<Utc>, ExperimentStop)>,
    /// name → the error its updates answer with.
    update_failures: BTreeMap<String, fn(&str) -> StoreError>,
    /// name → the error its describes answer with.
    describe_failures: BTreeMap<String, fn(&str) -> StoreError>,
    now: Option<DateTime<Utc>>,
    describes: usize,
    /// (ARN, tags set) of every AddTags, and (ARN, keys) of every DeleteTags.
    added_tags: Vec<(String, BTreeMap<String, String>)>,
    deleted_tags: Vec<(String, BTreeSet<String>)>,
    /// ARN → the error its AddTags answer with.
    tag_failures: BTreeMap<String, fn(&str) -> StoreError>,
    /// Every write that reached the store, in order: `update NAME`,
    /// `add_tags NAME`, `delete_tags NAME`.
    writes: Vec<String>,
    /// name → (since, percentage): the sampling as it was over time.
    sampling: BTreeMap<String, Vec<(DateTime<Utc>, u8)>>,
    /// How long every call takes (on tokio's clock, which tests pause).
    call_delay: std::time::Duration,
    /// Describes of these never answer within a tick.
    stalled: BTreeSet<String>,
    /// When each call began on tokio's clock: (`describe NAME`, ...).
    call_starts: Vec<(tokio::time::Instant, String)>,
}

impl StoreState {
    fn name_of(&self, arn: &str) -> Option<String> {
        self.experiments
            .values()
            .find(|e| e.arn == arn)
            .map(|e| e.name.clone())
    }
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
                state.sampling.insert(
                    e.name.clone(),
                    vec![(DateTime::<Utc>::MIN_UTC, e.sampling_percentage)],
                );
                state.experiments.insert(e.name.clone(), e);
            }
        }
        store
    }

    /// Every call takes `delay` from now on.
    pub fn delay_calls(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().call_delay = delay;
    }

    /// The describes of `name` hang for an hour.
    pub fn stall_describes_of(&self, name: &str) {
        self.state.lock().unwrap().stalled.insert(name.to_string());
    }

    /// When each call began, with its operation and experiment.
    pub fn call_starts(&self) -> Vec<(tokio::time::Instant, String)> {
        self.state.lock().unwrap().call_starts.clone()
    }

    /// Marks a call's start and waits as long as calls take.
    async fn call(&self, what: String) {
        let delay = {
            let mut state = self.state.lock().unwrap();
            state
                .call_starts
                .push((tokio::time::Instant::now(), what.clone()));
            let stalled = what
                .strip_prefix("describe ")
                .is_some_and(|name| state.stalled.contains(name));
            if stalled {
                std::time::Duration::from_secs(3600)
            } else {
                state.call_delay
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
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

    pub fn fail_tags_of(&self, name: &str, error: fn(&str) -> StoreError) {
        let mut state = self.state.lock().unwrap();
        let arn = state.experiments[name].arn.clone();
        state.tag_failures.insert(arn, error);
    }

    /// AddTags works again for this experiment.
    pub fn heal_tags_of(&self, name: &str) {
        let mut state = self.state.lock().unwrap();
        let arn = state.experiments[name].arn.clone();
        state.tag_failures.remove(&arn);
    }

    pub fn added_tags(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.state.lock().unwrap().added_tags.clone()
    }

    pub fn deleted_tags(&self) -> Vec<(String, BTreeSet<String>)> {
        self.state.lock().unwrap().deleted_tags.clone()
    }

    pub fn updates(&self) -> Vec<(DateTime<Utc>, ExperimentUpdate)> {
        self.state.lock().unwrap().updates.clone()
    }

    /// Every StopInferenceExperiment that was accepted, with when.
    pub fn stops(&self) -> Vec<(DateTime<Utc>, ExperimentStop)> {
        self.state.lock().unwrap().stops.clone()
    }

    /// Every write that reached the store, in order.
    pub fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    pub fn get(&self, name: &str) -> Experiment {
        self.state.lock().unwrap().experiments[name].clone()
    }

    /// The sampling percentage `name` had at `at`.
    pub fn sampling_at(&self, name: &str, at: DateTime<Utc>) -> u8 {
        let state = self.state.lock().unwrap();
        state.sampling.get(name).map_or(0, |history| {
            history
                .iter()
                .rev()
                .find(|(since, _)| *since <= at)
                .map_or(0, |(_, percentage)| *percentage)
        })
    }

    /// Someone else's change; a new sampling percentage takes effect at the
    /// experiment's LastModifiedTime.
    pub fn modify(&self, name: &str, change: impl FnOnce(&mut Experiment)) {
        let mut state = self.state.lock().unwrap();
        let experiment = state.experiments.get_mut(name).unwrap();
        let before = experiment.sampling_percentage;
        change(experiment);
        let (after, at) = (experiment.sampling_percentage, experiment.last_modified);
        if after != before {
            state
                .sampling
                .entry(name.to_string())
                .or_default()
                .push((at, after));
        }
    }
}

#[async_trait]
impl ExperimentStore for FakeStore {
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        self.call("list".into()).await;
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
        self.call(format!("describe {name}")).await;
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
        self.call(format!("update {}", update.name)).await;
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
        let mut sampled = None;
        if let Some(sampling) = &update.sampling {
            assert_eq!(sampling.source_variant, experiment.production_variant);
            assert_eq!(sampling.shadow_variant, experiment.shadow_variant);
            assert!((1..=100).contains(&sampling.percentage));
            experiment.sampling_percentage = sampling.percentage;
            sampled = Some(sampling.percentage);
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
        if let Some(percentage) = sampled {
            state
                .sampling
                .entry(update.name.clone())
                .or_default()
                .push((now, percentage));
        }
        state.updates.push((now, update.clone()));
        state.writes.push(format!("update {}", update.name));
        Ok(())
    }

    /// Strict like AWS: only a Running experiment stops, every variant is
    /// named, only the shadow may be promoted and the Reason fits. The
    /// experiment is then Stopping.
    async fn stop(&self, stop: &ExperimentStop) -> Result<(), StoreError> {
        self.call(format!("stop {}", stop.name)).await;
        let mut state = self.state.lock().unwrap();
        let now = state.now.expect("set_now before a write");
        if let Some(error) = state.update_failures.get(&stop.name) {
            return Err(error(&stop.name));
        }
        let experiment =
            state
                .experiments
                .get_mut(&stop.name)
                .ok_or_else(|| StoreError::NotFound {
                    name: stop.name.clone(),
                })?;
        if experiment.status != ExperimentStatus::Running {
            return Err(StoreError::Conflict {
                name: stop.name.clone(),
                message: format!("status {}", experiment.status),
            });
        }
        let variants: BTreeSet<&String> = stop.variant_actions.keys().collect();
        let expected = BTreeSet::from([&experiment.production_variant, &experiment.shadow_variant]);
        let promotes_production = stop.variant_actions.get(&experiment.production_variant)
            == Some(&VariantAction::Promote);
        if variants != expected || promotes_production || stop.reason.chars().count() > 1024 {
            return Err(StoreError::Rejected {
                name: stop.name.clone(),
                message: format!("bad ModelVariantActions or Reason: {stop:?}"),
            });
        }
        experiment.status = ExperimentStatus::Stopping;
        experiment.last_modified = now;
        state.stops.push((now, stop.clone()));
        state.writes.push(format!("stop {}", stop.name));
        Ok(())
    }

    /// Tags do not move LastModifiedTime.
    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.call(format!("add_tags {arn}")).await;
        let mut state = self.state.lock().unwrap();
        if let Some(error) = state.tag_failures.get(arn) {
            return Err(error(arn));
        }
        let name = state
            .name_of(arn)
            .ok_or_else(|| StoreError::NotFound { name: arn.into() })?;
        let experiment = state.experiments.get_mut(&name).unwrap();
        experiment.tags.extend(tags.clone());
        state.added_tags.push((arn.to_string(), tags.clone()));
        state.writes.push(format!("add_tags {name}"));
        Ok(())
    }

    async fn delete_tags(&self, arn: &str, keys: &BTreeSet<String>) -> Result<(), StoreError> {
        self.call(format!("delete_tags {arn}")).await;
        let mut state = self.state.lock().unwrap();
        let name = state
            .name_of(arn)
            .ok_or_else(|| StoreError::NotFound { name: arn.into() })?;
        let experiment = state.experiments.get_mut(&name).unwrap();
        for key in keys {
            experiment.tags.remove(key);
        }
        state.deleted_tags.push((arn.to_string(), keys.clone()));
        state.writes.push(format!("delete_tags {name}"));
        Ok(())
    }
}

/// Per-minute behaviour of one variant. A value that is not a number is a
/// series CloudWatch has no datapoint in.
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

/// The shadow's share of its profile's traffic at a time, by experiment.
type Share = Box<dyn Fn(&str, DateTime<Utc>) -> f64 + Send + Sync>;

/// Answers every query from a profile per variant name, one datapoint per
/// whole period of the query's window, each from the profile in force at
/// the period's start. By default the shadow's traffic is its profile's;
/// [`FakeMetrics::follow_sampling`] scales it, like SageMaker copying a
/// percentage of production requests.
pub struct FakeMetrics {
    /// variant → (from, profile), the latest one not after a period's start
    /// applies.
    profiles: Mutex<BTreeMap<String, BTreeMap<DateTime<Utc>, Profile>>>,
    share: Mutex<Option<Share>>,
    pub calls: Mutex<Vec<Vec<SeriesQuery>>>,
    /// How long each fetch takes (on tokio's clock).
    delay: Mutex<std::time::Duration>,
}

impl FakeMetrics {
    pub fn new(production: Profile, shadow: Profile) -> Self {
        let from_start = |p| BTreeMap::from([(DateTime::<Utc>::MIN_UTC, p)]);
        Self {
            profiles: Mutex::new(BTreeMap::from([
                ("production".to_string(), from_start(production)),
                ("shadow".to_string(), from_start(shadow)),
            ])),
            share: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            delay: Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Every fetch takes `delay` from now on.
    pub fn delay_fetches(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// `variant` behaves like `profile` at all times.
    pub fn set(&self, variant: &str, profile: Profile) {
        self.profiles.lock().unwrap().insert(
            variant.into(),
            BTreeMap::from([(DateTime::<Utc>::MIN_UTC, profile)]),
        );
    }

    /// `variant` behaves like `profile` from `from` on.
    pub fn set_from(&self, variant: &str, from: DateTime<Utc>, profile: Profile) {
        self.profiles
            .lock()
            .unwrap()
            .entry(variant.into())
            .or_default()
            .insert(from, profile);
    }

    /// The shadow receives `share(experiment, time)` of its profile's
    /// requests (and errors): a fraction, usually the sampling percentage
    /// in force then divided by 100.
    pub fn follow_sampling(
        &self,
        share: impl Fn(&str, DateTime<Utc>) -> f64 + Send + Sync + 'static,
    ) {
        *self.share.lock().unwrap() = Some(Box::new(share));
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The answer to one query, without recording a call.
    pub fn answer(&self, q: &SeriesQuery) -> Series {
        let profiles = self.profiles.lock().unwrap();
        let share = self.share.lock().unwrap();
        let mut series = Series::new();
        let Some(timeline) = profiles.get(q.variant()) else {
            return series;
        };
        if q.period.is_zero() {
            return series;
        }
        let minutes = q.period.as_secs_f64() / 60.0;
        let step = Duration::seconds(q.period.as_secs() as i64);
        // One datapoint per whole period of the window (the window already
        // ends at the publish delay).
        let mut at = q.window.start;
        while at + step <= q.window.end {
            let Some((_, p)) = timeline.range(..=at).next_back() else {
                at += step;
                continue;
            };
            let scale = match (&*share, q.role) {
                (Some(share), VariantRole::Shadow) => share(&q.experiment.name, at),
                _ => 1.0,
            };
            let invocations = p.invocations_per_minute * minutes * scale;
            let value = match (q.metric, q.statistic) {
                (SageMakerMetric::Invocations, Statistic::Sum) => invocations,
                (SageMakerMetric::Invocation5XXErrors, Statistic::Sum) => {
                    invocations * p.error_5xx_percent / 100.0
                }
                (
                    SageMakerMetric::Invocation4XXErrors | SageMakerMetric::InvocationModelErrors,
                    Statistic::Sum,
                ) => 0.0,
                (_, Statistic::SampleCount) => invocations,
                (SageMakerMetric::ModelLatency, s) if s == Statistic::percentile(99.0) => {
                    p.p99_ms * 1000.0
                }
                (SageMakerMetric::ModelLatency, s) if s == Statistic::percentile(50.0) => {
                    p.p50_ms * 1000.0
                }
                (SageMakerMetric::ModelLatency, _) => p.p50_ms * 1100.0,
                (_, _) => 1000.0,
            };
            // No traffic, no datapoint; and a value that is not a number is
            // a series without datapoints.
            if invocations > 0.0 && value.is_finite() {
                series.insert(at, value);
            }
            at += step;
        }
        series
    }
}

#[async_trait]
impl MetricSource for FakeMetrics {
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError> {
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.calls.lock().unwrap().push(queries.to_vec());
        Ok(queries.iter().map(|q| Ok(self.answer(q))).collect())
    }
}

/// One experiment's evidence as a tick gathers it: the count round, then
/// the latency round asked from what the counts said.
pub fn gather(
    metrics: &FakeMetrics,
    experiment: &Experiment,
    policy: &Policy,
    timeline: &Timeline,
) -> Evidence {
    let measured = Arc::new(MeasuredExperiment::of(experiment));
    let mut evidence = Evidence::default();
    for query in count_queries(&measured, timeline, policy) {
        evidence.insert(&query, metrics.answer(&query));
    }
    let counts = evidence.clone();
    for query in latency_queries(&measured, timeline, policy, &counts) {
        evidence.insert(&query, metrics.answer(&query));
    }
    evidence
}

/// A check result written by hand, for planning: `minutes` is the time to
/// a decision at the current sampling and `at_ceiling` at the top one (both
/// only kept when inconclusive; infinite reads as "no traffic").
///
/// `CheckResult::closeness` is the crate's own, so the result starts from
/// one the crate built and has its public fields replaced.
pub fn check_result(
    metric: CheckMetric,
    outcome: Outcome,
    reason: Option<Reason>,
    passing_side: Option<bool>,
    minutes: Option<f64>,
    at_ceiling: Option<f64>,
) -> CheckResult {
    let mut result = Verdict::unmeasured(MetricFailure(Arc::new(MetricError::Misaligned {
        asked: 0,
        answered: 0,
    })))
    .checks
    .remove(0);
    let needs = |minutes: f64| TimeToDecision::Needs {
        extra: 0.0,
        minutes,
    };
    let undecided = outcome == Outcome::Inconclusive;
    result.id = CheckId::Metric(metric);
    result.form = if metric.unit() == Unit::Percent {
        Form::ErrorAbove { points: 0.5 }
    } else {
        Form::LatencyRatio { ratio: 1.2 }
    };
    result.unit = if metric.unit() == Unit::Percent {
        Unit::Points
    } else {
        Unit::Ratio
    };
    result.outcome = outcome;
    result.reason = if undecided {
        reason.or(Some(Reason::Straddles))
    } else {
        None
    };
    result.passing_side = passing_side;
    result.time_to_decision = minutes.filter(|_| undecided).map(needs);
    result.at_ceiling = at_ceiling.filter(|_| undecided).map(needs);
    result
}

/// The verdict of these results, as the judge combines them: FAIL if any
/// fails, PASS if all pass, else inconclusive; the decisive one is the
/// first failing, else the first inconclusive, else the first.
pub fn verdict_of(checks: Vec<CheckResult>) -> Verdict {
    let first = |outcome| checks.iter().position(|c| c.outcome == outcome);
    let (outcome, decisive) = if checks.is_empty() {
        (Outcome::Inconclusive, None)
    } else if let Some(index) = first(Outcome::Fail) {
        (Outcome::Fail, Some(index))
    } else if let Some(index) = first(Outcome::Inconclusive) {
        (Outcome::Inconclusive, Some(index))
    } else {
        (Outcome::Pass, Some(0))
    };
    Verdict {
        outcome,
        checks,
        decisive,
    }
}

/// A store whose shadows receive the sampling percentage in force of
/// production's traffic, as SageMaker copies it.
pub fn sampled(experiments: impl IntoIterator<Item = Experiment>) -> (Arc<FakeStore>, FakeMetrics) {
    let store = Arc::new(FakeStore::new(experiments));
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let seen = Arc::clone(&store);
    metrics.follow_sampling(move |name, at| f64::from(seen.sampling_at(name, at)) / 100.0);
    (store, metrics)
}

/// A metric source whose every round fails with `error()`.
pub struct FailingMetrics(pub fn() -> MetricError);

#[async_trait]
impl MetricSource for FailingMetrics {
    async fn fetch(&self, _: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError> {
        Err((self.0)())
    }
}
