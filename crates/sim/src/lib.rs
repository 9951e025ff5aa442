//! The simulated SageMaker + CloudWatch world, the scenarios it is built
//! from, and the runner that drives the controller through it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use shadowpilot_sim as sim;
//! let scenario = sim::Scenario::load(std::path::Path::new("scenarios/healthy.yaml"))?;
//! let policies = shadowpilot_core::policy::builtin_policies()?;
//! let outcome = sim::run(&scenario, &policies, None).await?;
//! println!("{}\n{}", outcome.timeline_table(), outcome.summary_table());
//! sim::write_svg(&outcome, std::path::Path::new("healthy.svg"))?;
//! # Ok(())
//! # }
//! ```

pub mod histogram;
pub mod plot;
pub mod proof;
pub mod report;
pub mod rng;
pub mod runner;
pub mod scenario;
mod world;

pub use plot::{write_svg, PlotError};
pub use report::{Decision, Ended, RunSummary};
pub use runner::{
    run, run_keeping_world, ExperimentRun, SimError, SimulationOutcome, Stop, TickRecord,
};
pub use scenario::{CaptureSpec, OutputModel, Scenario, ScenarioError, ScenarioProblem};
pub use world::{
    CaptureMemory, Observation, Refusal, SimUpdate, SimWorld, VariantObservation, WriteRecord,
};
