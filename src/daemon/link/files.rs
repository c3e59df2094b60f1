//! File streams and job input on a link (see [`crate::proto::files`]): the daemon's side of
//! `Stat`, write streams (sent within the agent's credit), `PutDir`, `PutLink`, read streams
//! and listings (credited like output), and a job's stdin.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use super::router::Route;
use super::window::Window;
use super::{unexpected, AgentLink, Job, LinkError};
use crate::proto::agent::AgentMsg;
use crate::proto::files::{
    FileStat, GetOpen, PutDir, PutLink, PutOpen, Stat, DATA_CHUNK, PUT_WINDOW,
};
use crate::proto::frame;

/// Encode a raw-payload message (`PutData`, `Input`) as one frame: one copy of the bytes.
fn data_frame(kind_of: &AgentMsg, id: u64, data: &[u8]) -> Result<Vec<u8>, LinkError> {
    let kind = kind_of.encode().0;
    let h = frame::header(kind, id, data.len())
        .map_err(|e| LinkError::Protocol(format!("{} frame: {e}", kind_of.name())))?;
    let mut f = Vec::with_capacity(h.len() + data.len());
    f.extend_from_slice(&h);
    f.extend_from_slice(data);
    Ok(f)
}

/// Send `data` as `kind` frames of at most [`DATA_CHUNK`] bytes, each within `window`.
async fn send_within(
    link: &AgentLink,
    window: &Window,
    kind: &AgentMsg,
    id: u64,
    mut data: &[u8],
) -> Result<(), LinkError> {
    while !data.is_empty() {
        let want = data.len().min(DATA_CHUNK) as u64;
        let Some(n) = window.take(want).await else {
            return Err(link.inner.closed_error_or("the request ended"));
        };
        let (now, rest) = data.split_at(n as usize);
        link.inner.send_frame(data_frame(kind, id, now)?).await?;
        data = rest;
    }
    Ok(())
}

/// A write stream in flight: `send` its bytes, then `finish` with their sha256.
pub struct PutStream {
    id: u64,
    link: AgentLink,
    window: Arc<Window>,
    reply: oneshot::Receiver<AgentMsg>,
}

/// The writer of a job's stdin.
#[derive(Clone)]
pub struct JobInput {
    id: u64,
    link: AgentLink,
    window: Arc<Window>,
}

impl AgentLink {
    /// `stat` (`follow`) or `lstat` a path on the host; None when nothing is there.
    pub async fn stat(&self, path: &str, follow: bool) -> Result<Option<FileStat>, LinkError> {
        let req = AgentMsg::Stat(Stat {
            path: path.to_string(),
            follow,
        });
        match self.request(req).await?.0 {
            AgentMsg::Stated(s) => Ok(s),
            other => Err(unexpected(other, "Stated")),
        }
    }

    /// Make a directory (if missing) and set its metadata.
    pub async fn put_dir(&self, req: PutDir) -> Result<(), LinkError> {
        match self.request(AgentMsg::PutDir(req)).await?.0 {
            AgentMsg::FileWritten { .. } => Ok(()),
            other => Err(unexpected(other, "FileWritten")),
        }
    }

    /// Make a symlink, atomically replacing what is there.
    pub async fn put_link(&self, req: PutLink) -> Result<(), LinkError> {
        match self.request(AgentMsg::PutLink(req)).await?.0 {
            AgentMsg::FileWritten { .. } => Ok(()),
            other => Err(unexpected(other, "FileWritten")),
        }
    }

    /// Open a write stream. The agent's answer (an early `Error`, or the final
    /// `FileWritten`) comes through [`PutStream::finish`] or fails a `send`.
    pub async fn put_open(&self, open: PutOpen) -> Result<PutStream, LinkError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.add_route(id, Route::Reply(tx))?;
        let window = self.inner.add_window(id, PUT_WINDOW);
        if let Err(e) = self.inner.send(id, &AgentMsg::PutOpen(open)).await {
            self.inner.remove_route(id);
            return Err(e);
        }
        Ok(PutStream {
            id,
            link: self.clone(),
            window,
            reply: rx,
        })
    }

    /// Open a read stream: its events are `GetHead`, `GetData`…, then `GetEnd` or `Error`.
    pub async fn get(&self, path: &str) -> Result<Job, LinkError> {
        let msg = AgentMsg::GetOpen(GetOpen {
            path: path.to_string(),
        });
        self.open_job(msg, None, super::READ_QUEUE).await
    }

    /// List a tree: `Listing`… then `ListEnd` or `Error`.
    pub async fn list(&self, path: &str) -> Result<Job, LinkError> {
        let msg = AgentMsg::List {
            path: path.to_string(),
        };
        self.open_job(msg, None, super::READ_QUEUE).await
    }
}

impl PutStream {
    /// The agent's early answer, if one came (an error: the stream is over).
    fn early(&mut self) -> Option<LinkError> {
        match self.reply.try_recv() {
            Ok(AgentMsg::Error { message }) => Some(LinkError::Agent(message)),
            Ok(AgentMsg::Refused { reason }) => Some(LinkError::Refused(reason)),
            Ok(other) => Some(unexpected(other, "Error")),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(self.link.inner.closed_error()),
        }
    }

    /// Send the next bytes of the file, waiting for the agent's credit.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), LinkError> {
        if let Some(e) = self.early() {
            return Err(e);
        }
        let kind = AgentMsg::PutData {
            data: ByteBuf::new(),
        };
        let r = send_within(&self.link, &self.window, &kind, self.id, data).await;
        if r.is_err() {
            if let Some(e) = self.early() {
                return Err(e);
            }
        }
        r
    }

    /// Everything was sent: the agent checks `sha256`, fsyncs and renames. Returns the size
    /// and sha256 it wrote.
    pub async fn finish(mut self, sha256: String) -> Result<(u64, String), LinkError> {
        if let Some(e) = self.early() {
            return Err(e);
        }
        self.link
            .inner
            .send(self.id, &AgentMsg::PutEnd { sha256 })
            .await?;
        // No timeout: a large fsync may take a while; a dead agent ends the link (heartbeats).
        match (&mut self.reply).await {
            Ok(AgentMsg::FileWritten { size, sha256 }) => Ok((size, sha256)),
            Ok(AgentMsg::Error { message }) => Err(LinkError::Agent(message)),
            Ok(AgentMsg::Refused { reason }) => Err(LinkError::Refused(reason)),
            Ok(other) => Err(unexpected(other, "FileWritten")),
            Err(_) => Err(self.link.inner.closed_error()),
        }
    }

    /// Abandon the stream: the agent removes its temp file.
    pub async fn abort(self) {
        let _ = self
            .link
            .inner
            .send(self.id, &AgentMsg::Kill { signal: 9 })
            .await;
        self.link.inner.remove_route(self.id);
    }
}

impl Job {
    /// The writer of this job's stdin (None unless it was started with `stdin`).
    pub fn input(&self) -> Option<JobInput> {
        self.input.as_ref().map(|w| JobInput {
            id: self.id,
            link: self.link.clone(),
            window: w.clone(),
        })
    }
}

impl JobInput {
    /// Send bytes to the job's stdin, waiting for the agent's credit. Fails once the job
    /// has ended.
    pub async fn send(&self, data: &[u8]) -> Result<(), LinkError> {
        let kind = AgentMsg::Input {
            data: ByteBuf::new(),
        };
        send_within(&self.link, &self.window, &kind, self.id, data).await
    }

    /// Close the job's stdin.
    pub async fn end(&self) -> Result<(), LinkError> {
        if self.window.is_closed() {
            return Ok(());
        }
        self.link.inner.send(self.id, &AgentMsg::InputEnd).await
    }
}
