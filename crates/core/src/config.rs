//! Environment → configuration, with the same names for the Lambda and the CLI.

use std::path::{Path, PathBuf};

use crate::policy::{builtin_policies, load_path, PolicyError, PolicySet};
use crate::schedule::{Schedule, ScheduleError};

pub const DRY_RUN_VAR: &str = "SHADOWPILOT_DRY_RUN";
pub const SCHEDULE_VAR: &str = "SHADOWPILOT_SCHEDULE";
pub const POLICIES_VAR: &str = "SHADOWPILOT_POLICIES";
pub const EVENT_BUS_VAR: &str = "SHADOWPILOT_EVENT_BUS";

/// Where events go: `SHADOWPILOT_EVENT_BUS` unset or `default` is the
/// account's default bus; `none` sends none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBus {
    Default,
    Named(String),
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{DRY_RUN_VAR}={value:?}: must be true or false")]
    DryRun { value: String },
    #[error("{SCHEDULE_VAR} is not set: it must hold the schedule expression the function runs on, e.g. rate(10 minutes)")]
    MissingSchedule,
    #[error("{SCHEDULE_VAR}")]
    Schedule(#[source] ScheduleError),
    #[error("{EVENT_BUS_VAR}={value:?}: must be default, none, or an event bus name (1 to 256 of A-Z a-z 0-9 . _ - /)")]
    EventBus { value: String },
    #[error("policies could not be loaded")]
    Policies(#[source] PolicyError),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// True forces every run to be a dry run, whatever the payload or flags say.
    pub force_dry_run: bool,
    pub schedule: Option<Schedule>,
    /// None: the policies built into the binary.
    pub policies_path: Option<PathBuf>,
    pub event_bus: EventBus,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let force_dry_run = match lookup(DRY_RUN_VAR).as_deref().map(str::trim) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::DryRun {
                    value: other.to_string(),
                })
            }
        };
        let schedule = match lookup(SCHEDULE_VAR).filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(expression) => Some(Schedule::parse(&expression).map_err(ConfigError::Schedule)?),
        };
        let policies_path = lookup(POLICIES_VAR)
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);
        let event_bus = match lookup(EVENT_BUS_VAR).as_deref().map(str::trim) {
            None | Some("") | Some("default") => EventBus::Default,
            Some("none") => EventBus::Off,
            // EventBridge's pattern for a bus name; caught here, at start,
            // rather than as a PutEvents error after every write.
            Some(name)
                if name.len() <= 256
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)) =>
            {
                EventBus::Named(name.to_string())
            }
            Some(name) => {
                return Err(ConfigError::EventBus {
                    value: name.to_string(),
                })
            }
        };
        Ok(Self {
            force_dry_run,
            schedule,
            policies_path,
            event_bus,
        })
    }

    /// The Lambda refuses to start without a schedule: it could not tell
    /// when the next tick comes, and so when an experiment must be extended.
    pub fn require_schedule(&self) -> Result<&Schedule, ConfigError> {
        self.schedule.as_ref().ok_or(ConfigError::MissingSchedule)
    }

    pub fn load_policies(&self) -> Result<PolicySet, ConfigError> {
        load_policies(self.policies_path.as_deref()).map_err(ConfigError::Policies)
    }
}

pub fn load_policies(path: Option<&Path>) -> Result<PolicySet, PolicyError> {
    match path {
        Some(path) => load_path(path),
        None => builtin_policies(),
    }
}
