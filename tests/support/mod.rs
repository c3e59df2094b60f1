//! Shared test harness: tool detection (a visible skip outside CI, a failure under CI), bounded
//! waits on processes (`proc`), the `crew` command line in a temp home (`cli`), the daemon
//! in-process (`daemon`), an sshd fleet (`sshd`), tmux sessions and ptys (`tmux`, `pty`),
//! console models (`console`), run-store records (`store`) and the heist engine (`heist`).
#![allow(dead_code)]

pub mod agent;
pub mod cli;
pub mod console;
pub mod daemon;
pub mod heist;
pub mod nats;
pub mod netns;
pub mod os;
pub mod proc;
pub mod pty;
pub mod sites;
pub mod skip;
pub mod ssh_env;
pub mod sshd;
pub mod store;
pub mod tmux;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
pub use proc::{group_members, processes_with, wait_until, Bounded};
pub use skip::skip;

/// Directories searched besides `$PATH` (sshd lives in sbin, often not on a user's PATH).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"];

/// Full path of a tool, searching `$PATH` then the sbin directories: a regular file with an
/// execute bit (a tool hidden behind a bind mount of /dev/null is not one).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// True when `name` is found and really starts (`name -V`, killed if it lingers): a file
/// that exists but cannot be executed does not count.
pub fn tool_runs(name: &str) -> bool {
    let Some(path) = find_tool(name) else {
        return false;
    };
    let Ok(mut child) = Command::new(&path)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    // Started is all we ask: the exit status of `-V` differs between versions.
    let _ = proc::wait_or_kill(&mut child, Duration::from_secs(10));
    true
}

/// Which package provides a tool, for the skip message.
fn package_of(name: &str) -> &str {
    match name {
        "sshd" => "openssh-server",
        "ssh" | "ssh-keygen" => "openssh-client",
        other => other,
    }
}

/// True when CI says so: any value but an explicit "0"/"false" counts (a CI=1 run must fail,
/// not skip).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// True when every tool in `names` is installed and runs. When one is not: under `CI=true`
/// this panics (a CI run must never skip); otherwise the test is reported skipped (see
/// [`skip`]) and the caller returns early.
pub fn require_tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names.iter().copied().filter(|n| !tool_runs(n)).collect();
    if missing.is_empty() {
        return true;
    }
    let packages: Vec<&str> = missing.iter().map(|n| package_of(n)).collect();
    let what = format!(
        "needs {} (apt-get install {})",
        missing.join(" and "),
        packages.join(" ")
    );
    if in_ci() {
        panic!("CI=true and this test {what}");
    }
    skip(&what);
    false
}

/// [`require_tools`] for one tool.
pub fn require_tool(name: &str) -> bool {
    require_tools(&[name])
}

/// An sshd fleet needs sshd and ssh-keygen.
pub fn require_sshd() -> bool {
    require_tools(&["sshd", "ssh-keygen"])
}

/// True when this process may do what only root may (mount, add users). Otherwise as
/// [`require_tools`]: fails under CI, a visible skip elsewhere.
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let what = format!("needs root ({why})");
    if in_ci() {
        panic!("CI=true and this test {what}");
    }
    skip(&what);
    false
}
