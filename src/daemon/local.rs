//! The `local` transport: the agent runs as a child process of the daemon, frames on its
//! stdin/stdout, its stderr appended to the daemon log.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use super::link::{AgentLink, Handshake, LinkOptions};

/// A connected local agent. Dropping it kills the child (kill_on_drop).
pub struct LocalAgent {
    pub link: AgentLink,
    pub handshake: Handshake,
    pub child: Child,
}

/// Spawn `<agent_exe> agent` and complete the link handshake.
pub async fn spawn(agent_exe: &Path, opts: LinkOptions) -> anyhow::Result<LocalAgent> {
    let stderr = match open_log() {
        Some(f) => Stdio::from(f),
        None => Stdio::null(),
    };
    let mut child = Command::new(agent_exe)
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting local agent {} agent", agent_exe.display()))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        anyhow::bail!("local agent {}: no stdio pipes", agent_exe.display());
    };
    match AgentLink::connect(stdout, stdin, opts).await {
        Ok((link, handshake)) => Ok(LocalAgent {
            link,
            handshake,
            child,
        }),
        Err(e) => {
            let _ = child.start_kill();
            Err(anyhow::anyhow!("local agent {}: {e}", agent_exe.display()))
        }
    }
}

/// The daemon log, opened for appending (the agent's stderr goes there).
fn open_log() -> Option<std::fs::File> {
    let dir = crate::paths::log_dir();
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .ok()
}
