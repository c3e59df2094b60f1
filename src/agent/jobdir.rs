//! Per-job temp dirs, inside one private dir per agent.
//!
//! Every job gets a fresh empty directory as its cwd. They live in `crew-agent-<pid>-<random>`
//! (mode 0700, made under the temp root on the first job), so creating and removing them only
//! locks that directory, not the temp root every agent on the machine shares; an emptied job
//! dir goes with one `rmdir`. The agent dir is removed when the agent stops.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

pub(super) struct JobDirs {
    root: PathBuf,
    agent: Mutex<Option<tempfile::TempDir>>,
}

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
        if let Some(dir) = agent.as_ref() {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("crew-agent-{}-", std::process::id()))
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&self.root)
            .map_err(|e| {
                let root = self.root.display();
                io::Error::new(e.kind(), format!("creating the agent's dir in {root}: {e}"))
            })?;
        let path = dir.path().to_path_buf();
        *agent = Some(dir);
        Ok(path)
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
        if let Some(dir) = dir {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("removing the agent's temp dir {}: {e}", path.display());
            }
        }
    }
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
