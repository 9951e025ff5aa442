//! Settings given at several levels: each level checked on its own, then
//! merged field by field into the conditions a stretch of time runs under.

use shadowpilot_core::validation::Problems;

use super::doc::{LayerDoc, VariantDoc};
use super::{Conditions, LatencyModel, VariantModel};

/// Built-in values under `defaults`.
pub(super) const BASE_PER_MINUTE: f64 = 300.0;
const BASE_PEAK_HOUR: f64 = 14.0;
const BASE_LATENCY: (f64, f64) = (50.0, 150.0);
const BASE_OVERHEAD: (f64, f64) = (2.0, 6.0);

/// Checks one level's settings on their own, before merging, so that a
/// problem names the level that wrote the value.
pub(super) fn check_layer(problems: &mut Problems<'_>, path: &str, layer: &LayerDoc) {
    let join = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let traffic = &layer.traffic;
    problems.range(
        join("traffic.per_minute"),
        traffic.per_minute,
        0.0,
        1_000_000.0,
        "",
    );
    problems.range(
        join("traffic.daily_swing"),
        traffic.daily_swing,
        0.0,
        1.0,
        "",
    );
    problems.range(join("traffic.peak_hour"), traffic.peak_hour, 0.0, 24.0, "");
    problems.range(join("traffic.factor"), traffic.factor, 0.0, 1000.0, "");
    for (role, variant) in [("production", &layer.production), ("shadow", &layer.shadow)] {
        for (kind, latency) in [
            ("latency", &variant.latency),
            ("overhead", &variant.overhead),
        ] {
            if let Some(latency) = latency {
                problems.positive(join(&format!("{role}.{kind}.median_ms")), latency.median_ms);
                problems.positive(join(&format!("{role}.{kind}.p99_ms")), latency.p99_ms);
                if let (Some(median), Some(p99)) = (latency.median_ms, latency.p99_ms) {
                    if p99 <= median {
                        problems.add(
                            join(&format!("{role}.{kind}.p99_ms")),
                            format!("{p99} is not above median_ms {median}"),
                        );
                    }
                }
            }
        }
        if let Some(errors) = &variant.errors {
            for (name, value) in [
                ("4xx", errors.e4xx),
                ("5xx", errors.e5xx),
                ("model", errors.model),
            ] {
                problems.range(
                    join(&format!("{role}.errors.{name}")),
                    value,
                    0.0,
                    100.0,
                    " %",
                );
            }
        }
    }
}

/// Field-by-field override of settings, later layers winning.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    per_minute: Option<f64>,
    daily_swing: Option<f64>,
    peak_hour: Option<f64>,
    factor: Option<f64>,
    production: ResolvedVariant,
    shadow: ResolvedVariant,
}

#[derive(Debug, Clone, Default)]
struct ResolvedVariant {
    latency: (Option<f64>, Option<f64>),
    overhead: (Option<f64>, Option<f64>),
    errors: [Option<f64>; 3],
}

impl ResolvedVariant {
    fn apply(&mut self, doc: &VariantDoc) {
        if let Some(l) = &doc.latency {
            self.latency = (l.median_ms.or(self.latency.0), l.p99_ms.or(self.latency.1));
        }
        if let Some(l) = &doc.overhead {
            self.overhead = (
                l.median_ms.or(self.overhead.0),
                l.p99_ms.or(self.overhead.1),
            );
        }
        if let Some(e) = &doc.errors {
            for (slot, value) in self.errors.iter_mut().zip([e.e4xx, e.e5xx, e.model]) {
                *slot = value.or(*slot);
            }
        }
    }

    /// Unset fields fall back to `fallback`, then to the built-in values.
    fn finish(&self, fallback: Option<&ResolvedVariant>) -> ResolvedVariant {
        let pick =
            |own: Option<f64>, other: Option<f64>, base: f64| Some(own.or(other).unwrap_or(base));
        let f = fallback.cloned().unwrap_or_default();
        ResolvedVariant {
            latency: (
                pick(self.latency.0, f.latency.0, BASE_LATENCY.0),
                pick(self.latency.1, f.latency.1, BASE_LATENCY.1),
            ),
            overhead: (
                pick(self.overhead.0, f.overhead.0, BASE_OVERHEAD.0),
                pick(self.overhead.1, f.overhead.1, BASE_OVERHEAD.1),
            ),
            errors: [
                pick(self.errors[0], f.errors[0], 0.0),
                pick(self.errors[1], f.errors[1], 0.0),
                pick(self.errors[2], f.errors[2], 0.0),
            ],
        }
    }
}

impl Resolved {
    pub(super) fn apply(&mut self, layer: &LayerDoc) {
        let t = &layer.traffic;
        self.per_minute = t.per_minute.or(self.per_minute);
        self.daily_swing = t.daily_swing.or(self.daily_swing);
        self.peak_hour = t.peak_hour.or(self.peak_hour);
        self.factor = t.factor.or(self.factor);
        self.production.apply(&layer.production);
        self.shadow.apply(&layer.shadow);
    }

    /// The final conditions, or the problem with the merged values.
    pub(super) fn conditions(&self) -> Result<Conditions, String> {
        let production = self.production.finish(None);
        let shadow = self.shadow.finish(Some(&production));
        let model = |role: &str, v: &ResolvedVariant| -> Result<VariantModel, String> {
            let (median, p99) = (v.latency.0.unwrap_or(1.0), v.latency.1.unwrap_or(2.0));
            let (o_median, o_p99) = (v.overhead.0.unwrap_or(1.0), v.overhead.1.unwrap_or(2.0));
            if p99 <= median {
                return Err(format!(
                    "{role} latency p99_ms {p99} is not above median_ms {median}"
                ));
            }
            if o_p99 <= o_median {
                return Err(format!(
                    "{role} overhead p99_ms {o_p99} is not above median_ms {o_median}"
                ));
            }
            let rate = |i: usize| v.errors[i].unwrap_or(0.0) / 100.0;
            Ok(VariantModel {
                latency: LatencyModel::new(median, p99),
                overhead: LatencyModel::new(o_median, o_p99),
                rate_4xx: rate(0),
                rate_5xx: rate(1),
                rate_model: rate(2),
            })
        };
        Ok(Conditions {
            per_minute: self.per_minute.unwrap_or(BASE_PER_MINUTE),
            daily_swing: self.daily_swing.unwrap_or(0.0),
            peak_hour: self.peak_hour.unwrap_or(BASE_PEAK_HOUR),
            factor: self.factor.unwrap_or(1.0),
            production: model("production", &production)?,
            shadow: model("shadow", &shadow)?,
        })
    }
}
