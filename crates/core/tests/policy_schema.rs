//! The JSON Schema of policy files: the committed `policies/policy.schema.json`
//! is what the types generate, and it describes what the loader reads.

use std::collections::BTreeSet;

use serde_json::Value;
use shadowpilot_core::policy::{builtin_policies, json_schema};

const COMMITTED: &str = include_str!("../../../policies/policy.schema.json");

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed: Value = serde_json::from_str(COMMITTED).expect("JSON");
    assert_eq!(
        committed,
        json_schema(),
        "regenerate with: cargo run -p shadowpilot --no-default-features -- policy schema > policies/policy.schema.json"
    );
}

#[test]
fn the_schema_refuses_what_the_loader_refuses_and_names_every_metric() {
    let schema = json_schema();
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown fields are errors"
    );
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["name", "ramp"]));
    let defs = &schema["$defs"];
    for def in [
        "Check",
        "Ramp",
        "Selector",
        "ChangeWindow",
        "WindowSpec",
        "Evidence",
        "Extend",
    ] {
        assert_eq!(defs[def]["additionalProperties"], false, "{def}");
    }
    let metrics: BTreeSet<String> = serde_json::to_string(&defs["CheckMetric"])
        .unwrap()
        .split('"')
        .filter(|part| part.contains("rate") || part.contains("latency"))
        .map(str::to_string)
        .collect();
    for metric in [
        "error_rate_5xx",
        "error_rate_4xx",
        "model_error_rate",
        "latency_p50",
        "latency_p90",
        "latency_p99",
        "latency_average",
        "overhead_latency_p99",
        "overhead_latency_average",
    ] {
        assert!(metrics.contains(metric), "{metric} in {metrics:?}");
    }
    assert_eq!(defs["Duration"]["type"], "string");
    let pattern = defs["Duration"]["pattern"].as_str().expect("a pattern");
    assert!(pattern.starts_with('^') && pattern.ends_with('$'));
}

#[test]
fn every_field_of_the_shipped_policies_is_in_the_schema() {
    let schema = json_schema();
    let top: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    for policy in builtin_policies().expect("built-in policies").policies() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(&policy.source),
        )
        .expect("the shipped file");
        for line in text.lines() {
            let Some((key, _)) = line.split_once(':') else {
                continue;
            };
            if key.starts_with(' ')
                || key.starts_with('#')
                || key.starts_with('-')
                || key.is_empty()
            {
                continue;
            }
            assert!(
                top.contains(key),
                "{}: {key} is not in the schema",
                policy.source
            );
        }
    }
}
