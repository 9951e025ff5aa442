//! The simulated SageMaker: experiment status over time, the sampling and
//! EndTime history, and the rules UpdateInferenceExperiment enforces.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SimExperiment, SimWorld, World};
use shadowpilot_core::experiment::{
    Experiment, ExperimentStatus, ExperimentSummary, ExperimentUpdate, SamplingUpdate,
};
use shadowpilot_core::ports::{ExperimentStore, StoreError};
use shadowpilot_core::schedule::chrono_duration;
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

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

impl SimExperiment {
    pub(crate) fn status(&self, now: DateTime<Utc>) -> ExperimentStatus {
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

    pub(crate) fn sampling_at(&self, at: DateTime<Utc>) -> u8 {
        let index = self
            .sampling_history
            .partition_point(|(from, _)| *from <= at);
        self.sampling_history[index.saturating_sub(1)].1
    }
}

impl World {
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

    pub(crate) fn update(&mut self, request: &SimUpdate) -> Result<(), StoreError> {
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
