//! Golden decisions of a CLI dry run against the local SageMaker and
//! CloudWatch stand-in: one experiment of each kind an operator meets,
//! compared per entry without prose, times or interval numbers (the tags a
//! live run would write appear as their shape, `25@<time>`).
//! `SHADOWPILOT_BLESS=1` rewrites the file.

use std::path::PathBuf;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    epoch_now, hermetic_command, run_to_end, FakeAws, FakeExperiment, Profile, HOUR,
};

const CLI: &str = env!("CARGO_BIN_EXE_shadowpilot");

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cli-dry-run.json")
}

/// A tag time as shadowpilot writes it.
fn tag_time(epoch: f64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// At `percentage`, its shadow seeing that share of production's requests.
fn sampled(mut experiment: FakeExperiment, percentage: i64) -> FakeExperiment {
    experiment.sampling = percentage;
    experiment.shadow.invocations = experiment.production.invocations * percentage as f64 / 100.0;
    experiment
}

fn fleet() -> Vec<FakeExperiment> {
    let now = epoch_now().floor();
    let mut ending = FakeExperiment::new("ending-soon").shadow(Profile::silent());
    ending.end_time = now + HOUR;
    // Changed ten minutes ago: inside the default policy's 15-minute dwell.
    let mut fresh = FakeExperiment::new("just-changed");
    fresh.last_modified = now - 10.0 * 60.0;
    // Twenty hours at the floor: ten hour-long p99 periods at 1 %.
    let mut at_floor = sampled(
        FakeExperiment::new("slow-at-floor").shadow(Profile::slow_shadow()),
        1,
    );
    at_floor.last_modified = now - 20.0 * HOUR;
    // Failed an hour into its step, healthy since.
    let latched = sampled(FakeExperiment::new("latched"), 25);
    let changed = latched.last_modified;
    let latched = latched
        .tag(
            "shadowpilot:failed",
            &format!("latency_p99@{}", tag_time(changed + HOUR)),
        )
        .tag("shadowpilot:step", &format!("25@{}", tag_time(changed)));
    // Its step already tagged, so nothing is written whether or not its
    // office-hours change window is open when the test runs.
    let conservative = FakeExperiment::new("conservative");
    let changed = conservative.last_modified;
    let conservative = conservative
        .tag("shadowpilot:policy", "conservative")
        .tag("shadowpilot:step", &format!("5@{}", tag_time(changed)));
    vec![
        FakeExperiment::new("healthy"),
        FakeExperiment::new("slow").shadow(Profile::slow_shadow()),
        at_floor,
        FakeExperiment::new("quiet").shadow(Profile::silent()),
        sampled(FakeExperiment::new("at-top"), 100),
        FakeExperiment::new("held").tag("shadowpilot:hold", "true"),
        FakeExperiment::new("untagged").untagged(),
        FakeExperiment::new("unknown-policy").tag("shadowpilot:policy", "nope"),
        FakeExperiment::new("created").status("Created"),
        FakeExperiment::new("completed").status("Completed"),
        conservative,
        latched,
        ending,
        fresh,
    ]
}

fn action(action: &Value) -> Value {
    match action["kind"].as_str() {
        Some("set_sampling") => {
            json!({"kind": "set_sampling", "from": action["from"], "to": action["to"]})
        }
        Some("extend_end_time") => {
            let at = |field: &str| {
                chrono::DateTime::parse_from_rfc3339(action[field].as_str().expect("a time"))
                    .expect("RFC 3339")
            };
            // In whole minutes: the new end is counted from the moment of
            // the tick, a little after the fleet was made.
            let seconds = (at("to") - at("from")).num_seconds();
            json!({"kind": "extend_end_time", "by_minutes": (seconds as f64 / 60.0).round() as i64})
        }
        other => panic!("unknown action kind {other:?}"),
    }
}

/// `<what>@<time> ...` as `<what>@<time> ...`: the shape of a tag value.
fn shape(value: &Value) -> Value {
    let text = value.as_str().expect("a tag value");
    let marks: Vec<String> = text
        .split(' ')
        .map(|mark| match mark.rsplit_once('@') {
            Some((what, at)) => {
                chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
                format!("{what}@<time>")
            }
            None => mark.to_string(),
        })
        .collect();
    json!(marks.join(" "))
}

fn tags(entry: &Value) -> Value {
    match entry["tags"].as_object() {
        None => Value::Null,
        Some(tags) => json!({
            "set": tags["set"].as_object().expect("set").iter().map(|(k, v)| (k.clone(), shape(v))).collect::<serde_json::Map<_, _>>(),
            "remove": tags["remove"],
        }),
    }
}

fn decisions(report: &Value) -> Value {
    let entries = report["experiments"].as_array().expect("experiments");
    json!({
        "dry_run": report["dry_run"],
        "experiments": entries.iter().map(|entry| json!({
            "name": entry["name"],
            "status": entry["status"],
            "policy": entry["policy"],
            "verdict": entry["verdict"],
            "step_origin": entry["evidence"]["step_origin"]["kind"],
            "decisive_check": entry["decisive_check"],
            "checks": entry["checks"].as_array().map(|checks| checks.iter().map(|c| json!([c["metric"], c["outcome"]])).collect::<Vec<_>>()),
            "actions": entry["actions"].as_array().expect("actions").iter().map(action).collect::<Vec<_>>(),
            "tags": tags(entry),
            "outcome": entry["outcome"],
            "attention": entry["attention"],
            "held": entry["held"],
            "error": entry["error"].get("kind"),
        })).collect::<Vec<_>>(),
        "summary": report["summary"],
    })
}

#[test]
fn a_dry_run_decides_as_recorded() {
    let fake = FakeAws::start(fleet());
    let mut command = hermetic_command(CLI, fake.url());
    command.args(["plan", "--output", "json"]);
    let finished = run_to_end(command);
    let report = finished.json();
    let now = decisions(&report);
    if std::env::var("SHADOWPILOT_BLESS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&now).expect("JSON") + "\n";
        std::fs::write(golden_path(), text).expect("write golden file");
        return;
    }
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(golden_path())
            .expect("golden file; bless with SHADOWPILOT_BLESS=1"),
    )
    .expect("golden JSON");
    assert_eq!(
        recorded,
        now,
        "decisions differ from {}:\n{}",
        golden_path().display(),
        serde_json::to_string_pretty(&now).unwrap_or_default()
    );
    // A dry run writes nothing: no update, no tag.
    for write in [
        "SageMaker.UpdateInferenceExperiment",
        "SageMaker.AddTags",
        "SageMaker.DeleteTags",
    ] {
        assert_eq!(fake.count(write), 0, "{write}");
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
}
