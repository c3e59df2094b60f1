//! The run store: one directory per run under `paths::runs_dir()`.
//!
//! ```text
//! runs/<id>/meta.json      RunMeta: id, who, when, selection, command, hosts, label, …
//! runs/<id>/hosts.jsonl    one HostRecord per line (exit / signal / timing / verdict /
//!                          error), in the order the hosts finished
//! runs/<id>/<host>.out     stdout as it arrived (bytes, unmodified; absent when empty)
//! runs/<id>/<host>.err     stderr as it arrived (absent when empty)
//! runs/<id>/FAILED         present when the run could not be stored completely (the error)
//! ```
//!
//! Every write error names the path. Output is appended as it arrives, a host's output files
//! are fsynced before its line is appended to `hosts.jsonl` ([`RunSpool`], one writer per
//! run); `meta.json` (written unsynced when the run starts, so no host waits on it),
//! `hosts.jsonl` and the run directory are fsynced before the run may be reported finished.
//! [`read_run`] reads a run back (also runs of the older layout with one `<host>.json` each).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::model::{ErrorKind, Exit, RunOrigin, Verdict};
use crate::proto::daemon::RunRequest;

pub mod journal;
mod read;
pub mod spool;

pub use read::{read_meta, read_run, StoredRun};
pub use spool::{read_output, HostSpool, RunSpool, Written};

/// File name of a run's description, written by `Store::create_run`.
pub const META_FILE: &str = "meta.json";

/// Present when a run could not be stored completely (holds the error).
pub const FAILED_FILE: &str = "FAILED";

/// File name of a run's host records.
pub const HOSTS_FILE: &str = "hosts.jsonl";

/// Allocates run ids (monotonic across daemon restarts: the next id follows the highest
/// directory already in the store) and creates run directories.
pub struct Store {
    root: PathBuf,
    next: AtomicU64,
}

/// What `meta.json` holds: the run as it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    pub id: u64,
    #[serde(default)]
    pub who: String,
    /// Start, RFC 3339 (UTC, milliseconds).
    pub when: String,
    #[serde(default)]
    pub selection: String,
    pub command: String,
    /// Host names in the run's order.
    pub hosts: Vec<String>,
    /// What started it; see [`RunMeta::origin`] for runs stored before this field.
    #[serde(default)]
    pub origin: RunOrigin,
    /// The free-form label of runs stored before `origin` (read only).
    #[serde(default, rename = "label", skip_serializing)]
    pub legacy_label: Option<String>,
    pub timeout_ms: Option<u64>,
    pub fanout: Option<u32>,
}

impl RunMeta {
    /// A command run's meta with the rest left empty (start time: now).
    pub fn command(id: u64, who: &str, selection: &str, command: &str, hosts: &[&str]) -> RunMeta {
        RunMeta {
            id,
            who: who.to_string(),
            when: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            selection: selection.to_string(),
            command: command.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            origin: RunOrigin::Command,
            legacy_label: None,
            timeout_ms: None,
            fanout: None,
        }
    }

    /// What started the run. Runs stored before `origin` existed said so in a label:
    /// `heist NAME/STEP` for a heist's step.
    pub fn origin(&self) -> RunOrigin {
        match (&self.origin, self.legacy_label.as_deref()) {
            (RunOrigin::Command, Some(l)) if l.starts_with("heist ") => {
                let (heist, step) = l["heist ".len()..].split_once('/').unwrap_or((l, ""));
                RunOrigin::HeistStep {
                    run: String::new(),
                    heist: heist.to_string(),
                    step: step.to_string(),
                }
            }
            (o, _) => o.clone(),
        }
    }
}

/// One host's result: a line of `hosts.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub verdict: Verdict,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    pub wall_ms: Option<u64>,
    pub user_ms: Option<u64>,
    pub sys_ms: Option<u64>,
    pub max_rss_kb: Option<u64>,
    #[serde(default)]
    pub agentless: bool,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    #[serde(default)]
    pub stdout_bytes: u64,
    #[serde(default)]
    pub stderr_bytes: u64,
}

impl HostRecord {
    pub fn new(host: &str) -> HostRecord {
        HostRecord {
            host: host.to_string(),
            verdict: Verdict::Failed,
            code: None,
            signal: None,
            timed_out: false,
            wall_ms: None,
            user_ms: None,
            sys_ms: None,
            max_rss_kb: None,
            agentless: false,
            error_kind: None,
            error: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
        }
    }

    pub fn set_exit(&mut self, e: &Exit) {
        self.code = e.code;
        self.signal = e.signal;
        self.timed_out = e.timed_out;
        self.wall_ms = Some(e.wall_ms);
        self.user_ms = Some(e.user_ms);
        self.sys_ms = Some(e.sys_ms);
        self.max_rss_kb = Some(e.max_rss_kb);
    }
}

/// A file name for a host that cannot escape the run directory.
pub fn file_stem(host: &str) -> String {
    let s: String = host
        .chars()
        .map(|c| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

impl Store {
    /// Open the store at `root` (created if missing) and find the next run id.
    pub fn open(root: PathBuf) -> anyhow::Result<Store> {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating run store {}", root.display()))?;
        let mut max = 0u64;
        let entries =
            std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?;
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                max = max.max(n);
            }
        }
        Ok(Store {
            root,
            next: AtomicU64::new(max + 1),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create a fresh run directory with its `meta.json` (one blocking task); returns
    /// (id, dir).
    pub async fn create_run(&self, req: &RunRequest) -> anyhow::Result<(u64, PathBuf)> {
        let mut meta = RunMeta {
            id: 0,
            who: req.who.clone(),
            when: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            selection: req.selection.clone(),
            command: req.command.clone(),
            hosts: req.hosts.iter().map(|h| h.name.clone()).collect(),
            origin: req.origin.clone(),
            legacy_label: None,
            timeout_ms: req.timeout_ms,
            fanout: req.fanout,
        };
        let root = self.root.clone();
        let first = self.next.fetch_add(1, Ordering::SeqCst);
        let run = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, PathBuf)> {
            let mut id = first;
            let mut tries = 0;
            let dir = loop {
                let dir = root.join(id.to_string());
                match std::fs::create_dir(&dir) {
                    Ok(()) => break dir,
                    // Taken (a concurrent run, another daemon's leftover): try the next id.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10_000 => {
                        id += 1;
                        tries += 1;
                    }
                    Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
                }
            };
            meta.id = id;
            let text = serde_json::to_vec_pretty(&meta).context("encoding meta.json")?;
            // Synced with the run's results at the end ([`RunSpool::finish`]).
            let path = dir.join(META_FILE);
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            Ok((id, dir))
        })
        .await
        .context("run store task")??;
        // Ids skipped over existing directories are not handed out again.
        self.next.fetch_max(run.0 + 1, Ordering::SeqCst);
        Ok(run)
    }
}

/// Write a finished run at once under `root` (`root/<meta.id>/`: `meta.json`, `hosts.jsonl`,
/// fsynced), as the daemon leaves one: for imports of earlier results and for tests.
pub fn write_run_blocking(
    root: &Path,
    meta: &RunMeta,
    records: &[HostRecord],
) -> anyhow::Result<PathBuf> {
    let dir = root.join(meta.id.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_vec_pretty(meta).context("encoding meta.json")?;
    write_synced_blocking(&dir.join(META_FILE), &text)?;
    let mut lines = Vec::new();
    for r in records {
        serde_json::to_writer(&mut lines, r).context("encoding a host record")?;
        lines.push(b'\n');
    }
    write_synced_blocking(&dir.join(HOSTS_FILE), &lines)?;
    sync_dir_blocking(&dir)?;
    Ok(dir)
}

/// Write a whole file and fsync it (blocking).
pub fn write_synced_blocking(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Write a whole file and fsync it.
pub async fn write_synced(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let (p, d) = (path.to_path_buf(), data.to_vec());
    tokio::task::spawn_blocking(move || write_synced_blocking(&p, &d))
        .await
        .context("run store task")?
}

/// fsync a directory so the entries created in it are durable (blocking).
pub fn sync_dir_blocking(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests;
