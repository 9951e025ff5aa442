//! Durations in policy files are written as people say them: `90m`, `2h`, `7d`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|error| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration such as 30m, 2h or 7d: {error}"
        ))
    })
}

/// How a duration is written in a policy or scenario, for its JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(
    rename = "Duration",
    description = "A duration such as 30s, 90m, 2h, 7d or 2h 30m",
    extend("pattern" = r"^\s*\d+\s*[a-z]+(\s*\d+\s*[a-z]+)*\s*$")
)]
pub struct Written(#[allow(dead_code)] String);

/// `31d`, `2h 30m`, `45s`: how policies write durations, unlike humantime's
/// months of 30.44 days.
pub fn format(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            parts.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    parts.join(" ")
}

/// The same for a field that may be left out.
pub mod optional {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_str(&super::format(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }
}
