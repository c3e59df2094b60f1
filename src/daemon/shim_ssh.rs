//! TEMPORARY shim of interface 2 (the ssh helper's `daemon::ssh`), deleted when it lands.
#![allow(dead_code, unused_variables, clippy::unused_async)]
use crate::inventory::Host;
use crate::proto::agent::{AgentMsg, Run};
use crate::proto::daemon::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};

pub struct SshOptions {
    pub accept_new_host_keys: bool,
    pub handshakes: Arc<Semaphore>,
    pub keepalive: Duration,
    pub agent_exe: PathBuf,
    pub agent_build: String,
}
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("agent unavailable: {0}")]
    AgentUnavailable(String),
    #[error("{0}")]
    Unreachable(String),
}
impl SshError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Agent
    }
}
pub struct SshSession;
pub struct AgentChannel {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
}
pub struct AgentlessJob {
    pub events: mpsc::Receiver<AgentMsg>,
}
#[derive(Clone)]
pub struct AgentlessKiller;
impl AgentlessKiller {
    pub fn kill(&self, signal: i32) -> Result<(), SshError> {
        unimplemented!()
    }
}
impl AgentlessJob {
    pub fn killer(&self) -> AgentlessKiller {
        AgentlessKiller
    }
}
pub async fn connect(host: &Host, opts: &SshOptions) -> Result<SshSession, SshError> {
    unimplemented!()
}
impl SshSession {
    pub async fn start_agent(&self, opts: &SshOptions) -> Result<AgentChannel, SshError> {
        unimplemented!()
    }
    pub async fn exec(&self, run: Run) -> Result<AgentlessJob, SshError> {
        unimplemented!()
    }
    pub async fn disconnect(&self) {}
    pub fn is_closed(&self) -> bool {
        unimplemented!()
    }
}
