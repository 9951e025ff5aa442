//! The core of shadowpilot, which steers Amazon SageMaker shadow tests: it
//! decides, and it never talks to AWS itself. The crate has no AWS SDK, no
//! CLI parser, no plotting and no randomness; `shadowpilot-aws` and
//! `shadowpilot-sim` implement its ports, and the two binaries wire them.
//!
//! # Layout
//! - [`experiment`]: our model of an inference experiment and of an update.
//! - [`capture`] (pure): data-capture records of both variants, paired by
//!   request, their outputs compared and the agreement judged.
//! - [`ports`]: the two capabilities a tick needs, an experiment store and a
//!   metric source, as small `Send + Sync` traits.
//! - [`metrics`]: the series a policy needs, asked of the metric source in
//!   domain terms, and what the judge reads back.
//! - [`policy`]: policy files, validated and compiled once at load; which
//!   policy selects an experiment.
//! - [`evidence`] (pure): the timeline of an experiment's evidence (step,
//!   whole experiment, earlier steps), the metric queries of both rounds
//!   and each step's latency period.
//! - [`judge`] (pure): evidence → a verdict with one result per check, from
//!   always-valid confidence sequences (step, whole experiment, epochs).
//! - [`plan`] (pure): experiment, verdict, policy, now → actions and notes.
//! - [`stats`] (pure): always-valid intervals for error rates and latency
//!   ratios, their decisions and the time each still needs (statistics.md).
//! - [`controller`]: one tick over the ports within a time budget;
//!   planning and applying are separate steps, and a dry run skips the
//!   second.
//! - [`limit`]: how many calls to a service may be in flight, halved when
//!   it throttles (the adapters use it).
//! - [`report`]: what each experiment's tick came to, as typed values, and
//!   [`report::render`], the one place that puts them into words.
//! - [`events`] (pure): the EventBridge events an applied write and a new
//!   attention state announce.
//! - [`event`], [`config`], [`handler`]: the Lambda's input, the environment,
//!   and payload in → report out, independent of the runtime.
//! - [`duration`]: durations as people write them in policies and scenarios.
//! - [`schedule`]: EventBridge `rate(...)`/`cron(...)` expressions.
//! - [`validation`]: problems in files people write, by file and field.

use std::time::Duration;

pub mod capture;
pub mod config;
pub mod controller;
pub mod duration;
pub mod event;
pub mod events;
pub mod evidence;
pub mod experiment;
pub mod handler;
pub mod judge;
pub mod limit;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod validation;

/// AWS allows an inference experiment at most 30 days from StartTime to EndTime.
pub const MAX_EXPERIMENT_DURATION: Duration = Duration::from_secs(30 * 86_400);
