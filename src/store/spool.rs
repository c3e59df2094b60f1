//! The one writer of a run's files while it runs: every host's output is appended to its
//! `<host>.out` / `<host>.err` as it arrives (not held until the job ends), and each host's
//! record to `hosts.jsonl` once its output files are fsynced.
//!
//! One blocking task per run does the writing, fed through a bounded queue: a disk slower
//! than the hosts slows the hosts' jobs (back-pressure), never memory. What is on disk is
//! readable at once ([`read_output`]): clients that fall behind a live run read the part they
//! missed from here, and [`Written`] says how far each file has got. Files are fsynced every
//! [`SYNC_EVERY`] while output flows, each host's before its record is appended, and all of
//! them (with `hosts.jsonl`, `meta.json` and the directory) before [`RunSpool::finish`]
//! returns: only then may the run be reported finished. The first error is kept and returned
//! by `finish` (the run is then reported failed); the run itself goes on.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{file_stem, sync_dir_blocking, HostRecord, HOSTS_FILE, META_FILE};
use crate::model::Stream;

/// Messages queued to a run's writer before the hosts wait for the disk.
const QUEUE: usize = 512;
/// Output bytes queued to a run's writer before the hosts wait for the disk (the queue's
/// bound in bytes: a message carries up to 256 KiB).
const QUEUE_BYTES: usize = 16 << 20;
/// How often output files with new data are fsynced while a run goes on.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);
const EXT: [&str; 2] = ["out", "err"];

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// The file of one host's stream in a run directory.
pub fn output_path(dir: &Path, host: &str, stream: Stream) -> PathBuf {
    dir.join(format!("{}.{}", file_stem(host), EXT[index(stream)]))
}

/// How many bytes of each of a host's streams are in its files (written, readable).
#[derive(Debug, Default)]
pub struct Written([AtomicU64; 2]);

impl Written {
    pub fn get(&self, stream: Stream) -> u64 {
        self.0[index(stream)].load(Ordering::Acquire)
    }
}

enum Msg {
    Output {
        host: usize,
        stream: usize,
        data: Bytes,
        /// Its share of [`QUEUE_BYTES`], given back once written.
        _budget: Option<OwnedSemaphorePermit>,
    },
    /// The host is done: fsync its files, then append its record.
    Done {
        host: usize,
        line: Vec<u8>,
    },
    Close,
}

/// The writer of one run.
pub struct RunSpool {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    task: JoinHandle<Result<(), String>>,
    written: Arc<Vec<Arc<Written>>>,
}

/// One host's side of the writer; cheap to move into the host's task.
pub struct HostSpool {
    host: usize,
    name: String,
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    written: Arc<Written>,
    /// Bytes handed over so far, per stream (the offset of the next chunk).
    sent: [u64; 2],
}

impl RunSpool {
    /// Start the writer of run directory `dir` for `hosts` (in the run's order).
    pub fn start(dir: &Path, hosts: &[String]) -> RunSpool {
        let (tx, rx) = mpsc::channel(QUEUE);
        let written: Arc<Vec<Arc<Written>>> =
            Arc::new(hosts.iter().map(|_| Arc::default()).collect());
        let (dir, names, w) = (dir.to_path_buf(), hosts.to_vec(), written.clone());
        let task = tokio::task::spawn_blocking(move || write_loop(&dir, &names, &w, rx));
        RunSpool {
            tx,
            budget: Arc::new(Semaphore::new(QUEUE_BYTES)),
            task,
            written,
        }
    }

    /// The writer's side for host number `i` of the run.
    pub fn host(&self, i: usize, name: &str) -> HostSpool {
        HostSpool {
            host: i,
            name: name.to_string(),
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            written: self.written.get(i).cloned().unwrap_or_default(),
            sent: [0, 0],
        }
    }

    /// How far host `i`'s files have got.
    pub fn written(&self, i: usize) -> Option<Arc<Written>> {
        self.written.get(i).cloned()
    }

    /// Write what was queued, fsync everything; the first error of the writer, naming its
    /// path.
    pub async fn finish(self) -> Result<(), String> {
        // Everything sent before this is ahead of Close in the queue.
        let _ = self.tx.send(Msg::Close).await;
        drop(self.tx);
        self.task
            .await
            .map_err(|e| format!("run store writer: {e}"))?
    }
}

impl HostSpool {
    /// Queue a chunk of output; returns its offset in the stream's file. Waits while the
    /// writer's queue is full.
    pub async fn output(&mut self, stream: Stream, data: Bytes) -> u64 {
        let i = index(stream);
        let offset = self.sent[i];
        self.sent[i] += data.len() as u64;
        let want = data.len().clamp(1, QUEUE_BYTES) as u32;
        // The budget is never closed: an error cannot happen, and would only mean no wait.
        let budget = self.budget.clone().acquire_many_owned(want).await.ok();
        let msg = Msg::Output {
            host: self.host,
            stream: i,
            data,
            _budget: budget,
        };
        // Fails only when the writer is gone, which `finish` reports.
        let _ = self.tx.send(msg).await;
        offset
    }

    /// Bytes handed over for `stream` so far.
    pub fn sent(&self, stream: Stream) -> u64 {
        self.sent[index(stream)]
    }

    pub fn written(&self) -> &Arc<Written> {
        &self.written
    }

    /// The host is done: its files are fsynced, then its record appended (after everything
    /// it sent before).
    pub async fn done(self, rec: &HostRecord) -> Result<(), String> {
        let mut line = serde_json::to_vec(rec)
            .map_err(|e| format!("encoding the record of {}: {e}", self.name))?;
        line.push(b'\n');
        let _ = self
            .tx
            .send(Msg::Done {
                host: self.host,
                line,
            })
            .await;
        Ok(())
    }
}

/// One host's open output files and whether they have data not yet fsynced.
#[derive(Default)]
struct HostFiles {
    files: [Option<std::fs::File>; 2],
    dirty: [bool; 2],
}

struct Writer<'a> {
    dir: &'a Path,
    names: &'a [String],
    written: &'a [Arc<Written>],
    hosts: Vec<HostFiles>,
    records: Option<std::fs::File>,
    error: Option<String>,
    last_sync: Instant,
}

impl Writer<'_> {
    fn fail(&mut self, e: String) {
        if self.error.is_none() {
            tracing::error!("run store: {e}");
            self.error = Some(e);
        }
    }

    fn output(&mut self, host: usize, stream: usize, data: &[u8]) {
        if self.error.is_some() || data.is_empty() {
            return;
        }
        let (Some(name), Some(files)) = (self.names.get(host), self.hosts.get_mut(host)) else {
            return;
        };
        let path = self
            .dir
            .join(format!("{}.{}", file_stem(name), EXT[stream]));
        if files.files[stream].is_none() {
            match std::fs::File::create(&path) {
                Ok(f) => files.files[stream] = Some(f),
                Err(e) => return self.fail(format!("creating {}: {e}", path.display())),
            }
        }
        let r = files.files[stream]
            .as_mut()
            .map(|f| f.write_all(data))
            .unwrap_or(Ok(()));
        match r {
            Ok(()) => {
                files.dirty[stream] = true;
                if let Some(w) = self.written.get(host) {
                    w.0[stream].fetch_add(data.len() as u64, Ordering::AcqRel);
                }
            }
            Err(e) => self.fail(format!("writing {}: {e}", path.display())),
        }
    }

    /// fsync host `i`'s files that have new data.
    fn sync_host(&mut self, i: usize) {
        let Some(files) = self.hosts.get_mut(i) else {
            return;
        };
        let mut err = None;
        for (s, ext) in EXT.iter().enumerate() {
            if let (Some(f), true) = (&files.files[s], files.dirty[s]) {
                match f.sync_data() {
                    Ok(()) => files.dirty[s] = false,
                    Err(e) => {
                        let name = self.names.get(i).map(String::as_str).unwrap_or("?");
                        let path = self.dir.join(format!("{}.{ext}", file_stem(name)));
                        err = Some(format!("syncing {}: {e}", path.display()));
                    }
                }
            }
        }
        if let Some(e) = err {
            self.fail(e);
        }
    }

    fn done(&mut self, host: usize, line: &[u8]) {
        self.sync_host(host);
        // The host's output files are closed: their data is durable and nothing follows.
        if let Some(files) = self.hosts.get_mut(host) {
            *files = HostFiles::default();
        }
        let path = self.dir.join(HOSTS_FILE);
        if self.records.is_none() && self.error.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => self.records = Some(f),
                Err(e) => return self.fail(format!("creating {}: {e}", path.display())),
            }
        }
        if let Some(f) = &mut self.records {
            if let Err(e) = f.write_all(line) {
                self.fail(format!("writing {}: {e}", path.display()));
            }
        }
    }

    fn periodic_sync(&mut self) {
        if self.last_sync.elapsed() < SYNC_EVERY {
            return;
        }
        for i in 0..self.hosts.len() {
            self.sync_host(i);
        }
        self.last_sync = Instant::now();
    }

    fn close(mut self) -> Result<(), String> {
        for i in 0..self.hosts.len() {
            self.sync_host(i);
        }
        let path = self.dir.join(HOSTS_FILE);
        if self.records.is_none() && self.error.is_none() {
            // A run with no host record still has its (empty) results file.
            if let Err(e) = std::fs::File::create(&path) {
                self.fail(format!("creating {}: {e}", path.display()));
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match &self.records {
            Some(f) => f
                .sync_all()
                .map_err(|e| format!("syncing {}: {e}", path.display()))?,
            None => std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("syncing {}: {e}", path.display()))?,
        }
        // meta.json was written unsynced when the run began (so the hosts did not wait on it).
        let meta = self.dir.join(META_FILE);
        std::fs::File::open(&meta)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("syncing {}: {e}", meta.display()))?;
        sync_dir_blocking(self.dir).map_err(|e| format!("{e:#}"))
    }
}

fn write_loop(
    dir: &Path,
    names: &[String],
    written: &[Arc<Written>],
    mut rx: mpsc::Receiver<Msg>,
) -> Result<(), String> {
    let mut w = Writer {
        dir,
        names,
        written,
        hosts: names.iter().map(|_| HostFiles::default()).collect(),
        records: None,
        error: None,
        last_sync: Instant::now(),
    };
    // Ends at Close, or when every sender is gone (the run task died).
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Output {
                host, stream, data, ..
            } => w.output(host, stream, &data),
            Msg::Done { host, line } => w.done(host, &line),
            Msg::Close => break,
        }
        w.periodic_sync();
    }
    w.close()
}

/// Read `len` bytes at `offset` of a host's stream file (blocking). Short when the file is
/// shorter.
pub fn read_output(
    dir: &Path,
    host: &str,
    stream: Stream,
    offset: u64,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(output_path(dir, host, stream))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_on_disk_as_it_comes_and_records_follow_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(META_FILE), "{}").expect("meta.json");
        let names = vec!["a".to_string(), "b/c".to_string()];
        let spool = RunSpool::start(tmp.path(), &names);
        let mut a = spool.host(0, "a");
        let mut b = spool.host(1, "b/c");
        assert_eq!(
            a.output(Stream::Stdout, Bytes::from_static(b"one\n")).await,
            0
        );
        assert_eq!(
            a.output(Stream::Stdout, Bytes::from_static(b"two\n")).await,
            4
        );
        assert_eq!(
            b.output(Stream::Stderr, Bytes::from_static(b"oops\n"))
                .await,
            0
        );
        // Readable while the run goes on, once written.
        let written = a.written().clone();
        for _ in 0..500 {
            if written.get(Stream::Stdout) == 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(written.get(Stream::Stdout), 8);
        let mid = read_output(tmp.path(), "a", Stream::Stdout, 4, 100).expect("read");
        assert_eq!(mid, b"two\n");
        b.done(&HostRecord::new("b/c")).await.expect("record");
        a.done(&HostRecord::new("a")).await.expect("record");
        spool.finish().await.expect("finish");
        let text = std::fs::read_to_string(tmp.path().join(HOSTS_FILE)).expect("records");
        let hosts: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<HostRecord>(l).expect("record").host)
            .collect();
        assert_eq!(hosts, ["b/c", "a"]);
        let err = std::fs::read(output_path(tmp.path(), "b/c", Stream::Stderr)).expect("err");
        assert_eq!(err, b"oops\n");
    }

    #[tokio::test]
    async fn a_directory_that_is_gone_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let gone = tmp.path().join("gone");
        let spool = RunSpool::start(&gone, &["a".to_string()]);
        let mut a = spool.host(0, "a");
        a.output(Stream::Stdout, Bytes::from_static(b"x")).await;
        a.done(&HostRecord::new("a")).await.expect("queued");
        let e = spool.finish().await.expect_err("cannot write");
        assert!(e.contains(&gone.join("a.out").display().to_string()), "{e}");
    }
}
