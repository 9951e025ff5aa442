//! One tick over the ports: discover, describe, select, measure, judge, plan,
//! and, as a separate step that a dry run skips, apply. Every experiment
//! seen ends as one [`ExperimentReport`] whose disposition is a typed value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use crate::capture::read::{pairing_keys, read_keeping, read_variant, Destination};
use crate::capture::report::{agreement_report, CompareOptions};
use crate::capture::sample::rate_for;
use crate::capture::{CaptureFailure, CompareError, OutputEvidence, DELIVERY_DELAY};
use crate::events::events_for;
use crate::evidence::{
    count_queries, final_periods, latency_queries, periods_known, production_rate_before_step,
    Evidence, PeriodChoice, PeriodKey, Timeline,
};
use crate::experiment::{
    Experiment, ExperimentStatus, ExperimentStop, ExperimentUpdate, MAX_STOP_REASON_CHARS,
};
use crate::judge::{judge, Verdict};
use crate::metrics::{MeasuredExperiment, SeriesQuery};
use crate::plan::{
    next_write_opportunity, plan, recorded_attention, write_blocked, Action, Cadence, TagChanges,
};
use crate::policy::{select_policy, Policy, PolicySet, Selection};
use crate::ports::{
    CaptureSource, EventSink, ExperimentStore, MetricError, MetricFailure, MetricSource,
    SeriesAnswer, StoreError,
};
use crate::report::render::action_reason;
use crate::report::{
    Deferral, Disposition, EntryError, EventsOutcome, ExperimentReport, Report, SkipReason,
    Staleness, Steered, WriteOutcome,
};

/// What one run is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Evaluate exactly these experiments instead of every listed one.
    pub only: Option<Vec<String>>,
    /// When the report must be back; `None` (the simulator, whose clock is
    /// virtual) waits for every call.
    pub budget: Option<Budget>,
}

/// A tick's time budget. Reads have shares of the time to the deadline;
/// each experiment's write group starts only with its margin left.
///
/// - Describes (each with its tags) run until all have answered or
///   [`DESCRIBE_SHARE`] of the time has passed; then the metrics round is
///   sent for those described, and the rest are `deferred`.
/// - Metric rounds must answer by [`METRICS_SHARE`] of the time; a round
///   not answered by then leaves its experiments judged without evidence
///   (inconclusive: never a ramp; an extension may still be written).
/// - A write group (re-describe, update, add-tags, delete-tags) starts only
///   if the deadline is further away than one attempt timeout per call in
///   the group plus [`WRITE_SLACK`]; otherwise its write is `deferred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub deadline: tokio::time::Instant,
    /// One AWS attempt's timeout, as the adapters are configured.
    pub attempt_timeout: std::time::Duration,
}

pub const DESCRIBE_SHARE: f64 = 0.3;
pub const METRICS_SHARE: f64 = 0.6;
/// Capture readings stop here, leaving the rest of the time to the writes.
pub const CAPTURE_SHARE: f64 = 0.8;

/// Experiments whose capture is read at once: each holds up to its
/// policy's `max_records` per variant in memory.
const CAPTURE_CONCURRENCY: usize = 2;

/// The capture's sample rate keeps the step's expected shadow records under
/// the policy's `max_records` over the span the byte cap lets the
/// production reading reach (production's files hold every request), at
/// most a day; a record is taken to weigh this much. Only the rate depends
/// on it, never what a record counts for.
const SAMPLE_HORIZON_MINUTES: f64 = 24.0 * 60.0;
const ASSUMED_RECORD_BYTES: f64 = 512.0;
/// Beyond the group's attempt timeouts: the report still has to be
/// rendered and returned.
pub const WRITE_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

impl Budget {
    /// `share` of the way from `start` to the deadline.
    fn cutoff(&self, start: tokio::time::Instant, share: f64) -> tokio::time::Instant {
        start
            + self
                .deadline
                .saturating_duration_since(start)
                .mul_f64(share)
    }

    /// What a write group of `calls` calls needs before the deadline.
    pub fn write_margin(&self, calls: u32) -> std::time::Duration {
        self.attempt_timeout * calls + WRITE_SLACK
    }
}

/// The cut-off times of one tick, fixed when it starts.
#[derive(Debug, Clone, Copy)]
struct Cutoffs {
    started: tokio::time::Instant,
    describes: tokio::time::Instant,
    metrics: tokio::time::Instant,
    capture: tokio::time::Instant,
}

impl Cutoffs {
    fn of(budget: &Budget) -> Self {
        let started = tokio::time::Instant::now();
        Self {
            started,
            describes: budget.cutoff(started, DESCRIBE_SHARE),
            metrics: budget.cutoff(started, METRICS_SHARE),
            capture: budget.cutoff(started, CAPTURE_SHARE),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// Without the list nothing can be steered; the whole tick fails so the
    /// invocation shows as failed.
    #[error("cannot list inference experiments")]
    List(#[source] StoreError),
    #[error("ListInferenceExperiments did not answer within the tick's read budget ({} s)", .waited.as_secs_f64().round())]
    ListOutOfTime { waited: std::time::Duration },
}

impl TickError {
    /// The kind and the call, for the metrics of a tick that failed whole.
    pub fn kind_and_operation(&self) -> (crate::report::ErrorKind, &'static str) {
        use crate::report::ErrorKind;
        match self {
            Self::List(error) => (
                ErrorKind::of_store_error(error),
                error.operation().unwrap_or("ListInferenceExperiments"),
            ),
            Self::ListOutOfTime { .. } => (ErrorKind::Service, "ListInferenceExperiments"),
        }
    }
}

/// SageMaker calls (describes with their tags, and write groups) in
/// flight at once, at most. The adapter's adaptive limit keeps the real
/// number lower while SageMaker throttles.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Datapoints of evidence a tick holds at once (about 25 bytes each once
/// folded into series). GetMetricData returns at most 100,800 a call, so a
/// group this size is still only about ten calls.
const EVIDENCE_BUDGET: u64 = 1_000_000;

/// What one experiment's evidence will weigh: five-minute counts over the
/// whole experiment and an hour before, and each latency check's series at
/// the shortest period.
fn estimated_datapoints(candidate: &Judgeable<'_>) -> u64 {
    let timeline = &candidate.timeline;
    let seconds = (timeline.end - timeline.whole_start).num_seconds().max(0) + 3600;
    let periods = u64::try_from(seconds / crate::evidence::ERROR_PERIOD_SECS + 1).unwrap_or(0);
    let (mut count_series, mut latency_series) = (2u64, 0u64);
    for check in &candidate.policy.checks {
        let form = crate::evidence::Form::of(check);
        if form.is_latency() {
            latency_series += 5;
        } else if form.is_error() {
            count_series += 2;
        }
    }
    periods * (count_series + latency_series)
}

pub struct Controller<'a> {
    store: &'a dyn ExperimentStore,
    metrics: &'a dyn MetricSource,
    policies: &'a PolicySet,
    concurrency: usize,
    memo: Option<&'a PeriodMemo>,
    events: Option<&'a dyn EventSink>,
    capture: Option<&'a dyn CaptureSource>,
}

/// Latency periods that can no longer change ([`final_periods`]),
/// remembered by one process across its ticks, by experiment ARN. A warm
/// Lambda then asks each experiment's latency series in the same metric
/// round as its counts, one sequential round fewer. It holds nothing a
/// decision depends on: a cold start chooses the same periods from the
/// counts, one round later.
#[derive(Debug, Default)]
pub struct PeriodMemo {
    known: std::sync::Mutex<HashMap<String, HashMap<PeriodKey, PeriodChoice>>>,
}

impl PeriodMemo {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, HashMap<PeriodKey, PeriodChoice>>) -> T,
    ) -> T {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut known)
    }

    fn known(&self, arn: &str) -> HashMap<PeriodKey, PeriodChoice> {
        self.with(|known| known.get(arn).cloned().unwrap_or_default())
    }

    /// Replaces what is known of `arn`, so segments that fell out of its
    /// timeline are forgotten.
    fn remember(&self, arn: &str, periods: Vec<(PeriodKey, PeriodChoice)>) {
        self.with(|known| {
            known.insert(arn.to_string(), periods.into_iter().collect());
        });
    }

    /// Forgets every experiment not in `arns` (those no longer listed).
    fn keep_only(&self, arns: &BTreeSet<String>) {
        self.with(|known| known.retain(|arn, _| arns.contains(arn)));
    }

    /// Experiments with remembered periods.
    pub fn len(&self) -> usize {
        self.with(|known| known.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A write the plan wants, with the state it was planned against so apply
/// can refuse when someone changed the experiment in between.
#[derive(Debug, Clone)]
struct PendingWrite {
    planned_against: Experiment,
    /// `None` when only tags change.
    update: Option<ExperimentUpdate>,
    /// The end of the test; never with an update.
    stop: Option<ExperimentStop>,
    tags: TagChanges,
}

impl PendingWrite {
    /// Whether SageMaker is asked to change the experiment itself.
    fn changes_experiment(&self) -> bool {
        self.update.is_some() || self.stop.is_some()
    }
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
    budget: Option<Budget>,
}

impl TickPlan {
    /// The report of a run that writes nothing.
    pub fn into_report(self) -> Report {
        let entries = self
            .entries
            .into_iter()
            .map(|entry| {
                let mut report = entry.report;
                if entry.write.is_some() {
                    set_write(&mut report, WriteOutcome::DryRun);
                }
                report.log(self.dry_run);
                report
            })
            .collect();
        Report::new(self.dry_run, self.started_at, self.next_tick, entries)
    }

    /// The updates a live run would send, in order.
    pub fn updates(&self) -> Vec<&ExperimentUpdate> {
        self.entries
            .iter()
            .filter_map(|entry| entry.write.as_ref().and_then(|w| w.update.as_ref()))
            .collect()
    }

    /// The StopInferenceExperiment calls a live run would send, in order.
    pub fn stops(&self) -> Vec<&ExperimentStop> {
        self.entries
            .iter()
            .filter_map(|entry| entry.write.as_ref().and_then(|w| w.stop.as_ref()))
            .collect()
    }

    /// The tag changes a live run would send, by experiment name.
    pub fn tag_changes(&self) -> Vec<(&str, &TagChanges)> {
        self.entries
            .iter()
            .filter_map(|entry| {
                entry
                    .write
                    .as_ref()
                    .filter(|w| !w.tags.is_empty())
                    .map(|w| (w.planned_against.name.as_str(), &w.tags))
            })
            .collect()
    }
}

fn set_write(report: &mut ExperimentReport, outcome: WriteOutcome) {
    if let Disposition::Steered(steered) = &mut report.disposition {
        steered.write = outcome;
    }
}

/// An experiment that reached judging.
struct Judgeable<'p> {
    experiment: Experiment,
    measured: Arc<MeasuredExperiment>,
    policy: &'p Policy,
    timeline: Timeline,
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
            concurrency: DEFAULT_CONCURRENCY,
            memo: None,
            events: None,
            capture: None,
        }
    }

    /// Reads data capture from `capture` for the output checks; without
    /// it, an output check is inconclusive (never a pass).
    pub fn with_capture(mut self, capture: &'a dyn CaptureSource) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Publishes each landed write's events (see [`crate::events`]) to
    /// `sink`, as the last call of its write group.
    pub fn with_events(mut self, sink: &'a dyn EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Remembers final latency periods in `memo` across ticks.
    pub fn with_period_memo(mut self, memo: &'a PeriodMemo) -> Self {
        self.memo = Some(memo);
        self
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
        let cutoffs = options.budget.as_ref().map(Cutoffs::of);
        let listed = match cutoffs {
            None => self.store.list().await,
            Some(cutoffs) => {
                match tokio::time::timeout_at(cutoffs.describes, self.store.list()).await {
                    Ok(listed) => listed,
                    Err(_) => {
                        return Err(TickError::ListOutOfTime {
                            waited: cutoffs.started.elapsed(),
                        })
                    }
                }
            }
        };
        let listed = listed.map_err(TickError::List)?;
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
                    let entry = ExperimentReport::new(
                        &name,
                        None,
                        Disposition::Failed(EntryError::NotListed),
                    );
                    done.insert(name, entry);
                }
                Some(status) if !status.is_active() => {
                    let entry = ExperimentReport::new(
                        &name,
                        Some(status.clone()),
                        Disposition::Skipped(SkipReason::Inactive(status.clone())),
                    );
                    done.insert(name, entry);
                }
                Some(_) => to_describe.push(name),
            }
        }

        let mut unread: BTreeSet<String> = to_describe.iter().cloned().collect();
        let reads = stream::iter(to_describe)
            .map(|name| async move {
                let result = self.store.describe(&name).await;
                (name, result)
            })
            .buffer_unordered(self.concurrency);
        let mut described: Vec<(String, Result<Experiment, StoreError>)> = match cutoffs {
            None => reads.collect().await,
            Some(cutoffs) => {
                // The metrics round waits for every describe or the cut-off,
                // whichever comes first: one stalled call must not hold up
                // the rest of the fleet.
                reads
                    .take_until(tokio::time::sleep_until(cutoffs.describes))
                    .collect()
                    .await
            }
        };
        for (name, _) in &described {
            unread.remove(name);
        }
        if let Some(cutoffs) = cutoffs {
            let waited = cutoffs.describes.saturating_duration_since(cutoffs.started);
            for name in unread {
                let status = statuses.get(&name).cloned();
                let entry = ExperimentReport::new(
                    &name,
                    status,
                    Disposition::Deferred(Deferral::NotRead { waited }),
                );
                done.insert(name, entry);
            }
        }
        // Answers arrive in any order; groups and logs should not.
        described.sort_by(|a, b| a.0.cmp(&b.0));

        let explicit = options.only.is_some();
        let mut judgeable = Vec::new();
        for (name, result) in described {
            match result {
                Err(error) => {
                    let entry = ExperimentReport::new(
                        &name,
                        None,
                        Disposition::Failed(EntryError::Store(Arc::new(error))),
                    );
                    done.insert(name, entry);
                }
                Ok(experiment) => match self.admit(experiment, explicit, now) {
                    Ok(candidate) => judgeable.push(candidate),
                    Err(entry) => {
                        done.insert(name, *entry);
                    }
                },
            }
        }
        if let (Some(memo), false) = (self.memo, explicit) {
            memo.keep_only(&judgeable.iter().map(|c| c.experiment.arn.clone()).collect());
        }

        let mut entries: Vec<PlannedEntry> = done
            .into_values()
            .map(|report| PlannedEntry {
                report,
                write: None,
            })
            .collect();
        // Measured and judged a group at a time, so a tick never holds more
        // than about EVIDENCE_BUDGET datapoints whatever the fleet: each
        // group's evidence is dropped once it is judged.
        let mut rest = judgeable.into_iter().peekable();
        while rest.peek().is_some() {
            let mut group = Vec::new();
            let mut budget = 0;
            while let Some(candidate) = rest.peek() {
                let size = estimated_datapoints(candidate);
                if !group.is_empty() && budget + size > EVIDENCE_BUDGET {
                    break;
                }
                budget += size;
                group.extend(rest.next());
            }
            let mut measurements = self.measure(&group, cutoffs).await;
            self.read_outputs(&group, &mut measurements, cutoffs, now)
                .await;
            for (candidate, measured) in group.into_iter().zip(measurements) {
                entries.push(decide(candidate, measured, now, next_tick));
            }
        }
        entries.sort_by(|a, b| a.report.name.cmp(&b.report.name));
        Ok(TickPlan {
            dry_run: options.dry_run,
            started_at: now,
            next_tick,
            entries,
            budget: options.budget,
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
        let entry = |disposition: Disposition, policy: Option<&Policy>| {
            let mut entry = described_entry(&experiment, disposition);
            entry.policy = policy.map(|p| p.name.clone());
            Box::new(entry)
        };
        let policy = match select_policy(self.policies, &experiment) {
            Selection::Selected { policy, .. } => policy,
            Selection::NotSelected if explicit => {
                return Err(entry(Disposition::Failed(EntryError::NotSelected), None))
            }
            Selection::NotSelected => {
                return Err(entry(Disposition::Skipped(SkipReason::NotSelected), None))
            }
            Selection::Ambiguous { policies } => {
                return Err(entry(
                    Disposition::Failed(EntryError::AmbiguousPolicy { policies }),
                    None,
                ))
            }
            Selection::UnknownPolicy { name } => {
                return Err(entry(
                    Disposition::Failed(EntryError::UnknownPolicy { name }),
                    None,
                ))
            }
        };
        match experiment.status {
            ExperimentStatus::Running => {
                let timeline = Timeline::of(&experiment, policy, now);
                Ok(Judgeable {
                    measured: Arc::new(MeasuredExperiment::of(&experiment)),
                    experiment,
                    policy,
                    timeline,
                })
            }
            ExperimentStatus::Created => Err(entry(
                Disposition::Skipped(SkipReason::Created {
                    start: experiment.start_time,
                }),
                Some(policy),
            )),
            ref other => Err(entry(
                Disposition::Skipped(SkipReason::NotJudged(other.clone())),
                Some(policy),
            )),
        }
    }

    /// Two rounds of metric queries for every judgeable experiment: the
    /// counts first (errors, and the traffic each latency period is chosen
    /// from), then the latency series at those periods. A failed query
    /// leaves its experiment without evidence; a failure of a whole round
    /// leaves every one of them so.
    ///
    /// An experiment whose every latency period is remembered (see
    /// [`PeriodMemo`]) asks its latency series in the first round, with its
    /// counts, and has nothing left for the second.
    async fn measure(
        &self,
        judgeable: &[Judgeable<'_>],
        cutoffs: Option<Cutoffs>,
    ) -> Vec<Result<Evidence, MetricFailure>> {
        let remembered: Vec<Result<Evidence, MetricFailure>> = judgeable
            .iter()
            .map(|candidate| {
                Ok(Evidence {
                    periods: self
                        .memo
                        .map(|memo| memo.known(&candidate.experiment.arn))
                        .unwrap_or_default(),
                    ..Evidence::default()
                })
            })
            .collect();
        let all_known = |candidate: &Judgeable<'_>, known: &Evidence| {
            periods_known(&candidate.timeline, candidate.policy, known)
        };
        let latency_of = |candidate: &Judgeable<'_>, evidence: &Evidence| {
            latency_queries(
                &candidate.measured,
                &candidate.timeline,
                candidate.policy,
                evidence,
            )
        };
        let counts = self
            .round(
                cutoffs,
                judgeable,
                |candidate, known| {
                    let mut queries =
                        count_queries(&candidate.measured, &candidate.timeline, candidate.policy);
                    if all_known(candidate, known) {
                        queries.extend(latency_of(candidate, known));
                    }
                    queries
                },
                &remembered,
            )
            .await;
        let latency = self
            .round(
                cutoffs,
                judgeable,
                |candidate, counts| {
                    if all_known(candidate, counts) {
                        Vec::new()
                    } else {
                        latency_of(candidate, counts)
                    }
                },
                &counts,
            )
            .await;
        let measured: Vec<Result<Evidence, MetricFailure>> = counts
            .into_iter()
            .zip(latency)
            .map(|(counts, latency)| {
                let mut evidence = counts?;
                evidence.series.extend(latency?.series);
                Ok(evidence)
            })
            .collect();
        if let Some(memo) = self.memo {
            for (candidate, evidence) in judgeable.iter().zip(&measured) {
                if let Ok(evidence) = evidence {
                    memo.remember(
                        &candidate.experiment.arn,
                        final_periods(&candidate.timeline, candidate.policy, evidence),
                    );
                }
            }
        }
        measured
    }

    /// The step's data capture of each measured experiment whose policy has
    /// output checks, a few experiments at a time, until
    /// [`CAPTURE_SHARE`] of the tick's time: a reading cut short by it is
    /// judged on what it read, like one the policy's caps stopped.
    async fn read_outputs(
        &self,
        judgeable: &[Judgeable<'_>],
        measured: &mut [Result<Evidence, MetricFailure>],
        cutoffs: Option<Cutoffs>,
        now: DateTime<Utc>,
    ) {
        let deadline = cutoffs.map(|cutoffs| cutoffs.capture);
        let reads: Vec<(usize, OutputEvidence)> =
            stream::iter(judgeable.iter().zip(measured.iter()).enumerate().filter(
                |(_, (candidate, evidence))| {
                    candidate.policy.has_output_checks() && evidence.is_ok()
                },
            ))
            .map(|(index, (candidate, evidence))| async move {
                let rate = evidence.as_ref().ok().and_then(|evidence| {
                    production_rate_before_step(&candidate.timeline, evidence)
                });
                (
                    index,
                    self.read_output(candidate, rate, now, deadline).await,
                )
            })
            .buffer_unordered(CAPTURE_CONCURRENCY)
            .collect()
            .await;
        for (index, outputs) in reads {
            if let Some(Ok(evidence)) = measured.get_mut(index) {
                evidence.outputs = outputs;
            }
        }
    }

    async fn read_output(
        &self,
        candidate: &Judgeable<'_>,
        production_per_minute: Option<f64>,
        now: DateTime<Utc>,
        deadline: Option<tokio::time::Instant>,
    ) -> OutputEvidence {
        let failed = |error: CompareError| OutputEvidence::Failed(CaptureFailure(Arc::new(error)));
        let experiment = &candidate.experiment;
        let Some(config) = &experiment.capture else {
            return OutputEvidence::NoCapture;
        };
        let Some(source) = self.capture else {
            return failed(CompareError::NoReader);
        };
        let destination = match Destination::parse(&config.destination) {
            Ok(destination) => destination,
            Err(error) => return failed(error.into()),
        };
        let policy = candidate.policy;
        let timeline = &candidate.timeline;
        let from = timeline.step_start;
        let span = (from, (now - DELIVERY_DELAY).max(from));
        // Fixed for the step: production's traffic before it is past.
        let production_per_minute = production_per_minute.unwrap_or(0.0);
        let reach_minutes = if production_per_minute > 0.0 {
            policy.outputs.limits.max_bytes as f64 / (production_per_minute * ASSUMED_RECORD_BYTES)
        } else {
            SAMPLE_HORIZON_MINUTES
        };
        let expected = production_per_minute * f64::from(timeline.percentage) / 100.0
            * reach_minutes.min(SAMPLE_HORIZON_MINUTES);
        let rate = rate_for(policy.outputs.limits.max_records, expected);
        let limits = policy.outputs.limits;
        let endpoint = &experiment.endpoint_name;
        let shadow = match read_variant(
            source,
            &destination,
            endpoint,
            &experiment.shadow_variant,
            span,
            rate,
            limits,
            deadline,
        )
        .await
        {
            Ok(read) => read,
            Err(source) => {
                return failed(CompareError::Capture {
                    role: "shadow",
                    source,
                })
            }
        };
        // Pairing by input needs every production record; otherwise only
        // those a shadow record can pair with are kept.
        let keys = policy
            .outputs
            .pairing
            .by_input_within
            .is_none()
            .then(|| pairing_keys(&shadow));
        let production = read_keeping(
            source,
            &destination,
            endpoint,
            &experiment.production_variant,
            span,
            rate,
            limits,
            deadline,
            keys.as_ref(),
        )
        .await;
        let production = match production {
            Ok(read) => read,
            Err(source) => {
                return failed(CompareError::Capture {
                    role: "production",
                    source,
                })
            }
        };
        let report = agreement_report(&shadow, &production, &CompareOptions::of_policy(policy));
        OutputEvidence::Read {
            report: Arc::new(report),
            rate,
            span,
        }
    }

    /// One metric round: each experiment's queries (from what the previous
    /// round gave it), asked in one batch, answered per experiment.
    async fn round(
        &self,
        cutoffs: Option<Cutoffs>,
        judgeable: &[Judgeable<'_>],
        queries_of: impl Fn(&Judgeable<'_>, &Evidence) -> Vec<SeriesQuery>,
        before: &[Result<Evidence, MetricFailure>],
    ) -> Vec<Result<Evidence, MetricFailure>> {
        let mut all_queries = Vec::new();
        let mut ranges = Vec::new();
        for (candidate, earlier) in judgeable.iter().zip(before) {
            let Ok(earlier) = earlier else {
                ranges.push(None);
                continue;
            };
            let first = all_queries.len();
            all_queries.extend(queries_of(candidate, earlier));
            ranges.push(Some(first..all_queries.len()));
        }
        let fetched = async {
            match cutoffs {
                None => Ok(self.metrics.fetch(&all_queries).await),
                // A round is not even sent once its time is up.
                Some(cutoffs) if tokio::time::Instant::now() >= cutoffs.metrics => {
                    Err(cutoffs.started.elapsed())
                }
                Some(cutoffs) => {
                    tokio::time::timeout_at(cutoffs.metrics, self.metrics.fetch(&all_queries))
                        .await
                        .map_err(|_| cutoffs.started.elapsed())
                }
            }
        };
        let answered: Result<Vec<SeriesAnswer>, MetricFailure> = if all_queries.is_empty() {
            Ok(Vec::new())
        } else {
            match fetched.await {
                Err(waited) => Err(MetricFailure(Arc::new(MetricError::OutOfTime { waited }))),
                Ok(fetched) => match fetched {
                    Ok(series) if series.len() != all_queries.len() => {
                        Err(MetricFailure(Arc::new(MetricError::Misaligned {
                            asked: all_queries.len(),
                            answered: series.len(),
                        })))
                    }
                    Ok(series) => Ok(series),
                    Err(error) => Err(MetricFailure(Arc::new(error))),
                },
            }
        };
        let mut answered = match answered {
            Ok(answers) => answers.into_iter().map(Some).collect::<Vec<_>>(),
            Err(failure) => return judgeable.iter().map(|_| Err(failure.clone())).collect(),
        };
        ranges
            .into_iter()
            .zip(before)
            .map(|(range, earlier)| match (range, earlier) {
                (None, Err(failure)) => Err(failure.clone()),
                (None, Ok(_)) => Ok(Evidence::default()),
                (Some(range), earlier) => {
                    // The periods the queries were planned with travel on,
                    // so the next round and the judge plan the same.
                    let mut evidence = Evidence {
                        periods: earlier
                            .as_ref()
                            .map(|e| e.periods.clone())
                            .unwrap_or_default(),
                        ..Evidence::default()
                    };
                    for index in range {
                        match answered[index].take() {
                            Some(Ok(series)) => evidence.insert(&all_queries[index], series),
                            Some(Err(error)) => return Err(MetricFailure(error)),
                            None => {}
                        }
                    }
                    Ok(evidence)
                }
            })
            .collect()
    }

    /// Sends the planned updates, one per experiment, after checking that
    /// the experiment is still as it was when planned. A few experiments are
    /// written at once: each write is two reads and an update, and a large
    /// fleet ramping in the same tick must fit in the function's timeout.
    pub async fn apply(&self, plan: TickPlan) -> Report {
        let dry_run = plan.dry_run;
        let budget = plan.budget;
        let reports: Vec<ExperimentReport> = stream::iter(plan.entries)
            .map(|entry| async move {
                let mut report = entry.report;
                if let Some(write) = entry.write {
                    let publishes = u32::from(self.events.is_some());
                    let outcome = match budget.and_then(|b| no_time_to_write(&b, &write, publishes))
                    {
                        Some(deferral) => WriteOutcome::Deferred(deferral),
                        None => self.apply_one(&write).await,
                    };
                    // Attention events only once the attention tag is written: a
                    // tick that finds it written announces nothing again. An
                    // update or stop that landed is announced even when its
                    // tags then failed: it will not be planned again (a stopped
                    // experiment is never steered again).
                    let landed =
                        matches!(outcome, WriteOutcome::Applied | WriteOutcome::TagsWritten);
                    let actions_only =
                        matches!(outcome, WriteOutcome::TagWriteFailed { updated: true, .. });
                    set_write(&mut report, outcome);
                    if let (true, Some(sink)) = (landed || actions_only, self.events) {
                        let before = if actions_only {
                            report.attention().iter().copied().collect()
                        } else {
                            recorded_attention(&write.planned_against)
                        };
                        let events = events_for(
                            &report,
                            &write.planned_against.arn,
                            &before,
                            write.changes_experiment(),
                        );
                        if !events.is_empty() {
                            let outcome = match sink.publish(&events).await {
                                Ok(()) => EventsOutcome::Published(
                                    events.iter().map(|e| e.detail_type).collect(),
                                ),
                                Err(error) => EventsOutcome::Failed(Arc::new(error)),
                            };
                            if let Disposition::Steered(steered) = &mut report.disposition {
                                steered.events = outcome;
                            }
                        }
                    }
                }
                report.log(dry_run);
                report
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        Report::new(plan.dry_run, plan.started_at, plan.next_tick, reports)
    }

    async fn apply_one(&self, write: &PendingWrite) -> WriteOutcome {
        let before = &write.planned_against;
        match self.store.describe(&before.name).await {
            Err(error) => return WriteOutcome::from_store_error(error),
            Ok(now) => {
                if let Some(staleness) = changed_since(before, &now) {
                    return WriteOutcome::ChangedSinceRead(staleness);
                }
            }
        }
        if let Some(update) = &write.update {
            if let Err(error) = self.store.update(update).await {
                return WriteOutcome::from_store_error(error);
            }
        }
        if let Some(stop) = &write.stop {
            if let Err(error) = self.store.stop(stop).await {
                return WriteOutcome::from_store_error(error);
            }
        }
        // After the update, so a tag never claims a step AWS refused; a tag
        // that fails to land reads next tick as a change made elsewhere.
        let arn = &before.arn;
        if !write.tags.set.is_empty() {
            if let Err(error) = self.store.add_tags(arn, &write.tags.set).await {
                return WriteOutcome::tag_write(arn, error, write.changes_experiment());
            }
        }
        if !write.tags.remove.is_empty() {
            if let Err(error) = self.store.delete_tags(arn, &write.tags.remove).await {
                return WriteOutcome::tag_write(arn, error, write.changes_experiment());
            }
        }
        if write.changes_experiment() {
            WriteOutcome::Applied
        } else {
            WriteOutcome::TagsWritten
        }
    }
}

/// The deferral of a write group that would start inside its margin: it
/// is checked when the group's turn comes, not when the tick starts.
fn no_time_to_write(budget: &Budget, write: &PendingWrite, extra_calls: u32) -> Option<Deferral> {
    let calls = 1
        + extra_calls
        + u32::from(write.changes_experiment())
        + u32::from(!write.tags.set.is_empty())
        + u32::from(!write.tags.remove.is_empty());
    let margin = budget.write_margin(calls);
    let left = budget
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    (left <= margin).then_some(Deferral::NoTimeToWrite { left, margin })
}

/// What makes a planned write stale: the status, the sampling or the end
/// time moved, or someone else touched it (LastModifiedTime).
fn changed_since(before: &Experiment, now: &Experiment) -> Option<Staleness> {
    if now.status != ExperimentStatus::Running {
        return Some(Staleness::Status(now.status.clone()));
    }
    if now.sampling_percentage != before.sampling_percentage {
        return Some(Staleness::Sampling {
            from: before.sampling_percentage,
            to: now.sampling_percentage,
        });
    }
    if now.end_time != before.end_time {
        return Some(Staleness::EndTime);
    }
    if now.last_modified != before.last_modified {
        return Some(Staleness::LastModifiedTime);
    }
    // Tags are not part of LastModifiedTime: a person may hold the
    // experiment or hand it to another policy at any moment.
    if now.is_held() {
        return Some(Staleness::Held);
    }
    if now.policy_tag() != before.policy_tag() {
        return Some(Staleness::PolicyTag);
    }
    None
}

/// An entry with what the describe answer says about the experiment.
fn described_entry(experiment: &Experiment, disposition: Disposition) -> ExperimentReport {
    let mut entry = ExperimentReport::new(
        &experiment.name,
        Some(experiment.status.clone()),
        disposition,
    );
    entry.endpoint = Some(experiment.endpoint_name.clone());
    entry.sampling_percentage = Some(experiment.sampling_percentage);
    entry.end_time = experiment.end_time;
    entry.held = experiment.is_held();
    entry
}

/// Judge, plan and gate one experiment: pure.
fn decide(
    candidate: Judgeable<'_>,
    measured: Result<Evidence, MetricFailure>,
    now: DateTime<Utc>,
    next_tick: DateTime<Utc>,
) -> PlannedEntry {
    let Judgeable {
        experiment,
        policy,
        timeline,
        ..
    } = candidate;
    // Without measurements nothing can be judged, but an extension needs
    // none: the experiment is planned as inconclusive, which never ramps.
    let (verdict, metrics_error) = match measured {
        Err(failure) => (Verdict::unmeasured(failure.clone()), Some(failure)),
        Ok(evidence) => (judge(policy, &timeline, &evidence), None),
    };
    let cadence = Cadence {
        now,
        next_write: next_write_opportunity(policy, now, next_tick),
        tick: (next_tick - now).max(chrono::Duration::minutes(1)),
    };
    let planned = plan(&experiment, &timeline, &verdict, policy, cadence);
    let update = planned.update_for(&experiment);
    let stop = planned
        .stop()
        .and_then(|action| stop_request(&experiment, action, &verdict));
    let tags = planned.tags_for(&experiment);
    let mut write =
        (update.is_some() || stop.is_some() || !tags.is_empty()).then(|| PendingWrite {
            planned_against: experiment.clone(),
            update,
            stop,
            tags,
        });
    let mut outcome = WriteOutcome::Nothing;
    if write.is_some() {
        if let Some(blocked) = write_blocked(&experiment, policy, now) {
            outcome = WriteOutcome::Blocked(blocked);
            write = None;
        }
    }
    let mut report = described_entry(
        &experiment,
        Disposition::Steered(Box::new(Steered {
            verdict,
            plan: planned,
            write: outcome,
            metrics_error,
            events: EventsOutcome::default(),
        })),
    );
    report.policy = Some(policy.name.clone());
    report.timeline = Some(timeline);
    PlannedEntry { report, write }
}

/// The StopInferenceExperiment of a planned stop. Its Reason names
/// shadowpilot, why it stops and the checks' intervals, cut to AWS's limit.
fn stop_request(
    experiment: &Experiment,
    action: &Action,
    verdict: &Verdict,
) -> Option<ExperimentStop> {
    let Action::Stop {
        variant_actions,
        desired_state,
        ..
    } = action
    else {
        return None;
    };
    let checks: Vec<String> = verdict.checks.iter().map(|c| c.to_string()).collect();
    let mut reason = format!("shadowpilot: {}", action_reason(action));
    if !checks.is_empty() {
        reason.push_str("; evidence: ");
        reason.push_str(&checks.join("; "));
    }
    if reason.chars().count() > MAX_STOP_REASON_CHARS {
        reason = reason.chars().take(MAX_STOP_REASON_CHARS - 1).collect();
        reason.push('…');
    }
    Some(ExperimentStop {
        name: experiment.name.clone(),
        variant_actions: variant_actions.clone(),
        desired_state: *desired_state,
        reason,
    })
}

/// What `shadowpilot rearm` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rearm {
    pub name: String,
    pub arn: String,
    /// The latch it found; `None`: nothing to re-arm, nothing written.
    pub latch: Option<crate::experiment::FailedMark>,
    pub changes: TagChanges,
    pub written: bool,
}

/// Re-arms a latched experiment: deletes `shadowpilot:failed` and sets
/// `shadowpilot:since` = now, so the whole-experiment sequence restarts
/// instead of latching again on the next tick. Writes only when `apply`
/// and the experiment is latched; a held experiment is refused, like every
/// other write.
pub async fn rearm(
    store: &dyn ExperimentStore,
    name: &str,
    now: DateTime<Utc>,
    apply: bool,
) -> Result<Rearm, RearmError> {
    use crate::experiment::{tag_time, FAILED_TAG, SINCE_TAG};
    let experiment = store.describe(name).await.map_err(RearmError::Describe)?;
    let latch = experiment.failed_mark();
    let mut changes = TagChanges::default();
    if latch.is_some() {
        changes.remove.insert(FAILED_TAG.to_string());
        changes.set.insert(SINCE_TAG.to_string(), tag_time(now));
    }
    let mut rearm = Rearm {
        name: experiment.name.clone(),
        arn: experiment.arn.clone(),
        latch,
        changes,
        written: false,
    };
    if !apply || rearm.latch.is_none() {
        return Ok(rearm);
    }
    if experiment.is_held() {
        return Err(RearmError::Held);
    }
    // Since first: should the delete fail, the latch still holds and a
    // retry re-arms; the other order could leave a re-armed experiment whose
    // evidence did not restart.
    store
        .add_tags(&experiment.arn, &rearm.changes.set)
        .await
        .map_err(RearmError::Write)?;
    store
        .delete_tags(&experiment.arn, &rearm.changes.remove)
        .await
        .map_err(RearmError::Write)?;
    rearm.written = true;
    Ok(rearm)
}

#[derive(Debug, thiserror::Error)]
pub enum RearmError {
    #[error("cannot describe the experiment")]
    Describe(#[source] StoreError),
    #[error("the experiment is held (shadowpilot:hold=true): remove the hold first")]
    Held,
    #[error("cannot write the tags")]
    Write(#[source] StoreError),
}
