//! Heist files through `heist::validate::load_str`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(d) = crew::heist::validate::load_str(&text, std::path::Path::new("/fuzz/h.toml")) {
        assert!(!d.0.is_empty());
        let _ = d.to_string();
    }
});
