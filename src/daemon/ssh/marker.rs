//! Markers around the output of remote helper commands, so whatever a login shell prints
//! first (a banner, a chatty `.bashrc`, a motd) — or after — is never taken for the output.
//!
//! The shell prints the markers with octal escapes (`printf '\036…'`), so a shell that
//! echoes its command line does not produce them: the bytes only appear when the command
//! actually runs.

use crate::proto::agent::find_marker;

/// Printed (on stdout and stderr) right before a helper's real output.
pub const BEGIN: &[u8] = b"\x1e\x1ecrew:begin\x1e\x1e";
/// Printed on stdout right after a helper's real output.
pub const END: &[u8] = b"\x1e\x1ecrew:end\x1e\x1e";

/// Shell: print [`BEGIN`] on stdout and on stderr.
pub const SH_BEGIN: &str =
    r"printf '\036\036crew:begin\036\036'; printf '\036\036crew:begin\036\036' >&2";
/// Shell: print [`END`] on stdout.
pub const SH_END: &str = r"printf '\036\036crew:end\036\036'";

/// At most this much login output is searched for the marker before giving up: the same
/// bound as the agent link's search for its sync marker.
pub const MAX_SKIP: usize = crate::daemon::link::MAX_SKIP;

/// The bytes between [`BEGIN`] and the following [`END`], if both are there.
pub fn between(out: &[u8]) -> Option<&[u8]> {
    let start = find_marker(out, BEGIN)? + BEGIN.len();
    let len = find_marker(&out[start..], END)?;
    Some(&out[start..start + len])
}

/// What came before [`BEGIN`] (login output) and what came after it. Without a marker,
/// nothing is skipped.
pub fn split_begin(out: &[u8]) -> (&[u8], &[u8]) {
    match find_marker(out, BEGIN) {
        Some(p) => (&out[..p], &out[p + BEGIN.len()..]),
        None => (&[], out),
    }
}

/// Streaming [`split_begin`]: buffers a stream until [`BEGIN`] has passed, then passes
/// everything through. Gives up (passes the buffer on whole) after [`MAX_SKIP`] bytes or
/// at the end of the stream without a marker, so nothing real is ever lost.
#[derive(Debug, Default)]
pub struct Skipper {
    buf: Vec<u8>,
    done: bool,
    /// Login output dropped before the marker.
    pub skipped: usize,
}

impl Skipper {
    /// Feed one chunk; returns the bytes to pass on (empty while still looking).
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        let searched = self.buf.len().saturating_sub(BEGIN.len() - 1);
        self.buf.extend_from_slice(data);
        if let Some(p) = find_marker(&self.buf[searched..], BEGIN).map(|p| p + searched) {
            self.done = true;
            self.skipped = p;
            let rest = self.buf.split_off(p + BEGIN.len());
            self.buf = Vec::new();
            return rest;
        }
        if self.buf.len() > MAX_SKIP {
            self.done = true;
            return std::mem::take(&mut self.buf);
        }
        Vec::new()
    }

    /// The stream ended: whatever is still held back (no marker was seen).
    pub fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_marker_finds_the_first_whole_marker() {
        assert_eq!(find_marker(b"ab\x1e\x1ecrew", BEGIN), None);
        let mut hay = b"x".to_vec();
        hay.extend_from_slice(BEGIN);
        hay.extend_from_slice(BEGIN);
        assert_eq!(find_marker(&hay, BEGIN), Some(1));
        assert_eq!(find_marker(&hay[1..], BEGIN), Some(0));
        assert_eq!(find_marker(&hay[..BEGIN.len()], BEGIN), None);
        assert_eq!(find_marker(b"", BEGIN), None);
        assert_eq!(find_marker(b"abc", b""), Some(0));
    }

    #[test]
    fn between_ignores_junk_on_both_sides() {
        let mut out = b"banner\n".to_vec();
        out.extend_from_slice(BEGIN);
        out.extend_from_slice(b"Linux x86_64\npresent\n");
        out.extend_from_slice(END);
        out.extend_from_slice(b"bye\n");
        assert_eq!(between(&out), Some(&b"Linux x86_64\npresent\n"[..]));
        assert_eq!(between(b"no markers"), None);
        let (skipped, rest) = split_begin(&out);
        assert_eq!(skipped, b"banner\n");
        assert!(rest.starts_with(b"Linux"));
    }

    #[test]
    fn skipper_finds_a_marker_split_across_chunks() {
        let mut all = b"motd line\n".to_vec();
        all.extend_from_slice(BEGIN);
        all.extend_from_slice(b"real output");
        let mut s = Skipper::default();
        let mut got = Vec::new();
        for chunk in all.chunks(3) {
            got.extend(s.feed(chunk));
        }
        got.extend(s.finish());
        assert_eq!(got, b"real output");
        assert_eq!(s.skipped, 10);
    }

    #[test]
    fn skipper_without_marker_loses_nothing() {
        let mut s = Skipper::default();
        assert!(s.feed(b"sh: not found\n").is_empty());
        assert_eq!(s.finish(), b"sh: not found\n");
        let mut s = Skipper::default();
        let big = vec![b'x'; MAX_SKIP + 1];
        assert_eq!(s.feed(&big).len(), MAX_SKIP + 1);
        assert_eq!(s.feed(b"more"), b"more");
    }
}
