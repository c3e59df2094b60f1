//! Client ↔ daemon messages, over the daemon's Unix socket.
//!
//! Frames as in [`super::frame`]: kind [`REQUEST`] carries a postcard [`Request`], kind
//! [`EVENT`] a postcard [`Event`]. The frame id is the client's request id; every event
//! answering a request carries that id. Both sides start with `Hello`; a client that finds a
//! daemon of another build asks it to stop and starts its own.

use serde::{Deserialize, Serialize};

use super::agent::{Exit, Info, Stream};
use super::frame::RawFrame;
use crate::inventory::Host;

pub const REQUEST: u16 = 1;
pub const EVENT: u16 = 2;

// A Request only lives between the socket and its handler; `File` carries a whole Host.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello {
        proto: u32,
        build: String,
    },
    /// Fan a command out to hosts. Events for it carry this request's id.
    Run(RunRequest),
    /// Kill one host's job of a run (or every job when `host` is None).
    Kill {
        run_id: u64,
        host: Option<String>,
        signal: i32,
    },
    /// Pool, runs and daemon health.
    Status,
    /// Agent `Info` (facts) for these hosts, connecting when needed.
    Facts {
        hosts: Vec<Host>,
        accept_new_host_keys: bool,
    },
    /// Read or write one file on one host through its agent.
    File {
        host: Host,
        op: FileOp,
        accept_new_host_keys: bool,
    },
    /// Stop the daemon (agents are told to exit; runs in flight are killed).
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub hosts: Vec<Host>,
    /// The selection as the operator typed it (for the audit log and run store).
    pub selection: String,
    pub command: String,
    pub env: Vec<(String, String)>,
    pub timeout_ms: Option<u64>,
    /// Max hosts running at once; None = all.
    pub fanout: Option<u32>,
    pub accept_new_host_keys: bool,
    /// Operator (login name) for the audit log.
    pub who: String,
    /// Free-form label (e.g. `heist deploy/step pull`) recorded with the run.
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    Read {
        path: String,
        max_size: u64,
    },
    Write {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        mode: u32,
    },
}

/// Why a host produced no exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// TCP connect failed (refused, no route, DNS).
    Unreachable,
    /// Connect, handshake or command timeout.
    Timeout,
    /// Host key unknown, changed or revoked.
    Hostkey,
    /// Authentication failed.
    Auth,
    /// The agent refused the job (queue full).
    Refused,
    /// The agent could not be installed or started, or the link broke.
    Agent,
    /// The job was killed on request before it exited.
    Killed,
    /// Anything else (a bug, a protocol error); the message says what.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Hostkey => "hostkey",
            ErrorKind::Auth => "auth",
            ErrorKind::Refused => "refused",
            ErrorKind::Agent => "agent",
            ErrorKind::Killed => "killed",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostEvent {
    /// The command is running; `agentless` marks hosts served without a resident agent.
    Started {
        pid: u32,
        agentless: bool,
    },
    Output {
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Exit(Exit),
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

/// Final verdict of one host in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Failed,
    Timeout,
    Unreachable,
    Killed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// (host, verdict) in the run's host order.
    pub hosts: Vec<(String, Verdict)>,
    /// Directory of this run in the run store.
    pub store_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub name: String,
    pub link_key: String,
    /// connecting, installing, ready, busy, lost, down
    pub state: String,
    pub reason: Option<String>,
    pub agentless: bool,
    pub jobs: u32,
    pub connected_for_s: u64,
    /// Pid of the resident agent on the host (None when not connected or agentless).
    pub agent_pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub build: String,
    pub uptime_s: u64,
    pub rss_kb: u64,
    pub runs_active: u32,
    pub runs_total: u64,
    pub hosts: Vec<HostStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Hello {
        proto: u32,
        build: String,
        pid: u32,
    },
    RunStarted {
        run_id: u64,
        hosts: Vec<String>,
    },
    Host {
        run_id: u64,
        host: String,
        event: HostEvent,
    },
    /// Sent only once every host's result is on disk in the run store.
    RunFinished {
        run_id: u64,
        summary: Summary,
    },
    Status(StatusReport),
    Facts(Vec<(String, Result<Info, String>)>),
    FileDone(Result<FileResult, String>),
    Error {
        message: String,
    },
    Stopping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileResult {
    Read {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        mode: u32,
        sha256: String,
    },
    Written {
        size: u64,
        sha256: String,
    },
}

pub fn encode_request(
    id: u64,
    r: &Request,
    out: &mut Vec<u8>,
) -> Result<(), super::frame::FrameError> {
    let payload = postcard::to_stdvec(r).map_err(|e| std::io::Error::other(e.to_string()))?;
    super::frame::encode_into(out, REQUEST, id, &payload)
}

pub fn encode_event(id: u64, e: &Event, out: &mut Vec<u8>) -> Result<(), super::frame::FrameError> {
    let payload = postcard::to_stdvec(e).map_err(|e| std::io::Error::other(e.to_string()))?;
    super::frame::encode_into(out, EVENT, id, &payload)
}

pub fn decode_request(f: &RawFrame) -> Result<Request, String> {
    if f.kind != REQUEST {
        return Err(format!("expected a request frame, got kind {}", f.kind));
    }
    postcard::from_bytes(&f.payload).map_err(|e| format!("malformed request: {e}"))
}

pub fn decode_event(f: &RawFrame) -> Result<Event, String> {
    if f.kind != EVENT {
        return Err(format!("expected an event frame, got kind {}", f.kind));
    }
    postcard::from_bytes(&f.payload).map_err(|e| format!("malformed event: {e}"))
}
