//! The simulated SageMaker + CloudWatch world, the scenarios it is built
//! from, and the runner that drives the controller through it.

pub mod histogram;
pub mod rng;
pub mod scenario;
pub mod world;

pub use scenario::{Scenario, ScenarioError, ScenarioProblem};
pub use world::{Observation, SimUpdate, SimWorld, VariantObservation, WriteRecord};
