//! The daemon's socket: one task per client reading `Request` frames and writing `Event`
//! frames through a bounded queue (a slow client slows its runs; nothing is dropped).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::inflight::Runs;
use super::pool::{link_error, Conn, Pool};
use super::run;
use crate::model::{ErrorKind, Host, HostError};
use crate::proto::agent::{ReadFile, WriteFile};
use crate::proto::daemon::{self as dp, Event, FileOp, FileResult, Request, StatusReport};
use crate::proto::{frame, PROTO_VERSION};
use crate::store::Store;

/// Events queued per client before its runs wait for it.
const CLIENT_QUEUE: usize = 256;

/// Shared state of one daemon.
pub struct Daemon {
    pub pool: Pool,
    pub runs: Runs,
    pub store: Store,
    pub audit_log: std::path::PathBuf,
    pub build: String,
    pub started: Instant,
    pub shutdown: CancellationToken,
    clients: AtomicUsize,
    last_active: Mutex<Instant>,
}

impl Daemon {
    pub fn new(
        pool: Pool,
        store: Store,
        audit_log: std::path::PathBuf,
        shutdown: CancellationToken,
    ) -> Daemon {
        Daemon {
            pool,
            runs: Runs::default(),
            store,
            audit_log,
            build: crate::paths::build_hash().to_string(),
            started: Instant::now(),
            shutdown,
            clients: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
        }
    }

    /// Note activity (resets the idle clock).
    pub fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long the daemon has had no client and no run (zero while busy).
    pub fn idle_for(&self) -> Duration {
        if self.clients.load(Ordering::SeqCst) > 0 || self.runs.active() > 0 {
            return Duration::ZERO;
        }
        self.last_active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    pub fn status(&self) -> StatusReport {
        StatusReport {
            pid: std::process::id(),
            build: self.build.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            rss_kb: rss_kb(),
            runs_active: self.runs.active(),
            runs_total: self.runs.total(),
            hosts: self.pool.status(),
        }
    }
}

/// Resident set size of this process (VmRSS in /proc/self/status), 0 when unknown.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Where one request's events go.
#[derive(Clone)]
pub struct Sink {
    id: u64,
    tx: mpsc::Sender<(u64, Event)>,
}

impl Sink {
    /// Queue an event; waits while the client's queue is full. A gone client is ignored
    /// (runs go on and still land in the store).
    pub async fn send(&self, e: Event) {
        let _ = self.tx.send((self.id, e)).await;
    }
}

/// Serve one accepted connection.
pub async fn client(d: Arc<Daemon>, stream: UnixStream) {
    match stream.peer_cred() {
        Ok(c) if c.uid() == own_uid() => {}
        Ok(c) => {
            tracing::warn!(
                uid = c.uid(),
                "refused a connection from another user (uid {})",
                c.uid()
            );
            return;
        }
        Err(e) => {
            tracing::warn!("refused a connection: cannot read peer credentials: {e}");
            return;
        }
    }
    d.clients.fetch_add(1, Ordering::SeqCst);
    d.touch();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<(u64, Event)>(CLIENT_QUEUE);
    let writer = tokio::spawn(write_events(wr, rx));
    loop {
        let frame = tokio::select! {
            f = frame::read_frame(&mut rd) => f,
            _ = d.shutdown.cancelled() => break,
        };
        let f = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("client read: {e}");
                break;
            }
        };
        d.touch();
        let sink = Sink {
            id: f.id,
            tx: tx.clone(),
        };
        match dp::decode_request(&f) {
            Ok(req) => dispatch(&d, req, sink).await,
            Err(message) => sink.send(Event::Error { message }).await,
        }
    }
    drop(tx);
    // Let queued events (e.g. `Stopping`) reach the client, but never wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    d.clients.fetch_sub(1, Ordering::SeqCst);
    d.touch();
}

async fn write_events(wr: tokio::net::unix::OwnedWriteHalf, mut rx: mpsc::Receiver<(u64, Event)>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = Vec::new();
    while let Some((id, ev)) = rx.recv().await {
        buf.clear();
        if let Err(e) = dp::encode_event(id, &ev, &mut buf) {
            tracing::error!("encoding event: {e}");
            continue;
        }
        let mut r = w.write_all(&buf).await;
        if r.is_ok() && rx.is_empty() {
            r = w.flush().await;
        }
        if let Err(e) = r {
            tracing::debug!("client gone: {e}");
            // Senders now fail at once instead of waiting for a reader that left.
            rx.close();
            return;
        }
    }
    let _ = w.flush().await;
}

async fn dispatch(d: &Arc<Daemon>, req: Request, sink: Sink) {
    match req {
        Request::Hello { proto, build } => {
            tracing::debug!(proto, %build, "client hello");
            sink.send(Event::Hello {
                proto: PROTO_VERSION,
                build: d.build.clone(),
                pid: std::process::id(),
            })
            .await
        }
        Request::Run(r) => {
            tokio::spawn(run::execute(d.clone(), r, sink));
        }
        Request::Kill {
            run_id,
            host,
            signal,
        } => {
            if !d.runs.kill(run_id, host.as_deref(), signal) {
                sink.send(Event::Error {
                    message: format!("no run {run_id} in flight"),
                })
                .await
            }
        }
        Request::Status => sink.send(Event::Status(d.status())).await,
        Request::Facts {
            hosts,
            accept_new_host_keys,
        } => {
            let d = d.clone();
            tokio::spawn(async move {
                let facts = facts(&d, hosts, accept_new_host_keys).await;
                sink.send(Event::Facts(facts)).await
            });
        }
        Request::File {
            host,
            op,
            accept_new_host_keys,
        } => {
            let d = d.clone();
            tokio::spawn(async move {
                let r = file(&d, &host, op, accept_new_host_keys).await;
                sink.send(Event::FileDone(r)).await
            });
        }
        Request::Stop => {
            tracing::info!("stop requested");
            sink.send(Event::Stopping).await;
            d.shutdown.cancel();
        }
    }
}

async fn facts(
    d: &Daemon,
    hosts: Vec<Host>,
    accept: bool,
) -> Vec<(String, Result<crate::model::Info, String>)> {
    let futs = hosts.iter().map(|h| async move {
        let r = d.pool.facts(h, accept).await.map_err(|e| e.to_string());
        (h.name.clone(), r)
    });
    futures::future::join_all(futs).await
}

async fn file(d: &Daemon, host: &Host, op: FileOp, accept: bool) -> Result<FileResult, HostError> {
    let lease = d.pool.acquire(host, accept).await?;
    let Conn::Agent(link) = &lease.conn else {
        return Err(HostError::new(
            ErrorKind::Agent,
            format!(
                "{}: agentless host: file transfer needs the agent",
                host.name
            ),
        ));
    };
    match op {
        FileOp::Read { path, max_size } => {
            let f = link
                .read_file(ReadFile { path, max_size })
                .await
                .map_err(link_error)?;
            Ok(FileResult::Read {
                data: f.data,
                mode: f.mode,
                sha256: f.sha256,
            })
        }
        FileOp::Write { path, data, mode } => {
            use sha2::Digest as _;
            let sha256 = hex::encode(sha2::Sha256::digest(&data));
            let (size, sha256) = link
                .write_file(WriteFile {
                    path,
                    data,
                    mode,
                    sha256,
                })
                .await
                .map_err(link_error)?;
            Ok(FileResult::Written { size, sha256 })
        }
    }
}

/// Our real uid (the owner of /proc/self).
pub fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
