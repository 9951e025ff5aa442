//! What "the same answer" means. Without a declaration outputs are compared
//! whole: equal JSON values (numbers by value: `1` and `1.0` agree), or
//! equal text after trimming. A declaration picks the value that matters
//! (a JSON Pointer, or a CSV column) and how it must match: exactly, within
//! an absolute or relative tolerance, or by the index of the top score of
//! an array (a label flip).

use serde_json::Value;

use super::record::{Body, Payload};

/// Which part of an output is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extract {
    Whole,
    /// RFC 6901, into a JSON output (`/predictions/0/label`).
    Pointer(String),
    /// 0-based, in the first line of a CSV output.
    CsvColumn(usize),
}

/// How the two values must match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Match {
    /// Equal strings, labels or numbers (numbers by value).
    Exact,
    /// Numbers at most this far apart.
    Absolute(f64),
    /// Numbers at most this fraction of the larger magnitude apart.
    Relative(f64),
    /// Arrays of scores whose largest entries sit at the same index.
    Top1,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub extract: Extract,
    pub matching: Match,
}

impl Default for Comparison {
    fn default() -> Self {
        Self {
            extract: Extract::Whole,
            matching: Match::Exact,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Shadow,
    Production,
}

/// What one pair came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Compared {
    Agree {
        /// |shadow − production| where both values are numbers.
        difference: Option<f64>,
    },
    Disagree {
        difference: Option<f64>,
    },
    /// The value could not be taken from one side's output: neither an
    /// agreement nor a disagreement.
    Unreadable {
        side: Side,
        problem: String,
    },
}

/// The value a comparison looks at.
#[derive(Debug, Clone, PartialEq)]
enum Picked {
    Json(Value),
    Text(String),
}

fn pick(extract: &Extract, output: Option<&Payload>) -> Result<Picked, String> {
    let output = output.ok_or("no output captured")?;
    let text = match &output.body {
        Body::Text(text) => text.as_str(),
        Body::Bytes(bytes) => {
            return Err(format!(
                "the output is {} bytes of binary data",
                bytes.len()
            ))
        }
    };
    match extract {
        Extract::Whole => Ok(serde_json::from_str::<Value>(text)
            .map(Picked::Json)
            .unwrap_or_else(|_| Picked::Text(text.trim().to_string()))),
        Extract::Pointer(pointer) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|error| format!("the output is not JSON: {error}"))?;
            value
                .pointer(pointer)
                .cloned()
                .map(Picked::Json)
                .ok_or_else(|| format!("the output has nothing at {pointer}"))
        }
        Extract::CsvColumn(column) => {
            let line = text.lines().next().unwrap_or_default();
            line.split(',')
                .nth(*column)
                .map(|field| Picked::Text(field.trim().trim_matches('"').to_string()))
                .ok_or_else(|| format!("the output's first line has no column {column}: {line:?}"))
        }
    }
}

fn number(value: &Picked) -> Option<f64> {
    match value {
        Picked::Json(Value::Number(n)) => n.as_f64(),
        Picked::Json(Value::String(s)) | Picked::Text(s) => s.trim().parse().ok(),
        Picked::Json(_) => None,
    }
}

/// JSON equality with numbers compared by value.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}

fn scores(value: &Picked) -> Option<Vec<f64>> {
    match value {
        Picked::Json(Value::Array(items)) => items.iter().map(Value::as_f64).collect(),
        _ => None,
    }
}

/// The index of the largest score; the first on a tie.
fn top1(scores: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (index, score) in scores.iter().copied().enumerate() {
        if score.is_nan() {
            return None;
        }
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

pub fn compare(
    comparison: &Comparison,
    shadow: Option<&Payload>,
    production: Option<&Payload>,
) -> Compared {
    let unreadable = |side, problem| Compared::Unreadable { side, problem };
    let s = match pick(&comparison.extract, shadow) {
        Ok(value) => value,
        Err(problem) => return unreadable(Side::Shadow, problem),
    };
    let p = match pick(&comparison.extract, production) {
        Ok(value) => value,
        Err(problem) => return unreadable(Side::Production, problem),
    };
    let difference = number(&s).zip(number(&p)).map(|(a, b)| (a - b).abs());
    let verdict = |agree: bool| {
        if agree {
            Compared::Agree { difference }
        } else {
            Compared::Disagree { difference }
        }
    };
    match comparison.matching {
        Match::Exact => verdict(match (&s, &p) {
            (Picked::Json(a), Picked::Json(b)) => same_json(a, b),
            _ => match difference {
                Some(d) => d == 0.0,
                None => text_of(&s) == text_of(&p),
            },
        }),
        Match::Absolute(tolerance) => match difference {
            Some(d) => verdict(d <= tolerance),
            None => not_numbers(&s, &p),
        },
        Match::Relative(tolerance) => match number(&s).zip(number(&p)) {
            Some((a, b)) => verdict((a - b).abs() <= tolerance * a.abs().max(b.abs())),
            None => not_numbers(&s, &p),
        },
        Match::Top1 => {
            let top = |value: &Picked| scores(value).and_then(|s| top1(&s));
            match (top(&s), top(&p)) {
                (Some(a), Some(b)) => Compared::Agree { difference: None }.with_agreement(a == b),
                (None, _) => unreadable(Side::Shadow, "not an array of scores".into()),
                (_, None) => unreadable(Side::Production, "not an array of scores".into()),
            }
        }
    }
}

impl Compared {
    fn with_agreement(self, agree: bool) -> Self {
        let difference = match self {
            Self::Agree { difference } | Self::Disagree { difference } => difference,
            unreadable => return unreadable,
        };
        if agree {
            Self::Agree { difference }
        } else {
            Self::Disagree { difference }
        }
    }
}

fn text_of(value: &Picked) -> String {
    match value {
        Picked::Json(Value::String(s)) => s.clone(),
        Picked::Json(other) => other.to_string(),
        Picked::Text(text) => text.clone(),
    }
}

fn not_numbers(shadow: &Picked, production: &Picked) -> Compared {
    let side = if number(shadow).is_none() {
        Side::Shadow
    } else {
        Side::Production
    };
    let value = if side == Side::Shadow {
        shadow
    } else {
        production
    };
    Compared::Unreadable {
        side,
        problem: format!("{} is not a number", text_of(value)),
    }
}
