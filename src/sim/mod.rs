//! The simulated SageMaker + CloudWatch world, the scenarios it is built
//! from, and the runner that drives the controller through it.

pub mod histogram;
pub mod plot;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod world;

pub use plot::{write_svg, PlotError};
pub use runner::{
    run, Decision, ExperimentRun, ExperimentSummary, SimError, SimulationOutcome, Stop, TickRecord,
};
pub use scenario::{Scenario, ScenarioError, ScenarioProblem};
pub use world::{Observation, SimUpdate, SimWorld, VariantObservation, WriteRecord};
