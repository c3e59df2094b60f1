//! Browsing the daemon's run store (`paths::runs_dir()`): one directory per run with
//! `meta.json`, and per host `<host>.out`, `<host>.err`, `<host>.json`. Read off the UI
//! thread (the event loop calls these on a blocking task). The JSON is read loosely so the
//! console keeps working when the daemon adds fields.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Bytes of each host's output loaded into the console (the tail; the file keeps it all).
pub const MAX_LOAD: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub dir: PathBuf,
    /// Directory name (the run id).
    pub id: String,
    pub command: String,
    pub selection: String,
    pub started: String,
    pub hosts: usize,
    /// Verdict counts, e.g. `3 ok, 1 failed` (empty when the run has no summary).
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredHost {
    pub name: String,
    /// Exit code, signal, or failure kind, as the daemon wrote it.
    pub result: Value,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub entry: RunEntry,
    pub hosts: Vec<StoredHost>,
}

fn text(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| v.get(*k))
        .map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn entry(dir: &Path) -> Result<RunEntry, String> {
    let meta_path = dir.join("meta.json");
    let raw =
        std::fs::read_to_string(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let meta: Value =
        serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let host_list = meta.get("hosts").and_then(Value::as_array);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    if let Some(list) = host_list {
        for h in list {
            let v = text(h, &["verdict", "outcome"]);
            if !v.is_empty() {
                *counts.entry(v).or_default() += 1;
            }
        }
    }
    let outcome = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(RunEntry {
        dir: dir.to_path_buf(),
        id: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        command: text(&meta, &["command"]),
        selection: text(&meta, &["selection"]),
        started: text(&meta, &["when", "started"]),
        hosts: host_list.map_or(0, Vec::len),
        outcome,
    })
}

/// The newest `limit` runs (directories sorted by name, newest first).
pub fn list(runs_dir: &Path, limit: usize) -> Result<Vec<RunEntry>, String> {
    let rd = match std::fs::read_dir(runs_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", runs_dir.display())),
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    // newest first: numeric run ids, else modification time
    dirs.sort_by_key(|p| {
        let id = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok());
        let mtime = std::fs::metadata(p.join("meta.json"))
            .and_then(|m| m.modified())
            .ok();
        (id, mtime)
    });
    dirs.reverse();
    Ok(dirs
        .iter()
        .take(limit)
        .filter_map(|d| entry(d).ok())
        .collect())
}

fn tail(path: &Path) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_LOAD {
        let _ = f.seek(SeekFrom::Start(len - MAX_LOAD));
    }
    let mut buf = Vec::new();
    let _ = f.take(MAX_LOAD).read_to_end(&mut buf);
    buf
}

/// One run with each host's result and the tail of its output.
pub fn load(dir: &Path) -> Result<RunDetail, String> {
    let entry = entry(dir)?;
    let meta: Value = std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let names: Vec<String> = match meta.get("hosts").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|h| match h {
                Value::String(s) => s.clone(),
                other => text(other, &["name", "host"]),
            })
            .filter(|n| !n.is_empty())
            .collect(),
        None => Vec::new(),
    };
    let hosts: Vec<StoredHost> = names
        .into_iter()
        .map(|name| {
            // The daemon's own naming: never leaves the run directory, whatever the host name.
            let stem = crate::daemon::store::file_stem(&name);
            let result = std::fs::read_to_string(dir.join(format!("{stem}.json")))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            StoredHost {
                stdout: tail(&dir.join(format!("{stem}.out"))),
                stderr: tail(&dir.join(format!("{stem}.err"))),
                name,
                result,
            }
        })
        .collect();
    let mut entry = entry;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for h in &hosts {
        let v = text(&h.result, &["verdict"]);
        if !v.is_empty() {
            *counts.entry(v).or_default() += 1;
        }
    }
    if !counts.is_empty() {
        entry.outcome = counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
    }
    Ok(RunDetail { entry, hosts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_newest_first_and_loads_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (id, cmd) in [(1, "uptime"), (2, "hostname"), (10, "false")] {
            let d = dir.path().join(id.to_string());
            std::fs::create_dir_all(&d).expect("mkdir");
            let meta = serde_json::json!({"id": id, "when": "2025-01-01T00:00:00Z",
                "selection": "role=demo", "command": cmd, "hosts": ["a", "b", "../x"]});
            std::fs::write(d.join("meta.json"), meta.to_string()).expect("meta");
        }
        let d = dir.path().join("10");
        std::fs::write(d.join("a.out"), "hello\n").expect("out");
        std::fs::write(d.join("a.json"), r#"{"verdict":"ok","code":0,"wall_ms":5}"#).expect("json");
        std::fs::write(
            d.join("b.json"),
            r#"{"verdict":"unreachable","error_kind":"unreachable","error":"refused"}"#,
        )
        .expect("json");
        let list = list(dir.path(), 10).expect("list");
        let ids: Vec<_> = list.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["10", "2", "1"]);
        assert_eq!(list[0].command, "false");
        let run = load(&list[0].dir).expect("load");
        let names: Vec<_> = run.hosts.iter().map(|h| h.name.as_str()).collect();
        // A hostile name is listed but read through the daemon's file naming: it never
        // leaves the run directory.
        assert_eq!(names, ["a", "b", "../x"]);
        assert!(run.hosts[2].stdout.is_empty());
        assert_eq!(run.hosts[0].stdout, b"hello\n");
        assert_eq!(run.entry.outcome, "1 ok, 1 unreachable");
    }
}
