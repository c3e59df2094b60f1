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
    /// host → pending bytes of its stdout and stderr.
    partial: HashMap<String, [Vec<u8>; 2]>,
}

/// One piece of a host's stream: a line without its newline (`eol`), or a piece of a line
/// without one (`!eol`: a line longer than [`MAX_LINE`] is cut into several, and what is
/// pending when the host ends has none). The pieces with a newline added after each `eol` one
/// are the stream's exact bytes.
pub type LinePiece = (Vec<u8>, bool);

fn lane(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Pending bytes above this are given back once their line is out (a long line's buffer
/// does not stay allocated for the rest of the run).
const KEEP_CAPACITY: usize = 8 * 1024;

impl Splitter {
    /// Complete lines in `data`, after what was pending (and pieces of lines that reached
    /// [`MAX_LINE`]).
    pub fn push(&mut self, host: &str, stream: Stream, data: &[u8]) -> Vec<LinePiece> {
        let mut out = Vec::new();
        self.push_each(host, stream, data, |line, eol| {
            out.push((line.to_vec(), eol))
        });
        out
    }

    /// [`Splitter::push`] without a copy: `f` gets each piece in order. Lines wholly inside
    /// `data` are lent straight from it; only a line begun in an earlier chunk is assembled.
    pub fn push_each(
        &mut self,
        host: &str,
        stream: Stream,
        data: &[u8],
        mut f: impl FnMut(&[u8], bool),
    ) {
        let bufs = match self.partial.get_mut(host) {
            Some(b) => b,
            None => self.partial.entry(host.to_string()).or_default(),
        };
        let buf = &mut bufs[lane(stream)];
        let mut rest = data;
        // The line pending from earlier chunks, up to its end (or MAX_LINE).
        while !buf.is_empty() && !rest.is_empty() {
            let room = MAX_LINE.saturating_sub(buf.len()).max(1);
            let window = &rest[..rest.len().min(room)];
            let eol = match memchr::memchr(b'\n', window) {
                Some(i) => {
                    buf.extend_from_slice(&window[..i]);
                    rest = &rest[i + 1..];
                    true
                }
                None => {
                    buf.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if buf.len() < MAX_LINE {
                        continue;
                    }
                    false
                }
            };
            f(buf, eol);
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
        // Nothing pending: whole lines straight out of `data`.
        while !rest.is_empty() {
            let window = &rest[..rest.len().min(MAX_LINE)];
            match memchr::memchr(b'\n', window) {
                Some(i) => {
                    f(&window[..i], true);
                    rest = &rest[i + 1..];
                }
                None if window.len() == MAX_LINE => {
                    f(window, false);
                    rest = &rest[MAX_LINE..];
                }
                None => {
                    buf.extend_from_slice(window);
                    break;
                }
            }
        }
    }

    /// Unterminated lines of `host` (stdout first), removed from the splitter.
    pub fn take(&mut self, host: &str) -> Vec<(Stream, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(bufs) = self.partial.remove(host) {
            for (s, b) in [Stream::Stdout, Stream::Stderr].into_iter().zip(bufs) {
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
            .filter(|(_, v)| v.iter().any(|b| !b.is_empty()))
            .map(|(h, _)| h.clone())
            .collect();
        h.sort();
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
            vec![(b"one".to_vec(), true)]
        );
        assert!(s.push("b", Stream::Stdout, b"x").is_empty());
        assert_eq!(
            s.push("a", Stream::Stderr, b"e\n"),
            vec![(b"e".to_vec(), true)]
        );
        assert_eq!(
            s.push("a", Stream::Stdout, b"o\n"),
            vec![(b"two".to_vec(), true)]
        );
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
