//! Agent install and start: `<agent_dir>/agent-<build>` on the host, uploaded over an exec
//! channel when missing, verified by sha256, made executable and test-run, then renamed into
//! place atomically. Anything that says "the agent cannot run here" becomes
//! `SshError::AgentUnavailable` so the daemon falls back to agentless exec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use crate::daemon::link::preview;
use crate::proto::agent::{find_marker, SYNC_MARKER};

use super::capture::Captured;
use super::exec::sh_quote;
use super::marker;
use super::stream::{agent_channel, AgentChannel};
use super::{SshError, SshOptions, SshSession};

/// Bound on opening the exec channel that starts (or checks) the agent.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound from the open channel to the agent's sync marker or the "missing" report: one login
/// shell plus the agent's start (or `uname`). Queueing for a start slot is not counted.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on uploading and verifying the executable.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The local agent executable's size and sha256, computed once per (path, size, mtime). The
/// bytes are never kept: every upload streams the file (the daemon stays small).
#[derive(Clone)]
struct LocalExe {
    size: u64,
    sha256: String,
}

type ExeCache = Mutex<HashMap<(PathBuf, u64, Option<SystemTime>), LocalExe>>;

fn exe_cache() -> &'static ExeCache {
    static CACHE: OnceLock<ExeCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

async fn local_exe(path: &Path) -> Result<LocalExe, SshError> {
    let unavailable =
        |e: std::io::Error| SshError::AgentUnavailable(format!("{}: {e}", path.display()));
    let meta = tokio::fs::metadata(path).await.map_err(unavailable)?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    // One hasher at a time: 500 hosts installing at once must not read the file 500 times.
    static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _loading = LOADING.lock().await;
    if let Some(exe) = exe_cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(exe);
    }
    // Hashing tens of MB is CPU work: keep it off the async workers.
    let p = path.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || crate::paths::sha256_file(&p))
        .await
        .map_err(|e| SshError::AgentUnavailable(format!("hashing {}: {e}", path.display())))?
        .map_err(unavailable)?;
    let exe = LocalExe { size, sha256 };
    if let Ok(mut c) = exe_cache().lock() {
        c.insert(key, exe.clone());
    }
    Ok(exe)
}

/// Shell expression for the agent directory, `~` expanded with the remote `$HOME`.
pub fn dir_expr(agent_dir: &str) -> String {
    if agent_dir == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = agent_dir.strip_prefix("~/") {
        format!("\"$HOME\"/{}", sh_quote(rest))
    } else {
        sh_quote(agent_dir)
    }
}

/// `uname -sm` of a host that can run our agent build.
fn expected_uname() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "aarch64" if os == "Darwin" => "arm64",
        other => other,
    };
    format!("{os} {arch}")
}

/// The check-and-start script: run the agent if it is executable, else print `uname -sm`
/// and `missing` between markers.
fn check_and_start(vars: &str) -> String {
    sh(&format!(
        "{vars}; if [ -x \"$f\" ]; then exec \"$f\" agent; fi; \
         {begin}; uname -sm; echo missing; {end}",
        begin = marker::SH_BEGIN,
        end = marker::SH_END,
    ))
}

/// `exec <agent_dir>/<file> agent` for the login shell itself, saving the `sh` of
/// [`check_and_start`] on every connect. Only for directories made of characters that no
/// shell treats specially, so bash, zsh, dash, ksh, fish and csh all run it alike. When the
/// agent is missing the exec fails and the shell exits without the agent's marker.
fn direct_start(agent_dir: &str, file: &str) -> Option<String> {
    let plain = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,".contains(&b))
    };
    let dir = if agent_dir == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = agent_dir.strip_prefix("~/") {
        if !plain(rest) {
            return None;
        }
        format!("\"$HOME\"/{rest}")
    } else if agent_dir.starts_with('/') && plain(agent_dir) {
        agent_dir.to_string()
    } else {
        return None;
    };
    plain(file).then(|| format!("exec {dir}/{file} agent"))
}

/// The check script always reports or starts; an early end is an error there.
fn unreachable_start<T>(name: &str) -> Result<T, SshError> {
    Err(SshError::AgentUnavailable(format!(
        "{name}: the agent check ended without a report"
    )))
}

fn sh(script: &str) -> String {
    // Run under sh whatever the login shell is.
    format!("exec sh -c {}", sh_quote(script))
}

/// A helper's stderr without the login output before its marker, printable.
fn remote_stderr(out: &Captured) -> String {
    let (_, real) = marker::split_begin(&out.stderr);
    let text = String::from_utf8_lossy(real);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_string()
    } else {
        preview(text.as_bytes())
    }
}

/// What one start attempt found.
enum Start {
    /// The agent runs: its channel, positioned before the login output and sync marker.
    Running(AgentChannel),
    /// No executable agent there; `uname -sm` of the host.
    Missing { uname: String },
}

impl SshSession {
    /// Start the agent on a persistent exec channel, installing it first when
    /// `<agent_dir>/agent-<build>` is missing or not executable. An installed agent costs one
    /// exec (one login shell): the same command starts it or reports it missing.
    pub async fn start_agent(&self, opts: &SshOptions) -> Result<AgentChannel, SshError> {
        let name = &self.host.name;
        let file = format!("agent-{}", opts.agent_build);
        let dir = dir_expr(&self.host.agent_dir);
        let vars = format!("d={dir}; f=\"$d\"/{}", sh_quote(&file));
        // Usually the agent is there: exec it straight from the login shell. Only when that
        // ends without the agent's marker does the `sh` check below run (a second exec).
        if let Some(cmd) = direct_start(&self.host.agent_dir, &file) {
            if let Some(Start::Running(ch)) = self.try_start(cmd, true).await? {
                tracing::debug!("{name}: agent {file} started");
                return Ok(ch);
            }
        }
        let uname = match self.try_start(check_and_start(&vars), false).await? {
            Some(Start::Running(ch)) => {
                tracing::debug!("{name}: agent {file} already installed, started");
                return Ok(ch);
            }
            Some(Start::Missing { uname }) => uname,
            None => unreachable_start(name)?,
        };
        let want = expected_uname();
        if uname != want {
            return Err(SshError::AgentUnavailable(format!(
                "{name}: host is `{}`, the agent is built for `{want}`",
                preview(uname.as_bytes())
            )));
        }
        self.upload_agent(opts, &vars).await?;
        match self.try_start(check_and_start(&vars), false).await? {
            Some(Start::Running(ch)) => Ok(ch),
            None => unreachable_start(name),
            Some(Start::Missing { .. }) => Err(SshError::AgentUnavailable(format!(
                "{name}: the agent was installed into {} but is not executable there",
                self.host.agent_dir
            ))),
        }
    }

    /// One exec of `cmd`; reads until the agent's sync marker or the check's report. With
    /// `may_end`, a channel that ends before either is `None` (the direct start found no
    /// agent); otherwise that is an error.
    async fn try_start(&self, cmd: String, may_end: bool) -> Result<Option<Start>, SshError> {
        let name = &self.host.name;
        let channel = timeout(OPEN_TIMEOUT, async {
            let channel = self.handle.channel_open_session().await?;
            channel.exec(true, cmd).await?;
            Ok::<_, SshError>(channel)
        })
        .await
        .map_err(|_| {
            SshError::Timeout(format!(
                "{name}: the server did not open an exec channel within {OPEN_TIMEOUT:?}"
            ))
        })??;
        let (mut ch, end) = agent_channel(channel, name.clone());
        // The Hello timeout of the link starts after this: it only covers the frame itself.
        let mut buf = Vec::with_capacity(4096);
        let seen = timeout(START_TIMEOUT, async {
            let mut chunk = [0u8; 4096];
            loop {
                if find_marker(&buf, SYNC_MARKER).is_some() {
                    return Ok(Some(true));
                }
                if marker::between(&buf).is_some() {
                    return Ok(Some(false));
                }
                if buf.len() > marker::MAX_SKIP + 4096 {
                    return Err(format!(
                        "no agent and no report in the first {} bytes",
                        buf.len()
                    ));
                }
                match ch.reader.read(&mut chunk).await {
                    Ok(0) if may_end => return Ok(None),
                    Ok(0) => return Err("the channel ended".to_string()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("reading the channel: {e}")),
                }
            }
        })
        .await
        .map_err(|_| {
            SshError::Timeout(format!(
                "{name}: neither the agent nor the install check answered within {START_TIMEOUT:?}"
            ))
        })?;
        match seen {
            Ok(None) => {
                tracing::debug!("{name}: no agent started directly: {}", preview(&buf));
                Ok(None)
            }
            Ok(Some(true)) => {
                let reader = std::io::Cursor::new(buf).chain(ch.reader);
                Ok(Some(Start::Running(AgentChannel {
                    reader: Box::new(reader),
                    writer: ch.writer,
                })))
            }
            Ok(Some(false)) => {
                let (junk, _) = marker::split_begin(&buf);
                if !junk.is_empty() {
                    tracing::debug!(
                        "{name}: login printed {} bytes before the check: {}",
                        junk.len(),
                        preview(junk)
                    );
                }
                let body = marker::between(&buf).map(String::from_utf8_lossy);
                let mut lines = body.as_deref().unwrap_or("").lines().map(str::trim);
                let (uname, state) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
                if state != "missing" {
                    return Err(SshError::AgentUnavailable(format!(
                        "{name}: checking {} printed {}",
                        self.host.agent_dir,
                        preview(&buf)
                    )));
                }
                Ok(Some(Start::Missing {
                    uname: uname.to_string(),
                }))
            }
            Err(why) => {
                // Let the reader task record the exit status and stderr.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let (exit, stderr) = end
                    .lock()
                    .map(|e| (e.exit, e.stderr.clone()))
                    .unwrap_or_default();
                let (_, stderr) = marker::split_begin(&stderr);
                let stderr = String::from_utf8_lossy(stderr);
                Err(SshError::AgentUnavailable(format!(
                    "{name}: starting the agent in {} failed: {why} (exit {}): {}; output: {}",
                    self.host.agent_dir,
                    exit.map_or("none".to_string(), |c| c.to_string()),
                    if stderr.trim().is_empty() {
                        "(no message)".to_string()
                    } else {
                        preview(stderr.trim().as_bytes())
                    },
                    preview(&buf)
                )))
            }
        }
    }

    async fn upload_agent(&self, opts: &SshOptions, vars: &str) -> Result<(), SshError> {
        let name = &self.host.name;
        let exe = local_exe(&opts.agent_exe).await?;
        let nonce = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let script = format!(
            "set -e; {vars}; t=\"$f.tmp-{pid}-{nonce}\"\n\
             sum() {{ (sha256sum \"$1\" 2>/dev/null || shasum -a 256 \"$1\") | cut -d' ' -f1; }}\n\
             installed() {{ [ -x \"$f\" ] && [ \"$(sum \"$f\")\" = {want} ]; }}\n\
             {begin}\n\
             mkdir -p \"$d\"\n\
             if installed; then {end}; exit 0; fi\n\
             cat > \"$t\"\n\
             got=$(sum \"$t\")\n\
             if [ \"$got\" != {want} ]; then rm -f \"$t\"; \
               echo \"checksum mismatch after upload: got $got\" >&2; exit 3; fi\n\
             chmod 755 \"$t\"\n\
             if ! \"$t\" --version >/dev/null 2>&1; then rm -f \"$t\"; \
               echo \"the uploaded agent does not execute (noexec mount or missing libraries?)\" >&2; exit 4; fi\n\
             if installed; then rm -f \"$t\"; else mv -f \"$t\" \"$f\"; fi\n\
             {end}\n",
            begin = marker::SH_BEGIN,
            end = marker::SH_END,
            pid = std::process::id(),
            want = exe.sha256,
        );
        tracing::info!(
            "{name}: installing agent ({} bytes) into {}",
            exe.size,
            self.host.agent_dir
        );
        let out = self
            .capture(&sh(&script), Some(opts.agent_exe.clone()), UPLOAD_TIMEOUT)
            .await
            .map_err(|e| SshError::AgentUnavailable(format!("{name}: upload failed: {e}")))?;
        if out.code != Some(0) || marker::between(&out.stdout).is_none() {
            return Err(SshError::AgentUnavailable(format!(
                "{name}: cannot install the agent into {} (exit {}): {}",
                self.host.agent_dir,
                out.code.map_or("none".to_string(), |c| c.to_string()),
                remote_stderr(&out)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_start_only_for_paths_no_shell_rewrites() {
        let f = "agent-0123456789abcdef";
        assert_eq!(
            direct_start("~/.cache/crew", f).as_deref(),
            Some("exec \"$HOME\"/.cache/crew/agent-0123456789abcdef agent")
        );
        assert_eq!(
            direct_start("/opt/crew", f).as_deref(),
            Some("exec /opt/crew/agent-0123456789abcdef agent")
        );
        // Anything a shell could expand, split or glob goes through the quoted `sh` check.
        for dir in [
            "~/my dir",
            "/opt/$x",
            "/opt/*",
            "relative/dir",
            "~user/x",
            "/a;b",
            "~/'q'",
        ] {
            assert_eq!(direct_start(dir, f), None, "{dir}");
        }
    }
}
