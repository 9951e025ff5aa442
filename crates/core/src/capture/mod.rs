//! Data capture of a shadow test (pure): the JSON Lines records SageMaker
//! writes for both variants, their payloads decoded, the two copies of a
//! request paired, their outputs compared and the agreement judged with the
//! same always-valid machinery as the error rates. Reading the files is the
//! shell's job, behind a port; nothing here does I/O.
//!
//! - [`record`]: one capture file's lines → records and line problems.
//! - [`pair`]: shadow and production records of the same request.
//! - [`compare`]: what "the same answer" means, as a policy declares it.
//! - [`read`]: a variant's capture for a span, over [`crate::ports::CaptureSource`].
//! - [`sample`]: the nested sample that keeps the sequences valid.
//! - [`report`]: the agreement report of `shadowpilot compare`.
//! - [`agreement`]: the two output checks' evidence.

pub mod agreement;
pub mod compare;
pub mod pair;
pub mod read;
pub mod record;
pub mod report;
pub mod sample;
