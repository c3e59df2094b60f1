//! Copies to and from agentless hosts, over plain exec channels running small POSIX shell
//! scripts (coreutils: `mktemp`, `sha256sum`, `sync`, `touch`, `mv`; GNU `find` for `-r`
//! fetches), with the same guarantees as through the agent: a temp file beside the target,
//! sha256 checked end to end, fsync, atomic rename; nothing left at the target on failure.
//!
//! A put writes stdin into the temp file and prints its sha256 (phase one); only when it is
//! the sender's does a second script set owner, mode and mtime and rename it (phase two),
//! else the temp file is removed.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fetch::FetchPlan;
use super::local::{self, LocalFile};
use super::plan::human_bytes;
use super::put::Item;
use super::{file_error, killed, Outcome, Progress};
use crate::daemon::pool::ssh_error;
use crate::daemon::run::HostJob;
use crate::daemon::ssh::{ScriptEnd, SshSession};
use crate::model::{ErrorKind, HostError};
use crate::proto::files::Meta;

const IS_DIR: &str = r#"if [ -d "$1" ]; then echo dir; elif [ -e "$1" ] || [ -L "$1" ]; then echo other; else echo none; fi"#;

const MKDIR: &str = r#"p=$1
if [ -e "$p" ] || [ -L "$p" ]; then
  [ -d "$p" ] || { echo "$p: exists and is not a directory" >&2; exit 1; }
else mkdir -- "$p" || exit 1; fi
if [ -n "$4" ] && [ "$(id -u)" = 0 ]; then chown -- "$4" "$p" || exit 1; fi
chmod -- "$2" "$p" || exit 1
if [ -n "$3" ]; then touch -m -d "@$3" -- "$p" || exit 1; fi"#;

const SYMLINK: &str = r#"p=$1; d=$(dirname -- "$p")
if [ -d "$p" ] && [ ! -L "$p" ]; then echo "$p: is a directory (a link cannot replace it)" >&2; exit 1; fi
tmp="$d/.crew-link-$$"
rm -f -- "$tmp"
if ln -s -- "$2" "$tmp" && mv -f -T -- "$tmp" "$p"; then exit 0; fi
rm -f -- "$tmp"; exit 1"#;

const PUT_WRITE: &str = r#"p=$1; d=$(dirname -- "$p")
if [ -d "$p" ] && [ ! -L "$p" ]; then echo "$p: is a directory (a file cannot replace it)" >&2; exit 1; fi
tmp=$(mktemp "$d/.crew-put-XXXXXX") || exit 1
printf 'tmp %s\n' "$tmp"
if ! cat > "$tmp"; then rm -f -- "$tmp"; exit 1; fi
sync -- "$tmp" 2>/dev/null || sync
s=$(sha256sum < "$tmp") || { rm -f -- "$tmp"; exit 1; }
printf 'sha %s\n' "${s%% *}""#;

const PUT_COMMIT: &str = r#"tmp=$1; p=$2
if [ -n "$5" ] && [ "$(id -u)" = 0 ]; then chown -- "$5" "$tmp" || { rm -f -- "$tmp"; exit 1; }; fi
chmod -- "$3" "$tmp" || { rm -f -- "$tmp"; exit 1; }
if [ -n "$4" ]; then touch -m -d "@$4" -- "$tmp" || { rm -f -- "$tmp"; exit 1; }; fi
if [ -d "$p" ] && [ ! -L "$p" ]; then rm -f -- "$tmp"; echo "$p: is a directory (a file cannot replace it)" >&2; exit 1; fi
mv -f -- "$tmp" "$p" || { rm -f -- "$tmp"; exit 1; }"#;

const REMOVE: &str = r#"rm -f -- "$1""#;

/// Every entry under `$1` (following it when it is a link): type, mode, mtime, size, link
/// target, path relative to it; NUL-separated.
const LIST: &str = r#"find -H "$1" -printf '%y\t%m\t%T@\t%s\t%l\t%P\0'"#;

const CAT: &str = r#"exec cat -- "$1""#;
const SHA: &str = r#"s=$(sha256sum < "$1") || exit 1; printf '%s\n' "${s%% *}""#;

fn mode_arg(m: u32) -> String {
    format!("{:o}", m & 0o7777)
}

fn mtime_arg(meta: &Meta) -> String {
    meta.mtime
        .map(|(s, n)| format!("{s}.{n:09}"))
        .unwrap_or_default()
}

fn owner_arg(meta: &Meta) -> String {
    meta.owner
        .map(|(u, g)| format!("{u}:{g}"))
        .unwrap_or_default()
}

/// A path as the scripts take it: `~/x` is `x` (they run in `$HOME`).
fn hp(path: &str) -> &str {
    match path {
        "~" => ".",
        p => p.strip_prefix("~/").unwrap_or(p),
    }
}

async fn script(s: &SshSession, script: &str, args: &[&str]) -> Result<ScriptEnd, HostError> {
    s.script(script, args).await.map_err(ssh_error)
}

fn checked(end: ScriptEnd, what: &str) -> Result<ScriptEnd, HostError> {
    match end.ok() {
        true => Ok(end),
        false => Err(file_error(format!("{what}: {}", end.why()))),
    }
}

pub(super) async fn is_dir(s: &SshSession, path: &str) -> Result<Option<bool>, HostError> {
    let end = checked(script(s, IS_DIR, &[hp(path)]).await?, path)?;
    Ok(match String::from_utf8_lossy(&end.stdout).trim() {
        "dir" => Some(true),
        "other" => Some(false),
        _ => None,
    })
}

pub(super) async fn mkdir(s: &SshSession, path: &str, meta: &Meta) -> Result<(), HostError> {
    let args = [
        hp(path),
        &mode_arg(meta.mode),
        &mtime_arg(meta),
        &owner_arg(meta),
    ];
    checked(script(s, MKDIR, &args).await?, &format!("mkdir {path}")).map(|_| ())
}

pub(super) async fn symlink(
    s: &SshSession,
    path: &str,
    target: &str,
    _meta: &Meta,
) -> Result<(), HostError> {
    checked(
        script(s, SYMLINK, &[hp(path), target]).await?,
        &format!("symlink {path}"),
    )
    .map(|_| ())
}

/// The `tmp` and `sha` lines phase one printed.
fn written(end: &ScriptEnd) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(&end.stdout);
    let mut tmp = None;
    let mut sha = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("tmp ") {
            tmp = Some(t.to_string());
        } else if let Some(s) = line.strip_prefix("sha ") {
            sha = Some(s.trim().to_string());
        }
    }
    (tmp, sha)
}

/// Stream one file of a pass into `path`; its size and sha256.
pub(super) async fn put_file(
    s: &SshSession,
    path: &str,
    meta: &Meta,
    size: u64,
    rx: &mut mpsc::Receiver<Item>,
    cancel: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Result<(u64, String), HostError> {
    let feed = s.feed(PUT_WRITE, &[hp(path)]).await.map_err(ssh_error)?;
    let mut fail: Option<HostError> = None;
    let mut want: Option<String> = None;
    loop {
        let item = tokio::select! {
            i = rx.recv() => i,
            _ = cancel.cancelled() => { fail = Some(killed()); break; }
        };
        match item {
            Some(Item::Chunk(c)) => {
                let w = tokio::select! {
                    r = feed.write(&c) => r,
                    _ = cancel.cancelled() => { fail = Some(killed()); break; }
                };
                if let Err(e) = w {
                    fail = Some(file_error(format!("put {path}: {e}")));
                    break;
                }
                progress.add(c.len() as u64);
            }
            Some(Item::End(sha)) => {
                want = Some(sha);
                break;
            }
            Some(Item::Failed(why)) => {
                fail = Some(HostError::new(
                    ErrorKind::Internal,
                    format!("reading {why}"),
                ));
                break;
            }
            Some(Item::Begin(k)) => {
                fail = Some(HostError::new(
                    ErrorKind::Internal,
                    format!("put: file {k} began before the last one ended"),
                ));
                break;
            }
            None => {
                fail = Some(HostError::new(
                    ErrorKind::Internal,
                    "the copy's reader stopped",
                ));
                break;
            }
        }
    }
    // Phase one ends either way (EOF on its stdin); its temp file is removed unless it is
    // complete and its checksum is the sender's.
    let end = feed.finish().await.map_err(ssh_error)?;
    let (tmp, got) = written(&end);
    let verdict = match (fail, want, end.ok()) {
        // A write that failed because the script ended (a full disk, …): its reason.
        (Some(e), _, false) if e.kind == ErrorKind::File => {
            Err(file_error(format!("put {path}: {}", end.why())))
        }
        (Some(e), _, _) => Err(e),
        (None, _, false) => Err(file_error(format!("put {path}: {}", end.why()))),
        (None, Some(want), true) if got.as_deref() == Some(want.as_str()) => Ok(want),
        (None, want, true) => Err(file_error(format!(
            "put {path}: checksum mismatch: wrote sha256 {}, the sender read {}",
            got.unwrap_or_default(),
            want.unwrap_or_default()
        ))),
    };
    let Some(tmp) = tmp else {
        return verdict.map(|sha| (size, sha));
    };
    match verdict {
        Ok(sha) => {
            let args = [
                tmp.as_str(),
                hp(path),
                &mode_arg(meta.mode),
                &mtime_arg(meta),
                &owner_arg(meta),
            ];
            checked(script(s, PUT_COMMIT, &args).await?, &format!("put {path}"))?;
            Ok((size, sha))
        }
        Err(e) => {
            let _ = script(s, REMOVE, &[&tmp]).await;
            Err(e)
        }
    }
}

struct Listed {
    kind: char,
    mode: u32,
    mtime: (i64, u32),
    size: u64,
    target: String,
    rel: String,
}

fn parse_list(out: &[u8]) -> Result<Vec<Listed>, String> {
    let mut v = Vec::new();
    for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text =
            String::from_utf8(rec.to_vec()).map_err(|_| "a name that is not UTF-8".to_string())?;
        let f: Vec<&str> = text.splitn(6, '\t').collect();
        let [kind, mode, mtime, size, target, rel] = f[..] else {
            return Err(format!("unexpected listing line {text:?}"));
        };
        let (secs, frac) = mtime.split_once('.').unwrap_or((mtime, "0"));
        let frac = format!("{frac:0<9}");
        v.push(Listed {
            kind: kind.chars().next().unwrap_or('?'),
            mode: u32::from_str_radix(mode, 8).unwrap_or(0o644),
            mtime: (
                secs.parse().unwrap_or(0),
                frac.get(..9).and_then(|f| f.parse().ok()).unwrap_or(0),
            ),
            size: size.parse().unwrap_or(0),
            target: target.to_string(),
            rel: rel.to_string(),
        });
    }
    Ok(v)
}

/// One agentless host's share of a fetch.
pub(super) async fn fetch(
    job: &HostJob<'_>,
    plan: &FetchPlan,
    s: &SshSession,
    cancel: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Outcome {
    let internal = |e: std::io::Error| HostError::new(ErrorKind::Internal, format!("here: {e}"));
    let mut lists = Vec::new();
    for remote in &plan.remotes {
        let mut d = s.drain(LIST, &[hp(remote)]).await.map_err(ssh_error)?;
        let mut out = Vec::new();
        while let Some(c) = d.next().await {
            out.extend_from_slice(&c);
        }
        let end = checked(d.finish().await.map_err(ssh_error)?, remote)?;
        drop(end);
        let list = parse_list(&out).map_err(|e| file_error(format!("{remote}: {e}")))?;
        match list.first() {
            Some(root) if root.kind == 'd' && !plan.recursive => {
                return Err(file_error(format!(
                    "{remote}: is a directory (use -r to fetch it and what it holds)"
                )))
            }
            None => return Err(file_error(format!("{remote}: no such file or directory"))),
            _ => {}
        }
        lists.push((remote.clone(), list));
    }
    let total: u64 = lists
        .iter()
        .flat_map(|(_, l)| l.iter())
        .filter(|e| e.kind == 'f')
        .map(|e| e.size)
        .sum();
    if let Some(max) = plan.max_size {
        if total > max {
            return Err(file_error(format!(
                "{total} bytes, over the limit of {max}"
            )));
        }
    }
    progress.set_total(total);
    let (mut files, mut last) = (0usize, None);
    for (remote, list) in &lists {
        let base = plan.local_base(&job.host.name, remote);
        let mut dirs: Vec<(PathBuf, u32, (i64, u32))> = Vec::new();
        for e in list {
            let to = if e.rel.is_empty() {
                base.clone()
            } else {
                base.join(&e.rel)
            };
            let from = if e.rel.is_empty() {
                remote.clone()
            } else {
                format!("{}/{}", remote.trim_end_matches('/'), e.rel)
            };
            match e.kind {
                'd' => {
                    local::mkdir(to.clone()).await.map_err(internal)?;
                    dirs.push((to, e.mode, e.mtime));
                }
                'l' => local::symlink(to, e.target.clone())
                    .await
                    .map_err(internal)?,
                'f' => {
                    if cancel.is_cancelled() {
                        return Err(killed());
                    }
                    let mut file = LocalFile::create(to.clone()).await.map_err(internal)?;
                    let mut d = s.drain(CAT, &[hp(&from)]).await.map_err(ssh_error)?;
                    loop {
                        let c = tokio::select! {
                            c = d.next() => c,
                            _ = cancel.cancelled() => return Err(killed()),
                        };
                        let Some(c) = c else { break };
                        progress.add(c.len() as u64);
                        file = file.write(c).await.map_err(internal)?;
                    }
                    checked(d.finish().await.map_err(ssh_error)?, &from)?;
                    let sha = checked(script(s, SHA, &[hp(&from)]).await?, &from)?;
                    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_string();
                    let (size, sha) = file
                        .finish(sha, e.mode, Some(e.mtime))
                        .await
                        .map_err(|e| file_error(format!("{from}: {e}")))?;
                    files += 1;
                    last = Some((to, size, sha));
                }
                other => {
                    return Err(file_error(format!(
                        "{from}: a special file ({other}): not copied"
                    )))
                }
            }
        }
        for (to, mode, mtime) in dirs.into_iter().rev() {
            local::dir_meta(to, mode, mtime).await.map_err(internal)?;
        }
    }
    Ok(match (files, last) {
        (1, Some((to, size, sha))) => format!(
            "fetched {} into {} ({}, sha256 {sha}; agentless)",
            plan.remotes.join(" "),
            to.display(),
            human_bytes(size)
        ),
        _ => format!(
            "fetched {files} file(s) ({}) into {} (agentless)",
            human_bytes(total),
            plan.local_base(&job.host.name, "").display()
        ),
    })
}
