//! The simulated traffic: each minute's requests, errors and latency
//! samples, drawn on first use from the seed and cached, and their merge over
//! a window, which the simulated CloudWatch and the runner's observer read.

use chrono::{DateTime, Utc};

use super::{minute_start, role_index, SimExperiment, World};
use crate::histogram::{MinuteHistogram, WindowHistogram};
use crate::rng::{Draws, Purpose};
use crate::scenario::{Conditions, VariantModel};
use shadowpilot_core::metrics::VariantRole;

/// Minutes older than this behind the clock are dropped from the cache; a
/// query that reaches further back recomputes them (same seed, same answer).
const RETAIN_MINUTES: i64 = 24 * 60;

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
}

impl SimExperiment {
    fn conditions(&self, minute: i64) -> &Conditions {
        let index = self
            .segment_minutes
            .partition_point(|&from| from <= minute)
            .saturating_sub(1);
        &self.spec.segments[index].1
    }

    fn model(&self, minute: i64, role: VariantRole) -> &VariantModel {
        let conditions = self.conditions(minute);
        match role {
            VariantRole::Production => &conditions.production,
            VariantRole::Shadow => &conditions.shadow,
        }
    }
}

impl World {
    /// The minute's counts, drawn on first use.
    pub(crate) fn counts(&mut self, index: usize, minute: i64) -> [Counts; 2] {
        let slot = (minute - self.first_minute) as usize;
        if let Some(Some(data)) = self.experiments[index].minutes.get(slot) {
            return data.counts;
        }
        let seed = self.seed;
        let experiment = &mut self.experiments[index];
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
        if experiment.minutes.len() <= slot {
            experiment.minutes.resize_with(slot + 1, || None);
        }
        experiment.minutes[slot] = Some(Box::new(MinuteData {
            counts,
            ..MinuteData::default()
        }));
        counts
    }

    /// Makes sure the minute's latency histogram exists (after its counts).
    pub(crate) fn ensure_histogram(
        &mut self,
        index: usize,
        minute: i64,
        role: VariantRole,
        overhead: bool,
    ) {
        let counts = self.counts(index, minute);
        let seed = self.seed;
        let slot = (minute - self.first_minute) as usize;
        let experiment = &mut self.experiments[index];
        let i = role_index(role);
        let model = experiment.model(minute, role);
        let (table, purpose) = if overhead {
            (model.overhead.table.clone(), Purpose::OverheadLatency)
        } else {
            (model.latency.table.clone(), Purpose::ModelLatency)
        };
        let key = experiment.keys[i];
        let Some(Some(data)) = experiment.minutes.get_mut(slot) else {
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
        let data = self.experiments[index].minutes.get(slot)?.as_ref()?;
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
    /// the same series. The caller puts the result back in `windows`.
    pub(crate) fn merged(
        &mut self,
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
                let counts = self.counts(index, minute)[role_index(role)];
                if counts.invocations == 0 {
                    continue;
                }
                merged.counts.change(&counts, adding);
                self.ensure_histogram(index, minute, role, overhead);
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

    pub(crate) fn observe(
        &mut self,
        index: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Observation {
        let minutes = self.minutes_between(from, to, self.now);
        let mut result = [VariantObservation::default(); 2];
        for role in [VariantRole::Production, VariantRole::Shadow] {
            let i = role_index(role);
            // Slot 2: the observer's own moving window, apart from the controller's.
            let merged = self.merged(index, role, false, 2, minutes.clone());
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
            self.windows.insert((index, i, 2), merged);
        }
        Observation {
            production: result[0],
            shadow: result[1],
        }
    }

    pub(crate) fn evict(&mut self) {
        let keep_from = (self.now.timestamp().div_euclid(60) - RETAIN_MINUTES - self.first_minute)
            .max(0) as usize;
        for experiment in &mut self.experiments {
            let to = keep_from.min(experiment.minutes.len());
            for slot in experiment.evicted_to..to {
                experiment.minutes[slot] = None;
            }
            experiment.evicted_to = experiment.evicted_to.max(to);
        }
    }
}
