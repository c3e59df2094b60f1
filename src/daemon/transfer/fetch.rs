//! `fetch`: each host's files into `LOCALDIR/<host>/<path>` (or one file to an exact path for
//! a heist step). A file streams within the credit its writer grants as the bytes reach the
//! disk (the link's per-request window, 1 MiB): memory per host stays bounded whatever the
//! size.

use std::path::{Component, Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::local::{self, LocalFile};
use super::plan::human_bytes;
use super::put::file_link_error;
use super::{file_error, killed, Outcome, Progress};
use crate::daemon::link::AgentLink;
use crate::daemon::run::HostJob;
use crate::model::{ErrorKind, HostError};
use crate::proto::agent::AgentMsg;
use crate::proto::files::{FileKind, FileStat, ListEntry};

pub struct FetchPlan {
    pub remotes: Vec<String>,
    pub dest: Dest,
    pub recursive: bool,
    pub max_size: Option<u64>,
}

pub enum Dest {
    /// `dir/<host>/<remote path>`.
    PerHost(PathBuf),
    /// Exactly this path (one remote file).
    Exact(PathBuf),
}

impl FetchPlan {
    pub fn new(remotes: Vec<String>, dir: PathBuf, recursive: bool) -> Result<FetchPlan, String> {
        if remotes.is_empty() {
            return Err("nothing to fetch".into());
        }
        for r in &remotes {
            if r.is_empty() || Path::new(r).components().any(|c| c == Component::ParentDir) {
                return Err(format!(
                    "{r:?}: a remote path to fetch must not be empty or contain `..`"
                ));
            }
        }
        Ok(FetchPlan {
            remotes,
            dest: Dest::PerHost(dir),
            recursive,
            max_size: None,
        })
    }

    pub fn to(remote: String, local: PathBuf, max_size: Option<u64>) -> FetchPlan {
        FetchPlan {
            remotes: vec![remote],
            dest: Dest::Exact(local),
            recursive: false,
            max_size,
        }
    }

    /// Where `remote` of `host` lands.
    pub fn local_base(&self, host: &str, remote: &str) -> PathBuf {
        match &self.dest {
            Dest::Exact(p) => p.clone(),
            Dest::PerHost(dir) => {
                let remote = remote.strip_prefix("~/").unwrap_or(remote);
                let rel: PathBuf = Path::new(remote)
                    .components()
                    .filter(|c| matches!(c, Component::Normal(_)))
                    .collect();
                dir.join(crate::store::file_stem(host)).join(rel)
            }
        }
    }
}

fn local_path(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The entries to fetch under one remote path.
async fn entries(
    link: &AgentLink,
    remote: &str,
    recursive: bool,
) -> Result<Vec<ListEntry>, HostError> {
    let Some(stat) = link.stat(remote, true).await.map_err(file_link_error)? else {
        return Err(file_error(format!("{remote}: no such file or directory")));
    };
    match stat.kind {
        FileKind::File => Ok(vec![ListEntry {
            path: String::new(),
            stat,
        }]),
        FileKind::Dir if !recursive => Err(file_error(format!(
            "{remote}: is a directory (use -r to fetch it and what it holds)"
        ))),
        FileKind::Dir => {
            let mut job = link.list(remote).await.map_err(file_link_error)?;
            let mut out = Vec::new();
            loop {
                match job.events.recv().await {
                    Some(AgentMsg::Listing { entries }) => out.extend(entries),
                    Some(AgentMsg::ListEnd) => return Ok(out),
                    Some(AgentMsg::Error { message }) => return Err(file_error(message)),
                    Some(other) => {
                        return Err(HostError::new(
                            ErrorKind::Internal,
                            format!("listing {remote}: unexpected {}", other.name()),
                        ))
                    }
                    None => {
                        let why = link.close_reason().unwrap_or_else(|| "link closed".into());
                        return Err(HostError::new(ErrorKind::Lost, why));
                    }
                }
            }
        }
        other => Err(file_error(format!(
            "{remote}: is a {}, not a file or directory",
            other.as_str()
        ))),
    }
}

/// One host's share of a fetch.
pub(super) async fn host(
    job: &HostJob<'_>,
    plan: &FetchPlan,
    link: &AgentLink,
    cancel: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Outcome {
    let mut all = Vec::new();
    for remote in &plan.remotes {
        let list = tokio::select! {
            l = entries(link, remote, plan.recursive) => l?,
            _ = cancel.cancelled() => return Err(killed()),
        };
        all.push((remote.clone(), list));
    }
    let total: u64 = all
        .iter()
        .flat_map(|(_, l)| l.iter())
        .filter(|e| e.stat.kind == FileKind::File)
        .map(|e| e.stat.size)
        .sum();
    if let Some(max) = plan.max_size {
        if total > max {
            return Err(file_error(format!(
                "{} is {total} bytes, over the limit of {max}",
                plan.remotes.join(" ")
            )));
        }
    }
    progress.set_total(total);
    let (mut files, mut dirs, mut links) = (0usize, 0usize, 0usize);
    let mut last: Option<(PathBuf, u64, String)> = None;
    let mut bases = Vec::new();
    for (remote, list) in &all {
        let base = plan.local_base(&job.host.name, remote);
        bases.push(base.display().to_string());
        // Directory metadata is set last, deepest first (their contents change their mtime).
        let mut dir_meta: Vec<(PathBuf, FileStat)> = Vec::new();
        for e in list {
            let to = local_path(&base, &e.path);
            let from = if e.path.is_empty() {
                remote.clone()
            } else {
                format!("{}/{}", remote.trim_end_matches('/'), e.path)
            };
            match e.stat.kind {
                FileKind::Dir => {
                    local::mkdir(to.clone())
                        .await
                        .map_err(|e| HostError::new(ErrorKind::Internal, e.to_string()))?;
                    dir_meta.push((to, e.stat.clone()));
                    dirs += 1;
                }
                FileKind::Symlink => {
                    let target = e.stat.target.clone().unwrap_or_default();
                    local::symlink(to, target)
                        .await
                        .map_err(|e| HostError::new(ErrorKind::Internal, e.to_string()))?;
                    links += 1;
                }
                FileKind::File => {
                    let (size, sha) = tokio::select! {
                        r = fetch_file(link, &from, to.clone(), progress) => r?,
                        _ = cancel.cancelled() => return Err(killed()),
                    };
                    last = Some((to, size, sha));
                    files += 1;
                }
                FileKind::Other => {
                    return Err(file_error(format!(
                        "{from}: a special file (fifo, socket or device): not copied"
                    )))
                }
            }
        }
        for (to, st) in dir_meta.into_iter().rev() {
            local::dir_meta(to, st.mode, (st.mtime_s, st.mtime_ns))
                .await
                .map_err(|e| HostError::new(ErrorKind::Internal, e.to_string()))?;
        }
    }
    Ok(match (files, dirs, links, last) {
        (1, 0, 0, Some((to, size, sha))) => format!(
            "fetched {} into {} ({}, sha256 {sha})",
            plan.remotes.join(" "),
            to.display(),
            human_bytes(size)
        ),
        _ => format!(
            "fetched {files} file(s), {dirs} directory(ies), {links} symlink(s) ({}) into {}",
            human_bytes(total),
            bases.join(" ")
        ),
    })
}

/// Stream one remote file into `to`.
async fn fetch_file(
    link: &AgentLink,
    from: &str,
    to: PathBuf,
    progress: &mut Progress<'_>,
) -> Result<(u64, String), HostError> {
    let local_err = |e: std::io::Error| HostError::new(ErrorKind::Internal, format!("here: {e}"));
    let mut job = link.get(from).await.map_err(file_link_error)?;
    let mut file: Option<LocalFile> = None;
    let mut head: Option<FileStat> = None;
    let out = async {
        loop {
            match job.events.recv().await {
                Some(AgentMsg::GetHead(st)) => {
                    file = Some(LocalFile::create(to.clone()).await.map_err(local_err)?);
                    head = Some(st);
                }
                Some(AgentMsg::GetData { data }) => {
                    let Some(f) = file.take() else {
                        return Err(HostError::new(ErrorKind::Internal, "data before the head"));
                    };
                    let n = data.len() as u64;
                    file = Some(f.write(data.into_vec()).await.map_err(local_err)?);
                    progress.add(n);
                }
                Some(AgentMsg::GetEnd { sha256 }) => {
                    let (Some(f), Some(h)) = (file.take(), head.take()) else {
                        return Err(HostError::new(ErrorKind::Internal, "end before the head"));
                    };
                    return f
                        .finish(sha256, h.mode, Some((h.mtime_s, h.mtime_ns)))
                        .await
                        .map_err(|e| file_error(format!("{from} → {}: {e}", to.display())));
                }
                Some(AgentMsg::Error { message }) => return Err(file_error(message)),
                Some(other) => {
                    return Err(HostError::new(
                        ErrorKind::Internal,
                        format!("fetching {from}: unexpected {}", other.name()),
                    ))
                }
                None => {
                    let why = link.close_reason().unwrap_or_else(|| "link closed".into());
                    return Err(HostError::new(ErrorKind::Lost, why));
                }
            }
        }
    }
    .await;
    if out.is_err() {
        // Stop the agent's side (a no-op when it already ended); the temp file goes on drop.
        let _ = job.kill(libc::SIGKILL).await;
    }
    out
}
