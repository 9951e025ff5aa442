//! shadowpilot steers Amazon SageMaker shadow tests.
//!
//! The pure core (`policy`, `metrics`, `judge`, `plan`) decides; the
//! controller runs one tick over the ports in `ports`; the adapters in `aws`
//! and the simulated world in `sim` implement those ports.

use std::time::Duration;

pub mod config;
pub mod controller;
pub mod event;
pub mod experiment;
pub mod handler;
pub mod judge;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod report;
pub mod schedule;
pub mod validation;

/// AWS allows an inference experiment at most 30 days from StartTime to EndTime.
pub const MAX_EXPERIMENT_DURATION: Duration = Duration::from_secs(30 * 86_400);
