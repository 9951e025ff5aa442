//! One capture file: JSON Lines, one inference per line, in the format of
//! SageMaker Data Capture (`captureData.endpointInput/endpointOutput` with
//! `observedContentType`, `mode`, `data` and `encoding`; `eventMetadata`
//! with `eventId`, `inferenceId` when the caller sent one, and
//! `inferenceTime`). A line that cannot be read is reported with its number
//! and skipped: one bad record never costs the file.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// How SageMaker wrote a payload's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The payload as text: a content type listed in CsvContentTypes.
    Csv,
    /// The payload as text: a content type listed in JsonContentTypes.
    Json,
    /// Base64 of the payload's bytes: any other content type.
    Base64,
}

/// A payload after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    /// Base64 that is not text in its charset (an image, `application/x-npy`).
    Bytes(Vec<u8>),
}

impl Body {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Bytes(_) => None,
        }
    }
}

/// One side of an inference (the request or the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `observedContentType`, as captured (`text/csv; charset=utf-8`).
    pub content_type: String,
    pub encoding: Encoding,
    pub body: Body,
}

/// One captured inference of one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    /// SageMaker's own id of the invocation.
    pub event_id: Option<String>,
    /// The caller's InvokeEndpoint `InferenceId`, when it sent one.
    pub inference_id: Option<String>,
    /// Whole seconds in every known sample.
    pub inference_time: DateTime<Utc>,
    pub input: Option<Payload>,
    pub output: Option<Payload>,
}

/// A line of a capture file that is not a usable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based, as editors count.
    pub line: usize,
    pub problem: String,
}

/// What one capture file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFile {
    pub records: Vec<CaptureRecord>,
    pub problems: Vec<LineProblem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    capture_data: RawCaptureData,
    event_metadata: RawMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCaptureData {
    endpoint_input: Option<RawPayload>,
    endpoint_output: Option<RawPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload {
    #[serde(default)]
    observed_content_type: String,
    data: String,
    encoding: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    event_id: Option<String>,
    inference_id: Option<String>,
    inference_time: String,
}

/// Reads every line; blank lines are not records and not problems.
pub fn parse_lines(text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_record(line) {
            Ok(record) => parsed.records.push(record),
            Err(problem) => parsed.problems.push(LineProblem {
                line: index + 1,
                problem,
            }),
        }
    }
    parsed
}

/// One line as a record, or what is wrong with it (naming the field).
pub fn parse_record(line: &str) -> Result<CaptureRecord, String> {
    let raw: RawRecord =
        serde_json::from_str(line).map_err(|error| format!("not a capture record: {error}"))?;
    let inference_time = DateTime::parse_from_rfc3339(&raw.event_metadata.inference_time)
        .map_err(|error| {
            format!(
                "eventMetadata.inferenceTime {:?} is not an RFC 3339 time: {error}",
                raw.event_metadata.inference_time
            )
        })?
        .with_timezone(&Utc);
    let decode = |field: &str, payload: Option<RawPayload>| {
        payload
            .map(|p| decode_payload(p).map_err(|problem| format!("captureData.{field}: {problem}")))
            .transpose()
    };
    Ok(CaptureRecord {
        event_id: raw.event_metadata.event_id.filter(|id| !id.is_empty()),
        inference_id: raw.event_metadata.inference_id.filter(|id| !id.is_empty()),
        inference_time,
        input: decode("endpointInput", raw.capture_data.endpoint_input)?,
        output: decode("endpointOutput", raw.capture_data.endpoint_output)?,
    })
}

fn decode_payload(raw: RawPayload) -> Result<Payload, String> {
    let encoding = match raw.encoding.to_ascii_uppercase().as_str() {
        "CSV" => Encoding::Csv,
        "JSON" => Encoding::Json,
        "BASE64" => Encoding::Base64,
        other => return Err(format!("encoding {other:?} is not CSV, JSON or BASE64")),
    };
    let body = match encoding {
        // Already text: the JSON line carried it as a string.
        Encoding::Csv | Encoding::Json => Body::Text(raw.data),
        Encoding::Base64 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.data.trim())
                .map_err(|error| format!("data is not base64: {error}"))?;
            text_in_charset(bytes, charset(&raw.observed_content_type))
        }
    };
    Ok(Payload {
        content_type: raw.observed_content_type,
        encoding,
        body,
    })
}

/// The `charset` parameter of a content type, lower-cased.
fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// Bytes as text when their charset says how (UTF-8 by default, as JSON and
/// CSV are written today; Latin-1 maps byte for byte), else kept as bytes.
fn text_in_charset(bytes: Vec<u8>, charset: Option<String>) -> Body {
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii" | "ascii") => match String::from_utf8(bytes) {
            Ok(text) => Body::Text(text),
            Err(error) => Body::Bytes(error.into_bytes()),
        },
        Some("iso-8859-1" | "latin1" | "latin-1") => {
            Body::Text(bytes.iter().map(|b| char::from(*b)).collect())
        }
        Some(_) => Body::Bytes(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_are_read_from_the_content_type() {
        assert_eq!(charset("text/csv; charset=utf-8").as_deref(), Some("utf-8"));
        assert_eq!(
            charset("text/csv;Charset=\"ISO-8859-1\"").as_deref(),
            Some("iso-8859-1")
        );
        assert_eq!(charset("application/json"), None);
        assert_eq!(
            text_in_charset(vec![0x63, 0x61, 0x66, 0xe9], Some("iso-8859-1".into())),
            Body::Text("café".into())
        );
        assert_eq!(
            text_in_charset(vec![0xff, 0x00], None),
            Body::Bytes(vec![0xff, 0x00])
        );
        assert_eq!(
            text_in_charset(b"a".to_vec(), Some("utf-16".into())),
            Body::Bytes(b"a".to_vec())
        );
    }
}
