//! Shared test harness: tool detection (skip outside CI, fail under CI) and an sshd fleet.
#![allow(dead_code)]

pub mod daemon;
pub mod sshd;
pub mod tmux;

use std::path::PathBuf;

/// Directories searched besides `$PATH` (sshd lives in sbin, often not on a user's PATH).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"];

/// Full path of a tool, searching `$PATH` then the sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Which package provides a tool, for the skip message.
fn package_of(name: &str) -> &str {
    match name {
        "sshd" => "openssh-server",
        "ssh" | "ssh-keygen" => "openssh-client",
        other => other,
    }
}

/// True when `name` is installed. When it is not: under `CI=true` this panics (a CI run must
/// never silently skip); otherwise it prints a loud SKIPPED line to stderr and returns false,
/// and the caller returns early.
pub fn require_tool(name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let msg = format!("{test} needs {name} (apt-get install {})", package_of(name));
    // Any CI value but an explicit "0"/"false" counts: a CI=1 run must fail, not skip.
    if std::env::var("CI")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    {
        panic!("CI=true and {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}
