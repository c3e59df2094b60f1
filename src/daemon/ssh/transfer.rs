//! Exec channels for agentless file copies: a shell script with arguments whose stdin we
//! stream (`put`), or whose stdout we stream (`fetch`), each with back-pressure (the SSH
//! channel window). Login output before the script's marker is dropped, as for agentless runs.

use std::sync::Arc;

use russh::client::Msg;
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::exec::sh_quote;
use super::marker::{self, Skipper};
use super::{SshError, SshSession};

/// Stderr (and buffered stdout) kept per script, at most.
const KEEP: usize = 64 * 1024;
/// Stdout chunks queued for a [`Drain`]'s reader.
const QUEUE: usize = 8;

/// How a script ended.
#[derive(Debug, Default)]
pub struct ScriptEnd {
    pub code: Option<u32>,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ScriptEnd {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The script's stderr (or its status) as one line, for an error message.
    pub fn why(&self) -> String {
        let e = String::from_utf8_lossy(&self.stderr).trim().to_string();
        if !e.is_empty() {
            return e;
        }
        match (&self.code, &self.signal) {
            (_, Some(s)) => format!("killed by {s}"),
            (Some(c), _) => format!("exit status {c}"),
            _ => "the channel closed without a status".into(),
        }
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = KEEP.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..room.min(data.len())]);
}

/// `exec sh -c 'MARKER; cd $HOME; SCRIPT' sh ARGS…`: relative paths are relative to the
/// login's home directory, as the agent takes them.
fn command(script: &str, args: &[&str]) -> String {
    let mut line = String::from("exec sh -c ");
    let home = r#"cd -- "${HOME:-.}" 2>/dev/null || :"#;
    line += &sh_quote(&format!("{}\n{home}\n{script}", marker::SH_BEGIN));
    line += " sh";
    for a in args {
        line += " ";
        line += &sh_quote(a);
    }
    line
}

/// A script whose stdin is streamed.
pub struct Feed {
    wr: Arc<ChannelWriteHalf<Msg>>,
    reader: JoinHandle<ScriptEnd>,
    /// Cancelled when the channel has closed (the script ended): a write waiting for window
    /// space that will never come stops then.
    ended: CancellationToken,
}

/// A script whose stdout is streamed.
pub struct Drain {
    rx: mpsc::Receiver<Vec<u8>>,
    reader: JoinHandle<ScriptEnd>,
}

impl SshSession {
    /// Run `script` with `args`, stdin closed at once; its status and (kept) output.
    pub async fn script(&self, script: &str, args: &[&str]) -> Result<ScriptEnd, SshError> {
        let f = self.feed(script, args).await?;
        f.finish().await
    }

    /// Start `script` with `args`; write its stdin with [`Feed::write`].
    pub async fn feed(&self, script: &str, args: &[&str]) -> Result<Feed, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command(script, args)).await?;
        let (mut rd, wr) = channel.split();
        let ended = CancellationToken::new();
        let closed = ended.clone();
        let reader = tokio::spawn(async move {
            let _closed = closed.drop_guard();
            let mut end = ScriptEnd::default();
            let (mut so, mut se) = (Skipper::default(), Skipper::default());
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } => keep(&mut end.stdout, &so.feed(&data)),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        keep(&mut end.stderr, &se.feed(&data))
                    }
                    ChannelMsg::ExitStatus { exit_status } => end.code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        end.signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
            keep(&mut end.stdout, &so.finish());
            keep(&mut end.stderr, &se.finish());
            end
        });
        Ok(Feed {
            wr: Arc::new(wr),
            reader,
            ended,
        })
    }

    /// Start `script` with `args`; read its stdout with [`Drain::next`].
    pub async fn drain(&self, script: &str, args: &[&str]) -> Result<Drain, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command(script, args)).await?;
        let (mut rd, wr) = channel.split();
        let (tx, rx) = mpsc::channel(QUEUE);
        let reader = tokio::spawn(async move {
            let _ = wr.eof().await;
            let mut end = ScriptEnd::default();
            let (mut so, mut se) = (Skipper::default(), Skipper::default());
            let mut listening = true;
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        let d = so.feed(&data);
                        if !d.is_empty() && listening && tx.send(d).await.is_err() {
                            listening = false;
                            let _ = wr.close().await;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        keep(&mut end.stderr, &se.feed(&data))
                    }
                    ChannelMsg::ExitStatus { exit_status } => end.code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        end.signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
            let rest = so.finish();
            if !rest.is_empty() && listening {
                let _ = tx.send(rest).await;
            }
            keep(&mut end.stderr, &se.finish());
            end
        });
        Ok(Drain { rx, reader })
    }
}

impl Feed {
    /// Write bytes to the script's stdin (waits for the channel's window, or until the
    /// script has ended: then it fails, and [`Feed::finish`] says why the script ended).
    pub async fn write(&self, data: &[u8]) -> Result<(), SshError> {
        tokio::select! {
            r = self.wr.data(data) => {
                r.map_err(|e| SshError::Session(format!("writing to the host: {e}")))
            }
            _ = self.ended.cancelled() => Err(SshError::Session(
                "the host's side ended before all of its input was sent".into(),
            )),
        }
    }

    /// Close stdin and wait for the script's end.
    pub async fn finish(self) -> Result<ScriptEnd, SshError> {
        let _ = self.wr.eof().await;
        self.reader
            .await
            .map_err(|e| SshError::Session(e.to_string()))
    }

    /// Stop the script (the channel closes; the shell gets SIGHUP, its stdin EOF).
    pub async fn abort(self) {
        let _ = self.wr.close().await;
        self.reader.abort();
    }
}

impl Drain {
    /// The next piece of stdout; None at its end.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Wait for the script's end (after its stdout was read to the end, or to stop it).
    pub async fn finish(mut self) -> Result<ScriptEnd, SshError> {
        self.rx.close();
        self.reader
            .await
            .map_err(|e| SshError::Session(e.to_string()))
    }
}
