//! The agent's single writer: every frame leaves through here.
//!
//! Two bounded lanes feed it. The control lane (Pong, Info, file replies, errors) is always
//! served first, so a ping is answered at once even while jobs flood output. The data lane
//! carries job frames (Started, Output, Exit) in order; it is small, so when the daemon reads
//! slowly the pumps wait on it, stop reading their pipes, and the commands block on write:
//! memory stays bounded and nothing is dropped.

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::proto::agent::AgentMsg;

/// Frames waiting in the data lane (each at most one 64 KiB output chunk).
const DATA_LANE: usize = 16;
/// Replies waiting in the control lane.
const CONTROL_LANE: usize = 64;
/// Frames written between two flushes when more are ready.
const BATCH: usize = 32;

struct Item {
    frame: Vec<u8>,
    /// Fired once the frame has been written and flushed.
    ack: Option<oneshot::Sender<()>>,
}

/// Cheap handle to the writer; clone one per task.
#[derive(Clone)]
pub(super) struct Outbox {
    control: mpsc::Sender<Item>,
    data: mpsc::Sender<Item>,
}

/// Encode one message as a frame. Only an oversized message can fail; it becomes an `Error`.
pub(super) fn encode(id: u64, msg: &AgentMsg) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = msg.encode_frame(id, &mut out) {
        out.clear();
        let err = AgentMsg::Error {
            message: format!("{} reply cannot be sent: {e}", msg.name()),
        };
        // A short error message always fits in a frame.
        let _ = err.encode_frame(id, &mut out);
    }
    out
}

impl Outbox {
    /// Queue a reply on the priority lane. False when the writer is gone.
    pub async fn control(&self, id: u64, msg: &AgentMsg) -> bool {
        let item = Item {
            frame: encode(id, msg),
            ack: None,
        };
        self.control.send(item).await.is_ok()
    }

    /// Queue an already encoded job frame on the data lane (waits while the lane is full).
    pub async fn data_frame(&self, frame: Vec<u8>) -> bool {
        self.data.send(Item { frame, ack: None }).await.is_ok()
    }

    /// Queue a job message on the data lane.
    pub async fn data(&self, id: u64, msg: &AgentMsg) -> bool {
        self.data_frame(encode(id, msg)).await
    }

    /// Queue a job message and wait until it has been written and flushed.
    pub async fn data_written(&self, id: u64, msg: &AgentMsg) -> bool {
        let (tx, rx) = oneshot::channel();
        let item = Item {
            frame: encode(id, msg),
            ack: Some(tx),
        };
        if self.data.send(item).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }
}

/// Start the writer. `preamble` (sync marker + Hello) is written before anything else. When
/// writing fails, `dead` is cancelled so the agent shuts down.
pub(super) fn spawn<W>(w: W, preamble: Vec<u8>, dead: CancellationToken) -> (Outbox, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (control, control_rx) = mpsc::channel(CONTROL_LANE);
    let (data, data_rx) = mpsc::channel(DATA_LANE);
    let task = tokio::spawn(async move {
        if let Err(e) = write_loop(w, preamble, control_rx, data_rx).await {
            tracing::warn!("agent output closed: {e}");
        }
        dead.cancel();
    });
    (Outbox { control, data }, task)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    w: W,
    preamble: Vec<u8>,
    mut control: mpsc::Receiver<Item>,
    mut data: mpsc::Receiver<Item>,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(128 * 1024, w);
    w.write_all(&preamble).await?;
    w.flush().await?;
    let mut acks = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            Some(item) = control.recv() => item,
            Some(item) = data.recv() => item,
            else => break,
        };
        let mut next = Some(first);
        let mut n = 0;
        while let Some(item) = next.take() {
            w.write_all(&item.frame).await?;
            acks.extend(item.ack);
            n += 1;
            if n < BATCH {
                next = control.try_recv().or_else(|_| data.try_recv()).ok();
            }
        }
        w.flush().await?;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    w.shutdown().await
}
