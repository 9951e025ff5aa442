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
use shadowpilot_sim::{run, Scenario, TickRecord};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The write outcome of a tick, as the report's `outcome` field names it.
fn outcome(tick: &TickRecord) -> &'static str {
    if tick.actions.is_empty() {
        return "none";
    }
    if tick.applied {
        return "applied";
    }
    match tick.error.as_deref() {
        Some("conflict") => return "conflict",
        Some("not_found") => return "not_found",
        Some("rejected") => return "rejected",
        Some("metrics") | None => {}
        Some(_) => return "failed",
    }
    if tick.reason.contains("not written: held by tag") {
        "held"
    } else if tick
        .reason
        .contains("not written: outside the change windows")
    {
        "outside_change_window"
    } else if tick.reason.contains("since it was read") {
        "changed_since_read"
    } else {
        "unexplained"
    }
}

fn decisive_check(tick: &TickRecord) -> Value {
    tick.decisive_check
        .as_ref()
        .map_or(Value::Null, |id| json!(id))
}

fn action(action: &Action) -> Value {
    match action {
        Action::SetSampling { from, to, .. } => {
            json!({"kind": "set_sampling", "from": from, "to": to})
        }
        Action::ExtendEndTime { from, to, .. } => {
            json!({"kind": "extend_end_time", "from": from, "to": to})
        }
    }
}

fn decision(tick: &TickRecord) -> Value {
    json!({
        "status": tick.status,
        "verdict": tick.verdict,
        "decisive_check": decisive_check(tick),
        "actions": tick.actions.iter().map(action).collect::<Vec<_>>(),
        "outcome": outcome(tick),
        "attention": tick.attention,
        "error": tick.error,
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
        assert!(
            lines.iter().all(|l| !l.contains("\"unexplained\"")),
            "{stem}: a write outcome nothing explains"
        );
        let text = lines.join("\n") + "\n";
        if bless {
            std::fs::write(&golden, &text).expect("write golden file");
            continue;
        }
        let recorded = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e}; bless with SHADOWPILOT_BLESS=1", golden.display())
        });
        let recorded: Vec<&str> = recorded.lines().collect();
        if recorded != lines.iter().map(String::as_str).collect::<Vec<_>>() {
            let first = recorded
                .iter()
                .zip(&lines)
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
