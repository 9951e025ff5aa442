//! EventBridge schedule expressions (`rate(...)` and 6-field `cron(...)`,
//! UTC): when the next tick comes, and whether a change window is open.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("{expression}: neither rate(...) nor cron(...), e.g. rate(10 minutes) or cron(0/15 * * * ? *)")]
    UnknownForm { expression: String },
    #[error("{expression}: {problem}")]
    Invalid { expression: String, problem: String },
}

fn invalid(expression: &str, problem: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        expression: expression.to_string(),
        problem: problem.into(),
    }
}

/// EventBridge caps a schedule expression at 256 characters.
const MAX_EXPRESSION_BYTES: usize = 256;

/// A parsed EventBridge schedule expression.
#[derive(Debug, Clone)]
pub enum Schedule {
    Rate {
        expression: String,
        every: Duration,
    },
    Cron {
        expression: String,
        cron: Box<cron::Schedule>,
    },
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(invalid(
                &expression.chars().take(40).collect::<String>(),
                format!(
                    "longer than {MAX_EXPRESSION_BYTES} bytes, which no EventBridge expression is"
                ),
            ));
        }
        let trimmed = expression.trim();
        if let Some(body) = trimmed
            .strip_prefix("rate(")
            .and_then(|b| b.strip_suffix(')'))
        {
            return parse_rate(trimmed, body);
        }
        if let Some(body) = trimmed
            .strip_prefix("cron(")
            .and_then(|b| b.strip_suffix(')'))
        {
            let cron = parse_eventbridge_cron(trimmed, body)?;
            return Ok(Self::Cron {
                expression: trimmed.to_string(),
                cron: Box::new(cron),
            });
        }
        Err(ScheduleError::UnknownForm {
            expression: expression.to_string(),
        })
    }

    pub fn expression(&self) -> &str {
        match self {
            Self::Rate { expression, .. } | Self::Cron { expression, .. } => expression,
        }
    }

    /// The latest moment the next tick can come. A rate rule fires relative
    /// to when it was created, which the function cannot know, so `now +
    /// rate` is the safe bound.
    pub fn next_tick_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Rate { every, .. } => now
                .checked_add_signed(chrono_duration(*every))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            // A cron with no future firing (a past year) never ticks again;
            // taking `now` keeps extensions to what the margin alone asks.
            Self::Cron { cron, .. } => cron.after(&now).next().unwrap_or(now),
        }
    }

    /// Every tick in (after, until], in order; what the simulator runs on.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        match self {
            Self::Rate { every, .. } => {
                let step = chrono_duration(*every);
                let mut tick = after + step;
                while tick <= until {
                    ticks.push(tick);
                    tick += step;
                }
            }
            Self::Cron { cron, .. } => {
                ticks.extend(cron.after(&after).take_while(|tick| *tick <= until));
            }
        }
        ticks
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

pub fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

const MAX_RATE_SECONDS: u64 = 365 * 86_400;

fn parse_rate(expression: &str, body: &str) -> Result<Schedule, ScheduleError> {
    let mut parts = body.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(
            expression,
            "rate needs a value and a unit, e.g. rate(10 minutes)",
        ));
    };
    let value: u64 = value.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        invalid(
            expression,
            format!("rate value {value:?} is not a positive whole number"),
        )
    })?;
    let unit_seconds = match (value, unit) {
        (1, "minute") | (2.., "minutes") => 60,
        (1, "hour") | (2.., "hours") => 3600,
        (1, "day") | (2.., "days") => 86_400,
        _ => {
            return Err(invalid(
                expression,
                format!("unit {unit:?} must be minute(s), hour(s) or day(s), singular only for 1"),
            ))
        }
    };
    let seconds = value
        .checked_mul(unit_seconds)
        .filter(|seconds| *seconds <= MAX_RATE_SECONDS)
        .ok_or_else(|| {
            invalid(
                expression,
                "a rate longer than 365 days never ticks in practice",
            )
        })?;
    Ok(Schedule::Rate {
        expression: expression.to_string(),
        every: Duration::from_secs(seconds),
    })
}

/// EventBridge cron: minutes hours day-of-month month day-of-week year, with
/// `?` in one of the two day fields. The cron crate wants seconds first and
/// does not know `L`, `W` or `#`, which EventBridge allows; those are refused
/// here rather than misread.
pub(crate) fn parse_eventbridge_cron(
    expression: &str,
    body: &str,
) -> Result<cron::Schedule, ScheduleError> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(invalid(
            expression,
            format!(
                "EventBridge cron has 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            ),
        ));
    }
    for (index, field) in fields.iter().enumerate() {
        if field.contains(['L', 'W', '#']) && !is_named_value(field) {
            return Err(invalid(
                expression,
                format!(
                    "field {} ({field}) uses L, W or #, which shadowpilot does not support",
                    index + 1
                ),
            ));
        }
    }
    for (field, spec) in fields.iter().zip(&CRON_FIELDS) {
        check_cron_field(field, spec).map_err(|problem| invalid(expression, problem))?;
    }
    if fields[2] != "?" && fields[4] != "?" {
        return Err(invalid(
            expression,
            "one of day-of-month and day-of-week must be ? (EventBridge rule)",
        ));
    }
    cron::Schedule::from_str(&format!("0 {}", fields.join(" ")))
        .map_err(|error| invalid(expression, error.to_string()))
}

/// One field of an EventBridge cron: its name in messages, its range and
/// the names it takes.
struct CronField {
    name: &'static str,
    low: u32,
    high: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const CRON_FIELDS: [CronField; 6] = [
    CronField {
        name: "minute",
        low: 0,
        high: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        low: 0,
        high: 23,
        names: &[],
    },
    CronField {
        name: "day-of-month",
        low: 1,
        high: 31,
        names: &[],
    },
    CronField {
        name: "month",
        low: 1,
        high: 12,
        names: &MONTHS,
    },
    CronField {
        name: "day-of-week",
        low: 1,
        high: 7,
        names: &WEEKDAYS,
    },
    // EventBridge allows years to 2199; the cron crate that computes the
    // ticks stops at 2100, and refusing here says so in plain terms.
    CronField {
        name: "year",
        low: 1970,
        high: 2100,
        names: &[],
    },
];

/// Every value, range end and step of a field within its range, so a
/// mistake is named in EventBridge's terms (`minute 61 is out of range
/// 0-59`) rather than the cron crate's.
fn check_cron_field(field: &str, spec: &CronField) -> Result<(), String> {
    let value = |text: &str| -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(index) = spec.names.iter().position(|name| *name == upper) {
            return Ok(spec.low + index as u32);
        }
        let number: u32 = text.parse().map_err(|_| {
            format!(
                "{} {text:?} is neither a number from {} to {}{}",
                spec.name,
                spec.low,
                spec.high,
                if spec.names.is_empty() {
                    String::new()
                } else {
                    format!(" nor one of {}", spec.names.join(", "))
                }
            )
        })?;
        if !(spec.low..=spec.high).contains(&number) {
            return Err(format!(
                "{} {number} is out of range {}-{}",
                spec.name, spec.low, spec.high
            ));
        }
        Ok(number)
    };
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            let size = spec.high - spec.low + 1;
            match step.parse::<u32>() {
                Ok(step) if (1..=size).contains(&step) => {}
                _ => {
                    return Err(format!(
                        "{} step {step:?} must be a whole number from 1 to {size}",
                        spec.name
                    ))
                }
            }
        }
        match base {
            "*" | "?" => {}
            _ => match base.split_once('-') {
                Some((from, to)) => {
                    value(from)?;
                    value(to)?;
                }
                None => {
                    value(base)?;
                }
            },
        }
    }
    Ok(())
}

/// Month and weekday names (JUL, WED) contain letters the L/W/# guard must
/// let through.
fn is_named_value(field: &str) -> bool {
    field.split([',', '-', '/']).all(|part| {
        part.chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '?')
            || part.len() >= 3 && part.chars().all(|c| c.is_ascii_alphabetic())
    })
}

/// A change window: opens at each firing of a cron and stays open for a
/// duration.
#[derive(Debug, Clone)]
pub struct CronWindow {
    pub expression: String,
    cron: cron::Schedule,
    pub duration: Duration,
}

impl CronWindow {
    pub fn parse(expression: &str, duration: Duration) -> Result<Self, ScheduleError> {
        let trimmed = expression.trim();
        let body = trimmed
            .strip_prefix("cron(")
            .and_then(|b| b.strip_suffix(')'))
            .ok_or_else(|| invalid(trimmed, "a change window is written cron(...)"))?;
        Ok(Self {
            expression: trimmed.to_string(),
            cron: parse_eventbridge_cron(trimmed, body)?,
            duration,
        })
    }

    /// The first opening strictly after `after`.
    pub fn next_opening_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&after).next()
    }

    /// Open when some opening lies in (now − duration, now].
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let earliest = now - chrono_duration(self.duration);
        self.cron
            .after(&earliest)
            .next()
            .is_some_and(|opening| opening <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn next_tick_table() {
        let now = at(2026, 11, 23, 10, 7);
        let cases = [
            ("rate(10 minutes)", at(2026, 11, 23, 10, 17)),
            ("rate(1 hour)", at(2026, 11, 23, 11, 7)),
            ("rate(2 days)", at(2026, 11, 25, 10, 7)),
            ("cron(0/15 * * * ? *)", at(2026, 11, 23, 10, 15)),
            ("cron(0 9 ? * MON-FRI *)", at(2026, 11, 24, 9, 0)),
            // 2026-11-23 is a Monday; day-of-week 1 is Sunday in EventBridge.
            ("cron(30 8 ? * 1 *)", at(2026, 11, 29, 8, 30)),
        ];
        for (expression, expected) in cases {
            let schedule = Schedule::parse(expression).unwrap();
            assert_eq!(schedule.next_tick_after(now), expected, "{expression}");
        }
    }

    #[test]
    fn rejected_expressions_table() {
        let cases = [
            ("every 10 minutes", "neither rate"),
            ("rate(0 minutes)", "positive whole number"),
            ("rate(1 minutes)", "singular only for 1"),
            ("rate(5 weeks)", "minute(s), hour(s) or day(s)"),
            ("rate(1000000000 days)", "longer than 365 days"),
            ("rate(18446744073709551615 minutes)", "longer than 365 days"),
            ("cron(0 12 * * ?)", "6 fields"),
            ("cron(0 12 L * ? *)", "L, W or #"),
            ("cron(0 12 ? * 6#3 *)", "L, W or #"),
            ("cron(0 12 * * MON *)", "must be ?"),
            ("cron(0 25 * * ? *)", "cron("),
        ];
        for (expression, expected) in cases {
            let error = Schedule::parse(expression).unwrap_err().to_string();
            assert!(error.contains(expected), "{expression}: {error}");
        }
    }

    #[test]
    fn change_window_is_open_only_inside() {
        let window =
            CronWindow::parse("cron(0 9 ? * MON-FRI *)", Duration::from_secs(8 * 3600)).unwrap();
        assert!(!window.is_open(at(2026, 11, 23, 8, 59)));
        assert!(window.is_open(at(2026, 11, 23, 9, 0)));
        assert!(window.is_open(at(2026, 11, 23, 16, 59)));
        assert!(!window.is_open(at(2026, 11, 23, 17, 0)));
        assert!(!window.is_open(at(2026, 11, 22, 12, 0)), "Sunday is closed");
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn out_of_range_fields_are_named_in_eventbridge_terms() {
        let cases = [
            (
                "cron(61 25 * * ? *)",
                "cron(61 25 * * ? *): minute 61 is out of range 0-59",
            ),
            (
                "cron(0 25 * * ? *)",
                "cron(0 25 * * ? *): hour 25 is out of range 0-23",
            ),
            ("cron(0 8 32 * ? *)", "day-of-month 32 is out of range 1-31"),
            ("cron(0 8 ? 13 MON *)", "month 13 is out of range 1-12"),
            ("cron(0 8 ? * 8 *)", "day-of-week 8 is out of range 1-7"),
            (
                "cron(0 8 ? * FUN *)",
                "day-of-week \"FUN\" is neither a number from 1 to 7 nor one of SUN, MON",
            ),
            (
                "cron(0/0 * * * ? *)",
                "minute step \"0\" must be a whole number from 1 to 60",
            ),
            ("cron(0 8-30 * * ? *)", "hour 30 is out of range 0-23"),
            (
                "cron(0 8 * * ? 1969)",
                "year 1969 is out of range 1970-2100",
            ),
            (
                "cron(0 8 * * ? 2150)",
                "year 2150 is out of range 1970-2100",
            ),
            (
                "every minute",
                "every minute: neither rate(...) nor cron(...)",
            ),
            (
                &*format!("rate({} minutes)", "1".repeat(300)),
                "longer than 256 bytes",
            ),
        ];
        for (expression, expected) in cases {
            let error = Schedule::parse(expression)
                .expect_err(expression)
                .to_string();
            assert!(error.contains(expected), "{expression}: {error}");
        }
        for valid in [
            "cron(0/15 8-17 ? * MON-FRI *)",
            "cron(0,30 8 ? JAN-MAR 2-6 2026-2030)",
            "cron(59 23 31 12 ? 2099)",
            "cron(59 23 ? 12 SAT 2100)",
            "cron(0 8 ? * sun *)",
        ] {
            assert!(
                Schedule::parse(valid).is_ok(),
                "{valid}: {:?}",
                Schedule::parse(valid).err()
            );
        }
    }
}
