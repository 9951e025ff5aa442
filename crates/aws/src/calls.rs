//! How every AWS call is retried and bounded. A tick must finish inside a
//! 2-minute function, so retries are the SDK's standard mode with a short
//! initial backoff (jittered, exponential) rather than the adaptive mode,
//! whose client-side rate limiter was measured to wait about 20 s before a
//! second attempt after a short throttling burst; and every attempt and
//! every operation has a timeout.

use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;

pub const RETRY_MODE_VAR: &str = "AWS_RETRY_MODE";
pub const MAX_ATTEMPTS_VAR: &str = "AWS_MAX_ATTEMPTS";
pub const ATTEMPT_TIMEOUT_VAR: &str = "SHADOWPILOT_ATTEMPT_TIMEOUT";
pub const OPERATION_TIMEOUT_VAR: &str = "SHADOWPILOT_OPERATION_TIMEOUT";

/// Three throttles in a row on one call still leave a fourth and fifth try.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Backoffs of about 0.2, 0.4, 0.8 and 1.6 s (times a random jitter) for
/// five attempts: a burst is waited out in seconds, not minutes.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// More attempts than this cannot fit the function's timeout anyway.
const MAX_ATTEMPTS_LIMIT: u32 = 20;
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The function's timeout is 120 s; one operation must leave room for the
/// rest of the tick.
const MAX_OPERATION_TIMEOUT: Duration = Duration::from_secs(100);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallSettingsError {
    #[error("{RETRY_MODE_VAR}={value:?}: must be standard or adaptive")]
    RetryMode { value: String },
    #[error("{MAX_ATTEMPTS_VAR}={value:?}: must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}")]
    MaxAttempts { value: String },
    #[error("{variable}={value:?}: {problem}")]
    Timeout {
        variable: &'static str,
        value: String,
        problem: String,
    },
}

/// Retries and timeouts for every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSettings {
    pub retry_mode: RetryMode,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    /// One HTTP attempt, retries not included.
    pub attempt_timeout: Duration,
    /// One operation with all its retries (a paginated call is one
    /// operation per page).
    pub operation_timeout: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            retry_mode: RetryMode::Standard,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

impl CallSettings {
    pub fn from_env() -> Result<Self, CallSettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The SDK's own `AWS_RETRY_MODE` and `AWS_MAX_ATTEMPTS` win, each for
    /// what it names, when set; our defaults otherwise. Reads through
    /// `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CallSettingsError> {
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut settings = Self::default();
        if let Some(value) = set(RETRY_MODE_VAR) {
            settings.retry_mode = match value.trim().to_ascii_lowercase().as_str() {
                "standard" => RetryMode::Standard,
                "adaptive" => RetryMode::Adaptive,
                _ => return Err(CallSettingsError::RetryMode { value }),
            };
        }
        if let Some(value) = set(MAX_ATTEMPTS_VAR) {
            settings.max_attempts = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_ATTEMPTS_LIMIT).contains(n))
                .ok_or(CallSettingsError::MaxAttempts { value })?;
        }
        if let Some(value) = set(ATTEMPT_TIMEOUT_VAR) {
            settings.attempt_timeout = timeout(ATTEMPT_TIMEOUT_VAR, &value, MAX_OPERATION_TIMEOUT)?;
        }
        if let Some(value) = set(OPERATION_TIMEOUT_VAR) {
            settings.operation_timeout =
                timeout(OPERATION_TIMEOUT_VAR, &value, MAX_OPERATION_TIMEOUT)?;
        }
        if settings.operation_timeout < settings.attempt_timeout {
            return Err(CallSettingsError::Timeout {
                variable: OPERATION_TIMEOUT_VAR,
                value: humantime::format_duration(settings.operation_timeout).to_string(),
                problem: format!(
                    "shorter than one attempt ({ATTEMPT_TIMEOUT_VAR} {})",
                    humantime::format_duration(settings.attempt_timeout)
                ),
            });
        }
        Ok(settings)
    }

    pub fn retry_config(&self) -> RetryConfig {
        let config = match self.retry_mode {
            RetryMode::Adaptive => RetryConfig::adaptive(),
            _ => RetryConfig::standard(),
        };
        config
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
    }

    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }
}

fn timeout(
    variable: &'static str,
    value: &str,
    max: Duration,
) -> Result<Duration, CallSettingsError> {
    let problem = |problem: String| CallSettingsError::Timeout {
        variable,
        value: value.to_string(),
        problem,
    };
    let parsed = humantime::parse_duration(value.trim())
        .map_err(|error| problem(format!("not a duration such as 10s or 500ms: {error}")))?;
    if !(MIN_TIMEOUT..=max).contains(&parsed) {
        return Err(problem(format!(
            "must be from {} to {}",
            humantime::format_duration(MIN_TIMEOUT),
            humantime::format_duration(max)
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<CallSettings, CallSettingsError> {
        CallSettings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn defaults_and_what_each_variable_names() {
        let defaults = CallSettings::default();
        assert_eq!(parse(&[]), Ok(defaults.clone()));
        let cases: [(&[(&str, &str)], CallSettings); 5] = [
            (
                &[("AWS_RETRY_MODE", "adaptive")],
                CallSettings {
                    retry_mode: RetryMode::Adaptive,
                    ..defaults.clone()
                },
            ),
            (
                &[("AWS_RETRY_MODE", "Standard"), ("AWS_MAX_ATTEMPTS", "2")],
                CallSettings {
                    max_attempts: 2,
                    ..defaults.clone()
                },
            ),
            (
                &[("AWS_MAX_ATTEMPTS", " 7 ")],
                CallSettings {
                    max_attempts: 7,
                    ..defaults.clone()
                },
            ),
            (
                &[
                    ("SHADOWPILOT_ATTEMPT_TIMEOUT", "2s"),
                    ("SHADOWPILOT_OPERATION_TIMEOUT", "20s"),
                ],
                CallSettings {
                    attempt_timeout: Duration::from_secs(2),
                    operation_timeout: Duration::from_secs(20),
                    ..defaults.clone()
                },
            ),
            (&[("AWS_MAX_ATTEMPTS", "")], defaults.clone()),
        ];
        for (vars, expected) in cases {
            assert_eq!(parse(vars), Ok(expected), "{vars:?}");
        }
    }

    #[test]
    fn unusable_values_name_the_variable_and_the_value() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (
                &[("AWS_RETRY_MODE", "legacy")],
                "AWS_RETRY_MODE=\"legacy\": must be standard or adaptive",
            ),
            (
                &[("AWS_MAX_ATTEMPTS", "0")],
                "AWS_MAX_ATTEMPTS=\"0\": must be a whole number from 1 to 20",
            ),
            (
                &[("AWS_MAX_ATTEMPTS", "three")],
                "AWS_MAX_ATTEMPTS=\"three\"",
            ),
            (&[("AWS_MAX_ATTEMPTS", "21")], "from 1 to 20"),
            (
                &[("SHADOWPILOT_ATTEMPT_TIMEOUT", "soon")],
                "SHADOWPILOT_ATTEMPT_TIMEOUT=\"soon\": not a duration",
            ),
            (
                &[("SHADOWPILOT_OPERATION_TIMEOUT", "5m")],
                "SHADOWPILOT_OPERATION_TIMEOUT=\"5m\": must be from 100ms to 1m 40s",
            ),
            (
                &[
                    ("SHADOWPILOT_ATTEMPT_TIMEOUT", "20s"),
                    ("SHADOWPILOT_OPERATION_TIMEOUT", "10s"),
                ],
                "shorter than one attempt",
            ),
        ];
        for (vars, expected) in cases {
            let error = parse(vars).expect_err("refused").to_string();
            assert!(error.contains(expected), "{vars:?}: {error}");
        }
    }

    #[test]
    fn the_sdk_configs_carry_the_settings() {
        let settings = CallSettings::default();
        let retry = settings.retry_config();
        assert_eq!(retry.mode(), RetryMode::Standard);
        assert_eq!(retry.max_attempts(), 5);
        assert_eq!(retry.initial_backoff(), Duration::from_millis(200));
        let timeouts = settings.timeout_config();
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(30)));
    }
}
