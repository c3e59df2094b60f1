//! Daemon ↔ agent messages.
//!
//! Every message travels in one [`super::frame`] frame; the frame `kind` names the variant
//! and the frame `id` is the request id the message belongs to (0 for connection-level
//! messages such as `Hello`, `Ping`, `Pong`). Payloads are postcard-encoded bodies. A kind we do
//! not know, or a payload that does not decode, becomes [`Decoded::Invalid`]: the receiver
//! answers with `Error` and keeps serving.
//!
//! Before the first frame the agent writes [`SYNC_MARKER`] on stdout so the daemon can skip
//! whatever a login shell printed first (a banner, a chatty `.bashrc`).
//!
//! Flow control (per job, as SSH channels and HTTP/2 streams do): the agent sends at most
//! [`INITIAL_WINDOW`] bytes of a job's `Output` (stdout and stderr together) plus whatever the
//! daemon granted since with `Credit` frames for that job's id. `Started`, `Exit` and `Error`
//! are not counted. A job whose credit is used up stops reading its pipes (its command blocks on
//! write); other jobs on the link go on. `Credit` for a job that has ended is ignored; a grant
//! of `u64::MAX` lifts the limit for the job (the daemon stopped listening to it).
//!
//! Credit also flows the other way (protocol 3): a write stream's `PutData` and a job's
//! `Input` are sent within credit the agent grants with its own `Credit` frames as it writes
//! them out (see [`super::files`]); read streams (`GetData`) count like `Output`.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::files::{FileStat, GetOpen, ListEntry, PutDir, PutLink, PutOpen, Stat};
use super::frame::{self, FrameError, RawFrame};
use crate::model::{Exit, Info, Stream};

/// Written by the agent before its `Hello`; the daemon discards everything before it.
pub const SYNC_MARKER: &[u8] = b"\x00\x00CREW-AGENT-SYNC\x00\x00";

/// Output bytes the agent may send for a job before the daemon's first `Credit` for it.
pub const INITIAL_WINDOW: u64 = 256 * 1024;

/// Where `marker` ([`SYNC_MARKER`], or the daemon's helper-output markers) first starts in
/// `hay`. The one marker search of the daemon's link and SSH layers. An empty marker is at 0.
pub fn find_marker(hay: &[u8], marker: &[u8]) -> Option<usize> {
    if marker.is_empty() {
        return Some(0);
    }
    hay.windows(marker.len()).position(|w| w == marker)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub proto: u32,
    /// Build hash of the sender's executable (agent) or of the daemon's own (daemon).
    pub build: String,
    /// Agent only: its pid, so `crew status` can show it.
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Run by `bash -c` in a new process group, in a fresh temporary directory.
    pub command: String,
    pub env: Vec<(String, String)>,
    /// Kill the process group (TERM, then KILL after a grace period) once this elapses.
    pub timeout_ms: Option<u64>,
    /// Give the command a pipe as stdin, fed by `Input` frames (else /dev/null).
    pub stdin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFile {
    pub path: String,
    pub max_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub mode: u32,
    /// Lower-case hex sha256 of `data`.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFile {
    pub path: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub mode: u32,
    /// Lower-case hex sha256 the agent must verify before the atomic rename.
    pub sha256: String,
}

/// One process group of a dead agent's job that was still running when a newer agent looked
/// (see `Reap`); it has been sent SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// Pid of the agent that started the job (gone now).
    pub agent_pid: u32,
    /// The job's request id on that agent's link.
    pub job: u64,
    /// The job's process group.
    pub pgid: u32,
    /// Live members found: pid and command name (`/proc/PID/comm`, untrusted text).
    pub processes: Vec<(u32, String)>,
}

/// Every message of the daemon↔agent protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMsg {
    // both directions
    Hello(Hello),
    Ping,
    Pong,
    // daemon → agent
    Run(Run),
    Kill {
        signal: i32,
    },
    InfoRequest,
    ReadFile(ReadFile),
    WriteFile(WriteFile),
    /// More output bytes the agent may send for the job of this frame's id.
    Credit {
        bytes: u64,
    },
    /// Find the leftovers of dead agents of this user on this host (process groups of their
    /// jobs still running, their temp dirs), kill and remove them; answered by `Reaped`.
    Reap,
    /// Bytes for the stdin of the job of this frame's id (see [`super::files`]).
    Input {
        data: ByteBuf,
    },
    /// Close the job's stdin.
    InputEnd,
    /// `Stated` (None: nothing there) or `Error`.
    Stat(Stat),
    PutOpen(PutOpen),
    PutData {
        data: ByteBuf,
    },
    /// The sha256 of everything sent (lower-case hex).
    PutEnd {
        sha256: String,
    },
    PutDir(PutDir),
    PutLink(PutLink),
    GetOpen(GetOpen),
    /// Every entry under a path (not following symlinks): `Listing`… then `ListEnd`.
    List {
        path: String,
    },
    // agent → daemon
    Started {
        pid: u32,
    },
    Output {
        stream: Stream,
        data: ByteBuf,
    },
    Exit(Exit),
    Info(Info),
    FileData(FileData),
    FileWritten {
        size: u64,
        sha256: String,
    },
    Refused {
        reason: String,
    },
    Error {
        message: String,
    },
    Reaped {
        leftovers: Vec<Leftover>,
    },
    Stated(Option<FileStat>),
    GetHead(FileStat),
    GetData {
        data: ByteBuf,
    },
    GetEnd {
        sha256: String,
    },
    Listing {
        entries: Vec<ListEntry>,
    },
    ListEnd,
}

impl AgentMsg {
    /// Bytes of this message that count against its request's credit (agent → daemon).
    pub fn counted(&self) -> u64 {
        match self {
            AgentMsg::Output { data, .. } | AgentMsg::GetData { data } => data.len() as u64,
            _ => 0,
        }
    }

    /// True for the agent's messages that end a request's stream.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            AgentMsg::Started { .. }
                | AgentMsg::Output { .. }
                | AgentMsg::GetHead(_)
                | AgentMsg::GetData { .. }
                | AgentMsg::Listing { .. }
        )
    }
}

/// The result of decoding a frame: a message, or a description of why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Msg { id: u64, msg: AgentMsg },
    Invalid { id: u64, kind: u16, reason: String },
}

mod kind {
    pub const HELLO: u16 = 1;
    pub const PING: u16 = 2;
    pub const PONG: u16 = 3;
    pub const RUN: u16 = 10;
    pub const KILL: u16 = 11;
    pub const INFO_REQUEST: u16 = 12;
    pub const READ_FILE: u16 = 13;
    pub const WRITE_FILE: u16 = 14;
    pub const CREDIT: u16 = 15;
    pub const REAP: u16 = 16;
    pub const STARTED: u16 = 20;
    pub const OUTPUT_STDOUT: u16 = 21;
    pub const OUTPUT_STDERR: u16 = 22;
    pub const EXIT: u16 = 23;
    pub const INFO: u16 = 24;
    pub const FILE_DATA: u16 = 25;
    pub const FILE_WRITTEN: u16 = 26;
    pub const REFUSED: u16 = 27;
    pub const ERROR: u16 = 28;
    pub const REAPED: u16 = 29;
    pub const INPUT: u16 = 17;
    pub const INPUT_END: u16 = 18;
    pub const STAT: u16 = 40;
    pub const PUT_OPEN: u16 = 41;
    pub const PUT_DATA: u16 = 42;
    pub const PUT_END: u16 = 43;
    pub const PUT_DIR: u16 = 44;
    pub const PUT_LINK: u16 = 45;
    pub const GET_OPEN: u16 = 46;
    pub const LIST: u16 = 47;
    pub const STATED: u16 = 50;
    pub const GET_HEAD: u16 = 51;
    pub const GET_DATA: u16 = 52;
    pub const GET_END: u16 = 53;
    pub const LISTING: u16 = 54;
    pub const LIST_END: u16 = 55;
}

#[derive(Serialize, Deserialize)]
struct KillBody {
    signal: i32,
}
#[derive(Serialize, Deserialize)]
struct WrittenBody {
    size: u64,
    sha256: String,
}
#[derive(Serialize, Deserialize)]
struct ReasonBody {
    text: String,
}
#[derive(Serialize, Deserialize)]
struct CreditBody {
    bytes: u64,
}
#[derive(Serialize, Deserialize)]
struct ReapedBody {
    leftovers: Vec<Leftover>,
}
#[derive(Serialize, Deserialize)]
struct StartedBody {
    pid: u32,
}
#[derive(Serialize, Deserialize)]
struct ShaBody {
    sha256: String,
}
#[derive(Serialize, Deserialize)]
struct PathBody {
    path: String,
}
#[derive(Serialize, Deserialize)]
struct ListingBody {
    entries: Vec<ListEntry>,
}

fn pc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain structs of strings and integers into a Vec cannot fail.
    postcard::to_stdvec(v).unwrap_or_default()
}

impl AgentMsg {
    /// Frame kind and encoded payload for this message.
    pub fn encode(&self) -> (u16, Vec<u8>) {
        use kind::*;
        match self {
            AgentMsg::Hello(h) => (HELLO, pc(h)),
            AgentMsg::Ping => (PING, Vec::new()),
            AgentMsg::Pong => (PONG, Vec::new()),
            AgentMsg::Run(r) => (RUN, pc(r)),
            AgentMsg::Kill { signal } => (KILL, pc(&KillBody { signal: *signal })),
            AgentMsg::InfoRequest => (INFO_REQUEST, Vec::new()),
            AgentMsg::ReadFile(r) => (READ_FILE, pc(r)),
            AgentMsg::WriteFile(w) => (WRITE_FILE, pc(w)),
            AgentMsg::Credit { bytes } => (CREDIT, pc(&CreditBody { bytes: *bytes })),
            AgentMsg::Reap => (REAP, Vec::new()),
            AgentMsg::Started { pid } => (STARTED, pc(&StartedBody { pid: *pid })),
            // Output is the hot path: raw bytes, no serialisation.
            AgentMsg::Output {
                stream: Stream::Stdout,
                data,
            } => (OUTPUT_STDOUT, data.to_vec()),
            AgentMsg::Output {
                stream: Stream::Stderr,
                data,
            } => (OUTPUT_STDERR, data.to_vec()),
            AgentMsg::Exit(e) => (EXIT, pc(e)),
            AgentMsg::Info(i) => (INFO, pc(i)),
            AgentMsg::FileData(f) => (FILE_DATA, pc(f)),
            AgentMsg::FileWritten { size, sha256 } => (
                FILE_WRITTEN,
                pc(&WrittenBody {
                    size: *size,
                    sha256: sha256.clone(),
                }),
            ),
            AgentMsg::Refused { reason } => (
                REFUSED,
                pc(&ReasonBody {
                    text: reason.clone(),
                }),
            ),
            AgentMsg::Error { message } => (
                ERROR,
                pc(&ReasonBody {
                    text: message.clone(),
                }),
            ),
            AgentMsg::Reaped { leftovers } => (
                REAPED,
                pc(&ReapedBody {
                    leftovers: leftovers.clone(),
                }),
            ),
            // Data frames are raw bytes, like Output.
            AgentMsg::Input { data } => (INPUT, data.to_vec()),
            AgentMsg::InputEnd => (INPUT_END, Vec::new()),
            AgentMsg::Stat(s) => (STAT, pc(s)),
            AgentMsg::PutOpen(p) => (PUT_OPEN, pc(p)),
            AgentMsg::PutData { data } => (PUT_DATA, data.to_vec()),
            AgentMsg::PutEnd { sha256 } => (
                PUT_END,
                pc(&ShaBody {
                    sha256: sha256.clone(),
                }),
            ),
            AgentMsg::PutDir(p) => (PUT_DIR, pc(p)),
            AgentMsg::PutLink(p) => (PUT_LINK, pc(p)),
            AgentMsg::GetOpen(g) => (GET_OPEN, pc(g)),
            AgentMsg::List { path } => (LIST, pc(&PathBody { path: path.clone() })),
            AgentMsg::Stated(s) => (STATED, pc(s)),
            AgentMsg::GetHead(s) => (GET_HEAD, pc(s)),
            AgentMsg::GetData { data } => (GET_DATA, data.to_vec()),
            AgentMsg::GetEnd { sha256 } => (
                GET_END,
                pc(&ShaBody {
                    sha256: sha256.clone(),
                }),
            ),
            AgentMsg::Listing { entries } => (
                LISTING,
                pc(&ListingBody {
                    entries: entries.clone(),
                }),
            ),
            AgentMsg::ListEnd => (LIST_END, Vec::new()),
        }
    }

    /// Append this message as a complete frame to `out`.
    pub fn encode_frame(&self, id: u64, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let (k, payload) = self.encode();
        frame::encode_into(out, k, id, &payload)
    }

    /// Short name for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            AgentMsg::Hello(_) => "Hello",
            AgentMsg::Ping => "Ping",
            AgentMsg::Pong => "Pong",
            AgentMsg::Run(_) => "Run",
            AgentMsg::Kill { .. } => "Kill",
            AgentMsg::InfoRequest => "InfoRequest",
            AgentMsg::ReadFile(_) => "ReadFile",
            AgentMsg::WriteFile(_) => "WriteFile",
            AgentMsg::Credit { .. } => "Credit",
            AgentMsg::Reap => "Reap",
            AgentMsg::Reaped { .. } => "Reaped",
            AgentMsg::Started { .. } => "Started",
            AgentMsg::Output { .. } => "Output",
            AgentMsg::Exit(_) => "Exit",
            AgentMsg::Info(_) => "Info",
            AgentMsg::FileData(_) => "FileData",
            AgentMsg::FileWritten { .. } => "FileWritten",
            AgentMsg::Refused { .. } => "Refused",
            AgentMsg::Error { .. } => "Error",
            AgentMsg::Input { .. } => "Input",
            AgentMsg::InputEnd => "InputEnd",
            AgentMsg::Stat(_) => "Stat",
            AgentMsg::PutOpen(_) => "PutOpen",
            AgentMsg::PutData { .. } => "PutData",
            AgentMsg::PutEnd { .. } => "PutEnd",
            AgentMsg::PutDir(_) => "PutDir",
            AgentMsg::PutLink(_) => "PutLink",
            AgentMsg::GetOpen(_) => "GetOpen",
            AgentMsg::List { .. } => "List",
            AgentMsg::Stated(_) => "Stated",
            AgentMsg::GetHead(_) => "GetHead",
            AgentMsg::GetData { .. } => "GetData",
            AgentMsg::GetEnd { .. } => "GetEnd",
            AgentMsg::Listing { .. } => "Listing",
            AgentMsg::ListEnd => "ListEnd",
        }
    }
}

fn body<'a, T: Deserialize<'a>>(p: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(p).map_err(|e| format!("malformed payload: {e}"))
}

fn empty(p: &[u8], m: AgentMsg) -> Result<AgentMsg, String> {
    if p.is_empty() {
        Ok(m)
    } else {
        Err(format!(
            "{} carries no payload, got {} bytes",
            m.name(),
            p.len()
        ))
    }
}

/// [`decode`], taking the frame: output and read-stream data keep the frame's payload as
/// their bytes (no copy; the daemon's hot path).
pub fn decode_owned(f: RawFrame) -> Decoded {
    use kind::*;
    let msg = match f.kind {
        OUTPUT_STDOUT | OUTPUT_STDERR => AgentMsg::Output {
            stream: match f.kind {
                OUTPUT_STDOUT => Stream::Stdout,
                _ => Stream::Stderr,
            },
            data: ByteBuf::from(f.payload),
        },
        GET_DATA => AgentMsg::GetData {
            data: ByteBuf::from(f.payload),
        },
        _ => return decode(&f),
    };
    Decoded::Msg { id: f.id, msg }
}

/// Decode a raw frame. Never panics; anything unexpected becomes `Decoded::Invalid`.
pub fn decode(f: &RawFrame) -> Decoded {
    use kind::*;
    let p = &f.payload[..];
    let msg = match f.kind {
        HELLO => body(p).map(AgentMsg::Hello),
        PING => empty(p, AgentMsg::Ping),
        PONG => empty(p, AgentMsg::Pong),
        RUN => body(p).map(AgentMsg::Run),
        KILL => body::<KillBody>(p).map(|b| AgentMsg::Kill { signal: b.signal }),
        INFO_REQUEST => empty(p, AgentMsg::InfoRequest),
        READ_FILE => body(p).map(AgentMsg::ReadFile),
        WRITE_FILE => body(p).map(AgentMsg::WriteFile),
        CREDIT => body::<CreditBody>(p).map(|b| AgentMsg::Credit { bytes: b.bytes }),
        REAP => empty(p, AgentMsg::Reap),
        REAPED => body::<ReapedBody>(p).map(|b| AgentMsg::Reaped {
            leftovers: b.leftovers,
        }),
        STARTED => body::<StartedBody>(p).map(|b| AgentMsg::Started { pid: b.pid }),
        OUTPUT_STDOUT => Ok(AgentMsg::Output {
            stream: Stream::Stdout,
            data: ByteBuf::from(p.to_vec()),
        }),
        OUTPUT_STDERR => Ok(AgentMsg::Output {
            stream: Stream::Stderr,
            data: ByteBuf::from(p.to_vec()),
        }),
        EXIT => body(p).map(AgentMsg::Exit),
        INFO => body(p).map(AgentMsg::Info),
        FILE_DATA => body(p).map(AgentMsg::FileData),
        FILE_WRITTEN => body::<WrittenBody>(p).map(|b| AgentMsg::FileWritten {
            size: b.size,
            sha256: b.sha256,
        }),
        REFUSED => body::<ReasonBody>(p).map(|b| AgentMsg::Refused { reason: b.text }),
        ERROR => body::<ReasonBody>(p).map(|b| AgentMsg::Error { message: b.text }),
        INPUT => Ok(AgentMsg::Input {
            data: ByteBuf::from(p.to_vec()),
        }),
        INPUT_END => empty(p, AgentMsg::InputEnd),
        STAT => body(p).map(AgentMsg::Stat),
        PUT_OPEN => body(p).map(AgentMsg::PutOpen),
        PUT_DATA => Ok(AgentMsg::PutData {
            data: ByteBuf::from(p.to_vec()),
        }),
        PUT_END => body::<ShaBody>(p).map(|b| AgentMsg::PutEnd { sha256: b.sha256 }),
        PUT_DIR => body(p).map(AgentMsg::PutDir),
        PUT_LINK => body(p).map(AgentMsg::PutLink),
        GET_OPEN => body(p).map(AgentMsg::GetOpen),
        LIST => body::<PathBody>(p).map(|b| AgentMsg::List { path: b.path }),
        STATED => body(p).map(AgentMsg::Stated),
        GET_HEAD => body(p).map(AgentMsg::GetHead),
        GET_DATA => Ok(AgentMsg::GetData {
            data: ByteBuf::from(p.to_vec()),
        }),
        GET_END => body::<ShaBody>(p).map(|b| AgentMsg::GetEnd { sha256: b.sha256 }),
        LISTING => body::<ListingBody>(p).map(|b| AgentMsg::Listing { entries: b.entries }),
        LIST_END => empty(p, AgentMsg::ListEnd),
        other => Err(format!("unknown frame kind {other}")),
    };
    match msg {
        Ok(msg) => Decoded::Msg { id: f.id, msg },
        Err(reason) => Decoded::Invalid {
            id: f.id,
            kind: f.kind,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_owned_agrees_with_decode() {
        let frames = [
            (kind::OUTPUT_STDOUT, b"out\n".to_vec()),
            (kind::OUTPUT_STDERR, b"err".to_vec()),
            (kind::GET_DATA, vec![0, 1, 2]),
            (kind::OUTPUT_STDOUT, Vec::new()),
            (kind::PING, Vec::new()),
            (kind::PING, b"junk".to_vec()),
            (9999, b"?".to_vec()),
        ];
        for (kind, payload) in frames {
            let f = RawFrame {
                kind,
                id: 5,
                payload,
            };
            assert_eq!(decode_owned(f.clone()), decode(&f), "kind {kind}");
        }
    }

    /// Encode `m` as a frame on the wire, read that frame back and decode it.
    fn roundtrip(m: AgentMsg) {
        let mut buf = Vec::new();
        m.encode_frame(9, &mut buf).expect("encode");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut wire = buf.as_slice();
        let raw = rt
            .block_on(frame::read_frame(&mut wire))
            .expect("read the frame back")
            .expect("one frame");
        assert!(wire.is_empty(), "{} bytes after the frame", wire.len());
        let (k, payload) = m.encode();
        assert_eq!((raw.kind, raw.id), (k, 9), "{}", m.name());
        assert_eq!(raw.payload, payload, "{}", m.name());
        assert_eq!(decode(&raw), Decoded::Msg { id: 9, msg: m });
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(AgentMsg::Hello(Hello {
            proto: 1,
            build: "abc".into(),
            pid: 7,
        }));
        roundtrip(AgentMsg::Ping);
        roundtrip(AgentMsg::Pong);
        roundtrip(AgentMsg::Run(Run {
            command: "echo hi".into(),
            env: vec![("A".into(), "b".into())],
            timeout_ms: Some(5),
            stdin: true,
        }));
        roundtrip(AgentMsg::Kill { signal: 9 });
        roundtrip(AgentMsg::InfoRequest);
        roundtrip(AgentMsg::ReadFile(ReadFile {
            path: "/etc/hosts".into(),
            max_size: 10,
        }));
        roundtrip(AgentMsg::WriteFile(WriteFile {
            path: "/tmp/x".into(),
            data: vec![0, 1, 255],
            mode: 0o644,
            sha256: "00".into(),
        }));
        roundtrip(AgentMsg::Started { pid: 1234 });
        roundtrip(AgentMsg::Output {
            stream: Stream::Stdout,
            data: ByteBuf::from(vec![0u8, 0xff, b'\n']),
        });
        roundtrip(AgentMsg::Output {
            stream: Stream::Stderr,
            data: ByteBuf::from(Vec::new()),
        });
        roundtrip(AgentMsg::Exit(Exit {
            code: Some(3),
            signal: None,
            wall_ms: 1,
            user_ms: 2,
            sys_ms: 3,
            max_rss_kb: 4,
            timed_out: false,
        }));
        roundtrip(AgentMsg::Info(Info {
            hostname: "h".into(),
            ..Info::default()
        }));
        roundtrip(AgentMsg::FileData(FileData {
            data: b"x".to_vec(),
            mode: 0o600,
            sha256: "ab".into(),
        }));
        roundtrip(AgentMsg::FileWritten {
            size: 3,
            sha256: "cd".into(),
        });
        roundtrip(AgentMsg::Refused {
            reason: "queue full".into(),
        });
        roundtrip(AgentMsg::Error {
            message: "bad".into(),
        });
        roundtrip(AgentMsg::Credit { bytes: u64::MAX });
        let stat = FileStat {
            kind: super::super::files::FileKind::Symlink,
            size: 3,
            mode: 0o755,
            mtime_s: -5,
            mtime_ns: 999,
            uid: 1,
            gid: 2,
            target: Some("t".into()),
        };
        let meta = super::super::files::Meta {
            mode: 0o640,
            mtime: Some((1, 2)),
            owner: Some((3, 4)),
        };
        roundtrip(AgentMsg::Input {
            data: ByteBuf::from(vec![1u8, 0, 255]),
        });
        roundtrip(AgentMsg::InputEnd);
        roundtrip(AgentMsg::Stat(Stat {
            path: "/x".into(),
            follow: true,
        }));
        roundtrip(AgentMsg::PutOpen(PutOpen {
            path: "/x".into(),
            meta: meta.clone(),
            size: 9,
        }));
        roundtrip(AgentMsg::PutData {
            data: ByteBuf::from(vec![7u8; 10]),
        });
        roundtrip(AgentMsg::PutEnd {
            sha256: "ab".into(),
        });
        roundtrip(AgentMsg::PutDir(PutDir {
            path: "/d".into(),
            meta: meta.clone(),
        }));
        roundtrip(AgentMsg::PutLink(PutLink {
            path: "/l".into(),
            target: "../t".into(),
            meta,
        }));
        roundtrip(AgentMsg::GetOpen(GetOpen { path: "/g".into() }));
        roundtrip(AgentMsg::List { path: "/".into() });
        roundtrip(AgentMsg::Stated(None));
        roundtrip(AgentMsg::Stated(Some(stat.clone())));
        roundtrip(AgentMsg::GetHead(stat.clone()));
        roundtrip(AgentMsg::GetData {
            data: ByteBuf::from(vec![]),
        });
        roundtrip(AgentMsg::GetEnd {
            sha256: "cd".into(),
        });
        roundtrip(AgentMsg::Listing {
            entries: vec![ListEntry {
                path: "a/b".into(),
                stat,
            }],
        });
        roundtrip(AgentMsg::ListEnd);
        roundtrip(AgentMsg::Reap);
        roundtrip(AgentMsg::Reaped {
            leftovers: vec![Leftover {
                agent_pid: 5,
                job: 3,
                pgid: 77,
                processes: vec![(78, "sleep".into())],
            }],
        });
    }

    #[test]
    fn unknown_and_malformed_are_invalid_not_panics() {
        let unknown = RawFrame {
            kind: 999,
            id: 1,
            payload: vec![1, 2],
        };
        assert!(matches!(
            decode(&unknown),
            Decoded::Invalid { kind: 999, .. }
        ));
        let bad = RawFrame {
            kind: kind::RUN,
            id: 2,
            payload: vec![0xff; 3],
        };
        assert!(matches!(decode(&bad), Decoded::Invalid { id: 2, .. }));
        let ping_with_junk = RawFrame {
            kind: kind::PING,
            id: 0,
            payload: vec![1],
        };
        assert!(matches!(decode(&ping_with_junk), Decoded::Invalid { .. }));
    }
}
