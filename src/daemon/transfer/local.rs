//! Files `fetch` writes on this machine: a temp file beside the target, sha256 of what was
//! written checked against the host's, fsync, mode and mtime, atomic rename. Disk work runs
//! on the blocking pool.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

fn context(e: io::Error, what: String) -> io::Error {
    // tempfile's messages name its random file: keep the OS error only.
    let text = e.to_string();
    let why = text
        .find(" at path \"")
        .map_or(text.as_str(), |i| &text[..i]);
    io::Error::new(e.kind(), format!("{what}: {why}"))
}

pub struct LocalFile {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    pub written: u64,
    target: PathBuf,
}

impl LocalFile {
    /// Start writing `target` (its directories are made as needed).
    pub async fn create(target: PathBuf) -> io::Result<LocalFile> {
        blocking(move || {
            let dir = target
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            fs::create_dir_all(&dir)
                .map_err(|e| context(e, format!("creating {}", dir.display())))?;
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory here", target.display()),
                ));
            }
            let tmp = tempfile::Builder::new()
                .prefix(".crew-fetch-")
                .tempfile_in(&dir)
                .map_err(|e| context(e, format!("creating a temp file in {}", dir.display())))?;
            Ok(LocalFile {
                tmp,
                hasher: Sha256::new(),
                written: 0,
                target,
            })
        })
        .await
    }

    pub async fn write(mut self, data: Vec<u8>) -> io::Result<LocalFile> {
        blocking(move || {
            self.tmp
                .as_file_mut()
                .write_all(&data)
                .map_err(|e| context(e, format!("writing {}", self.target.display())))?;
            self.hasher.update(&data);
            self.written += data.len() as u64;
            Ok(self)
        })
        .await
    }

    /// Check `sha256`, set `mode` and `mtime`, fsync and rename into place; the size and
    /// sha256 written.
    pub async fn finish(
        self,
        sha256: String,
        mode: u32,
        mtime: Option<(i64, u32)>,
    ) -> io::Result<(u64, String)> {
        blocking(move || {
            let actual = hex::encode(self.hasher.finalize());
            if !actual.eq_ignore_ascii_case(&sha256) {
                return Err(io::Error::other(format!(
                    "checksum mismatch: wrote sha256 {actual}, the host read {sha256}"
                )));
            }
            let f = self.tmp.as_file();
            f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
            if let Some(t) = mtime {
                let mt = std::time::UNIX_EPOCH
                    + std::time::Duration::new(t.0.max(0) as u64, t.1.min(999_999_999));
                f.set_modified(mt)?;
            }
            f.sync_all()?;
            let dir = self.target.parent().map(Path::to_path_buf);
            self.tmp.persist(&self.target).map_err(|e| {
                context(e.error, format!("renaming into {}", self.target.display()))
            })?;
            if let Some(d) = dir.and_then(|d| fs::File::open(d).ok()) {
                let _ = d.sync_all();
            }
            Ok((self.written, actual))
        })
        .await
    }
}

/// Make a local directory (and its parents).
pub async fn mkdir(path: PathBuf) -> io::Result<()> {
    blocking(move || {
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists here and is not a directory", path.display()),
            ));
        }
        fs::create_dir_all(&path).map_err(|e| context(e, format!("creating {}", path.display())))
    })
    .await
}

/// Set a local directory's mode and mtime (after its contents).
pub async fn dir_meta(path: PathBuf, mode: u32, mtime: (i64, u32)) -> io::Result<()> {
    blocking(move || {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        let f = fs::File::open(&path)?;
        let mt = std::time::UNIX_EPOCH
            + std::time::Duration::new(mtime.0.max(0) as u64, mtime.1.min(999_999_999));
        f.set_modified(mt)
    })
    .await
}

/// Make a local symlink, replacing a file or link already there.
pub async fn symlink(path: PathBuf, target: String) -> io::Result<()> {
    blocking(move || {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        fs::create_dir_all(&dir)?;
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory here", path.display()),
            ));
        }
        let tmp = dir.join(format!(".crew-link-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    })
    .await
}
