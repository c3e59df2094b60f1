//! Link start-up: skip whatever precedes the agent's sync marker, then read its `Hello`.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::LinkError;
use crate::proto::agent::{self, decode, AgentMsg, Decoded, Hello, SYNC_MARKER};
use crate::proto::frame::read_frame;

/// At most this much junk (a banner, a chatty `.bashrc`) is skipped before the marker.
pub const MAX_SKIP: usize = 64 * 1024;

/// Read until [`SYNC_MARKER`]. Returns what came before it and what was read after it (the
/// start of the frame stream).
pub(super) async fn find_marker<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut searched = 0; // bytes of `buf` known not to start a marker
    loop {
        if let Some(pos) = agent::find_marker(&buf[searched..], SYNC_MARKER).map(|p| p + searched) {
            let rest = buf.split_off(pos + SYNC_MARKER.len());
            buf.truncate(pos);
            return Ok((buf, rest));
        }
        searched = buf.len().saturating_sub(SYNC_MARKER.len() - 1);
        if searched > MAX_SKIP {
            return Err(LinkError::Handshake(format!(
                "no agent sync marker in the first {MAX_SKIP} bytes; the remote side printed: {}",
                preview(&buf)
            )));
        }
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| LinkError::Handshake(format!("reading the agent's greeting: {e}")))?;
        if n == 0 {
            return Err(LinkError::Handshake(format!(
                "the agent's output ended before its sync marker; it printed: {}",
                preview(&buf)
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A short, printable rendering of untrusted bytes for an error message.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let mut out: String = text.escape_debug().collect();
    if bytes.len() > MAX {
        out.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    if out.is_empty() {
        out.push_str("(nothing)");
    }
    out
}

/// Read the agent's `Hello` from the stream that follows the marker.
pub(super) async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> Result<Hello, LinkError> {
    let frame = read_frame(r)
        .await
        .map_err(|e| LinkError::Handshake(format!("reading the agent's Hello: {e}")))?
        .ok_or_else(|| LinkError::Handshake("the agent closed the link before Hello".into()))?;
    match decode(&frame) {
        Decoded::Msg {
            msg: AgentMsg::Hello(h),
            ..
        } => Ok(h),
        Decoded::Msg { msg, .. } => Err(LinkError::Handshake(format!(
            "the agent sent {} where Hello was expected",
            msg.name()
        ))),
        Decoded::Invalid { reason, .. } => Err(LinkError::Handshake(format!(
            "the agent's Hello is malformed: {reason}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marker_split_across_reads_is_found() {
        let mut data = b"banner\n".to_vec();
        data.extend_from_slice(SYNC_MARKER);
        data.extend_from_slice(b"tail");
        let (a, b) = data.split_at(10);
        let mut r = AsyncReadExt::chain(a, b);
        let (skipped, rest) = find_marker(&mut r).await.expect("marker");
        assert_eq!(skipped, b"banner\n");
        assert_eq!(rest, b"tail");
    }

    #[tokio::test]
    async fn too_much_junk_is_an_error() {
        let data = vec![b'x'; MAX_SKIP + 8192];
        let mut r = &data[..];
        assert!(matches!(
            find_marker(&mut r).await,
            Err(LinkError::Handshake(_))
        ));
    }
}
