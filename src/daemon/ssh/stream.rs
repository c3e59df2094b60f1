//! The agent's exec channel as a plain byte reader/writer pair.
//!
//! A russh channel that nobody reads stalls the whole connection (the session loop blocks on
//! the channel's bounded queue, keepalives included), so a reader task always drains it: data
//! goes into an in-memory pipe the link reads; stderr is logged; after the reader side is
//! dropped the rest is read and discarded until the channel closes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Bytes buffered between the channel reader task and the link's reader.
const PIPE_BUFFER: usize = 256 * 1024;
/// Longest agent stderr line kept in the log.
const STDERR_LOG_MAX: usize = 2048;
/// Start of the channel's stderr kept for error messages (why the agent did not start).
const STDERR_KEEP: usize = 2048;

/// What the reader task saw besides stdout: the start of stderr and the exit status, for
/// explaining a channel that ended before the agent spoke.
#[derive(Debug, Default)]
pub(super) struct ChannelEnd {
    pub stderr: Vec<u8>,
    pub exit: Option<u32>,
}

pub(super) type SharedEnd = Arc<Mutex<ChannelEnd>>;

/// The agent's stdout (after the reader task) and stdin (frames to the agent).
pub struct AgentChannel {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Writes go to the channel; dropping (or shutting down) it sends EOF and closes the
/// channel, so the agent sees its stdin end and exits.
struct ChannelWriter {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    half: Option<ChannelWriteHalf<Msg>>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let Some(half) = self.half.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = half.eof().await;
                let _ = half.close().await;
            });
        }
    }
}

/// Split `channel` (an exec of the agent) into an [`AgentChannel`], spawning its reader task.
pub(super) fn agent_channel(
    channel: russh::Channel<Msg>,
    host: String,
) -> (AgentChannel, SharedEnd) {
    let end = SharedEnd::default();
    let end2 = end.clone();
    let (mut rd, wr) = channel.split();
    let writer = ChannelWriter {
        inner: Box::pin(wr.make_writer()),
        half: Some(wr),
    };
    let (mut pipe_in, pipe_out) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        let mut open = true;
        let mut stderr_line = Vec::new();
        while let Some(msg) = rd.wait().await {
            match msg {
                ChannelMsg::Data { data } if open => {
                    open = pipe_in.write_all(&data).await.is_ok();
                    if !open {
                        tracing::debug!("{host}: agent reader dropped; draining channel");
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    if let Ok(mut e) = end2.lock() {
                        let room = STDERR_KEEP.saturating_sub(e.stderr.len());
                        e.stderr.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    log_stderr(&host, &mut stderr_line, &data);
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    if let Ok(mut e) = end2.lock() {
                        e.exit = Some(exit_status);
                    }
                    tracing::debug!("{host}: agent channel exit status {exit_status}");
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    tracing::warn!("{host}: agent killed by signal {signal_name:?}");
                }
                ChannelMsg::Failure => {
                    tracing::warn!("{host}: server refused to exec the agent");
                }
                _ => {}
            }
        }
        if !stderr_line.is_empty() {
            log_stderr(&host, &mut stderr_line, b"\n");
        }
        tracing::debug!("{host}: agent channel closed");
        let _ = pipe_in.shutdown().await;
    });
    let ch = AgentChannel {
        reader: Box::new(pipe_out),
        writer: Box::new(writer),
    };
    (ch, end)
}

/// Log complete agent stderr lines (the agent logs there), bounded in length.
fn log_stderr(host: &str, line: &mut Vec<u8>, data: &[u8]) {
    for &b in data {
        if b == b'\n' {
            tracing::debug!("{host}: agent: {}", String::from_utf8_lossy(line));
            line.clear();
        } else if line.len() < STDERR_LOG_MAX {
            line.push(b);
        }
    }
}
