//! Changes to the machine a test makes and undoes: a throwaway user, a tmpfs mounted noexec.
//! Both need root ([`super::require_root`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::proc::{run_quietly, Bounded};

/// A user made for one test (`useradd`, no home, no login shell), deleted when dropped.
pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ThrowawayUser {
    /// Needs root.
    pub fn create() -> ThrowawayUser {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "crewt{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .output_within(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, &name])
                .output_within(Duration::from_secs(30));
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("id {flag} {name}: {e}"))
        };
        let (uid, gid) = (id("-u"), id("-g"));
        ThrowawayUser { name, uid, gid }
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        run_quietly(
            Command::new("userdel").arg(&self.name),
            Duration::from_secs(60),
        );
    }
}

/// A tmpfs mounted `noexec` on a temp dir for one test, unmounted (lazily) and removed when
/// dropped.
pub struct NoexecTmpfs {
    dir: tempfile::TempDir,
}

impl NoexecTmpfs {
    /// Needs root.
    pub fn mount() -> NoexecTmpfs {
        let dir = tempfile::Builder::new()
            .prefix("crew-noexec-")
            .tempdir()
            .expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "noexec,nosuid,size=1g,mode=0755",
                "tmpfs",
            ])
            .arg(dir.path())
            .output_within(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "mount a noexec tmpfs on {}: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        NoexecTmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NoexecTmpfs {
    fn drop(&mut self) {
        run_quietly(
            Command::new("umount").arg("--lazy").arg(self.dir.path()),
            Duration::from_secs(60),
        );
    }
}

/// A small tmpfs mounted over an existing directory (a disk that fills up), unmounted
/// (lazily) when dropped. Needs root.
pub struct SmallTmpfs {
    at: std::path::PathBuf,
}

impl SmallTmpfs {
    pub fn mount_at(at: &Path, size: &str) -> SmallTmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output_within(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "mount a {size} tmpfs on {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallTmpfs {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        run_quietly(
            Command::new("umount").arg("--lazy").arg(&self.at),
            Duration::from_secs(60),
        );
    }
}
