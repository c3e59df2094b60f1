//! The last test binary of `cargo test` (binaries run in name order): prints every test this
//! run skipped, by name and why, with the total. No libtest harness, so nothing it prints
//! is captured. Tests skip only outside CI (`CI=true` fails them instead); see
//! `tests/support/skip.rs`.

#[path = "support/skip.rs"]
#[allow(dead_code)]
mod skip;

use std::path::Path;

/// True while process `pid` exists.
fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

fn main() {
    let list = skip::skip_list();
    let text = std::fs::read_to_string(&list).unwrap_or_default();
    let mut skipped: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    skipped.sort();
    if skipped.is_empty() {
        println!("crew tests: 0 skipped");
    } else {
        println!(
            "crew tests: {} skipped (a tool they need is missing here; under CI=true they fail):",
            skipped.len()
        );
        for s in &skipped {
            println!("  SKIPPED {s}");
        }
    }
    // This run's list is read; lists of runs whose cargo is gone are stale.
    let _ = std::fs::remove_file(&list);
    if let Some(dir) = list.parent() {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_suffix(".txt") {
                if !alive(pid) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
