//! The simulated data capture: what S3 would hold under an experiment's
//! DataStorageConfig, in SageMaker's record format, one file per variant
//! per minute with traffic.
//!
//! Nothing is stored. A file is written out from (seed, experiment,
//! variant, minute) each time it is read, the same bytes every time, so a
//! week at thousands of requests a minute never sits in memory; only its
//! size is remembered, with the minute's traffic, because a listing has to
//! give it and computing it means writing the file. File contents are not
//! cached either: the controller reads a step's capture oldest first every
//! tick, a scan longer than any cache small enough to be worth having.
//!
//! Both files of a minute agree with the simulated CloudWatch: production's
//! has the minute's production invocations, the shadow's the minute's
//! shadow invocations, which are copies of production requests chosen by a
//! seeded draw. A copy keeps the request's inferenceId, second and input,
//! gets its own eventId (whether AWS gives both copies one is unconfirmed;
//! different ones are the case the pairing must survive), and answers like
//! production except as the shadow's output model says.

use std::fmt::{self, Write as _};
use std::ops::Range;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::sagemaker::{SageMaker, SimExperiment};
use super::traffic::{role_index, Traffic};
use crate::rng::{Draws, Purpose};
use crate::scenario::{CaptureSpec, OutputModel};
use shadowpilot_core::capture::read::Destination;
use shadowpilot_core::metrics::VariantRole;
use shadowpilot_core::ports::{CaptureError, CaptureObject};

/// CSV features per request.
const FEATURES: usize = 4;
/// Share of the shadow's copies captured a second after production's (the
/// copy is a separate invocation that may cross a second boundary).
const SKEW_SHARE: f64 = 0.02;

/// What the simulated capture has done, for tests of its memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureMemory {
    /// Minutes of traffic the world holds (they carry the file sizes).
    pub minutes_held: usize,
    /// Capture file sizes the world remembers.
    pub sizes_held: usize,
    /// Files served by `get` so far, each written out for it and not kept.
    pub files_generated: u64,
}

/// An unknown key, as S3's NoSuchKey.
#[derive(Debug, thiserror::Error)]
#[error("NoSuchKey: s3://{bucket}/{key} does not exist")]
struct NoSuchKey {
    bucket: String,
    key: String,
}

/// One variant of an experiment that captures to the bucket asked about.
struct Captured<'a> {
    index: usize,
    experiment: &'a SimExperiment,
    capture: &'a CaptureSpec,
    role: VariantRole,
    /// `{destination prefix}/{endpoint}/{variant}/`, joined as the reader joins it.
    prefix: String,
}

/// Every captured variant in `bucket`; NoSuchBucket when no experiment
/// captures there.
fn captured<'a>(sagemaker: &'a SageMaker, bucket: &str) -> Result<Vec<Captured<'a>>, CaptureError> {
    let mut found = Vec::new();
    let mut bucket_exists = false;
    for (index, experiment) in sagemaker.iter() {
        let Some(capture) = &experiment.spec.capture else {
            continue;
        };
        // Checked at load; an unparsable one captures nowhere.
        let Ok(destination) = Destination::parse(&capture.destination) else {
            continue;
        };
        if destination.bucket != bucket {
            continue;
        }
        bucket_exists = true;
        let spec = &experiment.spec;
        for (role, variant) in [
            (VariantRole::Production, &spec.production_variant),
            (VariantRole::Shadow, &spec.shadow_variant),
        ] {
            found.push(Captured {
                index,
                experiment,
                capture,
                role,
                prefix: destination.variant_prefix(&spec.endpoint, variant),
            });
        }
    }
    if bucket_exists {
        Ok(found)
    } else {
        Err(CaptureError::NoSuchBucket {
            bucket: bucket.to_string(),
        })
    }
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

/// The minutes the experiment captured whose files are delivered by `now`:
/// those starting in [StartTime, EndTime) (the shadow's traffic window, a
/// stop included) and ended at least the delivery delay ago.
fn delivered_minutes(
    experiment: &SimExperiment,
    capture: &CaptureSpec,
    traffic: &Traffic,
    now: DateTime<Utc>,
) -> Range<i64> {
    let ceil = |secs: i64| secs.div_euclid(60) + i64::from(secs.rem_euclid(60) != 0);
    let first = ceil(experiment.start_secs).max(traffic.first_minute());
    let delay = i64::try_from(capture.delivery_delay.as_secs()).unwrap_or(i64::MAX / 2);
    let delivered = (now.timestamp() - delay).div_euclid(60);
    first..ceil(experiment.end_secs).min(delivered).max(first)
}

/// `yyyy/mm/dd/hh/`, the hour folder of a minute.
fn hour_folder(minute: i64) -> String {
    minute_start(minute).format("%Y/%m/%d/%H/").to_string()
}

/// `MM-SS-mmm-<uuid>.jsonl`, as seen in AWS's samples: the minute of the
/// hour first, so that keys sort in time order within the hour.
fn file_name(seed: u64, stream: u64, minute: i64) -> String {
    let mut draws = Draws::new(seed, stream, minute, Purpose::CaptureFile);
    let written = draws.bits() % 60_000;
    let mut name = format!(
        "{:02}-{:02}-{:03}-",
        minute.rem_euclid(60),
        written / 1000,
        written % 1000
    );
    // Writing to a String cannot fail.
    let _ = write_uuid(&mut name, [draws.bits(), draws.bits()]);
    name.push_str(".jsonl");
    name
}

impl Captured<'_> {
    fn stream(&self) -> u64 {
        self.experiment.keys[role_index(self.role)]
    }

    fn key(&self, seed: u64, minute: i64) -> String {
        format!(
            "{}{}{}",
            self.prefix,
            hour_folder(minute),
            file_name(seed, self.stream(), minute)
        )
    }

    /// The minute's production and shadow invocations: how many records
    /// each variant's file of the minute holds.
    fn records(&self, traffic: &mut Traffic, minute: i64) -> [u64; 2] {
        let counts = traffic.counts(self.experiment, self.index, minute);
        [counts[0].invocations, counts[1].invocations]
    }

    fn file<'b>(&'b self, seed: u64, minute: i64, counts: [u64; 2]) -> File<'b> {
        File {
            seed,
            keys: self.experiment.keys,
            minute,
            role: self.role,
            counts,
            production: &self
                .experiment
                .model(minute, VariantRole::Production)
                .output,
            shadow: &self.experiment.model(minute, VariantRole::Shadow).output,
            inference_ids: self.capture.inference_ids,
        }
    }

    /// The file's size, from the minute's cache or by writing it out once
    /// without keeping it.
    fn size(&self, traffic: &mut Traffic, minute: i64) -> u64 {
        if let Some(size) = traffic.capture_size(self.index, minute, self.role) {
            return size;
        }
        let counts = self.records(traffic, minute);
        let mut counter = ByteCount(0);
        // Counting cannot fail.
        let _ = self
            .file(traffic.seed(), minute, counts)
            .write(&mut counter);
        traffic.set_capture_size(self.index, minute, self.role, counter.0);
        counter.0
    }
}

/// ListObjectsV2 over every page: the delivered files whose key starts
/// with `prefix`, in key order.
pub(crate) fn list(
    traffic: &mut Traffic,
    sagemaker: &SageMaker,
    now: DateTime<Utc>,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<CaptureObject>, CaptureError> {
    let seed = traffic.seed();
    let mut objects = Vec::new();
    for variant in captured(sagemaker, bucket)? {
        // What the prefix asks of the part after the variant folder; a
        // prefix that stops before it asks for every file of the variant.
        let rest = if let Some(rest) = prefix.strip_prefix(variant.prefix.as_str()) {
            rest
        } else if variant.prefix.starts_with(prefix) {
            ""
        } else {
            continue;
        };
        let minutes = delivered_minutes(variant.experiment, variant.capture, traffic, now);
        if minutes.is_empty() {
            continue;
        }
        for hour in minutes.start.div_euclid(60)..=(minutes.end - 1).div_euclid(60) {
            let folder = hour_folder(hour * 60);
            if !(folder.starts_with(rest) || rest.starts_with(folder.as_str())) {
                continue;
            }
            let in_hour = (hour * 60).max(minutes.start)..(hour * 60 + 60).min(minutes.end);
            for minute in in_hour {
                let counts = variant.records(traffic, minute);
                if counts[role_index(variant.role)] == 0 {
                    continue;
                }
                let key = variant.key(seed, minute);
                if !key.starts_with(prefix) {
                    continue;
                }
                let size = variant.size(traffic, minute);
                objects.push(CaptureObject { key, size });
            }
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// GetObject: the file's bytes, written out now; TooLarge above
/// `max_bytes`; NoSuchKey for a key that is not (yet) there.
pub(crate) fn get(
    traffic: &mut Traffic,
    sagemaker: &SageMaker,
    now: DateTime<Utc>,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, CaptureError> {
    let seed = traffic.seed();
    let not_found = || CaptureError::Service {
        operation: "GetObject",
        source: Box::new(NoSuchKey {
            bucket: bucket.to_string(),
            key: key.to_string(),
        }),
    };
    let variants = captured(sagemaker, bucket)?;
    let (variant, minute) = variants
        .iter()
        .find_map(|variant| Some((variant, minute_of_key(variant, seed, key)?)))
        .ok_or_else(not_found)?;
    if !delivered_minutes(variant.experiment, variant.capture, traffic, now).contains(&minute) {
        return Err(not_found());
    }
    let counts = variant.records(traffic, minute);
    if counts[role_index(variant.role)] == 0 {
        return Err(not_found());
    }
    let too_large = |size: u64| CaptureError::TooLarge {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size,
        limit: max_bytes,
    };
    // A known size spares writing out a file that would be refused.
    if let Some(size) = traffic.capture_size(variant.index, minute, variant.role) {
        if size > max_bytes {
            return Err(too_large(size));
        }
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = variant.file(seed, minute, counts).write(&mut text);
    let size = text.len() as u64;
    traffic.set_capture_size(variant.index, minute, variant.role, size);
    if size > max_bytes {
        return Err(too_large(size));
    }
    Ok(text.into_bytes())
}

/// The minute a key names under this variant, when it is exactly the key
/// the variant's file of that minute has.
fn minute_of_key(variant: &Captured<'_>, seed: u64, key: &str) -> Option<i64> {
    let rest = key.strip_prefix(variant.prefix.as_str())?;
    // `yyyy/mm/dd/hh/MM`: the hour folder and the minute the name starts with.
    let stamp = rest.get(..16)?;
    let at = NaiveDateTime::parse_from_str(stamp, "%Y/%m/%d/%H/%M").ok()?;
    let minute = at.and_utc().timestamp().div_euclid(60);
    (variant.key(seed, minute) == key).then_some(minute)
}

/// Counts what would be written.
struct ByteCount(u64);

impl fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len() as u64;
        Ok(())
    }
}

/// Everything one file's bytes depend on.
struct File<'a> {
    seed: u64,
    keys: [u64; 2],
    minute: i64,
    role: VariantRole,
    /// The minute's production and shadow invocations.
    counts: [u64; 2],
    production: &'a OutputModel,
    shadow: &'a OutputModel,
    inference_ids: bool,
}

/// One production request of the minute.
struct Request {
    index: u64,
    second: u32,
    event_id: [u64; 2],
    features: [f64; FEATURES],
    answer: Answer,
}

#[derive(Clone, Copy)]
enum Answer {
    Label { label: usize, score: f64 },
    Prediction(f64),
}

/// Production's requests of a minute in time order. Every request takes
/// the same number of draws whatever the output model, so that changing
/// the model changes answers only, never times, ids or inputs.
struct Requests<'a> {
    draws: Draws,
    model: &'a OutputModel,
    per_second: [u64; 60],
    second: usize,
    index: u64,
    count: u64,
}

impl<'a> Requests<'a> {
    fn new(file: &File<'a>) -> Self {
        let mut draws = Draws::new(
            file.seed,
            file.keys[0],
            file.minute,
            Purpose::CaptureRequests,
        );
        let count = file.counts[0];
        // Seconds first, counted per second, so requests come in time order
        // without holding one entry per request.
        let mut per_second = [0u64; 60];
        for _ in 0..count {
            per_second[(draws.bits() % 60) as usize] += 1;
        }
        Self {
            draws,
            model: file.production,
            per_second,
            second: 0,
            index: 0,
            count,
        }
    }
}

impl Iterator for Requests<'_> {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        if self.index >= self.count {
            return None;
        }
        while self.second < 59 && self.per_second[self.second] == 0 {
            self.second += 1;
        }
        self.per_second[self.second] = self.per_second[self.second].saturating_sub(1);
        let draws = &mut self.draws;
        let event_id = [draws.bits(), draws.bits()];
        let features = std::array::from_fn(|_| draws.normal());
        let (pick, score, z) = (draws.bits(), draws.uniform(), draws.normal());
        let answer = match self.model {
            OutputModel::Classifier { labels, .. } => Answer::Label {
                label: (pick % labels.len().max(1) as u64) as usize,
                score: 0.5 + 0.5 * score,
            },
            OutputModel::Regressor { mean, sd, .. } => Answer::Prediction(mean + sd * z),
        };
        let request = Request {
            index: self.index,
            second: self.second as u32,
            event_id,
            features,
            answer,
        };
        self.index += 1;
        Some(request)
    }
}

impl File<'_> {
    /// The whole file, one JSON line per record.
    fn write<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        let labels = match self.production {
            OutputModel::Classifier { labels, .. } => labels
                .iter()
                .map(|label| json_escape(&format!("{{\"label\":{},\"score\":", quoted(label))))
                .collect(),
            OutputModel::Regressor { .. } => Vec::new(),
        };
        let line = Line {
            time_prefix: minute_start(self.minute)
                .format("%Y-%m-%dT%H:%M:")
                .to_string(),
            minute: self.minute,
            labels,
            inference_ids: self.inference_ids,
        };
        let requests = Requests::new(self);
        match self.role {
            VariantRole::Production => {
                for request in requests {
                    line.write(
                        out,
                        &request,
                        request.second,
                        request.event_id,
                        request.answer,
                    )?;
                }
            }
            VariantRole::Shadow => self.write_copies(out, &line, requests)?,
        }
        Ok(())
    }

    /// The shadow's records: a seeded choice of exactly the minute's shadow
    /// count among production's requests (selection sampling, in order),
    /// each answered from production's answer. A copy takes the same draws
    /// whatever the model, so a change of disagreement rate changes which
    /// answers differ, never which requests were copied.
    fn write_copies<W: fmt::Write>(
        &self,
        out: &mut W,
        line: &Line,
        requests: Requests<'_>,
    ) -> fmt::Result {
        let mut draws = Draws::new(self.seed, self.keys[1], self.minute, Purpose::CaptureCopies);
        let (mut needed, mut remaining) = (self.counts[1].min(self.counts[0]), self.counts[0]);
        for request in requests {
            let selected = draws.uniform() * (remaining as f64) < needed as f64;
            remaining -= 1;
            if !selected {
                continue;
            }
            needed -= 1;
            let event_id = [draws.bits(), draws.bits()];
            let skew = draws.uniform() < SKEW_SHARE && request.second < 59;
            let (stray, other, score, z) = (
                draws.uniform(),
                draws.bits(),
                draws.uniform(),
                draws.normal(),
            );
            let answer = match (request.answer, self.shadow) {
                (Answer::Label { label, .. }, OutputModel::Classifier { labels, disagree })
                    if stray < *disagree && labels.len() > 1 =>
                {
                    let others = labels.len() as u64 - 1;
                    Answer::Label {
                        label: (label + 1 + (other % others) as usize) % labels.len(),
                        score: 0.5 + 0.5 * score,
                    }
                }
                (Answer::Prediction(value), OutputModel::Regressor { noise_sd, .. })
                    if *noise_sd > 0.0 =>
                {
                    Answer::Prediction(value + noise_sd * z)
                }
                (answer, _) => answer,
            };
            line.write(
                out,
                &request,
                request.second + u32::from(skew),
                event_id,
                answer,
            )?;
        }
        Ok(())
    }
}

/// What every line of a file shares.
struct Line {
    /// `yyyy-mm-ddThh:mm:`
    time_prefix: String,
    minute: i64,
    /// Per label, `{"label":<label>,"score":` escaped for a JSON string.
    labels: Vec<String>,
    inference_ids: bool,
}

impl Line {
    fn write<W: fmt::Write>(
        &self,
        out: &mut W,
        request: &Request,
        second: u32,
        event_id: [u64; 2],
        answer: Answer,
    ) -> fmt::Result {
        out.write_str(
            "{\"captureData\":{\"endpointInput\":{\"observedContentType\":\"text/csv\",\"mode\":\"INPUT\",\"data\":\"",
        )?;
        for (i, feature) in request.features.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(out, "{feature:.3}")?;
        }
        out.write_str(
            "\",\"encoding\":\"CSV\"},\"endpointOutput\":{\"observedContentType\":\"application/json\",\"mode\":\"OUTPUT\",\"data\":\"",
        )?;
        match answer {
            Answer::Label { label, score } => {
                out.write_str(self.labels.get(label).map_or("", String::as_str))?;
                write!(out, "{score:.4}}}")?;
            }
            Answer::Prediction(value) => write!(out, "{{\\\"prediction\\\":{value:.6}}}")?,
        }
        out.write_str("\",\"encoding\":\"JSON\"}},\"eventMetadata\":{\"eventId\":\"")?;
        write_uuid(out, event_id)?;
        if self.inference_ids {
            write!(
                out,
                "\",\"inferenceId\":\"req-{}-{}",
                self.minute, request.index
            )?;
        }
        writeln!(
            out,
            "\",\"inferenceTime\":\"{}{second:02}Z\"}},\"eventVersion\":\"0\"}}",
            self.time_prefix
        )
    }
}

/// 128 bits as a version-4 UUID.
fn write_uuid<W: fmt::Write>(out: &mut W, [high, low]: [u64; 2]) -> fmt::Result {
    let high = (high & !0xf000) | 0x4000;
    let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    write!(
        out,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// `text` as a JSON string, quotes included.
fn quoted(text: &str) -> String {
    format!("\"{}\"", json_escape(text))
}

/// `text` escaped for the inside of a JSON string.
fn json_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(escaped, "\\u{:04x}", u32::from(c));
            }
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_survives_a_json_round_trip_twice() {
        for label in ["cat", "a \"quoted\" label", "back\\slash", "tab\tand\u{1}"] {
            let inner = format!("{{\"label\":{},\"score\":0.5}}", quoted(label));
            let outer = format!("\"{}\"", json_escape(&inner));
            let data: String = serde_json::from_str(&outer).unwrap();
            let value: serde_json::Value = serde_json::from_str(&data).unwrap();
            assert_eq!(value["label"], label);
        }
    }

    #[test]
    fn uuids_look_like_version_4() {
        let mut text = String::new();
        write_uuid(&mut text, [u64::MAX, 0]).unwrap();
        assert_eq!(text, "ffffffff-ffff-4fff-8000-000000000000");
    }
}
