//! ProxyCommand: a local command whose stdin and stdout are the connection, started as `ssh`
//! starts it (`/bin/sh -c "exec COMMAND"`, tokens expanded). It runs in a process group of
//! its own, killed whole when the connection ends (the [`ProxyChild`] is dropped with the
//! session); its stderr is logged, and its start kept to explain a failed connect.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::SshError;
use crate::model::Host;

/// Start of the command's stderr kept for error messages.
const STDERR_KEEP: usize = 2048;
/// How long a failed connect waits for the command's exit status, to report it.
const EXIT_WAIT: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Seen {
    stderr: Vec<u8>,
    exit: Option<std::process::ExitStatus>,
}

/// The running command; dropping it kills its whole process group.
pub(super) struct ProxyChild {
    pgid: Option<i32>,
    command: String,
    seen: Arc<Mutex<Seen>>,
    done: tokio::sync::watch::Receiver<bool>,
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.filter(|p| *p > 1) {
            // SAFETY: killpg has no memory effects; the group is the one the child leads
            // (process_group(0)), reaped by its waiter task, so the id is not reused before.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

/// `ProxyCommand`'s `%` tokens, as `ssh` expands them: `%h` host, `%p` port, `%r` remote
/// user, `%n` the name as given, `%k` the host key alias (the name), `%u` local user, `%d`
/// local home, `%l`/`%L` local host name (long/short), `%i` uid, `%%`.
pub(super) fn expand(template: &str, host: &Host, user: &str) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(&host.address),
            Some('p') => out.push_str(&host.port.to_string()),
            Some('r') => out.push_str(user),
            Some('n') | Some('k') => out.push_str(&host.name),
            Some('u') => out.push_str(&crate::paths::whoami()),
            Some('d') => {
                let home = dirs::home_dir().unwrap_or_default();
                out.push_str(&home.to_string_lossy());
            }
            Some(t @ ('l' | 'L')) => {
                let name = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_default();
                let name = if t == 'L' {
                    name.split('.').next().unwrap_or("").to_string()
                } else {
                    name
                };
                out.push_str(&name);
            }
            // SAFETY: getuid has no preconditions and cannot fail.
            Some('i') => out.push_str(&unsafe { libc::getuid() }.to_string()),
            Some(t) => return Err(format!("unknown token %{t}")),
            None => return Err("a lone `%` at the end".into()),
        }
    }
    Ok(out)
}

/// Start `template` for `host` (as `user`): its pipes as one stream, and the child.
pub(super) fn spawn(
    host: &Host,
    user: &str,
    template: &str,
) -> Result<(impl super::connect::Io, ProxyChild), SshError> {
    let command = expand(template, host, user)
        .map_err(|e| SshError::Config(format!("{}: ProxyCommand {template}: {e}", host.name)))?;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            SshError::Unreachable(format!("{}: ProxyCommand {command}: {e}", host.name))
        })?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SshError::Unreachable(format!(
            "{}: ProxyCommand {command}: no pipes",
            host.name
        )));
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (tx, done) = tokio::sync::watch::channel(false);
    let (name, seen2) = (host.name.clone(), seen.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tracing::debug!(
                "{name}: ProxyCommand: {}",
                String::from_utf8_lossy(&buf[..n]).trim_end()
            );
            if let Ok(mut s) = seen2.lock() {
                let room = STDERR_KEEP.saturating_sub(s.stderr.len());
                s.stderr.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        let status = child.wait().await;
        if let Ok(mut s) = seen2.lock() {
            s.exit = status.ok();
        }
        let _ = tx.send(true);
    });
    tracing::debug!("{}: ProxyCommand started: {command}", host.name);
    Ok((
        tokio::io::join(stdout, stdin),
        ProxyChild {
            pgid,
            command,
            seen,
            done,
        },
    ))
}

/// For an error message: what the ProxyCommand said and how it ended (waiting a moment for
/// it to end), or nothing without one.
pub(super) async fn explain(p: Option<&ProxyChild>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let mut done = p.done.clone();
    let _ = tokio::time::timeout(EXIT_WAIT, done.wait_for(|d| *d)).await;
    let (stderr, exit) = p
        .seen
        .lock()
        .map(|s| (s.stderr.clone(), s.exit))
        .unwrap_or_default();
    let text = crate::daemon::link::preview(String::from_utf8_lossy(&stderr).trim().as_bytes());
    let ended = match exit {
        Some(st) => format!(" ended ({st})"),
        None => " is running".to_string(),
    };
    let said = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    format!("; ProxyCommand `{}`{ended}{said}", p.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expand_as_ssh_does() {
        let mut h = Host::local("web01");
        h.address = "10.0.0.5".into();
        h.port = 2222;
        assert_eq!(
            expand("nc %h %p # %r %n 100%%", &h, "deploy").as_deref(),
            Ok("nc 10.0.0.5 2222 # deploy web01 100%")
        );
        assert_eq!(
            expand("x %z", &h, "u").expect_err("unknown"),
            "unknown token %z"
        );
        assert!(expand("x %", &h, "u").is_err());
    }
}
