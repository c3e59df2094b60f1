//! `ReadFile` and `WriteFile`: whole small files, checksummed; writes are atomic.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::proto::agent::{AgentMsg, FileData, ReadFile, WriteFile};
use crate::proto::frame::MAX_FRAME;

/// Largest file that fits in one `FileData` frame, leaving room for its envelope.
pub(super) const MAX_FILE: u64 = (MAX_FRAME - 64 * 1024) as u64;

pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Answer a `ReadFile`: `FileData` or `Error`.
pub(super) async fn read(req: ReadFile) -> AgentMsg {
    let path = req.path.clone();
    match tokio::task::spawn_blocking(move || read_blocking(&req)).await {
        Ok(Ok(data)) => AgentMsg::FileData(data),
        Ok(Err(e)) => AgentMsg::Error {
            message: format!("read {path}: {e}"),
        },
        Err(e) => AgentMsg::Error {
            message: format!("read {path}: {e}"),
        },
    }
}

fn read_blocking(req: &ReadFile) -> io::Result<FileData> {
    let limit = req.max_size.min(MAX_FILE);
    let mut f = std::fs::File::open(&req.path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(io::Error::other(format!(
            "file is {} bytes, over the limit of {limit}",
            meta.len()
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // Read one byte past the limit: the file may have grown since stat.
    (&mut f).take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "file grew past the limit of {limit} bytes while being read"
        )));
    }
    Ok(FileData {
        sha256: sha256_hex(&data),
        mode: meta.permissions().mode() & 0o7777,
        data,
    })
}

/// Answer a `WriteFile`: `FileWritten` or `Error` (the target is untouched on any error).
pub(super) async fn write(req: WriteFile) -> AgentMsg {
    let path = req.path.clone();
    match tokio::task::spawn_blocking(move || write_blocking(&req)).await {
        Ok(Ok((size, sha256))) => AgentMsg::FileWritten { size, sha256 },
        Ok(Err(e)) => AgentMsg::Error {
            message: format!("write {path}: {e}"),
        },
        Err(e) => AgentMsg::Error {
            message: format!("write {path}: {e}"),
        },
    }
}

fn write_blocking(req: &WriteFile) -> io::Result<(u64, String)> {
    let actual = sha256_hex(&req.data);
    if !actual.eq_ignore_ascii_case(req.sha256.trim()) {
        return Err(io::Error::other(format!(
            "checksum mismatch: data has sha256 {actual}, request says {}",
            req.sha256
        )));
    }
    let path = Path::new(&req.path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.file_name().is_none() {
        return Err(io::Error::other("path names no file"));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".crew-write-")
        .tempfile_in(dir)?;
    tmp.write_all(&req.data)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(req.mode & 0o7777))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((req.data.len() as u64, actual))
}
