//! The simulated SageMaker and CloudWatch: one world behind a mutex, on a
//! virtual clock that the runner moves. It implements the same ports as the
//! AWS adapters, so the controller cannot tell the difference.
//!
//! Layout: `sagemaker` holds the inference experiments and AWS's rules for
//! updating them, `traffic` draws each minute's requests and latencies and
//! merges them over windows, and `cloudwatch` turns those into the statistics
//! a metric query asks for. The world itself, its clock and what the runner
//! reads back live here.

mod cloudwatch;
mod sagemaker;
mod traffic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::rng::fnv1a;
use super::scenario::{ExperimentSpec, Scenario};
use shadowpilot_core::experiment::ExperimentStatus;
use shadowpilot_core::metrics::VariantRole;
use shadowpilot_core::ports::StoreError;
use shadowpilot_core::schedule::chrono_duration;

pub use sagemaker::{SimUpdate, WriteRecord};
use traffic::{MergedWindow, MinuteData};
pub use traffic::{Observation, VariantObservation};

const ACCOUNT_ARN: &str = "arn:aws:sagemaker:us-east-1:123456789012:inference-experiment";

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

fn role_index(role: VariantRole) -> usize {
    match role {
        VariantRole::Production => 0,
        VariantRole::Shadow => 1,
    }
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
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
