//! Which evidence each check reads, and from when (pure).
//!
//! The judge recomputes its intervals every tick from raw per-period
//! series. This module decides which series: the timeline of an experiment
//! (the whole-experiment start, the current step's start, the earlier steps
//! the tags remember), the count queries of the first metric round, the
//! latency period `P` of each step (fixed for the life of the step, so that
//! its series are never re-partitioned), and the latency queries of the
//! second round. The judge calls the same functions, so it reads exactly
//! what was asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;

use crate::experiment::{Experiment, StepMark};
use crate::metrics::{
    MeasuredExperiment, SageMakerMetric, Series, SeriesQuery, Statistic, VariantRole, Window,
};
use crate::policy::{Check, CheckMetric, Limit, Policy, Unit};
use crate::schedule::chrono_duration;
use crate::stats::latency::QuantileTerms;

/// Error counts are read in five-minute strata. Within a step the sampling
/// fraction is constant, so the stratified estimate is as unbiased as with
/// one-minute strata; five minutes is also what CloudWatch keeps beyond 15
/// days, and a fifth of the datapoints.
pub const ERROR_PERIOD_SECS: i64 = 300;
/// Production's request rate for choosing `P` is taken over this long.
const RATE_WINDOW_SECS: i64 = 3600;
/// The periods CloudWatch aggregates over that `P` is chosen from (§3).
pub const LATENCY_PERIODS_SECS: [i64; 7] = [60, 120, 300, 600, 900, 1800, 3600];
/// The shortest latency period. One-minute data lasts 15 days, so a step
/// that can outlive them (the top step and the floor) must read periods
/// CloudWatch still has after that; every step does here, because one-minute
/// periods also cost five times the datapoints: 50 experiments a month into
/// their test re-read 10.1 million datapoints a tick (438 MiB peak) with
/// one-minute p50 periods, 3.4 million with this floor (`cargo bench -p
/// shadowpilot-lambda --bench footprint`).
const MIN_PERIOD_SECS: i64 = 300;
/// Epoch `j` of a check starts `j` epoch lengths after the step's start;
/// an epoch is never shorter than this (nor than ten periods).
pub const EPOCH_SECS: i64 = 3600;

/// Where the current step's start came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepOrigin {
    /// The step tag names the percentage AWS reports.
    Tagged,
    /// No readable step tag: the step starts at LastModifiedTime.
    Untagged,
    /// The tag names another percentage: someone else changed the sampling,
    /// at LastModifiedTime.
    ChangedElsewhere { tagged: u8 },
}

/// A stretch of time at one sampling percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub percentage: u8,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// When each sequence's evidence starts and ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The whole-experiment sequence: the later of StartTime and the
    /// `shadowpilot:since` tag.
    pub whole_start: DateTime<Utc>,
    /// The current step's sequence: the step's start, never before
    /// `whole_start` (so a first step dwells from when traffic began).
    pub step_start: DateTime<Utc>,
    /// When the current sampling took effect, as the tag or AWS says it.
    pub step_began: DateTime<Utc>,
    pub step_origin: StepOrigin,
    pub percentage: u8,
    /// Known steps, oldest first; the last is the current one.
    pub segments: Vec<Segment>,
    /// Whole minutes, the publish delay before now.
    pub end: DateTime<Utc>,
}

fn floor_to(time: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    time.duration_trunc(chrono::Duration::seconds(secs))
        .unwrap_or(time)
}

fn ceil_to(time: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let floor = floor_to(time, secs);
    if floor == time {
        time
    } else {
        floor + chrono::Duration::seconds(secs)
    }
}

impl Timeline {
    pub fn of(experiment: &Experiment, policy: &Policy, now: DateTime<Utc>) -> Self {
        let started = experiment.start_time.unwrap_or(experiment.last_modified);
        let whole_start = ceil_to(
            experiment
                .since()
                .map_or(started, |since| since.max(started)),
            60,
        );
        let percentage = experiment.sampling_percentage;
        let tag = experiment.step_mark();
        let mut marks = experiment.step_history();
        let (step_began, step_origin) = match tag {
            Some(mark) if mark.percentage == percentage => (mark.since, StepOrigin::Tagged),
            Some(mark) => {
                marks.push(mark);
                (
                    experiment.last_modified,
                    StepOrigin::ChangedElsewhere {
                        tagged: mark.percentage,
                    },
                )
            }
            None => (experiment.last_modified, StepOrigin::Untagged),
        };
        let step_start = ceil_to(step_began.max(whole_start), 60);
        let end = floor_to(now - chrono_duration(policy.window.publish_delay), 60);
        marks.retain(|mark| mark.since < step_start);
        marks.sort_by_key(|mark| mark.since);
        let mut segments: Vec<Segment> = marks
            .iter()
            .enumerate()
            .filter_map(|(i, mark)| {
                let next = marks.get(i + 1).map_or(step_start, |m| m.since);
                let start = ceil_to(mark.since.max(whole_start), 60);
                let end = next.min(step_start);
                (start < end).then_some(Segment {
                    percentage: mark.percentage,
                    start,
                    end,
                })
            })
            .collect();
        segments.push(Segment {
            percentage,
            start: step_start,
            end: end.max(step_start),
        });
        Self {
            whole_start,
            step_start,
            step_began,
            step_origin,
            percentage,
            segments,
            end,
        }
    }

    /// The current step's segment.
    pub fn current(&self) -> &Segment {
        // `of` always pushes the current step last.
        &self.segments[self.segments.len() - 1]
    }

    /// The tag value that describes the current step, as shadowpilot would
    /// write it after a change it did not make.
    pub fn step_mark(&self) -> StepMark {
        StepMark {
            percentage: self.percentage,
            since: self.step_began,
        }
    }

    /// The range of the first round's count series: the whole experiment
    /// and the hour before it (production's rate at the first step).
    pub fn count_window(&self) -> Option<Window> {
        let start = floor_to(self.whole_start, ERROR_PERIOD_SECS)
            - chrono::Duration::seconds(RATE_WINDOW_SECS);
        let end = floor_to(self.end, ERROR_PERIOD_SECS);
        (start < end).then_some(Window { start, end })
    }

    /// Times at which a stratum must not straddle: known sampling changes.
    pub fn boundaries(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.segments.iter().map(|segment| segment.start)
    }
}

/// How a check is judged, from its metric and limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Form {
    /// The shadow's rate minus production's (stratified), in points.
    ErrorAbove { points: f64 },
    /// The shadow's own rate against a percentage (one-sample).
    ErrorMax { percent: f64 },
    /// Paired per-period log ratio against `ln(limit)`.
    LatencyRatio { ratio: f64 },
    /// The shadow's per-period value against a number of milliseconds
    /// (one-sample; the log ratio to the limit).
    LatencyMax { ms: f64 },
    /// Paired per-period log ratio of the shadow to production plus a number
    /// of milliseconds.
    LatencyAbove { ms: f64 },
    /// The share of paired outputs that match, at least `percent`.
    OutputAgreement { percent: f64 },
    /// The mean clipped |difference| of paired numeric outputs, at most `max`.
    OutputMeanAbsDiff { max: f64 },
}

impl Form {
    pub fn of(check: &Check) -> Self {
        match (check.metric, check.limit) {
            (CheckMetric::OutputAgreement, Limit::Min(percent)) => {
                return Self::OutputAgreement { percent }
            }
            (CheckMetric::OutputMeanAbsDiff, Limit::Absolute(max)) => {
                return Self::OutputMeanAbsDiff { max }
            }
            _ => {}
        }
        match (check.metric.unit(), check.limit) {
            (Unit::Percent, Limit::Absolute(percent)) => Self::ErrorMax { percent },
            // The loader refuses ratios on rates.
            (Unit::Percent, Limit::AboveProduction(points) | Limit::RatioToProduction(points)) => {
                Self::ErrorAbove { points }
            }
            (_, Limit::Absolute(ms)) => Self::LatencyMax { ms },
            (_, Limit::RatioToProduction(ratio)) => Self::LatencyRatio { ratio },
            (_, Limit::AboveProduction(ms)) => Self::LatencyAbove { ms },
            // The loader gives `min` to output_agreement only (above).
            (_, Limit::Min(percent)) => Self::OutputAgreement { percent },
        }
    }

    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Self::LatencyRatio { .. } | Self::LatencyMax { .. } | Self::LatencyAbove { .. }
        )
    }

    /// A rate from CloudWatch's error counts.
    pub fn is_error(self) -> bool {
        matches!(self, Self::ErrorAbove { .. } | Self::ErrorMax { .. })
    }

    /// Judged from the data capture.
    pub fn is_output(self) -> bool {
        matches!(
            self,
            Self::OutputAgreement { .. } | Self::OutputMeanAbsDiff { .. }
        )
    }

    /// Production's series are not read for a limit on the shadow alone.
    pub fn reads_production(self) -> bool {
        !matches!(
            self,
            Self::ErrorMax { .. }
                | Self::LatencyMax { .. }
                | Self::OutputAgreement { .. }
                | Self::OutputMeanAbsDiff { .. }
        )
    }
}

/// The quantile whose terms (§3) a latency metric uses: the average has no
/// order-statistic bias, so it is judged like p50 (k = 0, m_target = 10).
pub fn quantile_of(metric: CheckMetric) -> f64 {
    match metric.series().map(|series| series.statistic) {
        Some(Statistic::PercentileTenths(tenths)) => f64::from(tenths) / 1000.0,
        _ => 0.5,
    }
}

/// The latency metric a check reads (only latency checks ask).
fn latency_metric(metric: CheckMetric) -> SageMakerMetric {
    metric
        .series()
        .map_or(SageMakerMetric::ModelLatency, |series| series.metric)
}

/// The error metric of an error check (only error checks ask).
pub fn error_metric(metric: CheckMetric) -> SageMakerMetric {
    metric
        .series()
        .map_or(SageMakerMetric::Invocations, |series| series.metric)
}

/// Where one answered series sits: everything that tells two queries of one
/// experiment apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesAt {
    pub role: VariantRole,
    pub metric: SageMakerMetric,
    pub statistic: Statistic,
    pub period_secs: i64,
    pub start: DateTime<Utc>,
}

impl SeriesAt {
    pub fn of(query: &SeriesQuery) -> Self {
        Self {
            role: query.role,
            metric: query.metric,
            statistic: query.statistic,
            period_secs: i64::try_from(query.period.as_secs()).unwrap_or(i64::MAX),
            start: query.window.start,
        }
    }
}

/// One experiment's answered series, and the latency periods already
/// known (remembered from an earlier tick; see [`PeriodKey`]), which then
/// need no counts to be chosen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub series: HashMap<SeriesAt, Series>,
    pub periods: HashMap<PeriodKey, PeriodChoice>,
    /// The step's captured outputs, for the output checks.
    pub outputs: crate::capture::OutputEvidence,
}

/// What a segment's latency period depends on besides production's
/// traffic: the segment's start and sampling, and the quantile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodKey {
    pub segment_start: DateTime<Utc>,
    pub percentage: u8,
    /// The quantile in thousandths (p99 → 990).
    pub quantile: u16,
}

impl PeriodKey {
    fn of(segment: &Segment, p: f64) -> Self {
        Self {
            segment_start: segment.start,
            percentage: segment.percentage,
            quantile: (p * 1000.0).round() as u16,
        }
    }
}

/// How long after the hour a period is chosen from ends before its
/// datapoints count as final: CloudWatch publishes endpoint metrics within
/// minutes, so a choice made later than this never changes.
const FINAL_AFTER_SECS: i64 = 15 * 60;

/// The periods of every latency check's segments that can no longer
/// change: chosen (or found impossible) from an hour of production traffic
/// that ended at least [`FINAL_AFTER_SECS`] before the evidence does. A
/// process may remember them across ticks and hand them back in
/// [`Evidence::periods`]; the choice is the same either way.
pub fn final_periods(
    timeline: &Timeline,
    policy: &Policy,
    evidence: &Evidence,
) -> Vec<(PeriodKey, PeriodChoice)> {
    let production = count_at(
        timeline,
        VariantRole::Production,
        SageMakerMetric::Invocations,
    )
    .and_then(|at| evidence.get(&at));
    let settled = chrono::Duration::seconds(FINAL_AFTER_SECS);
    let hour = chrono::Duration::seconds(RATE_WINDOW_SECS);
    let mut out = Vec::new();
    for check in &policy.checks {
        if !Form::of(check).is_latency() {
            continue;
        }
        let p = quantile_of(check.metric);
        for plan in latency_plan(check, timeline, evidence) {
            let anchor = floor_to(plan.segment.start, ERROR_PERIOD_SECS);
            // The hour the choice came from (as choose_period takes it) has
            // to be over by `settled`.
            let traffic_before = evidence
                .periods
                .contains_key(&PeriodKey::of(&plan.segment, p))
                || production
                    .is_some_and(|counts| production_rate(counts, anchor - hour, anchor).is_some());
            let source_ends = if traffic_before {
                anchor
            } else {
                anchor + hour
            };
            let is_final =
                plan.period != PeriodChoice::Pending && source_ends + settled <= timeline.end;
            if is_final {
                out.push((PeriodKey::of(&plan.segment, p), plan.period));
            }
        }
    }
    out
}

/// Whether every latency check's every segment has its period in `known`:
/// then the latency queries can be asked without waiting for the counts.
pub fn periods_known(timeline: &Timeline, policy: &Policy, known: &Evidence) -> bool {
    policy.checks.iter().all(|check| {
        !Form::of(check).is_latency() || {
            let p = quantile_of(check.metric);
            timeline
                .segments
                .iter()
                .all(|segment| known.periods.contains_key(&PeriodKey::of(segment, p)))
        }
    })
}

impl Evidence {
    pub fn get(&self, at: &SeriesAt) -> Option<&Series> {
        self.series.get(at)
    }

    pub fn insert(&mut self, query: &SeriesQuery, series: Series) {
        self.series.insert(SeriesAt::of(query), series);
    }
}

fn query(
    experiment: &Arc<MeasuredExperiment>,
    role: VariantRole,
    metric: SageMakerMetric,
    statistic: Statistic,
    window: Window,
    period_secs: i64,
) -> SeriesQuery {
    SeriesQuery {
        experiment: Arc::clone(experiment),
        role,
        metric,
        statistic,
        window,
        period: Duration::from_secs(u64::try_from(period_secs).unwrap_or(60)),
    }
}

/// The count series of one variant in the first round.
pub fn count_at(
    timeline: &Timeline,
    role: VariantRole,
    metric: SageMakerMetric,
) -> Option<SeriesAt> {
    let window = timeline.count_window()?;
    Some(SeriesAt {
        role,
        metric,
        statistic: Statistic::Sum,
        period_secs: ERROR_PERIOD_SECS,
        start: window.start,
    })
}

/// The first round: invocations and every error metric a check reads, for
/// both variants, over the whole experiment and the hour before it.
pub fn count_queries(
    experiment: &Arc<MeasuredExperiment>,
    timeline: &Timeline,
    policy: &Policy,
) -> Vec<SeriesQuery> {
    let Some(window) = timeline.count_window() else {
        return Vec::new();
    };
    let mut metrics = vec![SageMakerMetric::Invocations];
    for check in &policy.checks {
        if Form::of(check).is_error() {
            let metric = error_metric(check.metric);
            if !metrics.contains(&metric) {
                metrics.push(metric);
            }
        }
    }
    [VariantRole::Production, VariantRole::Shadow]
        .into_iter()
        .flat_map(|role| {
            metrics.iter().map(move |metric| {
                query(
                    experiment,
                    role,
                    *metric,
                    Statistic::Sum,
                    window,
                    ERROR_PERIOD_SECS,
                )
            })
        })
        .collect()
}

/// The latency period of one step, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PeriodChoice {
    Chosen {
        secs: i64,
        /// The traffic estimate it was chosen from: production's rate over
        /// the hour before the step times the step's sampling.
        shadow_per_minute: f64,
    },
    /// Even an hour holds too few shadow requests for this quantile.
    TooLittleTraffic {
        shadow_per_minute: f64,
        needed_per_minute: f64,
    },
    /// No production traffic before the step; the step's first hour will
    /// tell.
    Pending,
}

impl PeriodChoice {
    pub fn secs(self) -> Option<i64> {
        match self {
            Self::Chosen { secs, .. } => Some(secs),
            _ => None,
        }
    }
}

/// §3's rule on a traffic estimate: the shortest period holding
/// `m_target(p)` shadow requests, at least [`MIN_PERIOD_SECS`].
pub fn period_for(shadow_per_minute: f64, p: f64) -> PeriodChoice {
    let terms = QuantileTerms::new(p);
    let shortest = MIN_PERIOD_SECS;
    LATENCY_PERIODS_SECS
        .into_iter()
        .filter(|secs| *secs >= shortest)
        .find(|&secs| terms.period_holds_target(shadow_per_minute * secs as f64 / 60.0))
        .map_or(
            PeriodChoice::TooLittleTraffic {
                shadow_per_minute,
                needed_per_minute: (terms.m_target - terms.m_target.sqrt()) / 60.0,
            },
            |secs| PeriodChoice::Chosen {
                secs,
                shadow_per_minute,
            },
        )
}

/// Production's requests a minute over the aligned hour before the step,
/// which is past and so fixed for the life of the step (what the capture's
/// sample rate is chosen from, like a latency period).
pub fn production_rate_before_step(timeline: &Timeline, evidence: &Evidence) -> Option<f64> {
    let counts = count_at(
        timeline,
        VariantRole::Production,
        SageMakerMetric::Invocations,
    )
    .and_then(|at| evidence.get(&at))?;
    let anchor = floor_to(timeline.step_start, ERROR_PERIOD_SECS);
    production_rate(
        counts,
        anchor - chrono::Duration::seconds(RATE_WINDOW_SECS),
        anchor,
    )
}

/// Production's requests a minute over `[from, to)` of its count series, if
/// it has any datapoint there.
fn production_rate(counts: &Series, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for (_, value) in counts.range(from..to) {
        any = true;
        total += value.max(0.0);
    }
    any.then(|| total / ((to - from).num_seconds() as f64 / 60.0))
}

/// The period of `segment` for quantile `p`: from production's rate over
/// the aligned hour before the segment's start, which is past and so fixed
/// for the life of the step; when production had no traffic then, from the
/// segment's own first hour, once it is complete.
pub fn choose_period(
    production_invocations: Option<&Series>,
    segment: &Segment,
    timeline_end: DateTime<Utc>,
    p: f64,
) -> PeriodChoice {
    let Some(counts) = production_invocations else {
        return PeriodChoice::Pending;
    };
    let anchor = floor_to(segment.start, ERROR_PERIOD_SECS);
    let hour = chrono::Duration::seconds(RATE_WINDOW_SECS);
    let before = production_rate(counts, anchor - hour, anchor);
    let rate = match before {
        Some(rate) => rate,
        None if anchor + hour <= floor_to(timeline_end, ERROR_PERIOD_SECS) => {
            production_rate(counts, anchor, anchor + hour).unwrap_or(0.0)
        }
        None => return PeriodChoice::Pending,
    };
    period_for(rate * f64::from(segment.percentage) / 100.0, p)
}

/// The series one latency check reads in one segment, at its period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRead {
    pub metric: SageMakerMetric,
    pub statistic: Statistic,
    /// Periods wholly inside the segment.
    pub window: Window,
    pub period_secs: i64,
    /// Production's (or for a one-sample check, the shadow's own) median,
    /// for the tail scale of the bias term; not read where `k_p = 0`.
    pub median: Option<(VariantRole, Statistic)>,
    pub reads_production: bool,
}

impl LatencyRead {
    pub fn at(&self, role: VariantRole, statistic: Statistic) -> SeriesAt {
        SeriesAt {
            role,
            metric: self.metric,
            statistic,
            period_secs: self.period_secs,
            start: self.window.start,
        }
    }

    fn queries(&self, experiment: &Arc<MeasuredExperiment>) -> Vec<SeriesQuery> {
        let mut wanted = vec![
            (VariantRole::Shadow, self.statistic),
            (VariantRole::Shadow, Statistic::SampleCount),
        ];
        if self.reads_production {
            wanted.push((VariantRole::Production, self.statistic));
            wanted.push((VariantRole::Production, Statistic::SampleCount));
        }
        if let Some(median) = self.median {
            wanted.push(median);
        }
        wanted
            .into_iter()
            .map(|(role, statistic)| {
                query(
                    experiment,
                    role,
                    self.metric,
                    statistic,
                    self.window,
                    self.period_secs,
                )
            })
            .collect()
    }
}

/// One segment of one latency check: its period and what it reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentPlan {
    pub segment: Segment,
    pub period: PeriodChoice,
    /// `None` without a period, or before the first whole period ends.
    pub read: Option<LatencyRead>,
}

/// Every segment's period and reads for one latency check.
pub fn latency_plan(check: &Check, timeline: &Timeline, counts: &Evidence) -> Vec<SegmentPlan> {
    let form = Form::of(check);
    let p = quantile_of(check.metric);
    let terms = QuantileTerms::new(p);
    let statistic = check
        .metric
        .series()
        .map_or(Statistic::Average, |series| series.statistic);
    let production = count_at(
        timeline,
        VariantRole::Production,
        SageMakerMetric::Invocations,
    )
    .and_then(|at| counts.get(&at));
    timeline
        .segments
        .iter()
        .map(|segment| {
            let period = match counts.periods.get(&PeriodKey::of(segment, p)) {
                Some(known) => *known,
                None => choose_period(production, segment, timeline.end, p),
            };
            let read = period.secs().and_then(|secs| {
                let window = Window {
                    start: ceil_to(segment.start, secs),
                    end: floor_to(segment.end.min(timeline.end), secs),
                };
                let median = (terms.k != 0.0).then(|| {
                    let role = if form.reads_production() {
                        VariantRole::Production
                    } else {
                        VariantRole::Shadow
                    };
                    (role, Statistic::percentile(50.0))
                });
                (window.start < window.end).then_some(LatencyRead {
                    metric: latency_metric(check.metric),
                    statistic,
                    window,
                    period_secs: secs,
                    median,
                    reads_production: form.reads_production(),
                })
            });
            SegmentPlan {
                segment: *segment,
                period,
                read,
            }
        })
        .collect()
}

/// The second round: each latency check's series per segment, without
/// asking twice for one series that two checks share.
pub fn latency_queries(
    experiment: &Arc<MeasuredExperiment>,
    timeline: &Timeline,
    policy: &Policy,
    counts: &Evidence,
) -> Vec<SeriesQuery> {
    let mut seen = BTreeMap::new();
    for check in &policy.checks {
        if !Form::of(check).is_latency() {
            continue;
        }
        for plan in latency_plan(check, timeline, counts) {
            if let Some(read) = plan.read {
                for query in read.queries(experiment) {
                    seen.entry(SeriesAt::of(&query)).or_insert(query);
                }
            }
        }
    }
    seen.into_values().collect()
}

/// The start of epoch `j` (from 1) for a check read at `period_secs`.
pub fn epoch_start(step_start: DateTime<Utc>, j: u32, period_secs: i64) -> DateTime<Utc> {
    let length = EPOCH_SECS.max(10 * period_secs);
    ceil_to(
        step_start + chrono::Duration::seconds(length * i64::from(j)),
        period_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ExperimentStatus, STEPS_TAG, STEP_TAG};
    use crate::policy::parse_policy;

    fn at(hours: f64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_547_200 + (hours * 3600.0) as i64, 0).expect("in range")
    }

    fn experiment(tags: &[(&str, &str)], percentage: u8, modified: f64) -> Experiment {
        Experiment {
            name: "e".into(),
            arn: "arn:aws:sagemaker:eu-west-1:1:inference-experiment/e".into(),
            status: ExperimentStatus::Running,
            endpoint_name: "ep".into(),
            production_variant: "p".into(),
            shadow_variant: "s".into(),
            sampling_percentage: percentage,
            start_time: Some(at(0.0)),
            end_time: Some(at(48.0)),
            last_modified: at(modified),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capture: None,
        }
    }

    fn policy() -> Policy {
        parse_policy(
            "p.yaml",
            "name: p\nwindow:\n  publish_delay: 3m\nramp:\n  steps: [5, 25, 100]\n",
        )
        .expect("valid")
    }

    #[test]
    fn the_step_starts_where_the_tag_says_unless_someone_else_changed_the_sampling() {
        let tag = crate::experiment::tag_time(at(2.0));
        let cases = [
            // (tags, described %, LastModifiedTime h, step start h, origin)
            (vec![], 5, 0.5, 0.5, StepOrigin::Untagged),
            (
                vec![(STEP_TAG, format!("25@{tag}"))],
                25,
                9.0,
                2.0,
                StepOrigin::Tagged,
            ),
            (
                vec![(STEP_TAG, format!("25@{tag}"))],
                50,
                9.0,
                9.0,
                StepOrigin::ChangedElsewhere { tagged: 25 },
            ),
            (
                vec![(STEP_TAG, "25@yesterday".into())],
                25,
                9.0,
                9.0,
                StepOrigin::Untagged,
            ),
        ];
        for (tags, percentage, modified, start, origin) in cases {
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let timeline = Timeline::of(
                &experiment(&tags, percentage, modified),
                &policy(),
                at(10.0),
            );
            assert_eq!(timeline.step_start, at(start), "{tags:?}");
            assert_eq!(timeline.step_origin, origin, "{tags:?}");
            assert_eq!(timeline.end, at(10.0) - chrono::Duration::minutes(3));
        }
    }

    #[test]
    fn a_first_step_set_before_traffic_began_dwells_from_start_time() {
        let mut e = experiment(&[], 5, -24.0);
        e.start_time = Some(at(0.0));
        let timeline = Timeline::of(&e, &policy(), at(1.0));
        assert_eq!(timeline.step_start, at(0.0));
    }

    #[test]
    fn earlier_steps_become_segments_clamped_to_the_whole_experiment() {
        let history = format!(
            "5@{} 25@{}",
            crate::experiment::tag_time(at(-1.0)),
            crate::experiment::tag_time(at(1.0))
        );
        let step = format!("100@{}", crate::experiment::tag_time(at(3.0)));
        let e = experiment(&[(STEPS_TAG, &history), (STEP_TAG, &step)], 100, 5.0);
        let timeline = Timeline::of(&e, &policy(), at(6.0));
        let shown: Vec<(u8, DateTime<Utc>, DateTime<Utc>)> = timeline
            .segments
            .iter()
            .map(|s| (s.percentage, s.start, s.end))
            .collect();
        assert_eq!(
            shown,
            [
                (5, at(0.0), at(1.0)),
                (25, at(1.0), at(3.0)),
                (100, at(3.0), at(6.0) - chrono::Duration::minutes(3)),
            ]
        );
    }

    #[test]
    fn the_period_holds_enough_shadow_requests_and_is_never_under_five_minutes() {
        let cases = [
            // (shadow/min, p, period)
            (1000.0, 0.99, Some(300)),
            (200.0, 0.99, Some(300)),
            // One √500 short of 500 in five minutes is forgiven (the rate
            // is an estimate), more is not.
            (100.0, 0.99, Some(300)),
            (96.0, 0.99, Some(300)),
            (95.0, 0.99, Some(600)),
            (50.0, 0.99, Some(600)),
            (10.0, 0.99, Some(3600)),
            (5.0, 0.99, None),
            (5.0, 0.5, Some(300)),
        ];
        for (rate, p, expected) in cases {
            assert_eq!(period_for(rate, p).secs(), expected, "{rate} {p}");
        }
        assert_eq!(
            period_for(5.0, 0.99),
            PeriodChoice::TooLittleTraffic {
                shadow_per_minute: 5.0,
                needed_per_minute: (500.0 - 500f64.sqrt()) / 60.0
            }
        );
    }

    #[test]
    fn the_period_comes_from_the_hour_before_the_step_so_it_never_changes_during_it() {
        let segment = Segment {
            percentage: 10,
            start: at(2.0),
            end: at(5.0),
        };
        let mut counts = Series::new();
        // 1000 requests a minute before the step, 100 after: the choice
        // reads only the hour before.
        for k in 0..12 {
            counts.insert(at(1.0) + chrono::Duration::minutes(5 * k), 5000.0);
            counts.insert(at(2.0) + chrono::Duration::minutes(5 * k), 500.0);
        }
        assert_eq!(
            choose_period(Some(&counts), &segment, at(5.0), 0.99).secs(),
            Some(300)
        );
        let quiet_before = Series::from_iter(
            (0..12).map(|k| (at(2.0) + chrono::Duration::minutes(5 * k), 5000.0)),
        );
        assert_eq!(
            choose_period(Some(&quiet_before), &segment, at(2.5), 0.99),
            PeriodChoice::Pending
        );
        assert_eq!(
            choose_period(Some(&quiet_before), &segment, at(3.5), 0.99).secs(),
            Some(300)
        );
    }
}
