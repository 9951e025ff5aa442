//! Schedule expressions, as SHADOWPILOT_SCHEDULE and change windows give
//! them: any text parses or is refused, and a parsed one answers when its
//! next tick comes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowpilot_core::schedule::Schedule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Schedule::parse(text) {
        Ok(schedule) => {
            let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
            let next = schedule.next_tick_after(now);
            assert!(next >= now, "{text}: next tick {next} before {now}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
