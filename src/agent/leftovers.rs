//! `Reap`: find what dead agents of this user left in the temp root, kill it and remove it.
//!
//! An agent dir (`crew-agent-PID-*`, see `jobdir`) whose `lock` nobody holds belongs to an agent
//! that is gone. Each `pg-PGID` marker in it names a job's process group that was running when
//! it died. A process counts as that job's leftover when it is in group PGID *and* in the dead
//! agent's session (recorded in `lock`): a group number reused by an unrelated process since
//! then is not touched. Leftovers get SIGKILL (the group, then each pid found), and the dead
//! agent's dir goes. A dir without a `lock` (an agent still creating it: `lock` appears only
//! once locked; or an older build's) is left alone.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::jobdir::{AGENT_PREFIX, LOCK, PG_PREFIX};
use crate::proto::agent::Leftover;

/// One process as /proc shows it.
struct Proc {
    pid: u32,
    pgid: u32,
    sid: u32,
    comm: String,
}

/// Kill and remove the leftovers of dead agents under `root` (skipping `own`, this agent's
/// dir). Blocking: run on the blocking pool.
pub(super) fn reap(root: &Path, own: Option<&Path>) -> io::Result<Vec<Leftover>> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut found = Vec::new();
    let mut procs: Option<Vec<Proc>> = None;
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(AGENT_PREFIX) {
            continue;
        }
        let dir = entry.path();
        if own == Some(dir.as_path()) {
            continue;
        }
        // Only real directories of ours (no symlink planted by someone else).
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let Some((lock, agent_pid, sid)) = dead_lock(&dir) else {
            continue;
        };
        let groups = markers(&dir);
        if !groups.is_empty() {
            let procs = procs.get_or_insert_with(scan_proc);
            for (pgid, job) in groups {
                let members: Vec<(u32, String)> = procs
                    .iter()
                    .filter(|p| p.pgid == pgid && p.sid == sid)
                    .map(|p| (p.pid, p.comm.clone()))
                    .collect();
                if members.is_empty() {
                    continue;
                }
                kill(-(pgid as i32));
                for (pid, _) in &members {
                    kill(*pid as i32);
                }
                found.push(Leftover {
                    agent_pid,
                    job,
                    pgid,
                    processes: members,
                });
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing the dead agent's dir {}: {e}", dir.display());
        }
        drop(lock);
    }
    Ok(found)
}

fn kill(target: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(target, libc::SIGKILL) };
}

/// The lock of a dead agent's dir, taken now (so two agents do not reap one dir), with the
/// pid and session it recorded; `None` when its agent lives (or the dir has no lock).
fn dead_lock(dir: &Path) -> Option<(File, u32, u32)> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None; // its agent holds it: alive
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u32>().ok());
    let (Some(Some(pid)), Some(Some(sid))) = (it.next(), it.next()) else {
        // Written before it is renamed into place: unreadable only if tampered with.
        // Nothing to kill; the dir still goes.
        return Some((f, 0, 0));
    };
    Some((f, pid, sid))
}

/// The `pg-PGID -> job-ID` markers of a dir.
fn markers(dir: &Path) -> Vec<(u32, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let pgid = name
                .to_str()?
                .strip_prefix(PG_PREFIX)?
                .parse::<u32>()
                .ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let job = target.to_str()?.strip_prefix("job-")?.parse::<u64>().ok()?;
            (pgid > 1).then_some((pgid, job))
        })
        .collect()
}

/// Every process /proc shows: pid, process group, session, command name.
fn scan_proc() -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            parse_stat(pid, &stat)
        })
        .collect()
}

/// `pid (comm) state ppid pgrp session ...`; zombies are not leftovers.
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    Some(Proc {
        pid,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        comm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let p = parse_stat(42, "42 (a) b (c) S 1 40 39 0 -1").expect("parsed");
        assert_eq!(
            (p.pid, p.pgid, p.sid, p.comm.as_str()),
            (42, 40, 39, "a) b (c")
        );
        assert!(parse_stat(43, "43 (z) Z 1 40 39").is_none(), "zombie");
        assert!(parse_stat(44, "garbage").is_none());
    }

    #[test]
    fn a_live_agents_dir_and_foreign_entries_are_left_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = super::super::jobdir::JobDirs::new(root.path().to_path_buf());
        let job = live.create(1).expect("job dir");
        live.mark(999_999, 1);
        std::fs::create_dir(root.path().join("crew-agent-1-nolock")).expect("mkdir");
        std::fs::write(root.path().join("crew-agent-2-file"), "x").expect("file");
        let dead = root.path().join("crew-agent-3-dead");
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join(LOCK), "3 3\n").expect("lock");
        std::os::unix::fs::symlink("job-7", dead.join("pg-999998")).expect("marker");
        let got = reap(root.path(), None).expect("reap");
        assert!(got.is_empty(), "no process in those groups: {got:?}");
        assert!(job.exists(), "a live agent's dir stays");
        assert!(root.path().join("crew-agent-1-nolock").exists());
        assert!(root.path().join("crew-agent-2-file").exists());
        assert!(!dead.exists(), "a dead agent's dir goes");
        live.remove_all();
    }
}
