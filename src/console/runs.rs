//! Browsing the daemon's run store (`paths::runs_dir()`): one numbered directory per run,
//! read through the daemon's own typed reader ([`store::read_run`]: `meta.json`,
//! `hosts.jsonl`) plus the tail of each host's `<host>.out` / `<host>.err`. Read off the UI
//! thread (the event loop calls these on a blocking task).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::Verdict;
use crate::store::{self, HostRecord, RunMeta};

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
    /// Verdict counts, e.g. `3 ok, 1 failed` (empty until the run's records are loaded).
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredHost {
    pub name: String,
    /// The host's record (exit code, signal, timing, verdict, failure) as the daemon stored
    /// it; none when the host has none (the run was cut short).
    pub result: Option<HostRecord>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub entry: RunEntry,
    pub hosts: Vec<StoredHost>,
}

fn entry(dir: &Path, meta: &RunMeta) -> RunEntry {
    RunEntry {
        dir: dir.to_path_buf(),
        id: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        command: meta.command.clone(),
        selection: meta.selection.clone(),
        started: meta.when.clone(),
        hosts: meta.hosts.len(),
        outcome: String::new(),
    }
}

/// Verdict counts, e.g. `3 ok, 1 failed, 1 timed out` (empty for no verdicts): for a stored
/// run in the browser and a live run's "done" message alike.
pub fn verdict_counts(verdicts: impl IntoIterator<Item = Verdict>) -> String {
    const ORDER: [(Verdict, &str); 5] = [
        (Verdict::Ok, "ok"),
        (Verdict::Failed, "failed"),
        (Verdict::Timeout, "timed out"),
        (Verdict::Unreachable, "unreachable"),
        (Verdict::Killed, "killed"),
    ];
    let mut counts = [0usize; ORDER.len()];
    for v in verdicts {
        if let Some(i) = ORDER.iter().position(|(o, _)| *o == v) {
            counts[i] += 1;
        }
    }
    ORDER
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|((_, word), n)| format!("{n} {word}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest `limit` runs (numbered directories, newest first; unreadable ones left out).
pub fn list(runs_dir: &Path, limit: usize) -> Result<Vec<RunEntry>, String> {
    let rd = match std::fs::read_dir(runs_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", runs_dir.display())),
    };
    let mut dirs: Vec<(u64, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse::<u64>().ok()?;
            Some((id, e.path()))
        })
        .collect();
    dirs.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    Ok(dirs
        .iter()
        .take(limit)
        .filter_map(|(_, d)| Some(entry(d, &store::read_meta(d).ok()?)))
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
    let run = store::read_run(dir).map_err(|e| format!("{e:#}"))?;
    let mut entry = entry(dir, &run.meta);
    entry.outcome = verdict_counts(run.hosts.iter().map(|r| r.verdict));
    let records: HashMap<&str, &HostRecord> =
        run.hosts.iter().map(|r| (r.host.as_str(), r)).collect();
    let hosts = run
        .meta
        .hosts
        .iter()
        .map(|name| {
            // The daemon's own naming: never leaves the run directory, whatever the host name.
            let stem = store::file_stem(name);
            let result = records.get(name.as_str()).map(|r| (*r).clone());
            StoredHost {
                stdout: tail(&dir.join(format!("{stem}.out"))),
                stderr: tail(&dir.join(format!("{stem}.err"))),
                name: name.clone(),
                result,
            }
        })
        .collect();
    Ok(RunDetail { entry, hosts })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::ErrorKind;
    use crate::model::RunOrigin;
    use crate::store::HOSTS_FILE;

    #[test]
    fn lists_newest_first_and_loads_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (id, cmd) in [(1, "uptime"), (2, "hostname"), (10, "false")] {
            let d = dir.path().join(id.to_string());
            std::fs::create_dir_all(&d).expect("mkdir");
            let meta = RunMeta {
                id,
                who: "me".into(),
                when: "2025-01-01T00:00:00.000Z".into(),
                selection: "role=demo".into(),
                command: cmd.into(),
                hosts: vec!["a".into(), "b".into(), "../x".into()],
                origin: RunOrigin::Command,
                legacy_label: None,
                timeout_ms: None,
                fanout: None,
            };
            std::fs::write(
                d.join("meta.json"),
                serde_json::to_vec(&meta).expect("json"),
            )
            .expect("meta");
        }
        // A heist's directory is not a numbered run.
        std::fs::create_dir_all(dir.path().join("heist-1-x")).expect("mkdir");
        std::fs::write(dir.path().join("heist-1-x/meta.json"), "{}").expect("meta");
        let d = dir.path().join("10");
        std::fs::write(d.join("a.out"), "hello\n").expect("out");
        let mut a = HostRecord::new("a");
        a.verdict = Verdict::Ok;
        a.code = Some(0);
        a.wall_ms = Some(5);
        let mut b = HostRecord::new("b");
        b.verdict = Verdict::Unreachable;
        b.error_kind = Some(ErrorKind::Unreachable);
        b.error = Some("refused".into());
        // Stored in finish order; ../x has no record.
        let lines = [&b, &a]
            .iter()
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect::<String>();
        std::fs::write(d.join(HOSTS_FILE), lines).expect("hosts");
        let list = list(dir.path(), 10).expect("list");
        let ids: Vec<_> = list.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["10", "2", "1"]);
        assert_eq!(list[0].command, "false");
        assert_eq!(list[0].hosts, 3);
        let run = load(&list[0].dir).expect("load");
        let names: Vec<_> = run.hosts.iter().map(|h| h.name.as_str()).collect();
        // A hostile name is listed but read through the daemon's file naming: it never
        // leaves the run directory.
        assert_eq!(names, ["a", "b", "../x"]);
        assert!(run.hosts[2].stdout.is_empty());
        assert_eq!(run.hosts[2].result, None);
        assert_eq!(run.hosts[0].stdout, b"hello\n");
        assert_eq!(run.hosts[0].result.as_ref().and_then(|r| r.code), Some(0));
        let error = run.hosts[1]
            .result
            .as_ref()
            .and_then(|r| r.error.as_deref());
        assert_eq!(error, Some("refused"));
        assert_eq!(run.entry.outcome, "1 ok, 1 unreachable");
        // A damaged results file is an error that names it.
        std::fs::write(d.join(HOSTS_FILE), "{\n").expect("hosts");
        let e = load(&d).expect_err("damaged");
        assert!(e.contains("hosts.jsonl: line 1"), "{e}");
    }
}
