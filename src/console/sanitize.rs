//! Host output is untrusted: before anything reaches the terminal, control and escape
//! sequences are made visible (`^[`, `^G`, `\u{9b}`, `<U+202E>`) and invalid UTF-8 bytes are
//! shown as `\xNN` (the classification is [`crate::sanitize_class`], shared with the CLI).
//! Valid text passes unchanged; tabs become spaces. Escaped parts are returned as separate
//! segments so the renderer can dim them.

use unicode_width::UnicodeWidthStr as _;

use crate::sanitize_class::{pieces, Piece};

/// Longest line (in bytes) the console keeps; longer output is broken into several lines.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegKind {
    /// Text as the host sent it.
    Text,
    /// A visible stand-in for a control byte, escape or invalid byte.
    Escaped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub kind: SegKind,
    pub text: String,
}

/// Sanitize one line of output (without its newline) into display segments. What counts as
/// dangerous, and its stand-in, is [`crate::sanitize_class`]'s (shared with the CLI); here
/// tabs become spaces up to the next multiple of 8 columns.
pub fn line(bytes: &[u8]) -> Vec<Seg> {
    let mut out = Segs::default();
    let mut col = 0usize;
    pieces(bytes, |p| match p {
        Piece::Text(t) => {
            out.text(t);
            col += t.width();
        }
        Piece::Tab => {
            let n = 8 - col % 8;
            out.text(&" ".repeat(n));
            col += n;
        }
        Piece::Escaped(e) => {
            out.esc(&e);
            col += e.width();
        }
    });
    out.0
}

/// The sanitized line as plain text (escapes included as their visible form).
pub fn plain(bytes: &[u8]) -> String {
    line(bytes).into_iter().map(|s| s.text).collect()
}

#[derive(Default)]
struct Segs(Vec<Seg>);

impl Segs {
    fn push(&mut self, kind: SegKind, s: &str) {
        match self.0.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(s),
            _ => self.0.push(Seg {
                kind,
                text: s.to_string(),
            }),
        }
    }
    fn text(&mut self, s: &str) {
        self.push(SegKind::Text, s)
    }
    fn esc(&mut self, s: &str) {
        self.push(SegKind::Escaped, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc_parts(b: &[u8]) -> Vec<String> {
        line(b)
            .into_iter()
            .filter(|s| s.kind == SegKind::Escaped)
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn clear_screen_becomes_visible() {
        assert_eq!(plain(b"a\x1b[2Jb"), "a^[[2Jb");
        assert_eq!(esc_parts(b"a\x1b[2Jb"), vec!["^["]);
    }

    #[test]
    fn osc_and_bel_are_visible() {
        assert_eq!(plain(b"\x1b]0;pwned\x07x"), "^[]0;pwned^Gx");
    }

    #[test]
    fn c1_bytes_and_invalid_utf8_are_visible() {
        // a raw 0x9b (CSI in 8-bit terminals) is invalid UTF-8
        assert_eq!(plain(b"x\x9b2Jy"), "x\\x9b2Jy");
        // the same control encoded as UTF-8 (U+009B)
        assert_eq!(plain("x\u{9b}y".as_bytes()), "x\\u{9b}y");
        assert_eq!(plain(b"ok \xff\xfe end"), "ok \\xff\\xfe end");
        assert_eq!(plain(b"cut \xe2\x82"), "cut \\xe2\\x82");
    }

    #[test]
    fn valid_utf8_and_tabs_pass() {
        assert_eq!(plain("héllo wörld ✓".as_bytes()), "héllo wörld ✓");
        assert_eq!(plain(b"a\tb"), "a       b");
        // tab stops count the stand-ins' columns, also after an invalid byte
        assert_eq!(plain(b"\x1b\tx"), "^[      x");
        assert_eq!(plain(b"\xff\tx"), "\\xff    x");
        assert!(line("plain".as_bytes())
            .iter()
            .all(|s| s.kind == SegKind::Text));
    }

    #[test]
    fn bidi_override_and_del_are_visible() {
        assert_eq!(plain("a\u{202e}b".as_bytes()), "a<U+202E>b");
        assert_eq!(plain(b"a\x7fb\rc"), "a^?b^Mc");
    }
}
