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
//! Every write error names the path. A host's output files are written and fsynced before
//! its line is appended to `hosts.jsonl` ([`RunWriter`], one writer per run); `meta.json`
//! (written unsynced when the run starts, so no host waits on it), `hosts.jsonl` and the run
//! directory are fsynced before the run may be reported finished.
//! [`read_run`] reads a run back (also runs of the older layout with one `<host>.json` each).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::model::{ErrorKind, Exit, RunOrigin, Stream, Verdict};
use crate::proto::daemon::RunRequest;

pub mod journal;
mod read;
mod results;

pub use read::{read_meta, read_run, StoredRun};
pub use results::{ResultSender, RunWriter, HOSTS_FILE, META_FILE};

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
            // Synced with the run's results at the end ([`RunWriter::finish`]).
            let path = dir.join(results::META_FILE);
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

/// One host's output files in a run directory. Output is buffered in memory and written
/// when a buffer fills and at [`HostFiles::finish`]; `<host>.out` and `<host>.err` are created
/// with their first byte (a quiet host costs no file and no blocking task); a missing one
/// means empty.
pub struct HostFiles {
    dir: PathBuf,
    stem: String,
    /// stdout, stderr: bytes not yet written.
    bufs: [Vec<u8>; 2],
    /// stdout, stderr: created on the first write.
    files: [Option<std::fs::File>; 2],
    /// First write error, kept so the run is reported failed (never finished).
    pub error: Option<String>,
}

/// Bytes buffered per output stream before they are written out.
const FILE_BUFFER: usize = 64 * 1024;
const EXT: [&str; 2] = ["out", "err"];

/// Append `data` to stream `i`'s file, creating it on first use; errors name the path.
fn write_out(file: &mut Option<std::fs::File>, path: &Path, data: &[u8]) -> Result<(), String> {
    if file.is_none() {
        let f =
            std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        *file = Some(f);
    }
    if let Some(f) = file {
        f.write_all(data)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

impl HostFiles {
    pub fn new(dir: &Path, host: &str) -> HostFiles {
        HostFiles {
            dir: dir.to_path_buf(),
            stem: file_stem(host),
            bufs: [Vec::new(), Vec::new()],
            files: [None, None],
            error: None,
        }
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.{}", self.stem, EXT[i]))
    }

    /// Append output; a failure is remembered (and returned once) rather than aborting the job.
    pub async fn write(&mut self, stream: Stream, data: &[u8]) -> Option<String> {
        if self.error.is_some() || data.is_empty() {
            return None;
        }
        let i = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        self.bufs[i].extend_from_slice(data);
        if self.bufs[i].len() < FILE_BUFFER {
            return None;
        }
        let (buf, mut file, path) = (
            std::mem::take(&mut self.bufs[i]),
            self.files[i].take(),
            self.path(i),
        );
        let r = tokio::task::spawn_blocking(move || {
            let r = write_out(&mut file, &path, &buf);
            (file, r)
        })
        .await;
        match r {
            Ok((file, Ok(()))) => {
                self.files[i] = file;
                None
            }
            Ok((_, Err(e))) => Some(self.error.insert(e).clone()),
            Err(e) => Some(self.error.insert(format!("run store task: {e}")).clone()),
        }
    }

    /// Write what is buffered and fsync the output files that exist (one blocking task, none
    /// for a host without output). The run's final directory fsync makes the entries durable.
    pub async fn finish(mut self) -> Result<(), String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.files.iter().all(Option::is_none) && self.bufs.iter().all(Vec::is_empty) {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            for i in 0..2 {
                let path = self.path(i);
                let buf = std::mem::take(&mut self.bufs[i]);
                if !buf.is_empty() {
                    write_out(&mut self.files[i], &path, &buf)?;
                }
                if let Some(f) = &self.files[i] {
                    f.sync_all()
                        .map_err(|e| format!("syncing {}: {e}", path.display()))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("run store task: {e}"))?
    }
}

#[cfg(test)]
mod tests;
