//! Turning host output into terminal lines: sanitising (host output is untrusted and never
//! reaches the terminal raw), per-host line splitting, `host | line` prefixes, colour.

use std::collections::HashMap;

use crate::model::Stream;

/// A line longer than this is cut and emitted in pieces (bounded memory per host).
pub const MAX_LINE: usize = 64 * 1024;

/// Make untrusted bytes safe to print (see [`crate::sanitize_class::visible`], shared with
/// the console and the client).
pub use crate::sanitize_class::visible as sanitize;

/// Splits each host's streams into lines, keeping partial lines until their newline.
#[derive(Default)]
pub struct Splitter {
    partial: HashMap<(String, Stream), Vec<u8>>,
}

impl Splitter {
    /// Complete lines (without the newline) in `data`, after what was pending.
    pub fn push(&mut self, host: &str, stream: Stream, data: &[u8]) -> Vec<Vec<u8>> {
        let buf = self.partial.entry((host.to_string(), stream)).or_default();
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                lines.push(std::mem::take(buf));
            } else {
                buf.push(b);
                if buf.len() >= MAX_LINE {
                    lines.push(std::mem::take(buf));
                }
            }
        }
        lines
    }

    /// Unterminated lines of `host` (stdout first), removed from the splitter.
    pub fn take(&mut self, host: &str) -> Vec<(Stream, Vec<u8>)> {
        let mut out = Vec::new();
        for s in [Stream::Stdout, Stream::Stderr] {
            if let Some(b) = self.partial.remove(&(host.to_string(), s)) {
                if !b.is_empty() {
                    out.push((s, b));
                }
            }
        }
        out
    }

    /// Every host with pending partial output.
    pub fn hosts(&self) -> Vec<String> {
        let mut h: Vec<String> = self
            .partial
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|((h, _), _)| h.clone())
            .collect();
        h.sort();
        h.dedup();
        h
    }
}

/// ANSI styling, or nothing when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour when `is_tty` and `NO_COLOR` is unset or empty.
    pub fn detect(is_tty: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: is_tty && !no_color,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn host(&self, text: &str) -> String {
        self.paint("36", text)
    }
    pub fn err(&self, text: &str) -> String {
        self.paint("31", text)
    }
    pub fn ok(&self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// One output line as printed live: `host | line` (stdout) or `host ! line` (stderr),
/// host names padded to `width`.
pub fn host_line(style: Style, host: &str, width: usize, stream: Stream, line: &[u8]) -> String {
    let name = sanitize(host.as_bytes());
    let pad = width.saturating_sub(name.chars().count());
    let mark = match stream {
        Stream::Stdout => style.dim("|"),
        Stream::Stderr => style.err("!"),
    };
    format!(
        "{}{} {mark} {}",
        style.host(&name),
        " ".repeat(pad),
        sanitize(line)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_made_visible() {
        assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
        assert_eq!(sanitize(b"a\rb\x07"), "a^Mb^G");
        assert_eq!(sanitize(b"tab\there"), "tab\there");
        assert_eq!(sanitize(b"\xff\xfe ok"), "\\xff\\xfe ok");
        assert_eq!(sanitize("\u{9b}2J".as_bytes()), "\\u{9b}2J");
        assert_eq!(sanitize("évil\u{202e}".as_bytes()), "évil<U+202E>");
        assert_eq!(sanitize(b"\x7f"), "^?");
    }

    #[test]
    fn splitter_keeps_partial_lines_per_host_and_stream() {
        let mut s = Splitter::default();
        assert_eq!(
            s.push("a", Stream::Stdout, b"one\ntw"),
            vec![b"one".to_vec()]
        );
        assert!(s.push("b", Stream::Stdout, b"x").is_empty());
        assert_eq!(s.push("a", Stream::Stderr, b"e\n"), vec![b"e".to_vec()]);
        assert_eq!(s.push("a", Stream::Stdout, b"o\n"), vec![b"two".to_vec()]);
        assert_eq!(s.hosts(), vec!["b".to_string()]);
        assert_eq!(s.take("b"), vec![(Stream::Stdout, b"x".to_vec())]);
        assert!(s.take("b").is_empty());
    }

    #[test]
    fn lines_are_prefixed_and_plain_without_colour() {
        let st = Style { color: false };
        assert_eq!(
            host_line(st, "web1", 6, Stream::Stdout, b"hi"),
            "web1   | hi"
        );
        assert_eq!(host_line(st, "db", 2, Stream::Stderr, b"\x1bx"), "db ! ^[x");
        let c = Style { color: true };
        assert!(host_line(c, "a", 1, Stream::Stderr, b"x").contains("\x1b[31m!"));
    }
}
