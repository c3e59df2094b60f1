//! TEMPORARY shim of interface 1 (the agent helper's `daemon::link`), deleted when it lands.
#![allow(dead_code, unused_variables, clippy::unused_async)]
use crate::proto::agent::{AgentMsg, FileData, Info, ReadFile, Run, WriteFile};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct LinkOptions {
    pub expected_build: Option<String>,
    pub handshake_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_misses: u32,
}
#[derive(Debug, Clone)]
pub struct Handshake {
    pub agent_build: String,
    pub agent_pid: u32,
    pub skipped: Vec<u8>,
}
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("agent handshake failed: {0}")]
    Handshake(String),
    #[error("agent link closed: {0}")]
    Closed(String),
    #[error("timed out: {0}")]
    Timeout(String),
}
#[derive(Clone)]
pub struct AgentLink;
pub struct Job {
    pub id: u64,
    pub events: mpsc::Receiver<AgentMsg>,
}
#[derive(Clone)]
pub struct JobKiller;
impl JobKiller {
    pub async fn kill(&self, signal: i32) -> Result<(), LinkError> {
        unimplemented!()
    }
}
impl Job {
    pub fn killer(&self) -> JobKiller {
        JobKiller
    }
}
impl AgentLink {
    pub async fn connect<R, W>(
        r: R,
        w: W,
        opts: LinkOptions,
    ) -> Result<(AgentLink, Handshake), LinkError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        unimplemented!()
    }
    pub async fn start(&self, run: Run) -> Result<Job, LinkError> {
        unimplemented!()
    }
    pub async fn info(&self) -> Result<Info, LinkError> {
        unimplemented!()
    }
    pub async fn read_file(&self, req: ReadFile) -> Result<FileData, LinkError> {
        unimplemented!()
    }
    pub async fn write_file(&self, req: WriteFile) -> Result<(u64, String), LinkError> {
        unimplemented!()
    }
    pub fn is_closed(&self) -> bool {
        unimplemented!()
    }
    pub async fn closed(&self) {
        unimplemented!()
    }
    pub fn close_reason(&self) -> Option<String> {
        unimplemented!()
    }
    pub fn close(&self, reason: &str) {
        unimplemented!()
    }
}
