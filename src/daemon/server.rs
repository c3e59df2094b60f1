//! The daemon's socket: one task per client reading `Request` frames and writing `Event`
//! frames through a bounded queue. A client follows runs through their logs at its own pace:
//! a slow or vanished client slows and stops nothing but its own stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::audit;
use super::inflight::Runs;
use super::pool::{link_error, Conn, Pool};
use super::registry::{Control, Registry};
use super::ssh::shell::ShellIn;
use super::{follow, heist, run, shell, DaemonOptions};
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
    pub registry: Registry,
    pub opts: DaemonOptions,
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
        opts: DaemonOptions,
        shutdown: CancellationToken,
    ) -> Daemon {
        Daemon {
            pool,
            runs: Runs::default(),
            registry: Registry::default(),
            audit_log: opts.audit_log.clone(),
            opts,
            store,
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
        if self.clients.load(Ordering::SeqCst) > 0
            || self.runs.active() > 0
            || self.registry.in_flight() > 0
        {
            return Duration::ZERO;
        }
        self.last_active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Kill every job (waiting a little for them to end) and close every agent link.
    pub async fn close(&self) {
        self.shutdown.cancel();
        self.runs.kill_all(libc::SIGKILL);
        for _ in 0..100 {
            if self.runs.active() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.pool.close_all().await;
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

    /// The id of the request these events answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue an event; false once the client is gone.
    pub async fn deliver(&self, e: Event) -> bool {
        self.tx.send((self.id, e)).await.is_ok()
    }
}

/// Who is on the other end of one connection, for the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The local login (socket peer), the API token's name, or the operator's own name.
    pub who: String,
    /// The operator said who they are (required when the daemon has `identify = true`).
    pub identified: bool,
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
    let mut caller = Caller {
        who: crate::paths::whoami(),
        identified: false,
    };
    // Shells this connection has open (closed when it goes).
    let mut shells = shell::Shells::default();
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
            Ok(req) => dispatch(&d, &mut caller, &mut shells, req, sink).await,
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

/// Requests that act on hosts or on runs (refused to an unidentified operator when the
/// daemon has `identify = true`).
fn acts(req: &Request) -> bool {
    matches!(
        req,
        Request::Run(_)
            | Request::Heist(_)
            | Request::Answer { .. }
            | Request::Interrupt { .. }
            | Request::Kill { .. }
            | Request::File { .. }
            | Request::Shell(_)
            | Request::Transfer(_)
            | Request::Input { .. }
    )
}

async fn dispatch(
    d: &Arc<Daemon>,
    caller: &mut Caller,
    shells: &mut shell::Shells,
    req: Request,
    sink: Sink,
) {
    if d.opts.identify && !caller.identified && acts(&req) {
        let message = "this daemon acts only for a named operator (identify = true in its \
                       daemon.toml): set CREW_OPERATOR or answer the prompt at start-up"
            .to_string();
        sink.send(Event::Error { message }).await;
        return;
    }
    match req {
        Request::Hello {
            proto,
            build,
            operator,
        } => {
            tracing::debug!(proto, %build, "client hello");
            if let Some(op) = operator {
                // The operator's own name on a shared account: recorded beside the login.
                caller.who = format!("{op} ({})", crate::paths::whoami());
                caller.identified = true;
            }
            sink.send(Event::Hello {
                proto: PROTO_VERSION,
                build: d.build.clone(),
                pid: std::process::id(),
                identify: d.opts.identify,
            })
            .await
        }
        Request::Run(mut r) => {
            r.who = caller.who.clone();
            match run::start(d, r, false).await {
                Ok(t) => {
                    tokio::spawn(follow::follow(t, sink));
                }
                Err(message) => sink.send(Event::Error { message }).await,
            }
        }
        Request::Heist(r) => {
            let detach = r.detach;
            match heist::start(d, r, caller.who.clone()).await {
                Ok(t) => {
                    sink.send(Event::Accepted { run: t.id.clone() }).await;
                    if !detach {
                        tokio::spawn(follow::follow(t, sink));
                    }
                }
                Err(message) => sink.send(Event::Error { message }).await,
            }
        }
        Request::Runs => sink.send(Event::Runs(d.registry.list())).await,
        Request::Attach { run } => match d.registry.get(&run) {
            Some(t) => {
                tokio::spawn(follow::follow(t, sink));
            }
            None => {
                let d = d.clone();
                tokio::spawn(async move { follow::from_store(&d, &run, sink).await });
            }
        },
        Request::Answer {
            run,
            ask_id,
            choice,
        } => {
            if let Err(message) = heist::answer(d, &run, ask_id, &choice, &caller.who).await {
                sink.send(Event::Error { message }).await
            }
        }
        Request::Interrupt { run, kill } => {
            if let Err(message) = interrupt(d, &run, kill, &caller.who).await {
                sink.send(Event::Error { message }).await
            }
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
        Request::Shell(r) => {
            let who = caller.who.clone();
            shell::open(d, shells, &who, r, sink).await
        }
        Request::ShellInput { shell, data } => {
            shells.input(shell, ShellIn::Data(data)).await;
        }
        Request::ShellResize { shell, cols, rows } => {
            shells.input(shell, ShellIn::Resize { cols, rows }).await;
        }
        Request::ShellEof { shell } => {
            shells.input(shell, ShellIn::Eof).await;
        }
        Request::Transfer(mut r) => {
            r.who = caller.who.clone();
            match super::transfer::start(d, r, false).await {
                Ok(t) => {
                    tokio::spawn(follow::follow(t, sink));
                }
                Err(message) => sink.send(Event::Error { message }).await,
            }
        }
        Request::Input {
            run_id,
            hosts,
            data,
            eof,
        } => {
            if let Err(message) = d.runs.input(run_id, hosts.as_deref(), data, eof).await {
                sink.send(Event::Error { message }).await
            }
        }
        Request::Stop => {
            tracing::info!("stop requested");
            sink.send(Event::Stopping).await;
            d.shutdown.cancel();
        }
    }
}

/// Stop a run or heist as Ctrl-C does (or at once, `kill`), audited.
pub async fn interrupt(d: &Arc<Daemon>, run: &str, kill: bool, who: &str) -> Result<(), String> {
    let t = d
        .registry
        .get(run)
        .ok_or_else(|| format!("no run or heist {run} in flight"))?;
    if t.status().state.is_over() {
        return Err(format!("{run} is over"));
    }
    match &t.control {
        Control::Run { run_id } => {
            let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
            d.runs.kill(*run_id, None, sig);
            if !kill {
                // TERM first; KILL for whatever is left after the grace period.
                let (d, id) = (d.clone(), *run_id);
                tokio::spawn(async move {
                    tokio::time::sleep(heist::TERM_GRACE).await;
                    d.runs.kill(id, None, libc::SIGKILL);
                });
            }
        }
        Control::Heist(h) => (h.interrupt)(kill),
    }
    audit::action(
        &d.audit_log,
        who,
        run,
        if kill { "kill" } else { "interrupt" },
        None,
    )
    .await;
    Ok(())
}

pub async fn facts(
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

pub async fn file(
    d: &Daemon,
    host: &Host,
    op: FileOp,
    accept: bool,
) -> Result<FileResult, HostError> {
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
