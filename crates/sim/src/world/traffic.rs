//! The simulated traffic: each minute's requests, errors and latency
//! samples, drawn on first use from the seed and cached, and their merge over
//! a window, which the simulated CloudWatch and the runner's observer read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::sagemaker::SimExperiment;
use crate::histogram::{MinuteHistogram, WindowHistogram};
use crate::rng::{Draws, Purpose};
use crate::scenario::{Conditions, VariantModel};
use shadowpilot_core::metrics::VariantRole;

/// Minutes older than this behind the clock are dropped from the cache; a
/// query that reaches further back recomputes them (same seed, same answer).
const RETAIN_MINUTES: i64 = 24 * 60;

/// Production has served traffic for this long before the scenario starts:
/// a shadow test is created on a live endpoint, and the judge sizes a
/// step's periods from production's rate in the hour before the step.
pub(crate) const PRODUCTION_HISTORY_MINUTES: i64 = 2 * 60;

/// What really happened on one variant over a stretch of time, regardless of
/// what CloudWatch has published yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct VariantObservation {
    pub invocations: u64,
    pub p99_ms: Option<f64>,
    pub error_5xx_percent: Option<f64>,
    pub model_error_percent: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Observation {
    pub production: VariantObservation,
    pub shadow: VariantObservation,
}

#[derive(Default)]
pub(crate) struct MergedWindow {
    minutes: std::ops::Range<i64>,
    pub(crate) counts: Counts,
    pub(crate) histogram: WindowHistogram,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) invocations: u64,
    pub(crate) e4xx: u64,
    pub(crate) e5xx: u64,
    pub(crate) model: u64,
}

impl Counts {
    fn change(&mut self, other: &Counts, adding: bool) {
        let apply = |total: &mut u64, part: u64| {
            *total = if adding { *total + part } else { *total - part };
        };
        apply(&mut self.invocations, other.invocations);
        apply(&mut self.e4xx, other.e4xx);
        apply(&mut self.e5xx, other.e5xx);
        apply(&mut self.model, other.model);
    }
}

#[derive(Debug, Default)]
pub(crate) struct MinuteData {
    counts: [Counts; 2],
    latency: [Option<MinuteHistogram>; 2],
    overhead: [Option<MinuteHistogram>; 2],
    /// Each variant's capture file size, once listed or read: a listing
    /// needs it, and computing it means writing the file out. Kept with
    /// the minute so that it is evicted with it.
    capture_bytes: [Option<u64>; 2],
}

impl SimExperiment {
    fn conditions(&self, minute: i64) -> &Conditions {
        let index = self
            .segment_minutes
            .partition_point(|&from| from <= minute)
            .saturating_sub(1);
        &self.spec.segments[index].1
    }

    pub(crate) fn model(&self, minute: i64, role: VariantRole) -> &VariantModel {
        let conditions = self.conditions(minute);
        match role {
            VariantRole::Production => &conditions.production,
            VariantRole::Shadow => &conditions.shadow,
        }
    }
}

/// The drawn minutes of every experiment, and the windows merged from them.
pub(crate) struct Traffic {
    seed: u64,
    first_minute: i64,
    /// Per experiment, per minute since the scenario start, filled lazily.
    minutes: Vec<Vec<Option<Box<MinuteData>>>>,
    /// Per experiment, the minutes before this index have been evicted.
    evicted_to: Vec<usize>,
    /// The last window merged per (experiment, role, slot): the controller
    /// asks for a window that moved by one tick, so it is cheaper to take
    /// out the minutes that left and add those that came. Slot 0 is model
    /// latency, 1 overhead latency, 2 the observer's own window.
    windows: HashMap<(usize, usize, u8), MergedWindow>,
}

pub(crate) fn role_index(role: VariantRole) -> usize {
    match role {
        VariantRole::Production => 0,
        VariantRole::Shadow => 1,
    }
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

impl Traffic {
    pub(crate) fn new(seed: u64, start: DateTime<Utc>, experiments: usize) -> Self {
        Self {
            seed,
            first_minute: start.timestamp().div_euclid(60) - PRODUCTION_HISTORY_MINUTES,
            minutes: (0..experiments).map(|_| Vec::new()).collect(),
            evicted_to: vec![0; experiments],
            windows: HashMap::new(),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The first minute with traffic: production's history before the start.
    pub(crate) fn first_minute(&self) -> i64 {
        self.first_minute
    }

    /// A variant's capture file size for the minute, when known.
    pub(crate) fn capture_size(&self, index: usize, minute: i64, role: VariantRole) -> Option<u64> {
        let slot = usize::try_from(minute - self.first_minute).ok()?;
        self.minutes[index].get(slot)?.as_ref()?.capture_bytes[role_index(role)]
    }

    /// Remembers a capture file size; the minute's counts must be drawn.
    pub(crate) fn set_capture_size(
        &mut self,
        index: usize,
        minute: i64,
        role: VariantRole,
        bytes: u64,
    ) {
        let Ok(slot) = usize::try_from(minute - self.first_minute) else {
            return;
        };
        if let Some(Some(data)) = self.minutes[index].get_mut(slot) {
            data.capture_bytes[role_index(role)] = Some(bytes);
        }
    }

    /// Minutes held in the cache, and how many of them hold capture sizes.
    pub(crate) fn held(&self) -> (usize, usize) {
        let held = self.minutes.iter().flatten().flatten();
        held.fold((0, 0), |(minutes, sizes), data| {
            let known = data.capture_bytes.iter().flatten().count();
            (minutes + 1, sizes + known)
        })
    }

    /// The minute's counts, drawn on first use.
    pub(crate) fn counts(
        &mut self,
        experiment: &SimExperiment,
        index: usize,
        minute: i64,
    ) -> [Counts; 2] {
        let slot = (minute - self.first_minute) as usize;
        if let Some(Some(data)) = self.minutes[index].get(slot) {
            return data.counts;
        }
        let seed = self.seed;
        let at_secs = minute * 60;
        // One stream per endpoint and minute, production first, so the
        // production draws never depend on the shadow's sampling.
        let mut draws = Draws::new(seed, experiment.keys[0], minute, Purpose::Traffic);
        let production_model = experiment.model(minute, VariantRole::Production);
        let production = draws.poisson(experiment.conditions(minute).mean_requests(at_secs));
        let mut counts = [Counts::default(); 2];
        counts[0] = Counts {
            invocations: production,
            e4xx: draws.binomial(production, production_model.rate_4xx),
            e5xx: draws.binomial(production, production_model.rate_5xx),
            model: draws.binomial(production, production_model.rate_model),
        };
        if experiment.start_secs <= at_secs && at_secs < experiment.end_secs {
            let fraction = f64::from(experiment.sampling_at(minute_start(minute))) / 100.0;
            let shadow = draws.binomial(production, fraction);
            let shadow_model = experiment.model(minute, VariantRole::Shadow);
            counts[1] = Counts {
                invocations: shadow,
                e4xx: draws.binomial(shadow, shadow_model.rate_4xx),
                e5xx: draws.binomial(shadow, shadow_model.rate_5xx),
                model: draws.binomial(shadow, shadow_model.rate_model),
            };
        }
        let minutes = &mut self.minutes[index];
        if minutes.len() <= slot {
            minutes.resize_with(slot + 1, || None);
        }
        minutes[slot] = Some(Box::new(MinuteData {
            counts,
            ..MinuteData::default()
        }));
        counts
    }

    /// Makes sure the minute's latency histogram exists (after its counts).
    pub(crate) fn ensure_histogram(
        &mut self,
        experiment: &SimExperiment,
        index: usize,
        minute: i64,
        role: VariantRole,
        overhead: bool,
    ) {
        let counts = self.counts(experiment, index, minute);
        let seed = self.seed;
        let slot = (minute - self.first_minute) as usize;
        let i = role_index(role);
        let model = experiment.model(minute, role);
        let (table, purpose) = if overhead {
            (model.overhead.table.clone(), Purpose::OverheadLatency)
        } else {
            (model.latency.table.clone(), Purpose::ModelLatency)
        };
        let key = experiment.keys[i];
        let Some(Some(data)) = self.minutes[index].get_mut(slot) else {
            return;
        };
        let target = if overhead {
            &mut data.overhead[i]
        } else {
            &mut data.latency[i]
        };
        if target.is_none() {
            let mut draws = Draws::new(seed, key, minute, purpose);
            *target = Some(table.sample(counts[i].invocations, &mut draws));
        }
    }

    pub(crate) fn histogram(
        &self,
        index: usize,
        minute: i64,
        role: VariantRole,
        overhead: bool,
    ) -> Option<&MinuteHistogram> {
        let slot = (minute - self.first_minute) as usize;
        let data = self.minutes[index].get(slot)?.as_ref()?;
        let i = role_index(role);
        if overhead {
            data.overhead[i].as_ref()
        } else {
            data.latency[i].as_ref()
        }
    }

    /// Whole minutes in [from, to) that have ended by `until` and lie in the
    /// simulated time.
    pub(crate) fn minutes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> std::ops::Range<i64> {
        let first =
            from.timestamp().div_euclid(60) + i64::from(from.timestamp().rem_euclid(60) != 0);
        let first = first.max(self.first_minute);
        let end = to.timestamp().div_euclid(60) + i64::from(to.timestamp().rem_euclid(60) != 0);
        let complete = until.timestamp().div_euclid(60);
        first..end.min(complete).max(first)
    }

    /// The latency samples of `minutes`, merged, reusing the last window of
    /// the same series. The caller puts the result back with [`Self::keep`].
    pub(crate) fn merged(
        &mut self,
        experiment: &SimExperiment,
        index: usize,
        role: VariantRole,
        overhead: bool,
        slot: u8,
        minutes: std::ops::Range<i64>,
    ) -> MergedWindow {
        let key = (index, role_index(role), slot);
        let cached = self.windows.remove(&key).unwrap_or_default();
        let overlap = cached.minutes.start < minutes.end && minutes.start < cached.minutes.end;
        let changes =
            (cached.minutes.start - minutes.start).abs() + (cached.minutes.end - minutes.end).abs();
        let (mut merged, add, remove) = if overlap && changes < minutes.end - minutes.start {
            let add = [
                minutes.start..cached.minutes.start,
                cached.minutes.end..minutes.end,
            ];
            let remove = [
                cached.minutes.start..minutes.start,
                minutes.end..cached.minutes.end,
            ];
            (cached, add, remove)
        } else {
            (
                MergedWindow::default(),
                [minutes.clone(), 0..0],
                [0..0, 0..0],
            )
        };
        merged.minutes = minutes;
        for (ranges, adding) in [(add, true), (remove, false)] {
            for minute in ranges.into_iter().flatten() {
                let counts = self.counts(experiment, index, minute)[role_index(role)];
                if counts.invocations == 0 {
                    continue;
                }
                merged.counts.change(&counts, adding);
                self.ensure_histogram(experiment, index, minute, role, overhead);
                if let Some(h) = self.histogram(index, minute, role, overhead) {
                    if adding {
                        merged.histogram.add(h);
                    } else {
                        merged.histogram.subtract(h);
                    }
                }
            }
        }
        merged
    }

    /// Where a merged window goes back for the next query of its series.
    pub(crate) fn keep(&mut self, index: usize, role: VariantRole, slot: u8, merged: MergedWindow) {
        self.windows.insert((index, role_index(role), slot), merged);
    }

    /// What happened in [from, to), over the minutes that have ended by `now`.
    pub(crate) fn observe(
        &mut self,
        experiment: &SimExperiment,
        index: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Observation {
        let minutes = self.minutes_between(from, to, now);
        let mut result = [VariantObservation::default(); 2];
        for role in [VariantRole::Production, VariantRole::Shadow] {
            let i = role_index(role);
            // Slot 2: the observer's own moving window, apart from the controller's.
            let merged = self.merged(experiment, index, role, false, 2, minutes.clone());
            let total = merged.counts;
            let histogram = &merged.histogram;
            let percent = |n: u64| {
                (total.invocations > 0).then(|| n as f64 * 100.0 / total.invocations as f64)
            };
            result[i] = VariantObservation {
                invocations: total.invocations,
                p99_ms: histogram.percentile(99.0).map(|us| us / 1000.0),
                error_5xx_percent: percent(total.e5xx),
                model_error_percent: percent(total.model),
            };
            self.keep(index, role, 2, merged);
        }
        Observation {
            production: result[0],
            shadow: result[1],
        }
    }

    /// Drops the minutes older than [`RETAIN_MINUTES`] behind `now`.
    pub(crate) fn evict(&mut self, now: DateTime<Utc>) {
        let keep_from =
            (now.timestamp().div_euclid(60) - RETAIN_MINUTES - self.first_minute).max(0) as usize;
        for (minutes, evicted_to) in self.minutes.iter_mut().zip(&mut self.evicted_to) {
            let to = keep_from.min(minutes.len());
            for minute in minutes.iter_mut().take(to).skip(*evicted_to) {
                *minute = None;
            }
            *evicted_to = (*evicted_to).max(to);
        }
    }
}
