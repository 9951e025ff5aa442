//! The real `bootstrap` binary as Lambda runs it: a fake Lambda Runtime API
//! hands it invocations and records its answers, and a stateful fake
//! SageMaker/CloudWatch behind `AWS_ENDPOINT_URL` records what it reads and
//! writes. Every wait is bounded; the child is killed when a test ends.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    entry, hermetic_command, tally, FakeAws, FakeExperiment, FakeRuntime, Outcome, Running, WAIT,
};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");
const UPDATE: &str = "SageMaker.UpdateInferenceExperiment";

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
    let mut command = hermetic_command(BOOTSTRAP, aws.url());
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "shadowpilot")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/23/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/shadowpilot");
    command
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

fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(report) => report,
        Outcome::Error(error) => panic!("the invocation failed: {error:#}"),
    }
}

#[test]
fn scheduled_event_runs_live_and_writes_the_ramp() {
    let aws = FakeAws::start(vec![
        FakeExperiment::new("fraud-shadow"),
        FakeExperiment::new("search-shadow").untagged(),
    ]);
    let runtime = FakeRuntime::start();
    let mut function = start(function_command(&runtime, &aws), &runtime);

    let report = response(invoke(
        &runtime,
        &function,
        fixture_event("scheduled-event.json"),
    ));

    assert_eq!(report["dry_run"], false, "{report:#}");
    assert!(report["next_tick"].is_string());
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(fraud["actions"][0]["kind"], "set_sampling", "{fraud:#}");
    assert_eq!(
        (&fraud["actions"][0]["from"], &fraud["actions"][0]["to"]),
        (&json!(5), &json!(10))
    );
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert_eq!(entry(&report, "search-shadow")["verdict"], "skipped");
    assert_eq!(report["summary"]["updates_applied"], 1);

    assert_eq!(
        aws.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 10}
                ]
            }
        })]
    );
    assert_eq!(aws.experiment("fraud-shadow").sampling, 10);
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
    assert_eq!(fraud["actions"][0]["to"], 10);
    assert_eq!(fraud["applied"], false);
    assert_eq!(aws.count(UPDATE), 0, "{:?}", tally(&aws.operations()));
    assert!(aws.count("CloudWatch.GetMetricData") >= 1);
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
        assert_eq!(fraud["actions"][0]["to"], 10, "{fraud:#}");
        assert_eq!(fraud["applied"], false);
    }
    assert_eq!(aws.count(UPDATE), 0, "{:?}", tally(&aws.operations()));
    function.kill();
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
    let written: Vec<Value> = aws.updates().iter().map(|u| u["Name"].clone()).collect();
    assert_eq!(written, vec![json!("ranker-shadow")]);
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
    let second = response(invoke(&runtime, &function, scheduled));
    let v2 = response(invoke(
        &runtime,
        &function,
        fixture_event("schedulev2-input.json"),
    ));

    assert_eq!(entry(&first, "fraud-shadow")["applied"], true);
    for report in [&second, &v2] {
        assert_eq!(report["dry_run"], false);
        let fraud = entry(report, "fraud-shadow");
        assert_eq!(fraud["sampling_percentage"], 10);
        assert_eq!(fraud["verdict"], "inconclusive", "{fraud:#}");
        assert_eq!(fraud["actions"], json!([]));
    }
    assert_eq!(aws.count(UPDATE), 1, "{:?}", tally(&aws.operations()));
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
}
