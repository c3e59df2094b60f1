//! The daemon's socket: one task per client reading `Request` frames and writing `Event`
//! frames through a bounded queue. A client follows runs through their logs at its own pace:
//! a slow or vanished client slows and stops nothing but its own stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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
/// Output bytes queued per client before its runs' followers wait for it (the queue's bound
/// in bytes: events carry up to 256 KiB of output each).
const CLIENT_BYTES: usize = 8 << 20;

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
    /// The NATS bus, once joined (see `daemon::bus`).
    pub bus: super::bus::Slot,
    /// The runs' questions about unknown host keys.
    pub questions: super::hostkeys::Questions,
    clients: AtomicUsize,
    last_active: Mutex<Instant>,
    /// The HTTPS API's address and certificate fingerprint, when it listens.
    api: Mutex<Option<dp::ApiStatus>>,
}

/// Counts a client (an API stream, a remote session) for the idle timer while it lives.
pub struct ClientGuard(Arc<Daemon>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
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
            questions: Default::default(),
            audit_log: opts.audit_log.clone(),
            opts,
            store,
            build: crate::paths::build_hash().to_string(),
            started: Instant::now(),
            shutdown,
            bus: super::bus::Slot::new(),
            clients: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            api: Mutex::new(None),
        }
    }

    /// A client is here (and keeps the daemon from idling out) until the guard drops.
    pub fn client_guard(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ClientGuard(self.clone())
    }

    /// The HTTPS API listens (shown by `crew status`).
    pub fn set_api(&self, api: dp::ApiStatus) {
        *self.api.lock().unwrap_or_else(|p| p.into_inner()) = Some(api);
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
            api: self.api.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            daemons: self.bus.get().map(|b| b.peers()).unwrap_or_default(),
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

/// One event on its way to a client, holding its share of the client's byte budget until it
/// is written.
struct Queued {
    id: u64,
    event: Event,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Where one request's events go.
#[derive(Clone)]
pub struct Sink {
    id: u64,
    tx: mpsc::Sender<Queued>,
    /// The connection's [`CLIENT_BYTES`], shared by all its requests.
    budget: Arc<Semaphore>,
}

/// Bytes of host output an event carries.
fn carried(e: &Event) -> usize {
    match e {
        Event::Host {
            event: dp::HostEvent::Output { data, .. },
            ..
        }
        | Event::HeistOutput { data, .. }
        | Event::ShellOutput { data } => data.len(),
        _ => 0,
    }
}

impl Sink {
    /// Queue an event; waits while the client's queue is full. A gone client is ignored
    /// (runs go on and still land in the store).
    pub async fn send(&self, e: Event) {
        let _ = self.deliver(e).await;
    }

    /// The id of the request these events answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue an event; false once the client is gone.
    pub async fn deliver(&self, event: Event) -> bool {
        let n = carried(&event).min(CLIENT_BYTES);
        let budget = match n {
            0 => None,
            n => match self.budget.clone().acquire_many_owned(n as u32).await {
                Ok(p) => Some(p),
                Err(_) => return false,
            },
        };
        let q = Queued {
            id: self.id,
            event,
            _budget: budget,
        };
        self.tx.send(q).await.is_ok()
    }
}

/// What a caller may do. Ordered: each scope includes the ones before it. The local
/// socket's peer (same uid) is `Admin`; an API token has the scope it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// See hosts, heists, runs, status; follow runs.
    Read,
    /// Also run commands, put/fetch files, kill or interrupt runs.
    Run,
    /// Also start heists, answer their asks, interrupt them.
    Heist,
    /// Also open interactive shells (`crew shell`), stop the daemon, accept new host keys.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Run, Scope::Heist, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Heist => "heist",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Who is on the other end of one connection, for the audit log and the scope check.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The local login (socket peer), `token:NAME` for an API token, or the operator's own
    /// name beside either.
    pub who: String,
    /// The operator said who they are (required when the daemon has `identify = true`).
    pub identified: bool,
    /// What this caller may ask for.
    pub scope: Scope,
    /// Connected through the API (TLS): hosts are the daemon's own inventory entries, named;
    /// no path on the daemon's machine comes from the client.
    pub remote: bool,
}

impl Caller {
    /// The peer of the local socket: our own user, every scope.
    pub fn local() -> Caller {
        Caller {
            who: crate::paths::whoami(),
            identified: false,
            scope: Scope::Admin,
            remote: false,
        }
    }

    /// An API client with a token.
    pub fn token(name: &str, scope: Scope) -> Caller {
        Caller {
            who: format!("token:{name}"),
            identified: false,
            scope,
            remote: true,
        }
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
    let (rd, wr) = stream.into_split();
    session(d, rd, wr, Caller::local()).await;
}

/// Serve one client over any byte stream (the Unix socket, or a TLS connection the API
/// upgraded): request frames in, event frames out, until either side ends.
pub async fn session<R, W>(d: Arc<Daemon>, mut rd: R, wr: W, mut caller: Caller)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let guard = d.client_guard();
    // Shells this connection has open (closed when it goes).
    let mut shells = shell::Shells::default();
    let (tx, rx) = mpsc::channel::<Queued>(CLIENT_QUEUE);
    let budget = Arc::new(Semaphore::new(CLIENT_BYTES));
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
            budget: budget.clone(),
        };
        match dp::decode_request(&f) {
            Ok(req) => dispatch(&d, &mut caller, &mut shells, req, sink).await,
            Err(message) => sink.send(Event::Error { message }).await,
        }
    }
    drop(tx);
    // Let queued events (e.g. `Stopping`) reach the client, but never wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    drop(guard);
}

async fn write_events<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Queued>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = Vec::new();
    while let Some(q) = rx.recv().await {
        buf.clear();
        if let Err(e) = dp::encode_event(q.id, &q.event, &mut buf) {
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
            | Request::AnswerHostKeys { .. }
            | Request::Interrupt { .. }
            | Request::Kill { .. }
            | Request::File { .. }
            | Request::Shell(_)
            | Request::Transfer(_)
            | Request::Input { .. }
    )
}

/// The scope a request needs (an interrupt needs `heist` for a heist, `run` for a run).
pub fn needs(d: &Daemon, req: &Request) -> Scope {
    match req {
        Request::Hello { .. }
        | Request::Runs
        | Request::Attach { .. }
        | Request::Status
        | Request::Facts { .. } => Scope::Read,
        Request::Run(_)
        | Request::Kill { .. }
        | Request::File { .. }
        | Request::Transfer(_)
        | Request::Input { .. } => Scope::Run,
        Request::Interrupt { run, .. } => match d.registry.get(run).map(|t| t.kind) {
            Some(dp::RunKind::Heist) => Scope::Heist,
            _ => Scope::Run,
        },
        Request::Heist(_) | Request::Answer { .. } => Scope::Heist,
        // An interactive shell: what is typed is not audited (only who opened it where), so
        // it takes the top scope. Input to it needs nothing more: shells are per connection.
        Request::Shell(_) | Request::Stop => Scope::Admin,
        // Accepting host keys is for `admin` alone (as --accept-new-host-keys is).
        Request::AnswerHostKeys { .. } => Scope::Admin,
        Request::ShellInput { .. } | Request::ShellResize { .. } | Request::ShellEof { .. } => {
            Scope::Read
        }
    }
}

/// A remote caller's request made safe: hosts are looked up by name in the daemon's own
/// inventory (a client never supplies key files, known_hosts paths or a `local` transport),
/// a heist comes from the daemon's own heists, and only `admin` may accept new host keys.
async fn from_remote(d: &Daemon, caller: &Caller, req: Request) -> Result<Request, String> {
    let admin = caller.scope >= Scope::Admin;
    Ok(match req {
        Request::Run(mut r) => {
            r.hosts = own_hosts(d, &r.hosts).await?;
            r.accept_new_host_keys &= admin;
            r.ask_host_keys &= admin;
            Request::Run(r)
        }
        Request::Facts {
            hosts,
            accept_new_host_keys,
        } => Request::Facts {
            hosts: own_hosts(d, &hosts).await?,
            accept_new_host_keys: accept_new_host_keys && admin,
        },
        Request::File {
            host,
            op,
            accept_new_host_keys,
        } => Request::File {
            host: own_hosts(d, std::slice::from_ref(&host))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| format!("no host {} in the daemon's inventory", host.name))?,
            op,
            accept_new_host_keys: accept_new_host_keys && admin,
        },
        Request::Shell(mut r) => {
            r.host = own_hosts(d, std::slice::from_ref(&r.host))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| format!("no host {} in the daemon's inventory", r.host.name))?;
            r.accept_new_host_keys &= admin;
            Request::Shell(r)
        }
        // A copy reads or writes files of the daemon's machine by path, with Content sources
        // only it could come from elsewhere: refused, like a heist naming files.
        Request::Transfer(_) => {
            return Err("a remote client cannot name files on the daemon's machine: copies                         (crew put / crew fetch) are run on it, with the local socket"
                .to_string())
        }
        Request::Heist(mut r) => {
            if r.inventory.is_some() || r.file.is_some() {
                return Err(
                    "a remote client cannot name files on the daemon's machine: the \
                            daemon uses its own inventory and heists"
                        .to_string(),
                );
            }
            r.accept_new_host_keys &= admin;
            r.ask_host_keys &= admin;
            Request::Heist(r)
        }
        other => other,
    })
}

/// The daemon's inventory entries for these host names, in order.
pub async fn own_hosts(d: &Daemon, hosts: &[Host]) -> Result<Vec<Host>, String> {
    let inv = own_inventory(d).await?;
    hosts
        .iter()
        .map(|h| {
            inv.hosts
                .iter()
                .find(|x| x.name == h.name)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "no host `{}` in the daemon's inventory {}",
                        h.name,
                        inv.path.display()
                    )
                })
        })
        .collect()
}

/// The daemon's own inventory (`DaemonOptions.inventory`), read now.
pub async fn own_inventory(d: &Daemon) -> Result<crate::inventory::Inventory, String> {
    let path = d.opts.inventory.clone().ok_or_else(|| {
        "the daemon has no inventory (hosts = \"…\" in its daemon.toml)".to_string()
    })?;
    tokio::task::spawn_blocking(move || {
        crate::inventory::Inventory::load(&path).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("reading the inventory: {e}"))?
}

async fn dispatch(
    d: &Arc<Daemon>,
    caller: &mut Caller,
    shells: &mut shell::Shells,
    req: Request,
    sink: Sink,
) {
    let need = needs(d, &req);
    if caller.scope < need {
        let message = format!(
            "{} has scope `{}`; this request needs `{}`",
            caller.who,
            caller.scope.as_str(),
            need.as_str()
        );
        audit::action(
            &d.audit_log,
            &caller.who,
            "-",
            "denied",
            Some(serde_json::json!({ "request": request_name(&req), "needs": need.as_str() })),
        )
        .await;
        sink.send(Event::Error { message }).await;
        return;
    }
    let req = if caller.remote {
        match from_remote(d, caller, req).await {
            Ok(r) => r,
            Err(message) => {
                sink.send(Event::Error { message }).await;
                return;
            }
        }
    } else {
        req
    };
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
                // The operator's own name on a shared account: recorded beside the login
                // (or the token).
                let op: String = op.chars().filter(|c| !c.is_control()).collect();
                caller.who = if caller.remote {
                    format!("{op} ({})", caller.who)
                } else {
                    format!("{op} ({})", crate::paths::whoami())
                };
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
            let (selection, command) = (r.selection.clone(), r.command.clone());
            match run::start(d, r, false).await {
                Ok(t) => {
                    if caller.remote {
                        let detail = serde_json::json!({ "selection": selection, "command": command, "hosts": t.hosts });
                        audit::action(
                            &d.audit_log,
                            &caller.who,
                            &t.id,
                            "run started",
                            Some(detail),
                        )
                        .await;
                    }
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
        Request::Runs => {
            let mut runs = d.registry.list();
            runs.extend(super::bus::share::list_remote(d).await);
            sink.send(Event::Runs(runs)).await
        }
        Request::Attach { run } => {
            let run = super::bus::share::local_id(d, &run);
            match d.registry.get(&run) {
                Some(t) => {
                    tokio::spawn(follow::follow(t, sink));
                }
                None if super::bus::share::attach(d, &run, &sink).await => {}
                None => {
                    let d = d.clone();
                    tokio::spawn(async move { follow::from_store(&d, &run, sink).await });
                }
            }
        }
        Request::Answer {
            run,
            ask_id,
            choice,
        } => {
            let run = super::bus::share::local_id(d, &run);
            let r = match d.registry.get(&run) {
                None => {
                    let a = super::bus::proto_answer(&run, ask_id, &choice);
                    super::bus::share::forward(d, &run, a).await
                }
                Some(_) => None,
            };
            let r = match r {
                Some(r) => r,
                None => heist::answer(d, &run, ask_id, &choice, &caller.who).await,
            };
            if let Err(message) = r {
                sink.send(Event::Error { message }).await
            }
        }
        Request::AnswerHostKeys {
            run,
            ask_id,
            accept,
        } => {
            let answered = match d.questions.get(&run) {
                Some(q) => q.answer(ask_id, &accept, &caller.who),
                None => Err(format!("{run} asks nothing about host keys (over?)")),
            };
            match answered {
                Ok(()) => {
                    let detail = serde_json::json!({ "ask": ask_id, "accepted": accept });
                    audit::action(
                        &d.audit_log,
                        &caller.who,
                        &run,
                        "host keys answered",
                        Some(detail),
                    )
                    .await;
                }
                Err(message) => sink.send(Event::Error { message }).await,
            }
        }
        Request::Interrupt { run, kill } => {
            let run = super::bus::share::local_id(d, &run);
            let r = match d.registry.get(&run) {
                None => {
                    let a = crate::proto::bus::Action::Interrupt {
                        run: run.clone(),
                        kill,
                    };
                    super::bus::share::forward(d, &run, a).await
                }
                Some(_) => None,
            };
            let r = match r {
                Some(r) => r,
                None => interrupt(d, &run, kill, &caller.who).await,
            };
            if let Err(message) = r {
                sink.send(Event::Error { message }).await
            }
        }
        Request::Kill {
            run_id,
            host,
            signal,
        } => {
            if caller.remote {
                let detail = serde_json::json!({ "host": host, "signal": signal });
                audit::action(
                    &d.audit_log,
                    &caller.who,
                    &run_id.to_string(),
                    "kill",
                    Some(detail),
                )
                .await;
            }
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
            match super::transfer::start(d, r, false, super::run::Asking::OwnQuestion).await {
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
            tracing::info!(who = %caller.who, "stop requested");
            if caller.remote {
                audit::action(&d.audit_log, &caller.who, "-", "stop", None).await;
            }
            sink.send(Event::Stopping).await;
            d.shutdown.cancel();
        }
    }
}

fn request_name(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::Run(_) => "run",
        Request::Heist(_) => "heist",
        Request::Runs => "runs",
        Request::Attach { .. } => "attach",
        Request::Answer { .. } => "answer",
        Request::AnswerHostKeys { .. } => "host keys answer",
        Request::Interrupt { .. } => "interrupt",
        Request::Kill { .. } => "kill",
        Request::Status => "status",
        Request::Facts { .. } => "facts",
        Request::File { .. } => "file",
        Request::Shell(_) => "shell",
        Request::ShellInput { .. } => "shell input",
        Request::ShellResize { .. } => "shell resize",
        Request::ShellEof { .. } => "shell eof",
        Request::Stop => "stop",
        Request::Transfer(_) => "transfer",
        Request::Input { .. } => "input",
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
