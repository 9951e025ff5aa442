//! A scenario file: any text either builds a scenario or is a list of
//! problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowpilot_sim::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse("fuzz.yaml", text) {
        Ok(scenario) => {
            let _ = scenario.horizon();
            let _ = scenario.policy_names();
            for experiment in &scenario.experiments {
                let _ = experiment.conditions_at(experiment.start_time);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
