//! One tick over the ports: discover, describe, select, measure, judge, plan,
//! and, as a separate step that a dry run skips, apply.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use crate::experiment::{Experiment, ExperimentStatus, ExperimentUpdate, HOLD_TAG, POLICY_TAG};
use crate::judge::{evidence_window, judge, Verdict};
use crate::metrics::{queries_for, MeasuredExperiment, Measurements, Series, Window};
use crate::plan::{next_write_opportunity, plan, write_blocked};
use crate::policy::{select_policy, LoadedPolicy, PolicySet, Selection};
use crate::ports::{ExperimentStore, MetricSource, StoreError};
use crate::report::{ErrorInfo, ExperimentReport, Report, VerdictKind};

/// What one run is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Evaluate exactly these experiments instead of every listed one.
    pub only: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// Without the list nothing can be steered; the whole tick fails so the
    /// invocation shows as failed.
    #[error("cannot list inference experiments")]
    List(#[source] StoreError),
}

/// Describe calls in flight at once: fast enough for hundreds of
/// experiments, well under SageMaker's describe rate limits.
pub const DEFAULT_DESCRIBE_CONCURRENCY: usize = 8;

/// Experiments written at once; SageMaker's write limits are lower than its
/// read limits, and adaptive retry absorbs any throttling.
const APPLY_CONCURRENCY: usize = 4;

pub struct Controller<'a> {
    store: &'a dyn ExperimentStore,
    metrics: &'a dyn MetricSource,
    policies: &'a PolicySet,
    concurrency: usize,
}

/// A write the plan wants, with the state it was planned against so apply
/// can refuse when someone changed the experiment in between.
#[derive(Debug, Clone)]
struct PendingWrite {
    planned_against: Experiment,
    update: ExperimentUpdate,
}

#[derive(Debug, Clone)]
struct PlannedEntry {
    report: ExperimentReport,
    write: Option<PendingWrite>,
}

/// Everything a tick decided, before anything is written.
#[derive(Debug, Clone)]
pub struct TickPlan {
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub next_tick: DateTime<Utc>,
    entries: Vec<PlannedEntry>,
}

impl TickPlan {
    /// The report of a run that writes nothing.
    pub fn into_report(self) -> Report {
        let entries = self
            .entries
            .into_iter()
            .map(|mut entry| {
                if entry.write.is_some() {
                    entry.report.reason = format!("dry run, not written: {}", entry.report.reason);
                }
                log_decision(&entry.report, self.dry_run);
                entry.report
            })
            .collect();
        Report::new(self.dry_run, self.started_at, self.next_tick, entries)
    }

    /// The updates a live run would send, in order.
    pub fn updates(&self) -> Vec<&ExperimentUpdate> {
        self.entries
            .iter()
            .filter_map(|entry| entry.write.as_ref().map(|w| &w.update))
            .collect()
    }
}

/// An experiment that reached judging.
struct Judgeable<'p> {
    experiment: Experiment,
    policy: &'p LoadedPolicy,
    window: Result<Window, String>,
}

impl<'a> Controller<'a> {
    pub fn new(
        store: &'a dyn ExperimentStore,
        metrics: &'a dyn MetricSource,
        policies: &'a PolicySet,
    ) -> Self {
        Self {
            store,
            metrics,
            policies,
            concurrency: DEFAULT_DESCRIBE_CONCURRENCY,
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Plans and, unless it is a dry run, applies.
    pub async fn run_tick(
        &self,
        options: &RunOptions,
        now: DateTime<Utc>,
        next_tick: DateTime<Utc>,
    ) -> Result<Report, TickError> {
        let plan = self.plan_tick(options, now, next_tick).await?;
        if plan.dry_run {
            Ok(plan.into_report())
        } else {
            Ok(self.apply(plan).await)
        }
    }

    /// Reads everything and decides; writes nothing.
    pub async fn plan_tick(
        &self,
        options: &RunOptions,
        now: DateTime<Utc>,
        next_tick: DateTime<Utc>,
    ) -> Result<TickPlan, TickError> {
        let listed = self.store.list().await.map_err(TickError::List)?;
        let statuses: BTreeMap<String, ExperimentStatus> = listed
            .into_iter()
            .map(|summary| (summary.name, summary.status))
            .collect();

        let mut done: BTreeMap<String, ExperimentReport> = BTreeMap::new();
        let mut to_describe = Vec::new();
        let names: Vec<String> = match &options.only {
            Some(only) => only
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => statuses.keys().cloned().collect(),
        };
        for name in names {
            match statuses.get(&name) {
                None => {
                    let mut entry = ExperimentReport::new(
                        &name,
                        "unknown",
                        VerdictKind::Error,
                        "no inference experiment of this name was listed",
                    );
                    entry.error = Some(ErrorInfo {
                        kind: "not_found".into(),
                        message: format!("inference experiment {name} was not found"),
                    });
                    done.insert(name, entry);
                }
                Some(status) if !status.is_active() => {
                    done.insert(
                        name.clone(),
                        ExperimentReport::new(
                            &name,
                            status.as_str(),
                            VerdictKind::Skipped,
                            format!("status {status}: nothing to steer"),
                        ),
                    );
                }
                Some(_) => to_describe.push(name),
            }
        }

        let described: Vec<(String, Result<Experiment, StoreError>)> = stream::iter(to_describe)
            .map(|name| async move {
                let result = self.store.describe(&name).await;
                (name, result)
            })
            .buffered(self.concurrency)
            .collect()
            .await;

        let explicit = options.only.is_some();
        let mut judgeable = Vec::new();
        for (name, result) in described {
            match result {
                Err(error) => {
                    done.insert(name.clone(), error_entry(&name, "unknown", &error));
                }
                Ok(experiment) => match self.admit(experiment, explicit, now) {
                    Ok(candidate) => judgeable.push(candidate),
                    Err(entry) => {
                        done.insert(name, *entry);
                    }
                },
            }
        }

        let measurements = self.measure(&judgeable).await;
        let mut entries: Vec<PlannedEntry> = done
            .into_values()
            .map(|report| PlannedEntry {
                report,
                write: None,
            })
            .collect();
        for (candidate, measured) in judgeable.into_iter().zip(measurements) {
            entries.push(decide(candidate, measured, now, next_tick));
        }
        entries.sort_by(|a, b| a.report.name.cmp(&b.report.name));
        Ok(TickPlan {
            dry_run: options.dry_run,
            started_at: now,
            next_tick,
            entries,
        })
    }

    /// Selection and status gate: only a Running experiment with exactly one
    /// policy goes on to be judged.
    fn admit(
        &self,
        experiment: Experiment,
        explicit: bool,
        now: DateTime<Utc>,
    ) -> Result<Judgeable<'a>, Box<ExperimentReport>> {
        let status = experiment.status.as_str().to_string();
        let mut entry = ExperimentReport::new(&experiment.name, &status, VerdictKind::Skipped, "");
        entry.endpoint = Some(experiment.endpoint_name.clone());
        entry.sampling_percentage = Some(experiment.sampling_percentage);
        entry.end_time = experiment.end_time;
        entry.held = experiment.is_held();
        let policy = match select_policy(self.policies, &experiment) {
            Selection::Selected { policy, .. } => policy,
            Selection::NotSelected if explicit => {
                entry.verdict = VerdictKind::Error;
                entry.reason = format!(
                    "no policy selects it: tag it {POLICY_TAG}=<policy> or match a policy's globs"
                );
                entry.error = Some(ErrorInfo {
                    kind: "not_selected".into(),
                    message: entry.reason.clone(),
                });
                return Err(Box::new(entry));
            }
            Selection::NotSelected => {
                entry.reason = "no policy selects it".into();
                return Err(Box::new(entry));
            }
            Selection::Ambiguous { policies } => {
                entry.verdict = VerdictKind::Error;
                entry.reason = format!(
                    "selected by {} policies ({}): never written until exactly one selects it",
                    policies.len(),
                    policies.join(", ")
                );
                entry.error = Some(ErrorInfo {
                    kind: "ambiguous_policy".into(),
                    message: entry.reason.clone(),
                });
                return Err(Box::new(entry));
            }
            Selection::UnknownPolicy { name } => {
                entry.verdict = VerdictKind::Error;
                entry.reason = format!("tag {POLICY_TAG}={name} names no loaded policy");
                entry.error = Some(ErrorInfo {
                    kind: "unknown_policy".into(),
                    message: entry.reason.clone(),
                });
                return Err(Box::new(entry));
            }
        };
        entry.policy = Some(policy.name().to_string());
        match experiment.status {
            ExperimentStatus::Running => {
                let window = evidence_window(experiment.last_modified, &policy.policy.window, now)
                    .map_err(|no| no.message);
                Ok(Judgeable {
                    experiment,
                    policy,
                    window,
                })
            }
            ExperimentStatus::Created => {
                entry.reason = match experiment.start_time {
                    Some(start) => format!(
                        "Created, starts {}: no traffic to judge yet",
                        start.format("%Y-%m-%d %H:%M UTC")
                    ),
                    None => "Created: no traffic to judge yet".into(),
                };
                Err(Box::new(entry))
            }
            other => {
                entry.reason = format!("status {other}: not judged this tick");
                Err(Box::new(entry))
            }
        }
    }

    /// One batch of queries for every judgeable experiment; a CloudWatch
    /// failure leaves each of them without measurements.
    async fn measure(&self, judgeable: &[Judgeable<'_>]) -> Vec<Result<Measurements, String>> {
        let mut all_queries = Vec::new();
        let mut ranges = Vec::new();
        for candidate in judgeable {
            let Ok(window) = candidate.window else {
                ranges.push(None);
                continue;
            };
            let first = all_queries.len();
            all_queries.extend(queries_for(
                MeasuredExperiment::of(&candidate.experiment),
                &candidate.policy.needed_series(),
                window,
            ));
            ranges.push(Some(first..all_queries.len()));
        }
        let answered: Result<Vec<Series>, String> = if all_queries.is_empty() {
            Ok(Vec::new())
        } else {
            match self.metrics.fetch(&all_queries).await {
                // Folding a misaligned answer would judge on another
                // series' numbers.
                Ok(series) if series.len() != all_queries.len() => Err(format!(
                    "CloudWatch: {} series answered {} queries",
                    series.len(),
                    all_queries.len()
                )),
                Ok(series) => Ok(series),
                Err(error) => Err(format!("CloudWatch: {}", error_chain(&error))),
            }
        };
        ranges
            .into_iter()
            .map(|range| match (&answered, range) {
                (Err(message), _) => Err(message.clone()),
                (Ok(_), None) => Ok(Measurements::default()),
                (Ok(series), Some(range)) => Ok(Measurements::collect(
                    all_queries[range.clone()].iter().zip(&series[range]),
                )),
            })
            .collect()
    }

    /// Sends the planned updates, one per experiment, after checking that
    /// the experiment is still as it was when planned. A few experiments are
    /// written at once: each write is two reads and an update, and a large
    /// fleet ramping in the same tick must fit in the function's timeout.
    pub async fn apply(&self, plan: TickPlan) -> Report {
        let dry_run = plan.dry_run;
        let reports: Vec<ExperimentReport> = stream::iter(plan.entries)
            .map(|entry| async move {
                let mut report = entry.report;
                if let Some(write) = entry.write {
                    self.apply_one(&write, &mut report).await;
                }
                log_decision(&report, dry_run);
                report
            })
            .buffered(APPLY_CONCURRENCY)
            .collect()
            .await;
        Report::new(plan.dry_run, plan.started_at, plan.next_tick, reports)
    }

    async fn apply_one(&self, write: &PendingWrite, report: &mut ExperimentReport) {
        let before = &write.planned_against;
        match self.store.describe(&before.name).await {
            Err(error) => {
                record_write_error(report, &error);
                return;
            }
            Ok(now) => {
                if let Some(change) = changed_since(before, &now) {
                    report.reason = format!(
                        "not written: {change} since it was read; the next tick plans again ({})",
                        report.reason
                    );
                    return;
                }
            }
        }
        match self.store.update(&write.update).await {
            Ok(()) => report.applied = true,
            Err(error) => record_write_error(report, &error),
        }
    }
}

fn record_write_error(report: &mut ExperimentReport, error: &StoreError) {
    report.error = Some(ErrorInfo {
        kind: error.label().into(),
        message: error_chain(error),
    });
    report.reason = format!("not written: {}", error_chain(error));
}

/// What makes a planned write stale: the status, the sampling or the end
/// time moved, or someone else touched it (LastModifiedTime).
fn changed_since(before: &Experiment, now: &Experiment) -> Option<String> {
    if now.status != ExperimentStatus::Running {
        return Some(format!("status is now {}", now.status));
    }
    if now.sampling_percentage != before.sampling_percentage {
        return Some(format!(
            "sampling changed {} → {} %",
            before.sampling_percentage, now.sampling_percentage
        ));
    }
    if now.end_time != before.end_time {
        return Some("EndTime changed".into());
    }
    if now.last_modified != before.last_modified {
        return Some("LastModifiedTime changed".into());
    }
    // Tags are not part of LastModifiedTime: a person may hold the
    // experiment or hand it to another policy at any moment.
    if now.is_held() {
        return Some(format!("it was held ({HOLD_TAG}=true)"));
    }
    if now.policy_tag() != before.policy_tag() {
        return Some(format!("its {POLICY_TAG} tag changed"));
    }
    None
}

/// Judge, plan and gate one experiment: pure apart from building the report.
fn decide(
    candidate: Judgeable<'_>,
    measured: Result<Measurements, String>,
    now: DateTime<Utc>,
    next_tick: DateTime<Utc>,
) -> PlannedEntry {
    let Judgeable {
        experiment,
        policy,
        window,
    } = candidate;
    let mut report = ExperimentReport::new(
        &experiment.name,
        experiment.status.as_str(),
        VerdictKind::Inconclusive,
        "",
    );
    report.policy = Some(policy.name().to_string());
    report.endpoint = Some(experiment.endpoint_name.clone());
    report.sampling_percentage = Some(experiment.sampling_percentage);
    report.end_time = experiment.end_time;
    report.held = experiment.is_held();
    report.window = window.as_ref().ok().copied();

    // Without measurements nothing can be judged, but an extension needs
    // none: the experiment is planned as inconclusive, which never ramps.
    let verdict = match (&window, measured) {
        (_, Err(message)) => {
            report.error = Some(ErrorInfo {
                kind: "metrics".into(),
                message: message.clone(),
            });
            Verdict::without_evidence(format!("no measurements: {message}"))
        }
        (Ok(_), Ok(measurements)) => judge(&policy.policy, &measurements),
        (Err(message), Ok(_)) => Verdict::without_evidence(message.clone()),
    };
    let write_deadline = next_write_opportunity(policy, now, next_tick);
    let planned = plan(&experiment, &verdict, &policy.policy, now, write_deadline);
    report.verdict = verdict.outcome.into();
    report.decisive = verdict.decisive_check().map(|c| c.message.clone());
    report.decisive_check = verdict.decisive_check().map(|c| c.metric.clone());
    report.checks = verdict.checks;
    report.attention = planned.attention.clone();
    report.actions = planned.actions.clone();

    let mut reasons: Vec<String> = planned
        .actions
        .iter()
        .map(|action| match action {
            crate::plan::Action::SetSampling { reason, .. }
            | crate::plan::Action::ExtendEndTime { reason, .. } => reason.clone(),
        })
        .collect();
    reasons.extend(planned.notes.iter().cloned());
    let mut write = planned.update_for(&experiment).map(|update| PendingWrite {
        planned_against: experiment.clone(),
        update,
    });
    if write.is_some() {
        if let Some(blocked) = write_blocked(&experiment, policy, now) {
            reasons.push(format!("not written: {blocked}"));
            write = None;
        }
    }
    report.reason = reasons.join("; ");
    PlannedEntry { report, write }
}

fn error_entry(name: &str, status: &str, error: &StoreError) -> ExperimentReport {
    let mut entry = ExperimentReport::new(name, status, VerdictKind::Error, error_chain(error));
    entry.error = Some(ErrorInfo {
        kind: error.label().into(),
        message: error_chain(error),
    });
    entry
}

/// The error and its causes on one line, for reports.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn log_decision(report: &ExperimentReport, dry_run: bool) {
    let actions = serde_json::to_string(&report.actions).unwrap_or_default();
    tracing::info!(
        experiment = %report.name,
        status = %report.status,
        policy = report.policy.as_deref().unwrap_or("-"),
        verdict = report.verdict.as_str(),
        decisive = report.decisive.as_deref().unwrap_or("-"),
        actions = %actions,
        applied = report.applied,
        dry_run,
        error = report.error.as_ref().map(|e| e.kind.as_str()).unwrap_or("-"),
        reason = %report.reason,
        "decision"
    );
}
