//! A job's stdin: a pipe the command reads, fed from `Input` frames. The agent grants the
//! daemon `Credit` for each chunk once the pipe has taken it (or once it was dropped because
//! the command no longer reads: its stdin closed, or it exited), so the daemon never has more
//! than its window of input in flight for a job.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use serde_bytes::ByteBuf;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use crate::proto::agent::AgentMsg;

/// What the frame loop hands a job's input writer; the channel closing is the EOF.
pub(super) type InputTx = mpsc::UnboundedSender<ByteBuf>;
pub(super) type InputRx = mpsc::UnboundedReceiver<ByteBuf>;

/// A close-on-exec pipe: (read end for the command, write end for us).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Start the writer of job `id`'s stdin, fed from `rx` (the frame loop holds the sender). It
/// ends (closing the pipe: EOF for the command) when the sender is dropped and everything
/// sent was written, or at once when `done` is cancelled (the job is over).
pub(super) fn start(
    id: u64,
    write_end: OwnedFd,
    rx: InputRx,
    outbox: Outbox,
    done: CancellationToken,
) -> io::Result<()> {
    let tx = pipe::Sender::from_owned_fd(write_end)?;
    tokio::spawn(feed(id, tx, rx, outbox, done));
    Ok(())
}

async fn feed(
    id: u64,
    mut pipe: pipe::Sender,
    mut rx: mpsc::UnboundedReceiver<ByteBuf>,
    outbox: Outbox,
    done: CancellationToken,
) {
    let mut open = true;
    loop {
        let data = tokio::select! {
            d = rx.recv() => d,
            _ = done.cancelled() => return,
        };
        let Some(data) = data else { break };
        if open {
            let wrote = tokio::select! {
                r = pipe.write_all(&data) => r,
                _ = done.cancelled() => return,
            };
            if let Err(e) = wrote {
                // EPIPE: the command closed its stdin or exited; the rest is dropped.
                tracing::debug!("job {id}: its stdin: {e}");
                open = false;
            }
        }
        let bytes = data.len() as u64;
        if bytes > 0 && !outbox.control(id, &AgentMsg::Credit { bytes }).await {
            return;
        }
    }
    // Dropping the pipe is the command's EOF.
    drop(pipe);
}
