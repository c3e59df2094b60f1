//! Shared test harness: tool detection (skip outside CI, fail under CI) and an sshd fleet.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod sites;
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

/// Live (non-zombie) processes whose process group is `pgid`, from /proc (the test's hosts
/// run on this machine).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid) && f[0] != "Z" {
            out.push(pid);
        }
    }
    out
}
