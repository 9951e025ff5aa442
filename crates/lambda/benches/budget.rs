//! Issue 9's targets, measured, not a test: the release `bootstrap`
//! against the fake Lambda Runtime API and the fake SageMaker/CloudWatch,
//! which add a fixed latency to every call. Each figure is the median of
//! `BUDGET_RUNS` runs (default 5). Set `SHADOWPILOT_BOOTSTRAP_BEFORE` to
//! a bootstrap built from the code before the change to print both side
//! by side (`scripts/measure-tick-budget` does all of it).
//!
//! ```sh
//! cargo bench -p shadowpilot-lambda --bench budget
//! ```
//!
//! 1. A dry tick over 50 Running experiments with 3 h of evidence at 50 ms
//!    a call: wall time, calls by operation, and rounds (clusters of
//!    requests that arrived at least 0.8 × the latency after the last
//!    cluster began: the calls that had to wait for an earlier answer).
//! 2. The same over 500 experiments at 25 ms a call, with peak RSS.
//! 3. A live tick over 50 experiments at 25 ms a call, without faults and
//!    with three throttles in a row on DescribeInferenceExperiment,
//!    GetMetricData and UpdateInferenceExperiment: the difference, and
//!    whether both end in the same state.
//! 4. 2 s a call under a 15 s Lambda deadline, 20 experiments, live: when
//!    the report came back, how many experiments it accounts for, and the
//!    updates that reached SageMaker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    fleet, lambda_command, tally, FakeAws, FakeExperiment, FakeOptions, FakeRuntime, Outcome,
    Running, WAIT,
};

fn runs() -> usize {
    std::env::var("BUDGET_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Every experiment Running and opted in; one in ten with a slow shadow.
fn running(n: usize, evidence_hours: f64) -> Vec<FakeExperiment> {
    fleet(n, evidence_hours / 24.0)
        .into_iter()
        .map(|e| e.status("Running").tag("shadowpilot:policy", "default"))
        .collect()
}

/// Ends soon, so a live tick writes: an extension, and the step tag.
fn ending(n: usize) -> Vec<FakeExperiment> {
    running(n, 3.0)
        .into_iter()
        .map(|mut e| {
            e.end_time = shadowpilot_testkit::fake_aws::epoch_now().floor() + 3600.0;
            e
        })
        .collect()
}

struct Function {
    aws: FakeAws,
    runtime: FakeRuntime,
    process: Running,
}

fn start(binary: &str, experiments: Vec<FakeExperiment>, options: FakeOptions) -> Function {
    let aws = FakeAws::with_options(experiments, options);
    let runtime = FakeRuntime::start();
    let mut command = lambda_command(binary, &runtime, &aws, "budget");
    command.env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    let process = Running::spawn(command);
    assert!(
        runtime.wait_for_polls(1, WAIT),
        "no poll: {:?}",
        process.stderr()
    );
    Function {
        aws,
        runtime,
        process,
    }
}

struct Tick {
    wall: Duration,
    report: Option<Value>,
    calls: BTreeMap<String, usize>,
    rounds: usize,
}

fn tick(function: &Function, event: Value, latency: Duration) -> Tick {
    let before = function.aws.requests().len();
    let id = function.runtime.invoke(event);
    let outcome = function.runtime.outcome(&id, Duration::from_secs(600));
    let wall = function.runtime.duration(&id).unwrap_or(Duration::MAX);
    let requests = function.aws.requests()[before..].to_vec();
    let operations: Vec<String> = requests
        .iter()
        .map(shadowpilot_testkit::fake_aws::operation)
        .collect();
    let mut rounds = 0;
    let mut round_start: Option<Instant> = None;
    let mut arrivals: Vec<Instant> = requests.iter().map(|r| r.received).collect();
    arrivals.sort();
    for at in arrivals {
        if round_start.is_none_or(|start| at.duration_since(start) >= latency.mul_f64(0.8)) {
            rounds += 1;
            round_start = Some(at);
        }
    }
    let report = match outcome {
        Some(Outcome::Response(report)) => Some(report),
        _ => None,
    };
    Tick {
        wall,
        report,
        calls: tally(&operations),
        rounds,
    }
}

fn dry() -> Value {
    json!({"dry_run": true})
}

fn live() -> Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(duration: Duration) -> String {
    if duration == Duration::MAX {
        "no answer".into()
    } else {
        format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
    }
}

fn calls_text(calls: &BTreeMap<String, usize>) -> String {
    calls
        .iter()
        .map(|(op, n)| {
            let short = op
                .trim_start_matches("SageMaker.")
                .trim_start_matches("CloudWatch.");
            format!("{short} {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a live tick leaves behind, without the clock: sampling, whether
/// the end moved, and the tags with their times cut off.
fn final_state(aws: &FakeAws, names: &[String], ends: &[f64]) -> Vec<String> {
    names
        .iter()
        .zip(ends)
        .map(|(name, end)| {
            let e = aws.experiment(name);
            let mut tags: Vec<String> = e
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={}", v.split('@').next().unwrap_or("")))
                .collect();
            tags.sort();
            format!(
                "{name} {} {}% extended={} {}",
                e.status,
                e.sampling,
                e.end_time > *end,
                tags.join(",")
            )
        })
        .collect()
}

fn dry_fleet(binary: &str, n: usize, latency_ms: u64) -> (Duration, Tick, u64) {
    let latency = Duration::from_millis(latency_ms);
    let function = start(
        binary,
        running(n, 3.0),
        FakeOptions {
            latency,
            ..FakeOptions::default()
        },
    );
    let ticks: Vec<Tick> = (0..runs())
        .map(|_| tick(&function, dry(), latency))
        .collect();
    let hwm = function.process.memory_kb().map_or(0, |(hwm, _)| hwm);
    let wall = median(ticks.iter().map(|t| t.wall).collect());
    let last = ticks.into_iter().last().expect("at least one run");
    (wall, last, hwm)
}

fn live_once(binary: &str, n: usize, throttled: bool) -> (Duration, Vec<String>) {
    let latency = Duration::from_millis(25);
    let experiments = ending(n);
    let names: Vec<String> = experiments.iter().map(|e| e.name.clone()).collect();
    let ends: Vec<f64> = experiments.iter().map(|e| e.end_time).collect();
    let throttle_first = if throttled {
        vec![
            ("SageMaker.DescribeInferenceExperiment", 3),
            ("CloudWatch.GetMetricData", 3),
            ("SageMaker.UpdateInferenceExperiment", 3),
        ]
    } else {
        Vec::new()
    };
    let function = start(
        binary,
        experiments,
        FakeOptions {
            latency,
            throttle_first,
            ..FakeOptions::default()
        },
    );
    let done = tick(&function, live(), latency);
    (done.wall, final_state(&function.aws, &names, &ends))
}

fn measure(label: &str, binary: &str) {
    println!("## {label}: {binary}");

    let (wall, last, _) = dry_fleet(binary, 50, 50);
    println!(
        "1. dry tick, 50 Running, 3 h evidence, 50 ms/call: median {} over {} runs; {} rounds; calls: {}",
        ms(wall),
        runs(),
        last.rounds,
        calls_text(&last.calls)
    );

    let (wall, last, hwm) = dry_fleet(binary, 500, 25);
    println!(
        "2. dry tick, 500 Running, 3 h evidence, 25 ms/call: median {}; {} rounds; peak RSS {:.1} MiB; calls: {}",
        ms(wall),
        last.rounds,
        hwm as f64 / 1024.0,
        calls_text(&last.calls)
    );

    let clean: Vec<(Duration, Vec<String>)> =
        (0..runs()).map(|_| live_once(binary, 50, false)).collect();
    let faulty: Vec<(Duration, Vec<String>)> =
        (0..runs()).map(|_| live_once(binary, 50, true)).collect();
    let same = clean.iter().zip(&faulty).all(|((_, a), (_, b))| a == b);
    let clean_wall = median(clean.iter().map(|(w, _)| *w).collect());
    let faulty_wall = median(faulty.iter().map(|(w, _)| *w).collect());
    println!(
        "3. live tick, 50 experiments, 25 ms/call: no faults {}, three throttles in a row on Describe, GetMetricData and Update {} (+{}); same final state: {}",
        ms(clean_wall),
        ms(faulty_wall),
        ms(faulty_wall.saturating_sub(clean_wall)),
        if same { "yes" } else { "NO" }
    );

    let latency = Duration::from_secs(2);
    let function = start(
        binary,
        ending(20),
        FakeOptions {
            latency,
            ..FakeOptions::default()
        },
    );
    function.runtime.set_deadline(Duration::from_secs(15));
    let done = tick(&function, live(), latency);
    let accounted = done
        .report
        .as_ref()
        .and_then(|r| r["experiments"].as_array().map(Vec::len))
        .unwrap_or(0);
    let deferred = done
        .report
        .as_ref()
        .and_then(|r| r["experiments"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["outcome"] == "deferred")
        .count();
    println!(
        "4. 2 s/call under a 15 s deadline, 20 experiments, live: answered after {}; {accounted} of 20 accounted for, {deferred} deferred; updates that reached SageMaker {}",
        ms(done.wall),
        function.aws.updates().len()
    );
    println!();
}

fn main() {
    let current = std::env::var("SHADOWPILOT_BOOTSTRAP")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bootstrap").into());
    if let Some(before) = std::env::var("SHADOWPILOT_BOOTSTRAP_BEFORE")
        .ok()
        .filter(|path| !path.is_empty())
    {
        measure("before", &before);
    }
    measure("this change", &current);
}
