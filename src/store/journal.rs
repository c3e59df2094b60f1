//! The journal half of the run store: `runs/heist-<id>/` holds `meta.json` (replaced
//! atomically) and `journal.jsonl` (one JSON record per line, each fsynced as it is appended).
//! The records' type is the caller's ([`crate::heist::journal`] writes heist events); this
//! module owns the files, their names and their durability.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{sync_dir_blocking, write_synced_blocking, META_FILE};

/// Directory name prefix of a journaled run: `heist-<run id>`.
pub const JOURNAL_PREFIX: &str = "heist-";
/// File name of a journal.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Milliseconds since the Unix epoch (journal times, run ids).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the journal of run `run_id` lives under `runs_dir`.
pub fn journal_dir(runs_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir.join(format!("{JOURNAL_PREFIX}{run_id}"))
}

/// An open journal: append-only, one writer. Cheap to clone.
#[derive(Clone)]
pub struct JournalFile {
    dir: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl JournalFile {
    /// Create `runs_dir/heist-<run_id>/` with an empty journal.
    pub fn create(runs_dir: &Path, run_id: &str) -> anyhow::Result<JournalFile> {
        let dir = journal_dir(runs_dir, run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(JOURNAL_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        sync_dir_blocking(runs_dir)?;
        Ok(JournalFile {
            dir,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Open an existing journal to append to it (closing one a crash left open). A torn last
    /// line (the crash came mid-write) is cut off first: it was never whole.
    pub fn open_append(dir: &Path) -> anyhow::Result<JournalFile> {
        let path = dir.join(JOURNAL_FILE);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if whole < text.len() {
            file.set_len(whole as u64)
                .with_context(|| format!("cutting the torn last line of {}", path.display()))?;
        }
        Ok(JournalFile {
            dir: dir.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replace `meta.json` atomically (written, fsynced, renamed).
    pub fn write_meta<M: Serialize>(&self, meta: &M) -> anyhow::Result<()> {
        let tmp = self.dir.join("meta.json.tmp");
        let text = serde_json::to_vec_pretty(meta).context("encoding meta.json")?;
        write_synced_blocking(&tmp, &text)?;
        let path = self.dir.join(META_FILE);
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        sync_dir_blocking(&self.dir)
    }

    /// Append one record and fsync (blocking: call from a blocking context).
    pub fn append_blocking<T: Serialize>(&self, record: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record).context("encoding a journal record")?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        let path = || self.dir.join(JOURNAL_FILE).display().to_string();
        f.write_all(&line)
            .with_context(|| format!("writing {}", path()))?;
        f.sync_data().with_context(|| format!("syncing {}", path()))
    }
}

/// The records of a journal; a torn last line (a crash mid-write) is ignored, any other bad
/// line is an error naming the file and line.
pub fn read_records<T: DeserializeOwned>(dir: &Path) -> anyhow::Result<Vec<T>> {
    let path = dir.join(JOURNAL_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(ev) => out.push(ev),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => anyhow::bail!("{}:{}: bad journal record: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// A journaled run's `meta.json`.
pub fn read_journal_meta<M: DeserializeOwned>(dir: &Path) -> anyhow::Result<M> {
    let path = dir.join(META_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Journaled runs in the run store at `runs_dir`, newest first (by the start time in their
/// run id, `<unix ms>-<name>`).
pub fn list_journals(runs_dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let ms = name
                .strip_prefix(JOURNAL_PREFIX)?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_last_line_is_ignored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let j = JournalFile::create(tmp.path(), "5-deploy").expect("create");
        j.write_meta(&serde_json::json!({"heist": "deploy"}))
            .expect("meta");
        j.append_blocking(&[1u32]).expect("append");
        j.append_blocking(&[2u32]).expect("append");
        let path = j.dir().join(JOURNAL_FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"[3").expect("torn");
        assert_eq!(read_records::<[u32; 1]>(j.dir()).expect("read"), [[1], [2]]);
        f.write_all(b"x\n[4]\n").expect("bad");
        let e = read_records::<[u32; 1]>(j.dir()).expect_err("bad line");
        assert!(e.to_string().contains("journal.jsonl:3"), "{e}");
        let meta: serde_json::Value = read_journal_meta(j.dir()).expect("meta");
        assert_eq!(meta["heist"], "deploy");
        JournalFile::create(tmp.path(), "7-other").expect("create");
        let names: Vec<String> = list_journals(tmp.path())
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect();
        assert_eq!(names, ["heist-7-other", "heist-5-deploy"]);
    }
}
