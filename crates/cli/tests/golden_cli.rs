//! Golden decisions of a CLI dry run against the local SageMaker and
//! CloudWatch stand-in: one experiment of each kind an operator meets,
//! compared per entry without prose. `SHADOWPILOT_BLESS=1` rewrites the file.

use std::path::PathBuf;

use serde_json::{json, Value};

use shadowpilot_testkit::fake_aws::{
    epoch_now, hermetic_command, run_to_end, FakeAws, FakeExperiment, Profile, HOUR,
};

const CLI: &str = env!("CARGO_BIN_EXE_shadowpilot");

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cli-dry-run.json")
}

fn fleet() -> Vec<FakeExperiment> {
    let now = epoch_now().floor();
    let mut ending = FakeExperiment::new("ending-soon").shadow(Profile::silent());
    ending.end_time = now + HOUR;
    let mut fresh = FakeExperiment::new("just-changed");
    fresh.last_modified = now - 20.0 * 60.0;
    vec![
        FakeExperiment::new("healthy"),
        FakeExperiment::new("slow").shadow(Profile::slow_shadow()),
        FakeExperiment::new("slow-at-floor")
            .shadow(Profile::slow_shadow())
            .sampling(1),
        FakeExperiment::new("quiet").shadow(Profile::silent()),
        FakeExperiment::new("at-top").sampling(100),
        FakeExperiment::new("held").tag("shadowpilot:hold", "true"),
        FakeExperiment::new("untagged").untagged(),
        FakeExperiment::new("unknown-policy").tag("shadowpilot:policy", "nope"),
        FakeExperiment::new("created").status("Created"),
        FakeExperiment::new("completed").status("Completed"),
        FakeExperiment::new("conservative").tag("shadowpilot:policy", "conservative"),
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
            json!({"kind": "extend_end_time", "by_seconds": (at("to") - at("from")).num_seconds()})
        }
        other => panic!("unknown action kind {other:?}"),
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
            "decisive_check": entry["decisive_check"],
            "checks": entry["checks"].as_array().map(|checks| checks.iter().map(|c| json!([c["metric"], c["outcome"]])).collect::<Vec<_>>()),
            "actions": entry["actions"].as_array().expect("actions").iter().map(action).collect::<Vec<_>>(),
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
    assert_eq!(fake.count("SageMaker.UpdateInferenceExperiment"), 0);
}
