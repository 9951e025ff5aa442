//! What reading one experiment's capture costs a tick at the default caps
//! (10 000 records and 16 MiB per variant), on an in-memory S3 so that
//! only parsing, sampling, pairing and comparing are timed. The Lambda's
//! CPU is a fraction of this machine's core (256 MB gets about 0.15 vCPU),
//! so a tick spends several times what this measures per experiment read.
//!
//! ```sh
//! cargo bench -p shadowpilot-core --bench capture
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shadowpilot_core::capture::read::{
    pairing_keys, read_keeping, read_variant, Destination, ReadLimits,
};
use shadowpilot_core::capture::report::{agreement_report, CompareOptions};
use shadowpilot_core::ports::{CaptureError, CaptureObject, CaptureSource};

const PRODUCTION_PER_MINUTE: usize = 1000;
const SAMPLING_PERCENT: usize = 10;
const MINUTES: i64 = 120;

struct MemoryS3(BTreeMap<String, Vec<u8>>);

#[async_trait]
impl CaptureSource for MemoryS3 {
    async fn list(&self, _: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError> {
        Ok(self
            .0
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, bytes)| CaptureObject {
                key: key.clone(),
                size: bytes.len() as u64,
            })
            .collect())
    }

    async fn get(&self, _: &str, key: &str, _: u64) -> Result<Vec<u8>, CaptureError> {
        Ok(self.0[key].clone())
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap()
}

/// A record the size of a small tabular model's: a BASE64 CSV row in, a
/// label with its scores out (about 700 bytes a line).
fn line(id: &str, at: DateTime<Utc>, label: &str) -> String {
    let row: String = (0..40).map(|i| format!("{}.{:03},", i, i * 7)).collect();
    let input = base64::engine::general_purpose::STANDARD.encode(row);
    serde_json::json!({
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": input, "encoding": "BASE64"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                "data": format!("{{\"label\":\"{label}\",\"scores\":[0.91,0.05,0.04]}}"), "encoding": "JSON"}
        },
        "eventMetadata": {"eventId": format!("e-{id}"), "inferenceId": id, "inferenceTime": at.to_rfc3339()},
        "eventVersion": "0"
    })
    .to_string()
}

/// Two hours of both variants' files, a file per variant and minute.
fn world() -> MemoryS3 {
    let mut objects = BTreeMap::new();
    for minute in 0..MINUTES {
        let at = start() + Duration::minutes(minute);
        let hour = at.format("%Y/%m/%d/%H");
        let mut production = String::new();
        let mut shadow = String::new();
        for i in 0..PRODUCTION_PER_MINUTE {
            let id = format!("r{minute}-{i}");
            let when = at + Duration::milliseconds((i * 60) as i64);
            production.push_str(&line(&id, when, "cat"));
            production.push('\n');
            if i % (100 / SAMPLING_PERCENT) == 0 {
                let label = if i % 200 == 0 { "dog" } else { "cat" };
                shadow.push_str(&line(&id, when, label));
                shadow.push('\n');
            }
        }
        let file = at.format("%M-00-000-bench.jsonl");
        objects.insert(
            format!("c/ep/production/{hour}/{file}"),
            production.into_bytes(),
        );
        objects.insert(format!("c/ep/shadow/{hour}/{file}"), shadow.into_bytes());
    }
    MemoryS3(objects)
}

fn read_and_compare_at_the_caps(c: &mut Criterion) {
    let s3 = world();
    let destination = Destination::parse("s3://bucket/c").unwrap();
    let span = (start(), start() + Duration::minutes(MINUTES));
    let limits = ReadLimits {
        max_records: 10_000,
        max_bytes: 16 * 1024 * 1024,
    };
    let options = CompareOptions::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let read = || async {
        let shadow = read_variant(&s3, &destination, "ep", "shadow", span, 1.0, limits, None)
            .await
            .unwrap();
        let keys = pairing_keys(&shadow);
        let production = read_keeping(
            &s3,
            &destination,
            "ep",
            "production",
            span,
            1.0,
            limits,
            None,
            Some(&keys),
        )
        .await
        .unwrap();
        (shadow, production)
    };
    let (shadow, production) = runtime.block_on(read());
    let report = agreement_report(&shadow, &production, &options);
    eprintln!(
        "per tick: shadow {} records / {} bytes{}, production {} kept of {} bytes{}, {} pairs, pairing rate {:?} over the common span",
        shadow.records.len(),
        shadow.bytes,
        if shadow.capped { " (capped)" } else { "" },
        production.records.len(),
        production.bytes,
        if production.capped { " (capped)" } else { "" },
        report.pairs,
        report.pairing_rate
    );
    let mut group = c.benchmark_group("capture");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(shadow.bytes + production.bytes));
    group.bench_function("read both variants at the default caps", |b| {
        b.iter(|| runtime.block_on(read()))
    });
    group.throughput(Throughput::Elements(report.pairs as u64));
    group.bench_function("pair and compare what was read", |b| {
        b.iter(|| agreement_report(&shadow, &production, &options))
    });
    group.finish();
}

criterion_group!(benches, read_and_compare_at_the_caps);
criterion_main!(benches);
