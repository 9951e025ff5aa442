//! Golden decisions of every shipped scenario: per experiment and tick, the
//! verdict, the decisive check, the actions, the write outcome and the
//! attention states, compared without prose. A run of identical ticks is
//! one line with its repeat count, so the files stay small while every tick
//! is covered. `SHADOWPILOT_BLESS=1 cargo test --test golden_scenarios`
//! rewrites them; a change to a golden file belongs in the commit that
//! explains it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shadowpilot_core::plan::Action;
use shadowpilot_core::policy::builtin_policies;
use shadowpilot_core::report::WriteOutcome;
use shadowpilot_sim::{run, Scenario, TickRecord};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn action(action: &Action) -> Value {
    match action {
        Action::SetSampling { from, to, .. } => {
            json!({"kind": "set_sampling", "from": from, "to": to})
        }
        Action::ExtendEndTime { from, to, .. } => {
            json!({"kind": "extend_end_time", "from": from, "to": to})
        }
        Action::Stop {
            variant_actions,
            desired_state,
            ..
        } => json!({
            "kind": "stop_experiment",
            "variant_actions": variant_actions
                .iter()
                .map(|(variant, action)| (variant.clone(), action.as_str()))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "desired_state": desired_state.as_str(),
        }),
    }
}

fn decision(tick: &TickRecord) -> Value {
    json!({
        "status": tick.status().map_or("unknown", |s| s.as_str()),
        "verdict": tick.verdict(),
        "decisive_check": tick.decisive().map(|check| check.id.as_str()),
        "actions": tick.actions().iter().map(action).collect::<Vec<_>>(),
        "outcome": tick.entry.write().map_or("none", WriteOutcome::as_str),
        "attention": tick.attention(),
        "error": tick.error(),
        "sampling": tick.sampling,
        "end_time": tick.end_time,
    })
}

/// One line per run of identical decisions: `{"at", "experiment", "repeat", ...}`.
fn golden_lines(scenario_path: &Path) -> Vec<String> {
    let scenario = Scenario::load(scenario_path).expect("shipped scenario loads");
    let policies = builtin_policies().expect("built-in policies load");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime
        .block_on(run(&scenario, &policies, None))
        .expect("scenario runs");
    let mut lines = Vec::new();
    for experiment in &outcome.experiments {
        let mut current: Option<(Value, Value, usize)> = None;
        let flush = |current: Option<(Value, Value, usize)>, lines: &mut Vec<String>| {
            if let Some((at, mut decided, repeat)) = current {
                decided["at"] = at;
                decided["experiment"] = json!(experiment.name);
                decided["repeat"] = json!(repeat);
                lines.push(decided.to_string());
            }
        };
        for tick in &experiment.ticks {
            let decided = decision(tick);
            match &mut current {
                Some((_, previous, repeat)) if *previous == decided => *repeat += 1,
                _ => {
                    flush(current.take(), &mut lines);
                    current = Some((json!(tick.at), decided, 1));
                }
            }
        }
        flush(current, &mut lines);
    }
    lines
}

#[test]
fn shipped_scenarios_decide_as_recorded() {
    let bless = std::env::var("SHADOWPILOT_BLESS").is_ok_and(|v| v == "1");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(repo_root().join("scenarios"))
        .expect("scenarios/")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 5, "{scenarios:?}");
    let mut differences = Vec::new();
    for path in scenarios {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let golden = crate_root().join(format!("tests/golden/scenario-{stem}.jsonl"));
        let lines = golden_lines(&path);
        assert!(!lines.is_empty(), "{stem}: no decisions");
        let text = lines.join("\n") + "\n";
        if bless {
            std::fs::write(&golden, &text).expect("write golden file");
            continue;
        }
        let recorded = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e}; bless with SHADOWPILOT_BLESS=1", golden.display())
        });
        // Compared as values: the order of keys depends on serde_json's
        // features, which differ between the crates that share a build.
        let parse = |line: &str| -> Value { serde_json::from_str(line).expect("a JSON line") };
        let recorded: Vec<&str> = recorded.lines().collect();
        let recorded_values: Vec<Value> = recorded.iter().map(|l| parse(l)).collect();
        let now_values: Vec<Value> = lines.iter().map(|l| parse(l)).collect();
        if recorded_values != now_values {
            let first = recorded_values
                .iter()
                .zip(&now_values)
                .position(|(a, b)| a != b)
                .unwrap_or(recorded.len().min(lines.len()));
            differences.push(format!(
                "{stem}: {} recorded lines, {} now; first difference at line {}:\n  recorded: {}\n  now:      {}",
                recorded.len(),
                lines.len(),
                first + 1,
                recorded.get(first).unwrap_or(&"<none>"),
                lines.get(first).map_or("<none>", String::as_str)
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
