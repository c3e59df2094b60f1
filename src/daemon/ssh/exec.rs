//! Agentless commands over plain exec channels: one channel per command, streamed as the
//! same `AgentMsg` sequence the agent produces.

use std::time::{Duration, Instant};

use russh::{ChannelMsg, Sig};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use super::marker::{self, Skipper};
use super::{SshError, SshSession};
use crate::model::{Exit, Stream};
use crate::proto::agent::{AgentMsg, Run};

/// Events buffered per agentless job before the channel reader waits (back-pressure).
const EVENT_BUFFER: usize = 64;
/// After a timeout: TERM, wait this long, KILL, wait this long, then close the channel.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Quote `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Prints [`marker::BEGIN`] on stdout and stderr (the daemon drops whatever the login shell
/// printed before it), then runs `$1` in its own session (process group) with stdin from /dev/null, and kills that
/// group when a signal number arrives on stdin, or with KILL when stdin closes (the daemon
/// went away). sshd's own `signal` request is refused by OpenSSH in common setups
/// ("session signalling requires privilege separation"), hence this. A command killed by a
/// signal makes the wrapper die by the same signal, so the exit status says so.
const WRAPPER: &str = r#"exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid bash -c "$1" </dev/null 3<&- &
else bash -c "$1" </dev/null 3<&- & fi
p=$!
( while read -r s; do kill -"$s" -"$p" 2>/dev/null || kill -"$s" "$p" 2>/dev/null; done
  kill -9 -"$p" 2>/dev/null || kill -9 "$p" 2>/dev/null ) <&3 3<&- >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p" 2>/dev/null; rc=$?
kill "$w" 2>/dev/null
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then kill -"$((rc - 128))" $$; fi
exit "$rc""#;

/// The remote command line for an agentless run: `exec env K=V… sh -c WRAPPER sh CMD`.
pub fn command_line(run: &Run) -> String {
    let mut line = String::from("exec ");
    if !run.env.is_empty() {
        line += "env";
        for (k, v) in &run.env {
            line += " ";
            line += &sh_quote(&format!("{k}={v}"));
        }
        line += " ";
    }
    line += "sh -c ";
    line += &sh_quote(&format!("{}\n{WRAPPER}", marker::SH_BEGIN));
    line += " sh ";
    line += &sh_quote(&run.command);
    line
}

pub(super) fn signal_number(s: &Sig) -> i32 {
    match s {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        // Names RFC 4254 does not list (OpenSSH sends them without the SIG prefix), in
        // Linux numbering like the agent's own reports; 0 only for a name we do not know.
        Sig::Custom(name) => match name.trim_start_matches("SIG") {
            "TRAP" => 5,
            "BUS" => 7,
            "USR2" => 12,
            "STKFLT" => 16,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "TTIN" => 21,
            "TTOU" => 22,
            "URG" => 23,
            "XCPU" => 24,
            "XFSZ" => 25,
            "VTALRM" => 26,
            "PROF" => 27,
            "WINCH" => 28,
            "IO" | "POLL" => 29,
            "PWR" => 30,
            "SYS" => 31,
            _ => 0,
        },
    }
}

/// A command running over its own exec channel. `events` yields Started{pid:0}, Output…,
/// then exactly one Exit or Error.
pub struct AgentlessJob {
    pub events: mpsc::Receiver<AgentMsg>,
    killer: AgentlessKiller,
}

/// Sends a signal to an agentless job's remote process group (sshd `killpg`s the session).
#[derive(Clone)]
pub struct AgentlessKiller(mpsc::UnboundedSender<i32>);

impl AgentlessKiller {
    pub fn kill(&self, signal: i32) -> Result<(), SshError> {
        self.0
            .send(signal)
            .map_err(|_| SshError::Session("job already finished".into()))
    }
}

impl AgentlessJob {
    pub fn kill(&self, signal: i32) -> Result<(), SshError> {
        self.killer.kill(signal)
    }
    pub fn killer(&self) -> AgentlessKiller {
        self.killer.clone()
    }
}

impl SshSession {
    /// Agentless: run `run.command` on its own exec channel.
    pub async fn exec(&self, run: Run) -> Result<AgentlessJob, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command_line(&run)).await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        let timeout = run.timeout_ms.map(Duration::from_millis);
        let name = self.host.name.clone();
        tokio::spawn(async move {
            if tx.send(AgentMsg::Started { pid: 0 }).await.is_err() {
                let _ = channel.close().await;
                return;
            }
            // No terminal message means the channel closed without an exit status: the
            // consumer sees its events end, as for a lost agent link.
            match pump(channel, &tx, kill_rx, timeout, &name).await {
                Some(last) => {
                    tracing::debug!("{name}: agentless job ended: {}", last.name());
                    let _ = tx.send(last).await;
                }
                None => tracing::debug!("{name}: agentless job: channel closed without a status"),
            }
        });
        Ok(AgentlessJob {
            events: rx,
            killer: AgentlessKiller(kill_tx),
        })
    }
}

/// Stream one exec channel into `tx` until it closes; returns the terminal message, or None
/// when the channel closed without an exit status.
async fn pump(
    channel: russh::Channel<russh::client::Msg>,
    tx: &mpsc::Sender<AgentMsg>,
    mut kill_rx: mpsc::UnboundedReceiver<i32>,
    timeout: Option<Duration>,
    host: &str,
) -> Option<AgentMsg> {
    let (mut rd, wr) = channel.split();
    let start = Instant::now();
    let mut deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut stage = 0u8; // timeout escalation: 0 none, 1 TERM sent, 2 KILL sent, 3 closed
    let (mut code, mut signal) = (None, None);
    let mut refused = false;
    // Login output before the wrapper's marker is not the command's.
    let (mut skip_out, mut skip_err) = (Skipper::default(), Skipper::default());
    loop {
        let wake =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            msg = rd.wait() => {
                let Some(msg) = msg else { break };
                let out = match msg {
                    ChannelMsg::Data { data } => Some((Stream::Stdout, skip_out.feed(&data))),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        Some((Stream::Stderr, skip_err.feed(&data)))
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        code = Some(exit_status as i32);
                        None
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        signal = Some(signal_number(&signal_name));
                        None
                    }
                    ChannelMsg::Failure => {
                        refused = true;
                        None
                    }
                    _ => None,
                };
                if let Some((stream, data)) = out.filter(|(_, d)| !d.is_empty()) {
                    let msg = AgentMsg::Output { stream, data: ByteBuf::from(data) };
                    if tx.send(msg).await.is_err() {
                        // Nobody listens any more: stop the command and the channel.
                        let _ = wr.data_bytes(&b"9\n"[..]).await;
                        let _ = wr.close().await;
                    }
                }
            }
            Some(sig) = kill_rx.recv() => {
                if let Err(e) = wr.data_bytes(format!("{sig}\n").into_bytes()).await {
                    tracing::debug!("signal {sig} not delivered: {e}");
                }
            }
            _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                stage += 1;
                match stage {
                    1 => { let _ = wr.data_bytes(&b"15\n"[..]).await; }
                    2 => { let _ = wr.data_bytes(&b"9\n"[..]).await; }
                    _ => { let _ = wr.close().await; }
                }
                deadline = (stage < 3).then(|| tokio::time::Instant::now() + KILL_GRACE);
                if stage >= 3 { break; }
            }
        }
    }
    // Held back while looking for a marker that never came: it is output after all.
    for (stream, rest) in [
        (Stream::Stdout, skip_out.finish()),
        (Stream::Stderr, skip_err.finish()),
    ] {
        if !rest.is_empty() {
            let data = ByteBuf::from(rest);
            let _ = tx.send(AgentMsg::Output { stream, data }).await;
        }
    }
    if skip_out.skipped + skip_err.skipped > 0 {
        tracing::debug!(
            "{host}: skipped {} + {} bytes of login output (stdout + stderr)",
            skip_out.skipped,
            skip_err.skipped
        );
    }
    let wall_ms = start.elapsed().as_millis() as u64;
    let timed_out = stage > 0;
    if refused && code.is_none() && signal.is_none() {
        return Some(AgentMsg::Error {
            message: "the server refused the exec request".into(),
        });
    }
    if code.is_none() && signal.is_none() && !timed_out {
        return None;
    }
    Some(AgentMsg::Exit(Exit {
        code,
        signal: signal.or(if timed_out && code.is_none() {
            Some(9)
        } else {
            None
        }),
        wall_ms,
        user_ms: 0,
        sys_ms: 0,
        max_rss_kb: 0,
        timed_out,
    }))
}
