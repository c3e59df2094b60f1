//! The run store: one directory per run under `paths::runs_dir()`.
//!
//! ```text
//! runs/<id>/meta.json      id, who, when, selection, command, hosts, label
//! runs/<id>/<host>.out     stdout as it arrived (bytes, unmodified; absent when empty)
//! runs/<id>/<host>.err     stderr as it arrived (absent when empty)
//! runs/<id>/<host>.json    exit / signal / timing / verdict / error
//! ```
//!
//! Every write error names the path. A host's files are flushed and fsynced before its
//! `.json` is written, and the `.json` is fsynced before the run may be reported finished.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::proto::agent::{Exit, Stream};
use crate::proto::daemon::{ErrorKind, RunRequest, Verdict};

/// Allocates run ids (monotonic across daemon restarts: the next id follows the highest
/// directory already in the store) and creates run directories.
pub struct Store {
    root: PathBuf,
    next: AtomicU64,
}

#[derive(Serialize)]
struct Meta<'a> {
    id: u64,
    who: &'a str,
    when: String,
    selection: &'a str,
    command: &'a str,
    hosts: Vec<&'a str>,
    label: Option<&'a str>,
    timeout_ms: Option<u64>,
    fanout: Option<u32>,
}

/// What `<host>.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecord {
    pub host: String,
    pub verdict: Verdict,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub wall_ms: Option<u64>,
    pub user_ms: Option<u64>,
    pub sys_ms: Option<u64>,
    pub max_rss_kb: Option<u64>,
    pub agentless: bool,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub stdout_bytes: u64,
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

    /// Create a fresh run directory with its `meta.json`; returns (id, dir).
    pub async fn create_run(&self, req: &RunRequest) -> anyhow::Result<(u64, PathBuf)> {
        let (id, dir) = loop {
            let id = self.next.fetch_add(1, Ordering::SeqCst);
            let dir = self.root.join(id.to_string());
            match tokio::fs::create_dir(&dir).await {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        };
        let meta = Meta {
            id,
            who: &req.who,
            when: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            selection: &req.selection,
            command: &req.command,
            hosts: req.hosts.iter().map(|h| h.name.as_str()).collect(),
            label: req.label.as_deref(),
            timeout_ms: req.timeout_ms,
            fanout: req.fanout,
        };
        let text = serde_json::to_vec_pretty(&meta)?;
        write_synced(&dir.join("meta.json"), &text).await?;
        Ok((id, dir))
    }
}

/// Write a whole file and fsync it.
pub async fn write_synced(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .await
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// fsync a directory so the entries created in it are durable.
pub async fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .context("sync task")?
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// One host's output files in a run directory, written as output arrives. `<host>.out` and
/// `<host>.err` are created with their first byte (a quiet host costs one file, not three:
/// creating files dominates a warm run's cost in the daemon); a missing one means empty.
pub struct HostFiles {
    dir: PathBuf,
    stem: String,
    /// stdout, stderr: opened on the first write.
    files: [Option<BufWriter<tokio::fs::File>>; 2],
    /// First write error, kept so the run is reported failed (never finished).
    pub error: Option<String>,
}

/// Write buffer per output file (only hosts that print get one).
const FILE_BUFFER: usize = 64 * 1024;

impl HostFiles {
    pub async fn create(dir: &Path, host: &str) -> anyhow::Result<HostFiles> {
        Ok(HostFiles {
            dir: dir.to_path_buf(),
            stem: file_stem(host),
            files: [None, None],
            error: None,
        })
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }

    /// Append output; a failure is remembered (and returned once) rather than aborting the job.
    pub async fn write(&mut self, stream: Stream, data: &[u8]) -> Option<String> {
        if self.error.is_some() || data.is_empty() {
            return None;
        }
        let (i, ext) = match stream {
            Stream::Stdout => (0, "out"),
            Stream::Stderr => (1, "err"),
        };
        let path = self.path(ext);
        if self.files[i].is_none() {
            match tokio::fs::File::create(&path).await {
                Ok(f) => self.files[i] = Some(BufWriter::with_capacity(FILE_BUFFER, f)),
                Err(e) => {
                    let msg = format!("creating {}: {e}", path.display());
                    self.error = Some(msg.clone());
                    return Some(msg);
                }
            }
        }
        let w = self.files[i].as_mut()?;
        if let Err(e) = w.write_all(data).await {
            let msg = format!("writing {}: {e}", path.display());
            self.error = Some(msg.clone());
            return Some(msg);
        }
        None
    }

    /// Flush and fsync the output files (those that were created), then write and fsync
    /// `<host>.json`. The run's final directory fsync ([`sync_dir`]) makes the entries durable.
    pub async fn finish(mut self, rec: &HostRecord) -> Result<(), String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let (out_path, err_path) = (self.path("out"), self.path("err"));
        let [out, err] = &mut self.files;
        for (w, path) in [(out, out_path), (err, err_path)] {
            let Some(w) = w else { continue };
            let r = async {
                w.flush().await?;
                w.get_ref().sync_all().await
            }
            .await;
            if let Err(e) = r {
                return Err(format!("writing {}: {e}", path.display()));
            }
        }
        let path = self.path("json");
        let text = serde_json::to_vec_pretty(rec).map_err(|e| e.to_string())?;
        write_synced(&path, &text)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_stay_inside_the_run_dir() {
        assert_eq!(file_stem("web01"), "web01");
        assert_eq!(file_stem("../etc"), "_.._etc");
        assert_eq!(file_stem("a/b"), "a_b");
        assert_eq!(file_stem(""), "_");
    }

    #[tokio::test]
    async fn ids_follow_existing_runs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("41")).expect("mkdir");
        std::fs::create_dir(tmp.path().join("junk")).expect("mkdir");
        let store = Store::open(tmp.path().to_path_buf()).expect("open");
        let req = RunRequest {
            hosts: vec![crate::inventory::Host::local("a")],
            selection: "a".into(),
            command: "true".into(),
            env: vec![],
            timeout_ms: None,
            fanout: None,
            accept_new_host_keys: false,
            who: "me".into(),
            label: None,
        };
        let (id, dir) = store.create_run(&req).await.expect("create");
        assert_eq!(id, 42);
        let meta = std::fs::read_to_string(dir.join("meta.json")).expect("meta");
        assert!(meta.contains("\"command\": \"true\""), "{meta}");
        let (id2, _) = store.create_run(&req).await.expect("create");
        assert_eq!(id2, 43);
    }
}
