//! What every job's `bash -c` needs, prepared once (on the agent's first job): bash's absolute
//! path (looked up in the agent's PATH), the agent's environment with the job `SHLVL`, and
//! `/dev/null`.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::spawn::{self, Request, Spawned};

/// Lookup path when the agent has no PATH (glibc's execvp default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

pub(super) struct Shell {
    /// bash's absolute path, or why there is none.
    bash: Result<CString, String>,
    /// `KEY=VALUE` of the agent's environment, `SHLVL` replaced; with each key's length.
    env: Vec<(usize, CString)>,
    devnull: io::Result<OwnedFd>,
}

impl Shell {
    pub fn new() -> Shell {
        let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let bash = find_in_path("bash", &path)
            .map(|p| CString::new(p.into_os_string().into_vec()).map_err(|e| e.to_string()))
            .unwrap_or_else(|| {
                Err(format!(
                    "bash not found in PATH {}",
                    Path::new(&path).display()
                ))
            });
        let mut env: Vec<(usize, CString)> = std::env::vars_os()
            .filter(|(k, _)| k != "SHLVL")
            .filter_map(|(k, v)| Some((k.len(), kv(&k, &v).ok()?)))
            .collect();
        if let Ok(shlvl) = kv(OsStr::new("SHLVL"), OsStr::new(&job_shell_level())) {
            env.push(("SHLVL".len(), shlvl));
        }
        let devnull = std::fs::File::open("/dev/null").map(OwnedFd::from);
        Shell { bash, env, devnull }
    }

    /// Start `bash -c command` in `cwd` with the agent's environment plus `extra` (which wins),
    /// stdin from `stdin` (else /dev/null).
    pub fn spawn(
        &self,
        command: &str,
        extra: &[(String, String)],
        cwd: &Path,
        stdin: Option<BorrowedFd<'_>>,
    ) -> io::Result<Spawned> {
        let bash = match &self.bash {
            Ok(b) => b.as_c_str(),
            Err(e) => return Err(io::Error::new(io::ErrorKind::NotFound, e.clone())),
        };
        let devnull: BorrowedFd<'_> = match (stdin, &self.devnull) {
            (Some(fd), _) => fd,
            (None, Ok(fd)) => fd.as_fd(),
            (None, Err(e)) => {
                return Err(io::Error::new(e.kind(), format!("opening /dev/null: {e}")))
            }
        };
        let command =
            CString::new(command).map_err(|_| invalid("the command contains a NUL byte".into()))?;
        let cwd = CString::new(cwd.as_os_str().as_bytes())
            .map_err(|_| invalid(format!("temp dir {} contains a NUL byte", cwd.display())))?;
        let extra = extra
            .iter()
            .map(|(k, v)| {
                kv(OsStr::new(k), OsStr::new(v))
                    .map(|c| (k.as_str(), c))
                    .map_err(|_| invalid(format!("environment variable {k:?} contains a NUL byte")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut envp: Vec<&CStr> = Vec::with_capacity(self.env.len() + extra.len());
        if extra.is_empty() {
            envp.extend(self.env.iter().map(|(_, c)| c.as_c_str()));
        } else {
            let keys: HashSet<&[u8]> = extra.iter().map(|(k, _)| k.as_bytes()).collect();
            let inherited = self
                .env
                .iter()
                .filter(|(n, c)| !keys.contains(&c.as_bytes()[..*n]));
            envp.extend(inherited.map(|(_, c)| c.as_c_str()));
            // The last of several settings of one key wins, as with std's Command::envs.
            let mut seen = HashSet::new();
            let last: Vec<&CStr> = extra
                .iter()
                .rev()
                .filter(|(k, _)| seen.insert(*k))
                .map(|(_, c)| c.as_c_str())
                .collect();
            envp.extend(last.into_iter().rev());
        }
        let argv = [c"bash", c"-c", command.as_c_str()];
        let req = Request {
            program: bash,
            argv: &argv,
            envp: &envp,
            cwd: &cwd,
            stdin: devnull,
        };
        spawn::spawn(&req).map_err(|e| io::Error::new(e.error.kind(), e.to_string()))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `key=value` as a C string (fails on a NUL byte).
fn kv(key: &OsStr, value: &OsStr) -> Result<CString, std::ffi::NulError> {
    let mut b = Vec::with_capacity(key.len() + value.len() + 1);
    b.extend_from_slice(key.as_bytes());
    b.push(b'=');
    b.extend_from_slice(value.as_bytes());
    CString::new(b)
}

/// The first executable regular file `name` in the absolute directories of `path`.
fn find_in_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `SHLVL` for a job's shell. bash sources `~/.bashrc` even when not interactive if it thinks
/// sshd started it (`SSH_CLIENT` set and shell level below 2). The agent was exec'd by the
/// login shell (which lowers `SHLVL`), so without this every job would pay the operator's
/// `.bashrc` (pyenv, nvm, …: often half a second of CPU) on every run.
fn job_shell_level() -> String {
    let level = std::env::var("SHLVL")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    level.max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bash_and_skips_relative_dirs() {
        let found = find_in_path("bash", OsStr::new("relative:/nonexistent:/usr/bin:/bin"));
        let found = found.expect("bash in /usr/bin or /bin");
        assert!(found.is_absolute() && found.ends_with("bash"), "{found:?}");
        assert_eq!(find_in_path("bash", OsStr::new("/nonexistent")), None);
    }
}
