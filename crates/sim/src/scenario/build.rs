//! From the file as written to the validated scenario, in steps that each
//! check or build one thing. Every step reports into the same `Problems` and
//! carries on with a stand-in value where its input was wrong, so that one
//! load lists every problem in the file, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shadowpilot_core::duration::format as show;
use shadowpilot_core::experiment::{HOLD_TAG, POLICY_TAG};
use shadowpilot_core::schedule::{chrono_duration, Schedule};
use shadowpilot_core::validation::{is_valid_aws_name, Problems};
use shadowpilot_core::MAX_EXPERIMENT_DURATION;

use shadowpilot_core::capture::read::Destination;

use super::doc::{CaptureDoc, ChangeDoc, ExperimentDoc, LayerDoc, ScenarioDoc};
use super::layers::{check_layer, Resolved};
use super::{CaptureSpec, Conditions, ExperimentSpec, Scenario};

/// A Monday, so that weekday change windows start on the first day.
const DEFAULT_START: (i32, u32, u32) = (2026, 3, 2);
/// AWS's own default for an experiment without an EndTime.
const DEFAULT_DURATION: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_UPDATE_TAKES: Duration = Duration::from_secs(60);
const DEFAULT_PUBLISH_DELAY: Duration = Duration::from_secs(120);
/// The longest simulated SageMaker or CloudWatch delay a scenario may ask for.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// "A couple of minutes", AWS says of capture delivery.
const DEFAULT_DELIVERY_DELAY: Duration = Duration::from_secs(180);
/// Where an experiment captures when its scenario does not say.
const DEFAULT_CAPTURE_BUCKET: &str = "shadowpilot-sim-capture";

/// The scenario-wide settings every experiment is placed in.
struct Settings {
    /// `None` when the expression is invalid; the problem is already listed.
    schedule: Option<Schedule>,
    start: DateTime<Utc>,
    update_takes: Duration,
    publish_delay: Duration,
}

/// What an experiment's own fields settle, the same for each of its copies.
struct Window {
    sampling: u8,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    capture: Option<CaptureSettings>,
}

/// The experiment's capture as checked; the default destination depends on
/// each copy's name, so it is settled per copy.
struct CaptureSettings {
    destination: Option<String>,
    inference_ids: bool,
    delivery_delay: Duration,
}

/// Conditions from each moment on, as `ExperimentSpec::segments` holds them.
type Segments = Vec<(DateTime<Utc>, Arc<Conditions>)>;

/// Runs the steps in file order, so that problems are listed in the order a
/// reader meets them; `None` only when nothing usable could be built.
pub(super) fn build(
    source: &str,
    doc: ScenarioDoc,
    problems: &mut Problems<'_>,
) -> Option<Scenario> {
    let settings = check_top_level(&doc, problems);
    let mut taken = Taken::default();
    let mut experiments = Vec::new();
    for (index, experiment) in doc.experiments.iter().enumerate() {
        let path = format!("experiments[{index}]");
        let window = check_experiment(&path, experiment, settings.start, problems);
        check_changes(&path, &experiment.changes, problems);
        let layers = resolve_layers(&doc.defaults, &experiment.layer());
        let segments = segment_changes(
            &path,
            &layers,
            &experiment.changes,
            settings.start,
            problems,
        );
        for spec in expand_copies(experiment, &window, &segments) {
            check_aws_name(problems, &path, "name", &spec.name, 120);
            check_aws_name(problems, &path, "endpoint", &spec.endpoint, 63);
            taken.claim(&path, &spec, problems);
            experiments.push(spec);
        }
    }
    Some(Scenario {
        name: doc.name,
        description: doc.description,
        source: source.to_string(),
        seed: doc.seed,
        start: settings.start,
        schedule: settings.schedule?,
        update_takes: settings.update_takes,
        publish_delay: settings.publish_delay,
        experiments,
    })
}

/// Checks what applies to the whole scenario before any experiment, since
/// every experiment's times are counted from `start`.
fn check_top_level(doc: &ScenarioDoc, problems: &mut Problems<'_>) -> Settings {
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
    let start = doc.start.unwrap_or_else(default_start);
    // Ticks and CloudWatch minutes line up only from a whole minute.
    if start.timestamp() % 60 != 0 {
        problems.add(
            "start",
            format!("{} is not on a whole minute", start.to_rfc3339()),
        );
    }
    let update_takes = check_delay(
        problems,
        "sagemaker.update_takes",
        doc.sagemaker.update_takes,
        DEFAULT_UPDATE_TAKES,
    );
    let publish_delay = check_delay(
        problems,
        "cloudwatch.publish_delay",
        doc.cloudwatch.publish_delay,
        DEFAULT_PUBLISH_DELAY,
    );
    check_layer(problems, "defaults", &doc.defaults);
    if doc.experiments.is_empty() {
        problems.add("experiments", "needs at least one experiment");
    }
    Settings {
        schedule,
        start,
        update_takes,
        publish_delay,
    }
}

fn default_start() -> DateTime<Utc> {
    let (y, m, d) = DEFAULT_START;
    // A fixed valid date: `single` cannot miss, the default is only for types.
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A simulated delay, `default` when not given, checked against `MAX_DELAY`.
fn check_delay(
    problems: &mut Problems<'_>,
    field: &str,
    given: Option<Duration>,
    default: Duration,
) -> Duration {
    let delay = given.unwrap_or(default);
    problems.duration(field, delay, Duration::ZERO, MAX_DELAY);
    delay
}

/// Checks an experiment's own fields, the ones SageMaker itself would
/// refuse, and settles its sampling and time window.
fn check_experiment(
    path: &str,
    experiment: &ExperimentDoc,
    start: DateTime<Utc>,
    problems: &mut Problems<'_>,
) -> Window {
    check_layer(problems, path, &experiment.layer());
    if !(1..=100).contains(&experiment.copies) {
        problems.add(
            format!("{path}.copies"),
            format!("{} is outside 1–100", experiment.copies),
        );
    }
    let sampling = check_sampling(path, experiment.sampling, problems);
    let duration = check_duration(path, experiment.duration, problems);
    check_variants(path, experiment, problems);
    let capture = experiment
        .capture
        .as_ref()
        .map(|capture| check_capture(path, capture, problems));
    let start_time = start + chrono_duration(experiment.start.unwrap_or_default());
    Window {
        sampling,
        start_time,
        end_time: start_time + chrono_duration(duration),
        capture,
    }
}

/// The destination must be what the capture reader can parse and S3 would
/// accept as a bucket, so a typo fails at load rather than as an empty
/// capture later.
fn check_capture(path: &str, capture: &CaptureDoc, problems: &mut Problems<'_>) -> CaptureSettings {
    if let Some(destination) = &capture.destination {
        let field = format!("{path}.capture.destination");
        match Destination::parse(destination) {
            Ok(parsed) if !is_valid_bucket_name(&parsed.bucket) => problems.add(
                field,
                format!(
                    "{destination:?}: bucket {:?} must be 3–63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit",
                    parsed.bucket
                ),
            ),
            Ok(_) => {}
            Err(error) => problems.add(field, error.to_string()),
        }
    }
    let delivery_delay = check_delay(
        problems,
        &format!("{path}.capture.delivery_delay"),
        capture.delivery_delay,
        DEFAULT_DELIVERY_DELAY,
    );
    CaptureSettings {
        destination: capture.destination.clone(),
        inference_ids: capture.inference_ids.unwrap_or(true),
        delivery_delay,
    }
}

/// S3's rules for a general-purpose bucket name, as far as they are about
/// its characters.
fn is_valid_bucket_name(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'.' || *b == b'-')
}

/// The starting SamplingPercentage; 1 stands in for an invalid one so the
/// rest of the experiment can still be checked.
fn check_sampling(path: &str, sampling: u16, problems: &mut Problems<'_>) -> u8 {
    match u8::try_from(sampling) {
        Ok(s @ 1..=100) => s,
        _ => {
            problems.add(
                format!("{path}.sampling"),
                format!("{sampling} is outside 1–100"),
            );
            1
        }
    }
}

/// From StartTime to EndTime, within what AWS accepts.
fn check_duration(path: &str, given: Option<Duration>, problems: &mut Problems<'_>) -> Duration {
    let duration = given.unwrap_or(DEFAULT_DURATION);
    if duration < Duration::from_secs(60) || duration > MAX_EXPERIMENT_DURATION {
        problems.add(
            format!("{path}.duration"),
            format!(
                "{} is outside 1m–30d (AWS allows at most 30 days)",
                show(duration)
            ),
        );
    }
    duration
}

/// Both variant names are valid, and they are two different variants.
fn check_variants(path: &str, experiment: &ExperimentDoc, problems: &mut Problems<'_>) {
    check_aws_name(
        problems,
        path,
        "production_variant",
        &experiment.production_variant,
        63,
    );
    check_aws_name(
        problems,
        path,
        "shadow_variant",
        &experiment.shadow_variant,
        63,
    );
    if experiment.production_variant == experiment.shadow_variant {
        problems.add(
            format!("{path}.shadow_variant"),
            format!(
                "{:?} is also the production variant",
                experiment.shadow_variant
            ),
        );
    }
}

/// A name SageMaker would accept, at most `max` characters long.
fn check_aws_name(problems: &mut Problems<'_>, path: &str, field: &str, name: &str, max: usize) {
    if !is_valid_aws_name(name, max) {
        problems.add(
            format!("{path}.{field}"),
            format!("{name:?} must be 1–{max} letters, digits or inner hyphens"),
        );
    }
}

/// Checks each change on its own, so a problem names the change that has it
/// rather than the merged conditions it ends up in.
fn check_changes(path: &str, changes: &[ChangeDoc], problems: &mut Problems<'_>) {
    for (index, change) in changes.iter().enumerate() {
        let path = format!("{path}.changes[{index}]");
        check_layer(problems, &path, &change.layer());
        if let Some(until) = change.until.filter(|until| *until <= change.at) {
            problems.add(
                format!("{path}.until"),
                format!("{} is not after at {}", show(until), show(change.at)),
            );
        }
    }
}

/// The experiment's settings over the scenario's defaults: what is in force
/// whenever no change is.
fn resolve_layers(defaults: &LayerDoc, experiment: &LayerDoc) -> Resolved {
    let mut layers = Resolved::default();
    layers.apply(defaults);
    layers.apply(experiment);
    layers
}

/// Cuts time at every moment a change starts or ends and resolves the
/// conditions of each stretch, so that the world looks conditions up by time
/// instead of merging layers every minute. A stretch with the conditions of
/// the one before is no new segment.
fn segment_changes(
    path: &str,
    layers: &Resolved,
    changes: &[ChangeDoc],
    start: DateTime<Utc>,
    problems: &mut Problems<'_>,
) -> Segments {
    let mut segments: Segments = Vec::new();
    for moment in change_moments(changes) {
        match in_force_at(layers, changes, moment).conditions() {
            Ok(conditions) => {
                if segments.last().is_none_or(|(_, last)| **last != conditions) {
                    segments.push((start + chrono_duration(moment), Arc::new(conditions)));
                }
            }
            // Only merged values can be wrong here: each layer passed alone.
            Err(message) => problems.add(path, format!("{message} from {} on", show(moment))),
        }
    }
    segments
}

/// The scenario start and every moment a change starts or ends, in order.
fn change_moments(changes: &[ChangeDoc]) -> BTreeSet<Duration> {
    let mut moments = BTreeSet::from([Duration::ZERO]);
    for change in changes {
        moments.insert(change.at);
        moments.extend(change.until);
    }
    moments
}

/// The layers with every change in force at `moment` applied, in file order.
fn in_force_at(layers: &Resolved, changes: &[ChangeDoc], moment: Duration) -> Resolved {
    let mut resolved = layers.clone();
    for change in changes {
        if change.at <= moment && change.until.is_none_or(|until| moment < until) {
            resolved.apply(&change.layer());
        }
    }
    resolved
}

/// One spec per copy: the same settings and segments under its own name and
/// endpoint, so that copies get their own random draws in the world.
fn expand_copies(
    experiment: &ExperimentDoc,
    window: &Window,
    segments: &Segments,
) -> Vec<ExperimentSpec> {
    // An invalid count is already listed; clamping keeps the rest checkable.
    let copies = experiment.copies.clamp(1, 100);
    let tags = tags(experiment);
    (1..=copies)
        .map(|copy| {
            let (name, endpoint) = copy_names(experiment, copies, copy);
            let capture = window.capture.as_ref().map(|capture| CaptureSpec {
                destination: capture
                    .destination
                    .clone()
                    .unwrap_or_else(|| format!("s3://{DEFAULT_CAPTURE_BUCKET}/{name}")),
                inference_ids: capture.inference_ids,
                delivery_delay: capture.delivery_delay,
            });
            ExperimentSpec {
                name,
                endpoint,
                production_variant: experiment.production_variant.clone(),
                shadow_variant: experiment.shadow_variant.clone(),
                policy: experiment.policy.clone(),
                hold: experiment.hold,
                tags: tags.clone(),
                start_time: window.start_time,
                end_time: window.end_time,
                sampling: window.sampling,
                capture,
                segments: segments.clone(),
            }
        })
        .collect()
}

/// Name and endpoint of copy `copy` of `copies`: a single copy keeps the
/// names as written, several are numbered `-01`, `-02`, ...
fn copy_names(experiment: &ExperimentDoc, copies: u16, copy: u16) -> (String, String) {
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
    (name, endpoint)
}

/// The experiment's tags with the ones the controller reads: its policy, and
/// the hold when set.
fn tags(experiment: &ExperimentDoc) -> BTreeMap<String, String> {
    let mut tags = experiment.tags.clone();
    tags.insert(POLICY_TAG.to_string(), experiment.policy.clone());
    if experiment.hold {
        tags.insert(HOLD_TAG.to_string(), "true".to_string());
    }
    tags
}

/// Names and endpoints already used, each with the experiment that took it
/// first: SageMaker keys experiments by name, and two experiments on one
/// endpoint would share its traffic.
#[derive(Default)]
struct Taken {
    names: BTreeMap<String, String>,
    endpoints: BTreeMap<String, String>,
}

impl Taken {
    fn claim(&mut self, path: &str, spec: &ExperimentSpec, problems: &mut Problems<'_>) {
        claim(&mut self.names, path, "name", &spec.name, problems);
        claim(
            &mut self.endpoints,
            path,
            "endpoint",
            &spec.endpoint,
            problems,
        );
    }
}

/// Takes `value` for the experiment at `path`, or names who has it already.
fn claim(
    taken: &mut BTreeMap<String, String>,
    path: &str,
    field: &str,
    value: &str,
    problems: &mut Problems<'_>,
) {
    if let Some(first) = taken.insert(value.to_string(), path.to_string()) {
        problems.add(
            format!("{path}.{field}"),
            format!("{value:?} is already the {field} of {first}"),
        );
    }
}
