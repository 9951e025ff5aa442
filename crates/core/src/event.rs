//! Lambda input → what to run. A scheduled EventBridge envelope is a
//! scheduled run; anything else must be a manual payload, which defaults to a
//! dry run and refuses anything it does not understand, so a typo such as
//! `dryrun` can never cause a live run.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An EventBridge rule's `Scheduled Event` envelope.
    Schedule,
    /// A JSON payload: `aws lambda invoke`, a ScheduleV2 input, a console test.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub trigger: Trigger,
    pub dry_run: bool,
    pub experiments: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the payload must be a JSON object such as {{\"dry_run\": true}}, not {found}")]
    NotAnObject { found: String },
    #[error("unknown field {field:?} in the payload; the fields are dry_run and experiments")]
    UnknownField { field: String },
    #[error("field {field} must be {expected}, not {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("field experiments must name at least one experiment when present")]
    EmptyExperiments,
    #[error(
        "field experiments names {count} experiments; at most {MAX_NAMED_EXPERIMENTS} at once"
    )]
    TooManyExperiments { count: usize },
    #[error("field experiments[{index}]: {name:?} is not a valid inference experiment name (1–120 letters, digits and single hyphens)")]
    InvalidName { index: usize, name: String },
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// More names than this in one payload is a mistake, not a fleet.
pub const MAX_NAMED_EXPERIMENTS: usize = 1000;

/// The fields of an EventBridge scheduled event.
const ENVELOPE_FIELDS: [&str; 9] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
];

pub fn parse_event(event: &Value) -> Result<RunRequest, EventError> {
    let Value::Object(fields) = event else {
        return Err(EventError::NotAnObject {
            found: describe(event),
        });
    };
    let is_scheduled_envelope = fields.get("source").and_then(Value::as_str) == Some("aws.events")
        && fields.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    // An envelope is live by default; anything beyond its own fields is read
    // like a manual payload, so an added "dry_run": true is honoured and a
    // stray key is refused rather than ignored.
    let mut request = RunRequest {
        trigger: if is_scheduled_envelope {
            Trigger::Schedule
        } else {
            Trigger::Manual
        },
        dry_run: !is_scheduled_envelope,
        experiments: None,
    };
    for (key, value) in fields {
        if is_scheduled_envelope && ENVELOPE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "dry_run" => {
                request.dry_run = value.as_bool().ok_or_else(|| EventError::WrongType {
                    field: "dry_run".into(),
                    expected: "true or false",
                    found: describe(value),
                })?
            }
            "experiments" => {
                let Value::Array(items) = value else {
                    return Err(EventError::WrongType {
                        field: "experiments".into(),
                        expected: "a list of experiment names",
                        found: describe(value),
                    });
                };
                if items.is_empty() {
                    return Err(EventError::EmptyExperiments);
                }
                if items.len() > MAX_NAMED_EXPERIMENTS {
                    return Err(EventError::TooManyExperiments { count: items.len() });
                }
                let mut names = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let name = item.as_str().ok_or_else(|| EventError::WrongType {
                        field: format!("experiments[{index}]"),
                        expected: "a string",
                        found: describe(item),
                    })?;
                    if !is_valid_experiment_name(name) {
                        return Err(EventError::InvalidName {
                            index,
                            name: name.to_string(),
                        });
                    }
                    names.push(name.to_string());
                }
                request.experiments = Some(names);
            }
            other => {
                return Err(EventError::UnknownField {
                    field: other.to_string(),
                })
            }
        }
    }
    Ok(request)
}

/// `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}`, as SageMaker defines the name.
pub(crate) fn is_valid_experiment_name(name: &str) -> bool {
    crate::validation::is_valid_aws_name(name, 120)
}
