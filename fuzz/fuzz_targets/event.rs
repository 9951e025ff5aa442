//! The Lambda's input: any JSON is a run request or an error that changes
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowpilot_core::event::parse_event;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Err(error) = parse_event(&value) {
        let _ = error.to_string();
    }
});
