//! The real `bootstrap` binary as Lambda runs it: a fake Lambda Runtime API
//! hands it invocations and records its answers, and a stateful fake
//! SageMaker/CloudWatch behind `AWS_ENDPOINT_URL` records what it reads and
//! writes (the update first, then the tags that remember the step). Every
//! wait is bounded; the child is killed when a test ends.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    entry, epoch_now, lambda_command, tally, FakeAws, FakeExperiment, FakeRuntime, Outcome,
    Running, WAIT,
};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");
const GET_METRIC_DATA: &str = "CloudWatch.GetMetricData";

fn epoch_of(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"))
        .timestamp() as f64
}

/// `<percentage>@<time>`, the time whole seconds within `during`.
fn assert_step_mark(value: &str, percentage: &str, (from, to): (f64, f64)) {
    let (found, at) = value.rsplit_once('@').expect("<percentage>@<time>");
    assert_eq!(found, percentage, "{value:?}");
    assert!(at.ends_with('Z') && !at.contains('.'), "{value:?}");
    assert!((from..=to).contains(&epoch_of(at)), "{value:?}");
}

/// The step a fresh fake experiment is at began at LastModifiedTime; steps
/// start on whole minutes.
fn minute_mark(percentage: u8, epoch: f64) -> String {
    let minute = (epoch / 60.0).ceil() * 60.0;
    let time = chrono::DateTime::from_timestamp(minute as i64, 0).expect("in range");
    format!(
        "{percentage}@{}",
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// One tick's GetMetricData calls (`calls`, in order) are its two rounds:
/// the counts at five minutes first, then ModelLatency at the periods the
/// counts chose (one call per period unless two windows coincide).
fn assert_two_rounds(calls: &[Value]) {
    let metrics = |call: &Value| -> Vec<(String, i64)> {
        call["MetricDataQueries"]
            .as_array()
            .expect("queries")
            .iter()
            .map(|q| {
                let stat = &q["MetricStat"];
                (
                    stat["Metric"]["MetricName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    stat["Period"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let [counts, latency @ ..] = calls else {
        panic!("no GetMetricData call");
    };
    assert!(
        metrics(counts)
            .iter()
            .all(|(metric, period)| metric.starts_with("Invocation") && *period == 300),
        "the counts first: {calls:#?}"
    );
    assert!(
        !latency.is_empty()
            && latency
                .iter()
                .flat_map(metrics)
                .all(|(metric, _)| metric == "ModelLatency"),
        "then the latency round: {calls:#?}"
    );
}

fn fixture_event(name: &str) -> Value {
    let path = format!(
        "{}/../core/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

/// The environment Lambda gives a `provided.al2023` function
/// (lambda_runtime 1.x `Config::from_env` needs the first four).
fn function_command(runtime: &FakeRuntime, aws: &FakeAws) -> Command {
    lambda_command(
        BOOTSTRAP,
        runtime,
        aws,
        "2026/11/23/[$LATEST]0123456789abcdef",
    )
}

/// Starts the function and waits until it polls for its first invocation,
/// so init problems fail here with the function's own output.
fn start(command: Command, runtime: &FakeRuntime) -> Running {
    let mut function = Running::spawn(command);
    if !runtime.wait_for_polls(1, WAIT) {
        let exited = function.wait_timeout(Duration::from_millis(100));
        panic!(
            "the function never asked for an invocation (exit: {exited:?})\nstdout: {:#?}\nstderr: {:#?}",
            function.stdout(),
            function.stderr()
        );
    }
    function
}

fn invoke(runtime: &FakeRuntime, function: &Running, event: Value) -> Outcome {
    let id = runtime.invoke(event);
    runtime.outcome(&id, WAIT).unwrap_or_else(|| {
        panic!(
            "no answer to {id} within {WAIT:?}\nstdout: {:#?}\nstderr: {:#?}",
            function.stdout(),
            function.stderr()
        )
    })
}

/// The report the function returned; every one must read as the typed
/// report callers parse (`shadowpilot_core::report::ReportDoc`).
fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(report) => {
            if let Err(error) =
                serde_json::from_value::<shadowpilot_core::report::ReportDoc>(report.clone())
            {
                panic!("the report does not read as a ReportDoc: {error}\n{report:#}");
            }
            report
        }
        Outcome::Error(error) => panic!("the invocation failed: {error:#}"),
    }
}

#[test]
fn scheduled_event_runs_live_and_writes_the_ramp() {
    let fraud = FakeExperiment::new("fraud-shadow");
    let (arn, modified) = (fraud.arn(), fraud.last_modified);
    let aws = FakeAws::start(vec![fraud, FakeExperiment::new("search-shadow").untagged()]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);

    let before = epoch_now().floor();
    let report = response(invoke(
        &runtime,
        &function,
        fixture_event("scheduled-event.json"),
    ));
    let after = epoch_now().ceil();

    assert_eq!(report["dry_run"], false, "{report:#}");
    assert!(report["next_tick"].is_string());
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(fraud["actions"][0]["kind"], "set_sampling", "{fraud:#}");
    // The default policy's steps are 5, 25, 100.
    assert_eq!(
        (&fraud["actions"][0]["from"], &fraud["actions"][0]["to"]),
        (&json!(5), &json!(25))
    );
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert_eq!(fraud["outcome"], "applied", "{fraud:#}");
    assert_eq!(entry(&report, "search-shadow")["verdict"], "skipped");
    assert_eq!(report["summary"]["updates_applied"], 1);

    assert_eq!(
        aws.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 25}
                ]
            }
        })]
    );
    // Then the step tags on the experiment's ARN: the new step, and the
    // one it ended in the history. Nothing deleted, nothing on the
    // unselected experiment.
    assert_eq!(
        aws.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    // The event, after the tags, on the default bus.
    let events = aws.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["Source"], "shadowpilot");
    assert_eq!(events[0]["DetailType"], "Shadow Sampling Changed");
    assert!(events[0].get("EventBusName").is_none(), "{:#}", events[0]);
    let detail: Value = serde_json::from_str(events[0]["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["experiment"], "fraud-shadow");
    assert_eq!(
        detail["change"],
        json!({"kind": "set_sampling", "from": 5, "to": 25})
    );
    assert_eq!(detail["sampling_percentage"], 25);
    let tags = aws.added_tags(&arn);
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        ["shadowpilot:step", "shadowpilot:steps"]
    );
    assert_step_mark(&tags["shadowpilot:step"], "25", (before, after));
    assert_eq!(tags["shadowpilot:steps"], minute_mark(5, modified));
    assert_eq!(fraud["tags"]["set"], json!(tags), "{fraud:#}");
    let written = aws.experiment("fraud-shadow");
    assert_eq!(written.sampling, 25);
    assert!(written
        .tags
        .contains(&("shadowpilot:steps".into(), minute_mark(5, modified))));
    assert_two_rounds(&aws.metric_calls());
    assert_eq!(aws.violations(), Vec::<String>::new());
    // The runtime goes back for the next invocation.
    assert!(runtime.wait_for_polls(2, WAIT));
    function.kill();
}

#[test]
fn manual_dry_run_reports_and_writes_nothing() {
    let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);

    let report = response(invoke(&runtime, &function, json!({"dry_run": true})));

    assert_eq!(report["dry_run"], true, "{report:#}");
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(fraud["actions"][0]["to"], 25);
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "dry_run");
    // It reports the tags it would write, and writes none.
    let set = fraud["tags"]["set"].as_object().expect("tags.set");
    assert_eq!(
        set.keys().collect::<Vec<_>>(),
        ["shadowpilot:step", "shadowpilot:steps"]
    );
    assert_eq!(
        aws.writes(),
        Vec::<String>::new(),
        "{:?}",
        tally(&aws.operations())
    );
    assert_two_rounds(&aws.metric_calls());
    assert_eq!(aws.experiment("fraud-shadow").sampling, 5);
    function.kill();
}

#[test]
fn dry_run_variable_makes_the_scheduled_tick_dry() {
    let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let runtime = FakeRuntime::start();
    let mut command = function_command(&runtime, &aws);
    command.env("SHADOWPILOT_DRY_RUN", "true");
    let mut function = start(command, &runtime);

    let scheduled = response(invoke(
        &runtime,
        &function,
        fixture_event("scheduled-event.json"),
    ));
    let manual = response(invoke(&runtime, &function, json!({"dry_run": false})));

    for report in [&scheduled, &manual] {
        assert_eq!(report["dry_run"], true, "{report:#}");
        let fraud = entry(report, "fraud-shadow");
        assert_eq!(fraud["actions"][0]["to"], 25, "{fraud:#}");
        assert_eq!(fraud["applied"], false);
        assert_eq!(fraud["outcome"], "dry_run", "{fraud:#}");
    }
    assert_eq!(
        aws.writes(),
        Vec::<String>::new(),
        "{:?}",
        tally(&aws.operations())
    );
    function.kill();
}

/// A policy that promotes after an hour at 100 % and keeps production.
const PROMOTING: &str = "name: promoting\nchecks:\n  - metric: latency_p99\n    max_ratio_to_production: 1.2\nramp:\n  steps: [5, 25, 100]\n  bake_time: 30m\nstop:\n  promote:\n    after_passing: 1h\n    production: retain\n";

#[test]
fn a_due_promotion_is_planned_by_a_dry_run_and_sent_by_the_scheduled_tick() {
    let policy_dir =
        std::env::temp_dir().join(format!("shadowpilot-promote-{}", std::process::id()));
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("promoting.yaml"), PROMOTING).unwrap();
    let mut fraud = FakeExperiment::new("fraud-shadow")
        .sampling(100)
        .tag("shadowpilot:policy", "promoting");
    let since = fraud.last_modified;
    fraud = fraud.tag("shadowpilot:step", &minute_mark(100, since));
    let aws = FakeAws::start(vec![fraud]);
    let runtime = FakeRuntime::start();
    let mut command = function_command(&runtime, &aws);
    command.env("SHADOWPILOT_POLICIES", &policy_dir);
    let mut function = start(command, &runtime);

    let dry = response(invoke(&runtime, &function, json!({"dry_run": true})));
    let planned = entry(&dry, "fraud-shadow");
    assert_eq!(planned["verdict"], "pass", "{planned:#}");
    assert_eq!(
        planned["actions"][0]["kind"], "stop_experiment",
        "{planned:#}"
    );
    assert_eq!(planned["outcome"], "dry_run");
    assert_eq!(
        aws.writes(),
        Vec::<String>::new(),
        "a dry run sends no stop"
    );

    let live = response(invoke(
        &runtime,
        &function,
        fixture_event("scheduled-event.json"),
    ));
    let stopped = entry(&live, "fraud-shadow");
    assert_eq!(stopped["applied"], true, "{stopped:#}");
    assert_eq!(
        aws.writes(),
        [
            "StopInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            "PutEvents fraud-shadow"
        ]
    );
    let stops = aws.stops();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["Name"], "fraud-shadow");
    assert_eq!(
        stops[0]["ModelVariantActions"],
        json!({"production": "Retain", "shadow": "Promote"})
    );
    assert_eq!(stops[0]["DesiredState"], "Completed");
    assert!(stops[0].get("DesiredModelVariants").is_none());
    let reason = stops[0]["Reason"].as_str().unwrap();
    // The step began three hours ago, on a whole minute.
    assert!(
        reason.starts_with("shadowpilot: passing at 100 % for 2h 59m (promote after 1h)")
            || reason.starts_with("shadowpilot: passing at 100 % for 3h (promote after 1h)"),
        "{reason}"
    );
    assert!(reason.contains("p99 ratio"), "{reason}");
    let kinds: Vec<Value> = aws
        .events()
        .iter()
        .map(|e| e["DetailType"].clone())
        .collect();
    assert!(kinds.contains(&json!("Experiment Stopped")), "{kinds:?}");
    assert_eq!(aws.experiment("fraud-shadow").status, "Stopping");
    assert_eq!(aws.violations(), Vec::<String>::new());

    // Stopping now: the next tick steers nothing and writes nothing.
    let again = response(invoke(
        &runtime,
        &function,
        fixture_event("scheduled-event.json"),
    ));
    assert_eq!(entry(&again, "fraud-shadow")["verdict"], "skipped");
    assert_eq!(aws.stops().len(), 1);
    function.kill();
    let _ = std::fs::remove_dir_all(&policy_dir);
}

#[test]
fn named_experiments_are_the_only_ones_read_and_written() {
    let aws = FakeAws::start(vec![
        FakeExperiment::new("fraud-shadow"),
        FakeExperiment::new("ranker-shadow"),
    ]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);

    let report = response(invoke(
        &runtime,
        &function,
        json!({"dry_run": false, "experiments": ["ranker-shadow", "missing-shadow"]}),
    ));

    assert_eq!(report["dry_run"], false);
    let names: Vec<&Value> = report["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert_eq!(names, vec!["missing-shadow", "ranker-shadow"], "{report:#}");
    assert_eq!(entry(&report, "missing-shadow")["verdict"], "error");
    assert_eq!(entry(&report, "ranker-shadow")["applied"], true);
    assert_eq!(
        aws.writes(),
        [
            "UpdateInferenceExperiment ranker-shadow",
            "AddTags ranker-shadow",
            "PutEvents ranker-shadow"
        ]
    );
    let ranker_arn = aws.experiment("ranker-shadow").arn();
    assert_eq!(
        aws.added_tags(&ranker_arn).keys().collect::<Vec<_>>(),
        ["shadowpilot:step", "shadowpilot:steps"]
    );
    let described = aws.described_names();
    assert!(!described.contains(&json!("fraud-shadow")), "{described:?}");
    assert_eq!(aws.experiment("fraud-shadow").sampling, 5);
    function.kill();
}

#[test]
fn typo_in_the_payload_is_an_error_that_touches_nothing() {
    let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);

    let outcome = invoke(&runtime, &function, json!({"dryrun": false}));

    let Outcome::Error(error) = outcome else {
        panic!("a typo must fail the invocation, got {outcome:?}");
    };
    let message = error["errorMessage"].as_str().expect("an errorMessage");
    assert!(message.contains("dryrun"), "{error:#}");
    assert!(message.contains("nothing was done"), "{error:#}");
    assert!(error["errorType"].is_string(), "{error:#}");
    // Not a single AWS call: the payload is refused before any I/O.
    assert_eq!(aws.operations(), Vec::<String>::new());
    // And the function survives to take the next invocation.
    assert!(runtime.wait_for_polls(2, WAIT));
    function.kill();
}

#[test]
fn warm_container_serves_a_retried_tick_without_writing_twice() {
    let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);
    let scheduled = fixture_event("scheduled-event.json");

    let first = response(invoke(&runtime, &function, scheduled.clone()));
    let after_first = aws.count(GET_METRIC_DATA);
    let second = response(invoke(&runtime, &function, scheduled));
    let after_second = aws.count(GET_METRIC_DATA);
    let v2 = response(invoke(
        &runtime,
        &function,
        fixture_event("schedulev2-input.json"),
    ));

    assert_eq!(entry(&first, "fraud-shadow")["applied"], true);
    // The retries find the step tag the first tick wrote: the 25 % step is
    // seconds old, so they dwell, and there is nothing to tag either.
    for report in [&second, &v2] {
        assert_eq!(report["dry_run"], false);
        let fraud = entry(report, "fraud-shadow");
        assert_eq!(fraud["sampling_percentage"], 25);
        assert_eq!(fraud["verdict"], "inconclusive", "{fraud:#}");
        assert_eq!(fraud["actions"], json!([]));
        assert_eq!(fraud["evidence"]["step_origin"], json!({"kind": "tagged"}));
        assert_eq!(fraud["tags"], json!({"set": {}, "remove": []}), "{fraud:#}");
        assert_eq!(fraud["outcome"], "none", "{fraud:#}");
    }
    assert_eq!(
        aws.writes(),
        [
            "UpdateInferenceExperiment fraud-shadow",
            "AddTags fraud-shadow",
            // The retried ticks find the tags written: nothing announced again.
            "PutEvents fraud-shadow"
        ],
        "{:?}",
        tally(&aws.operations())
    );
    // Every tick, two rounds of GetMetricData.
    let calls = aws.metric_calls();
    assert_two_rounds(&calls[..after_first]);
    assert_two_rounds(&calls[after_first..after_second]);
    assert_two_rounds(&calls[after_second..]);
    function.kill();
}

#[test]
fn without_a_valid_configuration_the_function_exits_during_init() {
    let cases: [(&str, Option<&str>, &str); 4] = [
        (
            "SHADOWPILOT_SCHEDULE",
            None,
            "SHADOWPILOT_SCHEDULE is not set",
        ),
        (
            "SHADOWPILOT_SCHEDULE",
            Some("cron(0 L * * ? *)"),
            "uses L, W or #",
        ),
        ("SHADOWPILOT_DRY_RUN", Some("yes"), "must be true or false"),
        (
            "SHADOWPILOT_SCHEDULE",
            Some("cron(61 25 * * ? *)"),
            "SHADOWPILOT_SCHEDULE: cron(61 25 * * ? *): minute 61 is out of range 0-59",
        ),
    ];
    for (variable, value, expected) in cases {
        let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
        let runtime = FakeRuntime::start();
        let mut command = function_command(&runtime, &aws);
        match value {
            None => command.env_remove(variable),
            Some(value) => command.env(variable, value),
        };
        let mut function = Running::spawn(command);

        let status = function
            .wait_timeout(WAIT)
            .unwrap_or_else(|| panic!("{variable}={value:?}: still running instead of exiting"));

        assert!(!status.success(), "{variable}={value:?}: exit {status:?}");
        let stderr = function.stderr().join("\n");
        // The log line (stdout) has the cause on one line; stderr has the
        // runtime's exit error with the causes listed.
        let logged = function.stdout().join("\n");
        assert!(
            stderr.contains("Error: ") && (logged.contains(expected) || stderr.contains(expected)),
            "{variable}={value:?}: {stderr}\n{logged}"
        );
        // It exits before the runtime client exists: no /init/error post,
        // no poll for work, no AWS call. Lambda reports such an init as
        // Runtime.ExitError, with this stderr in the function's log.
        assert_eq!(runtime.init_errors(), Vec::<Value>::new());
        assert_eq!(runtime.next_polls(), 0);
        assert!(runtime.requests().is_empty());
        assert_eq!(aws.operations(), Vec::<String>::new());
    }
}

#[test]
fn json_log_format_puts_one_decision_line_per_experiment() {
    let aws = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let runtime = FakeRuntime::start();
    let mut command = function_command(&runtime, &aws);
    command.env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    let mut function = start(command, &runtime);

    response(invoke(&runtime, &function, json!({"dry_run": true})));
    function.kill();

    let stdout = function.stdout();
    let stderr = function.stderr();
    let mut lines = Vec::new();
    for line in stdout
        .iter()
        .chain(&stderr)
        .filter(|l| !l.trim().is_empty())
    {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        lines.push(parsed);
    }
    let decisions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 1, "{lines:#?}");
    let fields = &decisions[0]["fields"];
    assert_eq!(fields["experiment"], "fraud-shadow", "{fields:#}");
    assert_eq!(fields["verdict"], "pass");
    assert_eq!(fields["dry_run"], true);
    assert_eq!(decisions[0]["level"], "INFO");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "tick"),
        "{lines:#?}"
    );
    // The tick's metrics: raw EMF objects on stdout, `_aws` at the top.
    let emf: Vec<Value> = stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    assert_eq!(
        emf.len(),
        2,
        "the tick and one experiment's sampling: {emf:#?}"
    );
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "shadowpilot"
    );
    assert_eq!(emf[0]["Experiments"], 1.0);
    assert_eq!(emf[0]["VerdictPass"], 1.0);
    assert!(emf[0].get("Heartbeat").is_none(), "a dry run by hand");
    assert_eq!(emf[1]["Experiment"], "fraud-shadow");
    assert_eq!(emf[1]["SamplingPercentage"], 5);
}
