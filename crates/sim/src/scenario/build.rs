//! From the file as written to the validated scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shadowpilot_core::policy::duration::format as show;
use shadowpilot_core::schedule::{chrono_duration, Schedule};
use shadowpilot_core::validation::{is_valid_aws_name, Problems};
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

use super::doc::ScenarioDoc;
use super::layers::{check_layer, Resolved};
use super::{Conditions, ExperimentSpec, Scenario};

const DEFAULT_START: (i32, u32, u32) = (2026, 3, 2);

pub(super) fn build(
    source: &str,
    doc: ScenarioDoc,
    problems: &mut Problems<'_>,
) -> Option<Scenario> {
    if doc.name.trim().is_empty() {
        problems.add("name", "must not be empty");
    }
    let schedule = match Schedule::parse(&doc.schedule) {
        Ok(schedule) => Some(schedule),
        Err(error) => {
            problems.add("schedule", error.to_string());
            None
        }
    };
    let start = doc.start.unwrap_or_else(|| {
        let (y, m, d) = DEFAULT_START;
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    });
    if start.timestamp() % 60 != 0 {
        problems.add(
            "start",
            format!("{} is not on a whole minute", start.to_rfc3339()),
        );
    }
    let update_takes = doc
        .sagemaker
        .update_takes
        .unwrap_or(Duration::from_secs(60));
    problems.duration(
        "sagemaker.update_takes",
        update_takes,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    let publish_delay = doc
        .cloudwatch
        .publish_delay
        .unwrap_or(Duration::from_secs(120));
    problems.duration(
        "cloudwatch.publish_delay",
        publish_delay,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    check_layer(problems, "defaults", &doc.defaults);
    if doc.experiments.is_empty() {
        problems.add("experiments", "needs at least one experiment");
    }

    let mut experiments = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, String> = BTreeMap::new();
    for (index, experiment) in doc.experiments.iter().enumerate() {
        let path = format!("experiments[{index}]");
        check_layer(problems, &path, &experiment.layer());
        if !(1..=100).contains(&experiment.copies) {
            problems.add(
                format!("{path}.copies"),
                format!("{} is outside 1–100", experiment.copies),
            );
        }
        let sampling = match u8::try_from(experiment.sampling) {
            Ok(s @ 1..=100) => s,
            _ => {
                problems.add(
                    format!("{path}.sampling"),
                    format!("{} is outside 1–100", experiment.sampling),
                );
                1
            }
        };
        let duration = experiment
            .duration
            .unwrap_or(Duration::from_secs(7 * 86_400));
        if duration < Duration::from_secs(60) || duration > MAX_EXPERIMENT_DURATION {
            problems.add(
                format!("{path}.duration"),
                format!(
                    "{} is outside 1m–30d (AWS allows at most 30 days)",
                    show(duration)
                ),
            );
        }
        for (kind, variant) in [
            ("production_variant", &experiment.production_variant),
            ("shadow_variant", &experiment.shadow_variant),
        ] {
            if !is_valid_aws_name(variant, 63) {
                problems.add(
                    format!("{path}.{kind}"),
                    format!("{variant:?} must be 1–63 letters, digits or inner hyphens"),
                );
            }
        }
        if experiment.production_variant == experiment.shadow_variant {
            problems.add(
                format!("{path}.shadow_variant"),
                format!(
                    "{:?} is also the production variant",
                    experiment.shadow_variant
                ),
            );
        }
        let start_time = start + chrono_duration(experiment.start.unwrap_or_default());
        let end_time = start_time + chrono_duration(duration);

        let mut layers = Resolved::default();
        layers.apply(&doc.defaults);
        layers.apply(&experiment.layer());
        let mut moments: BTreeSet<Duration> = BTreeSet::from([Duration::ZERO]);
        for (c, change) in experiment.changes.iter().enumerate() {
            let cpath = format!("{path}.changes[{c}]");
            check_layer(problems, &cpath, &change.layer());
            if let Some(until) = change.until {
                if until <= change.at {
                    problems.add(
                        format!("{cpath}.until"),
                        format!("{} is not after at {}", show(until), show(change.at)),
                    );
                }
                moments.insert(until);
            }
            moments.insert(change.at);
        }
        let mut segments = Vec::new();
        for moment in moments {
            let mut resolved = layers.clone();
            for change in &experiment.changes {
                if change.at <= moment && change.until.is_none_or(|until| moment < until) {
                    resolved.apply(&change.layer());
                }
            }
            match resolved.conditions() {
                Ok(conditions) => {
                    let from = start + chrono_duration(moment);
                    if segments
                        .last()
                        .is_none_or(|(_, last): &(DateTime<Utc>, Arc<Conditions>)| {
                            **last != conditions
                        })
                    {
                        segments.push((from, Arc::new(conditions)));
                    }
                }
                Err(message) => {
                    problems.add(path.clone(), format!("{message} from {} on", show(moment)))
                }
            }
        }

        let copies = experiment.copies.clamp(1, 100);
        for copy in 1..=copies {
            let name = if copies == 1 {
                experiment.name.clone()
            } else {
                format!("{}-{copy:02}", experiment.name)
            };
            let endpoint = match &experiment.endpoint {
                Some(endpoint) if copies == 1 => endpoint.clone(),
                Some(endpoint) => format!("{endpoint}-{copy:02}"),
                None => format!("{name}-endpoint"),
            };
            if !is_valid_aws_name(&name, 120) {
                problems.add(
                    format!("{path}.name"),
                    format!("{name:?} must be 1–120 letters, digits or inner hyphens"),
                );
            }
            if !is_valid_aws_name(&endpoint, 63) {
                problems.add(
                    format!("{path}.endpoint"),
                    format!("{endpoint:?} must be 1–63 letters, digits or inner hyphens"),
                );
            }
            if let Some(first) = names.insert(name.clone(), path.clone()) {
                problems.add(
                    format!("{path}.name"),
                    format!("{name:?} is already the name of {first}"),
                );
            }
            if let Some(first) = endpoints.insert(endpoint.clone(), path.clone()) {
                problems.add(
                    format!("{path}.endpoint"),
                    format!("{endpoint:?} is already the endpoint of {first}"),
                );
            }
            let mut tags = experiment.tags.clone();
            tags.insert(
                shadowpilot_core::experiment::POLICY_TAG.to_string(),
                experiment.policy.clone(),
            );
            if experiment.hold {
                tags.insert(
                    shadowpilot_core::experiment::HOLD_TAG.to_string(),
                    "true".to_string(),
                );
            }
            experiments.push(ExperimentSpec {
                name,
                endpoint,
                production_variant: experiment.production_variant.clone(),
                shadow_variant: experiment.shadow_variant.clone(),
                policy: experiment.policy.clone(),
                hold: experiment.hold,
                tags,
                start_time,
                end_time,
                sampling,
                segments: segments.clone(),
            });
        }
    }
    Some(Scenario {
        name: doc.name,
        description: doc.description,
        source: source.to_string(),
        seed: doc.seed,
        start,
        schedule: schedule?,
        update_takes,
        publish_delay,
        experiments,
    })
}
