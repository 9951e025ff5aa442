//! The real `shadowpilot` CLI binary against a local, stateful stand-in for
//! SageMaker and CloudWatch reached through `AWS_ENDPOINT_URL`: what it
//! prints, and what it writes to "AWS" (and what it never writes).

use std::process::Command;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    entry, hermetic_command, run_to_end, tally, FakeAws, FakeExperiment, FakeOptions, Finished,
    Profile, DAY, HOUR,
};

const CLI: &str = env!("CARGO_BIN_EXE_shadowpilot");
const UPDATE: &str = "SageMaker.UpdateInferenceExperiment";

fn cli(fake: &FakeAws, args: &[&str]) -> Command {
    let mut command = hermetic_command(CLI, fake.url());
    command.args(args);
    command
}

fn run(fake: &FakeAws, args: &[&str]) -> Finished {
    run_to_end(cli(fake, args))
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

#[test]
fn dry_run_reports_the_ramp_and_writes_nothing() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);

    let finished = run(&fake, &["run", "--output", "json"]);

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
    assert_eq!(set_sampling(fraud), vec![(5, 10)], "{fraud:#}");
    assert_eq!(fraud["actions"].as_array().unwrap().len(), 1, "{fraud:#}");
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "dry_run", "{fraud:#}");
    // Every check was judged on the fake's numbers, none without data.
    let checks = fraud["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    for check in checks {
        assert_eq!(check["outcome"], "pass", "{check:#}");
        assert!(check["value"].is_number(), "{check:#}");
    }
    assert_eq!(report["summary"]["pass"], 1);
    assert_eq!(report["summary"]["actions_planned"], 1);
    assert_eq!(report["summary"]["updates_applied"], 0);

    assert_eq!(fake.count(UPDATE), 0, "{:?}", tally(&fake.operations()));
    assert_eq!(fake.experiment("fraud-shadow").sampling, 5);
    assert_eq!(fake.violations(), Vec::<String>::new());
    // It read what a tick reads: the list, the experiment and its tags, and
    // one batched GetMetricData.
    let ops = tally(&fake.operations());
    assert_eq!(ops.get("SageMaker.ListInferenceExperiments"), Some(&1));
    assert_eq!(ops.get("SageMaker.DescribeInferenceExperiment"), Some(&1));
    assert_eq!(ops.get("SageMaker.ListTags"), Some(&1));
    assert_eq!(ops.get("CloudWatch.GetMetricData"), Some(&1));
}

#[test]
fn apply_writes_one_update_with_the_whole_shadow_mode_config() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    let before = fake.experiment("fraud-shadow");

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["dry_run"], false);
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(set_sampling(fraud), vec![(5, 10)]);
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert!(fraud.get("error").is_none(), "{fraud:#}");
    assert_eq!(report["summary"]["updates_applied"], 1);

    assert_eq!(
        fake.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 10}
                ]
            }
        })],
        "exactly one update, no Schedule"
    );
    let after = fake.experiment("fraud-shadow");
    assert_eq!(after.sampling, 10);
    assert_eq!(after.end_time, before.end_time);
    assert!(after.last_modified > before.last_modified);
    assert_eq!(fake.violations(), Vec::<String>::new());
    // Apply re-read the experiment (and its tags) right before writing.
    let ops = fake.operations();
    let update_at = ops.iter().position(|op| op == UPDATE).unwrap();
    assert_eq!(
        ops[update_at - 2..update_at],
        [
            "SageMaker.DescribeInferenceExperiment",
            "SageMaker.ListTags"
        ]
    );
    assert_eq!(fake.count("SageMaker.DescribeInferenceExperiment"), 2);
}

#[test]
fn a_second_apply_finds_nothing_new_to_do() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    assert_success(&run(&fake, &["run", "--apply", "--output", "json"]));
    assert_eq!(fake.count(UPDATE), 1);

    // The same tick again, at once (a retried or duplicated invocation): the
    // change is minutes old, so there is no evidence at 10 % yet.
    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    let fraud = entry(&report, "fraud-shadow");
    assert_eq!(fraud["sampling_percentage"], 10);
    assert_eq!(fraud["verdict"], "inconclusive", "{fraud:#}");
    assert_eq!(fraud["actions"], json!([]), "{fraud:#}");
    assert_eq!(fraud["applied"], false);
    assert_eq!(fake.count(UPDATE), 1, "{:?}", tally(&fake.operations()));
    assert_eq!(fake.experiment("fraud-shadow").sampling, 10);
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
    assert_eq!(set_sampling(fraud), vec![(5, 10)]);
    assert_eq!(fraud["applied"], false);
    assert_eq!(fake.count(UPDATE), 0, "{:?}", tally(&fake.operations()));
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
    for cell in ["Running", "5 %", "pass", "sampling 5 → 10 % (dry run)"] {
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
    assert_eq!(fake.count(UPDATE), 0);
}

#[test]
fn untagged_is_skipped_and_regressed_ramps_down() {
    let fake = FakeAws::with_options(
        vec![
            FakeExperiment::new("fraud-shadow"),
            FakeExperiment::new("search-shadow").untagged(),
            FakeExperiment::new("ranker-shadow")
                .sampling(25)
                .shadow(Profile::slow_shadow()),
            FakeExperiment::new("old-shadow").status("Completed"),
        ],
        // Four experiments over three pages: every page must be read.
        FakeOptions {
            list_page_size: 2,
            ..FakeOptions::default()
        },
    );

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    assert_eq!(report["summary"]["experiments"], 4, "{report:#}");
    assert_eq!(fake.count("SageMaker.ListInferenceExperiments"), 2);

    let search = entry(&report, "search-shadow");
    assert_eq!(search["verdict"], "skipped", "{search:#}");
    assert_eq!(search["policy"], Value::Null);
    assert_eq!(search["actions"], json!([]));
    assert_eq!(search["applied"], false);
    assert!(
        !fake
            .measured_endpoints()
            .contains(&"search-shadow-endpoint".to_string()),
        "an unselected experiment is not even measured"
    );

    let ranker = entry(&report, "ranker-shadow");
    assert_eq!(ranker["verdict"], "fail", "{ranker:#}");
    assert_eq!(set_sampling(ranker), vec![(25, 10)], "{ranker:#}");
    assert_eq!(ranker["applied"], true);
    let decisive = ranker["decisive"].as_str().expect("a decisive check");
    assert!(decisive.contains("p99"), "{decisive}");
    let p99 = ranker["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "latency_p99")
        .expect("a p99 check");
    assert_eq!(p99["outcome"], "fail");
    // 240 ms against production's 80 ms, in ms.
    assert_eq!(p99["value"].as_f64(), Some(240.0), "{p99:#}");

    let old = entry(&report, "old-shadow");
    assert_eq!(old["verdict"], "skipped");

    // Writes go out a few at a time, so their order is not fixed.
    let mut written: Vec<String> = fake
        .updates()
        .iter()
        .map(|u| u["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    written.sort();
    assert_eq!(written, ["fraud-shadow", "ranker-shadow"]);
    assert_eq!(fake.experiment("search-shadow").sampling, 5);
    assert_eq!(fake.experiment("ranker-shadow").sampling, 10);
    assert_eq!(fake.experiment("fraud-shadow").sampling, 10);
    // Completed experiments are not even described.
    let described = fake.described_names();
    assert!(!described.contains(&json!("old-shadow")), "{described:?}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn extension_and_ramp_travel_in_one_update_capped_at_thirty_days() {
    let mut ending = FakeExperiment::new("fraud-shadow");
    // Started 29 days ago, ends in 3 hours: the default policy wants 2 more
    // days, AWS allows one more.
    let now = ending.end_time - 5.0 * DAY;
    ending.start_time = now - 29.0 * DAY;
    ending.end_time = now + 3.0 * HOUR;
    let cap = ending.start_time + 30.0 * DAY;
    let fake = FakeAws::start(vec![ending]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

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
    assert_eq!(fraud["applied"], true, "{fraud:#}");
    assert_eq!(
        fake.updates(),
        vec![json!({
            "Name": "fraud-shadow",
            "Schedule": {"EndTime": cap as u64},
            "ShadowModeConfig": {
                "SourceModelVariantName": "production",
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": "shadow", "SamplingPercentage": 10}
                ]
            }
        })]
    );
    assert_eq!(fake.experiment("fraud-shadow").end_time, cap);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn held_experiment_is_judged_and_never_written() {
    let fake = FakeAws::start(vec![
        FakeExperiment::new("fraud-shadow").tag("shadowpilot:hold", "true")
    ]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["held"], true);
    assert_eq!(fraud["verdict"], "pass", "{fraud:#}");
    assert_eq!(set_sampling(&fraud), vec![(5, 10)]);
    assert_eq!(fraud["applied"], false);
    assert_eq!(fraud["outcome"], "held", "{fraud:#}");
    assert_eq!(fake.count(UPDATE), 0);
}

#[test]
fn a_person_changing_sampling_mid_tick_is_not_overwritten() {
    let fake = FakeAws::start(vec![FakeExperiment::new("fraud-shadow")]);
    fake.after_first_metrics(|experiments| {
        experiments[0].sampling = 50;
        experiments[0].last_modified = shadowpilot_testkit::fake_aws::epoch_now();
    });

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let fraud = entry(&finished.json(), "fraud-shadow").clone();
    assert_eq!(fraud["applied"], false, "{fraud:#}");
    assert_eq!(fraud["outcome"], "changed_since_read", "{fraud:#}");
    let reason = fraud["reason"].as_str().unwrap();
    assert!(reason.contains("sampling changed 5 → 50"), "{reason}");
    assert_eq!(fake.count(UPDATE), 0, "{:?}", tally(&fake.operations()));
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
        fake.count(UPDATE),
        0,
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
    assert_eq!(fake.count(UPDATE), 0);
}

#[test]
fn no_datapoints_is_inconclusive_and_created_is_not_judged() {
    let fake = FakeAws::start(vec![
        FakeExperiment::new("quiet-shadow").shadow(Profile::silent()),
        FakeExperiment::new("new-shadow").status("Created"),
    ]);

    let finished = run(&fake, &["run", "--apply", "--output", "json"]);

    assert_success(&finished);
    let report = finished.json();
    let quiet = entry(&report, "quiet-shadow");
    assert_eq!(quiet["verdict"], "inconclusive", "{quiet:#}");
    assert_eq!(quiet["actions"], json!([]), "{quiet:#}");
    let evidence = &quiet["checks"][0];
    assert_eq!(evidence["metric"], "shadow_invocations", "{quiet:#}");
    assert_eq!(evidence["value"], Value::Null, "no datapoint is not zero");
    let created = entry(&report, "new-shadow");
    assert_eq!(created["verdict"], "skipped", "{created:#}");
    assert_eq!(created["policy"], "default");
    assert_eq!(
        fake.measured_endpoints(),
        vec!["quiet-shadow-endpoint".to_string()]
    );
    assert_eq!(fake.count(UPDATE), 0);
}
