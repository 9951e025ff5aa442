use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::model::{
    Check, CheckDoc, CheckMetric, Deprecation, Limit, MatchDoc, Outputs, Policy, PolicyDoc, Ramp,
    Selector, Unit, DEFAULT_ALPHA,
};
use super::select::PolicySet;
use crate::capture::compare::{Comparison, Extract, Match};
use crate::capture::pair::PairingOptions;
use crate::capture::read::ReadLimits;
use crate::schedule::CronWindow;
use crate::validation::{self, Problem, Problems};
use crate::MAX_EXPERIMENT_DURATION;

/// The policies shipped in `policies/`, built into the binary.
const BUILTIN: [(&str, &str); 5] = [
    (
        "policies/default.yaml",
        include_str!("../../../../policies/default.yaml"),
    ),
    (
        "policies/conservative.yaml",
        include_str!("../../../../policies/conservative.yaml"),
    ),
    (
        "policies/fast.yaml",
        include_str!("../../../../policies/fast.yaml"),
    ),
    (
        "policies/promote.yaml",
        include_str!("../../../../policies/promote.yaml"),
    ),
    (
        "policies/outputs.yaml",
        include_str!("../../../../policies/outputs.yaml"),
    ),
];

/// A policy is a page of YAML; this is far more than any needs.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// One thing wrong with a policy, located by file and field.
pub type PolicyProblem = Problem;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policies from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", validation::list("policy", problems))]
    Invalid { problems: Vec<PolicyProblem> },
}

impl PolicyError {
    fn from_problems(problems: Vec<PolicyProblem>) -> Self {
        Self::Invalid { problems }
    }
}

pub fn builtin_policies() -> Result<PolicySet, PolicyError> {
    parse_all(
        BUILTIN
            .iter()
            .map(|(source, text)| (source.to_string(), text.to_string())),
    )
}

/// Loads one policy file, or every `.yaml`/`.yml` file of a directory.
pub fn load_path(path: &Path) -> Result<PolicySet, PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut texts = Vec::new();
    for file in files {
        let text =
            validation::read_text(&file, MAX_POLICY_BYTES).map_err(|source| PolicyError::Read {
                path: file.clone(),
                source,
            })?;
        texts.push((file.display().to_string(), text));
    }
    if texts.is_empty() {
        return Err(PolicyError::from_problems(vec![PolicyProblem {
            source: path.display().to_string(),
            field: String::new(),
            message: "no .yaml or .yml policy files found".into(),
        }]));
    }
    parse_all(texts)
}

fn parse_all(texts: impl IntoIterator<Item = (String, String)>) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (source, text) in texts {
        match parse_policy(&source, &text) {
            Ok(policy) => loaded.push(policy),
            Err(PolicyError::Invalid { problems: found }) => problems.extend(found),
            Err(other) => return Err(other),
        }
    }
    match PolicySet::new(loaded) {
        Ok(set) if problems.is_empty() => Ok(set),
        Ok(_) => Err(PolicyError::from_problems(problems)),
        Err(duplicates) => {
            problems.extend(duplicates);
            Err(PolicyError::from_problems(problems))
        }
    }
}

/// Parses, validates and compiles one policy document; every problem is
/// reported, not just the first.
pub fn parse_policy(source: &str, text: &str) -> Result<Policy, PolicyError> {
    let doc: PolicyDoc = validation::parse_yaml(source, text, MAX_POLICY_BYTES)
        .map_err(|problem| PolicyError::from_problems(vec![problem]))?;
    let mut problems = Problems::new(source);
    let policy = compile(source, doc, &mut problems);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(PolicyError::from_problems(problems.into_vec()))
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Checks every field and builds the policy the judge and planner use. The
/// result is only returned to callers when `problems` stayed empty.
fn compile(source: &str, doc: PolicyDoc, problems: &mut Problems<'_>) -> Policy {
    check_name(&doc.name, problems);
    let select = Selector {
        experiments: compile_globs("select.experiments", &doc.select.experiments, problems),
        endpoints: compile_globs("select.endpoints", &doc.select.endpoints, problems),
    };
    check_window_and_evidence(&doc, problems);
    let checks = doc
        .checks
        .iter()
        .enumerate()
        .filter_map(|(index, check)| compile_check(&format!("checks[{index}]"), check, problems))
        .collect();
    let ramp = compile_ramp(&doc, problems);
    check_extend(&doc, problems);
    check_stop(&doc, ramp.ceiling, problems);
    let alpha = doc.alpha.unwrap_or(DEFAULT_ALPHA);
    if !(alpha > 0.0 && alpha <= 0.5) {
        problems.add("alpha", format!("{alpha} is outside (0, 0.5]"));
    }
    let deprecations = deprecations(source, &doc);
    let outputs = compile_outputs(&doc, problems);
    let mut change_windows = Vec::new();
    for (index, window) in doc.change_windows.iter().enumerate() {
        let field = format!("change_windows[{index}]");
        match CronWindow::parse(&window.cron, window.duration) {
            Ok(parsed) => change_windows.push(parsed),
            Err(error) => problems.add(format!("{field}.cron"), error.to_string()),
        }
        problems.duration(
            &format!("{field}.duration"),
            window.duration,
            MINUTE,
            Duration::from_secs(7 * 86_400),
        );
    }
    Policy {
        name: doc.name,
        description: doc.description,
        source: source.to_string(),
        select,
        window: doc.window,
        alpha,
        checks,
        ramp,
        extend: doc.extend,
        stop: doc.stop,
        change_windows,
        deprecations,
        outputs,
    }
}

fn compile_outputs(doc: &PolicyDoc, problems: &mut Problems<'_>) -> Outputs {
    let written = &doc.outputs;
    let defaults = Outputs::default();
    let extract = match (&written.compare.pointer, written.compare.csv_column) {
        (Some(_), Some(_)) => {
            problems.add(
                "outputs.compare",
                "set at most one of pointer and csv_column",
            );
            Extract::Whole
        }
        (Some(pointer), None) => {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                problems.add(
                    "outputs.compare.pointer",
                    format!("{pointer:?} is not a JSON Pointer: it must start with /"),
                );
            }
            Extract::Pointer(pointer.clone())
        }
        (None, Some(column)) => Extract::CsvColumn(column),
        (None, None) => Extract::Whole,
    };
    let matching = match written.compare.matching {
        None | Some(MatchDoc::Exact) => Match::Exact,
        Some(MatchDoc::Top1) => Match::Top1,
        Some(MatchDoc::Absolute(tolerance)) | Some(MatchDoc::Relative(tolerance))
            if !(tolerance.is_finite() && tolerance >= 0.0) =>
        {
            problems.add(
                "outputs.compare.match",
                format!("{tolerance} is not a usable tolerance"),
            );
            Match::Exact
        }
        Some(MatchDoc::Absolute(tolerance)) => Match::Absolute(tolerance),
        Some(MatchDoc::Relative(tolerance)) => Match::Relative(tolerance),
    };
    let min_pairing_rate = match written.min_pairing_rate {
        None => defaults.min_pairing_rate,
        Some(percent) if percent.is_finite() && percent > 0.0 && percent <= 100.0 => {
            percent / 100.0
        }
        Some(percent) => {
            problems.add(
                "outputs.min_pairing_rate",
                format!("{percent} is not a percentage in (0, 100]"),
            );
            defaults.min_pairing_rate
        }
    };
    let mut count = |field: &str, value: Option<u64>, default: u64| match value {
        None => default,
        Some(0) => {
            problems.add(format!("outputs.{field}"), "0 would read nothing");
            default
        }
        Some(value) => value,
    };
    let limits = ReadLimits {
        max_records: count(
            "max_records",
            written.max_records,
            defaults.limits.max_records,
        ),
        max_bytes: count("max_bytes", written.max_bytes, defaults.limits.max_bytes),
    };
    if let Some(within) = written.pair_by_input_within {
        problems.duration(
            "outputs.pair_by_input_within",
            within,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
    }
    let has_mean_difference = doc
        .checks
        .iter()
        .any(|check| check.metric == CheckMetric::OutputMeanAbsDiff);
    if let Some(clip) = written.clip {
        if !(clip.is_finite() && clip > 0.0) {
            problems.add("outputs.clip", format!("{clip} is not a usable clip"));
        } else if !has_mean_difference {
            problems.add(
                "outputs.clip",
                "only output_mean_abs_diff is clipped, and the policy has no such check",
            );
        } else if let Some(max) = doc
            .checks
            .iter()
            .filter(|check| check.metric == CheckMetric::OutputMeanAbsDiff)
            .find_map(|check| check.max)
            .filter(|max| clip <= *max)
        {
            problems.add(
                "outputs.clip",
                format!("{clip} must be above output_mean_abs_diff's max {max}"),
            );
        }
    }
    Outputs {
        comparison: Comparison { extract, matching },
        pairing: PairingOptions {
            by_input_within: written
                .pair_by_input_within
                .map(|within| chrono::Duration::seconds(within.as_secs() as i64)),
        },
        min_pairing_rate,
        limits,
        clip: written.clip,
    }
}

/// Fields that loaded policies may still set, each with what replaced it.
fn deprecations(source: &str, doc: &PolicyDoc) -> Vec<Deprecation> {
    let evidence = doc.evidence.as_ref();
    let set = [
        (
            doc.window.lookback.is_some(),
            "window.lookback",
            "evidence runs from the start of the step and of the experiment, never over a sliding window",
        ),
        (
            evidence.is_some_and(|e| e.min_shadow_invocations.is_some()),
            "evidence.min_shadow_invocations",
            "each check has its own minimum (1000 shadow requests for a rate, 10 periods for latency)",
        ),
        (
            evidence.is_some_and(|e| e.min_production_invocations.is_some()),
            "evidence.min_production_invocations",
            "production's counts enter each interval's variance instead",
        ),
    ];
    set.into_iter()
        .filter(|(present, _, _)| *present)
        .map(|(_, field, why)| Deprecation {
            source: source.to_string(),
            field,
            why,
        })
        .collect()
}

fn check_name(name: &str, problems: &mut Problems<'_>) {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        problems.add(
            "name",
            format!("{name:?} must be 1–64 letters, digits, - or _"),
        );
    }
}

/// Each glob is parsed once; the set is what selection matches against.
fn compile_globs(field: &str, globs: &[String], problems: &mut Problems<'_>) -> Option<GlobSet> {
    if globs.is_empty() {
        return None;
    }
    let mut builder = GlobSetBuilder::new();
    let mut valid = true;
    for (index, glob) in globs.iter().enumerate() {
        match Glob::new(glob) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(error) => {
                valid = false;
                problems.add(
                    format!("{field}[{index}]"),
                    format!("{glob:?} is not a valid glob: {error}"),
                );
            }
        }
    }
    if !valid {
        return None;
    }
    match builder.build() {
        Ok(set) => Some(set),
        Err(error) => {
            problems.add(field, format!("the globs cannot be combined: {error}"));
            None
        }
    }
}

fn check_window_and_evidence(doc: &PolicyDoc, problems: &mut Problems<'_>) {
    problems.duration(
        "window.publish_delay",
        doc.window.publish_delay,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
}

/// Exactly one limit, usable for the metric's unit; `None` when it is not.
fn compile_check(field: &str, check: &CheckDoc, problems: &mut Problems<'_>) -> Option<Check> {
    let limits = [
        ("max", check.max.map(Limit::Absolute)),
        (
            "max_ratio_to_production",
            check.max_ratio_to_production.map(Limit::RatioToProduction),
        ),
        (
            "max_above_production",
            check.max_above_production.map(Limit::AboveProduction),
        ),
        ("min", check.min.map(Limit::Min)),
    ];
    let set: Vec<(&str, Limit)> = limits
        .iter()
        .filter_map(|(name, limit)| limit.map(|limit| (*name, limit)))
        .collect();
    let allowed = match check.metric {
        CheckMetric::OutputAgreement => "min",
        CheckMetric::OutputMeanAbsDiff => "max",
        _ => "max, max_ratio_to_production, max_above_production",
    };
    let [(name, limit)] = set.as_slice() else {
        problems.add(
            field,
            format!(
                "set exactly one of {allowed} (found {})",
                if set.is_empty() {
                    "none".to_string()
                } else {
                    set.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                }
            ),
        );
        return None;
    };
    if !allowed.split(", ").any(|allowed| allowed == *name) {
        problems.add(
            format!("{field}.{name}"),
            format!("{} takes {allowed}, not {name}", check.metric.id()),
        );
        return None;
    }
    let percent = check.metric.unit() == Unit::Percent;
    let (value, usable) = match *limit {
        // 100 % would need every pair to agree, which no finite evidence
        // can show; 0 % is no check.
        Limit::Min(min) => (min, min.is_finite() && min > 0.0 && min < 100.0),
        Limit::Absolute(max) if check.metric == CheckMetric::OutputMeanAbsDiff => {
            (max, max.is_finite() && max > 0.0)
        }
        Limit::Absolute(max) => (
            max,
            max.is_finite() && max >= 0.0 && (!percent || max <= 100.0),
        ),
        Limit::RatioToProduction(ratio) => (ratio, ratio.is_finite() && ratio > 0.0),
        Limit::AboveProduction(above) => (above, above.is_finite() && above >= 0.0),
    };
    if let (Limit::RatioToProduction(_), true) = (limit, percent) {
        problems.add(
            format!("{field}.max_ratio_to_production"),
            format!(
                "a ratio to production's {} fails on one error whenever production has none; use max_above_production",
                check.metric.label()
            ),
        );
        return None;
    }
    if !usable {
        problems.add(
            format!("{field}.{name}"),
            format!("{value} is not a usable limit for {}", check.metric.label()),
        );
        return None;
    }
    Some(Check {
        metric: check.metric,
        limit: *limit,
    })
}

/// The ramp with its ceiling and floor worked out once; its stand-in
/// values only matter when `problems` is not empty.
fn compile_ramp(doc: &PolicyDoc, problems: &mut Problems<'_>) -> Ramp {
    let ramp = &doc.ramp;
    if ramp.steps.is_empty() {
        problems.add("ramp.steps", "needs at least one sampling percentage");
    }
    for (index, step) in ramp.steps.iter().enumerate() {
        problems.percentage(&format!("ramp.steps[{index}]"), *step);
        if index > 0 && *step <= ramp.steps[index - 1] {
            problems.add(
                format!("ramp.steps[{index}]"),
                format!("{step} is not above {}", ramp.steps[index - 1]),
            );
        }
    }
    if let Some(max) = ramp.max {
        problems.percentage("ramp.max", max);
    }
    problems.percentage("ramp.floor", ramp.floor);
    let ceiling = ramp.ceiling().unwrap_or(100);
    if ramp.floor > ceiling {
        problems.add(
            "ramp.floor",
            format!("{} is above the ceiling {ceiling}", ramp.floor),
        );
    }
    problems.duration(
        "ramp.bake_time",
        ramp.bake_time,
        Duration::ZERO,
        MAX_EXPERIMENT_DURATION,
    );
    if let Some(rearm_after) = ramp.rearm_after {
        problems.duration(
            "ramp.rearm_after",
            rearm_after,
            MINUTE,
            MAX_EXPERIMENT_DURATION,
        );
    }
    Ramp {
        steps: ramp.steps.clone(),
        ceiling,
        floor: ramp.floor,
        bake_time: ramp.bake_time,
        on_fail: ramp.on_fail,
        evidence_ramps: ramp.evidence_ramps,
        rearm_after: ramp.rearm_after,
    }
}

fn check_extend(doc: &PolicyDoc, problems: &mut Problems<'_>) {
    let extend = &doc.extend;
    problems.duration(
        "extend.margin",
        extend.margin,
        Duration::ZERO,
        MAX_EXPERIMENT_DURATION,
    );
    problems.duration("extend.by", extend.by, MINUTE, MAX_EXPERIMENT_DURATION);
    // An extension is planned when EndTime falls within the margin of the
    // next chance to write; one that does not clear the margin would be
    // planned again at once, every tick.
    if extend.enabled && extend.by <= extend.margin {
        problems.add(
            "extend.by",
            format!(
                "{} does not clear extend.margin {}: each extension would be due again at the next tick",
                crate::duration::format(extend.by),
                crate::duration::format(extend.margin)
            ),
        );
    }
    problems.duration(
        "extend.max_duration",
        extend.max_duration,
        MINUTE,
        MAX_EXPERIMENT_DURATION,
    );
}

/// Promotion needs a ramp that reaches 100 %: the shadow must have been
/// judged taking all of production's traffic before it replaces it.
fn check_stop(doc: &PolicyDoc, ceiling: u8, problems: &mut Problems<'_>) {
    if let Some(promote) = &doc.stop.promote {
        if ceiling < 100 {
            let why = match doc.ramp.max {
                Some(max) if max < 100 => format!("ramp.max is {max}"),
                _ => format!("ramp.steps end at {ceiling}"),
            };
            problems.add(
                "stop.promote",
                format!("promotion needs a ramp that reaches 100 %, and {why}"),
            );
        }
        if !doc.extend.enabled && promote.at_cap == super::model::AtCap::Report {
            problems.add(
                "stop.promote",
                "a passing experiment is extended until it is promoted, and extend.enabled is false: enable it, or set at_cap: promote",
            );
        }
        problems.duration(
            "stop.promote.after_passing",
            promote.after_passing,
            Duration::ZERO,
            MAX_EXPERIMENT_DURATION,
        );
    }
    if let Some(on_failure) = &doc.stop.on_failure {
        problems.duration(
            "stop.on_failure.after",
            on_failure.after,
            Duration::ZERO,
            MAX_EXPERIMENT_DURATION,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "name: t\nramp:\n  steps: [5, 10]\n  bake_time: 1h\n";

    #[test]
    fn shipped_policies_load() {
        let set = builtin_policies().unwrap();
        let names: Vec<_> = set
            .policies()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(
            names,
            ["default", "conservative", "fast", "promote", "outputs"]
        );
    }

    #[test]
    fn invalid_policies_name_file_field_and_value() {
        let cases = [
            ("name: t\nramp:\n  steps: [5, 10, 75, 60]\n  bake_time: 1h\n", "p.yaml: ramp.steps[3]: 60 is not above 75"),
            ("name: t\nramp:\n  steps: [0, 10]\n  bake_time: 1h\n", "ramp.steps[0]: 0 is outside 1–100 %"),
            ("name: t\nramp:\n  steps: [5, 101]\n  bake_time: 1h\n", "ramp.steps[1]: 101 is outside 1–100 %"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 31d\n", "ramp.bake_time: 31d is longer than 30d"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nextend:\n  enabled: true\n  margin: 1h\n  by: 1d\n  max_duration: 45d\n", "extend.max_duration: 45d is longer than 30d"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\n  bake: 2h\n", "unknown field"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: soon\n", "not a duration"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchange_windows:\n  - cron: \"cron(0 9 * * MON *)\"\n    duration: 8h\n", "change_windows[0].cron"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchecks:\n  - metric: latency_p99\n", "checks[0]: set exactly one of"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchecks:\n  - metric: latency_p99\n    max: 800\n    max_ratio_to_production: 1.2\n", "found max, max_ratio_to_production"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchecks:\n  - metric: error_rate_5xx\n    max: 150\n", "checks[0].max: 150 is not a usable limit"),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchecks:\n  - metric: latency_p42\n    max: 1\n", "unknown variant"),
            ("name: t\nramp:\n  steps: [5, 10]\n  bake_time: 1h\n  floor: 20\n", "ramp.floor: 20 is above the ceiling 10"),
            ("name: t\nalpha: 0.7\nramp:\n  steps: [5]\n", "alpha: 0.7 is outside (0, 0.5]"),
            ("name: t\nramp:\n  steps: [5]\nextend:\n  margin: 6h\n  by: 1h\n", "extend.by: 1h does not clear extend.margin 6h"),
            ("name: t\nramp:\n  steps: [5]\n  rearm_after: 10s\n", "ramp.rearm_after: 10s is shorter than 1m"),
            ("name: t\nramp:\n  steps: [5, 50, 100]\n  max: 50\nstop:\n  promote:\n    after_passing: 6h\n    production: retain\n", "stop.promote: promotion needs a ramp that reaches 100 %, and ramp.max is 50"),
            ("name: t\nramp:\n  steps: [5, 50]\nstop:\n  promote:\n    after_passing: 6h\n    production: retain\n", "stop.promote: promotion needs a ramp that reaches 100 %, and ramp.steps end at 50"),
            ("name: t\nramp:\n  steps: [5, 100]\nstop:\n  promote:\n    after_passing: 6h\n", "missing field `production`"),
            ("name: t\nramp:\n  steps: [5, 100]\nstop:\n  promote:\n    after_passing: 6h\n    production: keep\n", "unknown variant `keep`"),
            ("name: t\nramp:\n  steps: [5, 100]\nstop:\n  on_failure:\n    after: 31d\n", "stop.on_failure.after: 31d is longer than 30d"),
            ("name: t\nramp:\n  steps: [5, 100]\nextend:\n  enabled: false\nstop:\n  promote:\n    after_passing: 1h\n    production: retain\n", "stop.promote: a passing experiment is extended until it is promoted, and extend.enabled is false"),
            ("name: \"bad name\"\nramp:\n  steps: [5]\n  bake_time: 1h\n", "name: \"bad name\""),
            ("name: t\nramp:\n  steps: [5]\n  bake_time: 1h\nchecks:\n  - metric: error_rate_5xx\n    max_ratio_to_production: 2\n", "checks[0].max_ratio_to_production: a ratio to production's 5xx rate"),
        ];
        for (text, expected) in cases {
            let error = parse_policy("p.yaml", text).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in:\n{error}"
            );
        }
        assert!(parse_policy("p.yaml", VALID).is_ok());
    }

    #[test]
    fn oversized_policies_are_refused_before_parsing() {
        let text = format!("{VALID}description: \"{}\"\n", "x".repeat(MAX_POLICY_BYTES));
        let error = parse_policy("big.yaml", &text).unwrap_err().to_string();
        assert!(error.contains("big.yaml: "), "{error}");
        assert!(
            error.contains(&format!("is more than the {MAX_POLICY_BYTES} read")),
            "{error}"
        );

        let dir = std::env::temp_dir().join(format!("shadowpilot-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big.yaml"), &text).unwrap();
        let error = load_path(&dir).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        let PolicyError::Read { source, .. } = error else {
            panic!("expected a read error, got {error}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn the_end_of_the_test_is_off_unless_set() {
        use crate::policy::{AtCap, ProductionAction, Promote, Stop, StopOnFailure};
        let policy = parse_policy("p.yaml", VALID).unwrap();
        assert_eq!(policy.stop, Stop::default());
        let text = "name: t\nramp:\n  steps: [5, 100]\nstop:\n  promote:\n    after_passing: 6h\n    production: remove\n  on_failure:\n    after: 1d\n";
        let policy = parse_policy("p.yaml", text).unwrap();
        assert_eq!(
            policy.stop.promote,
            Some(Promote {
                after_passing: Duration::from_secs(6 * 3600),
                production: ProductionAction::Remove,
                at_cap: AtCap::Report,
            })
        );
        assert_eq!(
            policy.stop.on_failure,
            Some(StopOnFailure {
                after: Duration::from_secs(86_400)
            })
        );
    }

    #[test]
    fn a_section_may_set_only_some_fields() {
        let text =
            "name: t\nramp:\n  steps: [5]\nwindow:\n  publish_delay: 3m\nextend:\n  by: 2d\n";
        let policy = parse_policy("p.yaml", text).unwrap();
        assert_eq!(policy.window.publish_delay, Duration::from_secs(180));
        assert_eq!(policy.ramp.bake_time, Duration::from_secs(15 * 60));
        assert_eq!(policy.alpha, DEFAULT_ALPHA);
        assert!(!policy.ramp.evidence_ramps);
        assert_eq!(policy.ramp.rearm_after, None);
        assert!(policy.deprecations.is_empty());
        assert!(policy.extend.enabled);
        assert_eq!(policy.extend.by, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn fields_that_lost_their_meaning_load_with_a_warning_naming_file_and_field() {
        let text = "name: t\nramp:\n  steps: [5]\nwindow:\n  lookback: 3h\nevidence:\n  min_shadow_invocations: 500\n  min_production_invocations: 50\n";
        let policy = parse_policy("old.yaml", text).unwrap();
        let warnings: Vec<String> = policy
            .deprecations
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("old.yaml: window.lookback is deprecated and ignored: "));
        assert!(warnings[1].starts_with("old.yaml: evidence.min_shadow_invocations is deprecated"));
        assert!(
            warnings[2].starts_with("old.yaml: evidence.min_production_invocations is deprecated")
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let text = "name: t\nramp:\n  steps: [50, 10]\n  bake_time: 1h\n  floor: 0\n";
        let PolicyError::Invalid { problems } = parse_policy("p.yaml", text).unwrap_err() else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let error = parse_all([
            ("a.yaml".to_string(), VALID.to_string()),
            ("b.yaml".to_string(), VALID.to_string()),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("b.yaml: name: \"t\" is already the name of the policy in a.yaml"),
            "{error}"
        );
    }
}
