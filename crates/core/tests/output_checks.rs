//! The output checks end to end over the ports: a capture source that
//! serves both variants' JSON Lines files minute by minute, the controller
//! reading the step's capture each tick, and what it then wrote. Latency
//! and errors are healthy throughout, so whatever happens is the outputs'.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use common::{experiment, sampled, t0, FakeMetrics, FakeStore};
use shadowpilot_core::capture::read::VariantRead;
use shadowpilot_core::capture::record::parse_lines;
use shadowpilot_core::capture::report::{agreement_report, CheckState, CompareOptions};
use shadowpilot_core::capture::sample::key_position;
use shadowpilot_core::controller::{Budget, Controller, RunOptions};
use shadowpilot_core::experiment::{CaptureConfig, Experiment, FAILED_TAG, POLICY_TAG};
use shadowpilot_core::judge::{Outcome, Reason};
use shadowpilot_core::plan::Attention;
use shadowpilot_core::policy::{parse_policy, CheckMetric, PolicySet};
use shadowpilot_core::ports::{CaptureError, CaptureObject, CaptureSource};
use shadowpilot_core::report::emf::{self, TickFacts};
use shadowpilot_core::report::{Disposition, ErrorKind, Report, RunVerdict, VerdictKind};

const TICK: i64 = 10;
const BUCKET: &str = "capture";
/// Production's requests a minute in the capture (CloudWatch's fake
/// counts are its own; only the capture is read for outputs).
const PRODUCTION_PER_MINUTE: u64 = 100;

/// Healthy latency and error limits, and output agreement of 99 %.
fn policies(outputs: &str) -> PolicySet {
    let policy = parse_policy(
        "t.yaml",
        &format!(
            "name: outputs\nchecks:\n  - metric: error_rate_5xx\n    max: 1.0\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\n  - metric: output_agreement\n    min: 99\noutputs:\n  compare:\n    pointer: /label\n  max_records: 1000000\n{outputs}ramp:\n  steps: [20, 50, 100]\n  bake_time: 15m\n  evidence_ramps: true\n"
        ),
    )
    .unwrap();
    PolicySet::new(vec![policy]).unwrap()
}

/// How one experiment's shadow answers.
#[derive(Clone, Copy)]
struct Answers {
    /// Share of requests whose label differs from production's.
    disagree: f64,
    /// Callers send InferenceId.
    inference_ids: bool,
}

/// Serves, for every minute up to the clock minus a delivery delay, one
/// file per variant: production's requests, and the shadow's copies of the
/// share the sampling in force sent it, labels decided by a hash of the
/// request so that every read gives the same bytes.
struct MinuteCapture {
    store: Arc<FakeStore>,
    answers: Vec<(String, Answers)>,
    /// Experiments whose objects KMS refuses to decrypt.
    denied: Vec<String>,
    now: Mutex<DateTime<Utc>>,
    gets: Mutex<u64>,
}

fn line(id: Option<&str>, event: &str, at: DateTime<Utc>, label: &str) -> String {
    let metadata = match id {
        Some(id) => format!(
            r#"{{"eventId":"{event}","inferenceId":"{id}","inferenceTime":"{}"}}"#,
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        None => format!(
            r#"{{"eventId":"{event}","inferenceTime":"{}"}}"#,
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    };
    format!(
        r#"{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT","data":"1,2","encoding":"CSV"}},"endpointOutput":{{"observedContentType":"application/json","mode":"OUTPUT","data":"{{\"label\":\"{label}\",\"score\":0.9}}","encoding":"JSON"}}}},"eventMetadata":{metadata},"eventVersion":"0"}}"#
    )
}

impl MinuteCapture {
    fn new(store: Arc<FakeStore>, answers: Vec<(String, Answers)>) -> Self {
        Self {
            store,
            answers,
            denied: Vec::new(),
            now: Mutex::new(t0()),
            gets: Mutex::new(0),
        }
    }

    fn set_now(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap() = now;
    }

    /// `<experiment>-endpoint/<variant>/yyyy/mm/dd/hh/MM-00-000-f.jsonl`.
    fn key(name: &str, variant: &str, minute: DateTime<Utc>) -> String {
        format!(
            "tests/{name}-endpoint/{variant}/{}/{:02}-00-000-f.jsonl",
            minute.format("%Y/%m/%d/%H"),
            minute.minute()
        )
    }

    fn file(&self, name: &str, variant: &str, minute: DateTime<Utc>) -> String {
        let answers = self
            .answers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap();
        let share = f64::from(self.store.sampling_at(name, minute)) / 100.0;
        let mut lines = Vec::new();
        for i in 0..PRODUCTION_PER_MINUTE {
            let id = format!("{name}-{}-{i}", minute.timestamp() / 60);
            let at = minute + Duration::seconds((i % 60) as i64);
            let label =
                ["cat", "dog", "bird"][(key_position(&format!("label{id}")) * 3.0) as usize];
            if variant == "production" {
                lines.push(line(Some(&id), &format!("p-{id}"), at, label));
            } else if key_position(&format!("copy{id}")) < share {
                let shadow_label = if key_position(&format!("flip{id}")) < answers.disagree {
                    if label == "cat" {
                        "dog"
                    } else {
                        "cat"
                    }
                } else {
                    label
                };
                let id = answers.inference_ids.then_some(id.as_str());
                lines.push(line(id, &format!("s-{}", lines.len()), at, shadow_label));
            }
        }
        lines.join("\n") + "\n"
    }

    fn delivered(&self, minute: DateTime<Utc>) -> bool {
        minute + Duration::minutes(1) + Duration::minutes(2) <= *self.now.lock().unwrap()
    }
}

fn parse_key(key: &str) -> Option<(String, String, DateTime<Utc>)> {
    let rest = key.strip_prefix("tests/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [endpoint, variant, y, m, d, h, file] = parts[..] else {
        return None;
    };
    let name = endpoint.strip_suffix("-endpoint")?.to_string();
    let minute: u32 = file.get(0..2)?.parse().ok()?;
    let at = format!("{y}-{m}-{d}T{h}:{minute:02}:00Z");
    Some((
        name,
        variant.to_string(),
        DateTime::parse_from_rfc3339(&at).ok()?.with_timezone(&Utc),
    ))
}

#[async_trait]
impl CaptureSource for MinuteCapture {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError> {
        assert_eq!(bucket, BUCKET);
        // The hour prefix the reader asks for: every delivered minute of it.
        let probe = format!("{prefix}00-00-000-f.jsonl");
        let Some((name, variant, hour)) = parse_key(&probe) else {
            return Ok(Vec::new());
        };
        Ok((0..60)
            .map(|m| hour + Duration::minutes(m))
            .filter(|minute| self.delivered(*minute))
            .map(|minute| {
                let key = Self::key(&name, &variant, minute);
                let size = self.file(&name, &variant, minute).len() as u64;
                CaptureObject { key, size }
            })
            .collect())
    }

    async fn get(&self, _: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CaptureError> {
        *self.gets.lock().unwrap() += 1;
        let (name, variant, minute) = parse_key(key).unwrap();
        if self.denied.contains(&name) {
            return Err(CaptureError::KmsAccessDenied {
                bucket: BUCKET.into(),
                key: key.into(),
                source: "User is not authorized to perform: kms:Decrypt".into(),
            });
        }
        let bytes = self.file(&name, &variant, minute).into_bytes();
        if bytes.len() as u64 > max_bytes {
            return Err(CaptureError::TooLarge {
                bucket: BUCKET.into(),
                key: key.into(),
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(bytes)
    }
}

fn captured(name: &str, sampling: u8) -> Experiment {
    let mut experiment = experiment(name, sampling);
    experiment
        .tags
        .insert(POLICY_TAG.to_string(), "outputs".to_string());
    experiment.capture = Some(CaptureConfig {
        destination: format!("s3://{BUCKET}/tests/"),
        kms_key: None,
    });
    experiment
}

struct World {
    store: Arc<FakeStore>,
    metrics: FakeMetrics,
    capture: MinuteCapture,
    policies: PolicySet,
}

impl World {
    fn new(experiments: Vec<(Experiment, Answers)>, outputs: &str) -> Self {
        let answers = experiments
            .iter()
            .map(|(e, a)| (e.name.clone(), *a))
            .collect();
        let (store, metrics) = sampled(experiments.into_iter().map(|(e, _)| e));
        let capture = MinuteCapture::new(Arc::clone(&store), answers);
        Self {
            store,
            metrics,
            capture,
            policies: policies(outputs),
        }
    }

    fn denying(mut self, name: &str) -> Self {
        self.capture.denied.push(name.to_string());
        self
    }

    async fn tick(&self, now: DateTime<Utc>, options: &RunOptions) -> Report {
        self.store.set_now(now);
        self.capture.set_now(now);
        Controller::new(&*self.store, &self.metrics, &self.policies)
            .with_capture(&self.capture)
            .run_tick(options, now, now + Duration::minutes(TICK))
            .await
            .expect("tick")
    }
}

fn live() -> RunOptions {
    RunOptions::default()
}

fn output_check<'a>(report: &'a Report, name: &str) -> &'a shadowpilot_core::judge::CheckResult {
    let entry = report.experiments.iter().find(|e| e.name == name).unwrap();
    let Disposition::Steered(steered) = &entry.disposition else {
        panic!("{name} not steered: {:?}", entry.disposition);
    };
    steered
        .verdict
        .checks
        .iter()
        .find(|c| c.id.as_str() == "output_agreement")
        .unwrap()
}

fn percentages(store: &FakeStore, name: &str) -> Vec<u8> {
    store
        .updates()
        .iter()
        .filter(|(_, u)| u.name == name)
        .filter_map(|(_, u)| u.sampling.as_ref().map(|s| s.percentage))
        .collect()
}

const AGREES: Answers = Answers {
    disagree: 0.0,
    inference_ids: true,
};

#[tokio::test]
async fn a_shadow_that_disagrees_is_failed_on_agreement_alone_and_one_that_agrees_climbs() {
    let world = World::new(
        vec![
            (
                captured("flips", 20),
                Answers {
                    disagree: 0.05,
                    inference_ids: true,
                },
            ),
            (captured("agrees", 20), AGREES),
        ],
        "",
    );
    let mut now = t0();
    let mut failed_message = None;
    // At 20 pairs a minute the disagreeing shadow fails after about an
    // hour; the agreeing one passes each step and reaches 100 % in two.
    for _ in 0..(5 * 3) {
        now += Duration::minutes(TICK);
        let report = world.tick(now, &live()).await;
        let check = output_check(&report, "flips");
        if check.outcome == Outcome::Fail && failed_message.is_none() {
            failed_message = Some(check.to_string());
            // Every other check is healthy: the agreement alone failed it.
            let entry = report
                .experiments
                .iter()
                .find(|e| e.name == "flips")
                .unwrap();
            let Disposition::Steered(steered) = &entry.disposition else {
                unreachable!()
            };
            assert!(steered
                .verdict
                .checks
                .iter()
                .filter(|c| c.id.as_str() != "output_agreement")
                .all(|c| c.outcome != Outcome::Fail));
        }
    }
    let message = failed_message.expect("the disagreeing shadow failed");
    // `output agreement 94.80 [93.10, 96.20] % < 99.00 (fail)`.
    assert!(message.starts_with("output agreement "), "{message}");
    assert!(message.contains(" % < 99.00 (fail"), "{message}");
    let flips = world.store.get("flips");
    assert!(
        flips.tags[FAILED_TAG].starts_with("output_agreement@"),
        "{:?}",
        flips.tags
    );
    let down = percentages(&world.store, "flips");
    assert!(!down.is_empty() && down.iter().all(|p| *p < 20), "{down:?}");
    assert_eq!(percentages(&world.store, "agrees"), [50, 100]);
}

#[tokio::test]
async fn no_capture_or_no_inference_ids_never_ramp_nor_extend_and_say_why() {
    // Both end within the extension margin during the run: an experiment
    // that can never decide is reported undecidable, not kept alive.
    let ends = t0() + Duration::hours(5);
    let mut uncaptured = experiment("blind", 20);
    uncaptured
        .tags
        .insert(POLICY_TAG.to_string(), "outputs".to_string());
    uncaptured.end_time = Some(ends);
    let mut anonymous = captured("anonymous", 20);
    anonymous.end_time = Some(ends);
    let world = World::new(
        vec![
            (uncaptured, AGREES),
            (
                anonymous,
                Answers {
                    disagree: 0.0,
                    inference_ids: false,
                },
            ),
        ],
        "",
    );
    let mut now = t0();
    let mut last = None;
    for _ in 0..(4 * 6) {
        now += Duration::minutes(TICK);
        last = Some(world.tick(now, &live()).await);
    }
    let report = last.unwrap();
    let blind = output_check(&report, "blind");
    assert_eq!(blind.reason, Some(Reason::NoCapture));
    assert!(
        blind.to_string().contains("no DataStorageConfig"),
        "{blind}"
    );
    let anonymous = output_check(&report, "anonymous");
    // eventIds differ between the copies, so nothing pairs.
    assert!(
        matches!(anonymous.reason, Some(Reason::TooFewPaired { rate, min, shadow_records }) if rate == 0.0 && min == 0.9 && shadow_records >= 100),
        "{:?}",
        anonymous.reason
    );
    assert!(anonymous.to_string().contains("InferenceId"), "{anonymous}");
    for (name, why) in [
        (
            "blind",
            "output_agreement can never decide: the experiment has no DataStorageConfig",
        ),
        ("anonymous", "output_agreement can never decide: none of "),
    ] {
        assert!(percentages(&world.store, name).is_empty(), "{name}");
        let extended = world
            .store
            .updates()
            .iter()
            .any(|(_, u)| u.name == name && u.end_time.is_some());
        assert!(!extended, "{name} was extended");
        let entry = report.experiments.iter().find(|e| e.name == name).unwrap();
        assert_eq!(entry.attention(), [Attention::Undecidable], "{name}");
        let reason = entry.reason();
        assert!(reason.contains(why), "{name}: {reason}");
        assert!(reason.contains("not extended"), "{name}: {reason}");
    }
}

#[tokio::test]
async fn a_denied_capture_is_an_access_denied_error_in_the_summary_the_exit_code_and_the_alarms() {
    let world = World::new(
        vec![
            (captured("locked", 20), AGREES),
            (captured("open", 20), AGREES),
        ],
        "",
    )
    .denying("locked");
    let now = t0() + Duration::minutes(30);
    let report = world.tick(now, &live()).await;

    let locked = report
        .experiments
        .iter()
        .find(|e| e.name == "locked")
        .unwrap();
    assert_eq!(locked.verdict(), VerdictKind::Inconclusive);
    assert!(
        matches!(
            output_check(&report, "locked").reason,
            Some(Reason::CaptureUnread { .. })
        ),
        "{:?}",
        output_check(&report, "locked").reason
    );
    assert_eq!(locked.error_kinds(), [ErrorKind::AccessDenied]);
    let json = serde_json::to_value(locked).unwrap();
    assert_eq!(json["error"]["kind"], "access_denied", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("data capture: reading the shadow variant's capture: S3 GetObject of s3://capture/tests/locked-endpoint/shadow/"),
        "{message}"
    );
    assert!(message.contains("KMS refused to decrypt it"), "{message}");
    // The other experiment is read and judged as if nothing happened.
    let open = report
        .experiments
        .iter()
        .find(|e| e.name == "open")
        .unwrap();
    assert!(open.error_kinds().is_empty());
    assert!(matches!(
        output_check(&report, "open").reason,
        None | Some(Reason::Insufficient | Reason::Straddles)
    ));

    assert_eq!(report.summary.errors.get("access_denied"), Some(&1));
    assert_eq!(report.run_verdict(), RunVerdict::Errors);
    let facts = TickFacts {
        timestamp_ms: 0,
        duration: std::time::Duration::from_secs(1),
        scheduled: true,
    };
    let lines: Vec<serde_json::Value> = emf::lines(&report, &facts)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0]["AwsErrors"], 1.0, "{}", lines[0]);
    let by_call: Vec<_> = lines
        .iter()
        .filter(|line| line.get("Operation").is_some())
        .map(|line| {
            (
                line["Operation"].as_str().unwrap().to_string(),
                line["Kind"].as_str().unwrap().to_string(),
                line["AwsErrors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_call,
        [("GetObject".to_string(), "access_denied".to_string(), 1)]
    );
}

#[tokio::test]
async fn the_caps_stop_the_reading_reported_and_the_judged_span_stays_common() {
    // Production's files hold five times the shadow's records (20 %): a
    // byte cap is reached by production first, whatever the sample.
    let world = World::new(vec![(captured("agrees", 20), AGREES)], "");
    let policies = PolicySet::new(vec![parse_policy(
        "t.yaml",
        "name: outputs\nchecks:\n  - metric: output_agreement\n    min: 99\noutputs:\n  max_bytes: 400000\n  max_records: 1000000\nramp:\n  steps: [20, 100]\n",
    )
    .unwrap()])
    .unwrap();
    let now = t0() + Duration::hours(3);
    world.store.set_now(now);
    world.capture.set_now(now);
    let report = Controller::new(&*world.store, &world.metrics, &policies)
        .with_capture(&world.capture)
        .run_tick(
            &RunOptions {
                dry_run: true,
                ..live()
            },
            now,
            now + Duration::minutes(TICK),
        )
        .await
        .unwrap();
    let check = output_check(&report, "agrees");
    let message = check.to_string();
    assert!(
        message.contains("capture reading stopped early"),
        "{message}"
    );
    let shadowpilot_core::judge::Amount::Pairs { compared, .. } = check.amount else {
        panic!("{:?}", check.amount)
    };
    // About ten minutes of production's files fit, and only the minutes
    // both readings reached are judged: every shadow record in them pairs.
    assert!((100..=300).contains(&compared), "{compared}");
    let entry = &report.experiments[0];
    let Disposition::Steered(steered) = &entry.disposition else {
        unreachable!()
    };
    assert_eq!(steered.verdict.outcome, Outcome::Inconclusive);
}

#[tokio::test(start_paused = true)]
async fn a_slow_capture_is_cut_at_its_share_of_the_tick_and_judged_on_what_was_read() {
    struct Slow(MinuteCapture);
    #[async_trait]
    impl CaptureSource for Slow {
        async fn list(&self, b: &str, p: &str) -> Result<Vec<CaptureObject>, CaptureError> {
            self.0.list(b, p).await
        }
        async fn get(&self, b: &str, k: &str, max: u64) -> Result<Vec<u8>, CaptureError> {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            self.0.get(b, k, max).await
        }
    }
    let world = World::new(vec![(captured("agrees", 20), AGREES)], "");
    let slow = Slow(MinuteCapture::new(
        Arc::clone(&world.store),
        vec![("agrees".into(), AGREES)],
    ));
    let now = t0() + Duration::hours(2);
    world.store.set_now(now);
    slow.0.set_now(now);
    let started = tokio::time::Instant::now();
    let options = RunOptions {
        dry_run: true,
        budget: Some(Budget {
            deadline: started + std::time::Duration::from_secs(100),
            attempt_timeout: std::time::Duration::from_secs(5),
        }),
        ..live()
    };
    let report = Controller::new(&*world.store, &world.metrics, &world.policies)
        .with_capture(&slow)
        .run_tick(&options, now, now + Duration::minutes(TICK))
        .await
        .unwrap();
    // 0.8 of the 100 s: the reading stopped there, short of two hours of
    // two variants' files (240 s at 1 s each).
    assert!(started.elapsed() <= std::time::Duration::from_secs(81));
    let check = output_check(&report, "agrees");
    assert!(check.to_string().contains("stopped early"), "{check}");
}

#[test]
fn the_agreement_report_judges_only_the_span_both_readings_reached() {
    let minute = t0().duration_trunc(Duration::minutes(1)).unwrap();
    let store = Arc::new(FakeStore::new([captured("e", 100)]));
    let capture = MinuteCapture::new(Arc::clone(&store), vec![("e".into(), AGREES)]);
    let read = |variant: &str, minutes: i64, stopped: bool| {
        let mut read = VariantRead::default();
        for m in 0..minutes {
            let text = capture.file("e", variant, minute + Duration::minutes(m));
            read.records.extend(parse_lines(&text).records);
        }
        if stopped {
            read.capped = true;
            read.reached = read.records.iter().map(|r| r.inference_time).max();
        }
        read
    };
    // Production stopped after 10 minutes, the shadow read 30.
    let report = agreement_report(
        &read("shadow", 30, false),
        &read("production", 10, true),
        &CompareOptions::default(),
    );
    assert_eq!(report.pairing_rate, Some(1.0));
    assert!(report.shadow.after_common_end >= 20 * PRODUCTION_PER_MINUTE);
    assert!(report.judged_until.is_some());
    assert!(matches!(report.checks[0].state, CheckState::Decided(_)));
}

#[test]
fn output_checks_load_with_their_own_limits_and_bad_ones_name_the_field() {
    let load = |checks: &str, outputs: &str| {
        parse_policy(
            "t.yaml",
            &format!("name: t\nchecks:\n{checks}{outputs}ramp:\n  steps: [5, 100]\n"),
        )
    };
    let policy = load(
        "  - metric: output_agreement\n    min: 99.5\n  - metric: output_mean_abs_diff\n    max: 0.05\n",
        "outputs:\n  compare:\n    csv_column: 1\n    match: {absolute: 0.001}\n  pair_by_input_within: 2s\n  min_pairing_rate: 80\n  clip: 1\n",
    )
    .unwrap();
    assert!(policy.has_output_checks());
    assert_eq!(policy.checks[0].metric, CheckMetric::OutputAgreement);
    assert_eq!(policy.outputs.min_pairing_rate, 0.8);
    assert_eq!(policy.outputs.clip, Some(1.0));
    assert_eq!(
        policy.outputs.pairing.by_input_within,
        Some(Duration::seconds(2))
    );
    let cases = [
        (
            "  - metric: output_agreement\n    max: 99\n",
            "",
            "checks[0].max: output_agreement takes min, not max",
        ),
        (
            "  - metric: output_agreement\n    min: 100\n",
            "",
            "checks[0].min: 100 is not a usable limit",
        ),
        (
            "  - metric: latency_p99\n    min: 10\n",
            "",
            "checks[0].min: latency_p99 takes max",
        ),
        (
            "  - metric: output_mean_abs_diff\n    max: 0\n",
            "",
            "checks[0].max: 0 is not a usable limit",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  compare:\n    pointer: /a\n    csv_column: 1\n",
            "outputs.compare: set at most one of pointer and csv_column",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  compare:\n    pointer: label\n",
            "outputs.compare.pointer: \"label\" is not a JSON Pointer",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  clip: 2\n",
            "outputs.clip: only output_mean_abs_diff is clipped",
        ),
        (
            "  - metric: output_mean_abs_diff\n    max: 1\n",
            "outputs:\n  clip: 0.5\n",
            "outputs.clip: 0.5 must be above output_mean_abs_diff's max 1",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  min_pairing_rate: 0\n",
            "outputs.min_pairing_rate: 0 is not a percentage",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  max_records: 0\n",
            "outputs.max_records: 0 would read nothing",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  compare:\n    match: {relative: -1}\n",
            "outputs.compare.match: -1 is not a usable tolerance",
        ),
        (
            "  - metric: output_agreement\n    min: 99\n",
            "outputs:\n  sample: 1\n",
            "unknown field",
        ),
    ];
    for (checks, outputs, expected) in cases {
        let error = load(checks, outputs).unwrap_err().to_string();
        assert!(error.contains(expected), "{checks}{outputs}: {error}");
    }
}

#[tokio::test]
async fn a_tick_with_a_verdict_from_outputs_only_is_judged_pass_when_they_agree() {
    let world = World::new(vec![(captured("agrees", 20), AGREES)], "");
    let mut now = t0();
    let mut verdicts = Vec::new();
    for _ in 0..12 {
        now += Duration::minutes(TICK);
        let report = world.tick(now, &live()).await;
        verdicts.push(report.experiments[0].verdict());
    }
    assert!(verdicts.contains(&VerdictKind::Pass), "{verdicts:?}");
    // Each tick reads the step's files again (nothing is kept between
    // ticks), and never a file not yet delivered.
    assert!(*world.capture.gets.lock().unwrap() > 0);
}

#[tokio::test]
async fn before_the_first_pair_the_check_waits_without_a_made_up_time() {
    let world = World::new(vec![(captured("agrees", 20), AGREES)], "");
    // Five minutes in: nothing is delivered yet.
    let report = world.tick(t0() + Duration::minutes(5), &live()).await;
    let check = output_check(&report, "agrees");
    assert_eq!(check.reason, Some(Reason::NoEvidence));
    let message = check.to_string();
    assert!(
        message.contains("no pairs since the step began"),
        "{message}"
    );
    assert!(message.contains("no pairs yet at 20 %"), "{message}");
    assert!(percentages(&world.store, "agrees").is_empty());
}
