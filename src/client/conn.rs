//! The client's connection to the daemon: connect, or start `crew daemon` and connect;
//! requests with ids, events routed back to each request's channel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::proto::daemon::{self as dp, Event, Request};
use crate::proto::{frame, PROTO_VERSION};

/// Events buffered per request before the socket reader waits for the consumer.
const REQUEST_QUEUE: usize = 1024;
/// Bytes read from the daemon's socket at a time.
const READ_BUFFER: usize = 64 * 1024;
/// How long a freshly spawned daemon may take to answer.
const SPAWN_WAIT: Duration = Duration::from_secs(5);
/// How long any single answer (Hello, Stopping) may take.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<Event>>>>;

type Writer = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

/// A connection to the daemon.
pub struct Client {
    writer: Writer,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
    /// The daemon's pid and build, from its Hello.
    pub daemon_pid: u32,
    pub daemon_build: String,
    /// Connected over the API (TLS): heists use the daemon's own inventory and heist files.
    pub remote: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The operator's name given at the prompt ([`identify`]), for this process.
static OPERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The operator's own name for the audit log, where one was given (`CREW_OPERATOR`, or the
/// start-up prompt).
pub fn operator() -> Option<String> {
    if let Some(op) = OPERATOR.get() {
        return Some(op.clone());
    }
    std::env::var("CREW_OPERATOR")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where the daemon asks who is there (`identify = true` in its daemon.toml) and no name was
/// given: ask on the terminal, or refuse (no terminal). Front-ends that act call this at
/// start-up, before any screen is taken over.
pub fn identify() -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let path = crate::daemon::config::DaemonConfig::default_path();
    let cfg = crate::daemon::config::DaemonConfig::load(&path).map_err(anyhow::Error::msg)?;
    if !cfg.identify || operator().is_some() {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "this daemon acts only for a named operator (identify = true in {}): set CREW_OPERATOR",
            path.display()
        );
    }
    for _ in 0..3 {
        eprint!("crew: who is there? (your name, for the audit log): ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            break;
        }
        let name: String = line.trim().chars().filter(|c| !c.is_control()).collect();
        if !name.is_empty() {
            let _ = OPERATOR.set(name);
            return Ok(());
        }
    }
    bail!(
        "no operator name given: refusing to act (identify = true in {})",
        path.display()
    )
}

/// Sends requests on a [`Client`]'s connection; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    writer: Writer,
    next_id: Arc<AtomicU64>,
}

impl Sender {
    pub async fn send(&self, req: Request) -> anyhow::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        write(&self.writer, id, &req).await
    }
}

async fn write(writer: &Writer, id: u64, req: &Request) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    dp::encode_request(id, req, &mut buf).context("encoding request")?;
    let mut w = writer.lock().await;
    w.write_all(&buf).await.context("writing to the daemon")?;
    w.flush().await.context("writing to the daemon")?;
    Ok(())
}

impl Client {
    /// Connect to the daemon at `socket`; `Ok(None)` when nobody answers there. A socket of
    /// another user is an error saying whose it is (its daemon would refuse us).
    pub async fn connect_at(socket: &Path) -> anyhow::Result<Option<Client>> {
        check_owner(socket)?;
        let stream = match tokio::time::timeout(ANSWER_WAIT, UnixStream::connect(socket)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) | Err(_) => return Ok(None),
        };
        let (rd, wr) = stream.into_split();
        let what = socket.display().to_string();
        Client::over(rd, wr, &what).await.map(Some)
    }

    /// The client protocol over any byte stream (the Unix socket, a TLS connection): Hello,
    /// then requests.
    pub async fn over<R, W>(rd: R, wr: W, what: &str) -> anyhow::Result<Client>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        // A run streams hundreds of small frames: read them out of one buffer, not with three
        // reads each.
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
        let pending: Pending = Arc::default();
        let p = pending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(f)) = frame::read_frame(&mut rd).await {
                let Ok(ev) = dp::decode_event(&f) else {
                    tracing::warn!("undecodable event from the daemon");
                    continue;
                };
                let last = ev.is_final();
                let tx = {
                    let mut map = p.lock().unwrap_or_else(|e| e.into_inner());
                    if last {
                        map.remove(&f.id)
                    } else {
                        map.get(&f.id).cloned()
                    }
                };
                if let Some(tx) = tx {
                    let _ = tx.send(ev).await;
                }
            }
            // The daemon went away: every open request ends.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        let mut c = Client {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(wr))),
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            reader,
            daemon_pid: 0,
            daemon_build: String::new(),
            remote: false,
        };
        let mut rx = c
            .request(Request::Hello {
                proto: PROTO_VERSION,
                build: crate::paths::build_hash().to_string(),
                operator: operator(),
            })
            .await?;
        match tokio::time::timeout(ANSWER_WAIT, rx.recv()).await {
            Ok(Some(Event::Hello {
                build, pid, proto, ..
            })) => {
                if proto != PROTO_VERSION {
                    tracing::warn!(proto, "daemon speaks another protocol version");
                }
                c.daemon_pid = pid;
                c.daemon_build = build;
                Ok(c)
            }
            Ok(Some(other)) => bail!("daemon answered Hello with {other:?}"),
            Ok(None) => bail!("daemon at {what} closed the connection"),
            Err(_) => bail!("daemon at {what} did not answer within 5s"),
        }
    }

    /// Connect to the daemon of `CREW_HOME` (or the remote one, `--daemon`); None when none
    /// is running.
    pub async fn connect() -> anyhow::Result<Option<Client>> {
        if let Some(r) = super::remote::configured() {
            return super::remote::connect(r).await.map(Some);
        }
        Client::connect_at(&crate::paths::socket()).await
    }

    /// Connect, starting `crew daemon` (our own executable) when nobody answers. A daemon of
    /// another build is asked to stop and replaced by ours.
    pub async fn connect_or_spawn() -> anyhow::Result<Client> {
        if let Some(r) = super::remote::configured() {
            return super::remote::connect(r).await;
        }
        let socket = crate::paths::socket();
        if let Some(c) = Client::connect_at(&socket).await? {
            if c.daemon_build == crate::paths::build_hash() {
                return Ok(c);
            }
            tracing::info!(theirs = %c.daemon_build, "replacing a daemon of another build");
            c.stop_and_wait(&socket).await?;
        }
        spawn_daemon()?;
        let mut delay = Duration::from_millis(10);
        let deadline = tokio::time::Instant::now() + SPAWN_WAIT;
        loop {
            if let Some(c) = Client::connect_at(&socket).await? {
                return Ok(c);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "started `crew daemon` but it did not answer on {} within {}s (see {})",
                    socket.display(),
                    SPAWN_WAIT.as_secs(),
                    crate::paths::log_dir().join("daemon.log").display()
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// Send a request; the receiver yields its events and ends after the final one.
    pub async fn request(&self, req: Request) -> anyhow::Result<mpsc::Receiver<Event>> {
        Ok(self.request_with_id(req).await?.1)
    }

    /// [`Client::request`], with the request's id (later requests may name it: shell input).
    pub async fn request_with_id(
        &self,
        req: Request,
    ) -> anyhow::Result<(u64, mpsc::Receiver<Event>)> {
        let req = if self.remote { req.for_remote() } else { req };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        if let Err(e) = self.write(id, &req).await {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Send a request whose answer we do not wait for (e.g. `Kill`).
    pub async fn send(&self, req: Request) -> anyhow::Result<()> {
        self.sender().send(req).await
    }

    /// A handle that sends requests (whose answers nobody waits for) from another task.
    pub fn sender(&self) -> Sender {
        Sender {
            writer: self.writer.clone(),
            next_id: self.next_id.clone(),
        }
    }

    async fn write(&self, id: u64, req: &Request) -> anyhow::Result<()> {
        write(&self.writer, id, req).await
    }

    /// Ask the daemon to stop and wait (bounded) until its socket stops answering.
    pub async fn stop_and_wait(self, socket: &Path) -> anyhow::Result<()> {
        let remote = self.remote;
        let mut rx = self.request(Request::Stop).await?;
        match tokio::time::timeout(ANSWER_WAIT, rx.recv()).await {
            Ok(Some(Event::Error { message })) => bail!("{message}"),
            _ if remote => return Ok(()),
            _ => {}
        }
        drop(self);
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        while tokio::time::Instant::now() < deadline {
            if UnixStream::connect(socket).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "the daemon on {} did not stop within {}s",
            socket.display(),
            ANSWER_WAIT.as_secs()
        )
    }
}

/// A daemon serves only its own user (it refuses others' connections): say so before
/// connecting instead of failing on a closed connection.
fn check_owner(socket: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(socket) {
        Ok(m) => {
            // SAFETY: getuid has no preconditions.
            let ours = unsafe { libc::getuid() };
            if m.uid() != ours {
                bail!(
                    "the daemon at {} belongs to uid {}, and you are uid {ours}; each user has \
                     their own daemon (set CREW_HOME to a directory of yours)",
                    socket.display(),
                    m.uid()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("cannot reach the daemon at {}: {e}", socket.display())
        }
        Err(_) => Ok(()),
    }
}

/// The executable started as the daemon: `CREW_DAEMON_EXE`, else our own.
fn daemon_exe() -> anyhow::Result<PathBuf> {
    match std::env::var_os("CREW_DAEMON_EXE").filter(|s| !s.is_empty()) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().context("finding our own executable"),
    }
}

/// Start `crew daemon` detached: its own session, no terminal, stdio to /dev/null.
fn spawn_daemon() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = daemon_exe()?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} daemon", exe.display()))?;
    // Reap it in the background if it exits while we still run (a second daemon exits
    // at once when another one won the race).
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(())
}
