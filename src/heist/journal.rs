//! The heist's run store: `runs_dir()/heist-<id>/journal.jsonl` (one [`HeistEvent`] per line,
//! each fsynced before anyone is told about it) and `meta.json`. Reading a journal back
//! rebuilds the step view, also for a heist cut short by a crash.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::events::HeistEvent;
use super::view_model::ViewModel;

/// What a run is, written at the start and rewritten at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub run_id: String,
    pub heist: String,
    pub file: String,
    pub profile: Option<String>,
    pub selection: String,
    pub vars: Vec<(String, String)>,
    pub who: String,
    pub build: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub outcome: Option<String>,
}

/// Append-only journal of one heist run. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    dir: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh run id: `<unix ms>-<heist name>`.
pub fn new_run_id(heist: &str) -> String {
    let safe: String = heist
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{safe}", now_ms())
}

impl Journal {
    /// Create `runs_dir()/heist-<run_id>/` with its meta.json and an empty journal.
    pub fn create(meta: &Meta) -> anyhow::Result<Journal> {
        Journal::create_in(&crate::paths::runs_dir(), meta)
    }

    /// [`Journal::create`] in the run store at `runs_dir`.
    pub fn create_in(runs_dir: &Path, meta: &Meta) -> anyhow::Result<Journal> {
        let dir = runs_dir.join(format!("heist-{}", meta.run_id));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("journal.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let j = Journal {
            dir,
            file: Arc::new(Mutex::new(file)),
        };
        j.write_meta(meta)?;
        Ok(j)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replace meta.json atomically.
    pub fn write_meta(&self, meta: &Meta) -> anyhow::Result<()> {
        let tmp = self.dir.join("meta.json.tmp");
        let text = serde_json::to_vec_pretty(meta)?;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("meta.json"))?;
        Ok(())
    }

    /// Append one event and fsync (blocking: call from a blocking context).
    pub fn append_blocking(&self, ev: &HeistEvent) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }

    /// Append one event and fsync, off the async threads.
    pub async fn append(&self, ev: &HeistEvent) -> anyhow::Result<()> {
        let j = self.clone();
        let ev = ev.clone();
        tokio::task::spawn_blocking(move || j.append_blocking(&ev)).await?
    }
}

/// Read a journal; a torn last line (a crash mid-write) is ignored.
pub fn read(dir: &Path) -> anyhow::Result<Vec<HeistEvent>> {
    let path = dir.join("journal.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<HeistEvent>(line) {
            Ok(ev) => out.push(ev),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => anyhow::bail!("{}:{}: bad journal record: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

pub fn read_meta(dir: &Path) -> anyhow::Result<Meta> {
    let path = dir.join("meta.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// Rebuild the step view from a run's journal. A heist that never wrote `Finished` (a crash)
/// shows what ran; steps that were running are marked interrupted, the rest not run.
pub fn reconstruct(dir: &Path) -> anyhow::Result<ViewModel> {
    let mut vm = ViewModel::default();
    for ev in read(dir)? {
        vm.apply(&ev);
    }
    if vm.summary.is_none() {
        vm.mark_interrupted();
    }
    Ok(vm)
}

/// Heist runs in the run store, newest first.
pub fn list_runs() -> Vec<PathBuf> {
    list_runs_in(&crate::paths::runs_dir())
}

/// Heist runs in the run store at `runs_dir`, newest first.
pub fn list_runs_in(runs_dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let ms = name
                .strip_prefix("heist-")?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            Some((ms, e.path()))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    runs.into_iter().map(|(_, p)| p).collect()
}
