//! Sizing the Lambda, not a test: runs the real `bootstrap` against the
//! fake Lambda Runtime API and the fake SageMaker/CloudWatch with 1, 50 and
//! 500 experiments and prints peak RSS (VmHWM), CPU time and wall time per
//! invocation. Run it with `scripts/measure-lambda-footprint` (release
//! binary) or
//!
//! ```sh
//! cargo bench -p shadowpilot-lambda --bench footprint
//! ```
//!
//! Knobs (environment): `SHADOWPILOT_BOOTSTRAP` (binary to measure; default
//! the debug `bootstrap` cargo built for this test), `FOOTPRINT_SIZES`
//! (default `1,50,500`), `FOOTPRINT_LATENCY_MS` (per-request latency the
//! fake AWS adds, comma-separated; default `0,25`), `FOOTPRINT_DRY_TICKS`
//! (read-only ticks before the live one; default 3), `FOOTPRINT_EVIDENCE_DAYS`
//! (how long each experiment has been running, so how much evidence every
//! tick re-reads; comma-separated; default `3,29.5`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    fleet, lambda_command, FakeAws, FakeOptions, FakeRuntime, Outcome, Running, WAIT,
};

fn list_var<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|item| {
            item.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {item:?}"))
        })
        .collect()
}

/// CPU seconds (user + system, all threads) the process has used so far.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; fields after the closing parenthesis.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / ticks_per_second
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct Row {
    experiments: usize,
    latency_ms: u64,
    invocation: String,
    wall: Duration,
    cpu: f64,
    hwm_kb: u64,
    rss_kb: u64,
    calls: usize,
    /// GetMetricData calls and the datapoints they asked for.
    metric_calls: usize,
    datapoints: u64,
    writes: usize,
    evidence_days: f64,
}

/// Datapoints a GetMetricData call asks for: per query, its window over its
/// period.
fn datapoints(call: &Value) -> u64 {
    let (Some(start), Some(end)) = (
        call["StartTime"]["$epoch"].as_f64(),
        call["EndTime"]["$epoch"].as_f64(),
    ) else {
        return 0;
    };
    call["MetricDataQueries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|query| {
            let period = query["MetricStat"]["Period"]
                .as_f64()
                .unwrap_or(60.0)
                .max(60.0);
            ((end - start) / period).ceil() as u64
        })
        .sum()
}

fn measure(
    binary: &str,
    n: usize,
    latency_ms: u64,
    dry_ticks: usize,
    ticks_per_second: f64,
    evidence_days: f64,
) -> Vec<Row> {
    let aws = FakeAws::with_options(
        fleet(n, evidence_days),
        FakeOptions {
            latency: Duration::from_millis(latency_ms),
            ..FakeOptions::default()
        },
    );
    let runtime = FakeRuntime::start();
    let mut command = lambda_command(binary, &runtime, &aws, "footprint");
    command.env("AWS_LAMBDA_LOG_FORMAT", "JSON");

    let started = Instant::now();
    let mut function = Running::spawn(command);
    assert!(
        runtime.wait_for_polls(1, WAIT),
        "no poll: {:?}",
        function.stderr()
    );
    let mut rows = Vec::new();
    let (hwm_kb, rss_kb) = function.memory_kb().expect("/proc/PID/status");
    rows.push(Row {
        experiments: n,
        latency_ms,
        invocation: "init".into(),
        wall: started.elapsed(),
        cpu: cpu_seconds(function.pid(), ticks_per_second),
        hwm_kb,
        rss_kb,
        calls: aws.requests().len(),
        metric_calls: 0,
        datapoints: 0,
        writes: 0,
        evidence_days,
    });

    let events: Vec<(String, Value)> = (0..dry_ticks)
        .map(|i| (format!("dry {}", i + 1), json!({"dry_run": true})))
        .chain([(
            "live".to_string(),
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        )])
        .collect();
    for (label, event) in events {
        let calls_before = aws.requests().len();
        let metric_before = aws.metric_calls().len();
        let writes_before = aws.updates().len();
        let cpu_before = cpu_seconds(function.pid(), ticks_per_second);
        let id = runtime.invoke(event);
        let outcome = runtime
            .outcome(&id, Duration::from_secs(600))
            .unwrap_or_else(|| panic!("{n} experiments, {label}: no answer"));
        if let Outcome::Error(error) = &outcome {
            panic!("{n} experiments, {label}: {error:#}");
        }
        // Let the runtime settle back into its poll before sampling /proc.
        runtime.wait_for_polls(rows.len() + 1, WAIT);
        let (hwm_kb, rss_kb) = function.memory_kb().expect("/proc/PID/status");
        rows.push(Row {
            experiments: n,
            latency_ms,
            invocation: label,
            wall: runtime.duration(&id).expect("timed"),
            cpu: cpu_seconds(function.pid(), ticks_per_second) - cpu_before,
            hwm_kb,
            rss_kb,
            calls: aws.requests().len() - calls_before,
            metric_calls: aws.metric_calls().len() - metric_before,
            datapoints: aws.metric_calls()[metric_before..]
                .iter()
                .map(datapoints)
                .sum(),
            writes: aws.updates().len() - writes_before,
            evidence_days,
        });
    }
    function.kill();
    assert_eq!(aws.violations(), Vec::<String>::new());
    rows
}

fn main() {
    let binary = std::env::var("SHADOWPILOT_BOOTSTRAP")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bootstrap").into());
    let sizes: Vec<usize> = list_var("FOOTPRINT_SIZES", "1,50,500");
    let latencies: Vec<u64> = list_var("FOOTPRINT_LATENCY_MS", "0,25");
    let dry_ticks: usize = list_var("FOOTPRINT_DRY_TICKS", "3")[0];
    let evidence: Vec<f64> = list_var("FOOTPRINT_EVIDENCE_DAYS", "3,29.5");
    let ticks_per_second = clock_ticks();

    println!("binary: {binary}");
    println!(
        "{:>5} {:>5} {:>7} {:<8} {:>9} {:>8} {:>9} {:>9} {:>6} {:>5} {:>10} {:>6}",
        "days",
        "exps",
        "lat ms",
        "tick",
        "wall ms",
        "cpu ms",
        "HWM MiB",
        "RSS MiB",
        "calls",
        "GMD",
        "datapoints",
        "writes"
    );
    for &days in &evidence {
        for &latency in &latencies {
            for &n in &sizes {
                for row in measure(&binary, n, latency, dry_ticks, ticks_per_second, days) {
                    println!(
                    "{:>5} {:>5} {:>7} {:<8} {:>9.0} {:>8.0} {:>9.1} {:>9.1} {:>6} {:>5} {:>10} {:>6}",
                    row.evidence_days,
                    row.experiments,
                    row.latency_ms,
                    row.invocation,
                    row.wall.as_secs_f64() * 1000.0,
                    row.cpu * 1000.0,
                    row.hwm_kb as f64 / 1024.0,
                    row.rss_kb as f64 / 1024.0,
                    row.calls,
                    row.metric_calls,
                    row.datapoints,
                    row.writes,
                );
                }
            }
        }
    }
}
