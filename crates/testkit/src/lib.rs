//! Test support shared by the crates' integration tests and benchmarks.
//!
//! Layout:
//! - [`http`]: a local HTTP/1.1 server that records what the SDK sends, and
//!   just enough CBOR to read and write Smithy RPC v2 bodies.
//! - [`fake_aws`]: a stateful stand-in for SageMaker, CloudWatch, EventBridge and S3 behind
//!   one endpoint, a fake Lambda Runtime API, and child-process helpers.

pub mod fake_aws;
pub mod http;
