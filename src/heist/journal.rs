//! The heist's run store: `runs_dir()/heist-<id>/journal.jsonl` (one [`HeistEvent`] per line,
//! each fsynced before anyone is told about it) and `meta.json`. Reading a journal back
//! rebuilds the step view, also for a heist cut short by a crash.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::events::HeistEvent;
use super::view_model::ViewModel;
use crate::store::{self, journal::JournalFile};

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

/// Append-only journal of one heist run (the files are the run store's:
/// [`store::journal::JournalFile`]). Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    file: JournalFile,
}

pub use store::journal::now_ms;

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

    /// Create `runs_dir/heist-<run_id>/` with its meta.json and an empty journal.
    pub fn create_in(runs_dir: &Path, meta: &Meta) -> anyhow::Result<Journal> {
        let file = JournalFile::create(runs_dir, &meta.run_id)?;
        file.write_meta(meta)?;
        Ok(Journal { file })
    }

    pub fn dir(&self) -> &Path {
        self.file.dir()
    }

    /// Replace meta.json atomically.
    pub fn write_meta(&self, meta: &Meta) -> anyhow::Result<()> {
        self.file.write_meta(meta)
    }

    /// Append one event and fsync (blocking: call from a blocking context).
    pub fn append_blocking(&self, ev: &HeistEvent) -> anyhow::Result<()> {
        self.file.append_blocking(ev)
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
    store::journal::read_records(dir)
}

pub fn read_meta(dir: &Path) -> anyhow::Result<Meta> {
    store::journal::read_journal_meta(dir)
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
    store::journal::list_journals(runs_dir)
}
