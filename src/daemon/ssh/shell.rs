//! Interactive sessions on a pooled connection: a new session channel with a PTY on the SSH
//! connection the host's agent already uses (no new handshake, through the same jump hosts),
//! then a login shell or one command. Bytes flow as they are in both directions; the
//! operator's terminal size follows `Resize`.

use std::time::Duration;

use russh::ChannelMsg;
use tokio::sync::mpsc;

use super::exec::signal_number;
use super::{SshError, SshSession};

/// How long opening the channel and its PTY may take.
const OPEN_WAIT: Duration = Duration::from_secs(20);
/// Input messages queued before the operator's keystrokes wait for the channel.
const INPUT_QUEUE: usize = 64;
/// Output chunks queued before the channel's reader waits for the client.
const OUTPUT_QUEUE: usize = 64;

/// The session asked for.
#[derive(Debug, Clone)]
pub struct PtySpec {
    pub term: String,
    pub cols: u16,
    pub rows: u16,
    /// A command instead of the login shell.
    pub command: Option<String>,
}

/// From the operator to the session.
#[derive(Debug)]
pub enum ShellIn {
    Data(Vec<u8>),
    Resize { cols: u16, rows: u16 },
    Eof,
}

/// From the session to the operator; `Exit` is last.
#[derive(Debug)]
pub enum ShellOut {
    Data(Vec<u8>),
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

impl SshSession {
    /// Open a PTY session: input goes in through the sender (dropping it closes the session),
    /// output and the exit come out of the receiver.
    pub async fn shell(
        &self,
        spec: PtySpec,
    ) -> Result<(mpsc::Sender<ShellIn>, mpsc::Receiver<ShellOut>), SshError> {
        let open = async {
            let channel = self.handle.channel_open_session().await?;
            channel
                .request_pty(
                    true,
                    &spec.term,
                    u32::from(spec.cols),
                    u32::from(spec.rows),
                    0,
                    0,
                    &[],
                )
                .await?;
            match &spec.command {
                Some(c) => channel.exec(true, c.as_bytes()).await?,
                None => channel.request_shell(true).await?,
            }
            Ok::<_, SshError>(channel)
        };
        let channel = tokio::time::timeout(OPEN_WAIT, open).await.map_err(|_| {
            SshError::Timeout(format!(
                "{}: no shell within {}s",
                self.host.name,
                OPEN_WAIT.as_secs()
            ))
        })??;
        let (mut rd, wr) = channel.split();
        let (in_tx, mut in_rx) = mpsc::channel::<ShellIn>(INPUT_QUEUE);
        let (out_tx, out_rx) = mpsc::channel::<ShellOut>(OUTPUT_QUEUE);
        let name = self.host.name.clone();
        // Every channel needs a reader: this one runs until the session ends.
        tokio::spawn(async move {
            let (mut code, mut signal) = (None, None);
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. }
                        if out_tx.send(ShellOut::Data(data.to_vec())).await.is_err() =>
                    {
                        break
                    }
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        signal = Some(signal_number(&signal_name))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            tracing::debug!("{name}: shell ended (exit {code:?}, signal {signal:?})");
            let _ = out_tx.send(ShellOut::Exit { code, signal }).await;
        });
        tokio::spawn(async move {
            while let Some(m) = in_rx.recv().await {
                let r = match m {
                    ShellIn::Data(d) => wr.data_bytes(d).await,
                    ShellIn::Resize { cols, rows } => {
                        wr.window_change(u32::from(cols), u32::from(rows), 0, 0)
                            .await
                    }
                    ShellIn::Eof => wr.eof().await,
                };
                if r.is_err() {
                    break;
                }
            }
            // The operator left (or the session ended): close the channel, the remote shell
            // gets its hangup.
            let _ = wr.close().await;
        });
        Ok((in_tx, out_rx))
    }
}
