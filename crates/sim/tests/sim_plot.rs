//! The plot and the printed forms of a run.

use std::path::Path;
use std::time::Duration;

use shadowpilot_core::policy::builtin_policies;
use shadowpilot_sim::{run, write_svg, Scenario, Stop};

#[tokio::test]
async fn until_stops_the_run_and_every_output_names_the_experiments() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/latency-regression.yaml");
    let scenario = Scenario::load(&path).expect("valid scenario");
    let policies = builtin_policies().expect("policies");
    let outcome = run(&scenario, &policies, Some(Duration::from_secs(3 * 86_400)))
        .await
        .expect("runs");
    assert_eq!(outcome.stop, Stop::Until);
    assert_eq!(outcome.ticks, 3 * 144);
    assert_eq!(
        outcome.finished_at - outcome.start,
        chrono::Duration::days(3)
    );

    let timeline = outcome.timeline_table();
    assert!(timeline.contains("sampling 5 → 25 %"), "{timeline}");
    assert!(
        timeline.contains("search-v3") && timeline.contains("fail"),
        "{timeline}"
    );
    let summary = outcome.summary_table();
    assert!(
        summary.contains("when the run stopped (--until)"),
        "{summary}"
    );

    let json = outcome.to_json();
    assert_eq!(json["experiments"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["stop"], "until");
    assert!(json["timeline"]
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["verdict"] == "fail")));
    assert!(json["writes"].as_array().is_some_and(|w| !w.is_empty()));

    let dir = std::env::temp_dir().join(format!("shadowpilot-sim-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = dir.join("run.svg");
    write_svg(&outcome, &svg).expect("plot written");
    let text = std::fs::read_to_string(&svg).expect("svg readable");
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    for expected in [
        "search-v2 — sampling %",
        "search-v3 — sampling %",
        "p99 model latency, ms",
        "5xx rate, %",
        "latency-regression",
    ] {
        assert!(text.contains(expected), "{expected} missing from the SVG");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_scenario_naming_an_unknown_policy_is_refused_before_running() {
    let text = "name: t\nschedule: rate(10 minutes)\nexperiments:\n  - name: a\n    policy: nope\n    sampling: 5\n";
    let scenario = Scenario::parse("t.yaml", text).expect("valid scenario");
    let error = run(&scenario, &builtin_policies().expect("policies"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("t.yaml: experiments use nope that no loaded policy is called"),
        "{error}"
    );
}
