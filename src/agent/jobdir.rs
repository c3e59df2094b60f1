//! Per-job temp dirs, inside one private dir per agent.
//!
//! Every job gets a fresh empty directory as its cwd. They live in `crew-agent-<pid>-<random>`
//! (mode 0700, made under the temp root on the first job), so creating and removing them only
//! locks that directory, not the temp root every agent on the machine shares; an emptied job
//! dir goes with one `rmdir`. The agent dir is removed when the agent stops.
//!
//! State for whoever finds the dir after the agent died without removing it (see
//! `leftovers`): `lock` is held (flock) by the agent for its whole life and says `PID SID`;
//! `pg-PGID` (a symlink to `job-ID`) exists while job ID's process group PGID runs.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

pub(super) struct JobDirs {
    root: PathBuf,
    agent: Mutex<Option<AgentDir>>,
}

/// The agent's own dir and its lock (held while the file stays open).
struct AgentDir {
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

/// Name of the lock file in an agent's dir.
pub(super) const LOCK: &str = "lock";
/// Prefix of a running job's process-group marker in an agent's dir.
pub(super) const PG_PREFIX: &str = "pg-";
/// Prefix of every agent's dir in the temp root.
pub(super) const AGENT_PREFIX: &str = "crew-agent-";

impl JobDirs {
    /// Job dirs will live in a new private dir under `root` (made on first use).
    pub fn new(root: PathBuf) -> JobDirs {
        JobDirs {
            root,
            agent: Mutex::new(None),
        }
    }

    /// The agent's own dir, made now if need be (and again if making it failed before).
    fn agent_dir(&self) -> io::Result<PathBuf> {
        let mut agent = self.agent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = agent.as_ref() {
            return Ok(a.dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{AGENT_PREFIX}{}-", std::process::id()))
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&self.root)
            .map_err(|e| {
                let root = self.root.display();
                io::Error::new(e.kind(), format!("creating the agent's dir in {root}: {e}"))
            })?;
        let path = dir.path().to_path_buf();
        let lock = take_lock(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("locking {}/{LOCK}: {e}", path.display()))
        })?;
        *agent = Some(AgentDir { dir, _lock: lock });
        Ok(path)
    }

    /// The temp root the agent dirs live in.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// This agent's dir, if made.
    pub fn own(&self) -> Option<PathBuf> {
        let agent = self.agent.lock().unwrap_or_else(PoisonError::into_inner);
        agent.as_ref().map(|a| a.dir.path().to_path_buf())
    }

    /// Note that job `id` runs in process group `pgid` (for a later agent, should this one die
    /// without cleaning up). Failing to is logged, not fatal.
    pub fn mark(&self, pgid: i32, id: u64) {
        let Some(dir) = self.own() else { return };
        let link = dir.join(format!("{PG_PREFIX}{pgid}"));
        let target = format!("job-{id}");
        let made = match std::os::unix::fs::symlink(&target, &link) {
            // A stale marker of a reused pgid (its unmark failed).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::remove_file(&link)
                .and_then(|()| std::os::unix::fs::symlink(&target, &link)),
            other => other,
        };
        if let Err(e) = made {
            tracing::debug!("marking job {id}'s group {pgid}: {e}");
        }
    }

    /// Job process group `pgid` is done.
    pub fn unmark(&self, pgid: i32) {
        let Some(dir) = self.own() else { return };
        let _ = std::fs::remove_file(dir.join(format!("{PG_PREFIX}{pgid}")));
    }

    /// A fresh empty dir for job `id`.
    pub fn create(&self, id: u64) -> io::Result<PathBuf> {
        let path = self.agent_dir()?.join(format!("job-{id}"));
        let mkdir = || DirBuilder::new().mode(0o700).create(&path);
        match mkdir() {
            // Left over by an earlier job of the same id whose removal failed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir_all(&path).and_then(|()| mkdir())
            }
            other => other,
        }
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Remove a job's dir: a plain rmdir when the job left it empty (the usual case, done
    /// inline), else the whole tree on the blocking pool (a job may leave a large one, and the
    /// agent's single thread also pumps every other job's output).
    pub async fn remove(&self, dir: PathBuf) -> io::Result<()> {
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e))),
        }
    }

    /// Remove the agent's dir and whatever is left in it (agent shutdown).
    pub fn remove_all(&self) {
        let dir = self
            .agent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(AgentDir { dir, _lock }) = dir {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("removing the agent's temp dir {}: {e}", path.display());
            }
        }
    }
}

/// Create, lock and fill `dir/lock` (held until the returned file is closed): `PID SID`. It
/// is made as `lock.new` and renamed once locked and written, so another agent never sees an
/// unlocked `lock` of a live agent (it would take the dir for a dead agent's).
fn take_lock(dir: &std::path::Path) -> io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let new = dir.join(format!("{LOCK}.new"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)?;
    // SAFETY: flock on a descriptor we own; no memory involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getsid(0) has no preconditions.
    let sid = unsafe { libc::getsid(0) };
    writeln!(f, "{} {sid}", std::process::id())?;
    std::fs::rename(&new, dir.join(LOCK))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn job_dirs_live_in_one_private_agent_dir() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = JobDirs::new(root.path().to_path_buf());
        assert_eq!(
            std::fs::read_dir(root.path()).expect("ls").count(),
            0,
            "lazy"
        );
        let a = dirs.create(1).expect("job 1");
        let b = dirs.create(2).expect("job 2");
        let agent = a.parent().expect("agent dir");
        assert_eq!(b.parent(), Some(agent));
        assert_eq!(agent.parent(), Some(root.path()));
        let name = agent.file_name().expect("name").to_string_lossy();
        let prefix = format!("crew-agent-{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        let mode = std::fs::metadata(agent).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(a.ends_with("job-1"), "{a:?}");

        dirs.remove(a.clone()).await.expect("empty dir");
        assert!(!a.exists());
        std::fs::create_dir_all(b.join("x/y")).expect("mkdir");
        std::fs::write(b.join("x/y/f"), "data").expect("write");
        dirs.remove(b.clone()).await.expect("full dir");
        assert!(!b.exists());
        dirs.remove(b.clone()).await.expect("already gone is fine");

        // A leftover of the same id is replaced by a fresh empty dir.
        let c = dirs.create(3).expect("job 3");
        std::fs::write(c.join("f"), "old").expect("write");
        let c2 = dirs.create(3).expect("job 3 again");
        assert_eq!(std::fs::read_dir(&c2).expect("ls").count(), 0);

        dirs.remove_all();
        assert!(!agent.exists(), "agent dir removed");
    }

    #[test]
    fn an_unusable_root_is_an_error_naming_it() {
        let dirs = JobDirs::new(PathBuf::from("/nonexistent/root"));
        let e = dirs.create(1).expect_err("no such root");
        assert!(e.to_string().contains("/nonexistent/root"), "{e}");
    }
}
