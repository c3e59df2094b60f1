//! The audit log, `paths::audit_log()`: one JSON line per finished run ([`AuditLine`]), and
//! one per operator action on a run or heist ([`ActionLine`]: a heist started or finished, an
//! answer to an ask, an interrupt, a kill), each with who did it. Secrets never go here.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use crate::model::{RunOrigin, Verdict};

#[derive(Debug, Serialize)]
pub struct AuditLine<'a> {
    pub run_id: u64,
    pub who: &'a str,
    /// RFC 3339, UTC.
    pub when: String,
    pub selection: &'a str,
    pub command: &'a str,
    pub origin: &'a RunOrigin,
    /// host → verdict, in the run's host order.
    pub hosts: Vec<(&'a str, Verdict)>,
}

/// One operator action (or a heist's start and end), with who did it.
#[derive(Debug, Serialize)]
pub struct ActionLine<'a> {
    pub action: &'a str,
    pub run: &'a str,
    pub who: &'a str,
    /// RFC 3339, UTC.
    pub when: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Append an action line; a failure is logged (the action itself has happened).
pub async fn action(
    path: &Path,
    who: &str,
    run: &str,
    action: &str,
    detail: Option<serde_json::Value>,
) {
    let line = ActionLine {
        action,
        run,
        who,
        when: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        detail,
    };
    let r = match serde_json::to_vec(&line) {
        Ok(mut text) => {
            text.push(b'\n');
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || append_blocking(&path, &text))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = r {
        tracing::error!("audit log: {action} on {run} by {who}: {e:#}");
    }
}

/// Append one line and fsync the log (one blocking task). Lines are written with one
/// `write_all` on an O_APPEND file, so concurrent runs never interleave within a line.
pub async fn append(path: &Path, line: &AuditLine<'_>) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec(line).context("encoding audit line")?;
    text.push(b'\n');
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || append_blocking(&path, &text))
        .await
        .context("audit log task")?
}

fn append_blocking(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening audit log {}", path.display()))?;
    f.write_all(text)
        .with_context(|| format!("writing audit log {}", path.display()))?;
    f.sync_data()
        .with_context(|| format!("syncing audit log {}", path.display()))?;
    mirror(path, text);
    Ok(())
}

type Mirror = (
    std::path::PathBuf,
    tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
);

/// Where each audit log's lines are copied to (the NATS bus), by the log's path.
static MIRRORS: std::sync::Mutex<Vec<Mirror>> = std::sync::Mutex::new(Vec::new());

/// Copy every line appended to `path` from now on to `tx` (after it is on disk).
pub fn mirror_to(path: &Path, tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
    let mut m = MIRRORS.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|(p, t)| p != path && !t.is_closed());
    m.push((path.to_path_buf(), tx));
}

fn mirror(path: &Path, text: &[u8]) {
    let m = MIRRORS.lock().unwrap_or_else(|p| p.into_inner());
    for (p, tx) in m.iter() {
        if p == path {
            let _ = tx.send(text.strip_suffix(b"\n").unwrap_or(text).to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("audit.jsonl");
        for id in [1, 2] {
            let line = AuditLine {
                run_id: id,
                who: "ops",
                when: "2024-01-01T00:00:00Z".into(),
                selection: "role=web",
                command: "uptime",
                origin: &RunOrigin::Command,
                hosts: vec![("web1", Verdict::Ok), ("web2", Verdict::Failed)],
            };
            append(&path, &line).await.expect("append");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["run_id"], 2);
        assert_eq!(lines[0]["hosts"][1][1], "failed");
    }
}
