//! A policy file: any text either loads or is a list of problems, and a
//! loaded policy can be planned with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowpilot_core::policy::{parse_policy, PolicySet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_policy("fuzz.yaml", text) {
        Ok(policy) => {
            let _ = policy.needed_series();
            // A loaded policy's change windows must answer without panicking.
            let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
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
