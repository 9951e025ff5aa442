//! The simulated SageMaker + CloudWatch world.
