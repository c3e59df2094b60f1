//! Per-host bounded ring of output lines. The console keeps only the newest `capacity`
//! lines of each host; the full output stays in the daemon's run store.

use std::collections::VecDeque;

use crate::model::Stream;

use super::sanitize::MAX_LINE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    /// Raw bytes as the host sent them (sanitized only when drawn).
    pub bytes: Box<[u8]>,
}

#[derive(Debug, Clone)]
pub struct Scrollback {
    capacity: usize,
    lines: VecDeque<Line>,
    /// Lines dropped from the front since the start (so positions stay meaningful).
    dropped: u64,
    partial_out: Vec<u8>,
    partial_err: Vec<u8>,
    /// Counts changes to what [`Self::iter`] yields (a cheap "has it changed?" for memos).
    generation: u64,
}

impl Scrollback {
    pub fn new(capacity: usize) -> Self {
        Scrollback {
            capacity: capacity.max(1),
            lines: VecDeque::new(),
            dropped: 0,
            partial_out: Vec::new(),
            partial_err: Vec::new(),
            generation: 0,
        }
    }

    /// Append a chunk; complete lines enter the ring, the tail waits for its newline
    /// (or is broken at [`MAX_LINE`] bytes).
    pub fn push(&mut self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.generation += 1;
        let mut partial = std::mem::take(self.partial_mut(stream));
        for &b in data {
            if b == b'\n' {
                if partial.last() == Some(&b'\r') {
                    partial.pop();
                }
                self.push_line(stream, std::mem::take(&mut partial));
            } else {
                partial.push(b);
                if partial.len() >= MAX_LINE {
                    let cut = utf8_cut(&partial);
                    let tail = partial.split_off(cut);
                    self.push_line(stream, std::mem::replace(&mut partial, tail));
                }
            }
        }
        *self.partial_mut(stream) = partial;
    }

    /// Flush unterminated tails (at exit).
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let p = std::mem::take(self.partial_mut(stream));
            if !p.is_empty() {
                self.generation += 1;
                self.push_line(stream, p);
            }
        }
    }

    fn partial_mut(&mut self, s: Stream) -> &mut Vec<u8> {
        match s {
            Stream::Stdout => &mut self.partial_out,
            Stream::Stderr => &mut self.partial_err,
        }
    }

    fn push_line(&mut self, stream: Stream, bytes: Vec<u8>) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(Line {
            stream,
            bytes: bytes.into_boxed_slice(),
        });
    }

    /// Complete lines plus the pending tails (what a pane shows).
    pub fn len(&self) -> usize {
        self.lines.len()
            + usize::from(!self.partial_out.is_empty())
            + usize::from(!self.partial_err.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Changes whenever the content changes (a line or a partial tail added).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Line `i` of [`Self::len`], pending tails last.
    pub fn get(&self, i: usize) -> Option<(Stream, &[u8])> {
        if let Some(l) = self.lines.get(i) {
            return Some((l.stream, &l.bytes));
        }
        let mut k = i - self.lines.len();
        for (s, p) in [
            (Stream::Stdout, &self.partial_out),
            (Stream::Stderr, &self.partial_err),
        ] {
            if !p.is_empty() {
                if k == 0 {
                    return Some((s, p));
                }
                k -= 1;
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (Stream, &[u8])> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Cut point ≤ len that does not split a trailing, incomplete UTF-8 sequence.
fn utf8_cut(b: &[u8]) -> usize {
    let n = b.len();
    let mut j = n;
    while j > 0 && n - j < 3 && b[j - 1] & 0xc0 == 0x80 {
        j -= 1;
    }
    let Some(&lead) = j.checked_sub(1).and_then(|k| b.get(k)) else {
        return n;
    };
    let need = match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return n,
    };
    if j - 1 + need > n {
        j - 1
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_bounded() {
        let mut s = Scrollback::new(3);
        s.push(Stream::Stdout, b"a\nb\r\nc");
        s.push(Stream::Stderr, b"err\n");
        assert_eq!(s.len(), 4); // a, b, err + pending "c"
        s.push(Stream::Stdout, b"\nd\ne\n");
        let got: Vec<_> = s.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]);
        assert_eq!(s.dropped(), 3);
        assert_eq!(s.get(0).map(|x| x.0), Some(Stream::Stdout));
        // a growing partial tail is a change too; finishing nothing is not
        let g = s.generation();
        s.push(Stream::Stdout, b"f");
        assert!(s.generation() > g);
        s.push(Stream::Stdout, b"\n");
        let g = s.generation();
        s.finish();
        s.push(Stream::Stdout, b"");
        assert_eq!(s.generation(), g);
    }

    #[test]
    fn long_lines_are_broken_on_char_boundaries() {
        let mut s = Scrollback::new(100);
        let mut big = vec![b'x'; MAX_LINE - 1];
        big.extend_from_slice("é".as_bytes());
        big.extend_from_slice(b"tail\n");
        s.push(Stream::Stdout, &big);
        let lines: Vec<_> = s.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| std::str::from_utf8(l).is_ok()));
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));
    }
}
