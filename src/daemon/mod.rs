//! `crew daemon`: agent pool, request router, run store, audit log.
//!
//! Started on demand by any client (`Client::connect_or_spawn`), it listens
//! on a 0600 Unix socket in a 0700 directory, refuses peers of another uid, and exits after
//! an idle timeout with no client and no run.

pub mod audit;
pub mod bus;
pub mod config;
pub mod follow;
pub mod heist;
pub mod host_state;
pub mod hostkeys;
pub mod inflight;
mod input;
pub mod link;
mod local;
pub mod pool;
mod privileged;
mod recover;
pub mod registry;
pub mod run;
pub mod runlog;
pub mod server;
mod shell;
pub mod ssh;
mod transfer;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use pool::{Pool, PoolConfig};
pub use server::Daemon;

/// Default idle timeout: exit after 30 minutes with no client and no run.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// None (or zero) = never exit when idle.
    pub idle_timeout: Option<Duration>,
    pub socket: PathBuf,
    pub runs_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Executable started as the agent (`CREW_AGENT_EXE`, else our own).
    pub agent_exe: PathBuf,
    pub handshake_limit: usize,
    pub keepalive: Duration,
    /// The daemon's own hosts.toml (heists and API requests that name none use it).
    pub inventory: Option<PathBuf>,
    /// Ask every client for the operator's own name (shared accounts).
    pub identify: bool,
    /// The NATS bus (sites), when configured.
    pub bus: Option<bus::BusConfig>,
}

impl DaemonOptions {
    /// Options from `CREW_HOME` / `CREW_AGENT_EXE`.
    pub fn from_env(idle_timeout: Option<Duration>) -> anyhow::Result<DaemonOptions> {
        let agent_exe = match std::env::var_os("CREW_AGENT_EXE").filter(|s| !s.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().context("finding our own executable")?,
        };
        let cfg = config::DaemonConfig::load(&config::DaemonConfig::default_path())
            .map_err(anyhow::Error::msg)?;
        let inventory = match cfg.hosts {
            Some(p) => Some(p),
            None => crate::inventory::Inventory::find_default(None)
                .ok()
                .and_then(|p| std::path::absolute(p).ok()),
        };
        Ok(DaemonOptions {
            idle_timeout,
            socket: crate::paths::socket(),
            runs_dir: crate::paths::runs_dir(),
            audit_log: crate::paths::audit_log(),
            agent_exe,
            handshake_limit: 64,
            keepalive: Duration::from_secs(15),
            inventory,
            identify: cfg.identify,
            bus: bus::BusConfig::resolve(cfg.nats).map_err(anyhow::Error::msg)?,
        })
    }

    /// Options for a daemon whose state lives under `home` (tests run several at once).
    pub fn in_home(home: &Path, agent_exe: PathBuf) -> DaemonOptions {
        DaemonOptions {
            idle_timeout: None,
            socket: home.join("daemon.sock"),
            runs_dir: home.join("runs"),
            audit_log: home.join("audit.jsonl"),
            agent_exe,
            handshake_limit: 64,
            keepalive: Duration::from_secs(15),
            inventory: None,
            identify: false,
            bus: None,
        }
    }
}

/// A front-end the daemon starts once its state is open, beside its socket (the HTTPS API:
/// `crate::api` imports the daemon, never the other way round). It starts its own tasks and
/// returns; an error stops the daemon before it serves.
pub type Front =
    Box<dyn FnOnce(Arc<Daemon>) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send>;

/// `crew daemon`: serve in this process until stopped (Stop request, SIGTERM, Ctrl-C) or idle.
pub fn run_foreground(idle: Option<Duration>, front: Option<Front>) -> anyhow::Result<i32> {
    crate::logging::to_file("daemon");
    let opts = DaemonOptions::from_env(Some(idle.unwrap_or(DEFAULT_IDLE)))?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
            t.cancel();
        });
        let fronted = front.is_some();
        let served = serve_with(opts.clone(), token, front).await?;
        if !served && fronted {
            anyhow::bail!(
                "another daemon already serves {}: stop it first (`crew daemon stop`), then start \
                 this one with --listen",
                opts.socket.display()
            );
        }
        Ok(())
    })?;
    Ok(0)
}

/// Serve until `shutdown` is cancelled, a client sends `Stop`, or the daemon is idle.
/// Returns Ok at once when another daemon already serves this socket.
pub async fn serve(opts: DaemonOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve_with(opts, shutdown, None).await.map(|_| ())
}

/// [`serve`], with a front-end started once the daemon is open. False when another daemon
/// already serves this socket (nothing was started).
pub async fn serve_with(
    opts: DaemonOptions,
    shutdown: CancellationToken,
    front: Option<Front>,
) -> anyhow::Result<bool> {
    let Some(listener) = listen(&opts.socket).await? else {
        tracing::info!(socket = %opts.socket.display(), "another daemon is serving; exiting");
        return Ok(false);
    };
    let token = shutdown.child_token();
    let d = open(opts.clone(), token.clone()).await?;
    if let Some(front) = front {
        if let Err(e) = front(d.clone()).await {
            token.cancel();
            d.close().await;
            return Err(e);
        }
    }
    tracing::info!(pid = std::process::id(), socket = %opts.socket.display(), build = %d.build, "daemon serving");
    let idle = opts.idle_timeout.filter(|t| !t.is_zero());
    let tick = idle
        .map(|t| (t / 4).clamp(Duration::from_millis(20), Duration::from_secs(5)))
        .unwrap_or(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    let ours = listener.1.id;
    loop {
        tokio::select! {
            a = listener.0.accept() => match a {
                Ok((stream, _)) => { tokio::spawn(server::client(d.clone(), stream)); }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = token.cancelled() => break,
            _ = ticker.tick() => {
                if idle.is_some_and(|t| d.idle_for() >= t) {
                    tracing::info!("idle for {:?}; exiting", idle);
                    break;
                }
                // Removed (its home deleted, say) or replaced: no client can reach this
                // daemon any more. Once it has nothing to do, it goes.
                if d.idle_for() >= tick && socket_id(&opts.socket) != ours {
                    tracing::warn!(socket = %opts.socket.display(), "the socket was removed or replaced: no client can reach this daemon; exiting");
                    break;
                }
            }
        }
    }
    token.cancel();
    // Stop accepting before tearing down, so clients see "no daemon" rather than a hang.
    drop(listener);
    d.close().await;
    tracing::info!("daemon stopped");
    Ok(true)
}

/// The daemon's state, without a socket: the agent pool, the run store (unfinished runs of a
/// daemon that went away settled first), runs and heists. [`serve`] puts a socket in front of
/// it; tests drive heists through it directly.
pub async fn open(opts: DaemonOptions, token: CancellationToken) -> anyhow::Result<Arc<Daemon>> {
    let own = std::env::current_exe().ok();
    let agent_build = if own.is_some_and(|p| same_file(&p, &opts.agent_exe)) {
        crate::paths::build_hash().to_string()
    } else {
        crate::paths::file_hash(&opts.agent_exe)
            .with_context(|| format!("hashing agent executable {}", opts.agent_exe.display()))?
    };
    let pool = Pool::new(
        PoolConfig {
            agent_exe: opts.agent_exe.clone(),
            agent_build,
            handshake_limit: opts.handshake_limit,
            keepalive: opts.keepalive,
        },
        token.clone(),
    );
    let store = Store::open(opts.runs_dir.clone())?;
    let d = Arc::new(Daemon::new(pool, store, opts, token));
    recover::settle(&d).await;
    bus::start(&d).await?;
    Ok(d)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The listening socket plus its lock file; the socket file is removed on drop.
struct Listening(UnixListener, #[allow(dead_code)] Lock);

struct Lock {
    _file: std::fs::File,
    socket: PathBuf,
    /// The socket file this daemon bound (another's, at the same path, is left alone).
    id: Option<(u64, u64)>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.id.is_some() && socket_id(&self.socket) == self.id {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// What identifies the socket file at `path` (device and inode), None when there is none.
fn socket_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Take the daemon lock and bind the socket (0600, directory 0700). None when another
/// daemon holds the lock or answers on the socket.
async fn listen(socket: &Path) -> anyhow::Result<Option<Listening>> {
    let dir = socket
        .parent()
        .with_context(|| format!("socket path {} has no directory", socket.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    let lock_path = socket.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
    if socket.exists() {
        let answer =
            tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(socket)).await;
        if matches!(answer, Ok(Ok(_))) {
            return Ok(None);
        }
        tracing::info!(socket = %socket.display(), "removing stale socket");
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    // Bind under a temporary name, restrict it, then move it into place: the socket is
    // never reachable at its public path with a looser mode.
    let tmp = dir.join(format!(".daemon.sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", tmp.display()))?;
    std::fs::rename(&tmp, socket)
        .with_context(|| format!("moving {} to {}", tmp.display(), socket.display()))?;
    Ok(Some(Listening(
        listener,
        Lock {
            _file: file,
            socket: socket.to_path_buf(),
            id: socket_id(socket),
        },
    )))
}
