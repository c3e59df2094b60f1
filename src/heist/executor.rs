//! How the engine reaches hosts: the [`Executor`] trait. The real implementation,
//! [`super::daemon_exec::DaemonExecutor`], goes through the daemon (agents on the hosts);
//! `local = true` steps run on the operator's machine ([`super::local_run`]).

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::Host;
use crate::model::{Exit, Stream};
use crate::model::{HostError, RunOrigin};

/// One command for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub command: String,
    pub env: Vec<(String, String)>,
    /// The remote side kills the command's process group once this elapses.
    pub timeout: Option<Duration>,
    /// Recorded with the run: which heist run and step it is.
    pub origin: RunOrigin,
    /// Run through sudo as this user (`become`).
    pub sudo_user: Option<String>,
    /// What the command reads on stdin (None: /dev/null).
    pub stdin: Option<StdinData>,
}

/// A step's stdin, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinData {
    Bytes(Vec<u8>),
    /// Streamed from this local file.
    File(std::path::PathBuf),
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Exited(Exit),
    /// No exit status: unreachable, refused, link lost, …
    Failed(HostError),
}

/// Output chunks as they are produced; the engine drains it while the command runs.
pub type OutputSink = mpsc::Sender<(Stream, Vec<u8>)>;

pub trait Executor: Send + Sync + 'static {
    /// Run a command on a host, streaming its output into `sink`.
    fn run(
        &self,
        host: &Host,
        spec: RunSpec,
        sink: OutputSink,
    ) -> impl Future<Output = StepOutcome> + Send;
    /// Copy a file of a host (at most `max_size` bytes) to `to` on this machine, streamed,
    /// checksummed and renamed into place; returns its size. `sudo_user`: read it through
    /// sudo as that user (`become`).
    fn read_file(
        &self,
        host: &Host,
        path: &str,
        to: &std::path::Path,
        max_size: u64,
        origin: RunOrigin,
        sudo_user: Option<String>,
    ) -> impl Future<Output = Result<u64, HostError>> + Send;
    /// Write a file on a host atomically (streamed, checksummed); returns the size written.
    /// `sudo_user`: write it through sudo as that user (`become`).
    fn write_file(
        &self,
        host: &Host,
        path: &str,
        data: PutData,
        mode: u32,
        origin: RunOrigin,
        sudo_user: Option<String>,
    ) -> impl Future<Output = Result<u64, HostError>> + Send;
}

/// What a put step sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutData {
    Bytes(Vec<u8>),
    /// Streamed from this local file.
    File(std::path::PathBuf),
}
