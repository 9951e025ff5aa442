//! Settings given at several levels: each level checked on its own, then
//! merged field by field into the conditions a stretch of time runs under.

use shadowpilot_core::validation::Problems;

use super::doc::{LayerDoc, OutputDoc, VariantDoc};
use super::{Conditions, LatencyModel, OutputModel, VariantModel};

/// Built-in values under `defaults`.
pub(super) const BASE_PER_MINUTE: f64 = 300.0;
const BASE_PEAK_HOUR: f64 = 14.0;
const BASE_LATENCY: (f64, f64) = (50.0, 150.0);
const BASE_OVERHEAD: (f64, f64) = (2.0, 6.0);
/// Production's output when no level sets one: a binary classifier.
const BASE_LABELS: [&str; 2] = ["negative", "positive"];
const BASE_REGRESSOR: (f64, f64) = (0.0, 1.0);
/// Bounds that keep a label a label and a file's lines short.
const MAX_LABELS: usize = 1000;
const MAX_LABEL_CHARS: usize = 64;
/// Beyond this a regressor's numbers stop being printable as plain decimals.
const MAX_REGRESSOR_VALUE: f64 = 1e12;

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
        if let Some(output) = &variant.output {
            check_output(problems, &join(&format!("{role}.output")), role, output);
        }
    }
}

/// One level's output settings: one kind, and each field on the variant it
/// belongs to. Production is the reference; the shadow only says how it
/// differs, so a field on the wrong variant would be silently meaningless.
fn check_output(problems: &mut Problems<'_>, path: &str, role: &str, output: &OutputDoc) {
    let production = role == "production";
    match (&output.classifier, &output.regressor) {
        (Some(_), Some(_)) => problems.add(path, "give classifier or regressor, not both"),
        (None, None) => problems.add(path, "give classifier or regressor"),
        _ => {}
    }
    if let Some(classifier) = &output.classifier {
        let path = format!("{path}.classifier");
        if let Some(labels) = &classifier.labels {
            if production {
                check_labels(problems, &format!("{path}.labels"), labels);
            } else {
                problems.add(
                    format!("{path}.labels"),
                    "the shadow answers with production's labels: set them under production",
                );
            }
        }
        if production && classifier.disagree.is_some() {
            problems.add(
                format!("{path}.disagree"),
                "is the shadow's (how often it labels otherwise than production)",
            );
        }
        problems.range(
            format!("{path}.disagree"),
            classifier.disagree,
            0.0,
            100.0,
            " %",
        );
    }
    if let Some(regressor) = &output.regressor {
        let path = format!("{path}.regressor");
        let max = MAX_REGRESSOR_VALUE;
        problems.range(format!("{path}.mean"), regressor.mean, -max, max, "");
        problems.range(format!("{path}.sd"), regressor.sd, 0.0, max, "");
        problems.range(format!("{path}.noise_sd"), regressor.noise_sd, 0.0, max, "");
        for (field, given, owner) in [
            ("mean", regressor.mean.is_some(), "production"),
            ("sd", regressor.sd.is_some(), "production"),
            ("noise_sd", regressor.noise_sd.is_some(), "shadow"),
        ] {
            if given && owner != role {
                let why = if production {
                    "is the shadow's (the noise it adds to production's prediction)"
                } else {
                    "is production's: the shadow's prediction is production's plus noise_sd"
                };
                problems.add(format!("{path}.{field}"), why);
            }
        }
    }
}

fn check_labels(problems: &mut Problems<'_>, path: &str, labels: &[String]) {
    if !(2..=MAX_LABELS).contains(&labels.len()) {
        problems.add(
            path,
            format!(
                "{} labels; give 2–{MAX_LABELS} (a disagreement needs another label)",
                labels.len()
            ),
        );
    }
    for (index, label) in labels.iter().enumerate() {
        let chars = label.chars().count();
        if label.trim().is_empty() || chars > MAX_LABEL_CHARS {
            problems.add(
                format!("{path}[{index}]"),
                format!("{label:?} must be 1–{MAX_LABEL_CHARS} characters, not all blank"),
            );
        }
        if let Some(first) = labels[..index].iter().position(|l| l == label) {
            problems.add(
                format!("{path}[{index}]"),
                format!("{label:?} is already labels[{first}]"),
            );
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
    output: ResolvedOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    Classifier,
    Regressor,
}

impl OutputKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Classifier => "classifier",
            Self::Regressor => "regressor",
        }
    }
}

/// Output settings merged field by field; the kind is the one the latest
/// level named, and each kind keeps its own fields, so a change that
/// switches kind and back again finds the earlier settings.
#[derive(Debug, Clone, Default)]
struct ResolvedOutput {
    kind: Option<OutputKind>,
    labels: Option<Vec<String>>,
    disagree: Option<f64>,
    mean: Option<f64>,
    sd: Option<f64>,
    noise_sd: Option<f64>,
}

impl ResolvedOutput {
    fn apply(&mut self, doc: &OutputDoc) {
        if let Some(c) = &doc.classifier {
            self.kind = Some(OutputKind::Classifier);
            self.labels = c.labels.clone().or(self.labels.take());
            self.disagree = c.disagree.or(self.disagree);
        }
        if let Some(r) = &doc.regressor {
            self.kind = Some(OutputKind::Regressor);
            self.mean = r.mean.or(self.mean);
            self.sd = r.sd.or(self.sd);
            self.noise_sd = r.noise_sd.or(self.noise_sd);
        }
    }

    /// Production's model: its own fields over the built-in ones.
    fn production(&self) -> OutputModel {
        match self.kind.unwrap_or(OutputKind::Classifier) {
            OutputKind::Classifier => OutputModel::Classifier {
                labels: match &self.labels {
                    Some(labels) => labels.iter().cloned().collect(),
                    None => BASE_LABELS.iter().map(|l| l.to_string()).collect(),
                },
                disagree: 0.0,
            },
            OutputKind::Regressor => OutputModel::Regressor {
                mean: self.mean.unwrap_or(BASE_REGRESSOR.0),
                sd: self.sd.unwrap_or(BASE_REGRESSOR.1),
                noise_sd: 0.0,
            },
        }
    }

    /// The shadow's model: production's answers with its own departures;
    /// a shadow that sets no kind answers like production.
    fn shadow(&self, production: &OutputModel) -> Result<OutputModel, String> {
        let (production_kind, model) = match production {
            OutputModel::Classifier { labels, .. } => (
                OutputKind::Classifier,
                OutputModel::Classifier {
                    labels: labels.clone(),
                    disagree: self.disagree.unwrap_or(0.0) / 100.0,
                },
            ),
            OutputModel::Regressor { mean, sd, .. } => (
                OutputKind::Regressor,
                OutputModel::Regressor {
                    mean: *mean,
                    sd: *sd,
                    noise_sd: self.noise_sd.unwrap_or(0.0),
                },
            ),
        };
        match self.kind {
            Some(kind) if kind != production_kind => Err(format!(
                "shadow output is a {} but production's is a {}",
                kind.as_str(),
                production_kind.as_str()
            )),
            _ => Ok(model),
        }
    }
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
        if let Some(output) = &doc.output {
            self.output.apply(output);
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
            // Outputs do not fall back field by field: the shadow's are
            // departures from production's answers (see `ResolvedOutput`).
            output: self.output.clone(),
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
        let production_output = production.output.production();
        let shadow_output = shadow.output.shadow(&production_output)?;
        let model = |role: &str,
                     v: &ResolvedVariant,
                     output: OutputModel|
         -> Result<VariantModel, String> {
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
                output,
            })
        };
        Ok(Conditions {
            per_minute: self.per_minute.unwrap_or(BASE_PER_MINUTE),
            daily_swing: self.daily_swing.unwrap_or(0.0),
            peak_hour: self.peak_hour.unwrap_or(BASE_PEAK_HOUR),
            factor: self.factor.unwrap_or(1.0),
            production: model("production", &production, production_output)?,
            shadow: model("shadow", &shadow, shadow_output)?,
        })
    }
}
