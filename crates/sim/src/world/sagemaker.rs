//! The simulated SageMaker: experiment status over time, the sampling and
//! EndTime history, and the rules UpdateInferenceExperiment enforces.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::rng::fnv1a;
use crate::scenario::{ExperimentSpec, Scenario};
use shadowpilot_core::experiment::{
    CaptureConfig, Experiment, ExperimentStatus, ExperimentStop, ExperimentSummary,
    ExperimentUpdate, SamplingUpdate, StopState, VariantAction, MAX_STOP_REASON_CHARS,
};
use shadowpilot_core::ports::StoreError;
use shadowpilot_core::schedule::chrono_duration;
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

const ACCOUNT_ARN: &str = "arn:aws:sagemaker:us-east-1:123456789012:inference-experiment";

/// How long a stopped experiment stays Stopping. AWS documents no figure;
/// a few minutes lets a tick see the Stopping status.
const STOP_TAKES_MINUTES: i64 = 5;

/// One StopInferenceExperiment call and what the simulated SageMaker said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRecord {
    pub at: DateTime<Utc>,
    pub request: ExperimentStop,
    /// `None` when accepted.
    pub refused: Option<Refusal>,
}

/// Which model serves on the endpoint once an experiment has stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingAfterStop {
    /// The variant taking production traffic: the promoted shadow, or the
    /// production variant when it was retained and nothing was promoted.
    pub production: Option<String>,
    /// Variants still deployed but taking no traffic.
    pub retained: Vec<String>,
    pub removed: Vec<String>,
}

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
    /// `None` when accepted.
    pub refused: Option<Refusal>,
}

/// Why the simulated SageMaker refused an update: the rules AWS enforces,
/// as values. Its message is what the port's error carries, worded like
/// AWS's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no inference experiment of this name")]
    NotFound,
    #[error("ConflictException: an inference experiment in status {0} cannot be updated")]
    NotUpdatable(ExperimentStatus),
    #[error("ValidationException: the request changes nothing")]
    NothingToChange,
    #[error("ValidationException: StartTime can change only while the experiment is Created; it is Running since {}", .since.to_rfc3339())]
    StartTimeWhileRunning { since: DateTime<Utc> },
    #[error("ValidationException: StartTime {} is in the past", .0.to_rfc3339())]
    StartTimeInPast(DateTime<Utc>),
    #[error("ValidationException: EndTime {} is in the past", .0.to_rfc3339())]
    EndTimeInPast(DateTime<Utc>),
    #[error("ValidationException: EndTime {} is not after StartTime {}", .end.to_rfc3339(), .start.to_rfc3339())]
    EndTimeNotAfterStart {
        end: DateTime<Utc>,
        start: DateTime<Utc>,
    },
    #[error("ValidationException: EndTime {} is more than 30 days after StartTime {}", .end.to_rfc3339(), .start.to_rfc3339())]
    LongerThanThirtyDays {
        end: DateTime<Utc>,
        start: DateTime<Utc>,
    },
    #[error("ValidationException: SourceModelVariantName {sent} is not the production variant {production}")]
    WrongSourceVariant { sent: String, production: String },
    #[error(
        "ValidationException: ShadowModelVariantName {sent} is not the shadow variant {shadow}"
    )]
    WrongShadowVariant { sent: String, shadow: String },
    #[error("ValidationException: SamplingPercentage {0} is outside 1–100 (the simulator refuses 0, which AWS may or may not accept)")]
    SamplingOutOfRange(u8),
    #[error("ValidationException: ModelVariantActions names {sent:?}; the experiment's variants are {variants:?}")]
    WrongVariantActions {
        sent: Vec<String>,
        variants: Vec<String>,
    },
    #[error("ValidationException: only the shadow variant can be promoted, not {0}")]
    PromotesProduction(String),
    #[error("ValidationException: Reason is {0} characters, at most 1024")]
    ReasonTooLong(usize),
}

impl Refusal {
    /// What the port answers, as the AWS adapter would classify AWS's answer.
    pub(crate) fn into_store_error(self, name: &str) -> StoreError {
        let name = name.to_string();
        match self {
            Self::NotFound => StoreError::NotFound { name },
            Self::NotUpdatable(_) => StoreError::Conflict {
                name,
                message: self.to_string(),
            },
            _ => StoreError::Rejected {
                name,
                message: self.to_string(),
            },
        }
    }
}

/// Every inference experiment, and every update call made to them.
pub(crate) struct SageMaker {
    experiments: Vec<SimExperiment>,
    by_name: HashMap<String, usize>,
    update_takes: chrono::Duration,
    writes: Vec<WriteRecord>,
    stops: Vec<StopRecord>,
}

pub(crate) struct SimExperiment {
    pub(crate) spec: ExperimentSpec,
    arn: String,
    /// The scenario's tags, then whatever AddTags and DeleteTags did.
    pub(crate) tags: std::collections::BTreeMap<String, String>,
    pub(crate) start_time: DateTime<Utc>,
    pub(crate) end_time: DateTime<Utc>,
    pub(crate) sampling: u8,
    /// (in force from, percentage); the first entry is the creation.
    pub(crate) sampling_history: Vec<(DateTime<Utc>, u8)>,
    pub(crate) end_time_history: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    pub(crate) created: DateTime<Utc>,
    last_modified: DateTime<Utc>,
    updating_until: Option<DateTime<Utc>>,
    /// The accepted StopInferenceExperiment, and when.
    pub(crate) stopped: Option<(DateTime<Utc>, ExperimentStop)>,
    /// The random streams of the production and the shadow variant.
    pub(crate) keys: [u64; 2],
    /// StartTime and EndTime as Unix seconds, and where each segment of
    /// conditions begins in Unix minutes: compared once per minute drawn.
    pub(crate) start_secs: i64,
    pub(crate) end_secs: i64,
    pub(crate) segment_minutes: Vec<i64>,
}

impl SageMaker {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mut experiments = Vec::new();
        let mut by_name = HashMap::new();
        for (index, spec) in scenario.experiments.iter().enumerate() {
            by_name.insert(spec.name.clone(), index);
            experiments.push(SimExperiment {
                arn: format!("{ACCOUNT_ARN}/{}", spec.name),
                tags: spec.tags.clone(),
                start_time: spec.start_time,
                end_time: spec.end_time,
                sampling: spec.sampling,
                sampling_history: vec![(scenario.start, spec.sampling)],
                end_time_history: vec![(scenario.start, spec.end_time)],
                created: scenario.start,
                last_modified: scenario.start,
                updating_until: None,
                stopped: None,
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
                spec: spec.clone(),
            });
        }
        Self {
            experiments,
            by_name,
            update_takes: chrono_duration(scenario.update_takes),
            writes: Vec::new(),
            stops: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.experiments.len()
    }

    fn experiment(&self, name: &str) -> Result<usize, StoreError> {
        self.index(name)
            .map_err(|refusal| refusal.into_store_error(name))
    }

    fn index(&self, name: &str) -> Result<usize, Refusal> {
        self.by_name.get(name).copied().ok_or(Refusal::NotFound)
    }

    /// The experiment of this name and its position, which keys its traffic.
    pub(crate) fn find(&self, name: &str) -> Option<(usize, &SimExperiment)> {
        let index = *self.by_name.get(name)?;
        Some((index, &self.experiments[index]))
    }

    /// Every experiment with its position.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &SimExperiment)> {
        self.experiments.iter().enumerate()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&SimExperiment> {
        self.find(name).map(|(_, experiment)| experiment)
    }

    /// Every experiment has ended: Completed, or Cancelled by a stop.
    pub(crate) fn all_completed(&self, now: DateTime<Utc>) -> bool {
        self.experiments.iter().all(|e| {
            matches!(
                e.status(now),
                ExperimentStatus::Completed | ExperimentStatus::Cancelled
            )
        })
    }

    pub(crate) fn writes(&self) -> &[WriteRecord] {
        &self.writes
    }

    pub(crate) fn stops(&self) -> &[StopRecord] {
        &self.stops
    }

    pub(crate) fn list(&self, now: DateTime<Utc>) -> Vec<ExperimentSummary> {
        let mut summaries: Vec<ExperimentSummary> = self
            .experiments
            .iter()
            .map(|e| ExperimentSummary {
                name: e.spec.name.clone(),
                status: e.status(now),
            })
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        summaries
    }
}

impl SimExperiment {
    pub(crate) fn status(&self, now: DateTime<Utc>) -> ExperimentStatus {
        if let Some((at, stop)) = &self.stopped {
            return if now < *at + chrono::Duration::minutes(STOP_TAKES_MINUTES) {
                ExperimentStatus::Stopping
            } else {
                match stop.desired_state {
                    StopState::Completed => ExperimentStatus::Completed,
                    StopState::Cancelled => ExperimentStatus::Cancelled,
                }
            };
        }
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

    /// What serves on the endpoint after the stop, from its variant
    /// actions; `None` before any stop.
    pub(crate) fn serving_after_stop(&self) -> Option<ServingAfterStop> {
        let (_, stop) = self.stopped.as_ref()?;
        let mut serving = ServingAfterStop {
            production: None,
            retained: Vec::new(),
            removed: Vec::new(),
        };
        let promoted = stop
            .variant_actions
            .values()
            .any(|a| *a == VariantAction::Promote);
        for (variant, action) in &stop.variant_actions {
            match action {
                VariantAction::Promote => serving.production = Some(variant.clone()),
                VariantAction::Remove => serving.removed.push(variant.clone()),
                VariantAction::Retain if !promoted && *variant == self.spec.production_variant => {
                    serving.production = Some(variant.clone())
                }
                VariantAction::Retain => serving.retained.push(variant.clone()),
            }
        }
        Some(serving)
    }

    pub(crate) fn sampling_at(&self, at: DateTime<Utc>) -> u8 {
        let index = self
            .sampling_history
            .partition_point(|(from, _)| *from <= at);
        self.sampling_history[index.saturating_sub(1)].1
    }
}

impl SageMaker {
    fn check_update(
        &self,
        index: usize,
        request: &SimUpdate,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let experiment = &self.experiments[index];
        let status = experiment.status(now);
        if !matches!(
            status,
            ExperimentStatus::Created | ExperimentStatus::Running
        ) {
            return Err(Refusal::NotUpdatable(status));
        }
        if request.start_time.is_none() && request.end_time.is_none() && request.sampling.is_none()
        {
            return Err(Refusal::NothingToChange);
        }
        if let Some(start) = request.start_time {
            if status == ExperimentStatus::Running {
                return Err(Refusal::StartTimeWhileRunning {
                    since: experiment.start_time,
                });
            }
            if start < now {
                return Err(Refusal::StartTimeInPast(start));
            }
        }
        let start = request.start_time.unwrap_or(experiment.start_time);
        let end = request.end_time.unwrap_or(experiment.end_time);
        if request.end_time.is_some() || request.start_time.is_some() {
            if end <= now {
                return Err(Refusal::EndTimeInPast(end));
            }
            if end <= start {
                return Err(Refusal::EndTimeNotAfterStart { end, start });
            }
            if end - start > chrono_duration(MAX_EXPERIMENT_DURATION) {
                return Err(Refusal::LongerThanThirtyDays { end, start });
            }
        }
        if let Some(sampling) = &request.sampling {
            if sampling.source_variant != experiment.spec.production_variant {
                return Err(Refusal::WrongSourceVariant {
                    sent: sampling.source_variant.clone(),
                    production: experiment.spec.production_variant.clone(),
                });
            }
            if sampling.shadow_variant != experiment.spec.shadow_variant {
                return Err(Refusal::WrongShadowVariant {
                    sent: sampling.shadow_variant.clone(),
                    shadow: experiment.spec.shadow_variant.clone(),
                });
            }
            if !(1..=100).contains(&sampling.percentage) {
                return Err(Refusal::SamplingOutOfRange(sampling.percentage));
            }
        }
        Ok(())
    }

    pub(crate) fn update(
        &mut self,
        request: &SimUpdate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.index(&request.name).and_then(|index| {
            self.check_update(index, request, now)?;
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
            at: now,
            request: request.clone(),
            refused: result.as_ref().err().cloned(),
        });
        result.map_err(|refusal| refusal.into_store_error(&request.name))
    }

    /// StopInferenceExperiment: only a Running experiment stops, every
    /// variant is named once, only the shadow is promoted and the Reason
    /// fits. The shadow takes no traffic from the stop on; the experiment
    /// is Stopping for a few minutes, then in the desired state.
    pub(crate) fn stop(
        &mut self,
        request: &ExperimentStop,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.index(&request.name).and_then(|index| {
            let experiment = &mut self.experiments[index];
            let status = experiment.status(now);
            if status != ExperimentStatus::Running {
                return Err(Refusal::NotUpdatable(status));
            }
            let mut variants = vec![
                experiment.spec.production_variant.clone(),
                experiment.spec.shadow_variant.clone(),
            ];
            variants.sort();
            let sent: Vec<String> = request.variant_actions.keys().cloned().collect();
            if sent != variants {
                return Err(Refusal::WrongVariantActions { sent, variants });
            }
            let production = &experiment.spec.production_variant;
            if request.variant_actions.get(production) == Some(&VariantAction::Promote) {
                return Err(Refusal::PromotesProduction(production.clone()));
            }
            let chars = request.reason.chars().count();
            if chars > MAX_STOP_REASON_CHARS {
                return Err(Refusal::ReasonTooLong(chars));
            }
            experiment.stopped = Some((now, request.clone()));
            experiment.end_secs = experiment.end_secs.min(now.timestamp());
            experiment.last_modified = now;
            Ok(())
        });
        self.stops.push(StopRecord {
            at: now,
            request: request.clone(),
            refused: result.as_ref().err().cloned(),
        });
        result.map_err(|refusal| refusal.into_store_error(&request.name))
    }

    pub(crate) fn describe(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Experiment, StoreError> {
        let experiment = &self.experiments[self.experiment(name)?];
        Ok(Experiment {
            name: experiment.spec.name.clone(),
            arn: experiment.arn.clone(),
            status: experiment.status(now),
            endpoint_name: experiment.spec.endpoint.clone(),
            production_variant: experiment.spec.production_variant.clone(),
            shadow_variant: experiment.spec.shadow_variant.clone(),
            sampling_percentage: experiment.sampling,
            start_time: Some(experiment.start_time),
            end_time: Some(experiment.end_time),
            last_modified: experiment.last_modified,
            tags: experiment.tags.clone(),
            capture: experiment
                .spec
                .capture
                .as_ref()
                .map(|capture| CaptureConfig {
                    destination: capture.destination.clone(),
                    kms_key: None,
                }),
        })
    }

    /// The experiment with this ARN, as AddTags and DeleteTags find it.
    fn by_arn(&mut self, arn: &str) -> Result<&mut SimExperiment, StoreError> {
        self.experiments
            .iter_mut()
            .find(|e| e.arn == arn)
            .ok_or_else(|| StoreError::NotFound { name: arn.into() })
    }

    /// AddTags: like AWS, at most 50 tags a call, keys of 1–128 and values
    /// of at most 256 characters; tags do not move LastModifiedTime.
    pub(crate) fn add_tags(
        &mut self,
        arn: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        if tags.len() > 50 {
            return Err(StoreError::Rejected {
                name: arn.into(),
                message: format!("{} tags in one AddTags call; at most 50", tags.len()),
            });
        }
        for (key, value) in tags {
            if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
                return Err(StoreError::Rejected {
                    name: arn.into(),
                    message: format!("tag {key:?} = {value:?} is outside AWS's length limits"),
                });
            }
        }
        let experiment = self.by_arn(arn)?;
        experiment.tags.extend(tags.clone());
        Ok(())
    }

    pub(crate) fn delete_tags(
        &mut self,
        arn: &str,
        keys: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let experiment = self.by_arn(arn)?;
        for key in keys {
            experiment.tags.remove(key);
        }
        Ok(())
    }
}
