//! A privileged agent: `sudo -u USER -- <agent> agent` on a new exec channel of the host's
//! existing SSH connection, as Mitogen does it (`mitogen/sudo.py`).
//!
//! sudo is given a random prompt for this one start (`-p crew-sudo-<random>:`), and the
//! password goes out only when the channel's output ends with exactly that prompt (or
//! sudo-rs's form of it, `[sudo: PROMPT] Password: `): never in answer to anything else, and
//! only once: a second prompt means the password was wrong, and the channel is closed at
//! once (one failed attempt, no lockout). Frames flow over the channel's pipes (`-S`: the
//! prompt on stderr, the password on stdin, then the agent's frames). Only when sudo says it
//! needs a terminal (`requiretty`) is the start repeated with a PTY, put in raw mode (echo,
//! line editing, signals and output processing off) so the frames pass unchanged.

use std::time::Duration;

use russh::{ChannelMsg, Pty};
use tokio::io::AsyncReadExt;
use tokio::time::{timeout_at, Instant};
use zeroize::Zeroizing;

use super::exec::sh_quote;
use super::install::dir_expr;
use super::stream::{agent_channel, AgentChannel};
use super::{SshError, SshOptions, SshSession};
use crate::daemon::link::preview;
use crate::model::Secret;
use crate::proto::agent::{find_marker, SYNC_MARKER};

/// From the exec request to the agent's sync marker: sudo, PAM (which pauses ~2 s after a
/// wrong password), the agent's start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept while waiting (sudo's messages, login noise): more means something is wrong.
const MAX_OUTPUT: usize = 64 * 1024;
/// sudo-rs prints at most this much after its `[sudo: PROMPT] ` prefix (`Password: `).
const SUDO_RS_SUFFIX_MAX: usize = 50;

/// A prompt no command can print by chance: `crew-sudo-<128 random bits>:`.
fn random_prompt() -> Result<String, SshError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| SshError::Session(format!("no randomness for the sudo prompt: {e}")))?;
    Ok(format!("crew-sudo-{}:", hex::encode(b)))
}

/// True when `line` (what a stream printed since its last newline) is sudo asking for the
/// password with `prompt`: sudo prints it as given, sudo-rs as `[sudo: PROMPT] Password: `.
pub(super) fn is_prompt(line: &[u8], prompt: &str) -> bool {
    if line.ends_with(prompt.as_bytes()) {
        return true;
    }
    let rs = format!("[sudo: {prompt}] ");
    match find_marker(line, rs.as_bytes()) {
        Some(at) => {
            let rest = &line[at + rs.len()..];
            rest.len() <= SUDO_RS_SUFFIX_MAX && !rest.contains(&b'\n')
        }
        None => false,
    }
}

/// The text after the last newline of a stream, bounded.
#[derive(Default)]
struct Line(Vec<u8>);

impl Line {
    fn feed(&mut self, data: &[u8]) {
        match data.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
            Some(p) => {
                self.0.clear();
                self.0.extend_from_slice(&data[p + 1..]);
            }
            None => self.0.extend_from_slice(data),
        }
        if self.0.len() > 4096 {
            self.0.drain(..self.0.len() - 4096);
        }
    }
}

/// How one start ended, short of success.
enum Ended {
    /// sudo wants a terminal (`requiretty`).
    NeedsTty,
    Failed(SshError),
}

/// Terminal modes for the PTY: raw (as `cfmakeraw`), no echo.
const RAW_MODES: &[(Pty, u32)] = &[
    (Pty::ECHO, 0),
    (Pty::ECHOE, 0),
    (Pty::ECHOK, 0),
    (Pty::ECHONL, 0),
    (Pty::ICANON, 0),
    (Pty::ISIG, 0),
    (Pty::IEXTEN, 0),
    (Pty::ICRNL, 0),
    (Pty::INLCR, 0),
    (Pty::IGNCR, 0),
    (Pty::IXON, 0),
    (Pty::IXOFF, 0),
    (Pty::ISTRIP, 0),
    (Pty::OPOST, 0),
    (Pty::PARENB, 0),
    (Pty::CS8, 1),
];

impl SshSession {
    /// Start the agent (already installed by the login user's agent) through sudo as
    /// `user`, answering sudo's prompt with `password`. Errors: `Auth` for a refused or
    /// missing password and for a user sudo does not allow; `Timeout`; others as `Session`.
    pub async fn start_privileged(
        &self,
        opts: &SshOptions,
        user: &str,
        password: Option<&Secret>,
    ) -> Result<AgentChannel, SshError> {
        let agent = format!(
            "{}/{}",
            dir_expr(&self.host.agent_dir),
            sh_quote(&format!("agent-{}", opts.agent_build))
        );
        match self.sudo_start(&agent, user, password, false).await? {
            Ok(ch) => Ok(ch),
            Err(Ended::NeedsTty) => {
                tracing::debug!(
                    "{}: sudo wants a terminal; again with a PTY",
                    self.host.name
                );
                match self.sudo_start(&agent, user, password, true).await? {
                    Ok(ch) => Ok(ch),
                    Err(Ended::Failed(e)) => Err(e),
                    Err(Ended::NeedsTty) => Err(SshError::Session(format!(
                        "{}: sudo asks for a terminal even with one",
                        self.host.name
                    ))),
                }
            }
            Err(Ended::Failed(e)) => Err(e),
        }
    }

    async fn sudo_start(
        &self,
        agent: &str,
        user: &str,
        password: Option<&Secret>,
        tty: bool,
    ) -> Result<Result<AgentChannel, Ended>, SshError> {
        let name = self.host.name.clone();
        let prompt = random_prompt()?;
        let script = if tty {
            // The agent's stdin and stdout are the terminal: raw, no echo, and its log
            // (stderr) kept off it.
            format!(
                "exec sudo -p {p} -u {u} -- sh -c {inner} {agent}",
                p = sh_quote(&prompt),
                u = sh_quote(user),
                inner = sh_quote(
                    "stty raw -echo -isig -iexten cs8 -parenb 2>/dev/null; \
                     exec \"$0\" agent 2>/dev/null"
                ),
            )
        } else {
            format!(
                "exec sudo -S -p {p} -u {u} -- {agent} agent",
                p = sh_quote(&prompt),
                u = sh_quote(user)
            )
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut channel = timeout_at(deadline, async {
            let ch = self.handle.channel_open_session().await?;
            if tty {
                ch.request_pty(true, "dumb", 200, 50, 0, 0, RAW_MODES)
                    .await?;
            }
            ch.exec(true, format!("exec sh -c {}", sh_quote(&script)))
                .await?;
            Ok::<_, SshError>(ch)
        })
        .await
        .map_err(|_| {
            SshError::Timeout(format!(
                "{name}: the server did not open a channel for sudo within {START_TIMEOUT:?}"
            ))
        })??;

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut out_line, mut err_line) = (Line::default(), Line::default());
        let mut sent = false;
        let mut exit = None;
        let why = loop {
            let msg = match timeout_at(deadline, channel.wait()).await {
                Ok(m) => m,
                Err(_) => {
                    let _ = channel.close().await;
                    return Err(SshError::Timeout(format!(
                        "{name}: sudo -u {user} did not start the agent within \
                         {START_TIMEOUT:?} (sudo said: {})",
                        said(&out, &err)
                    )));
                }
            };
            let (line, data) = match msg {
                Some(ChannelMsg::Data { data }) => {
                    out.extend_from_slice(&data);
                    out_line.feed(&data);
                    if find_marker(&out, SYNC_MARKER).is_some() {
                        tracing::info!("{name}: privileged agent started (sudo -u {user})");
                        let (mut ch, _end) = agent_channel(channel, name);
                        let seen = std::io::Cursor::new(out).chain(ch.reader);
                        ch.reader = Box::new(seen);
                        return Ok(Ok(ch));
                    }
                    (&out_line, data)
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    err.extend_from_slice(&data);
                    err_line.feed(&data);
                    (&err_line, data)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    exit = Some(exit_status);
                    continue;
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => break None,
                Some(_) => continue,
            };
            if out.len() + err.len() > MAX_OUTPUT {
                break Some(format!("{} bytes without the agent", out.len() + err.len()));
            }
            if data.is_empty() || !is_prompt(&line.0, &prompt) {
                continue;
            }
            if sent {
                // Asked again: the password was wrong. No second try: close now.
                let _ = channel.close().await;
                return Ok(Err(Ended::Failed(SshError::Auth(format!(
                    "{name}: sudo -u {user} refused the password (not tried again, to \
                     avoid a lockout)"
                )))));
            }
            let Some(pw) = password.filter(|p| !p.is_empty()) else {
                let _ = channel.close().await;
                return Ok(Err(Ended::Failed(SshError::Auth(format!(
                    "{name}: sudo -u {user} asks for {}'s password and none was given \
                     (crew asks on a terminal, or runs $CREW_ASKPASS)",
                    self.user()
                )))));
            };
            let mut answer = Zeroizing::new(Vec::with_capacity(pw.expose().len() + 1));
            answer.extend_from_slice(pw.expose());
            answer.push(b'\n');
            channel
                .data(&answer[..])
                .await
                .map_err(|e| SshError::Session(format!("{name}: answering sudo: {e}")))?;
            sent = true;
            out_line.0.clear();
            err_line.0.clear();
        };
        // Let a late exit status arrive.
        if exit.is_none() {
            if let Ok(Some(ChannelMsg::ExitStatus { exit_status })) =
                tokio::time::timeout(Duration::from_millis(200), channel.wait()).await
            {
                exit = Some(exit_status);
            }
        }
        let text = said(&out, &err);
        let lower = text.to_ascii_lowercase();
        if !tty && (lower.contains("must have a tty") || lower.contains("a terminal is required")) {
            return Ok(Err(Ended::NeedsTty));
        }
        let e = if lower.contains("not in the sudoers")
            || lower.contains("not allowed to")
            || lower.contains("may not run sudo")
        {
            SshError::Auth(format!(
                "{name}: {} may not run the agent as {user} through sudo: {text}",
                self.user()
            ))
        } else if lower.contains("incorrect password") || (sent && lower.contains("try again")) {
            SshError::Auth(format!(
                "{name}: sudo -u {user} refused the password: {text}"
            ))
        } else {
            SshError::Session(format!(
                "{name}: sudo -u {user} ended without starting the agent ({}{}): {text}",
                match exit {
                    Some(c) => format!("exit {c}"),
                    None => "no exit status".to_string(),
                },
                why.map(|w| format!(", {w}")).unwrap_or_default()
            ))
        };
        Ok(Err(Ended::Failed(e)))
    }
}

/// What sudo printed, for a message (untrusted: escaped, bounded).
fn said(out: &[u8], err: &[u8]) -> String {
    let mut all = err.to_vec();
    all.extend_from_slice(out);
    let text = String::from_utf8_lossy(&all);
    let text = text.trim();
    if text.is_empty() {
        "(nothing)".to_string()
    } else {
        preview(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_prompt_at_the_end_of_a_line_is_a_prompt() {
        let p = "crew-sudo-0123abcd:";
        assert!(is_prompt(b"crew-sudo-0123abcd:", p));
        assert!(is_prompt(b"\x1b[0mcrew-sudo-0123abcd:", p));
        // sudo-rs: `[sudo: PROMPT] Password: `
        assert!(is_prompt(b"[sudo: crew-sudo-0123abcd:] Password: ", p));
        assert!(!is_prompt(b"password:", p));
        assert!(!is_prompt(b"[sudo] password for deploy: ", p));
        assert!(!is_prompt(b"crew-sudo-0123abcd: and more", p));
        assert!(!is_prompt(b"crew-sudo-ffff:", p));
        let long = format!("[sudo: {p}] {}", "x".repeat(60));
        assert!(!is_prompt(long.as_bytes(), p));
    }

    #[test]
    fn lines_keep_what_follows_the_last_newline() {
        let mut l = Line::default();
        l.feed(b"Sorry, try again.\ncrew-");
        l.feed(b"sudo-1:");
        assert_eq!(l.0, b"crew-sudo-1:");
        l.feed(b"\r\n");
        assert!(l.0.is_empty());
    }

    #[test]
    fn prompts_are_random() {
        let (a, b) = (random_prompt().expect("a"), random_prompt().expect("b"));
        assert_ne!(a, b);
        assert!(a.starts_with("crew-sudo-") && a.ends_with(':') && a.len() == 43);
    }
}
