//! Selection expressions through `select::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = crew::select::parse(text) {
            let _ = e.to_string();
        }
    }
});
