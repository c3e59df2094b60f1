//! hosts.toml through `Inventory::from_str` (its ssh_config an empty file).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use crew::inventory::Inventory;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (tempfile::TempDir, String) {
    static DIR: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let ssh = d.path().join("ssh_config");
        std::fs::write(&ssh, "").expect("ssh_config");
        let head = format!("[defaults]\nssh_config = {:?}\n", ssh.display().to_string());
        (d, head)
    })
}

fuzz_target!(|data: &[u8]| {
    let (d, head) = dir();
    let text = format!("{head}{}", String::from_utf8_lossy(data));
    let path: PathBuf = d.path().join("hosts.toml");
    if let Ok(inv) = Inventory::from_str(&text, &path) {
        for h in &inv.hosts {
            assert!(!h.name.is_empty() && h.name.len() <= 255);
        }
    }
});
