//! Reading a variant's capture over [`CaptureSource`]: the hour prefixes
//! the span touches (`{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/`,
//! listed, never guessed from file names), oldest first, every record of
//! the span kept when its pairing key is in the step's sample, until the
//! policy's caps on records and bytes stop the reading (`capped`).

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::record::{parse_lines, CaptureRecord, LineProblem};
use super::sample::in_sample;
use crate::ports::{CaptureError, CaptureSource};

/// `s3://bucket/some/prefix`, as DataStorageConfig.Destination gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    /// Without a leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DataStorageConfig.Destination {value:?} is not an s3://bucket/prefix URI: {problem}")]
pub struct DestinationError {
    pub value: String,
    pub problem: &'static str,
}

impl Destination {
    pub fn parse(value: &str) -> Result<Self, DestinationError> {
        let error = |problem| DestinationError {
            value: value.to_string(),
            problem,
        };
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| error("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(error("no bucket"));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// `{prefix}/{endpoint}/{variant}/`: joined with exactly one `/`
    /// whether or not Destination ends in one (which is unconfirmed).
    pub fn variant_prefix(&self, endpoint: &str, variant: &str) -> String {
        if self.prefix.is_empty() {
            format!("{endpoint}/{variant}/")
        } else {
            format!("{}/{endpoint}/{variant}/", self.prefix)
        }
    }

    /// The variant prefix and `yyyy/mm/dd/hh/` of every hour `[from, to)`
    /// touches, oldest first.
    pub fn hour_prefixes(
        &self,
        endpoint: &str,
        variant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<String> {
        let base = self.variant_prefix(endpoint, variant);
        let mut hour = from.duration_trunc(Duration::hours(1)).unwrap_or(from);
        let mut prefixes = Vec::new();
        while hour < to {
            prefixes.push(format!("{base}{}/", hour.format("%Y/%m/%d/%H")));
            hour += Duration::hours(1);
        }
        prefixes
    }
}

/// The policy's bounds on one tick's reading of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: u64,
    pub max_bytes: u64,
}

/// What was read of one variant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantRead {
    /// The variant prefix, for "no records under …/<variant>/".
    pub prefix: String,
    pub objects: u64,
    pub bytes: u64,
    /// Records in the span and the sample, kept.
    pub records: Vec<CaptureRecord>,
    /// Records in the span but not the sample.
    pub outside_sample: u64,
    /// Production records left out because no shadow record read carries
    /// their inferenceId or eventId: they cannot pair.
    pub not_in_shadow: u64,
    /// When each record of the span that was not kept happened, so that
    /// the records seen before a time can still be counted.
    pub skipped_at: Vec<DateTime<Utc>>,
    /// Unreadable lines, by object key.
    pub problems: Vec<(String, LineProblem)>,
    /// The caps stopped the reading before the span's end.
    pub capped: bool,
    /// The tick's time for reading ran out before the span's end.
    pub out_of_time: bool,
    /// When the reading stopped early: the latest inferenceTime it read.
    /// Records after it may sit in the files not read, so pairs are only
    /// judged before the earlier of the two variants' `reached`.
    pub reached: Option<DateTime<Utc>>,
}

impl VariantRead {
    /// The reading stopped before the span's end.
    pub fn stopped_early(&self) -> bool {
        self.capped || self.out_of_time
    }
}

/// The key a record is sampled (and paired) by.
pub fn sample_key(record: &CaptureRecord) -> Option<&str> {
    record
        .inference_id
        .as_deref()
        .or(record.event_id.as_deref())
}

/// Reads `[from, to)` of one variant, oldest first, keeping the records
/// whose key is in the sample at `rate` (records without any key are kept:
/// they are reported unpaired, never silently dropped). At `deadline` the
/// reading stops where it is (`out_of_time`), like a cap: what was read is
/// still the oldest part of the span, so the evidence stays a prefix.
#[allow(clippy::too_many_arguments)]
pub async fn read_variant(
    source: &dyn CaptureSource,
    destination: &Destination,
    endpoint: &str,
    variant: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    rate: f64,
    limits: ReadLimits,
    deadline: Option<tokio::time::Instant>,
) -> Result<VariantRead, CaptureError> {
    read_keeping(
        source,
        destination,
        endpoint,
        variant,
        (from, to),
        rate,
        limits,
        deadline,
        None,
    )
    .await
}

/// The keys a production record may pair by: every shadow record's
/// inferenceId and eventId.
pub fn pairing_keys(shadow: &VariantRead) -> std::collections::HashSet<String> {
    shadow
        .records
        .iter()
        .flat_map(|record| [record.inference_id.clone(), record.event_id.clone()])
        .flatten()
        .collect()
}

fn finish(read: &mut VariantRead, from: DateTime<Utc>) {
    if read.stopped_early() {
        read.reached = read.reached.or(Some(from));
    } else {
        read.reached = None;
    }
}

/// An answer within the deadline; `None` when it passed first.
async fn in_time<T>(
    deadline: Option<tokio::time::Instant>,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    match deadline {
        None => Some(call.await),
        Some(deadline) => tokio::time::timeout_at(deadline, call).await.ok(),
    }
}

/// [`read_variant`] that, given `shadow_keys`, keeps only the records
/// whose inferenceId or eventId a shadow record carries: production's files
/// hold every request and only the copied ones can pair, so the caps are
/// spent on those. Not for pairing by input, which needs every record.
#[allow(clippy::too_many_arguments)]
pub async fn read_keeping(
    source: &dyn CaptureSource,
    destination: &Destination,
    endpoint: &str,
    variant: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    rate: f64,
    limits: ReadLimits,
    deadline: Option<tokio::time::Instant>,
    shadow_keys: Option<&std::collections::HashSet<String>>,
) -> Result<VariantRead, CaptureError> {
    let mut read = VariantRead {
        prefix: format!(
            "s3://{}/{}",
            destination.bucket,
            destination.variant_prefix(endpoint, variant)
        ),
        ..VariantRead::default()
    };
    'hours: for prefix in destination.hour_prefixes(endpoint, variant, from, to) {
        let Some(objects) = in_time(deadline, source.list(&destination.bucket, &prefix)).await
        else {
            read.out_of_time = true;
            break 'hours;
        };
        let mut objects = objects?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        for object in objects {
            if read.bytes + object.size > limits.max_bytes
                || read.records.len() as u64 >= limits.max_records
            {
                read.capped = true;
                break 'hours;
            }
            let left = limits.max_bytes - read.bytes;
            let Some(answer) =
                in_time(deadline, source.get(&destination.bucket, &object.key, left)).await
            else {
                read.out_of_time = true;
                break 'hours;
            };
            let bytes = match answer {
                // Larger than its listing said (still being written, or the
                // listing had no size): the byte cap stops the reading here.
                Err(CaptureError::TooLarge { .. }) => {
                    read.capped = true;
                    break 'hours;
                }
                answer => answer?,
            };
            read.objects += 1;
            read.bytes += bytes.len() as u64;
            let text = String::from_utf8_lossy(&bytes);
            let parsed = parse_lines(&text);
            read.problems.extend(
                parsed
                    .problems
                    .into_iter()
                    .map(|problem| (object.key.clone(), problem)),
            );
            for record in parsed.records {
                if record.inference_time < from || record.inference_time >= to {
                    continue;
                }
                read.reached = read.reached.max(Some(record.inference_time));
                if sample_key(&record).is_some_and(|key| !in_sample(key, rate)) {
                    read.outside_sample += 1;
                    read.skipped_at.push(record.inference_time);
                    continue;
                }
                if let Some(keys) = shadow_keys {
                    let copied = [&record.inference_id, &record.event_id]
                        .into_iter()
                        .flatten()
                        .any(|key| keys.contains(key));
                    if !copied {
                        read.not_in_shadow += 1;
                        read.skipped_at.push(record.inference_time);
                        continue;
                    }
                }
                if read.records.len() as u64 >= limits.max_records {
                    read.capped = true;
                    break 'hours;
                }
                read.records.push(record);
            }
        }
    }
    finish(&mut read, from);
    Ok(read)
}
