//! The daemon's side of the agent protocol: one [`AgentLink`] per agent process.
//!
//! A link owns one reader task (routes frames by request id; it never waits for a job's
//! consumer), one forwarder task per job (feeds the job's bounded channel and grants the agent
//! credit for that job as its consumer reads: a slow consumer slows its own job only, and no
//! output is lost), one writer task and one heartbeat task. Requests carry ids allocated here; replies may arrive in any order. When the
//! link dies (EOF, I/O error, missed heartbeats, [`AgentLink::close`]) every pending job's events
//! end without a terminal message, [`AgentLink::close_reason`] says why and
//! [`AgentLink::closed`] resolves.

mod files;
mod handshake;
mod router;
mod window;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub use files::{JobInput, PutStream};
pub use handshake::{preview, MAX_SKIP};
use router::{Inner, Route};

use crate::model::Info;
use crate::proto::agent::{AgentMsg, FileData, Leftover, ReadFile, Run, WriteFile};
use crate::proto::PROTO_VERSION;

/// Events buffered per job in its channel (at most 16 × 64 KiB of output); beyond that, up to
/// the job's credit window waits in the link's queue for the job.
pub const JOB_QUEUE: usize = 16;

/// Messages buffered per read stream or listing in its channel. The agent is granted credit
/// for what enters the channel, and a read stream's messages are whole 128 KiB chunks: with
/// [`JOB_QUEUE`] a fetch whose disk writes lag holds 2 MiB per host there on top of its 1 MiB
/// credit window (50 hosts: ~230 MiB peak in the daemon); with 2, 256 KiB.
pub const READ_QUEUE: usize = 2;

/// Output bytes of one job the agent may send ahead of its consumer (default of
/// [`LinkOptions::job_window`]).
pub const JOB_WINDOW: u64 = 1024 * 1024;

/// How a link is checked at start-up and kept alive.
/// Longest wait for the reply to one request (Info, ReadFile, WriteFile, Ping).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The agent must announce this build hash (`None`: any build is accepted).
    pub expected_build: Option<String>,
    /// Time allowed for the sync marker and `Hello` to arrive.
    pub handshake_timeout: Duration,
    /// A `Ping` goes out this often.
    pub heartbeat_interval: Duration,
    /// The link is declared dead after this many heartbeats without any sign of life.
    pub heartbeat_misses: u32,
    /// Per-job credit window in bytes (at least the protocol's initial window).
    pub job_window: u64,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            expected_build: None,
            handshake_timeout: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_misses: 3,
            job_window: JOB_WINDOW,
        }
    }
}

/// What the agent said when the link came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub agent_build: String,
    pub agent_pid: u32,
    /// Bytes printed before the agent's sync marker (a banner, a chatty `.bashrc`).
    pub skipped: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("agent handshake failed: {0}")]
    Handshake(String),
    #[error("agent version mismatch: the agent is {agent}, expected {expected}")]
    VersionMismatch { agent: String, expected: String },
    #[error("agent link closed: {0}")]
    Closed(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("agent error: {0}")]
    Agent(String),
    #[error("agent refused: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A connected agent. Cheap to clone; all clones share one reader and one writer task. The link
/// stays up while any clone (or [`Job`]) is alive, until the agent goes away or
/// [`AgentLink::close`] is called.
#[derive(Clone)]
pub struct AgentLink {
    inner: Arc<Inner>,
}

/// One running command. `events` yields `Started`, `Output`…, then exactly one terminal
/// message: `Exit`, `Refused` or `Error`; on a dead link they end without one.
pub struct Job {
    pub id: u64,
    pub events: mpsc::Receiver<AgentMsg>,
    link: AgentLink,
    /// Send credit for the job's stdin (a `Run` with `stdin`).
    input: Option<Arc<window::Window>>,
}

/// Kills one job; `Clone + Send`, usable after the `Job` moved elsewhere.
#[derive(Clone)]
pub struct JobKiller {
    id: u64,
    link: AgentLink,
}

impl AgentLink {
    /// Sync with the agent on `r`/`w`: skip anything before its sync marker, read and check its
    /// `Hello`, then start the link's tasks.
    pub async fn connect<R, W>(
        r: R,
        w: W,
        opts: LinkOptions,
    ) -> Result<(AgentLink, Handshake), LinkError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut r = r;
        let greet = async {
            let (skipped, rest) = handshake::find_marker(&mut r).await?;
            let mut stream = std::io::Cursor::new(rest).chain(r);
            let hello = handshake::read_hello(&mut stream).await?;
            Ok::<_, LinkError>((skipped, stream, hello))
        };
        let (skipped, stream, hello) = tokio::time::timeout(opts.handshake_timeout, greet)
            .await
            .map_err(|_| {
            LinkError::Timeout(format!(
                "no agent Hello within {:?}",
                opts.handshake_timeout
            ))
        })??;
        if hello.proto != PROTO_VERSION {
            return Err(LinkError::VersionMismatch {
                agent: format!("protocol {}", hello.proto),
                expected: format!("protocol {PROTO_VERSION}"),
            });
        }
        if let Some(expected) = &opts.expected_build {
            if &hello.build != expected {
                return Err(LinkError::VersionMismatch {
                    agent: hello.build,
                    expected: expected.clone(),
                });
            }
        }
        let inner = router::start(stream, w, &opts);
        let hs = Handshake {
            agent_build: hello.build,
            agent_pid: hello.pid,
            skipped,
        };
        Ok((AgentLink { inner }, hs))
    }

    /// Start a command on the agent.
    pub async fn start(&self, run: Run) -> Result<Job, LinkError> {
        let input = run.stdin.then_some(crate::proto::files::INPUT_WINDOW);
        self.open_job(AgentMsg::Run(run), input, JOB_QUEUE).await
    }

    /// Send `msg` as the first message of a streamed request whose replies come as a job's
    /// events (a command, a read stream, a listing); `input` opens a send window of that size;
    /// at most `queue` messages wait in the consumer's channel.
    async fn open_job(
        &self,
        msg: AgentMsg,
        input: Option<u64>,
        queue: usize,
    ) -> Result<Job, LinkError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue);
        let extra = self.inner.add_job(id, tx)?;
        let input = input.map(|w| self.inner.add_window(id, w));
        let mut sent = self.inner.send(id, &msg).await;
        if sent.is_ok() && extra > 0 {
            sent = self
                .inner
                .send(id, &AgentMsg::Credit { bytes: extra })
                .await;
        }
        if let Err(e) = sent {
            self.inner.remove_route(id);
            return Err(e);
        }
        Ok(Job {
            id,
            events: rx,
            link: self.clone(),
            input,
        })
    }

    /// Ask for the agent host's facts.
    pub async fn info(&self) -> Result<Info, LinkError> {
        match self.request(AgentMsg::InfoRequest).await?.0 {
            AgentMsg::Info(i) => Ok(i),
            other => Err(unexpected(other, "Info")),
        }
    }

    /// Read a whole file on the agent's host.
    pub async fn read_file(&self, req: ReadFile) -> Result<FileData, LinkError> {
        match self.request(AgentMsg::ReadFile(req)).await?.0 {
            AgentMsg::FileData(d) => Ok(d),
            other => Err(unexpected(other, "FileData")),
        }
    }

    /// Write a file atomically on the agent's host; returns its size and sha256.
    pub async fn write_file(&self, req: WriteFile) -> Result<(u64, String), LinkError> {
        match self.request(AgentMsg::WriteFile(req)).await?.0 {
            AgentMsg::FileWritten { size, sha256 } => Ok((size, sha256)),
            other => Err(unexpected(other, "FileWritten")),
        }
    }

    /// Have the agent kill and remove what dead agents of its user left on its host (their
    /// jobs' process groups, their temp dirs); returns the groups it killed.
    pub async fn reap(&self) -> Result<Vec<Leftover>, LinkError> {
        match self.request(AgentMsg::Reap).await?.0 {
            AgentMsg::Reaped { leftovers } => Ok(leftovers),
            other => Err(unexpected(other, "Reaped")),
        }
    }

    /// Round-trip time of one `Ping`.
    pub async fn ping(&self) -> Result<Duration, LinkError> {
        match self.request(AgentMsg::Ping).await? {
            (AgentMsg::Pong, rtt) => Ok(rtt),
            (other, _) => Err(unexpected(other, "Pong")),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.dead.is_cancelled()
    }

    /// Resolves when the link dies (EOF, error, missed heartbeats, `close`).
    pub async fn closed(&self) {
        self.inner.dead.cancelled().await
    }

    /// Why the link died, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.inner.reason.get().cloned()
    }

    /// Shut the link down: the agent sees EOF (and kills its commands); pending jobs get
    /// their terminal `Error`.
    pub fn close(&self, reason: &str) {
        self.inner.close(reason.to_string());
    }

    /// Send one request and wait for its single reply (mapped: `Error`/`Refused` → `Err`).
    async fn request(&self, msg: AgentMsg) -> Result<(AgentMsg, Duration), LinkError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.add_route(id, Route::Reply(tx))?;
        let sent = Instant::now();
        if let Err(e) = self.inner.send(id, &msg).await {
            self.inner.remove_route(id);
            return Err(e);
        }
        // A live agent whose request hangs (a stuck mount under ReadFile, say) is not caught
        // by heartbeats: bound every single-reply request.
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| self.inner.closed_error())?,
            Err(_) => {
                self.inner.remove_route(id);
                return Err(LinkError::Timeout(format!(
                    "{} got no reply within {}s",
                    msg.name(),
                    REQUEST_TIMEOUT.as_secs()
                )));
            }
        };
        let rtt = sent.elapsed();
        match reply {
            AgentMsg::Error { message } => Err(LinkError::Agent(message)),
            AgentMsg::Refused { reason } => Err(LinkError::Refused(reason)),
            other => Ok((other, rtt)),
        }
    }
}

fn unexpected(got: AgentMsg, wanted: &str) -> LinkError {
    LinkError::Protocol(format!(
        "the agent answered {} where {wanted} was expected",
        got.name()
    ))
}

/// Send `Kill` for job `id`. The signal is checked here: the agent would answer a bad one with
/// an `Error` that ends the job's event stream while the command keeps running.
async fn kill(link: &AgentLink, id: u64, signal: i32) -> Result<(), LinkError> {
    if !(1..=64).contains(&signal) {
        return Err(LinkError::Protocol(format!(
            "signal {signal} is out of range 1..=64"
        )));
    }
    link.inner.send(id, &AgentMsg::Kill { signal }).await
}

impl Job {
    /// Signal the job's whole process group.
    pub async fn kill(&self, signal: i32) -> Result<(), LinkError> {
        kill(&self.link, self.id, signal).await
    }

    pub fn killer(&self) -> JobKiller {
        JobKiller {
            id: self.id,
            link: self.link.clone(),
        }
    }

    /// The link this job runs on.
    pub fn link(&self) -> &AgentLink {
        &self.link
    }
}

impl JobKiller {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Signal the job's whole process group.
    pub async fn kill(&self, signal: i32) -> Result<(), LinkError> {
        kill(&self.link, self.id, signal).await
    }
}
