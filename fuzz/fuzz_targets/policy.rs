//! A policy file: any text either loads or is a list of problems, and a
//! loaded policy can be planned with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowpilot_core::evidence::{count_queries, latency_queries, Evidence, Timeline};
use shadowpilot_core::experiment::{Experiment, ExperimentStatus};
use shadowpilot_core::judge::judge;
use shadowpilot_core::metrics::MeasuredExperiment;
use shadowpilot_core::policy::{parse_policy, PolicySet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_policy("fuzz.yaml", text) {
        Ok(policy) => {
            let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
            // A loaded policy can be judged: its evidence plan and a verdict
            // on no evidence at all must come without panicking.
            let experiment = Experiment {
                name: "fuzz".into(),
                arn: "arn:aws:sagemaker:eu-west-1:1:inference-experiment/fuzz".into(),
                status: ExperimentStatus::Running,
                endpoint_name: "endpoint".into(),
                production_variant: "production".into(),
                shadow_variant: "shadow".into(),
                sampling_percentage: policy.ramp.floor.max(1),
                start_time: Some(now - chrono::Duration::days(2)),
                end_time: Some(now + chrono::Duration::days(1)),
                last_modified: now - chrono::Duration::hours(3),
                tags: Default::default(),
                capture: None,
            };
            let timeline = Timeline::of(&experiment, &policy, now);
            let measured = std::sync::Arc::new(MeasuredExperiment::of(&experiment));
            let _ = count_queries(&measured, &timeline, &policy);
            let evidence = Evidence::default();
            let _ = latency_queries(&measured, &timeline, &policy, &evidence);
            let _ = judge(&policy, &timeline, &evidence);
            // A loaded policy's change windows must answer without panicking.
            for window in &policy.change_windows {
                let _ = window.is_open(now);
                let _ = window.next_opening_after(now);
            }
            let _ = PolicySet::new(vec![policy]);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
