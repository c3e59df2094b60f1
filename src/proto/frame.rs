//! Length-prefixed binary frames shared by both protocols (daemon↔agent, client↔daemon).
//!
//! Wire layout (all integers big-endian):
//!
//! ```text
//! u32 len | u16 kind | u64 id | payload (len - 10 bytes)
//! ```
//!
//! `len` counts everything after itself. Frames larger than [`MAX_FRAME`] are rejected
//! before any allocation, so a corrupt length never makes us allocate gigabytes. The payload is
//! opaque here; [`super::agent`] and [`super::daemon`] give it meaning.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of header after the length prefix: kind (2) + id (8).
pub const HEADER: usize = 10;
/// Largest frame accepted on the wire (payload + header), 16 MiB.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One frame as read off the wire, before its payload is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub kind: u16,
    pub id: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame length {0} is shorter than the {HEADER}-byte header")]
    TooShort(usize),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// True when the peer closed the stream cleanly between frames.
    pub fn is_eof(&self) -> bool {
        matches!(self, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
    }
}

/// The bytes that precede a payload of `payload_len` bytes: length, kind, id.
pub fn header(kind: u16, id: u64, payload_len: usize) -> Result<[u8; 4 + HEADER], FrameError> {
    let len = HEADER + payload_len;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut h = [0u8; 4 + HEADER];
    h[..4].copy_from_slice(&(len as u32).to_be_bytes());
    h[4..6].copy_from_slice(&kind.to_be_bytes());
    h[6..].copy_from_slice(&id.to_be_bytes());
    Ok(h)
}

/// Encode one frame into `out` (appending).
pub fn encode_into(
    out: &mut Vec<u8>,
    kind: u16,
    id: u64,
    payload: &[u8],
) -> Result<(), FrameError> {
    let head = header(kind, id, payload.len())?;
    out.reserve(head.len() + payload.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    Ok(())
}

/// Read one frame. A clean EOF before the first byte is reported as `Ok(None)`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<RawFrame>, FrameError> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if len < HEADER {
        return Err(FrameError::TooShort(len));
    }
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head).await?;
    let kind = u16::from_be_bytes([head[0], head[1]]);
    let mut id_bytes = [0u8; 8];
    id_bytes.copy_from_slice(&head[2..10]);
    let id = u64::from_be_bytes(id_bytes);
    let mut payload = vec![0u8; len - HEADER];
    r.read_exact(&mut payload).await?;
    Ok(Some(RawFrame { kind, id, payload }))
}

/// Write one frame and flush it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u16,
    id: u64,
    payload: &[u8],
) -> Result<(), FrameError> {
    let mut buf = Vec::new();
    encode_into(&mut buf, kind, id, payload)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_and_limits() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, 42, b"hello").expect("encode");
        let mut rd = &buf[..];
        let f = read_frame(&mut rd).await.expect("read").expect("frame");
        assert_eq!(
            f,
            RawFrame {
                kind: 7,
                id: 42,
                payload: b"hello".to_vec()
            }
        );
        assert!(read_frame(&mut rd).await.expect("eof").is_none());

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut rd = &huge[..];
        assert!(matches!(
            read_frame(&mut rd).await,
            Err(FrameError::TooLarge(_))
        ));
        let short = 3u32.to_be_bytes();
        let mut rd = &short[..];
        assert!(matches!(
            read_frame(&mut rd).await,
            Err(FrameError::TooShort(3))
        ));
    }
}
