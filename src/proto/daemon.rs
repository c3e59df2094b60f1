//! Client ↔ daemon messages: the one client protocol, over the daemon's Unix socket (and over
//! TLS for remote clients).
//!
//! Frames as in [`super::frame`]: kind [`REQUEST`] carries a postcard [`Request`], kind
//! [`EVENT`] a postcard [`Event`]. The frame id is the client's request id; every event
//! answering a request carries that id, and [`Event::is_final`] says which one ends its
//! stream. Both sides start with `Hello`; a client that finds a daemon of another build asks
//! it to stop and starts its own.
//!
//! Runs and heists belong to the daemon: a client submits one and follows it, or attaches to
//! one later; a client that goes away stops nothing. Heist events travel as their JSON (the
//! same text `crew heist run --json` prints), so this layer needs no heist types.

use serde::{Deserialize, Serialize};

use super::frame::RawFrame;
use crate::model::{
    ErrorKind, Exit, Host, HostError, Info, RunOrigin, Secret, Stream, Sudo, Verdict,
};

pub const REQUEST: u16 = 1;
/// The `Upgrade:` protocol of `GET /api/v1/connect`: this protocol over the API's TLS.
pub const UPGRADE: &str = "crew-v1";
pub const EVENT: u16 = 2;

// A Request only lives between the socket and its handler; `File` carries a whole Host.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello {
        proto: u32,
        build: String,
        /// The operator's own name, where the daemon asks for one (`identify = true`).
        operator: Option<String>,
    },
    /// Fan a command out to hosts and follow it (RunStarted, Host…, RunFinished).
    Run(RunRequest),
    /// Start a heist in the daemon and follow it (Accepted, Heist…, HeistDone), or only
    /// start it (`detach`: Accepted).
    Heist(HeistRequest),
    /// Runs and heists in flight and recent ones.
    Runs,
    /// Follow a run or heist from its beginning: what already happened, then live.
    Attach { run: String },
    /// Answer a heist's `ask` (`choice`: advance, retry, rollback, abort).
    Answer {
        run: String,
        ask_id: u64,
        choice: String,
    },
    /// An interactive shell (or `command`) on a host, with a PTY, over the pooled connection.
    /// Its output comes back as `ShellOutput` events on this request, then `ShellExit`.
    Shell(ShellRequest),
    /// Keystrokes for the shell opened by request `shell` (its request id) on this connection.
    ShellInput {
        shell: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The operator's terminal changed size.
    ShellResize { shell: u64, cols: u16, rows: u16 },
    /// No more input (stdin ended).
    ShellEof { shell: u64 },
    /// Answer a run's or heist's question about unknown host keys (`Event::HostKeys`): the
    /// groups accepted, by index; none accepted refuses them all. `run`: the run's id (its
    /// number) or the heist's.
    AnswerHostKeys {
        run: String,
        ask_id: u64,
        accept: Vec<u32>,
    },
    /// Stop a heist as Ctrl-C does (nothing more starts; the steps in flight get TERM, then
    /// KILL 3 s later), or at once with KILL (`kill`, a second Ctrl-C). For a plain run: the
    /// same to its jobs.
    Interrupt { run: String, kill: bool },
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
    /// Copy files to or from hosts (`crew put`, `crew fetch`, heist put/fetch steps): a run
    /// like a command's (RunStarted, Host…, RunFinished), with `Progress` events.
    Transfer(TransferRequest),
    /// Bytes for the stdin of a run's jobs: every host's (`hosts` None) or those named;
    /// `eof` closes their stdin after `data`. Waits while a job's input is full (send it on
    /// a connection of its own when the bytes may be many).
    Input {
        run_id: u64,
        hosts: Option<Vec<String>>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        eof: bool,
    },
}

/// A copy to or from hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub hosts: Vec<Host>,
    /// The selection as the operator typed it (audit log, run store).
    pub selection: String,
    pub op: TransferOp,
    /// Max hosts at once; None = all.
    pub fanout: Option<u32>,
    pub accept_new_host_keys: bool,
    /// Filled in by the daemon from the connection.
    pub who: String,
    pub origin: RunOrigin,
    /// An operator is at the client: unknown host keys are asked about, as for a run.
    #[serde(default)]
    pub ask_host_keys: bool,
    /// Copy through sudo as this user (the host's privileged agent for that user, as for
    /// `crew run --sudo`). Its password is never logged, stored or audited.
    #[serde(default)]
    pub sudo: Option<Sudo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferOp {
    /// Local files (or directories, `recursive`) to `remote` on every host: into it when it
    /// is a directory there (or ends with `/`, or there are several sources), else as it.
    /// `exact`: `remote` is the target path itself (one source).
    Put {
        sources: Vec<PutSource>,
        remote: String,
        recursive: bool,
        /// Mode for the copies (else each source's own).
        mode: Option<u32>,
        exact: bool,
    },
    /// Files (or trees, `recursive`) from every host into `local_dir/<host>/<path>`.
    Fetch {
        remotes: Vec<String>,
        local_dir: std::path::PathBuf,
        recursive: bool,
    },
    /// One file from one host to exactly `local` (a heist's fetch step).
    FetchTo {
        remote: String,
        local: std::path::PathBuf,
        max_size: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutSource {
    /// An absolute path on the daemon's machine.
    Path(std::path::PathBuf),
    /// Bytes given in the request (a heist's `content`), with the name they go by.
    Content {
        name: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
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
    /// What started the run (a command, a heist step), recorded with it.
    pub origin: RunOrigin,
    /// Give every job a stdin pipe fed by `Request::Input` (else /dev/null).
    pub stdin: bool,
    /// An operator is at the client: hosts whose keys are unknown wait, and the client gets
    /// one question about them (`Event::HostKeys`) instead of their refusal.
    #[serde(default)]
    pub ask_host_keys: bool,
    /// Run through sudo as this user (a privileged agent started once per host and user,
    /// then reused). Its password is never logged, stored or audited.
    pub sudo: Option<Sudo>,
}

impl Request {
    /// The request as a remote client sends it: a heist names no file on this machine (the
    /// daemon uses its own inventory and heists).
    pub fn for_remote(self) -> Request {
        match self {
            Request::Heist(mut h) => {
                h.inventory = None;
                h.file = None;
                Request::Heist(h)
            }
            other => other,
        }
    }
}

/// Start a heist by name, as `crew heist run` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeistRequest {
    pub name: String,
    pub profile: Option<String>,
    /// `--set k=v`, in order.
    pub vars: Vec<(String, String)>,
    /// The hosts.toml to use (None: the daemon's own); heists are looked for beside it.
    pub inventory: Option<std::path::PathBuf>,
    /// `--file`: the heist file (else the heists beside the inventory).
    pub file: Option<std::path::PathBuf>,
    pub accept_new_host_keys: bool,
    /// Start it and answer with its id only.
    pub detach: bool,
    /// The answer to sudo's prompt for the heist's `become` steps (never logged, stored or
    /// audited; dropped with the heist).
    pub sudo_password: Option<Secret>,
    /// An operator follows the heist: hosts whose keys are unknown wait, and the heist asks
    /// one question about them (`Event::HostKeys` in its events) instead of refusing them.
    #[serde(default)]
    pub ask_host_keys: bool,
}

/// An interactive session on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellRequest {
    pub host: Host,
    /// `TERM` for the remote side.
    pub term: String,
    pub cols: u16,
    pub rows: u16,
    /// Run this instead of a login shell (`crew shell HOST -- COMMAND`).
    pub command: Option<String>,
    pub accept_new_host_keys: bool,
}

/// What a run or heist is, for `crew runs` and the console's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `42` for a run, `<ms>-<name>` for a heist.
    pub id: String,
    pub kind: RunKind,
    /// The command, or the heist's name (and profile).
    pub what: String,
    pub who: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub state: RunState,
    pub hosts: u32,
    /// Hosts done so far, by verdict.
    pub verdicts: Vec<(Verdict, u32)>,
    /// Asks waiting for an answer.
    pub asks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Run,
    Heist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// A heist waits for an operator's answer.
    Asking,
    /// Every host ok.
    Ok,
    /// Over, not every host ok.
    Failed,
    /// Stopped by an operator, or cut short by a daemon that went away.
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Asking => "asking",
            RunState::Ok => "ok",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn is_over(self) -> bool {
        !matches!(self, RunState::Running | RunState::Asking)
    }
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostEvent {
    /// The command is running; `agentless` marks hosts served without a resident agent.
    Started { pid: u32, agentless: bool },
    Output {
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The command exited; `verdict` is the daemon's (it knows whether a kill was sent).
    Exit { exit: Exit, verdict: Verdict },
    /// No exit status; the verdict is `Verdict::from_error(kind)`.
    Failed { kind: ErrorKind, message: String },
    /// A copy's progress on this host: bytes moved so far of `total`.
    Progress { done: u64, total: u64 },
}

/// Hosts presenting one unknown key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroup {
    /// `ssh-ed25519`, `ssh-rsa`, …
    pub key_type: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// The hosts presenting it (inventory names; a jump host's own name for its key).
    pub hosts: Vec<String>,
    /// The visual host key as `ssh-keygen -lv` draws it (11 lines), shown on request.
    #[serde(default)]
    pub randomart: String,
}

impl KeyGroup {
    /// `ssh-ed25519 SHA256:… — web[01-20] (20)`
    pub fn line(&self) -> String {
        format!(
            "{} {} \u{2014} {} ({})",
            self.key_type,
            self.fingerprint,
            crate::nodeset::fold(&self.hosts),
            self.hosts.len()
        )
    }
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
    /// The HTTPS API, when the daemon listens.
    pub api: Option<ApiStatus>,
    /// Daemons on the NATS bus (sites and routers) and how long ago each was heard (ms);
    /// empty off the bus.
    pub daemons: Vec<(super::bus::Presence, u64)>,
}

/// Where the daemon's HTTPS API listens and the certificate clients pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStatus {
    /// `https://ADDR:PORT`
    pub url: String,
    /// SHA-256 of the certificate (DER), hex pairs with colons.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Hello {
        proto: u32,
        build: String,
        pid: u32,
        /// The daemon acts only for clients that said who the operator is.
        identify: bool,
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
    /// Hosts of the run (or heist: `run` is the id clients follow) wait on host keys no
    /// known_hosts records: accept which groups? (answered with `Request::AnswerHostKeys` by
    /// any client following it).
    HostKeys {
        run: String,
        ask_id: u64,
        groups: Vec<KeyGroup>,
    },
    /// The question was answered (or given up on): the groups accepted, by whom.
    HostKeysAnswered {
        run: String,
        ask_id: u64,
        accepted: Vec<u32>,
        who: String,
    },
    /// Sent only once every host's result is on disk in the run store.
    RunFinished {
        run_id: u64,
        summary: Summary,
    },
    Status(StatusReport),
    Facts(Vec<(String, Result<Info, String>)>),
    FileDone(Result<FileResult, HostError>),
    Error {
        message: String,
    },
    Stopping,
    /// A heist (or a detached run) was accepted: its id.
    Accepted {
        run: String,
    },
    /// One heist event, as the JSON `crew heist run --json` prints.
    Heist {
        run: String,
        json: String,
    },
    /// A heist's live output (the heist's `output` event, without JSON).
    HeistOutput {
        run: String,
        host: String,
        rollback: bool,
        step: u32,
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The heist's events are over (its `finished` event came before).
    HeistDone {
        run: String,
    },
    Runs(Vec<RunInfo>),
    /// The shell's bytes, for the operator's terminal as they are.
    ShellOutput {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The shell (or command) ended: its exit status, or the signal that ended it.
    ShellExit {
        code: Option<i32>,
        signal: Option<i32>,
    },
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

impl Event {
    /// True for the event that ends a request's stream (a detached start's `Accepted` does
    /// not: the client stops listening after it).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Event::RunStarted { .. }
                | Event::Host { .. }
                | Event::HostKeys { .. }
                | Event::HostKeysAnswered { .. }
                | Event::Accepted { .. }
                | Event::Heist { .. }
                | Event::HeistOutput { .. }
                | Event::ShellOutput { .. }
        )
    }
}

/// A host's event as one JSON object, the form `crew run --json` prints (and the API's event
/// stream sends): `{"host", "event": "started" | "stdout" | "stderr" | "exit" | "error", …}`.
/// Output is text (invalid UTF-8 replaced); JSON escaping makes any byte safe to carry.
pub fn host_event_json(host: &str, ev: &HostEvent) -> serde_json::Value {
    match ev {
        HostEvent::Started { pid, agentless } => serde_json::json!({
            "host": host, "event": "started", "pid": pid, "agentless": agentless,
        }),
        HostEvent::Output { stream, data } => {
            output_json(host, *stream, data, data.last() == Some(&b'\n'))
        }
        HostEvent::Exit { exit: e, verdict } => serde_json::json!({
            "host": host, "event": "exit", "code": e.code, "signal": e.signal,
            "wall_ms": e.wall_ms, "timed_out": e.timed_out, "verdict": verdict.as_str(),
        }),
        HostEvent::Failed { kind, message } => serde_json::json!({
            "host": host, "event": "error", "kind": kind.as_str(), "message": message,
            "verdict": Verdict::from_error(*kind).as_str(),
        }),
        HostEvent::Progress { done, total } => serde_json::json!({
            "host": host, "event": "progress", "bytes": done, "total": total,
        }),
    }
}

/// Output of a host as `crew run --json` prints it: `data` is the text (a line without its
/// newline, or a chunk), `eol` says whether a newline ended it, and bytes that are not UTF-8
/// also come exactly as base64 in `bytes`.
pub fn output_json(host: &str, stream: Stream, data: &[u8], eol: bool) -> serde_json::Value {
    use base64::Engine as _;
    let event = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    match String::from_utf8_lossy(data) {
        std::borrow::Cow::Borrowed(text) => serde_json::json!({
            "host": host, "event": event, "data": text, "eol": eol,
        }),
        std::borrow::Cow::Owned(text) => serde_json::json!({
            "host": host, "event": event, "data": text, "eol": eol,
            "bytes": base64::engine::general_purpose::STANDARD.encode(data),
        }),
    }
}

/// The `--json` output events of one host, written straight to a stream: the same bytes as
/// [`output_json`] serialised (keys in the same order) and a newline, without building a JSON
/// value per line. What follows the text (`eol`, `event`, `host`) is prepared once per host.
pub struct OutputJsonWriter {
    host: String,
    /// `,"eol":…,"event":…,"host":…}` and the newline, by stream (stdout, stderr) and eol.
    tails: [[Vec<u8>; 2]; 2],
}

impl OutputJsonWriter {
    pub fn new(host: &str) -> OutputJsonWriter {
        let tail = |event: &str, eol: bool| {
            let mut t = format!(",\"eol\":{eol},\"event\":\"{event}\",\"host\":").into_bytes();
            // Serialising a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut t, host);
            t.extend_from_slice(b"}\n");
            t
        };
        OutputJsonWriter {
            host: host.to_string(),
            tails: [
                [tail("stdout", false), tail("stdout", true)],
                [tail("stderr", false), tail("stderr", true)],
            ],
        }
    }

    /// One output event (see [`output_json`]) and its newline.
    pub fn write<W: std::io::Write>(
        &self,
        out: &mut W,
        stream: Stream,
        data: &[u8],
        eol: bool,
    ) -> std::io::Result<()> {
        let Ok(text) = std::str::from_utf8(data) else {
            // Not UTF-8 (rare): the text with replacement characters and the exact bytes.
            serde_json::to_writer(&mut *out, &output_json(&self.host, stream, data, eol))?;
            return out.write_all(b"\n");
        };
        out.write_all(b"{\"data\":")?;
        serde_json::to_writer(&mut *out, text)?;
        let lane = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        out.write_all(&self.tails[lane][usize::from(eol)])
    }
}

pub fn encode_request(
    id: u64,
    r: &Request,
    out: &mut Vec<u8>,
) -> Result<(), super::frame::FrameError> {
    let payload = postcard::to_stdvec(r).map_err(|e| std::io::Error::other(e.to_string()))?;
    super::frame::encode_into(out, REQUEST, id, &payload)
}

/// Appends to a Vec through `Extend` (postcard serialises into it in place).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Append event `e` as one frame to `out`. The payload is serialised in place after room for
/// the header (output events carry most of a run's bytes: no second copy of them). On error
/// `out` is as it was.
pub fn encode_event(id: u64, e: &Event, out: &mut Vec<u8>) -> Result<(), super::frame::FrameError> {
    let start = out.len();
    let room = 4 + super::frame::HEADER;
    out.resize(start + room, 0);
    if let Err(err) = postcard::to_extend(e, Append(out)) {
        out.truncate(start);
        return Err(std::io::Error::other(err.to_string()).into());
    }
    match super::frame::header(EVENT, id, out.len() - start - room) {
        Ok(h) => {
            out[start..start + room].copy_from_slice(&h);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_encoded_in_place_as_one_frame_each() {
        let events = [
            Event::Host {
                run_id: 7,
                host: "web1".into(),
                event: HostEvent::Output {
                    stream: Stream::Stdout,
                    data: (0..70_000u32).map(|i| i as u8).collect(),
                },
            },
            Event::Stopping,
            Event::Error {
                message: "x".repeat(300),
            },
        ];
        let mut out = b"before".to_vec();
        for (i, e) in events.iter().enumerate() {
            encode_event(i as u64, e, &mut out).expect("encode");
        }
        let mut want = b"before".to_vec();
        for (i, e) in events.iter().enumerate() {
            let payload = postcard::to_stdvec(e).expect("postcard");
            super::super::frame::encode_into(&mut want, EVENT, i as u64, &payload).expect("frame");
        }
        assert_eq!(out, want);
        // Too large for a frame: an error, and nothing appended.
        let huge = Event::ShellOutput {
            data: vec![0; super::super::frame::MAX_FRAME],
        };
        assert!(encode_event(9, &huge, &mut out).is_err());
        assert_eq!(out, want);
    }

    #[test]
    fn the_output_json_writer_prints_exactly_what_output_json_serialises() {
        let hosts = ["web1", "we\"ird\\host", "hôte\u{1b}[31m", ""];
        let data: [&[u8]; 8] = [
            b"",
            b"plain text",
            b"tab\there \"quoted\" back\\slash",
            b"\x1b[2J\x00\x07\x7f\r",
            "é ✓ \u{202e} \u{9b}".as_bytes(),
            b"not \xff utf-8 \xe2\x82",
            b"\xc3",
            b"x\ny",
        ];
        for host in hosts {
            let w = OutputJsonWriter::new(host);
            for d in data {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    for eol in [false, true] {
                        let mut got = Vec::new();
                        w.write(&mut got, stream, d, eol).expect("write");
                        let mut want = serde_json::to_vec(&output_json(host, stream, d, eol))
                            .expect("serialise");
                        want.push(b'\n');
                        assert_eq!(
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want),
                            "{host:?} {d:?} {stream:?} {eol}"
                        );
                        assert_eq!(got, want);
                    }
                }
            }
        }
    }
}
