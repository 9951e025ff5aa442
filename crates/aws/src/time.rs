//! The one place where SDK timestamps meet chrono.

use aws_smithy_types::DateTime as SmithyDateTime;
use chrono::{DateTime, Utc};

/// `None` when the instant lies outside chrono's range (about ±262,000
/// years); callers turn that into an `InvalidResponse` naming the field.
pub(crate) fn to_chrono(time: &SmithyDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

pub(crate) fn to_smithy(time: DateTime<Utc>) -> SmithyDateTime {
    // chrono encodes a leap second as nanos >= 1e9, which the SDK type
    // rejects with a panic; the last nanosecond of that second is as close as
    // it can get.
    let nanos = time.timestamp_subsec_nanos().min(999_999_999);
    SmithyDateTime::from_secs_and_nanos(time.timestamp(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    #[test]
    fn round_trips_with_subsecond_precision() {
        let time = Utc
            .with_ymd_and_hms(2025, 3, 1, 12, 30, 0)
            .single()
            .expect("valid")
            + chrono::Duration::milliseconds(250);
        assert_eq!(to_chrono(&to_smithy(time)), Some(time));
    }

    #[test]
    fn leap_second_does_not_panic() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("chrono accepts leap seconds")
            .and_utc();
        let smithy = to_smithy(leap);
        assert_eq!(smithy.secs(), leap.timestamp());
        assert_eq!(smithy.subsec_nanos(), 999_999_999);
    }

    #[test]
    fn out_of_range_is_none() {
        assert_eq!(to_chrono(&SmithyDateTime::from_secs(i64::MAX)), None);
    }
}
