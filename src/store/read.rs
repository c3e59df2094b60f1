//! Reading runs back from the store: the one typed reader, for the console's run browser
//! and the outcome atoms (`?failed`). Errors name the file (and the line of `hosts.jsonl`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;

use super::{file_stem, HostRecord, RunMeta, HOSTS_FILE, META_FILE};

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    pub meta: RunMeta,
    /// The hosts that have a record, in the run's host order (`meta.hosts`). A run still in
    /// progress, or cut short by a crash, lacks the hosts that had not finished.
    pub hosts: Vec<HostRecord>,
}

/// A run's `meta.json` alone (cheap: for scanning many runs).
pub fn read_meta(dir: &Path) -> anyhow::Result<RunMeta> {
    let path = dir.join(META_FILE);
    let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))
}

/// A run's meta and host records: `hosts.jsonl`, or the `<host>.json` files of runs stored
/// before it existed.
pub fn read_run(dir: &Path) -> anyhow::Result<StoredRun> {
    let meta = read_meta(dir)?;
    let mut hosts = match read_records(&dir.join(HOSTS_FILE))? {
        Some(h) => h,
        None => legacy_records(dir, &meta)?,
    };
    let order: HashMap<&str, usize> = meta
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    hosts.sort_by_key(|r| order.get(r.host.as_str()).copied().unwrap_or(usize::MAX));
    Ok(StoredRun { meta, hosts })
}

/// The records of `hosts.jsonl`; `None` when there is no such file.
fn read_records(path: &Path) -> anyhow::Result<Option<Vec<HostRecord>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            // A crash mid-append leaves the last line cut short; that run was never
            // reported finished, and the lines before it stand.
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => anyhow::bail!("{}: line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(Some(out))
}

/// Records of the older layout: one `<host>.json` per host (missing ones skipped).
fn legacy_records(dir: &Path, meta: &RunMeta) -> anyhow::Result<Vec<HostRecord>> {
    let mut out = Vec::new();
    for h in &meta.hosts {
        let path = dir.join(format!("{}.json", file_stem(h)));
        let raw = match std::fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        out.push(
            serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    Ok(out)
}
