//! `hosts.jsonl`: the one results file of a run, appended by one writer per run.
//!
//! Host tasks hand their finished [`HostRecord`] to [`ResultSender::send`] (no blocking work
//! on their side); one blocking task per run appends the lines as they come (whatever has
//! queued up goes out in one write) and, at [`RunWriter::finish`], fsyncs the file and the
//! run directory once. The first error is kept and returned by `finish`: the run is then
//! reported failed, never finished.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{sync_dir_blocking, HostRecord};

/// File name of a run's description, written by `Store::create_run`.
pub const META_FILE: &str = "meta.json";

/// File name of a run's host records.
pub const HOSTS_FILE: &str = "hosts.jsonl";

enum Msg {
    /// One encoded record, newline included.
    Line(Vec<u8>),
    Close,
}

/// The writer of one run's `hosts.jsonl`.
pub struct RunWriter {
    tx: mpsc::UnboundedSender<Msg>,
    task: JoinHandle<Result<(), String>>,
}

/// Hands records to a run's writer; cheap to clone, one per host task.
#[derive(Clone)]
pub struct ResultSender {
    tx: mpsc::UnboundedSender<Msg>,
}

impl ResultSender {
    /// Queue a host's record. The host's output files must already be fsynced.
    pub fn send(&self, rec: &HostRecord) -> Result<(), String> {
        let mut line = serde_json::to_vec(rec)
            .map_err(|e| format!("encoding the record of {}: {e}", rec.host))?;
        line.push(b'\n');
        // Fails only when the writer is gone, which `finish` reports.
        let _ = self.tx.send(Msg::Line(line));
        Ok(())
    }
}

impl RunWriter {
    /// Start the writer of `dir/hosts.jsonl` (created now, empty).
    pub fn start(dir: &Path) -> RunWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let dir = dir.to_path_buf();
        let task = tokio::task::spawn_blocking(move || write_loop(&dir, rx));
        RunWriter { tx, task }
    }

    pub fn sender(&self) -> ResultSender {
        ResultSender {
            tx: self.tx.clone(),
        }
    }

    /// Write what was sent, fsync `hosts.jsonl` and the run directory; the first error of
    /// the writer, naming its path.
    pub async fn finish(self) -> Result<(), String> {
        // Records sent before this are ahead of Close in the queue.
        let _ = self.tx.send(Msg::Close);
        drop(self.tx);
        self.task
            .await
            .map_err(|e| format!("run store writer: {e}"))?
    }
}

fn write_loop(dir: &Path, mut rx: mpsc::UnboundedReceiver<Msg>) -> Result<(), String> {
    let path: PathBuf = dir.join(HOSTS_FILE);
    let mut error = None;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| error = Some(format!("creating {}: {e}", path.display())))
        .ok();
    let mut batch = Vec::new();
    // Ends at Close, or when every sender is gone (the run task died).
    let mut open = true;
    while open {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => batch.extend_from_slice(&line),
                Msg::Close => open = false,
            }
            next = rx.try_recv().ok();
        }
        if let (Some(f), false) = (&mut file, batch.is_empty()) {
            if let Err(e) = f.write_all(&batch) {
                error.get_or_insert(format!("writing {}: {e}", path.display()));
                file = None;
            }
        }
        batch.clear();
    }
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(f) = &file {
        f.sync_all()
            .map_err(|e| format!("syncing {}: {e}", path.display()))?;
    }
    // meta.json was written unsynced when the run began (so the hosts did not wait on it).
    let meta = dir.join(META_FILE);
    std::fs::File::open(&meta)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("syncing {}: {e}", meta.display()))?;
    sync_dir_blocking(dir).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_arrive_in_order_and_finish_reports_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(META_FILE), "{}").expect("meta.json");
        let w = RunWriter::start(tmp.path());
        let tx = w.sender();
        for h in ["a", "b", "c"] {
            tx.send(&HostRecord::new(h)).expect("send");
        }
        w.finish().await.expect("finish");
        let text = std::fs::read_to_string(tmp.path().join(HOSTS_FILE)).expect("read");
        let hosts: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<HostRecord>(l).expect("record").host)
            .collect();
        assert_eq!(hosts, ["a", "b", "c"]);

        // The run directory is gone: the writer's error names the file.
        let gone = tmp.path().join("gone");
        let w = RunWriter::start(&gone);
        w.sender().send(&HostRecord::new("a")).expect("send");
        let e = w.finish().await.expect_err("cannot write");
        assert!(
            e.contains(&gone.join(HOSTS_FILE).display().to_string()),
            "{e}"
        );
    }
}
