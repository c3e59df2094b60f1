//! Host output is untrusted: before anything reaches the terminal, control and escape
//! sequences are made visible (`^[`, `^G`, `\x9b`, `<U+202E>`) and invalid UTF-8 bytes are
//! shown as `\xNN`. Valid text passes unchanged; tabs become spaces. Escaped parts are
//! returned as separate segments so the renderer can dim them.

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

/// Sanitize one line of output (without its newline) into display segments.
pub fn line(bytes: &[u8]) -> Vec<Seg> {
    let mut out = Segs::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_str(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // valid_up_to guarantees this prefix is UTF-8.
                push_str(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for b in &bad[..n] {
                    out.esc(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out.0
}

/// The sanitized line as plain text (escapes included as their visible form).
pub fn plain(bytes: &[u8]) -> String {
    line(bytes).into_iter().map(|s| s.text).collect()
}

fn push_str(out: &mut Segs, s: &str) {
    let mut col = 0usize;
    for c in s.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.text(&" ".repeat(n));
                col += n;
                continue;
            }
            '\u{1b}' => out.esc("^["),
            '\u{7f}' => out.esc("^?"),
            c if (c as u32) < 0x20 => {
                let caret = char::from_u32(c as u32 + 0x40).unwrap_or('?');
                out.esc(&format!("^{caret}"));
            }
            c if (0x80..0xa0).contains(&(c as u32)) => out.esc(&format!("\\x{:02x}", c as u32)),
            // Bidirectional overrides and isolates can reorder what the operator reads.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {
                out.esc(&format!("<U+{:04X}>", c as u32))
            }
            c => {
                let mut b = [0u8; 4];
                out.text(c.encode_utf8(&mut b));
            }
        }
        col += 1;
    }
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
        assert_eq!(plain("x\u{9b}y".as_bytes()), "x\\x9by");
        assert_eq!(plain(b"ok \xff\xfe end"), "ok \\xff\\xfe end");
        assert_eq!(plain(b"cut \xe2\x82"), "cut \\xe2\\x82");
    }

    #[test]
    fn valid_utf8_and_tabs_pass() {
        assert_eq!(plain("héllo wörld ✓".as_bytes()), "héllo wörld ✓");
        assert_eq!(plain(b"a\tb"), "a       b");
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
