//! The agent's frame loop: read a request, answer or start a task, keep serving.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::credit::Credit;
use super::input::InputTx;
use super::jobdir::JobDirs;
use super::keeper::Keeper;
use super::outbox::{self, Outbox};
use super::shell::Shell;
use super::transfer::{self, PutItem, StreamSlot};
use super::{exec, files, info, leftovers, AgentOptions};
use crate::proto::agent::{decode, AgentMsg, Decoded, Hello, INITIAL_WINDOW, SYNC_MARKER};
use crate::proto::frame::{RawFrame, HEADER, MAX_FRAME};
use crate::proto::PROTO_VERSION;

/// How long jobs get to report their `Exit` once the agent shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running (or about to run) command, for `Kill` and `Credit`.
#[derive(Debug)]
pub(super) struct JobSlot {
    /// Process group of the command, once spawned.
    pub pgid: Option<i32>,
    /// A signal that arrived before the command was spawned.
    pub pending: Option<i32>,
    /// The command has exited and is being reported; signals are ignored.
    pub finished: bool,
    /// Output bytes the job may still send.
    pub credit: Arc<Credit>,
    /// The writer of the job's stdin (`Run` with `stdin`); dropped at `InputEnd`.
    pub input: Option<InputTx>,
}

impl Default for JobSlot {
    fn default() -> Self {
        JobSlot {
            pgid: None,
            pending: None,
            finished: false,
            credit: Arc::new(Credit::new(INITIAL_WINDOW)),
            input: None,
        }
    }
}

/// State shared by the frame loop and its tasks.
pub(super) struct Shared {
    pub opts: AgentOptions,
    /// Made on the first job (bash lookup, environment), not at start.
    shell: OnceLock<Shell>,
    pub dirs: JobDirs,
    pub jobs: Mutex<HashMap<u64, JobSlot>>,
    /// File streams in flight (see `transfer`).
    pub streams: Mutex<HashMap<u64, StreamSlot>>,
    pub permits: Arc<Semaphore>,
    /// Kills the jobs' groups should this process die without doing so (`crew agent` only).
    pub keeper: Option<Keeper>,
}

impl Shared {
    pub fn shell(&self) -> &Shell {
        self.shell.get_or_init(Shell::new)
    }

    pub fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, JobSlot>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, StreamSlot>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register file stream `id`; false when a job or another stream already has that id.
    fn claim_stream(&self, id: u64, slot: StreamSlot) -> bool {
        let is_job = self.jobs().contains_key(&id);
        let mut streams = self.streams();
        if is_job || streams.contains_key(&id) {
            return false;
        }
        streams.insert(id, slot);
        true
    }

    /// Cancel file stream `id` (`Kill`); false if there is none.
    fn cancel_stream(&self, id: u64) -> bool {
        let Some(slot) = self.streams().remove(&id) else {
            return false;
        };
        slot.cancel.cancel();
        if let Some(put) = slot.put {
            let _ = put.send(PutItem::Abort);
        }
        true
    }

    /// Signal the process group of job `id`; false if no such job is running.
    fn signal(&self, id: u64, signal: i32) -> bool {
        let mut jobs = self.jobs();
        let Some(slot) = jobs.get_mut(&id) else {
            return false;
        };
        match slot.pgid {
            Some(pgid) => exec::signal_group(pgid, signal),
            None if slot.finished => {}
            None => slot.pending = Some(signal),
        }
        true
    }

    /// KILL every job's process group and cancel every file stream (shutdown).
    fn kill_all(&self) {
        let ids: Vec<u64> = self.streams().keys().copied().collect();
        for id in ids {
            self.cancel_stream(id);
        }
        for slot in self.jobs().values_mut() {
            match slot.pgid {
                Some(pgid) => exec::signal_group(pgid, libc::SIGKILL),
                None if slot.finished => {}
                None => slot.pending = Some(libc::SIGKILL),
            }
        }
    }
}

/// Serve the agent protocol: write the sync marker and `Hello`, then answer request frames from
/// `r` on `w` until `r` reaches EOF (or `w` fails). On the way out every running command's
/// process group is killed.
pub async fn serve<R, W>(r: R, w: W, opts: AgentOptions) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_kept(r, w, opts, None).await
}

/// [`serve`], telling `keeper` (when there is one) each job's process group.
pub(super) async fn serve_kept<R, W>(
    r: R,
    w: W,
    opts: AgentOptions,
    keeper: Option<Keeper>,
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut preamble = SYNC_MARKER.to_vec();
    let hello = AgentMsg::Hello(Hello {
        proto: PROTO_VERSION,
        build: opts.build.clone(),
        pid: std::process::id(),
    });
    preamble.extend(outbox::encode(0, &hello));
    let dead = CancellationToken::new();
    let (outbox, writer) = outbox::spawn(w, preamble, dead.clone());
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(opts.max_jobs)),
        shell: OnceLock::new(),
        dirs: JobDirs::new(opts.tmp_root.clone().unwrap_or_else(std::env::temp_dir)),
        opts,
        jobs: Mutex::new(HashMap::new()),
        streams: Mutex::new(HashMap::new()),
        keeper,
    });
    let tasks = TaskTracker::new();
    // Requests are small; a large WriteFile payload bypasses the buffer (read_exact into its
    // own Vec).
    let mut r = BufReader::with_capacity(16 * 1024, r);
    let end = loop {
        let next = tokio::select! {
            _ = dead.cancelled() => break "output closed".to_string(),
            next = next_frame(&mut r) => next,
        };
        match next {
            Ok(None) => break "input closed".to_string(),
            Err(e) => break format!("input failed: {e}"),
            Ok(Some(Err((id, reason)))) => {
                let _ = outbox
                    .control(id, &AgentMsg::Error { message: reason })
                    .await;
            }
            Ok(Some(Ok(frame))) => dispatch(&frame, &shared, &outbox, &tasks).await,
        }
    };
    tracing::info!("agent stopping: {end}");
    shared.kill_all();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("jobs did not finish within {SHUTDOWN_GRACE:?} of shutdown");
    }
    shared.dirs.remove_all();
    drop(outbox);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    Ok(())
}

/// One frame off the wire. `Ok(None)` at a clean EOF; `Some(Err((id, reason)))` for a frame
/// that was skipped whole (bad length) so the stream stays in sync.
async fn next_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<Result<RawFrame, (u64, String)>>> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len < HEADER {
        skip(r, len as u64).await?;
        return Ok(Some(Err((
            0,
            format!("frame length {len} is shorter than the {HEADER}-byte header"),
        ))));
    }
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head).await?;
    let kind = u16::from_be_bytes([head[0], head[1]]);
    let mut id_bytes = [0u8; 8];
    id_bytes.copy_from_slice(&head[2..]);
    let id = u64::from_be_bytes(id_bytes);
    let rest = len - HEADER;
    if len > MAX_FRAME {
        skip(r, rest as u64).await?;
        return Ok(Some(Err((
            id,
            format!("frame of {len} bytes (kind {kind}) exceeds the {MAX_FRAME}-byte limit"),
        ))));
    }
    let mut payload = vec![0u8; rest];
    r.read_exact(&mut payload).await?;
    Ok(Some(Ok(RawFrame { kind, id, payload })))
}

/// Read and discard exactly `n` bytes.
async fn skip<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

async fn dispatch(frame: &RawFrame, shared: &Arc<Shared>, outbox: &Outbox, tasks: &TaskTracker) {
    let (id, msg) = match decode(frame) {
        Decoded::Msg { id, msg } => (id, msg),
        Decoded::Invalid { id, kind, reason } => {
            let message = format!("bad frame of kind {kind}: {reason}");
            let _ = outbox.control(id, &AgentMsg::Error { message }).await;
            return;
        }
    };
    let reply = |m: AgentMsg| async move {
        let _ = outbox.control(id, &m).await;
    };
    match msg {
        AgentMsg::Ping => reply(AgentMsg::Pong).await,
        AgentMsg::Hello(_) | AgentMsg::Pong => {}
        AgentMsg::Kill { signal } => {
            if !(1..=64).contains(&signal) {
                let message = format!("signal {signal} is out of range 1..=64");
                reply(AgentMsg::Error { message }).await;
            } else if !shared.signal(id, signal) && !shared.cancel_stream(id) {
                let message = format!("no running job {id}");
                reply(AgentMsg::Error { message }).await;
            }
        }
        AgentMsg::Credit { bytes } => {
            // A grant for a job that has ended meanwhile is normal: ignore it.
            let job = shared.jobs().get(&id).map(|s| Arc::clone(&s.credit));
            let credit = job.or_else(|| shared.streams().get(&id).and_then(|s| s.credit.clone()));
            if let Some(c) = credit {
                c.grant(bytes);
            }
        }
        AgentMsg::Input { data } => {
            // Input for a job that has ended (or whose stdin is closed) is dropped.
            if let Some(tx) = shared.jobs().get(&id).and_then(|s| s.input.as_ref()) {
                let _ = tx.send(data);
            }
        }
        AgentMsg::InputEnd => {
            if let Some(slot) = shared.jobs().get_mut(&id) {
                slot.input = None;
            }
        }
        AgentMsg::PutData { data } => {
            // Data for a stream that has already failed (and answered) is dropped.
            if let Some(tx) = shared.streams().get(&id).and_then(|s| s.put.as_ref()) {
                let _ = tx.send(PutItem::Data(data));
            }
        }
        AgentMsg::PutEnd { sha256 } => {
            if let Some(tx) = shared.streams().remove(&id).and_then(|s| s.put) {
                let _ = tx.send(PutItem::End(sha256));
            }
        }
        AgentMsg::PutOpen(open) => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let slot = StreamSlot {
                put: Some(tx),
                credit: None,
                cancel: CancellationToken::new(),
            };
            if !shared.claim_stream(id, slot) {
                let message = format!("request id {id} is already in use");
                return reply(AgentMsg::Error { message }).await;
            }
            let (shared, outbox) = (Arc::clone(shared), outbox.clone());
            tasks.spawn(async move {
                let m = transfer::put(id, open, rx, &outbox).await;
                shared.streams().remove(&id);
                let _ = outbox.control(id, &m).await;
                drop(permit);
            });
        }
        AgentMsg::GetOpen(_) | AgentMsg::List { .. } => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let credit = Arc::new(Credit::new(INITIAL_WINDOW));
            let cancel = CancellationToken::new();
            let slot = StreamSlot {
                put: None,
                credit: Some(credit.clone()),
                cancel: cancel.clone(),
            };
            if !shared.claim_stream(id, slot) {
                let message = format!("request id {id} is already in use");
                return reply(AgentMsg::Error { message }).await;
            }
            let (shared, outbox) = (Arc::clone(shared), outbox.clone());
            tasks.spawn(async move {
                match msg {
                    AgentMsg::GetOpen(req) => {
                        transfer::get(id, req, &credit, &cancel, &outbox).await
                    }
                    AgentMsg::List { path } => transfer::list(id, path, &cancel, &outbox).await,
                    _ => {}
                }
                shared.streams().remove(&id);
                drop(permit);
            });
        }
        AgentMsg::Stat(_) | AgentMsg::PutDir(_) | AgentMsg::PutLink(_) => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let outbox = outbox.clone();
            tasks.spawn(async move {
                let m = match msg {
                    AgentMsg::Stat(req) => transfer::stat(req).await,
                    AgentMsg::PutDir(req) => transfer::put_dir(req).await,
                    AgentMsg::PutLink(req) => transfer::put_link(req).await,
                    other => AgentMsg::Error {
                        message: format!("{} is not a file request", other.name()),
                    },
                };
                let _ = outbox.control(id, &m).await;
                drop(permit);
            });
        }
        AgentMsg::Run(run) => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            // The stdin channel exists from now on: `Input` frames that follow the `Run` at
            // once are queued, not lost, while the command is being started.
            let (input_tx, input_rx) = match run.stdin {
                true => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    (Some(tx), Some(rx))
                }
                false => (None, None),
            };
            let fresh = {
                let mut jobs = shared.jobs();
                let fresh = !jobs.contains_key(&id);
                if fresh {
                    jobs.insert(
                        id,
                        JobSlot {
                            input: input_tx,
                            ..JobSlot::default()
                        },
                    );
                }
                fresh
            };
            if !fresh {
                let message = format!("job id {id} is already running");
                return reply(AgentMsg::Error { message }).await;
            }
            let (shared, outbox) = (Arc::clone(shared), outbox.clone());
            tasks.spawn(async move {
                exec::run_job(id, run, input_rx, &shared, &outbox).await;
                drop(permit);
            });
        }
        AgentMsg::InfoRequest => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let outbox = outbox.clone();
            tasks.spawn(async move {
                let info = info::gather().await;
                let _ = outbox.control(id, &AgentMsg::Info(info)).await;
                drop(permit);
            });
        }
        AgentMsg::ReadFile(req) => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let outbox = outbox.clone();
            tasks.spawn(async move {
                let m = files::read(req).await;
                let _ = outbox.control(id, &m).await;
                drop(permit);
            });
        }
        AgentMsg::Reap => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let (shared, outbox) = (Arc::clone(shared), outbox.clone());
            tasks.spawn(async move {
                let root = shared.dirs.root().to_path_buf();
                let own = shared.dirs.own();
                let found =
                    tokio::task::spawn_blocking(move || leftovers::reap(&root, own.as_deref()))
                        .await
                        .unwrap_or_else(|e| Err(io::Error::other(e)));
                let m = match found {
                    Ok(leftovers) => AgentMsg::Reaped { leftovers },
                    Err(e) => AgentMsg::Error {
                        message: format!("looking for leftovers: {e}"),
                    },
                };
                let _ = outbox.control(id, &m).await;
                drop(permit);
            });
        }
        AgentMsg::WriteFile(req) => {
            let Some(permit) = admit(shared, outbox, id).await else {
                return;
            };
            let outbox = outbox.clone();
            tasks.spawn(async move {
                let m = files::write(req).await;
                let _ = outbox.control(id, &m).await;
                drop(permit);
            });
        }
        other => {
            let message = format!("{} is not a request the agent accepts", other.name());
            reply(AgentMsg::Error { message }).await;
        }
    }
}

/// A slot for one more request, or a `Refused` reply when the agent is at its limit.
async fn admit(shared: &Shared, outbox: &Outbox, id: u64) -> Option<OwnedSemaphorePermit> {
    match Arc::clone(&shared.permits).try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            let reason = format!(
                "agent is at its limit of {} requests in flight",
                shared.opts.max_jobs
            );
            let _ = outbox.control(id, &AgentMsg::Refused { reason }).await;
            None
        }
    }
}
