//! The Lambda's work, independent of the runtime so tests can drive it:
//! payload in, report out.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::Config;
use crate::controller::{Budget, Controller, PeriodMemo, RunOptions, TickError};
use crate::event::{parse_event, EventError, Trigger};
use crate::policy::PolicySet;
use crate::ports::{EventSink, ExperimentStore, MetricSource};
use crate::report::emf::TickFacts;
use crate::report::Report;
use crate::schedule::Schedule;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("invalid payload, nothing was done: {0}")]
    Payload(#[from] EventError),
    #[error(transparent)]
    Tick(#[from] TickError),
}

/// Everything built once at cold start.
pub struct App<S, M> {
    pub store: S,
    pub metrics: M,
    pub policies: PolicySet,
    pub schedule: Schedule,
    pub force_dry_run: bool,
    /// The adapters' per-attempt timeout, which sizes each write group's
    /// margin before the deadline.
    pub attempt_timeout: std::time::Duration,
    /// Final latency periods, kept while the container is warm.
    pub periods: PeriodMemo,
    /// Where applied writes and new attention states are announced.
    pub events: Option<Box<dyn EventSink>>,
    /// Where the output checks read data capture (S3).
    pub capture: Option<Box<dyn crate::ports::CaptureSource>>,
}

impl<S: ExperimentStore, M: MetricSource> App<S, M> {
    pub fn new(
        store: S,
        metrics: M,
        policies: PolicySet,
        config: &Config,
        schedule: Schedule,
        attempt_timeout: std::time::Duration,
    ) -> Self {
        Self {
            store,
            metrics,
            policies,
            schedule,
            force_dry_run: config.force_dry_run,
            attempt_timeout,
            periods: PeriodMemo::default(),
            events: None,
            capture: None,
        }
    }

    /// Reads data capture through `capture` for the output checks.
    pub fn with_capture(mut self, capture: Box<dyn crate::ports::CaptureSource>) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Announces through `sink` (see [`crate::events`]).
    pub fn with_events(mut self, sink: Box<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// One invocation. `deadline` is when the invocation times out (from
    /// the Lambda context); `None` waits for every call.
    pub async fn handle(
        &self,
        payload: &Value,
        now: DateTime<Utc>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Report, HandlerError> {
        Ok(self.tick(payload, now, deadline).await?.0)
    }

    /// [`Self::handle`], with what its metrics need to know of the tick.
    pub async fn tick(
        &self,
        payload: &Value,
        now: DateTime<Utc>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(Report, TickFacts), HandlerError> {
        let started = tokio::time::Instant::now();
        let request = parse_event(payload)?;
        // What the payload asked, before the environment forces anything:
        // the schedule's `{"dry_run": false}` beats the heart even on a
        // stack deployed with DryRun=true.
        let asked_live = !request.dry_run;
        let options = RunOptions {
            // Dry wins: the environment can force it, nothing can lift it.
            dry_run: self.force_dry_run || request.dry_run,
            only: request.experiments,
            budget: deadline.map(|deadline| Budget {
                deadline,
                attempt_timeout: self.attempt_timeout,
            }),
        };
        tracing::info!(
            trigger = ?request.trigger,
            dry_run = options.dry_run,
            experiments = ?options.only,
            schedule = self.schedule.expression(),
            "tick"
        );
        let next_tick = self.schedule.next_tick_after(now);
        let mut controller = Controller::new(&self.store, &self.metrics, &self.policies)
            .with_period_memo(&self.periods);
        if let Some(sink) = &self.events {
            controller = controller.with_events(sink.as_ref());
        }
        if let Some(capture) = &self.capture {
            controller = controller.with_capture(capture.as_ref());
        }
        let report = controller.run_tick(&options, now, next_tick).await?;
        let facts = TickFacts {
            // EventBridge Scheduler's input is a payload, `{"dry_run": false}`:
            // a run asked to be live beats the heart too (forced dry or not),
            // a person's dry run does not.
            scheduled: request.trigger == Trigger::Schedule || asked_live,
            duration: started.elapsed(),
            timestamp_ms: now.timestamp_millis(),
        };
        Ok((report, facts))
    }
}
