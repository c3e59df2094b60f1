//! Skipped tests, said where a person reads them: each skip is written straight to the
//! terminal's stderr (libtest captures `eprintln!` of a passing test, not writes to the
//! stderr handle itself) and listed in a file of this `cargo test` run, which the last test
//! binary, `zz_skipped` (no libtest harness, nothing captured), prints with a total.

use std::io::Write as _;
use std::path::PathBuf;

/// The file this `cargo test` run's skips are listed in: one per cargo process (every test
/// binary of one run is a child of it), read by the `zz_skipped` summary at the end.
pub fn skip_list() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("crew-skipped")
        .join(format!("{}.txt", std::os::unix::process::parent_id()))
}

/// Say that the running test is skipped and why (`what`): on the terminal at once, and in
/// [`skip_list`] for the summary that ends the run.
pub fn skip(what: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test (unnamed thread)")
        .to_string();
    let line = format!("{}::{test}: {what}", env!("CARGO_CRATE_NAME"));
    let _ = std::io::stderr().write_all(format!("SKIPPED {line}\n").as_bytes());
    let list = skip_list();
    if let Some(dir) = list.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&list)
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}
