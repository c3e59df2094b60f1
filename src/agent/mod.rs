//! `crew agent`: reads request frames on stdin, writes response frames on stdout.
//!
//! [`serve`] speaks the protocol of [`crate::proto::agent`] over any pair of async streams, so
//! tests drive it in-process over `tokio::io::duplex`; [`run_stdio`] wires it to stdin/stdout.
//!
//! Layout: `serve` (frame loop and dispatch), `outbox` (the single writer and its bounded
//! queues), `exec` (one command: process group, temp dir, output, exit), `shell` (bash path,
//! environment, /dev/null: prepared once), `spawn` (clone+exec without fork), `jobdir`
//! (per-job temp dirs inside one private dir per agent), `stdio` (stdin/stdout polled, not on
//! the blocking pool), `files` (ReadFile / WriteFile), `transfer` (streamed files: put, fetch, list, stat),
//! `input` (a job's stdin), `info` (host facts).

mod credit;
mod exec;
mod files;
mod info;
mod input;
mod jobdir;
mod keeper;
mod leftovers;
mod outbox;
mod serve;
mod shell;
mod spawn;
mod stdio;
mod transfer;

use std::path::PathBuf;
use std::time::Duration;

pub use serve::serve;

/// Tunables of one agent instance.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Requests (commands and file operations) in flight at once; more are `Refused`.
    pub max_jobs: usize,
    /// Where the agent's private dir of per-command temp dirs is created (default: the system
    /// temp dir).
    pub tmp_root: Option<PathBuf>,
    /// After a timeout's TERM, how long the process group gets before KILL.
    pub kill_grace: Duration,
    /// Build hash announced in `Hello` (default: [`crate::paths::build_hash`]).
    pub build: String,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            max_jobs: 256,
            tmp_root: None,
            kill_grace: Duration::from_secs(2),
            build: crate::paths::build_hash().to_string(),
        }
    }
}

/// Serve the agent protocol on stdin/stdout until stdin closes.
pub fn run_stdio() -> anyhow::Result<i32> {
    // Before any thread exists (the runtime's, the logger's).
    let keeper = match keeper::Keeper::spawn() {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("crew agent: no keeper process ({e}); jobs may outlive a killed agent");
            None
        }
    };
    crate::logging::to_stderr();
    if let Some(k) = &keeper {
        tracing::debug!("keeper process {}", k.pid());
    }
    // No signal or process driver: the agent reaps its jobs itself (pidfd + wait4), so it
    // needs neither their socketpair nor their handlers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let (res, restore) = rt.block_on(async {
        let (input, output, restore) = stdio::open();
        let opts = AgentOptions::default();
        (
            serve::serve_kept(input, output, opts, keeper).await,
            restore,
        )
    });
    // A stdin reader thread (tty or file stdin) may still sit in a blocking read; do not wait
    // for it forever.
    rt.shutdown_timeout(Duration::from_secs(1));
    restore.restore();
    res.map(|()| 0)
}
