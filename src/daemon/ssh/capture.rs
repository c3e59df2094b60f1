//! Captured helper commands (the installer's): one exec channel, a file streamed to its
//! stdin, its output collected up to [`CAPTURE_LIMIT`] per stream and its status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;

use super::{SshError, SshSession};

/// How long a captured command's stdin writer may lag behind the channel's end.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// A captured command keeps at most this much of each of stdout and stderr (the head): a
/// runaway helper cannot grow the daemon without bound.
pub const CAPTURE_LIMIT: usize = 1024 * 1024;

/// What a captured command produced: the first [`CAPTURE_LIMIT`] bytes of each stream and
/// how many bytes after them were dropped.
#[derive(Debug, Default)]
pub struct Captured {
    pub code: Option<u32>,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes of stdout dropped past [`CAPTURE_LIMIT`].
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped past [`CAPTURE_LIMIT`].
    pub stderr_dropped: u64,
}

impl Captured {
    /// True when either stream was cut at [`CAPTURE_LIMIT`].
    pub fn truncated(&self) -> bool {
        self.stdout_dropped + self.stderr_dropped > 0
    }

    fn push(&mut self, stderr: bool, data: &[u8]) {
        let (buf, dropped) = if stderr {
            (&mut self.stderr, &mut self.stderr_dropped)
        } else {
            (&mut self.stdout, &mut self.stdout_dropped)
        };
        append_capped(buf, dropped, data, CAPTURE_LIMIT);
    }
}

/// Append `data` to `buf` up to `cap` bytes in all; count the rest in `dropped`.
fn append_capped(buf: &mut Vec<u8>, dropped: &mut u64, data: &[u8], cap: usize) {
    let keep = data.len().min(cap.saturating_sub(buf.len()));
    buf.extend_from_slice(&data[..keep]);
    *dropped += (data.len() - keep) as u64;
}

impl SshSession {
    /// Run `cmd`, feeding it the file `stdin` (streamed in chunks, then EOF), and collect its
    /// output and status. Bounded by `limit`; the channel is always drained while stdin is
    /// written.
    pub async fn capture(
        &self,
        cmd: &str,
        stdin: Option<PathBuf>,
        limit: Duration,
    ) -> Result<Captured, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, cmd).await?;
        let (mut rd, wr) = channel.split();
        let wr = Arc::new(wr);
        let wr2 = wr.clone();
        let mut writer = tokio::spawn(async move {
            if let Some(path) = stdin {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| SshError::AgentUnavailable(format!("{}: {e}", path.display())))?;
                wr2.data(tokio::io::BufReader::with_capacity(64 * 1024, file))
                    .await?;
            }
            wr2.eof().await.map_err(SshError::from)
        });
        let mut out = Captured::default();
        let read = async {
            while let Some(msg) = rd.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.push(false, &data),
                    ChannelMsg::ExtendedData { data, .. } => out.push(true, &data),
                    ChannelMsg::ExitStatus { exit_status } => out.code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
        };
        let timed_out = tokio::time::timeout(limit, read).await.is_err();
        // The channel is closed (or we gave up): a writer still blocked on window space
        // would wait forever, so it gets a moment to finish and is then dropped.
        let written = tokio::time::timeout(WRITER_GRACE, &mut writer).await;
        if !matches!(written, Ok(Ok(Ok(())))) {
            writer.abort();
            tracing::debug!("{}: stdin of `{cmd:.40}` not fully written", self.host.name);
        }
        if timed_out {
            let _ = wr.close().await;
            return Err(SshError::Timeout(format!(
                "{}: `{}` did not finish within {limit:?}",
                self.host.name,
                cmd.chars().take(60).collect::<String>()
            )));
        }
        if out.truncated() {
            tracing::warn!(
                "{}: `{cmd:.40}` printed more than {CAPTURE_LIMIT} bytes; kept the first, \
                 dropped {} of stdout and {} of stderr",
                self.host.name,
                out.stdout_dropped,
                out.stderr_dropped
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_capped_keeps_the_head_and_counts_the_rest() {
        let (mut buf, mut dropped) = (Vec::new(), 0u64);
        append_capped(&mut buf, &mut dropped, b"hello", 8);
        append_capped(&mut buf, &mut dropped, b" world", 8);
        append_capped(&mut buf, &mut dropped, b"!!", 8);
        assert_eq!(buf, b"hello wo");
        assert_eq!(dropped, 5);
    }

    #[test]
    fn captured_streams_stop_at_the_limit_each() {
        let mut c = Captured::default();
        let chunk = vec![b'o'; 64 * 1024];
        for _ in 0..(CAPTURE_LIMIT / chunk.len() + 3) {
            c.push(false, &chunk);
        }
        c.push(true, b"small stderr");
        assert_eq!(c.stdout.len(), CAPTURE_LIMIT);
        assert_eq!(c.stdout_dropped, 3 * 64 * 1024);
        assert_eq!(c.stderr, b"small stderr");
        assert_eq!(c.stderr_dropped, 0);
        assert!(c.truncated());
        assert!(!Captured::default().truncated());
    }
}
