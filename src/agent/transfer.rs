//! File streams (see [`crate::proto::files`]): `Stat`, write streams (`PutOpen` → `PutData`…
//! → `PutEnd`: a temp file beside the target, sha256 of what was written, fsync, metadata,
//! atomic rename), `PutDir`, `PutLink`, read streams (`GetOpen` → `GetHead`, `GetData`…,
//! `GetEnd`) and `List`. Disk work runs on the blocking pool, one chunk at a time, so the frame
//! loop and other jobs never wait on a disk.

use std::ffi::CString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::credit::Credit;
use super::outbox::Outbox;
use crate::proto::agent::AgentMsg;
use crate::proto::files::{
    FileKind, FileStat, GetOpen, ListEntry, Meta, PutDir, PutLink, PutOpen, Stat, DATA_CHUNK,
};

/// What the frame loop hands a write stream.
#[derive(Debug)]
pub(super) enum PutItem {
    Data(ByteBuf),
    End(String),
    /// `Kill`: abandon the stream.
    Abort,
}

/// A write or read stream, for `PutData`/`PutEnd`, `Credit` and `Kill`.
pub(super) struct StreamSlot {
    pub put: Option<mpsc::UnboundedSender<PutItem>>,
    /// A read stream's send credit.
    pub credit: Option<Arc<Credit>>,
    pub cancel: CancellationToken,
}

fn err(what: &str, path: &str, e: impl std::fmt::Display) -> AgentMsg {
    AgentMsg::Error {
        message: format!("{what} {path}: {e}"),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

pub(super) fn file_stat(m: &Metadata, path: &Path) -> FileStat {
    let ft = m.file_type();
    let kind = if ft.is_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    let target = match kind {
        FileKind::Symlink => fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned()),
        _ => None,
    };
    FileStat {
        kind,
        size: m.len(),
        mode: m.mode() & 0o7777,
        mtime_s: m.mtime(),
        mtime_ns: m.mtime_nsec().clamp(0, 999_999_999) as u32,
        uid: m.uid(),
        gid: m.gid(),
        target,
    }
}

/// Answer a `Stat`.
pub(super) async fn stat(req: Stat) -> AgentMsg {
    let path = req.path.clone();
    let r = blocking(move || {
        let p = &resolve(&req.path);
        let m = match req.follow {
            true => fs::metadata(p),
            false => fs::symlink_metadata(p),
        };
        match m {
            Ok(m) => Ok(Some(file_stat(&m, p))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await;
    match r {
        Ok(s) => AgentMsg::Stated(s),
        Err(e) => err("stat", &path, e),
    }
}

/// Where a requested path is: a relative one (or `~/…`) is relative to the login's home
/// directory (`$HOME`), as with scp; else to the agent's working directory.
pub(super) fn resolve(path: &str) -> PathBuf {
    let rel = match path {
        "~" => "",
        p => p.strip_prefix("~/").unwrap_or(p),
    };
    if Path::new(rel).is_absolute() {
        return PathBuf::from(rel);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(rel),
        None if rel.is_empty() => PathBuf::from("."),
        None => PathBuf::from(rel),
    }
}

/// An error's message without tempfile's ` at path "…/.crew-put-XXXX"` (the random name
/// means nothing to an operator; the directory is named by the caller).
pub(crate) fn os_part(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" at path \"") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn timespec(t: Option<(i64, u32)>) -> [libc::timespec; 2] {
    let (sec, nsec) = match t {
        Some((s, n)) => (s as libc::time_t, n as libc::c_long),
        None => (0, libc::UTIME_OMIT),
    };
    // atime: now; mtime: given (or unchanged).
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ]
}

/// Owner (as root only), then mode (chown clears set-id bits), then mtime, of an open file.
fn apply_meta_fd(f: &File, meta: &Meta) -> io::Result<()> {
    let fd = f.as_raw_fd();
    if let (Some((uid, gid)), true) = (meta.owner, is_root()) {
        // SAFETY: fchown on a descriptor we own.
        if unsafe { libc::fchown(fd, uid, gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    f.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))?;
    if meta.mtime.is_some() {
        let ts = timespec(meta.mtime);
        // SAFETY: `ts` is a valid array of two timespecs for the duration of the call.
        if unsafe { libc::futimens(fd, ts.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The same by path; `link` for a symlink itself (no mode: links have none on Linux).
fn apply_meta_path(p: &Path, meta: &Meta, link: bool) -> io::Result<()> {
    let c = cpath(p)?;
    if let (Some((uid, gid)), true) = (meta.owner, is_root()) {
        // SAFETY: c is a valid NUL-terminated path.
        let rc = unsafe {
            match link {
                true => libc::lchown(c.as_ptr(), uid, gid),
                false => libc::chown(c.as_ptr(), uid, gid),
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if !link {
        fs::set_permissions(p, fs::Permissions::from_mode(meta.mode & 0o7777))?;
    }
    if meta.mtime.is_some() {
        let ts = timespec(meta.mtime);
        let flags = if link { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
        // SAFETY: c is a valid path and `ts` two valid timespecs for the call.
        if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The directory a new entry at `path` goes into, and a check that `path` is not a directory.
fn parent_of(path: &Path) -> io::Result<PathBuf> {
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ));
    }
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory (a file cannot replace it)",
            ));
        }
    }
    Ok(match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

struct Writing {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    dir: PathBuf,
}

/// Run one write stream to its end and answer it (`FileWritten` or `Error`). The temp file
/// goes away on every path but success.
pub(super) async fn put(
    id: u64,
    open: PutOpen,
    mut rx: mpsc::UnboundedReceiver<PutItem>,
    outbox: &Outbox,
) -> AgentMsg {
    let path = open.path.clone();
    let target = resolve(&open.path);
    let t = target.clone();
    let mut w = match blocking(move || {
        let dir = parent_of(&t)?;
        let tmp = tempfile::Builder::new()
            .prefix(".crew-put-")
            .tempfile_in(&dir)
            .map_err(|e| {
                // tempfile's message names its random file: say what an operator can act on.
                let what = format!("creating a temp file in {}: {}", dir.display(), os_part(&e));
                io::Error::new(e.kind(), what)
            })?;
        Ok(Writing {
            tmp,
            hasher: Sha256::new(),
            written: 0,
            dir,
        })
    })
    .await
    {
        Ok(w) => w,
        Err(e) => return err("put", &path, e),
    };
    loop {
        let Some(item) = rx.recv().await else {
            return err("put", &path, "the stream ended without its checksum");
        };
        match item {
            PutItem::Data(data) => {
                let n = data.len() as u64;
                if w.written + n > open.size {
                    return err(
                        "put",
                        &path,
                        format!("more than the announced {} bytes", open.size),
                    );
                }
                w = match blocking(move || {
                    w.tmp
                        .as_file_mut()
                        .write_all(&data)
                        .map_err(|e| io::Error::new(e.kind(), format!("writing: {e}")))?;
                    w.hasher.update(&data);
                    w.written += n;
                    Ok(w)
                })
                .await
                {
                    Ok(w) => w,
                    Err(e) => return err("put", &path, e),
                };
                if n > 0 && !outbox.control(id, &AgentMsg::Credit { bytes: n }).await {
                    return err("put", &path, "the daemon went away");
                }
            }
            PutItem::Abort => return err("put", &path, "cancelled"),
            PutItem::End(sha256) => {
                let meta = open.meta.clone();
                let size = open.size;
                let r = blocking(move || {
                    let actual = hex::encode(w.hasher.finalize());
                    if w.written != size {
                        return Err(io::Error::other(format!(
                            "got {} bytes, {size} announced",
                            w.written
                        )));
                    }
                    if !actual.eq_ignore_ascii_case(sha256.trim()) {
                        return Err(io::Error::other(format!(
                            "checksum mismatch: wrote sha256 {actual}, the sender read {sha256}"
                        )));
                    }
                    let f = w.tmp.as_file();
                    apply_meta_fd(f, &meta).map_err(|e| {
                        io::Error::new(e.kind(), format!("setting owner, mode or mtime: {e}"))
                    })?;
                    f.sync_all()
                        .map_err(|e| io::Error::new(e.kind(), format!("fsync: {e}")))?;
                    // A directory may have appeared at the target meanwhile: never replace it.
                    parent_of(&target)?;
                    w.tmp.persist(&target).map_err(|e| {
                        io::Error::new(e.error.kind(), format!("rename into place: {}", e.error))
                    })?;
                    sync_dir(&w.dir);
                    Ok((w.written, actual))
                })
                .await;
                return match r {
                    Ok((size, sha256)) => AgentMsg::FileWritten { size, sha256 },
                    Err(e) => err("put", &path, e),
                };
            }
        }
    }
}

/// Answer a `PutDir`: make the directory if missing, set its metadata.
pub(super) async fn put_dir(req: PutDir) -> AgentMsg {
    let path = req.path.clone();
    let r = blocking(move || {
        let p = &resolve(&req.path);
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("exists and is a {}, not a directory", kind_of(&m).as_str()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(p)?,
            Err(e) => return Err(e),
        }
        apply_meta_path(p, &req.meta, false)
    })
    .await;
    match r {
        Ok(()) => AgentMsg::FileWritten {
            size: 0,
            sha256: String::new(),
        },
        Err(e) => err("mkdir", &path, e),
    }
}

fn kind_of(m: &Metadata) -> FileKind {
    file_stat(m, Path::new("")).kind
}

/// Answer a `PutLink`: a symlink made beside the target and renamed over it.
pub(super) async fn put_link(req: PutLink) -> AgentMsg {
    let path = req.path.clone();
    let r = blocking(move || {
        let p = &resolve(&req.path);
        let dir = parent_of(p)?;
        let mut tmp = None;
        for i in 0..16u32 {
            let name = dir.join(format!(".crew-link-{}-{i}", std::process::id()));
            match std::os::unix::fs::symlink(&req.target, &name) {
                Ok(()) => {
                    tmp = Some(name);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        let tmp = tmp.ok_or_else(|| io::Error::other("no free temp name for the link"))?;
        let done = apply_meta_path(&tmp, &req.meta, true).and_then(|()| fs::rename(&tmp, p));
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done?;
        sync_dir(&dir);
        Ok(())
    })
    .await;
    match r {
        Ok(()) => AgentMsg::FileWritten {
            size: 0,
            sha256: String::new(),
        },
        Err(e) => err("symlink", &path, e),
    }
}

/// Run one read stream: `GetHead`, `GetData`… within `credit`, `GetEnd`; or `Error`. Every
/// message goes on the data lane, in order.
pub(super) async fn get(
    id: u64,
    req: GetOpen,
    credit: &Credit,
    cancel: &CancellationToken,
    outbox: &Outbox,
) {
    let path = req.path.clone();
    let opened = blocking(move || {
        let p = &resolve(&req.path);
        let f = File::open(p)?;
        let m = f.metadata()?;
        if m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory (use -r)",
            ));
        }
        if !m.is_file() {
            return Err(io::Error::other(format!(
                "is a {}, not a regular file",
                kind_of(&m).as_str()
            )));
        }
        Ok((f, file_stat(&m, p)))
    })
    .await;
    let (mut f, head) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = outbox.data(id, &err("fetch", &path, e)).await;
            return;
        }
    };
    if !outbox.data(id, &AgentMsg::GetHead(head)).await {
        return;
    }
    let mut hasher = Sha256::new();
    loop {
        tokio::select! {
            _ = credit.ready() => {}
            _ = cancel.cancelled() => {
                let _ = outbox.data(id, &err("fetch", &path, "cancelled")).await;
                return;
            }
        }
        let want = credit.take(DATA_CHUNK);
        if want == 0 {
            continue;
        }
        let read = blocking(move || {
            let mut buf = vec![0u8; want];
            let mut n = 0;
            while n < want {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(n);
            Ok((f, buf))
        })
        .await;
        let buf = match read {
            Ok((back, buf)) => {
                f = back;
                buf
            }
            Err(e) => {
                let _ = outbox
                    .data(id, &err("fetch", &path, format!("reading: {e}")))
                    .await;
                return;
            }
        };
        credit.give_back(want - buf.len());
        if buf.is_empty() {
            break;
        }
        hasher.update(&buf);
        let msg = AgentMsg::GetData {
            data: ByteBuf::from(buf),
        };
        if !outbox.data(id, &msg).await {
            return;
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    let _ = outbox.data(id, &AgentMsg::GetEnd { sha256 }).await;
}

/// Entries per `Listing` frame.
const LIST_BATCH: usize = 512;

/// Answer a `List`: every entry under `path` (not following symlinks), parents before their
/// contents, in `Listing` frames, then `ListEnd`; or `Error`.
pub(super) async fn list(id: u64, path: String, cancel: &CancellationToken, outbox: &Outbox) {
    let (tx, mut rx) = mpsc::channel::<io::Result<Vec<ListEntry>>>(4);
    let root = path.clone();
    let stop = cancel.clone();
    tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        let r = walk(&resolve(&root), String::new(), &mut batch, &tx, &stop);
        let last = match r {
            Ok(()) => Ok(batch),
            Err(e) => Err(e),
        };
        let _ = tx.blocking_send(last);
    });
    while let Some(r) = rx.recv().await {
        let msg = match r {
            Ok(entries) if entries.is_empty() => continue,
            Ok(entries) => AgentMsg::Listing { entries },
            Err(e) => {
                let _ = outbox.data(id, &err("list", &path, e)).await;
                return;
            }
        };
        if !outbox.data(id, &msg).await {
            return;
        }
    }
    let _ = outbox.data(id, &AgentMsg::ListEnd).await;
}

fn walk(
    p: &Path,
    rel: String,
    batch: &mut Vec<ListEntry>,
    tx: &mpsc::Sender<io::Result<Vec<ListEntry>>>,
    stop: &CancellationToken,
) -> io::Result<()> {
    if stop.is_cancelled() {
        return Err(io::Error::other("cancelled"));
    }
    let m = fs::symlink_metadata(p)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    let stat = file_stat(&m, p);
    let is_dir = stat.kind == FileKind::Dir;
    batch.push(ListEntry {
        path: rel.clone(),
        stat,
    });
    if batch.len() >= LIST_BATCH {
        let full = std::mem::take(batch);
        if tx.blocking_send(Ok(full)).is_err() {
            return Err(io::Error::other("cancelled"));
        }
    }
    if !is_dir {
        return Ok(());
    }
    let mut names: Vec<_> = fs::read_dir(p)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let Some(n) = name.to_str() else {
            return Err(io::Error::other(format!(
                "{}: a name that is not UTF-8 ({})",
                p.display(),
                name.to_string_lossy()
            )));
        };
        let child_rel = if rel.is_empty() {
            n.to_string()
        } else {
            format!("{rel}/{n}")
        };
        walk(&p.join(n), child_rel, batch, tx, stop)?;
    }
    Ok(())
}
