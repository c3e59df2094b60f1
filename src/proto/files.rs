//! Bodies of the daemon ↔ agent messages that stream files and job input (protocol 3).
//!
//! A **write stream** (`crew put`) is `PutOpen` → `PutData`… → `PutEnd` on one request id.
//! The daemon sends `PutData` only within the stream's credit: [`PUT_WINDOW`] bytes, plus
//! whatever the agent granted since with `Credit` frames for that id (the agent grants as it
//! writes to disk). The agent writes into a temp file beside the target, hashes what it
//! wrote, and on `PutEnd` checks the sha256, fsyncs, sets mode, owner (when it runs as root)
//! and mtime, and renames it over the target: `FileWritten`, or `Error` (the temp file is
//! removed; the target is untouched). `Kill` on the id abandons the stream (`Error`).
//!
//! A **read stream** (`crew fetch`) is `GetOpen` → `GetHead`, `GetData`…, `GetEnd` (with the
//! sha256 of what was sent), or `Error`. `GetData` counts against the id's credit exactly as
//! a job's `Output` does ([`super::agent::INITIAL_WINDOW`] plus `Credit` from the daemon).
//!
//! **Job input**: a `Run` with `stdin = true` gives the command a pipe; `Input` frames fill
//! it within the job's input credit ([`INPUT_WINDOW`] plus the agent's `Credit` grants, made
//! as the pipe takes the bytes) and `InputEnd` closes it.

use serde::{Deserialize, Serialize};

/// Bytes of `PutData` the daemon may send on a write stream before the agent's first grant.
pub const PUT_WINDOW: u64 = 1024 * 1024;
/// Bytes of `Input` the daemon may send for a job before the agent's first grant.
pub const INPUT_WINDOW: u64 = 256 * 1024;
/// Largest `PutData`, `GetData` or `Input` payload.
pub const DATA_CHUNK: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device: never copied.
    Other,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "special file",
        }
    }
}

/// What `lstat` (or `stat`) says of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub uid: u32,
    pub gid: u32,
    /// A symlink's target.
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub path: String,
    /// `stat` (follow a final symlink) rather than `lstat`.
    pub follow: bool,
}

/// Metadata the agent gives what it creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub mode: u32,
    /// (seconds, nanoseconds) since the epoch; None leaves the time of writing.
    pub mtime: Option<(i64, u32)>,
    /// (uid, gid), applied only when the agent runs as root.
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOpen {
    pub path: String,
    pub meta: Meta,
    /// Bytes that will follow (a check, and what progress is measured against).
    pub size: u64,
}

/// Make a directory (if missing) and set its metadata; idempotent, so it is sent again after
/// the directory's contents to set its mtime last (as `cp -a` does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutDir {
    pub path: String,
    pub meta: Meta,
}

/// Make a symlink (atomically replacing what is at `path`, unless it is a directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutLink {
    pub path: String,
    pub target: String,
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOpen {
    pub path: String,
}

/// One entry of a listed tree; `path` is relative to the listed root ("" for the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub path: String,
    pub stat: FileStat,
}
