//! The simulated SageMaker and CloudWatch: one world behind a mutex, on a
//! virtual clock that the runner moves. It implements the same ports as the
//! AWS adapters, so the controller cannot tell the difference.
//!
//! Layout: `sagemaker` holds the inference experiments and AWS's rules for
//! updating them, `traffic` draws each minute's requests and latencies and
//! merges them over windows, and `cloudwatch` turns those into the statistics
//! a metric query asks for, and `capture` writes out the data capture files
//! S3 would hold, from the same traffic. The world itself, its clock and
//! what the runner reads back live here.

mod capture;
mod cloudwatch;
mod sagemaker;
mod traffic;

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::scenario::Scenario;
use sagemaker::SageMaker;
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentStop, ExperimentSummary, ExperimentUpdate,
};
use shadowpilot_core::metrics::SeriesQuery;
use shadowpilot_core::ports::{
    CaptureError, CaptureObject, CaptureSource, ExperimentStore, MetricError, MetricSource,
    SeriesAnswer, StoreError,
};
use shadowpilot_core::schedule::chrono_duration;
use traffic::Traffic;

pub use capture::CaptureMemory;
pub use sagemaker::{Refusal, ServingAfterStop, SimUpdate, StopRecord, WriteRecord};
pub use traffic::{Observation, VariantObservation};

/// The simulated world. Cloning shares it.
#[derive(Clone)]
pub struct SimWorld {
    inner: Arc<Mutex<World>>,
}

struct World {
    now: DateTime<Utc>,
    publish_delay: chrono::Duration,
    sagemaker: SageMaker,
    traffic: Traffic,
    periods: cloudwatch::PeriodCache,
    /// Capture files served by `get`, for [`SimWorld::capture_memory`].
    capture_files: u64,
}

impl SimWorld {
    pub fn new(scenario: &Scenario) -> Self {
        let sagemaker = SageMaker::new(scenario);
        let traffic = Traffic::new(scenario.seed, scenario.start, sagemaker.len());
        Self {
            inner: Arc::new(Mutex::new(World {
                now: scenario.start,
                publish_delay: chrono_duration(scenario.publish_delay),
                sagemaker,
                traffic,
                periods: cloudwatch::PeriodCache::new(),
                capture_files: 0,
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
        world.traffic.evict(now);
    }

    /// UpdateInferenceExperiment with every field AWS takes, StartTime included.
    pub fn request_update(&self, request: &SimUpdate) -> Result<(), StoreError> {
        let mut world = self.lock();
        let now = world.now;
        world.sagemaker.update(request, now)
    }

    /// Every update call so far, accepted or not, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().sagemaker.writes().to_vec()
    }

    /// Every StopInferenceExperiment so far, accepted or not, in order.
    pub fn stops(&self) -> Vec<StopRecord> {
        self.lock().sagemaker.stops().to_vec()
    }

    /// Which variants serve on the experiment's endpoint after its stop;
    /// `None` when it was not stopped (or is unknown).
    pub fn serving_after_stop(&self, name: &str) -> Option<ServingAfterStop> {
        self.lock().sagemaker.get(name)?.serving_after_stop()
    }

    /// (in force from, percentage) for an experiment, creation first.
    pub fn sampling_history(&self, name: &str) -> Option<Vec<(DateTime<Utc>, u8)>> {
        Some(self.lock().sagemaker.get(name)?.sampling_history.clone())
    }

    /// (when, new EndTime) for an experiment, creation first.
    pub fn end_time_history(&self, name: &str) -> Option<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        Some(self.lock().sagemaker.get(name)?.end_time_history.clone())
    }

    /// The status an experiment has now.
    pub fn status(&self, name: &str) -> Option<ExperimentStatus> {
        let world = self.lock();
        Some(world.sagemaker.get(name)?.status(world.now))
    }

    /// True when every experiment has Completed.
    pub fn all_completed(&self) -> bool {
        let world = self.lock();
        world.sagemaker.all_completed(world.now)
    }

    /// What happened on both variants in [from, to) (whole minutes that have
    /// ended by now), whether or not CloudWatch has published it.
    pub fn observe(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<Observation> {
        let mut guard = self.lock();
        let world = &mut *guard;
        let (index, experiment) = world.sagemaker.find(name)?;
        Some(
            world
                .traffic
                .observe(experiment, index, from, to, world.now),
        )
    }

    /// Status, configured sampling and EndTime as Describe would show them now.
    pub fn snapshot(&self, name: &str) -> Option<(ExperimentStatus, u8, DateTime<Utc>)> {
        let world = self.lock();
        let experiment = world.sagemaker.get(name)?;
        Some((
            experiment.status(world.now),
            experiment.sampling,
            experiment.end_time,
        ))
    }

    /// What the simulated capture holds in memory and has written out.
    pub fn capture_memory(&self) -> CaptureMemory {
        let world = self.lock();
        let (minutes_held, sizes_held) = world.traffic.held();
        CaptureMemory {
            minutes_held,
            sizes_held,
            files_generated: world.capture_files,
        }
    }

    /// When the experiment was created (the scenario start).
    pub fn created(&self, name: &str) -> Option<DateTime<Utc>> {
        Some(self.lock().sagemaker.get(name)?.created)
    }
}

#[async_trait]
impl ExperimentStore for SimWorld {
    async fn list(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        let world = self.lock();
        Ok(world.sagemaker.list(world.now))
    }

    async fn describe(&self, name: &str) -> Result<Experiment, StoreError> {
        let world = self.lock();
        world.sagemaker.describe(name, world.now)
    }

    async fn update(&self, update: &ExperimentUpdate) -> Result<(), StoreError> {
        let mut world = self.lock();
        let now = world.now;
        world.sagemaker.update(&SimUpdate::from(update), now)
    }

    async fn stop(&self, stop: &ExperimentStop) -> Result<(), StoreError> {
        let mut world = self.lock();
        let now = world.now;
        world.sagemaker.stop(stop, now)
    }

    async fn add_tags(
        &self,
        arn: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.lock().sagemaker.add_tags(arn, tags)
    }

    async fn delete_tags(
        &self,
        arn: &str,
        keys: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        self.lock().sagemaker.delete_tags(arn, keys)
    }
}

#[async_trait]
impl MetricSource for SimWorld {
    async fn fetch(&self, queries: &[SeriesQuery]) -> Result<Vec<SeriesAnswer>, MetricError> {
        let mut guard = self.lock();
        let world = &mut *guard;
        let published = world.now - world.publish_delay;
        // The simulated CloudWatch refuses a bad request whole and otherwise
        // answers every query.
        cloudwatch::fetch(
            &mut world.traffic,
            &world.sagemaker,
            published,
            queries,
            &mut world.periods,
        )
        .map(|series| series.into_iter().map(Ok).collect())
    }
}

/// The simulated S3 under every experiment's DataStorageConfig, written out
/// from the same traffic as the simulated CloudWatch (see `capture`).
#[async_trait]
impl CaptureSource for SimWorld {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError> {
        let mut guard = self.lock();
        let world = &mut *guard;
        capture::list(
            &mut world.traffic,
            &world.sagemaker,
            world.now,
            bucket,
            prefix,
        )
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CaptureError> {
        let mut guard = self.lock();
        let world = &mut *guard;
        let answer = capture::get(
            &mut world.traffic,
            &world.sagemaker,
            world.now,
            bucket,
            key,
            max_bytes,
        );
        if answer.is_ok() {
            world.capture_files += 1;
        }
        answer
    }
}
