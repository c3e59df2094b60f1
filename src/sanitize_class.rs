//! Which characters of untrusted host output may reach a terminal, and what stands in for the
//! rest: the one classification both the console (`console::sanitize`, styled segments) and
//! the CLI (`client::render`, plain text) use. They differ only in how they lay the pieces
//! out (the console expands tabs and dims stand-ins; the CLI keeps tabs), never in what
//! counts as dangerous.
//!
//! Stand-ins: C0 controls as `^X` (ESC is `^[`), DEL as `^?`, C1 controls (U+0080–U+009F)
//! as `\u{9b}`, bidirectional controls (overrides, embeddings, isolates and marks, which can
//! reorder what the operator reads) as `<U+202E>`, and bytes that are not UTF-8 as `\xff`.

use std::fmt::Write as _;

/// What a character of untrusted output is, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Printable as it is.
    Plain,
    /// A tab: each caller lays it out its own way.
    Tab,
    /// A C0 control (other than tab) or DEL: shown as `^X` / `^?`.
    Control,
    /// A C1 control (U+0080–U+009F): 8-bit terminals read U+009B as CSI.
    C1,
    /// A bidirectional formatting character.
    Bidi,
}

/// The class of `c`.
pub fn classify(c: char) -> Class {
    match c {
        '\t' => Class::Tab,
        '\u{0}'..='\u{1f}' | '\u{7f}' => Class::Control,
        '\u{80}'..='\u{9f}' => Class::C1,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}' => {
            Class::Bidi
        }
        _ => Class::Plain,
    }
}

/// Append the visible stand-in for `c` (of a class other than `Plain` and `Tab`) to `out`.
fn push_stand_in(out: &mut String, c: char, class: Class) {
    match class {
        Class::Control if c == '\u{7f}' => out.push_str("^?"),
        Class::Control => {
            out.push('^');
            out.push(char::from_u32(c as u32 + 0x40).unwrap_or('?'));
        }
        Class::C1 => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        Class::Bidi => {
            let _ = write!(out, "<U+{:04X}>", c as u32);
        }
        Class::Plain | Class::Tab => out.push(c),
    }
}

/// One piece of a sanitised line, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text that is safe to print as it is (no controls, no tabs).
    Text(&'a str),
    Tab,
    /// A visible stand-in for one control character or one byte that is not UTF-8.
    Escaped(String),
}

/// Walk untrusted `bytes` as [`Piece`]s: runs of plain text, tabs and stand-ins.
pub fn pieces(bytes: &[u8], mut f: impl FnMut(Piece<'_>)) {
    for chunk in bytes.utf8_chunks() {
        let text = chunk.valid();
        let mut start = 0;
        for (i, c) in text.char_indices() {
            let class = classify(c);
            if class == Class::Plain {
                continue;
            }
            if start < i {
                f(Piece::Text(&text[start..i]));
            }
            start = i + c.len_utf8();
            if class == Class::Tab {
                f(Piece::Tab);
            } else {
                let mut s = String::with_capacity(8);
                push_stand_in(&mut s, c, class);
                f(Piece::Escaped(s));
            }
        }
        if start < text.len() {
            f(Piece::Text(&text[start..]));
        }
        for b in chunk.invalid() {
            f(Piece::Escaped(format!("\\x{b:02x}")));
        }
    }
}

/// Untrusted bytes as printable text: [`pieces`] joined, tabs kept. What `crew run` prints of
/// host output, and what error messages show of a file's contents.
pub fn visible(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    pieces(bytes, |p| match p {
        Piece::Text(t) => out.push_str(t),
        Piece::Tab => out.push('\t'),
        Piece::Escaped(e) => out.push_str(&e),
    });
    out
}

/// True when every byte of `bytes` is printable ASCII (space to `~`) or a tab, or a newline
/// when `newline_ok`: text whose [`visible`] form is itself. Checked 16 bytes at a time
/// without branching inside a block, so the compiler vectorises it.
pub fn is_plain_ascii(bytes: &[u8], newline_ok: bool) -> bool {
    let plain = |b: u8| b.wrapping_sub(0x20) < 0x5f || b == b'\t' || (newline_ok && b == b'\n');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let mut all = true;
        for &b in block {
            all &= plain(b);
        }
        if !all {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| plain(b))
}

/// [`visible`] written to `out`; plain ASCII goes out as it is, without a copy.
pub fn write_visible<W: std::io::Write>(out: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if is_plain_ascii(bytes, false) {
        out.write_all(bytes)
    } else {
        out.write_all(visible(bytes).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces as `text`, `TAB` and `[stand-in]`.
    fn walk(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        pieces(bytes, |p| {
            out.push(match p {
                Piece::Text(t) => t.to_string(),
                Piece::Tab => "TAB".into(),
                Piece::Escaped(s) => format!("[{s}]"),
            })
        });
        out
    }

    #[test]
    fn classes_of_dangerous_characters() {
        assert_eq!(classify('a'), Class::Plain);
        assert_eq!(classify('é'), Class::Plain);
        assert_eq!(classify('✓'), Class::Plain);
        assert_eq!(classify('\t'), Class::Tab);
        for c in ['\0', '\u{7}', '\r', '\n', '\u{1b}', '\u{1f}', '\u{7f}'] {
            assert_eq!(classify(c), Class::Control, "{c:?}");
        }
        for c in ['\u{80}', '\u{9b}', '\u{9d}', '\u{9f}'] {
            assert_eq!(classify(c), Class::C1, "{c:?}");
        }
        assert_eq!(classify('\u{a0}'), Class::Plain);
        for c in [
            '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200e}', '\u{200f}',
        ] {
            assert_eq!(classify(c), Class::Bidi, "{c:?}");
        }
        assert_eq!(classify('\u{61c}'), Class::Bidi);
        assert_eq!(classify('\u{2070}'), Class::Plain);
    }

    #[test]
    fn plain_ascii_is_exactly_the_text_visible_leaves_alone() {
        // Every single byte, alone and inside a block of 16 or more, in both modes.
        for b in 0..=255u8 {
            let alone = [b];
            let mut long = vec![b'a'; 40];
            long[21] = b;
            let same = visible(&alone).as_bytes() == alone;
            assert_eq!(is_plain_ascii(&alone, false), same && b < 0x80, "{b:#x}");
            assert_eq!(is_plain_ascii(&long, false), same && b < 0x80, "{b:#x}");
            let nl = same && b < 0x80 || b == b'\n';
            assert_eq!(is_plain_ascii(&long, true), nl, "{b:#x}");
            let mut written = Vec::new();
            write_visible(&mut written, &long).expect("write");
            assert_eq!(written, visible(&long).as_bytes(), "{b:#x}");
        }
        assert!(is_plain_ascii(b"", false));
    }

    #[test]
    fn pieces_keep_text_runs_and_stand_in_for_the_rest() {
        assert_eq!(
            walk(b"a\x1b[2Jb\tc\x7f\x07"),
            ["a", "[^[]", "[2Jb", "TAB", "c", "[^?]", "[^G]"]
        );
        assert_eq!(
            walk("x\u{9b}y\u{202e}z".as_bytes()),
            ["x", "[\\u{9b}]", "y", "[<U+202E>]", "z"]
        );
        // A raw 0x9b byte is not UTF-8; an incomplete sequence at the end neither.
        assert_eq!(
            walk(b"ok \x9b\xff end \xe2\x82"),
            ["ok ", "[\\x9b]", "[\\xff]", " end ", "[\\xe2]", "[\\x82]"]
        );
        assert!(walk(b"").is_empty());
    }
}
