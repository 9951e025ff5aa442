//! Reading capture over the port, on an in-memory S3: prefixes, the span,
//! caps, the nested sample, typed denials, and the agreement report.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use shadowpilot_core::capture::read::{read_variant, Destination, ReadLimits, VariantRead};
use shadowpilot_core::capture::report::{
    agreement_report, AgreementReport, CheckState, CompareOptions,
};
use shadowpilot_core::ports::{CaptureError, CaptureObject, CaptureSource};
use shadowpilot_core::report::agreement::agreement_text;
use shadowpilot_core::stats::Decision;

#[derive(Default)]
struct MemoryS3 {
    objects: BTreeMap<(String, String), Vec<u8>>,
    /// Keys whose GetObject KMS refuses.
    kms_denied: Vec<String>,
    deny_list: bool,
    listed: Mutex<Vec<String>>,
}

#[async_trait]
impl CaptureSource for MemoryS3 {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError> {
        self.listed.lock().unwrap().push(prefix.to_string());
        if self.deny_list {
            return Err(CaptureError::AccessDenied {
                operation: "ListObjectsV2",
                bucket: bucket.into(),
                key: prefix.into(),
                source: "AccessDenied".into(),
            });
        }
        Ok(self
            .objects
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), v)| CaptureObject {
                key: k.clone(),
                size: v.len() as u64,
            })
            .rev() // the reader must sort
            .collect())
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CaptureError> {
        if self.kms_denied.iter().any(|k| k == key) {
            return Err(CaptureError::KmsAccessDenied {
                bucket: bucket.into(),
                key: key.into(),
                source: "KMS.AccessDeniedException".into(),
            });
        }
        let bytes = self.objects[&(bucket.to_string(), key.to_string())].clone();
        if bytes.len() as u64 > max_bytes {
            return Err(CaptureError::TooLarge {
                bucket: bucket.into(),
                key: key.into(),
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(bytes)
    }
}

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 23, 0, 0).unwrap() + Duration::minutes(minute)
}

fn line(id: &str, at: DateTime<Utc>, output: &str) -> String {
    serde_json::json!({
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2", "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": output, "encoding": "JSON"}
        },
        "eventMetadata": {"eventId": format!("e-{id}"), "inferenceId": id, "inferenceTime": at.to_rfc3339()},
        "eventVersion": "0"
    })
    .to_string()
}

/// One file per variant and minute, from `from` for `minutes`, `per_minute`
/// requests each; the shadow disagrees on every `disagree_every`-th.
fn fill(s3: &mut MemoryS3, prefix: &str, minutes: i64, per_minute: usize, disagree_every: usize) {
    for minute in 0..minutes {
        let at = t(minute);
        for (variant, flip) in [("prod", false), ("shadow", true)] {
            let lines: Vec<String> = (0..per_minute)
                .map(|i| {
                    let id = format!("r{minute}-{i}");
                    let n = minute as usize * per_minute + i;
                    let label = if flip && disagree_every > 0 && n % disagree_every == 0 {
                        1
                    } else {
                        0
                    };
                    line(
                        &id,
                        at + Duration::seconds(i as i64 % 60),
                        &format!("{{\"label\":{label}}}"),
                    )
                })
                .collect();
            let key = format!(
                "{prefix}ep/{variant}/{}/{:02}-00-000-{minute}.jsonl",
                at.format("%Y/%m/%d/%H"),
                at.format("%M")
            );
            s3.objects.insert(
                ("bucket".into(), key),
                (lines.join("\n") + "\n").into_bytes(),
            );
        }
    }
}

const WIDE: ReadLimits = ReadLimits {
    max_records: 1_000_000,
    max_bytes: 1 << 30,
};

#[test]
fn destinations_join_with_exactly_one_slash() {
    for (value, bucket, prefix) in [
        ("s3://b/capture", "b", "capture"),
        ("s3://b/capture/", "b", "capture"),
        ("s3://b/a/b//", "b", "a/b"),
        ("s3://b", "b", ""),
        ("s3://b/", "b", ""),
    ] {
        let d = Destination::parse(value).unwrap();
        assert_eq!(
            (d.bucket.as_str(), d.prefix.as_str()),
            (bucket, prefix),
            "{value}"
        );
    }
    assert_eq!(
        Destination::parse("s3://b/capture/")
            .unwrap()
            .variant_prefix("ep", "AllTraffic"),
        "capture/ep/AllTraffic/"
    );
    assert_eq!(
        Destination::parse("s3://b")
            .unwrap()
            .variant_prefix("ep", "v"),
        "ep/v/"
    );
    for bad in ["b/capture", "s3://", "s3:///x", "https://b/x"] {
        let error = Destination::parse(bad).unwrap_err().to_string();
        assert!(error.contains(&format!("{bad:?}")), "{error}");
    }
    let d = Destination::parse("s3://b/c").unwrap();
    assert_eq!(
        d.hour_prefixes("ep", "v", t(-5), t(61)),
        [
            "c/ep/v/2026/03/02/22/",
            "c/ep/v/2026/03/02/23/",
            "c/ep/v/2026/03/03/00/"
        ]
    );
}

#[tokio::test]
async fn a_span_is_read_oldest_first_and_the_caps_say_so() {
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "c/", 90, 10, 0);
    let d = Destination::parse("s3://bucket/c").unwrap();
    let read = read_variant(&s3, &d, "ep", "shadow", (t(10), t(70)), 1.0, WIDE, None)
        .await
        .unwrap();
    assert_eq!(read.records.len(), 600);
    assert!(!read.capped);
    assert!(read
        .records
        .windows(2)
        .all(|w| w[0].inference_time <= w[1].inference_time));
    assert_eq!(
        s3.listed.lock().unwrap().as_slice(),
        ["c/ep/shadow/2026/03/02/23/", "c/ep/shadow/2026/03/03/00/"]
    );

    let capped = read_variant(
        &s3,
        &d,
        "ep",
        "shadow",
        (t(10), t(70)),
        1.0,
        ReadLimits {
            max_records: 250,
            max_bytes: 1 << 30,
        },
        None,
    )
    .await
    .unwrap();
    assert!(capped.capped);
    assert_eq!(capped.records.len(), 250);
    // The oldest 250: a prefix of the uncapped reading.
    assert_eq!(capped.records[..], read.records[..250]);

    let by_bytes = read_variant(
        &s3,
        &d,
        "ep",
        "shadow",
        (t(0), t(90)),
        1.0,
        ReadLimits {
            max_records: 1_000_000,
            max_bytes: 20_000,
        },
        None,
    )
    .await
    .unwrap();
    assert!(by_bytes.capped && by_bytes.bytes <= 20_000);
}

#[tokio::test]
async fn the_sample_is_nested_and_keeps_pairs_together() {
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "", 30, 20, 0);
    let d = Destination::parse("s3://bucket").unwrap();
    let span = (t(0), t(30));
    let half = read_variant(&s3, &d, "ep", "shadow", span, 0.5, WIDE, None)
        .await
        .unwrap();
    let quarter = read_variant(&s3, &d, "ep", "shadow", span, 0.25, WIDE, None)
        .await
        .unwrap();
    let production = read_variant(&s3, &d, "ep", "prod", span, 0.5, WIDE, None)
        .await
        .unwrap();
    let ids = |r: &shadowpilot_core::capture::read::VariantRead| -> Vec<String> {
        r.records
            .iter()
            .map(|x| x.inference_id.clone().unwrap())
            .collect()
    };
    assert!(
        ids(&quarter).iter().all(|id| ids(&half).contains(id)),
        "nested"
    );
    assert_eq!(ids(&half), ids(&production), "the same keys on both sides");
    assert_eq!(half.records.len() as u64 + half.outside_sample, 600);
    assert!(
        (250..350).contains(&half.records.len()),
        "{}",
        half.records.len()
    );
}

#[tokio::test]
async fn an_object_larger_than_what_is_left_stops_the_reading_as_capped() {
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "", 3, 5, 0);
    let d = Destination::parse("s3://bucket").unwrap();
    // The listing's sizes say nothing (0), as a listing without sizes
    // would: the byte cap is met at GetObject.
    struct Sizeless<'a>(&'a MemoryS3);
    #[async_trait]
    impl CaptureSource for Sizeless<'_> {
        async fn list(
            &self,
            bucket: &str,
            prefix: &str,
        ) -> Result<Vec<CaptureObject>, CaptureError> {
            let mut objects = self.0.list(bucket, prefix).await?;
            objects.iter_mut().for_each(|o| o.size = 0);
            Ok(objects)
        }
        async fn get(&self, bucket: &str, key: &str, max: u64) -> Result<Vec<u8>, CaptureError> {
            self.0.get(bucket, key, max).await
        }
    }
    let one_file = s3.objects.values().next().unwrap().len() as u64;
    let read = read_variant(
        &Sizeless(&s3),
        &d,
        "ep",
        "shadow",
        (t(0), t(3)),
        1.0,
        ReadLimits {
            max_records: 1_000,
            max_bytes: one_file + one_file / 2,
        },
        None,
    )
    .await
    .unwrap();
    assert!(read.capped);
    assert_eq!(read.objects, 1);
    assert_eq!(read.records.len(), 5);
}

#[tokio::test]
async fn denials_are_typed_for_the_report() {
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "", 2, 1, 0);
    let d = Destination::parse("s3://bucket").unwrap();
    let denied_key = s3
        .objects
        .keys()
        .find(|(_, k)| k.contains("/shadow/"))
        .unwrap()
        .1
        .clone();
    s3.kms_denied.push(denied_key.clone());
    let error = read_variant(&s3, &d, "ep", "shadow", (t(0), t(2)), 1.0, WIDE, None)
        .await
        .unwrap_err();
    assert!(matches!(&error, CaptureError::KmsAccessDenied { key, .. } if *key == denied_key));
    assert!(
        error.to_string().contains("KMS refused to decrypt"),
        "{error}"
    );

    s3.deny_list = true;
    let error = read_variant(&s3, &d, "ep", "prod", (t(0), t(2)), 1.0, WIDE, None)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CaptureError::AccessDenied {
            operation: "ListObjectsV2",
            ..
        }
    ));
}

/// [`fill`]'s world, both its variants read whole, and their report.
async fn read_and_compare(
    minutes: i64,
    per_minute: usize,
    disagree_every: usize,
) -> (MemoryS3, VariantRead, VariantRead, AgreementReport) {
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "", minutes, per_minute, disagree_every);
    let d = Destination::parse("s3://bucket").unwrap();
    let span = (t(0), t(minutes));
    let shadow = read_variant(&s3, &d, "ep", "shadow", span, 1.0, WIDE, None)
        .await
        .unwrap();
    let production = read_variant(&s3, &d, "ep", "prod", span, 1.0, WIDE, None)
        .await
        .unwrap();
    let report = agreement_report(&shadow, &production, &CompareOptions::default());
    (s3, shadow, production, report)
}

#[tokio::test]
async fn the_agreement_line_shows_the_relation_its_decision_has_to_the_limit() {
    // (minutes, requests a minute, disagree every n-th) → the words.
    for (minutes, per_minute, disagree_every, words) in [
        (60, 50, 0, "] ≥ 99.00 % (pass, 3000 pairs)"),
        (60, 50, 20, "] < 99.00 % (fail, 3000 pairs)"),
        (2, 50, 0, "] vs 99.00 % (inconclusive, 100 pairs)"),
    ] {
        let (_, _, _, report) = read_and_compare(minutes, per_minute, disagree_every).await;
        let text = agreement_text(&report);
        assert!(text.contains(words), "{words}: {text}");
    }
}

#[tokio::test]
async fn a_shadow_disagreeing_on_one_request_in_twenty_fails_agreement() {
    let (s3, shadow, production, report) = read_and_compare(60, 50, 20).await;
    assert_eq!(report.pairs, 3000);
    assert_eq!((report.counts.agree, report.counts.disagree), (2850, 150));
    assert_eq!(report.checks[0].decision(), Some(Decision::Fail));
    assert_eq!(report.examples.len(), 5);
    assert_eq!(report.examples[0].shadow, r#"{"label":1}"#);
    assert_eq!(report.examples[0].production, r#"{"label":0}"#);
    let text = agreement_text(&report);
    assert!(text.contains("agreement 95.00 % [93.79, 96.21]"), "{text}");
    assert!(text.contains("< 99.00 % (fail, 3000 pairs)"), "{text}");
    assert!(text.contains("eventId"), "{text}");

    // A shadow with records whose production copies are missing: the
    // pairing rate is under 90 %, and the check is never a pass.
    let mut thin = production.clone();
    thin.records.truncate(2000);
    let report = agreement_report(&shadow, &thin, &CompareOptions::default());
    assert!(matches!(
        report.checks[0].state,
        CheckState::TooFewPaired { .. }
    ));
    assert!(agreement_text(&report).contains("of shadow records paired, under the 90 %"));

    // Nothing under the shadow's prefix is said so, by prefix.
    let d = Destination::parse("s3://bucket").unwrap();
    let span = (t(0), t(60));
    let empty = read_variant(&s3, &d, "ep", "Shadow-01", span, 1.0, WIDE, None)
        .await
        .unwrap();
    let report = agreement_report(&empty, &production, &CompareOptions::default());
    assert!(
        agreement_text(&report).contains("shadow: no records under s3://bucket/ep/Shadow-01/"),
        "{}",
        agreement_text(&report)
    );
}

#[tokio::test]
async fn compare_reads_the_experiments_own_destination_and_variants() {
    use shadowpilot_core::capture::{compare_experiment, CompareError};
    use shadowpilot_core::experiment::CaptureConfig;
    let mut s3 = MemoryS3::default();
    fill(&mut s3, "shadow-tests/", 60, 30, 20);
    let mut e = common::experiment("churn", 25);
    e.endpoint_name = "ep".into();
    e.production_variant = "prod".into();
    e.shadow_variant = "shadow".into();
    e.capture = Some(CaptureConfig {
        destination: "s3://bucket/shadow-tests/".into(),
        kms_key: None,
    });
    let mut uncaptured = common::experiment("plain", 25);
    uncaptured.capture = None;
    let store = common::FakeStore::new([e, uncaptured]);
    let limits = WIDE;
    let (report, (from, to)) =
        compare_experiment(&store, &s3, "churn", t(0), t(65), limits, |_| {
            CompareOptions::default()
        })
        .await
        .unwrap();
    // The newest five minutes are left out: capture lands late.
    assert_eq!((from, to), (t(0), t(60)));
    assert_eq!(report.pairs, 1800);
    assert_eq!(report.counts.disagree, 90);
    assert_eq!(report.checks[0].decision(), Some(Decision::Fail));
    assert!(report
        .shadow
        .prefix
        .ends_with("s3://bucket/shadow-tests/ep/shadow/"));

    let error = compare_experiment(&store, &s3, "plain", t(0), t(65), limits, |_| {
        CompareOptions::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(error, CompareError::NoCapture { .. }), "{error}");
    assert!(error.to_string().contains("has no DataStorageConfig"));
}
