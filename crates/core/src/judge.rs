//! Pure verdicts from always-valid evidence: (policy, timeline, evidence) →
//! Pass, Fail or Inconclusive, with one result per check carrying its
//! estimate, interval, margin and the time a conclusive answer still needs,
//! as data. The report renders the words.
//!
//! Per check, three kinds of confidence sequence (statistics.md), each
//! recomputed every tick from the raw per-period series:
//! - the step sequence, since the current sampling took effect, at α/3;
//! - the whole-experiment sequence, since the later of StartTime and the
//!   `shadowpilot:since` tag, at α/3 (its latency part reads each known
//!   step at that step's own period);
//! - restarted epochs within the step, epoch `j` at (α/3)·6/(π²j²), for a
//!   regression that begins late.
//!
//! A check FAILS if any of them fails; it PASSES only when the step
//! sequence passes (and none fails); otherwise it is inconclusive, with the
//! reason. Over all `j` the epochs spend (α/3)·Σ6/(π²j²) = α/3, so each
//! check's chance of a false FAIL over the experiment's life is at most α.

use chrono::{DateTime, Utc};

use crate::capture::agreement::{agreement_params, mean_abs_diff_params};
use crate::capture::report::{CheckState, OutputCheck};
use crate::capture::{CaptureFailure, OutputEvidence};
use crate::evidence::{
    count_at, epoch_start, error_metric, latency_plan, period_for, quantile_of, Evidence, Form,
    PeriodChoice, SegmentPlan, Timeline, ERROR_PERIOD_SECS,
};
use crate::metrics::{SageMakerMetric, Series, Statistic, VariantRole};
use crate::policy::{Check, CheckMetric, Policy, Unit};
use crate::ports::MetricFailure;
use crate::stats::errors::{assess_counts, ErrorCounts, ErrorParams, PairedMinute};
use crate::stats::latency::{assess_sums, LatencyParams, LatencyPeriod, QuantileTerms, RatioSums};
use crate::stats::{Decision, Inconclusive, TimeToDecision};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// Which check a result belongs to; reports name it with [`CheckId::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckId {
    /// Nothing could be measured (the metric source failed).
    Window,
    Metric(CheckMetric),
}

impl CheckId {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Metric(metric) => metric.id(),
        }
    }
}

/// Which confidence sequence decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    Step,
    Whole,
    /// Restarted epoch `j` (from 1) within the step.
    Epoch(u32),
}

/// Why a check is inconclusive.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Not one usable period since the step began.
    NoEvidence,
    /// Below a minimum: 1000 shadow requests, 5 shadow errors to fail, or
    /// 10 latency periods.
    Insufficient,
    /// The interval contains the margin.
    Straddles,
    /// No period holds enough shadow requests for this quantile at this
    /// sampling.
    TooLittleTraffic {
        shadow_per_minute: f64,
        needed_per_minute: f64,
    },
    /// No production traffic before the step to choose a period from yet.
    PeriodPending,
    /// The metric source failed.
    NoMeasurements { error: MetricFailure },
    /// An output check on an experiment without DataStorageConfig.
    NoCapture,
    /// The capture could not be read.
    CaptureUnread { error: CaptureFailure },
    /// Too few shadow records were paired with production's for the
    /// output checks to mean anything (fractions), of `shadow_records`
    /// read.
    TooFewPaired {
        rate: f64,
        min: f64,
        shadow_records: u64,
    },
    /// No pair had two numeric outputs to take a difference of.
    NoNumericOutputs,
}

impl Reason {
    /// More of the same evidence would settle it (not a failure to measure,
    /// nor a capture that cannot answer).
    pub fn is_lack_of_evidence(&self) -> bool {
        !matches!(
            self,
            Self::NoMeasurements { .. }
                | Self::NoCapture
                | Self::CaptureUnread { .. }
                | Self::TooFewPaired { .. }
                | Self::NoNumericOutputs
        )
    }
}

/// Shadow records read without a single pair among them, past which the
/// callers plainly send no InferenceId (or the copies share no key): more
/// time will not pair them.
pub const NOTHING_PAIRS_AFTER: u64 = 100;

/// What keeps a check from ever deciding as the experiment is set up: more
/// time would not help, so it is not extended for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// An output check on an experiment that captures nothing.
    NoCapture,
    /// Not one of `shadow_records` paired with production's.
    NothingPairs { shadow_records: u64 },
    /// No pair has two numeric outputs to take a difference of.
    NoNumericOutputs,
}

impl Reason {
    /// The blocker behind this reason, if waiting cannot remove it.
    pub fn blocker(&self) -> Option<Blocker> {
        match self {
            Self::NoCapture => Some(Blocker::NoCapture),
            Self::NoNumericOutputs => Some(Blocker::NoNumericOutputs),
            Self::TooFewPaired {
                rate,
                shadow_records,
                ..
            } if *rate == 0.0 && *shadow_records >= NOTHING_PAIRS_AFTER => {
                Some(Blocker::NothingPairs {
                    shadow_records: *shadow_records,
                })
            }
            _ => None,
        }
    }
}

/// How much evidence the deciding sequence had.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Requests {
        shadow: f64,
        errors: f64,
    },
    Periods {
        eligible: usize,
        period_secs: i64,
    },
    /// Compared output pairs, and the disagreements (or `Σx` of a mean
    /// difference) among them; `capped` when a reading stopped early.
    Pairs {
        compared: u64,
        events: f64,
        capped: bool,
    },
    Nothing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub id: CheckId,
    pub form: Form,
    /// The unit `value`, `lower`, `upper` and `limit` are in.
    pub unit: Unit,
    pub outcome: Outcome,
    /// Set when inconclusive.
    pub reason: Option<Reason>,
    /// The sequence shown: the failing one, else the step's.
    pub sequence: Sequence,
    /// The estimate and its interval.
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The margin.
    pub limit: f64,
    /// At the current sampling, if undecided.
    pub time_to_decision: Option<TimeToDecision>,
    /// At the policy's top sampling, if undecided.
    pub at_ceiling: Option<TimeToDecision>,
    /// The step estimate lies on the passing side of the margin by at least
    /// [`EVIDENCE_RAMP_STANDARD_ERRORS`] standard errors.
    pub passing_side: Option<bool>,
    pub amount: Amount,
    /// The sampling percentage the times are at.
    pub sampling: u8,
    /// `(upper − margin)/τ` on the check's own scale: the pass with the
    /// least headroom has the largest.
    pub(crate) closeness: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
    /// Index into `checks` of the result that decided the outcome (for a
    /// pass: the one closest to its margin).
    pub decisive: Option<usize>,
}

impl Verdict {
    pub fn decisive_check(&self) -> Option<&CheckResult> {
        self.decisive.and_then(|index| self.checks.get(index))
    }

    /// A verdict with nothing behind it but its outcome, for planning tests
    /// and tools.
    pub fn from_outcome(outcome: Outcome) -> Self {
        Self {
            outcome,
            checks: Vec::new(),
            decisive: None,
        }
    }

    pub fn first_failed_check(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.outcome == Outcome::Fail)
    }

    /// Why the capture could not be read, when an output check says so.
    pub fn capture_error(&self) -> Option<&crate::capture::CompareError> {
        self.checks.iter().find_map(|check| match &check.reason {
            Some(Reason::CaptureUnread { error }) => Some(error.0.as_ref()),
            _ => None,
        })
    }

    /// The metric source failed: nothing could be judged.
    pub fn unmeasured(error: MetricFailure) -> Self {
        Self {
            outcome: Outcome::Inconclusive,
            checks: vec![CheckResult {
                id: CheckId::Window,
                form: Form::ErrorAbove { points: 0.0 },
                unit: Unit::Invocations,
                outcome: Outcome::Inconclusive,
                reason: Some(Reason::NoMeasurements { error }),
                sequence: Sequence::Step,
                value: None,
                lower: None,
                upper: None,
                limit: 0.0,
                time_to_decision: None,
                at_ceiling: None,
                passing_side: None,
                amount: Amount::Nothing,
                sampling: 0,
                closeness: f64::NEG_INFINITY,
            }],
            decisive: Some(0),
        }
    }

    /// The first undecided check that waiting cannot settle, with what
    /// blocks it.
    pub fn blocked_check(&self) -> Option<(CheckId, Blocker)> {
        self.checks.iter().find_map(|check| {
            let blocker = check.reason.as_ref()?.blocker()?;
            (check.outcome == Outcome::Inconclusive).then_some((check.id, blocker))
        })
    }

    /// The longest time to a decision among the undecided checks, at the
    /// current sampling (`T`); `None` when nothing is undecided.
    pub fn time_to_decision(&self) -> Option<TimeToDecision> {
        longest(self.checks.iter().filter_map(|c| c.time_to_decision))
    }

    /// The same at the policy's top sampling.
    pub fn time_at_ceiling(&self) -> Option<TimeToDecision> {
        longest(self.checks.iter().filter_map(|c| c.at_ceiling))
    }
}

fn longest(times: impl Iterator<Item = TimeToDecision>) -> Option<TimeToDecision> {
    times.reduce(|a, b| match (a, b) {
        (TimeToDecision::Undecidable, _) | (_, TimeToDecision::Undecidable) => {
            TimeToDecision::Undecidable
        }
        (TimeToDecision::Needs { minutes: ma, .. }, TimeToDecision::Needs { minutes: mb, .. }) => {
            if mb > ma {
                b
            } else {
                a
            }
        }
    })
}

/// How far below its margin an estimate must lie, in standard errors of
/// the step sequence, to count as on the passing side for an evidence ramp.
/// Merely below the margin let a shadow at 1.3 % 5xx against a 1 % limit
/// ramp on early noise in 15 of 20 simulated copies, two standard errors in
/// 3 of 200 (`proof errors-1.3-ramps`): the rule is looked at every tick,
/// and at 400 to 800 requests no errors at all is not rare at 1.3 %. Three
/// need at least 900 requests without an error (p ≈ 1e-5 at 1.3 %), at
/// the cost of a slower climb where traffic is thin (a quiet endpoint at 5
/// shadow requests a minute waits about 7 h at its first step).
pub const EVIDENCE_RAMP_STANDARD_ERRORS: f64 = 3.0;

fn clearly_passing(interval: &crate::stats::Interval, margin: f64) -> bool {
    interval.estimate + EVIDENCE_RAMP_STANDARD_ERRORS * interval.variance.sqrt() < margin
}

/// The level of epoch `j` (from 1): (α/3)·6/(π²j²).
pub fn epoch_alpha(alpha: f64, j: u32) -> f64 {
    let j = f64::from(j);
    alpha / 3.0 * 6.0 / (std::f64::consts::PI * std::f64::consts::PI * j * j)
}

/// Judges the shadow on every check of the policy.
pub fn judge(policy: &Policy, timeline: &Timeline, evidence: &Evidence) -> Verdict {
    let checks: Vec<CheckResult> = policy
        .checks
        .iter()
        .map(|check| {
            let form = Form::of(check);
            if form.is_output() {
                judge_output(check, form, policy, timeline, &evidence.outputs)
            } else if form.is_latency() {
                judge_latency(check, form, policy, timeline, evidence)
            } else {
                judge_errors(check, form, policy, timeline, evidence)
            }
        })
        .collect();
    let first = |outcome: Outcome| checks.iter().position(|c| c.outcome == outcome);
    let (outcome, decisive) = if checks.is_empty() {
        (Outcome::Inconclusive, None)
    } else if let Some(index) = first(Outcome::Fail) {
        (Outcome::Fail, Some(index))
    } else if let Some(index) = first(Outcome::Inconclusive) {
        (Outcome::Inconclusive, Some(index))
    } else {
        let closest = checks
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.closeness.total_cmp(&b.1.closeness))
            .map(|(index, _)| index);
        (Outcome::Pass, closest)
    };
    Verdict {
        outcome,
        checks,
        decisive,
    }
}

/// Production's requests a minute over the last hour of its count series.
fn recent_production_rate(timeline: &Timeline, evidence: &Evidence) -> f64 {
    let Some(series) = count_at(
        timeline,
        VariantRole::Production,
        SageMakerMetric::Invocations,
    )
    .and_then(|at| evidence.get(&at)) else {
        return 0.0;
    };
    let Some(window) = timeline.count_window() else {
        return 0.0;
    };
    let from = window.end - chrono::Duration::hours(1);
    let total: f64 = series
        .range(from..window.end)
        .map(|(_, v)| v.max(0.0))
        .sum();
    total / 60.0
}

fn judge_errors(
    check: &Check,
    form: Form,
    policy: &Policy,
    timeline: &Timeline,
    evidence: &Evidence,
) -> CheckResult {
    let (margin, production_read) = match form {
        Form::ErrorMax { percent } => (percent / 100.0, false),
        Form::ErrorAbove { points } => (points / 100.0, true),
        _ => (0.0, true),
    };
    let metric = error_metric(check.metric);
    let series = |role, metric| count_at(timeline, role, metric).and_then(|at| evidence.get(&at));
    let empty = Series::new();
    let shadow_requests =
        series(VariantRole::Shadow, SageMakerMetric::Invocations).unwrap_or(&empty);
    let shadow_errors = series(VariantRole::Shadow, metric).unwrap_or(&empty);
    let production_requests =
        series(VariantRole::Production, SageMakerMetric::Invocations).unwrap_or(&empty);
    let production_errors = series(VariantRole::Production, metric).unwrap_or(&empty);

    // Every count series shares one grid; walking them side by side keeps a
    // month of five-minute strata cheap to re-read every tick.
    let boundaries: Vec<i64> = timeline.boundaries().map(|b| b.timestamp()).collect();
    let end = timeline.end.timestamp();
    let mut shadow_errors = Aligned::new(shadow_errors);
    let mut production_requests = Aligned::new(production_requests);
    let mut production_errors = Aligned::new(production_errors);
    let mut strata: Vec<(DateTime<Utc>, PairedMinute)> = Vec::new();
    for (&t, &n_s) in shadow_requests.range(timeline.whole_start..) {
        let at = t.timestamp();
        if at + ERROR_PERIOD_SECS > end {
            break;
        }
        // A stratum across a sampling change mixes two fractions.
        if boundaries
            .iter()
            .any(|b| at < *b && *b < at + ERROR_PERIOD_SECS)
        {
            continue;
        }
        // SageMaker publishes an error datapoint with every invocation one,
        // so an error series missing where invocations exist is a gap in
        // the data: the stratum is left out, never read as zero errors.
        let Some(e_s) = shadow_errors.at(&t) else {
            continue;
        };
        let paired = if production_read {
            match (production_requests.at(&t), production_errors.at(&t)) {
                (Some(n_p), Some(e_p)) => PairedMinute::new(n_s, e_s, n_p, e_p),
                _ => continue,
            }
        } else {
            PairedMinute::new(n_s, e_s, 1.0, 0.0)
        };
        strata.push((t, paired));
    }

    let alpha = policy.alpha;
    let params = |alpha: f64| ErrorParams {
        margin,
        alpha,
        ..ErrorParams::default()
    };
    let finish = |counts: ErrorCounts| {
        if production_read {
            counts
        } else {
            counts.without_production()
        }
    };
    // One backward pass gives every sequence's sums: each starts later
    // than the one before it in this list, read from the end.
    let mut starts: Vec<(Sequence, DateTime<Utc>)> = vec![
        (Sequence::Whole, timeline.whole_start),
        (Sequence::Step, timeline.step_start),
    ];
    let mut j = 1;
    loop {
        let start = epoch_start(timeline.step_start, j, ERROR_PERIOD_SECS);
        if start >= timeline.end {
            break;
        }
        starts.push((Sequence::Epoch(j), start));
        j += 1;
    }
    let mut sums = vec![ErrorCounts::default(); starts.len()];
    {
        let mut running = ErrorCounts::default();
        let mut next = starts.len();
        let mut index = strata.len();
        while next > 0 {
            next -= 1;
            let from = starts[next].1;
            while index > 0 && strata[index - 1].0 >= from {
                index -= 1;
                running.add(&strata[index].1);
            }
            sums[next] = running;
        }
    }
    let evaluate = |sequence: Sequence, counts: ErrorCounts| {
        let level = match sequence {
            Sequence::Epoch(j) => epoch_alpha(alpha, j),
            _ => alpha / 3.0,
        };
        assess_counts(finish(counts), &params(level))
    };
    let step = evaluate(Sequence::Step, sums[1]);
    // The step sequence is shown when it fails too; then the whole
    // experiment, then the epochs in order.
    let mut failed = (step.decision == Decision::Fail).then_some((Sequence::Step, step));
    for (index, (sequence, _)) in starts.iter().enumerate() {
        if failed.is_some() {
            break;
        }
        if *sequence == Sequence::Step {
            continue;
        }
        let found = evaluate(*sequence, sums[index]);
        if found.decision == Decision::Fail {
            failed = Some((*sequence, found));
        }
    }

    let (unit, scale) = match form {
        Form::ErrorMax { .. } => (Unit::Percent, 100.0),
        _ => (Unit::Points, 100.0),
    };
    let (sequence, shown) = failed.unwrap_or((Sequence::Step, step));
    let (outcome, reason) = if failed.is_some() {
        (Outcome::Fail, None)
    } else {
        match step.decision {
            Decision::Pass => (Outcome::Pass, None),
            Decision::Fail => (Outcome::Fail, None),
            Decision::Inconclusive(why) => (
                Outcome::Inconclusive,
                Some(if step.estimate.is_none() {
                    Reason::NoEvidence
                } else {
                    match why {
                        Inconclusive::Insufficient => Reason::Insufficient,
                        Inconclusive::Straddles => Reason::Straddles,
                    }
                }),
            ),
        }
    };
    let undecided = outcome == Outcome::Inconclusive;
    let fraction = f64::from(timeline.percentage) / 100.0;
    let ceiling = f64::from(policy.ramp.ceiling) / 100.0;
    let production_per_minute = recent_production_rate(timeline, evidence);
    let step_params = params(alpha / 3.0);
    let minimum_wait = |f: f64| {
        let missing = (step_params.min_shadow_requests - step.counts.shadow_requests).max(0.0);
        let per_minute = production_per_minute * f;
        if missing == 0.0 {
            0.0
        } else if per_minute > 0.0 {
            missing / per_minute
        } else {
            f64::INFINITY
        }
    };
    let wait_at = |f: f64| match step.estimate {
        Some(estimate) => match estimate.time_to_decision(&step_params, production_per_minute, f) {
            TimeToDecision::Needs { extra, minutes } => TimeToDecision::Needs {
                extra,
                minutes: minutes.max(minimum_wait(f)),
            },
            undecidable => undecidable,
        },
        None => TimeToDecision::Needs {
            extra: step_params.min_shadow_requests,
            minutes: minimum_wait(f),
        },
    };
    let interval = shown.estimate.map(|e| e.interval);
    CheckResult {
        id: CheckId::Metric(check.metric),
        form,
        unit,
        outcome,
        reason,
        sequence,
        value: interval.map(|i| i.estimate * scale),
        lower: interval.map(|i| i.lo * scale),
        upper: interval.map(|i| i.hi * scale),
        limit: margin * scale,
        time_to_decision: undecided.then(|| wait_at(fraction)),
        at_ceiling: undecided.then(|| wait_at(ceiling)),
        passing_side: step.estimate.map(|e| clearly_passing(&e.interval, margin)),
        amount: Amount::Requests {
            shadow: shown.counts.shadow_requests,
            errors: shown.counts.shadow_errors,
        },
        sampling: timeline.percentage,
        closeness: step.estimate.map_or(f64::NEG_INFINITY, |e| {
            (e.interval.hi - margin) / margin.max(1e-9)
        }),
    }
}

/// A series read at increasing times: each lookup moves forward from the
/// last, so reading one series alongside another is linear.
struct Aligned<'a> {
    points: std::iter::Peekable<std::collections::btree_map::Iter<'a, DateTime<Utc>, f64>>,
}

impl<'a> Aligned<'a> {
    fn new(series: &'a Series) -> Self {
        Self {
            points: series.iter().peekable(),
        }
    }

    /// The value at `t`; `t` must not decrease between calls.
    fn at(&mut self, t: &DateTime<Utc>) -> Option<f64> {
        while self.points.next_if(|(at, _)| *at < t).is_some() {}
        self.points.next_if(|(at, _)| *at == t).map(|(_, v)| *v)
    }
}

/// The log ratios of one latency check's eligible periods, by period start.
fn ratios(
    plan: &SegmentPlan,
    form: Form,
    terms: &QuantileTerms,
    clip: Option<f64>,
    evidence: &Evidence,
) -> Vec<(DateTime<Utc>, f64)> {
    let Some(read) = plan.read else {
        return Vec::new();
    };
    let get = |role, statistic| evidence.get(&read.at(role, statistic));
    let Some(shadow) = get(VariantRole::Shadow, read.statistic) else {
        return Vec::new();
    };
    let empty = Series::new();
    let shadow_count = get(VariantRole::Shadow, Statistic::SampleCount).unwrap_or(&empty);
    let production = get(VariantRole::Production, read.statistic).unwrap_or(&empty);
    let production_count = get(VariantRole::Production, Statistic::SampleCount).unwrap_or(&empty);
    let median = read
        .median
        .and_then(|(role, statistic)| get(role, statistic))
        .unwrap_or(&empty);
    let mut shadow_count = Aligned::new(shadow_count);
    let mut production = Aligned::new(production);
    let mut production_count = Aligned::new(production_count);
    let mut median = Aligned::new(median);
    let mut found = Vec::new();
    for (&t, &q_s) in shadow.range(read.window.start..read.window.end) {
        let Some(m_s) = shadow_count.at(&t) else {
            continue;
        };
        // A median that is missing where k_p ≠ 0 makes the period ineligible
        // (log_ratio checks it); where k_p = 0 it is never read.
        let q50 = median.at(&t).unwrap_or(f64::NAN);
        let period = match form {
            Form::LatencyRatio { .. } => {
                let (Some(q_p), Some(m_p)) = (production.at(&t), production_count.at(&t)) else {
                    continue;
                };
                LatencyPeriod::new(q_s, m_s, q_p, m_p, q50)
            }
            Form::LatencyAbove { ms } => {
                let (Some(q_p), Some(m_p)) = (production.at(&t), production_count.at(&t)) else {
                    continue;
                };
                // Against (production + A)/1.2 at limit 1.2: the log ratio to
                // production plus A, with production's own tail scale.
                let reference = (q_p + ms * 1000.0) / LATENCY_REFERENCE_LIMIT;
                LatencyPeriod::new(q_s, m_s, reference, m_p, q50 * reference / q_p)
            }
            Form::LatencyMax { ms } => {
                // One-sample: against the limit/1.2 at limit 1.2, the bias term
                // from the shadow's own tail and sample count.
                let reference = ms * 1000.0 / LATENCY_REFERENCE_LIMIT;
                LatencyPeriod::new(q_s, m_s, reference, f64::INFINITY, q50 * reference / q_s)
            }
            _ => continue,
        };
        if let Some(r) = period.log_ratio(terms, clip) {
            found.push((t, r));
        }
    }
    found
}

/// Limits that are not a ratio to production (ms above it, an absolute ms)
/// are judged as a ratio to a reference at this limit, so that `τ` keeps
/// the scale of the default ratio limit: a 20 % change.
const LATENCY_REFERENCE_LIMIT: f64 = 1.2;

fn judge_latency(
    check: &Check,
    form: Form,
    policy: &Policy,
    timeline: &Timeline,
    evidence: &Evidence,
) -> CheckResult {
    let p = quantile_of(check.metric);
    let terms = QuantileTerms::new(p);
    let limit = match form {
        Form::LatencyRatio { ratio } => ratio,
        _ => LATENCY_REFERENCE_LIMIT,
    };
    let alpha = policy.alpha;
    let params = |alpha: f64| LatencyParams {
        quantile: p,
        limit,
        alpha,
        ..LatencyParams::default()
    };
    let plans = latency_plan(check, timeline, evidence);
    let current = plans.last().copied();
    let mut whole = RatioSums::default();
    for plan in &plans {
        for (_, r) in ratios(plan, form, &terms, params(alpha).clip, evidence) {
            whole.add(r);
        }
    }
    let step_ratios = current
        .map(|plan| ratios(&plan, form, &terms, params(alpha).clip, evidence))
        .unwrap_or_default();
    let period_secs = current.and_then(|plan| plan.period.secs());
    // Suffix sums for the epochs, latest first.
    let mut epochs: Vec<(u32, DateTime<Utc>)> = Vec::new();
    if let Some(secs) = period_secs {
        let mut j = 1;
        loop {
            let start = epoch_start(timeline.step_start, j, secs);
            if start >= timeline.end {
                break;
            }
            epochs.push((j, start));
            j += 1;
        }
    }
    let mut step = RatioSums::default();
    for (_, r) in &step_ratios {
        step.add(*r);
    }
    let mut epoch_sums = vec![RatioSums::default(); epochs.len()];
    {
        let mut running = RatioSums::default();
        let mut index = step_ratios.len();
        for (slot, (_, from)) in epochs.iter().enumerate().rev() {
            while index > 0 && step_ratios[index - 1].0 >= *from {
                index -= 1;
                running.add(step_ratios[index].1);
            }
            epoch_sums[slot] = running;
        }
    }
    let step_found = assess_sums(step, &params(alpha / 3.0));
    let mut failed = None;
    if step_found.decision == Decision::Fail {
        failed = Some((Sequence::Step, step_found));
    }
    if failed.is_none() {
        let whole_found = assess_sums(whole, &params(alpha / 3.0));
        if whole_found.decision == Decision::Fail {
            failed = Some((Sequence::Whole, whole_found));
        }
    }
    if failed.is_none() {
        for ((j, _), sums) in epochs.iter().zip(&epoch_sums) {
            let found = assess_sums(*sums, &params(epoch_alpha(alpha, *j)));
            if found.decision == Decision::Fail {
                failed = Some((Sequence::Epoch(*j), found));
                break;
            }
        }
    }

    let current_period = current.map(|plan| plan.period);
    let (outcome, reason) = if failed.is_some() {
        (Outcome::Fail, None)
    } else {
        match (step_found.decision, current_period) {
            (Decision::Pass, _) => (Outcome::Pass, None),
            (
                _,
                Some(PeriodChoice::TooLittleTraffic {
                    shadow_per_minute,
                    needed_per_minute,
                }),
            ) => (
                Outcome::Inconclusive,
                Some(Reason::TooLittleTraffic {
                    shadow_per_minute,
                    needed_per_minute,
                }),
            ),
            (_, Some(PeriodChoice::Pending) | None) => {
                (Outcome::Inconclusive, Some(Reason::PeriodPending))
            }
            _ if step_found.estimate.is_none() => (Outcome::Inconclusive, Some(Reason::NoEvidence)),
            (Decision::Inconclusive(Inconclusive::Insufficient), _) => {
                (Outcome::Inconclusive, Some(Reason::Insufficient))
            }
            _ => (Outcome::Inconclusive, Some(Reason::Straddles)),
        }
    };
    let (sequence, shown) = failed.unwrap_or((Sequence::Step, step_found));
    let undecided = outcome == Outcome::Inconclusive;
    let step_params = params(alpha / 3.0);
    let shadow_per_minute = match current_period {
        Some(PeriodChoice::Chosen {
            shadow_per_minute, ..
        })
        | Some(PeriodChoice::TooLittleTraffic {
            shadow_per_minute, ..
        }) => shadow_per_minute,
        _ => 0.0,
    };
    let wait_with = |secs: Option<i64>| {
        let Some(secs) = secs else {
            return TimeToDecision::Needs {
                extra: f64::INFINITY,
                minutes: f64::INFINITY,
            };
        };
        let missing = step_params.min_periods.saturating_sub(step.n) as f64;
        let minimum = missing * secs as f64 / 60.0;
        match step_found.estimate {
            Some(estimate) => {
                match estimate.time_to_decision(&step_params, u32::try_from(secs).unwrap_or(3600)) {
                    TimeToDecision::Needs { extra, minutes } => TimeToDecision::Needs {
                        extra,
                        minutes: minutes.max(minimum),
                    },
                    undecidable => undecidable,
                }
            }
            None => TimeToDecision::Needs {
                extra: missing,
                minutes: minimum,
            },
        }
    };
    let at_ceiling = || {
        let percentage = f64::from(timeline.percentage.max(1));
        let rate = shadow_per_minute * f64::from(policy.ramp.ceiling) / percentage;
        wait_with(period_for(rate, p).secs())
    };
    let interval = shown.estimate.map(|e| e.interval);
    let margin = limit.ln();
    let (unit, show, shown_limit): (Unit, Box<dyn Fn(f64) -> f64>, f64) = match form {
        Form::LatencyMax { ms } => (
            Unit::Milliseconds,
            Box::new(move |r: f64| ms / LATENCY_REFERENCE_LIMIT * r.exp()),
            ms,
        ),
        Form::LatencyAbove { .. } => (
            Unit::Ratio,
            Box::new(|r: f64| r.exp() / LATENCY_REFERENCE_LIMIT),
            1.0,
        ),
        _ => (Unit::Ratio, Box::new(|r: f64| r.exp()), limit),
    };
    CheckResult {
        id: CheckId::Metric(check.metric),
        form,
        unit,
        outcome,
        reason,
        sequence,
        value: interval.map(|i| show(i.estimate)),
        lower: interval.map(|i| show(i.lo)),
        upper: interval.map(|i| show(i.hi)),
        limit: shown_limit,
        time_to_decision: undecided.then(|| wait_with(period_secs)),
        at_ceiling: undecided.then(at_ceiling),
        passing_side: step_found
            .estimate
            .map(|e| clearly_passing(&e.interval, margin)),
        amount: match current_period.and_then(PeriodChoice::secs) {
            Some(period_secs) => Amount::Periods {
                eligible: shown.eligible,
                period_secs,
            },
            None => Amount::Nothing,
        },
        sampling: timeline.percentage,
        closeness: step_found
            .estimate
            .map_or(f64::NEG_INFINITY, |e| (e.interval.hi - margin) / margin),
    }
}

/// An output check, from the step's capture (statistics in
/// [`crate::capture::agreement`]): only the step sequence, since the
/// capture is read from the step's start and never before it.
fn judge_output(
    check: &Check,
    form: Form,
    policy: &Policy,
    timeline: &Timeline,
    outputs: &OutputEvidence,
) -> CheckResult {
    let output_check = OutputCheck::of(check, policy.outputs.clip);
    let (limit, scale): (f64, f64) = match output_check {
        Some(OutputCheck::Agreement { min }) => (min * 100.0, 100.0),
        Some(OutputCheck::MeanAbsDiff { max, clip }) => (max, clip),
        None => (0.0, 1.0),
    };
    let mut result = CheckResult {
        id: CheckId::Metric(check.metric),
        form,
        unit: check.metric.unit(),
        outcome: Outcome::Inconclusive,
        reason: Some(Reason::NoEvidence),
        sequence: Sequence::Step,
        value: None,
        lower: None,
        upper: None,
        limit,
        time_to_decision: None,
        at_ceiling: None,
        passing_side: None,
        amount: Amount::Nothing,
        sampling: timeline.percentage,
        closeness: f64::NEG_INFINITY,
    };
    let (report, span) = match outputs {
        OutputEvidence::NotRead => return result,
        OutputEvidence::NoCapture => {
            result.reason = Some(Reason::NoCapture);
            return result;
        }
        OutputEvidence::Failed(error) => {
            result.reason = Some(Reason::CaptureUnread {
                error: error.clone(),
            });
            return result;
        }
        OutputEvidence::Read { report, span, .. } => (report, *span),
    };
    let Some(state) = report
        .checks
        .iter()
        .find(|found| Some(found.check) == output_check)
        .map(|found| &found.state)
    else {
        return result;
    };
    let evidence = match state {
        CheckState::TooFewPaired { rate, min } => {
            result.reason = Some(Reason::TooFewPaired {
                rate: *rate,
                min: *min,
                shadow_records: report.shadow.records,
            });
            return result;
        }
        CheckState::NoNumbers => {
            result.reason = Some(Reason::NoNumericOutputs);
            return result;
        }
        CheckState::Decided(evidence) => evidence,
    };
    let capped = report.shadow.capped
        || report.production.capped
        || report.shadow.out_of_time
        || report.production.out_of_time;
    result.amount = Amount::Pairs {
        compared: evidence.counts.shadow_requests as u64,
        events: evidence.counts.shadow_errors,
        capped,
    };
    let Some(estimate) = evidence.estimate else {
        result.time_to_decision = Some(TimeToDecision::Needs {
            extra: ErrorParams::default().min_shadow_requests,
            minutes: f64::INFINITY,
        });
        return result;
    };
    let interval = estimate.interval;
    // A share lies in [0, 1] whatever the interval's half-width says.
    let (lo, hi) = (interval.lo.max(0.0), interval.hi.min(1.0));
    let agreement = matches!(output_check, Some(OutputCheck::Agreement { .. }));
    // Agreement is shown as the share that matches, the complement of the
    // disagreement the sequence is about: its bounds swap.
    let (value, lower, upper) = if agreement {
        (
            (1.0 - interval.estimate) * 100.0,
            (1.0 - hi) * 100.0,
            (1.0 - lo) * 100.0,
        )
    } else {
        (interval.estimate * scale, lo * scale, hi * scale)
    };
    result.value = Some(value);
    result.lower = Some(lower);
    result.upper = Some(upper);
    let params = match output_check {
        Some(OutputCheck::Agreement { min }) => agreement_params(min, policy.alpha / 3.0),
        Some(OutputCheck::MeanAbsDiff { max, clip }) => {
            mean_abs_diff_params(max, clip, policy.alpha / 3.0)
        }
        None => ErrorParams::default(),
    };
    let margin = params.margin;
    result.passing_side = Some(clearly_passing(&interval, margin));
    result.closeness = (interval.hi - margin) / margin.max(1e-9);
    let (outcome, reason) = match evidence.decision {
        Decision::Pass => (Outcome::Pass, None),
        Decision::Fail => (Outcome::Fail, None),
        Decision::Inconclusive(Inconclusive::Insufficient) => {
            (Outcome::Inconclusive, Some(Reason::Insufficient))
        }
        Decision::Inconclusive(Inconclusive::Straddles) => {
            (Outcome::Inconclusive, Some(Reason::Straddles))
        }
    };
    result.outcome = outcome;
    result.reason = reason;
    if outcome == Outcome::Inconclusive {
        // Pairs come in at the rate they did over the judged span; at
        // another sampling, in proportion to it.
        let end = report.judged_until.unwrap_or(span.1).min(span.1);
        let minutes = ((end - span.0).num_seconds() as f64 / 60.0).max(1.0);
        let fraction = f64::from(timeline.percentage.max(1)) / 100.0;
        let per_full_minute = evidence.counts.shadow_requests / minutes / fraction;
        let wait_at = |f: f64| {
            let missing = (params.min_shadow_requests - evidence.counts.shadow_requests).max(0.0);
            let floor = if missing == 0.0 {
                0.0
            } else if per_full_minute > 0.0 {
                missing / (per_full_minute * f)
            } else {
                f64::INFINITY
            };
            match estimate.time_to_decision(&params, per_full_minute, f) {
                TimeToDecision::Needs { extra, minutes } => TimeToDecision::Needs {
                    extra,
                    minutes: minutes.max(floor),
                },
                undecidable => undecidable,
            }
        };
        result.time_to_decision = Some(wait_at(fraction));
        result.at_ceiling = Some(wait_at(f64::from(policy.ramp.ceiling) / 100.0));
    }
    result
}
