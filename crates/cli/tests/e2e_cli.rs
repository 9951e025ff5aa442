//! The real `shadowpilot` CLI binary against a local, stateful stand-in for
//! SageMaker and CloudWatch reached through `AWS_ENDPOINT_URL`: what it
//! prints, and what it writes to "AWS" (and what it never writes): the
//! update first, then the tags that remember the step and the latch. And
//! `compare` reading both variants' data capture from the stand-in's S3.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    capture_hour, capture_line, entry, epoch_now, hermetic_command, operation, run_to_end, tally,
    FakeAws, FakeExperiment, FakeOptions, Finished, Profile, DAY, HOUR,
};

const CLI: &str = env!("CARGO_BIN_EXE_shadowpilot");
const UPDATE: &str = "SageMaker.UpdateInferenceExperiment";
const ADD_TAGS: &str = "SageMaker.AddTags";
const DELETE_TAGS: &str = "SageMaker.DeleteTags";
const GET_METRIC_DATA: &str = "CloudWatch.GetMetricData";
const STEP: &str = "shadowpilot:step";
const STEPS: &str = "shadowpilot:steps";
const FAILED: &str = "shadowpilot:failed";
const ATTENTION: &str = "shadowpilot:attention";
const SINCE: &str = "shadowpilot:since";

fn cli(fake: &FakeAws, args: &[&str]) -> Command {
    let mut command = hermetic_command(CLI, fake.url());
    command.args(args);
    command
}

fn run(fake: &FakeAws, args: &[&str]) -> Finished {
    run_to_end(cli(fake, args))
}

/// A run and the wall-clock seconds it started and ended at: every time
/// shadowpilot writes in a tag lies between them.
fn timed_run(fake: &FakeAws, args: &[&str]) -> (Finished, f64, f64) {
    let before = epoch_now().floor();
    let finished = run(fake, args);
    (finished, before, epoch_now().ceil())
}

fn assert_success(finished: &Finished) {
    assert!(
        finished.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
}

fn set_sampling(entry: &Value) -> Vec<(u64, u64)> {
    entry["actions"]
        .as_array()
        .expect("actions is a list")
        .iter()
        .filter(|a| a["kind"] == "set_sampling")
        .map(|a| (a["from"].as_u64().unwrap(), a["to"].as_u64().unwrap()))
        .collect()
}

/// A 5 % experiment's shadow sees 5 % of production's requests; the same at
/// any other sampling.
fn sampled(mut experiment: FakeExperiment, percentage: i64) -> FakeExperiment {
    experiment.sampling = percentage;
    experiment.shadow.invocations = experiment.production.invocations * percentage as f64 / 100.0;
    experiment
}

// ------------------------------------------------------------ time helpers

fn rfc3339(epoch: f64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn epoch_of(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"))
        .timestamp() as f64
}

/// Steps start on whole minutes.
fn minute_ceil(epoch: f64) -> f64 {
    (epoch / 60.0).ceil() * 60.0
}

/// `<what>@<time>` as (what, epoch seconds); the time is whole seconds, `Z`.
fn mark(value: &str) -> (String, f64) {
    let (what, at) = value
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{value:?} is not <what>@<time>"));
    assert!(at.ends_with('Z') && !at.contains('.'), "{value:?}");
    (what.to_string(), epoch_of(at))
}

/// A `<what>@<time>` written during a run.
fn assert_mark_written(value: &str, what: &str, (before, after): (f64, f64)) {
    let (found, at) = mark(value);
    assert_eq!(found, what, "{value:?}");
    assert!(
        (before..=after).contains(&at),
        "{value:?} not written during the run ({} .. {})",
        rfc3339(before),
        rfc3339(after)
    );
}

// ------------------------------------------------------------ what was sent

/// Every AddTags or DeleteTags body, in order.
fn tag_calls(fake: &FakeAws, op: &str) -> Vec<Value> {
    fake.requests()
        .iter()
        .filter(|request| operation(request) == op)
        .map(|request| request.json())
        .collect()
}

fn tags_of(experiment: &FakeExperiment) -> BTreeMap<String, String> {
    experiment.tags.iter().cloned().collect()
}

/// One GetMetricData call: the metrics and the periods it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetricCall {
    metrics: BTreeSet<String>,
    periods: BTreeSet<i64>,
}

impl MetricCall {
    fn of(call: &Value) -> Self {
        let queries = call["MetricDataQueries"].as_array().expect("queries");
        fn stat(query: &Value) -> &Value {
            &query["MetricStat"]
        }
        Self {
            metrics: queries
                .iter()
                .map(|q| {
                    stat(q)["Metric"]["MetricName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect(),
            periods: queries
                .iter()
                .map(|q| stat(q)["Period"].as_i64().unwrap_or_default())
                .collect(),
        }
    }

    fn is_latency(&self) -> bool {
        self.metrics.iter().all(|m| m.ends_with("Latency"))
    }
}

/// The counts every default-policy tick reads first, in five-minute strata.
fn counts_call() -> MetricCall {
    MetricCall {
        metrics: [
            "Invocations",
            "Invocation5XXErrors",
            "InvocationModelErrors",
        ]
        .map(String::from)
        .into(),
        periods: BTreeSet::from([300]),
    }
}

/// The GetMetricData calls of one tick as its two rounds: the count calls
/// first, then the latency calls, whose periods the counts chose. A call
/// takes one StartTime and EndTime, and each period aligns its window to
/// itself, so the latency round is one call per period unless two windows
/// happen to coincide; they go out concurrently, in no fixed order.
fn assert_rounds(calls: &[Value], latency_periods: &[i64]) {
    let calls: Vec<MetricCall> = calls.iter().map(MetricCall::of).collect();
    let split = calls
        .iter()
        .position(MetricCall::is_latency)
        .unwrap_or(calls.len());
    let (counts, latency) = calls.split_at(split);
    assert_eq!(counts, [counts_call()], "one count call first: {calls:#?}");
    assert!(
        latency
            .iter()
            .all(|call| call.metrics == BTreeSet::from(["ModelLatency".to_string()])),
        "then ModelLatency only: {calls:#?}"
    );
    let periods: BTreeSet<i64> = latency.iter().flat_map(|c| c.periods.clone()).collect();
    assert_eq!(
        periods,
        latency_periods.iter().copied().collect::<BTreeSet<i64>>(),
        "{calls:#?}"
    );
    assert!(
        (latency_periods.len().min(1)..=latency_periods.len()).contains(&latency.len()),
        "{calls:#?}"
    );
}

/// One tick over a healthy 5 % experiment (production serves 1000
/// requests/min, so the shadow 50/min): the counts, then p50 in one-minute
/// periods and p99 in ten-minute ones (500 shadow requests each).
/// p50 at the five-minute floor, p99 at ten minutes (5 % of 1000/min).
const AT_FIVE_PERCENT: [i64; 2] = [300, 600];

fn check<'a>(entry: &'a Value, metric: &str) -> &'a Value {
    entry["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} check in {entry:#}"))
}

/// Every check passed on its interval: estimate inside, upper bound under
/// the margin, nothing left to wait for.
fn assert_all_pass(entry: &Value) {
    let checks = entry["checks"].as_array().expect("checks");
    let units: Vec<(&Value, &Value)> = checks.iter().map(|c| (&c["metric"], &c["unit"])).collect();
    assert_eq!(
        units,
        [
            (&json!("error_rate_5xx"), &json!("%")),
            (&json!("error_rate_5xx"), &json!("pts")),
            (&json!("model_error_rate"), &json!("%")),
            (&json!("latency_p99"), &json!("ratio")),
            (&json!("latency_p50"), &json!("ratio")),
        ],
        "the default policy's checks, in order: {entry:#}"
    );
    for check in checks {
        assert_eq!(check["outcome"], "pass", "{check:#}");
        assert_eq!(check["sequence"], "step", "{check:#}");
        let number = |field: &str| {
            check[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} is a number: {check:#}"))
        };
        let (value, lower, upper, limit) = (
            number("value"),
            number("lower"),
            number("upper"),
            number("limit"),
        );
        assert!(lower <= value && value <= upper, "{check:#}");
        assert!(
            upper <= limit,
            "a pass has its upper bound under the margin: {check:#}"
        );
        assert_eq!(check["time_to_decision"], Value::Null, "{check:#}");
        assert_eq!(check["time_at_ceiling"], Value::Null, "{check:#}");
        let message = check["message"].as_str().expect("message");
        assert!(message.ends_with("(pass)"), "{message}");
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn dry_run_reports_the_ramp_and_its_tags_and_writes_nothing() {
    let fraud = FakeExperiment::new("fraud-shadow");
    let (start, modified) = (fraud.start_time, fraud.last_modified);
    let fake = FakeAws::start(vec![fraud]);

    let (finished, before, after) = timed_run(&fake, &["run", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["dry_run"], true);
    assert!(report["started_at"].is_string(), "{report:#}");
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["status"], "Running");
    assert_eq!(fraud["policy"], "default");
    assert_eq!(fraud["endpoint"], "fraud-shadow-endpoint");
    assert_eq!(fraud["sampling_percentage"], 5);
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    // The default policy's steps are 5, 25, 100.
    assert_eq!(set_sampling(fraud), vec![(5, 25)], "{fraud:#}");
    assert_eq!(fraud["actions"].as_array().unwrap().len(), 1, "{fraud:#}");
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "dry_run", "{fraud:#}");
    // Every check was judged on the fake's numbers, none without data.
    assert_all_pass(fraud);
    assert_eq!(fraud["decisive_check"], "latency_p99", "{fraud:#}");

    // Where the evidence came from: the whole experiment since StartTime,
    // the step since LastModifiedTime (no step tag yet), both on whole
    // minutes, up to the publish delay before now.
    let evidence = &fraud["evidence"];
    assert_eq!(
        evidence["step_origin"],
        json!({"kind": "untagged"}),
        "{evidence:#}"
    );
    let at = |field: &str| epoch_of(evidence[field].as_str().expect("a time"));
    assert_eq!(at("whole_start"), minute_ceil(start), "{evidence:#}");
    assert_eq!(at("step_start"), minute_ceil(modified), "{evidence:#}");
    let end = at("end");
    assert!(
        end % 60.0 == 0.0 && (before - 360.0..=after - 300.0).contains(&end),
        "{evidence:#}"
    );

    // The tags a live run would write with the ramp: the new step, and the
    // one it ends in the history.
    let tags = &fraud["tags"];
    assert_eq!(tags["remove"], json!([]), "{tags:#}");
    let set = tags["set"].as_object().expect("set");
    assert_eq!(set.keys().collect::<Vec<_>>(), [STEP, STEPS], "{tags:#}");
    assert_mark_written(set[STEP].as_str().unwrap(), "25", (before, after));
    assert_eq!(
        set[STEPS],
        format!("5@{}", rfc3339(minute_ceil(modified))),
        "{tags:#}"
    );

    assert_eq!(report["summary"]["pass"], 1);
    assert_eq!(report["summary"]["actions_planned"], 1);
    assert_eq!(report["summary"]["updates_applied"], 0);

    // Nothing written: no update, no tag.
    let ops = tally(&fake.operations());
    assert_eq!(fake.writes(), Vec::<String>::new(), "{ops:?}");
    let unchanged = fake.experiment("fraud-shadow");
    assert_eq!(unchanged.sampling, 5);
    assert!(!unchanged.tags.iter().any(|(k, _)| k == STEP));
    assert_eq!(fake.violations(), Vec::<String>::new());
    // It read what a tick reads: the list, the experiment and its tags, and
    // two GetMetricData rounds.
    assert_eq!(ops.get("SageMaker.ListInferenceExperiments"), Some(&1));
    assert_eq!(ops.get("SageMaker.DescribeInferenceExperiment"), Some(&1));
    assert_eq!(ops.get("SageMaker.ListTags"), Some(&1));
    assert_rounds(&fake.metric_calls(), &AT_FIVE_PERCENT);
}

#[test]
fn apply_writes_one_update_with_the_whole_shadow_mode_config_then_the_step_tags() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let before = fake.experiment("fraud-shadow");

    let (finished, started, ended) = timed_run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["dry_run"], false);
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(set_sampling(fraud), vec![(5, 25)]);
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert_eq!(fraud["outcome"], "applied", "{fraud:#}");
    assert!(fraud.get("error").is_none(), "{fraud:#}");
    assert_eq!(report["summary"]["updates_applied"], 1);

    assert_eq!(
        fake.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 25}
                ]
            }
        })],
        "exactly one update, no Schedule"
    );
    // Then one AddTags on the experiment's ARN: the step it set and, in the
    // history, the step it ended. Nothing deleted.
    assert_eq!(
        fake.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    let tags = fake.added_tags(&before.arn());
    assert_eq!(tags.keys().collect::<Vec<_>>(), [STEP, STEPS], "{tags:?}");
    assert_mark_written(&tags[STEP], "25", (started, ended));
    assert_eq!(
        tags[STEPS],
        format!("5@{}", rfc3339(minute_ceil(before.last_modified)))
    );
    // What the report said it would write is what it wrote.
    assert_eq!(fraud["tags"]["set"], json!(tags), "{fraud:#}");

    let after = fake.experiment("fraud-shadow");
    assert_eq!(after.sampling, 25);
    assert_eq!(after.end_time, before.end_time);
    assert!(after.last_modified > before.last_modified);
    let mut expected = tags_of(&before);
    expected.extend(tags);
    assert_eq!(tags_of(&after), expected, "the other tags are left alone");
    assert_eq!(fake.violations(), Vec::<String>::new());
    // Apply re-read the experiment (and its tags) right before writing.
    let ops = fake.operations();
    let update_at = ops.iter().position(|op| op == UPDATE).unwrap();
    assert_eq!(
        ops[update_at - 2..],
        [
            "SageMaker.DescribeInferenceExperiment",
            "SageMaker.ListTags",
            UPDATE,
            ADD_TAGS,
            "AWSEvents.PutEvents"
        ]
    );
    assert_eq!(fake.count("SageMaker.DescribeInferenceExperiment"), 2);
    assert_rounds(&fake.metric_calls(), &AT_FIVE_PERCENT);
}

#[test]
fn a_second_apply_finds_nothing_new_to_do() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let (first, started, ended) = timed_run(&fake, &["run", "--apply", "--output", "json"]);
    assert_success(&first);
    assert_eq!(fake.count(UPDATE), 1);
    assert_eq!(fake.count(ADD_TAGS), 1);
    let first_tick = fake.count(GET_METRIC_DATA);

    // The same tick again, at once (a retried or duplicated invocation): the
    // step tag says 25 % began seconds ago, so it dwells with no evidence at
    // 25 % yet, and the tag already describes the step.
    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["sampling_percentage"], 25);
    assert_eq!(fraud["verdict"], "inconclusive", "{fraud:#}");
    assert_eq!(fraud["actions"], json!([]), "{fraud:#}");
    assert_eq!(fraud["tags"], json!({"set": {}, "remove": []}), "{fraud:#}");
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "none", "{fraud:#}");
    let evidence = &fraud["evidence"];
    assert_eq!(
        evidence["step_origin"],
        json!({"kind": "tagged"}),
        "{evidence:#}"
    );
    let step_start = epoch_of(evidence["step_start"].as_str().unwrap());
    assert!(
        (started..=ended + 60.0).contains(&step_start),
        "the step starts where the tag says: {evidence:#}"
    );
    assert!(
        fraud["reason"].as_str().unwrap().contains("dwelling"),
        "{fraud:#}"
    );
    assert_eq!(
        fake.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ],
        "{:?}",
        tally(&fake.operations())
    );
    assert_eq!(fake.experiment("fraud-shadow").sampling, 25);
    // Two rounds again: the 25 % step has no whole period yet, but the
    // earlier 5 % step's latency series feed the whole-experiment sequence.
    let all = fake.metric_calls();
    assert_rounds(&all[..first_tick], &AT_FIVE_PERCENT);
    assert_rounds(&all[first_tick..], &AT_FIVE_PERCENT);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn emf_lines_go_to_stderr_and_leave_the_json_report_whole_on_stdout() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let finished = run(&fake, &["run", "--output", "json", "--emf"]);
    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["summary"]["experiments"], 1, "{report:#}");
    let documents: Vec<Value> = finished
        .stderr
        .lines()
        .filter(|line| line.contains("\"_aws\""))
        .map(|line| serde_json::from_str(line).expect("an EMF line is one JSON document"))
        .collect();
    assert!(!documents.is_empty(), "stderr:\n{}", finished.stderr);
    assert_eq!(documents[0]["Experiments"], 1.0, "{:#}", documents[0]);
    // A dry run by hand beats no heart.
    assert!(
        documents[0].get("Heartbeat").is_none(),
        "{:#}",
        documents[0]
    );
}

#[test]
fn dry_run_variable_overrides_apply() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let mut command = cli(&fake, &["run", "--apply", "--output", "json"]);
    command.env("SHADOWPILOT_DRY_RUN", "true");

    let finished = run_to_end(command);

    assert_success(&finished);
    assert!(
        finished
            .stderr
            .contains("SHADOWPILOT_DRY_RUN=true overrides --apply"),
        "{}",
        finished.stderr
    );
    let report = finished.json();
    assert_eq!(report["dry_run"], true);
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(set_sampling(fraud), vec![(5, 25)]);
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "dry_run");
    assert!(fraud["tags"]["set"].get(STEP).is_some(), "{fraud:#}");
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "{:?}",
        tally(&fake.operations())
    );
    assert_eq!(fake.experiment("fraud-shadow").sampling, 5);
}

#[test]
fn table_output_has_a_row_per_experiment() {
    let fake = FakeAws::start(vec![
        FakeExperiment::new("fraud-shadow"),
        FakeExperiment::new("search-shadow").untagged(),
    ]);

    let finished = run(&fake, &["run"]);

    assert_success(&finished);
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert!(
        lines[0].starts_with("EXPERIMENT") && lines[0].contains("VERDICT"),
        "{}",
        finished.stdout
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", finished.stdout))
            .to_string()
    };
    let fraud = row("fraud-shadow");
    for cell in [
        "Running",
        "5 %",
        "pass",
        "p99 ratio",
        "(pass)",
        "sampling 5 → 25 % (dry run)",
    ] {
        assert!(fraud.contains(cell), "{cell:?} missing from {fraud:?}");
    }
    let search = row("search-shadow");
    assert!(search.contains("skipped"), "{search}");
    assert!(search.contains("no policy selects it"), "{search}");
    assert!(
        finished.stdout.contains("DRY RUN (nothing written)"),
        "{}",
        finished.stdout
    );
    assert_eq!(fake.writes(), Vec::<String>::new());
}

#[test]
fn untagged_is_skipped_and_regressed_ramps_down_with_the_latch() {
    let fraud = FakeExperiment::new("fraud-shadow");
    let mut ranker = sampled(
        FakeExperiment::new("ranker-shadow").shadow(Profile::slow_shadow()),
        25,
    );
    // The same evidence windows as fraud's, so their queries share calls.
    ranker.start_time = fraud.start_time;
    ranker.last_modified = fraud.last_modified;
    let (fraud_modified, ranker_modified) = (fraud.last_modified, ranker.last_modified);
    let fake = FakeAws::with_options(
        vec![
            fraud,
            FakeExperiment::new("search-shadow").untagged(),
            ranker,
            FakeExperiment::new("old-shadow").status("Completed"),
        ],
        // Four experiments over three pages: every page must be read.
        FakeOptions {
            list_page_size: 2,
            ..FakeOptions::default()
        },
    );

    let (finished, started, ended) = timed_run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["summary"]["experiments"], 4, "{report:#}");
    assert_eq!(fake.count("SageMaker.ListInferenceExperiments"), 2);

    let search = entry(&report, "search-shadow");
    assert_eq!(search["verdict"], "skipped", "{search:#}");
    assert_eq!(search["policy"], Value::Null);
    assert_eq!(search["actions"], json!([]));
    assert_eq!(search["tags"], Value::Null, "{search:#}");
    assert_eq!(search["applied"], false);
    assert_eq!(
        fake.measured_endpoints(),
        ["fraud-shadow-endpoint", "ranker-shadow-endpoint"],
        "an unselected experiment is not even measured"
    );

    let ranker = entry(&report, "ranker-shadow");
    assert_eq!(ranker["verdict"], "fail", "{ranker:#}");
    // One step down: 25 → 5 on the default policy's steps.
    assert_eq!(set_sampling(ranker), vec![(25, 5)], "{ranker:#}");
    assert_eq!(ranker["applied"], true);
    assert_eq!(ranker["attention"], json!(["failing"]), "{ranker:#}");
    assert_eq!(ranker["decisive_check"], "latency_p99", "{ranker:#}");
    let p99 = check(ranker, "latency_p99");
    assert_eq!(p99["outcome"], "fail");
    assert_eq!(p99["unit"], "ratio");
    assert_eq!(p99["limit"], 1.2);
    // 240 ms against production's 80 ms: about 3×, and the whole interval
    // over the margin.
    let value = p99["value"].as_f64().unwrap();
    assert!((2.7..3.3).contains(&value), "{p99:#}");
    assert!(p99["lower"].as_f64().unwrap() > 1.2, "{p99:#}");
    let message = p99["message"].as_str().unwrap();
    assert!(message.contains("> 1.20 (fail)"), "{message}");

    let old = entry(&report, "old-shadow");
    assert_eq!(old["verdict"], "skipped");

    // Writes go out many at a time, so the order between experiments is
    // not fixed; each one's update comes before its tags, then its event.
    let sent = fake.writes();
    for name in ["fraud-shadow", "ranker-shadow"] {
        let own: Vec<&String> = sent.iter().filter(|w| w.ends_with(name)).collect();
        assert_eq!(
            own,
            [
                &format!("UpdateInferenceExperiment {name}"),
                &format!("AddTags {name}"),
                &format!("PutEvents {name}")
            ],
            "{sent:?}"
        );
    }
    assert_eq!(sent.len(), 6, "{sent:?}");
    let mut written: Vec<String> = fake
        .updates()
        .iter()
        .map(|u| u["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    written.sort();
    assert_eq!(written, ["fraud-shadow", "ranker-shadow"]);

    // The regressed shadow is latched: the failing check and when.
    let arn = |name: &str| fake.experiment(name).arn();
    let ranker_tags = fake.added_tags(&arn("ranker-shadow"));
    assert_eq!(
        ranker_tags.keys().collect::<Vec<_>>(),
        [ATTENTION, FAILED, STEP, STEPS],
        "{ranker_tags:?}"
    );
    assert_mark_written(&ranker_tags[FAILED], "latency_p99", (started, ended));
    assert_mark_written(&ranker_tags[STEP], "5", (started, ended));
    assert_eq!(
        ranker_tags[STEPS],
        format!("25@{}", rfc3339(minute_ceil(ranker_modified)))
    );
    let fraud_tags = fake.added_tags(&arn("fraud-shadow"));
    assert_eq!(fraud_tags.keys().collect::<Vec<_>>(), [STEP, STEPS]);
    assert_mark_written(&fraud_tags[STEP], "25", (started, ended));
    assert_eq!(
        fraud_tags[STEPS],
        format!("5@{}", rfc3339(minute_ceil(fraud_modified)))
    );

    assert_eq!(fake.experiment("search-shadow").sampling, 5);
    assert_eq!(
        tags_of(&fake.experiment("search-shadow")),
        BTreeMap::from([("team".to_string(), "e2e".to_string())])
    );
    assert_eq!(fake.experiment("ranker-shadow").sampling, 5);
    assert_eq!(fake.experiment("fraud-shadow").sampling, 25);
    // Completed experiments are not even described.
    let described = fake.described_names();
    assert!(!described.contains(&json!("old-shadow")), "{described:?}");
    // Both judged experiments share the tick's two rounds: one count call,
    // then p50 for both and ranker's p99 (25 % of 1000 requests/min) at the
    // five-minute floor, and fraud's p99 at ten.
    assert_rounds(&fake.metric_calls(), &[300, 600]);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn a_latched_shadow_steps_down_every_tick_to_the_floor_though_healthy() {
    let mut latched = sampled(FakeExperiment::new("fraud-shadow"), 25);
    let failed_at = rfc3339(latched.last_modified + HOUR);
    let step = format!("25@{}", rfc3339(latched.last_modified));
    latched = latched
        .tag(FAILED, &format!("latency_p99@{failed_at}"))
        .tag(STEP, &step);
    let modified = latched.last_modified;
    let arn = latched.arn();
    let fake = FakeAws::start(vec![latched]);

    // First tick: down one step, though every check passes now.
    let (finished, started, ended) = timed_run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(set_sampling(&fraud), vec![(25, 5)], "{fraud:#}");
    // Every tick reads the 25 % step's latency: p50 at one minute, p99 at
    // two (250 shadow requests/min); the later steps are seconds long.
    let at_25 = [300];
    let first_tick = fake.count(GET_METRIC_DATA);
    assert_rounds(&fake.metric_calls(), &at_25);
    assert_eq!(fraud["attention"], json!(["failing"]), "{fraud:#}");
    assert_eq!(fraud["outcome"], "applied", "{fraud:#}");
    let reason = fraud["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("latency_p99@{failed_at}")),
        "{reason}"
    );
    assert_eq!(
        fake.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    // The latch stays as it was; the step tags follow the change, and the
    // attention tag records `failing`.
    let tags = fake.added_tags(&arn);
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        [ATTENTION, STEP, STEPS],
        "{tags:?}"
    );
    assert_eq!(tags[ATTENTION], "failing");
    assert_mark_written(&tags[STEP], "5", (started, ended));
    assert_eq!(
        tags[STEPS],
        format!("25@{}", rfc3339(minute_ceil(modified)))
    );

    // Second tick, seconds later: the floor, no dwell for a latched shadow.
    let second = run(&fake, &["run", "--apply", "--output", "json"]);
    assert_success(&second);
    let second_tick = fake.count(GET_METRIC_DATA);
    assert_rounds(&fake.metric_calls()[first_tick..second_tick], &at_25);
    let fraud = entry(&second.json(), "fraud-shadow").clone();
    assert_eq!(set_sampling(&fraud), vec![(5, 1)], "{fraud:#}");
    assert_eq!(fraud["attention"], json!(["failing"]), "{fraud:#}");
    assert_eq!(fake.experiment("fraud-shadow").sampling, 1);

    // Third: at the floor, nothing more to do but tell a person.
    let third = run(&fake, &["run", "--apply", "--output", "json"]);
    assert_success(&third);
    assert_rounds(&fake.metric_calls()[second_tick..], &at_25);
    let fraud = entry(&third.json(), "fraud-shadow").clone();
    assert_eq!(fraud["actions"], json!([]), "{fraud:#}");
    assert_eq!(fraud["attention"], json!(["failing_at_floor"]), "{fraud:#}");
    // Only the attention tag changes, once: the state is announced.
    assert_eq!(fraud["outcome"], "tags_written", "{fraud:#}");
    assert_eq!(third.json()["summary"]["failing_at_floor"], 1);

    assert_eq!(
        fake.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow",
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    let announced: Vec<Value> = fake
        .events()
        .iter()
        .map(|e| e["DetailType"].clone())
        .collect();
    assert_eq!(
        announced,
        [
            "Shadow Sampling Changed",
            "Shadow Failing",
            "Shadow Sampling Changed",
            "Shadow Failing At Floor"
        ],
        "each action once, each new state once"
    );
    // A fourth tick at the floor says nothing new.
    let fourth = run(&fake, &["run", "--apply", "--output", "json"]);
    assert_success(&fourth);
    assert_eq!(fake.events().len(), 4);
    assert_eq!(
        entry(&fourth.json(), "fraud-shadow")["outcome"],
        "none",
        "{:#}",
        fourth.json()
    );
    let after = tags_of(&fake.experiment("fraud-shadow"));
    assert_eq!(after[FAILED], format!("latency_p99@{failed_at}"));
    assert_eq!(mark(&after[STEP]).0, "1");
    let history: Vec<String> = after[STEPS].split(' ').map(|m| mark(m).0).collect();
    assert_eq!(history, ["25", "5"], "{after:?}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn extension_and_ramp_travel_in_one_update_capped_at_thirty_days() {
    let mut ending = FakeExperiment::new("fraud-shadow");
    // Started 29 days 20 hours ago, ends in 3 hours: the default policy
    // wants it to outlast the next tick by its 6-hour margin, AWS allows
    // four more hours.
    let now = ending.end_time - 5.0 * DAY;
    ending.start_time = now - 29.0 * DAY - 20.0 * HOUR;
    ending.end_time = now + 3.0 * HOUR;
    let cap = ending.start_time + 30.0 * DAY;
    let modified = ending.last_modified;
    let arn = ending.arn();
    let fake = FakeAws::start(vec![ending]);

    let (finished, started, ended) = timed_run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    let kinds: Vec<&Value> = fraud["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["kind"])
        .collect();
    assert_eq!(kinds, vec!["set_sampling", "extend_end_time"], "{fraud:#}");
    let extension = &fraud["actions"][1];
    assert_eq!(
        epoch_of(extension["to"].as_str().unwrap()),
        cap,
        "{extension:#}"
    );
    let reason = extension["reason"].as_str().unwrap();
    assert!(reason.contains("capped at StartTime + 30d"), "{reason}");
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert_eq!(
        fake.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "Schedule": {"EndTime": cap as u64},
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 25}
                ]
            }
        })]
    );
    assert_eq!(fake.experiment("fraud-shadow").end_time, cap);
    // An EndTime change moves LastModifiedTime; the step tag, written after
    // the update, is what the next tick measures the step from.
    assert_eq!(
        fake.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    let tags = fake.added_tags(&arn);
    assert_eq!(tags.keys().collect::<Vec<_>>(), [STEP, STEPS], "{tags:?}");
    assert_mark_written(&tags[STEP], "25", (started, ended));
    assert_eq!(tags[STEPS], format!("5@{}", rfc3339(minute_ceil(modified))));
    // Thirty days of five-minute counts still fit in one call.
    assert_rounds(&fake.metric_calls(), &AT_FIVE_PERCENT);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn held_experiment_is_judged_and_never_written_nor_tagged() {
    let held = FakeExperiment::new("fraud-shadow").tag("shadowpilot:hold", "true");
    let tags_before = tags_of(&held);
    let fake = FakeAws::start(vec![held]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["held"], true);
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(set_sampling(&fraud), vec![(5, 25)]);
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "held", "{fraud:#}");
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "{:?}",
        tally(&fake.operations())
    );
    assert_eq!(tags_of(&fake.experiment("fraud-shadow")), tags_before);
    // Judged all the same.
    assert_rounds(&fake.metric_calls(), &AT_FIVE_PERCENT);
}

#[test]
fn a_first_tick_tags_the_step_it_finds_without_an_update() {
    // At the top step and passing: nothing to change but the memory of the
    // step, which began at LastModifiedTime.
    let top = sampled(FakeExperiment::new("fraud-shadow"), 100);
    let modified = top.last_modified;
    let arn = top.arn();
    let fake = FakeAws::start(vec![top]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(fraud["actions"], json!([]), "{fraud:#}");
    assert_eq!(fraud["attention"], json!(["ready_to_promote"]), "{fraud:#}");
    assert_eq!(fraud["outcome"], "tags_written", "{fraud:#}");
    assert_eq!(fraud["applied"], false, "no update was sent: {fraud:#}");
    assert_eq!(
        fake.writes(),
        ["AddTags fraud-shadow", "PutEvents fraud-shadow"]
    );
    // With the step, the attention state it announces (once) by event.
    assert_eq!(
        fake.added_tags(&arn),
        BTreeMap::from([
            (ATTENTION.to_string(), "ready_to_promote".to_string()),
            (STEP.to_string(), format!("100@{}", rfc3339(modified)))
        ])
    );
    let announced: Vec<Value> = fake.events();
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0]["DetailType"], "Shadow Ready To Promote");
    assert_eq!(fake.experiment("fraud-shadow").last_modified, modified);

    // The next tick finds the step described: nothing to write at all.
    let again = run(&fake, &["run", "--apply", "--output", "json"]);
    assert_success(&again);
    let fraud = entry(&again.json(), "fraud-shadow").clone();
    assert_eq!(fraud["evidence"]["step_origin"], json!({"kind": "tagged"}));
    assert_eq!(fraud["outcome"], "none", "{fraud:#}");
    assert_eq!(
        fake.writes(),
        ["AddTags fraud-shadow", "PutEvents fraud-shadow"]
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn a_person_changing_sampling_mid_tick_is_not_overwritten() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    // Between the tick's reads (the first metric round) and its writes.
    fake.after_first_metrics(|experiments| {
        experiments[0].sampling = 50;
        experiments[0].last_modified = epoch_now();
    });

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["applied"], false, "{fraud:#}");
    assert_eq!(fraud["outcome"], "changed_since_read", "{fraud:#}");
    let reason = fraud["reason"].as_str().unwrap();
    assert!(reason.contains("sampling changed 5 → 50"), "{reason}");
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "neither the update nor its tags: {:?}",
        tally(&fake.operations())
    );
    assert_eq!(fake.experiment("fraud-shadow").sampling, 50);
}

#[test]
fn a_hold_tag_added_mid_tick_stops_the_write() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    // A person freezes the experiment after the tick read it, before it
    // writes. Whether AddTags moves LastModifiedTime is not documented; the
    // fake leaves it alone.
    fake.after_first_metrics(|experiments| {
        experiments[0]
            .tags
            .push(("shadowpilot:hold".into(), "true".into()));
    });

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "written although the re-read showed shadowpilot:hold=true: {fraud:#}"
    );
    assert_eq!(fraud["applied"], false, "{fraud:#}");
}

#[test]
fn unknown_named_experiment_exits_2() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);

    let finished = run(
        &fake,
        &["plan", "--experiment", "missing-shadow", "--output", "json"],
    );

    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    let report = finished.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(entry(&report, "missing-shadow")["verdict"], "error");
    assert_eq!(report["experiments"].as_array().unwrap().len(), 1);
    assert_eq!(fake.count("SageMaker.DescribeInferenceExperiment"), 0);
    assert_eq!(fake.count(GET_METRIC_DATA), 0);
    assert_eq!(fake.writes(), Vec::<String>::new());
}

#[test]
fn no_datapoints_is_inconclusive_and_created_is_not_judged() {
    let quiet = FakeExperiment::new("quiet-shadow").shadow(Profile::silent());
    let modified = quiet.last_modified;
    let arn = quiet.arn();
    let fake = FakeAws::start(vec![
        quiet,
        FakeExperiment::new("new-shadow").status("Created"),
    ]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    let quiet = entry(&report, "quiet-shadow");
    assert_eq!(quiet["verdict"], "inconclusive", "{quiet:#}");
    // Without a single estimate there is nothing on the passing side: no
    // ramp for evidence, it holds.
    assert_eq!(quiet["actions"], json!([]), "{quiet:#}");
    let checks = quiet["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 5, "{quiet:#}");
    for check in checks {
        assert_eq!(check["outcome"], "inconclusive", "{check:#}");
        for field in ["value", "lower", "upper"] {
            assert_eq!(
                check[field],
                Value::Null,
                "no datapoint is not zero: {check:#}"
            );
        }
        assert!(check["limit"].is_number(), "{check:#}");
        let message = check["message"].as_str().unwrap();
        assert!(message.contains("no usable period"), "{message}");
    }
    // The step it found is remembered, with no update.
    assert_eq!(quiet["outcome"], "tags_written", "{quiet:#}");
    assert_eq!(
        fake.added_tags(&arn),
        BTreeMap::from([(STEP.to_string(), format!("5@{}", rfc3339(modified)))])
    );

    let created = entry(&report, "new-shadow");
    assert_eq!(created["verdict"], "skipped", "{created:#}");
    assert_eq!(created["policy"], "default");
    assert_eq!(created["tags"], Value::Null, "{created:#}");
    assert_eq!(fake.measured_endpoints(), ["quiet-shadow-endpoint"]);
    assert_eq!(fake.writes(), ["AddTags quiet-shadow"]);
    // Production's traffic chooses the shadow's latency periods, so the
    // second round still asks (and finds nothing).
    assert_rounds(&fake.metric_calls(), &AT_FIVE_PERCENT);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn an_endpoint_without_traffic_needs_no_latency_round() {
    let mut idle = FakeExperiment::new("idle-shadow").shadow(Profile::silent());
    idle.production = Profile::silent();
    let fake = FakeAws::start(vec![idle]);

    let finished = run(&fake, &["plan", "--output", "json"]);

    assert_success(&finished);
    let idle = entry(&finished.json(), "idle-shadow").clone();
    assert_eq!(idle["verdict"], "inconclusive", "{idle:#}");
    assert_eq!(idle["actions"], json!([]), "{idle:#}");
    for metric in ["latency_p99", "latency_p50"] {
        let latency = check(&idle, metric);
        assert_eq!(latency["outcome"], "inconclusive", "{latency:#}");
        let message = latency["message"].as_str().unwrap();
        assert!(message.contains("too little traffic"), "{message}");
    }
    // No production traffic to choose a latency period from: the count
    // round only.
    assert_rounds(&fake.metric_calls(), &[]);
    assert_eq!(fake.count(GET_METRIC_DATA), 1);
    assert_eq!(fake.writes(), Vec::<String>::new());
}

// ------------------------------------------------------------------ rearm

fn latched(name: &str) -> FakeExperiment {
    let experiment = FakeExperiment::new(name);
    let at = rfc3339(experiment.last_modified + HOUR);
    experiment.tag(FAILED, &format!("latency_p99@{at}"))
}

#[test]
fn rearm_without_apply_prints_what_it_would_do_and_writes_nothing() {
    let experiment = latched("fraud-shadow");
    let tags_before = tags_of(&experiment);
    let latch = tags_before[FAILED].clone();
    let fake = FakeAws::start(vec![experiment]);

    let (finished, started, ended) = timed_run(&fake, &["rearm", "fraud-shadow"]);

    assert_success(&finished);
    let out = &finished.stdout;
    for words in [
        format!("fraud-shadow: latch shadowpilot:failed={latch}"),
        "would delete shadowpilot:failed".to_string(),
        "would set shadowpilot:since=".to_string(),
        "dry run: add --apply to write".to_string(),
    ] {
        assert!(out.contains(&words), "{words:?} missing from:\n{out}");
    }
    let since = out
        .split("shadowpilot:since=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a time");
    assert!((started..=ended).contains(&epoch_of(since)), "{out}");

    // The same as JSON.
    let json = run(&fake, &["rearm", "fraud-shadow", "--output", "json"]);
    assert_success(&json);
    let value = json.json();
    assert_eq!(value["name"], "fraud-shadow");
    assert_eq!(value["arn"], fake.experiment("fraud-shadow").arn());
    assert_eq!(value["latch"], latch.as_str());
    assert_eq!(value["remove"], json!([FAILED]));
    assert_eq!(
        value["set"]
            .as_object()
            .map(|s| s.keys().collect::<Vec<_>>()),
        Some(vec![&SINCE.to_string()])
    );
    assert_eq!(value["written"], false);

    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(tags_of(&fake.experiment("fraud-shadow")), tags_before);
    assert_eq!(fake.count(GET_METRIC_DATA), 0, "rearm judges nothing");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn rearm_apply_sets_since_then_deletes_the_latch_and_the_next_tick_does_not_latch_again() {
    let experiment = latched("fraud-shadow");
    let arn = experiment.arn();
    let mut expected = tags_of(&experiment);
    let fake = FakeAws::start(vec![experiment]);

    let (finished, started, ended) = timed_run(&fake, &["rearm", "fraud-shadow", "--apply"]);

    assert_success(&finished);
    let out = &finished.stdout;
    assert!(out.contains("deleted shadowpilot:failed"), "{out}");
    assert!(out.contains("set shadowpilot:since="), "{out}");
    assert!(!out.contains("dry run"), "{out}");
    // Since first, then the delete, both on the experiment's ARN.
    assert_eq!(
        fake.writes(),
        ["AddTags fraud-shadow", "DeleteTags fraud-shadow"]
    );
    let since = fake.added_tags(&arn);
    assert_eq!(since.keys().collect::<Vec<_>>(), [SINCE], "{since:?}");
    let at = epoch_of(&since[SINCE]);
    assert!((started..=ended).contains(&at), "{since:?}");
    assert!(since[SINCE].ends_with('Z'), "{since:?}");
    assert_eq!(
        tag_calls(&fake, DELETE_TAGS),
        [json!({"ResourceArn": arn, "TagKeys": [FAILED]})]
    );
    assert_eq!(fake.count(UPDATE), 0);
    expected.remove(FAILED);
    expected.extend(since.clone());
    assert_eq!(tags_of(&fake.experiment("fraud-shadow")), expected);

    // The next tick judges a whole-experiment sequence that starts now: no
    // latch, no step down, and no new failure to latch on.
    let tick = run(&fake, &["plan", "--output", "json"]);
    assert_success(&tick);
    let fraud = entry(&tick.json(), "fraud-shadow").clone();
    assert_eq!(
        epoch_of(fraud["evidence"]["whole_start"].as_str().unwrap()),
        minute_ceil(at),
        "{fraud:#}"
    );
    assert_ne!(fraud["verdict"], "fail", "{fraud:#}");
    assert_eq!(set_sampling(&fraud), vec![], "{fraud:#}");
    assert_eq!(fraud["attention"], json!([]), "{fraud:#}");
    assert!(fraud["tags"]["set"].get(FAILED).is_none(), "{fraud:#}");
    // Nothing of the step lies inside the restarted evidence yet: the
    // count round only.
    assert_rounds(&fake.metric_calls(), &[]);
    assert_eq!(fake.writes().len(), 2);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn rearm_of_an_experiment_without_the_latch_reports_not_latched() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);

    let finished = run(&fake, &["rearm", "fraud-shadow", "--apply"]);

    assert_success(&finished);
    assert!(
        finished.stdout.contains("fraud-shadow: not latched"),
        "{}",
        finished.stdout
    );
    let json = run(
        &fake,
        &["rearm", "fraud-shadow", "--apply", "--output", "json"],
    );
    assert_success(&json);
    let value = json.json();
    assert_eq!(value["latch"], Value::Null, "{value:#}");
    assert_eq!(value["written"], false, "{value:#}");
    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn rearm_of_a_held_experiment_is_refused_and_writes_nothing() {
    let held = latched("fraud-shadow").tag("shadowpilot:hold", "true");
    let tags_before = tags_of(&held);
    let fake = FakeAws::start(vec![held]);

    let finished = run(&fake, &["rearm", "fraud-shadow", "--apply"]);

    assert!(!finished.status.success(), "{}", finished.stdout);
    assert!(finished.stderr.contains("held"), "{}", finished.stderr);
    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(tags_of(&fake.experiment("fraud-shadow")), tags_before);
}

// ------------------------------------------------------------ data capture

const CAPTURE_BUCKET: &str = "churn-capture";
/// Destination ends in a slash, as AWS's own notebook writes it; the
/// reader joins it to the endpoint with exactly one.
const CAPTURE_DESTINATION: &str = "s3://churn-capture/shadow-tests/churn-v2/";
const CAPTURE_KMS_KEY: &str =
    "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// The requests (inferenceIds) whose shadow answer differs.
const DISAGREEING: [usize; 4] = [3, 11, 17, 26];

/// `{destination prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/` of `epoch`.
fn hour_prefix(variant: &str, epoch: f64) -> String {
    format!(
        "shadow-tests/churn-v2/churn-v2-endpoint/{variant}/{}/",
        capture_hour(epoch)
    )
}

fn hour_start(epoch: f64) -> f64 {
    (epoch / HOUR).floor() * HOUR
}

/// The hour prefixes a `--since 3h` reading started at `now` lists: every
/// hour of `[now − 3 h, now − 5 min)`.
fn prefixes_read_at(variant: &str, now: f64) -> BTreeSet<String> {
    let mut hour = hour_start(now - 3.0 * HOUR);
    let mut prefixes = BTreeSet::new();
    while hour < now - 300.0 {
        prefixes.insert(hour_prefix(variant, hour));
        hour += HOUR;
    }
    prefixes
}

/// Serves both variants' capture for 30 requests (`req-00` … `req-29`),
/// half two hours ago and half an hour ago, in JSON Lines files of the
/// real record format: the shadow answers DISAGREEING differently, sends
/// one record without an inferenceId, and production has one request the
/// shadow never saw. Three objects share one hour prefix on each side (the
/// shadow's first hour, production's second), so listing it takes two
/// pages of the stand-in's two keys. Returns every key, by variant.
fn serve_capture(fake: &FakeAws, now: f64) -> BTreeMap<&'static str, Vec<String>> {
    let hours = [hour_start(now - 2.0 * HOUR), hour_start(now - HOUR)];
    let time = |i: usize| hours[i / 15] + 60.0 + 10.0 * (i % 15) as f64;
    let label = |variant: &str, i: usize| {
        let production = (i % 2) as u64;
        if variant == "shadow" && DISAGREEING.contains(&i) {
            1 - production
        } else {
            production
        }
    };
    let line = |variant: &str, i: usize| {
        capture_line(
            Some(&format!("req-{i:02}")),
            &format!("{variant}-event-{i:02}"),
            time(i),
            &format!("{i},{},{}", i * 2, i * 3),
            &json!({ "label": label(variant, i) }),
        )
    };
    // Files as (hour, the requests in it); named as SageMaker names them.
    type Files = [(usize, std::ops::Range<usize>); 5];
    let files: [(&str, Files); 2] = [
        (
            "shadow",
            [(0, 0..5), (0, 5..10), (0, 10..15), (1, 15..23), (1, 23..30)],
        ),
        (
            "production",
            [(0, 0..8), (0, 8..15), (1, 15..20), (1, 20..25), (1, 25..30)],
        ),
    ];
    let mut keys = BTreeMap::new();
    for (variant, files) in files {
        let mut variant_keys = Vec::new();
        for (n, (hour, requests)) in files.into_iter().enumerate() {
            let mut lines: Vec<String> = requests.map(|i| line(variant, i)).collect();
            if n == 4 && variant == "shadow" {
                // A caller that sent no InferenceId: read, never paired.
                lines.push(capture_line(
                    None,
                    "shadow-event-lonely",
                    time(29) + 1.0,
                    "9,9,9",
                    &json!({"label": 1}),
                ));
            }
            if n == 4 && variant == "production" {
                // Production's traffic is not all sampled to the shadow.
                lines.push(capture_line(
                    Some("req-99"),
                    "production-event-99",
                    time(29) + 2.0,
                    "9,9,9",
                    &json!({"label": 0}),
                ));
            }
            let key = format!(
                "{}{:02}-{:02}-871-0b7bfd33-c8a7-4adf-a09a-{:012}.jsonl",
                hour_prefix(variant, hours[hour]),
                n * 7 % 60,
                n * 11 % 60,
                n
            );
            fake.put_object(CAPTURE_BUCKET, &key, lines.join("\n") + "\n");
            variant_keys.push(key);
        }
        keys.insert(variant, variant_keys);
    }
    keys
}

fn churn_with_capture() -> FakeExperiment {
    FakeExperiment::new("churn-v2").capture(CAPTURE_DESTINATION, Some(CAPTURE_KMS_KEY))
}

/// The line of the table that starts with `label:`.
fn report_line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}

#[test]
fn compare_reads_both_variants_capture_path_style_and_reports_agreement() {
    let fake = FakeAws::start(vec![churn_with_capture()]);
    let before = epoch_now();
    let keys = serve_capture(&fake, before);

    let finished = run(&fake, &["compare", "churn-v2", "--since", "3h"]);
    let after = epoch_now();

    assert_success(&finished);
    let out = &finished.stdout;
    // Records read on each side (30 requests, plus the shadow's one without
    // an inferenceId and production's one the shadow never saw), pairs and
    // the agreement: stable facts, not whole lines.
    let shadow = report_line(out, "shadow:");
    assert!(shadow.contains("31 records from 5 objects"), "{out}");
    assert!(
        shadow.contains("s3://churn-capture/shadow-tests/churn-v2/churn-v2-endpoint/shadow/"),
        "{out}"
    );
    assert!(
        report_line(out, "production:").contains("31 records from 5 objects"),
        "{out}"
    );
    assert!(report_line(out, "paired:").contains("paired: 30 "), "{out}");
    let compared = report_line(out, "compared:");
    assert!(compared.contains("26 agree, 4 disagree"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("agreement")), "{out}");
    // A disagreement side by side.
    assert!(out.contains("req-03"), "{out}");

    // What was asked of S3: path-style only (the bucket is the first path
    // segment and Host is the stand-in itself, never churn-capture.<host>).
    let host = fake.url().trim_start_matches("http://").to_string();
    let s3 = fake.s3_requests();
    assert!(!s3.is_empty());
    for request in &s3 {
        assert_eq!(request.host, host, "{request:?}");
        assert!(
            request.path.starts_with("/churn-capture/")
                || request.path.starts_with("/churn-capture?"),
            "{request:?}"
        );
        assert_eq!(request.bucket, CAPTURE_BUCKET, "{request:?}");
    }
    // Every hour prefix of the span, for both variants, each listing
    // followed to its last page.
    let lists: Vec<_> = s3
        .iter()
        .filter(|r| r.operation == "ListObjectsV2")
        .collect();
    for variant in ["shadow", "production"] {
        let listed: BTreeSet<String> = lists
            .iter()
            .map(|r| r.prefix().to_string())
            .filter(|p| p.contains(&format!("/{variant}/")))
            .collect();
        assert!(
            listed == prefixes_read_at(variant, before)
                || listed == prefixes_read_at(variant, after),
            "{variant}: listed {listed:#?}"
        );
        // The hour with three objects (the shadow's first, production's
        // second): two pages, the second asked for with a continuation
        // token.
        let ago = if variant == "shadow" { 2.0 } else { 1.0 };
        let busy = hour_prefix(variant, hour_start(before - ago * HOUR));
        let pages: Vec<_> = lists.iter().filter(|r| r.prefix() == busy).collect();
        assert_eq!(pages.len(), 2, "{variant}: {pages:#?}");
        assert_eq!(pages[0].continuation_token(), None);
        assert!(pages[1].continuation_token().is_some(), "{pages:#?}");
        assert_eq!(
            pages[0].query.get("list-type").map(String::as_str),
            Some("2")
        );
    }
    // Every object under those prefixes read once, and nothing else.
    let mut read: Vec<String> = s3
        .iter()
        .filter(|r| r.operation == "GetObject")
        .map(|r| r.key.clone().expect("a key"))
        .collect();
    read.sort();
    let mut expected: Vec<String> = keys.values().flatten().cloned().collect();
    expected.sort();
    assert_eq!(read, expected);
    let ops = tally(&fake.operations());
    assert_eq!(
        ops.get("SageMaker.DescribeInferenceExperiment"),
        Some(&1),
        "{ops:?}"
    );
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "compare writes nothing"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());

    // The same report as JSON.
    let json = run(
        &fake,
        &["compare", "churn-v2", "--since", "3h", "--output", "json"],
    );
    assert_success(&json);
    let report = json.json();
    assert_eq!(report["experiment"], "churn-v2", "{report:#}");
    assert_eq!(report["shadow"]["records"], 31, "{report:#}");
    assert_eq!(report["shadow"]["objects"], 5, "{report:#}");
    assert_eq!(report["production"]["records"], 31, "{report:#}");
    assert_eq!(report["pairs"], 30, "{report:#}");
    assert_eq!(report["agree"], 26, "{report:#}");
    assert_eq!(report["disagree"], 4, "{report:#}");
    assert_eq!(
        report["unpaired_shadow"]["without_inference_id"], 1,
        "{report:#}"
    );
    assert_eq!(report["unpaired_production"]["no_match"], 1, "{report:#}");
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.iter().any(|c| c["check"] == "output_agreement"),
        "{report:#}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn compare_names_the_capture_object_s3_refuses_and_fails() {
    let fake = FakeAws::start(vec![churn_with_capture()]);
    let keys = serve_capture(&fake, epoch_now());
    let denied = keys["shadow"][1].clone();
    fake.deny_object(CAPTURE_BUCKET, &denied);

    let finished = run(&fake, &["compare", "churn-v2", "--since", "3h"]);

    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert!(finished.stdout.is_empty(), "no report: {}", finished.stdout);
    let err = &finished.stderr;
    assert!(err.contains("shadow variant"), "{err}");
    assert!(
        err.contains(&format!(
            "S3 GetObject on s3://{CAPTURE_BUCKET}/{denied} was denied"
        )),
        "{err}"
    );
    assert!(err.contains("AccessDenied"), "AWS's own code: {err}");
    // It stopped at the refusal: nothing after it was read.
    let read: Vec<String> = fake
        .s3_requests()
        .iter()
        .filter(|r| r.operation == "GetObject")
        .filter_map(|r| r.key.clone())
        .collect();
    assert_eq!(read.last(), Some(&denied), "{read:#?}");
    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn compare_tells_a_refused_kms_decrypt_from_an_s3_denial() {
    let fake = FakeAws::start(vec![churn_with_capture()]);
    let keys = serve_capture(&fake, epoch_now());
    let sealed = keys["production"][0].clone();
    fake.deny_decrypt(CAPTURE_BUCKET, &sealed);

    let finished = run(&fake, &["compare", "churn-v2", "--since", "3h"]);

    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    let err = &finished.stderr;
    assert!(err.contains("production variant"), "{err}");
    assert!(
        err.contains(&format!(
            "S3 GetObject of s3://{CAPTURE_BUCKET}/{sealed}: KMS refused to decrypt it"
        )),
        "{err}"
    );
    assert!(err.contains("kms:Decrypt"), "AWS's message: {err}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}
