//! The agent pool: one entry per `Host::link_key()`, each a small state machine
//! ([`super::host_state`]). A run asks for a [`Lease`]; the first lease on a host connects
//! (SSH + agent install, or a local child), later ones reuse the live link (no new SSH
//! connection). A link that dies is marked lost and reconnected in the background with
//! capped exponential backoff; a host that cannot be reached is down until the next demand.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::host_state::{backoff, HostInfo, State};
use super::hostkeys::{Presented, Question};
use super::link::{AgentLink, LinkError, LinkOptions};
use super::ssh::{self, SshError, SshOptions, SshSession};
use crate::model::ErrorKind;
use crate::model::HostError;
use crate::model::Info;
use crate::model::{Host, StrictHostKeyChecking, Transport};
use crate::proto::daemon::HostStatus;

/// Reconnect attempts after a link is lost before the host is marked down.
const MAX_RECONNECTS: u32 = 6;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Executable started as the agent (locally, or uploaded to SSH hosts).
    pub agent_exe: PathBuf,
    /// Build hash of `agent_exe`.
    pub agent_build: String,
    /// SSH handshakes (and local agent spawns) in flight at once.
    pub handshake_limit: usize,
    pub keepalive: Duration,
}

/// A live connection to one host.
#[derive(Clone)]
pub enum Conn {
    Agent(AgentLink),
    /// The agent cannot run there: one exec channel per command.
    Agentless(Arc<SshSession>),
}

struct Live {
    conn: Conn,
    generation: u64,
    ssh: Option<Arc<SshSession>>,
    /// Local agent child (killed on drop).
    _child: Option<Child>,
}

impl Live {
    /// Close the link (the agent exits on EOF) and the SSH session under it.
    async fn close(&self, reason: &str) {
        if let Conn::Agent(link) = &self.conn {
            link.close(reason);
        }
        if let Some(s) = &self.ssh {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.disconnect()).await;
        }
    }
}

struct Slot {
    key: String,
    info: Mutex<HostInfo>,
    /// Held while connecting, so concurrent demands share one connection attempt.
    live: tokio::sync::Mutex<Option<Live>>,
}

impl Slot {
    fn info(&self) -> MutexGuard<'_, HostInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    cfg: PoolConfig,
    handshakes: Arc<Semaphore>,
    /// Agent installs and starts in flight (login shell, upload, agent start, Hello): each
    /// costs a shell on the host and CPU here; more at once only makes every one of them
    /// slower (and time out) without finishing sooner.
    starts: Semaphore,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    shutdown: CancellationToken,
    /// Connections to jump hosts, each shared by all hosts behind it.
    bastions: ssh::Bastions,
    /// Agents started through sudo, beside the hosts' own ([`super::privileged`]).
    privileged: super::privileged::Privileged,
}

#[derive(Clone)]
pub struct Pool(Arc<Inner>);

/// A host's connection checked out for one job; counts as a job while held.
pub struct Lease {
    slot: Arc<Slot>,
    pub conn: Conn,
    pub agentless: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut i = self.slot.info();
        i.jobs = i.jobs.saturating_sub(1);
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Pool {
    pub fn new(cfg: PoolConfig, shutdown: CancellationToken) -> Pool {
        Pool(Arc::new(Inner {
            handshakes: Arc::new(Semaphore::new(cfg.handshake_limit.max(1))),
            starts: Semaphore::new(start_limit()),
            cfg,
            slots: Mutex::new(HashMap::new()),
            shutdown,
            bastions: ssh::Bastions::default(),
            privileged: super::privileged::Privileged::new(),
        }))
    }

    fn slot(&self, host: &Host) -> Arc<Slot> {
        let key = host.link_key();
        let mut slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(key.clone()).or_insert_with(|| {
            Arc::new(Slot {
                key,
                info: Mutex::new(HostInfo::new(host.clone())),
                live: tokio::sync::Mutex::new(None),
            })
        });
        slot.info().host = host.clone();
        slot.clone()
    }

    /// A connection to `host` for one job, connecting when there is none.
    pub async fn acquire(&self, host: &Host, accept_new: bool) -> Result<Lease, HostError> {
        self.acquire_asking(host, accept_new, None).await
    }

    /// [`Pool::acquire`]; an unknown host key met while connecting is put to the operator
    /// through `ask` (the run's question) instead of refused at once.
    pub async fn acquire_asking(
        &self,
        host: &Host,
        accept_new: bool,
        ask: Option<Arc<Question>>,
    ) -> Result<Lease, HostError> {
        let slot = self.slot(host);
        let conn = self.ensure(slot.clone(), accept_new, ask).await?;
        let agentless = matches!(conn, Conn::Agentless(_));
        slot.info().jobs += 1;
        Ok(Lease {
            slot,
            conn,
            agentless,
        })
    }

    /// The host's pooled SSH connection (connecting as for a run when there is none yet),
    /// with a lease that keeps it counted as busy; None for a `local` host.
    pub async fn ssh(
        &self,
        host: &Host,
        accept_new: bool,
    ) -> Result<(Lease, Option<Arc<SshSession>>), HostError> {
        let lease = self.acquire(host, accept_new).await?;
        let ssh = lease
            .slot
            .live
            .lock()
            .await
            .as_ref()
            .and_then(|l| l.ssh.clone());
        Ok((lease, ssh))
    }

    /// Agent facts for `host`, cached per connection.
    pub async fn facts(&self, host: &Host, accept_new: bool) -> Result<Info, HostError> {
        let slot = self.slot(host);
        if let Some(f) = slot.info().facts.clone() {
            return Ok(f);
        }
        let lease = self.acquire(host, accept_new).await?;
        let Conn::Agent(link) = &lease.conn else {
            return Err(HostError::new(
                ErrorKind::Agent,
                "agentless host: no agent to report facts",
            ));
        };
        let info = link.info().await.map_err(link_error)?;
        slot.info().facts = Some(info.clone());
        Ok(info)
    }

    /// Every entry's state, sorted by host name.
    pub fn status(&self) -> Vec<HostStatus> {
        let slots: Vec<Arc<Slot>> = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<HostStatus> = slots.iter().map(|s| s.info().status(&s.key)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.link_key.cmp(&b.link_key)));
        out
    }

    /// The SSH session under `host`'s agent (connecting when there is none) and the
    /// options it was made with: a privileged agent starts on a channel of it.
    pub(super) async fn session(
        &self,
        host: &Host,
        accept_new: bool,
    ) -> Result<(Arc<SshSession>, SshOptions), HostError> {
        let slot = self.slot(host);
        let conn = self.ensure(slot.clone(), accept_new, None).await?;
        if matches!(conn, Conn::Agentless(_)) {
            return Err(HostError::new(
                ErrorKind::Agent,
                format!("{}: agentless host: sudo needs the agent", host.name),
            ));
        }
        let session = slot.live.lock().await.as_ref().and_then(|l| l.ssh.clone());
        let Some(session) = session else {
            return Err(HostError::new(
                ErrorKind::Exec,
                format!(
                    "{}: sudo is for SSH hosts (a local host's agent runs as you)",
                    host.name
                ),
            ));
        };
        Ok((session, self.ssh_options(accept_new)))
    }

    pub(super) fn privileged_agents(&self) -> &super::privileged::Privileged {
        &self.0.privileged
    }

    fn ssh_options(&self, accept_new: bool) -> SshOptions {
        let cfg = &self.0.cfg;
        SshOptions {
            accept_new_host_keys: accept_new,
            handshakes: self.0.handshakes.clone(),
            keepalive: cfg.keepalive,
            agent_exe: cfg.agent_exe.clone(),
            agent_build: cfg.agent_build.clone(),
            bastions: self.0.bastions.clone(),
        }
    }

    /// Mark a host's connection as broken (e.g. an agentless exec failed on a dead session).
    pub async fn invalidate(&self, host: &Host, reason: String) {
        let slot = self.slot(host);
        let mut live = slot.live.lock().await;
        if let Some(l) = live.take() {
            slot.info().lost(l.generation, reason.clone());
            l.close(&reason).await;
        }
    }

    /// Close every link (local agents are killed, SSH sessions disconnected).
    pub async fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            let taken = slot.live.lock().await.take();
            if let Some(l) = taken {
                l.close("daemon stopping").await;
            }
        }
    }

    fn ensure(
        &self,
        slot: Arc<Slot>,
        accept_new: bool,
        ask: Option<Arc<Question>>,
    ) -> BoxFut<'_, Result<Conn, HostError>> {
        Box::pin(async move {
            let mut live = slot.live.lock().await;
            if let Some(l) = live.as_ref() {
                if alive(&l.conn) {
                    return Ok(l.conn.clone());
                }
                let reason = dead_reason(&l.conn);
                slot.info().lost(l.generation, reason.clone());
                l.close(&reason).await;
                *live = None;
            }
            let host = slot.info().host.clone();
            match self.open(&slot, &host, accept_new, ask.as_ref()).await {
                Ok((conn, ssh, child, pid)) => {
                    let agentless = matches!(conn, Conn::Agentless(_));
                    let generation = slot.info().connected(pid, agentless);
                    if let Conn::Agent(link) = &conn {
                        self.watch(slot.clone(), link.clone(), generation, accept_new);
                        reap_leftovers(slot.clone(), link.clone());
                    }
                    *live = Some(Live {
                        conn: conn.clone(),
                        generation,
                        ssh,
                        _child: child,
                    });
                    Ok(conn)
                }
                Err(e) => {
                    slot.info().set(State::Down, Some(e.to_string()));
                    Err(e)
                }
            }
        })
    }

    pub(super) fn link_options(&self) -> LinkOptions {
        LinkOptions {
            expected_build: Some(self.0.cfg.agent_build.clone()),
            ..LinkOptions::default()
        }
    }

    #[allow(clippy::type_complexity)]
    async fn open(
        &self,
        slot: &Slot,
        host: &Host,
        accept_new: bool,
        ask: Option<&Arc<Question>>,
    ) -> Result<(Conn, Option<Arc<SshSession>>, Option<Child>, Option<u32>), HostError> {
        let cfg = &self.0.cfg;
        {
            let mut i = slot.info();
            i.set(State::Connecting, None);
            i.note = None;
        }
        match host.transport {
            Transport::Local => {
                let _permit =
                    self.0.handshakes.acquire().await.map_err(|_| {
                        HostError::new(ErrorKind::Internal, "daemon is shutting down")
                    })?;
                let opts = self.link_options();
                let a = super::local::spawn(&cfg.agent_exe, opts)
                    .await
                    .map_err(|e| HostError::new(ErrorKind::Agent, format!("{e:#}")))?;
                let pid = a.handshake.agent_pid;
                Ok((Conn::Agent(a.link), None, Some(a.child), Some(pid)))
            }
            Transport::Ssh => {
                let opts = self.ssh_options(accept_new);
                let session = Arc::new(connect_asking(host, &opts, ask).await?);
                slot.info().set(State::Installing, None);
                // Queueing for a slot is local and untimed; each step inside is bounded.
                let _start =
                    self.0.starts.acquire().await.map_err(|_| {
                        HostError::new(ErrorKind::Internal, "daemon is shutting down")
                    })?;
                match session.start_agent(&opts).await {
                    Ok(ch) => {
                        let lo = self.link_options();
                        match AgentLink::connect(ch.reader, ch.writer, lo).await {
                            Ok((link, hs)) => {
                                if !hs.skipped.is_empty() {
                                    slot.info().note = Some(skipped_note(&host.name, &hs.skipped));
                                }
                                let pid = Some(hs.agent_pid);
                                Ok((Conn::Agent(link), Some(session), None, pid))
                            }
                            Err(e) => {
                                session.disconnect().await;
                                Err(link_start_error(e))
                            }
                        }
                    }
                    Err(e @ SshError::AgentUnavailable(_)) => {
                        tracing::warn!(host = %host.name, "agent unavailable, agentless: {e}");
                        slot.info().note = Some(e.to_string());
                        Ok((Conn::Agentless(session.clone()), Some(session), None, None))
                    }
                    Err(e) => {
                        session.disconnect().await;
                        Err(ssh_error(e))
                    }
                }
            }
        }
    }

    /// Watch a link; when it dies, mark the host lost and reconnect with backoff.
    fn watch(&self, slot: Arc<Slot>, link: AgentLink, generation: u64, accept_new: bool) {
        let pool = self.clone();
        let task: BoxFut<'static, ()> = Box::pin(async move {
            tokio::select! {
                _ = link.closed() => {}
                _ = pool.0.shutdown.cancelled() => return,
            }
            let reason = dead_reason(&Conn::Agent(link));
            if !slot.info().lost(generation, reason.clone()) {
                return;
            }
            tracing::warn!(host = %slot.key, "link lost: {reason}");
            for attempt in 0..MAX_RECONNECTS {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = pool.0.shutdown.cancelled() => return,
                }
                if slot.info().generation != generation {
                    return; // a demand reconnected it meanwhile
                }
                match pool.ensure(slot.clone(), accept_new, None).await {
                    Ok(_) => return,
                    Err(e) => {
                        let mut i = slot.info();
                        i.failures = attempt + 1;
                        i.set(
                            State::Lost,
                            Some(format!("{reason}; reconnect {}: {e}", attempt + 1)),
                        );
                    }
                }
            }
            let mut i = slot.info();
            if i.generation == generation {
                i.set(
                    State::Down,
                    Some(format!(
                        "{reason}; gave up after {MAX_RECONNECTS} reconnects"
                    )),
                );
            }
        });
        tokio::spawn(task);
    }
}

/// Connect to `host`; an unknown key is put to `ask` (when there is one): accepted, it is
/// recorded in known_hosts and the host connects again (a jump host's key, then the
/// target's, may each be asked about); refused, the host fails with `hostkey`.
async fn connect_asking(
    host: &Host,
    opts: &SshOptions,
    ask: Option<&Arc<Question>>,
) -> Result<SshSession, HostError> {
    // The keys on the way to a host: its jump hosts' and its own.
    let mut left = host.jumps.len() + 1;
    loop {
        let u = match (ssh::connect(host, opts).await, ask) {
            (Ok(s), _) => return Ok(s),
            // StrictHostKeyChecking yes: unknown keys are refused, never asked about.
            (Err(SshError::UnknownKey(u)), Some(_))
                if left > 0
                    && host.strict_host_key_checking != Some(StrictHostKeyChecking::Yes) =>
            {
                u
            }
            (Err(e), _) => return Err(ssh_error(e)),
        };
        left -= 1;
        let Some(q) = ask else {
            return Err(ssh_error(SshError::UnknownKey(u)));
        };
        let presented = Presented {
            shown_as: u.jump.clone().unwrap_or_else(|| host.name.clone()),
            key_type: u.key_type(),
            fingerprint: u.fingerprint(),
            randomart: u.randomart(),
        };
        if !q.ask(&host.name, presented).await {
            return Err(HostError::new(
                ErrorKind::Hostkey,
                format!(
                    "{}: host key for {} ({} {}) not accepted by the operator",
                    host.name,
                    u.name(),
                    u.key_type(),
                    u.fingerprint()
                ),
            ));
        }
        u.record().await.map_err(ssh_error)?;
    }
}

/// Have a new agent kill what a dead one left running on its host (a previous agent killed
/// with its keeper, or by a crash of the host's session); say so in the log and the host's
/// status note. In the background: jobs need not wait for it.
fn reap_leftovers(slot: Arc<Slot>, link: AgentLink) {
    tokio::spawn(async move {
        let found = match link.reap().await {
            Ok(found) => found,
            Err(e) => return tracing::warn!(host = %slot.key, "looking for leftovers: {e}"),
        };
        if found.is_empty() {
            return;
        }
        for l in &found {
            let procs: Vec<String> = l
                .processes
                .iter()
                .map(|(pid, comm)| format!("{pid} {}", comm.escape_debug()))
                .collect();
            tracing::warn!(
                host = %slot.key,
                "killed process group {} of job {} left by dead agent {}: {}",
                l.pgid,
                l.job,
                l.agent_pid,
                procs.join(", ")
            );
        }
        let n: usize = found.iter().map(|l| l.processes.len()).sum();
        slot.info().note = Some(format!(
            "killed {n} leftover process(es) in {} group(s) of a dead agent",
            found.len()
        ));
    });
}

/// Agent installs/starts at once: 2 per core, at least 8, at most 32.
fn start_limit() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores).clamp(8, 32)
}

/// Log what a login shell printed before the agent (truncated, escaped) and say it briefly
/// for `crew status`.
fn skipped_note(host: &str, skipped: &[u8]) -> String {
    tracing::info!(
        "{host}: skipped {} bytes of login output before the agent: {}",
        skipped.len(),
        super::link::preview(skipped)
    );
    format!("skipped {} bytes of login output", skipped.len())
}

fn alive(c: &Conn) -> bool {
    match c {
        Conn::Agent(l) => !l.is_closed(),
        Conn::Agentless(s) => !s.is_closed(),
    }
}

fn dead_reason(c: &Conn) -> String {
    match c {
        Conn::Agent(l) => l
            .close_reason()
            .unwrap_or_else(|| "link closed".to_string()),
        Conn::Agentless(_) => "session closed".to_string(),
    }
}

pub fn ssh_error(e: SshError) -> HostError {
    HostError::new(e.kind(), e.to_string())
}

/// An error of a link that is up: a request or a job start on it.
pub fn link_error(e: LinkError) -> HostError {
    let kind = match &e {
        LinkError::Closed(_) | LinkError::Timeout(_) => ErrorKind::Lost,
        LinkError::Refused(_) => ErrorKind::Refused,
        LinkError::Agent(_) => ErrorKind::Exec,
        LinkError::Handshake(_) | LinkError::VersionMismatch { .. } | LinkError::Protocol(_) => {
            ErrorKind::Internal
        }
    };
    HostError::new(kind, e.to_string())
}

/// An error while bringing a link up: the agent did not start or did not greet in time.
fn link_start_error(e: LinkError) -> HostError {
    let kind = match &e {
        LinkError::Timeout(_) => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Agent,
    };
    HostError::new(kind, e.to_string())
}
