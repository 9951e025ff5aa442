//! Problems found in a file people write (policies, scenarios), each located
//! by file and field, and all of them reported at once.

use std::fmt;
use std::time::Duration;

use crate::duration::format as show;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    /// A path such as `ramp.steps[3]`; empty when the file as a whole is wrong.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.message)
        }
    }
}

/// `N <kind> problem(s):` and one indented line per problem.
pub fn list(kind: &str, problems: &[Problem]) -> String {
    let mut text = format!("{} {kind} problem(s):", problems.len());
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    text
}

/// Collects the problems of one file.
pub struct Problems<'a> {
    source: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(source: &'a str) -> Self {
        Self {
            source,
            found: Vec::new(),
        }
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.found.push(Problem {
            source: self.source.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.found
    }

    pub fn duration(&mut self, field: &str, value: Duration, min: Duration, max: Duration) {
        if value < min {
            self.add(
                field,
                format!("{} is shorter than {}", show(value), show(min)),
            );
        } else if value > max {
            self.add(
                field,
                format!("{} is longer than {}", show(value), show(max)),
            );
        }
    }

    pub fn percentage(&mut self, field: &str, value: u8) {
        if !(1..=100).contains(&value) {
            self.add(field, format!("{value} is outside 1–100 %"));
        }
    }

    pub fn range(&mut self, field: String, value: Option<f64>, low: f64, high: f64, unit: &str) {
        if let Some(value) = value {
            if !(value.is_finite() && value >= low && value <= high) {
                self.add(field, format!("{value} is outside {low}–{high}{unit}"));
            }
        }
    }

    pub fn positive(&mut self, field: String, value: Option<f64>) {
        if let Some(value) = value {
            if !(value.is_finite() && value > 0.0) {
                self.add(field, format!("{value} must be above 0"));
            }
        }
    }
}

/// `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,max-1}`: what AWS allows in experiment
/// (120), endpoint and variant (63) names.
pub fn is_valid_aws_name(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Reads a file people write, refusing one larger than `max_bytes` before
/// it is read whole: a stray multi-gigabyte file must be an error, not an
/// out-of-memory.
pub fn read_text(path: &std::path::Path, max_bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max_bytes as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {max_bytes} bytes, the most read"),
        ));
    }
    Ok(text)
}

/// Parses YAML into `T`; a syntax or shape error becomes one problem whose
/// message is the parser's first line (line, column and cause) without the
/// source snippet that follows it. Text over `max_bytes` is refused before
/// parsing; the parser's own budgets bound depth and aliases.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    source: &str,
    text: &str,
    max_bytes: usize,
) -> Result<T, Problem> {
    if text.len() > max_bytes {
        return Err(Problem {
            source: source.to_string(),
            field: String::new(),
            message: format!("{} bytes is more than the {max_bytes} read", text.len()),
        });
    }
    serde_saphyr::from_str(text).map_err(|error| Problem {
        source: source.to_string(),
        field: String::new(),
        message: error
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    })
}
