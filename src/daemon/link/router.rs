//! The link's tasks: reader (routes frames by id), writer, heartbeat, one forwarder per job;
//! and the link's shutdown.
//!
//! Flow control: the reader never waits for a job's consumer. It appends the job's messages to
//! the job's queue, which the agent cannot overfill: it sends a job's output only within the
//! credit granted for that job (the protocol's initial window plus `Credit` frames). The job's
//! forwarder moves messages from that queue into the job's bounded channel as its consumer
//! reads, and grants the agent as much credit as it forwarded. A consumer that stops reading
//! stops its own job only; an agent that sends past its credit breaks the protocol and loses
//! the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::window::Window;
use super::{LinkError, LinkOptions};
use crate::proto::agent::{decode_owned, AgentMsg, Decoded, INITIAL_WINDOW};
use crate::proto::frame::read_frame;

/// Frames waiting for the writer.
const OUT_QUEUE: usize = 256;

pub(super) enum Route {
    /// A command: every message goes to its forwarder.
    Job(JobRoute),
    /// A single-reply request (info, files, ping).
    Reply(oneshot::Sender<AgentMsg>),
}

pub(super) struct JobRoute {
    queue: mpsc::UnboundedSender<AgentMsg>,
    /// Output bytes the agent may still send for this job.
    budget: u64,
}

#[derive(Default)]
struct Routes {
    closed: bool,
    map: HashMap<u64, Route>,
}

pub(super) struct Inner {
    pub next_id: AtomicU64,
    out: mpsc::Sender<Vec<u8>>,
    routes: Mutex<Routes>,
    pub dead: CancellationToken,
    pub reason: OnceLock<String>,
    tasks: Mutex<Vec<AbortHandle>>,
    epoch: Instant,
    /// Milliseconds since `epoch` at which the last frame arrived.
    last_rx: AtomicU64,
    /// Credit per job: the agent's initial window plus what the link grants up front.
    window: u64,
    /// Send credit the agent grants us, per request (write streams, job input).
    windows: Mutex<HashMap<u64, Arc<Window>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Start the reader, writer and heartbeat tasks of a link that has completed its handshake.
pub(super) fn start<R, W>(r: R, w: W, opts: &LinkOptions) -> Arc<Inner>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let inner = Arc::new(Inner {
        next_id: AtomicU64::new(1),
        out,
        routes: Mutex::new(Routes::default()),
        dead: CancellationToken::new(),
        reason: OnceLock::new(),
        tasks: Mutex::new(Vec::new()),
        epoch: Instant::now(),
        last_rx: AtomicU64::new(0),
        window: opts.job_window.max(INITIAL_WINDOW),
        windows: Mutex::new(HashMap::new()),
    });
    let weak = Arc::downgrade(&inner);
    let reader = tokio::spawn(read_loop(r, weak.clone()));
    let writer = tokio::spawn(write_loop(w, out_rx, weak.clone()));
    let beat = tokio::spawn(heartbeat(
        weak,
        opts.heartbeat_interval,
        opts.heartbeat_misses.max(1),
    ));
    lock(&inner.tasks).extend([
        reader.abort_handle(),
        writer.abort_handle(),
        beat.abort_handle(),
    ]);
    inner
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn closed_error(&self) -> LinkError {
        LinkError::Closed(
            self.reason
                .get()
                .cloned()
                .unwrap_or_else(|| "link closed".into()),
        )
    }

    /// The link's close reason if it died, else `what`.
    pub fn closed_error_or(&self, what: &str) -> LinkError {
        match self.reason.get() {
            Some(r) => LinkError::Closed(r.clone()),
            None => LinkError::Closed(what.to_string()),
        }
    }

    pub fn add_route(&self, id: u64, route: Route) -> Result<(), LinkError> {
        let mut routes = lock(&self.routes);
        if routes.closed {
            return Err(self.closed_error());
        }
        routes.map.insert(id, route);
        Ok(())
    }

    pub fn remove_route(&self, id: u64) {
        lock(&self.routes).map.remove(&id);
        if let Some(w) = lock(&self.windows).remove(&id) {
            w.close();
        }
    }

    /// Send credit for request `id`, starting at `initial` (closed when the request ends).
    pub fn add_window(&self, id: u64, initial: u64) -> Arc<Window> {
        let w = Arc::new(Window::new(initial));
        if self.dead.is_cancelled() {
            w.close();
        }
        lock(&self.windows).insert(id, w.clone());
        w
    }

    /// A `Credit` frame from the agent.
    fn credit_in(&self, id: u64, bytes: u64) {
        if let Some(w) = lock(&self.windows).get(&id) {
            w.grant(bytes);
        }
    }

    /// Queue one already encoded frame for the agent.
    pub async fn send_frame(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        if self.dead.is_cancelled() {
            return Err(self.closed_error());
        }
        self.out.send(frame).await.map_err(|_| self.closed_error())
    }

    /// Route job `id` through a new forwarder into `events`; returns the extra credit to grant
    /// the agent right after `Run` (the link's window beyond the protocol's initial one).
    pub fn add_job(
        self: &Arc<Self>,
        id: u64,
        events: mpsc::Sender<AgentMsg>,
    ) -> Result<u64, LinkError> {
        let (queue, rx) = mpsc::unbounded_channel();
        self.add_route(
            id,
            Route::Job(JobRoute {
                queue,
                budget: self.window,
            }),
        )?;
        tokio::spawn(forward(Arc::downgrade(self), id, rx, events, self.window));
        Ok(self.window - INITIAL_WINDOW)
    }

    /// Let the agent send `bytes` more of job `id`'s output.
    async fn grant(&self, id: u64, bytes: u64) {
        {
            let mut routes = lock(&self.routes);
            let Some(Route::Job(job)) = routes.map.get_mut(&id) else {
                return; // ended meanwhile
            };
            job.budget = job.budget.saturating_add(bytes);
        }
        let _ = self.send(id, &AgentMsg::Credit { bytes }).await;
    }

    /// Queue one message for the agent.
    pub async fn send(&self, id: u64, msg: &AgentMsg) -> Result<(), LinkError> {
        let mut frame = Vec::new();
        msg.encode_frame(id, &mut frame)
            .map_err(|e| LinkError::Protocol(format!("{} request: {e}", msg.name())))?;
        if self.dead.is_cancelled() {
            return Err(self.closed_error());
        }
        self.out.send(frame).await.map_err(|_| self.closed_error())
    }

    /// Declare the link dead (first reason wins): fail every pending request, give every job
    /// its terminal error, stop the tasks.
    pub fn close(&self, reason: String) {
        let pending = {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return;
            }
            routes.closed = true;
            std::mem::take(&mut routes.map)
        };
        tracing::info!("agent link closed: {reason}");
        let _ = self.reason.set(reason.clone());
        // Every job's channel closes once its consumer has drained what arrived: a job whose
        // events end without a terminal message lost its link (see `AgentLink::close_reason`).
        drop(pending);
        for (_, w) in lock(&self.windows).drain() {
            w.close();
        }
        self.dead.cancel();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Hand one message from the agent to whoever waits for request `id`. Never waits.
    fn route(&self, id: u64, msg: AgentMsg) {
        let terminal = msg.is_terminal();
        if terminal {
            if let Some(w) = lock(&self.windows).remove(&id) {
                w.close();
            }
        }
        let mut routes = lock(&self.routes);
        if terminal {
            match routes.map.remove(&id) {
                Some(Route::Job(job)) => {
                    let _ = job.queue.send(msg);
                }
                Some(Route::Reply(tx)) => {
                    let _ = tx.send(msg);
                }
                None if id != 0 => {
                    tracing::debug!("agent sent {} for unknown request {id}", msg.name())
                }
                None => {}
            }
            return;
        }
        let Some(Route::Job(job)) = routes.map.get_mut(&id) else {
            // A job nobody listens to any more (it was granted unlimited credit) or a
            // confused agent.
            tracing::debug!("agent sent {} for no running job {id}", msg.name());
            return;
        };
        let n = msg.counted();
        if n > 0 {
            if n > job.budget {
                let budget = job.budget;
                drop(routes);
                self.close(format!(
                    "the agent sent {n} bytes of request {id}'s data with {budget} bytes of credit"
                ));
                return;
            }
            job.budget -= n;
        }
        if job.queue.send(msg).is_err() {
            routes.map.remove(&id);
        }
    }
}

/// Move job `id`'s messages from the reader's queue into the consumer's bounded channel, and
/// grant the agent credit for what the consumer took in. Ends after the terminal message, when
/// the link dies (the queue closes once drained), or when the consumer goes away (the job then
/// gets unlimited credit, and its output is dropped as it arrives: the agent must not block).
async fn forward(
    link: Weak<Inner>,
    id: u64,
    mut queue: mpsc::UnboundedReceiver<AgentMsg>,
    events: mpsc::Sender<AgentMsg>,
    window: u64,
) {
    let threshold = (window / 2).max(1);
    let mut owed = 0u64;
    let unlimited = |link: &Weak<Inner>| {
        let link = link.clone();
        async move {
            if let Some(inner) = link.upgrade() {
                inner.remove_route(id);
                let _ = inner.send(id, &AgentMsg::Credit { bytes: u64::MAX }).await;
            }
        }
    };
    loop {
        let msg = tokio::select! {
            m = queue.recv() => m,
            () = events.closed() => return unlimited(&link).await,
        };
        let Some(msg) = msg else { return };
        let n = msg.counted();
        let terminal = msg.is_terminal();
        if events.send(msg).await.is_err() {
            if !terminal {
                unlimited(&link).await;
            }
            return;
        }
        if terminal {
            return;
        }
        owed += n;
        // Grant when the consumer has taken in half the window (as OpenSSH does for channel
        // windows): one small frame per half window, and the agent never runs dry while the
        // consumer keeps up.
        if owed >= threshold {
            let Some(inner) = link.upgrade() else { return };
            inner.grant(id, owed).await;
            owed = 0;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(r: R, link: Weak<Inner>) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let reason = loop {
        let frame = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => break "the agent closed its output".to_string(),
            Err(e) if e.is_eof() => break "the agent's output ended mid-frame".to_string(),
            Err(e) => break format!("reading from the agent: {e}"),
        };
        let Some(inner) = link.upgrade() else { return };
        inner.last_rx.store(inner.now_ms(), Ordering::Relaxed);
        match decode_owned(frame) {
            Decoded::Msg {
                id,
                msg: AgentMsg::Ping,
            } => {
                let _ = inner.send(id, &AgentMsg::Pong).await;
            }
            Decoded::Msg {
                msg: AgentMsg::Hello(_) | AgentMsg::Pong,
                id: 0,
            } => {}
            Decoded::Msg {
                id,
                msg: AgentMsg::Credit { bytes },
            } => inner.credit_in(id, bytes),
            Decoded::Msg { id, msg } => inner.route(id, msg),
            Decoded::Invalid { id, kind, reason } => {
                tracing::warn!("malformed frame from the agent (kind {kind}, id {id}): {reason}");
                let message = format!("malformed reply from the agent (kind {kind}): {reason}");
                inner.route(id, AgentMsg::Error { message });
            }
        }
    };
    if let Some(inner) = link.upgrade() {
        inner.close(reason);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    link: Weak<Inner>,
) {
    // Frames ready together go out in one write; the batch buffer is reused, and shrunk after
    // a large batch so an idle link holds little memory (hundreds of links live in a daemon).
    let mut batch: Vec<u8> = Vec::new();
    let result: std::io::Result<()> = async {
        while let Some(frame) = rx.recv().await {
            if rx.is_empty() {
                w.write_all(&frame).await?;
            } else {
                batch.extend_from_slice(&frame);
                while batch.len() < 256 * 1024 {
                    let Ok(frame) = rx.try_recv() else { break };
                    batch.extend_from_slice(&frame);
                }
                w.write_all(&batch).await?;
                batch.clear();
                batch.shrink_to(16 * 1024);
            }
            w.flush().await?;
        }
        Ok(())
    }
    .await;
    if let (Err(e), Some(inner)) = (result, link.upgrade()) {
        inner.close(format!("writing to the agent: {e}"));
    }
}

async fn heartbeat(link: Weak<Inner>, every: Duration, max_misses: u32) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut misses = 0;
    let mut sent_at: Option<u64> = None;
    loop {
        ticker.tick().await;
        let Some(inner) = link.upgrade() else { return };
        if inner.dead.is_cancelled() {
            return;
        }
        if let Some(t) = sent_at {
            let alive = inner.last_rx.load(Ordering::Relaxed) >= t;
            if alive {
                misses = 0;
            } else {
                misses += 1;
                if misses >= max_misses {
                    inner.close(format!(
                        "the agent missed {misses} heartbeats ({every:?} apart)"
                    ));
                    return;
                }
            }
        }
        sent_at = Some(inner.now_ms());
        let mut frame = Vec::new();
        if AgentMsg::Ping.encode_frame(0, &mut frame).is_ok() {
            // A full queue means the agent is not reading: that counts as a miss next tick.
            let _ = inner.out.try_send(frame);
        }
    }
}
