//! Gathered view: hosts grouped by identical output *while it streams*. Each host keeps an
//! incremental FNV-1a hash and length per stream, so grouping costs O(1) per byte and does
//! not depend on how the output was chunked. A minority group can be diffed line by line
//! against the largest one.

use std::collections::{BTreeMap, HashMap};

use crate::model::Stream;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StreamDigest {
    hash: u64,
    len: u64,
}

impl Default for StreamDigest {
    fn default() -> Self {
        StreamDigest {
            hash: FNV_OFFSET,
            len: 0,
        }
    }
}

impl StreamDigest {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self.len += data.len() as u64;
    }
}

/// What makes two hosts "the same": both streams' digests and the status label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GroupKey {
    out: StreamDigest,
    err: StreamDigest,
    /// `running`, `ok`, `exit 1`, `timeout`, `unreachable`…
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub key: GroupKey,
    /// Host names, in the order they joined the run.
    pub hosts: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Gather {
    order: Vec<String>,
    keys: HashMap<String, GroupKey>,
}

impl Gather {
    pub fn new(hosts: &[String]) -> Self {
        let mut g = Gather::default();
        for h in hosts {
            g.add_host(h);
        }
        g
    }

    pub fn add_host(&mut self, host: &str) {
        if !self.keys.contains_key(host) {
            self.order.push(host.to_string());
            let key = GroupKey {
                status: "pending".into(),
                ..GroupKey::default()
            };
            self.keys.insert(host.to_string(), key);
        }
    }

    pub fn feed(&mut self, host: &str, stream: Stream, data: &[u8]) {
        self.add_host(host);
        if let Some(k) = self.keys.get_mut(host) {
            match stream {
                Stream::Stdout => k.out.feed(data),
                Stream::Stderr => k.err.feed(data),
            }
        }
    }

    pub fn set_status(&mut self, host: &str, status: &str) {
        self.add_host(host);
        if let Some(k) = self.keys.get_mut(host) {
            k.status = status.to_string();
        }
    }

    /// Groups, largest first (ties: the group whose first host came first).
    pub fn groups(&self) -> Vec<Group> {
        let mut by_key: BTreeMap<&GroupKey, (usize, Vec<String>)> = BTreeMap::new();
        for (i, h) in self.order.iter().enumerate() {
            if let Some(k) = self.keys.get(h) {
                by_key
                    .entry(k)
                    .or_insert_with(|| (i, Vec::new()))
                    .1
                    .push(h.clone());
            }
        }
        let mut groups: Vec<(usize, Group)> = by_key
            .into_iter()
            .map(|(k, (first, hosts))| {
                let g = Group {
                    key: k.clone(),
                    hosts,
                };
                (first, g)
            })
            .collect();
        groups.sort_by(|a, b| b.1.hosts.len().cmp(&a.1.hosts.len()).then(a.0.cmp(&b.0)));
        groups.into_iter().map(|(_, g)| g).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOp {
    Same,
    /// Only in the reference (largest) group.
    Removed,
    /// Only in the group being compared.
    Added,
}

/// Above this many cell comparisons the diff falls back to "all removed, all added" for the
/// differing middle part (after common prefix and suffix are trimmed).
const MAX_CELLS: usize = 4_000_000;

/// Line diff of `b` against the reference `a` (LCS after trimming common ends). A line is
/// anything comparable: bytes, or (stream, bytes).
pub fn diff<T: PartialEq + Copy>(a: &[T], b: &[T]) -> Vec<(DiffOp, T)> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut out: Vec<(DiffOp, T)> = a[..pre].iter().map(|l| (DiffOp::Same, *l)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        out.extend(am.iter().map(|l| (DiffOp::Removed, *l)));
        out.extend(bm.iter().map(|l| (DiffOp::Added, *l)));
    } else {
        lcs_diff(am, bm, &mut out);
    }
    out.extend(a[a.len() - suf..].iter().map(|l| (DiffOp::Same, *l)));
    out
}

fn lcs_diff<T: PartialEq + Copy>(a: &[T], b: &[T], out: &mut Vec<(DiffOp, T)>) {
    let (n, m) = (a.len(), b.len());
    // t[i][j] = LCS length of a[i..] and b[j..]
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] = if a[i] == b[j] {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((DiffOp::Same, a[i]));
            i += 1;
            j += 1;
        } else if t[(i + 1) * w + j] >= t[i * w + j + 1] {
            out.push((DiffOp::Removed, a[i]));
            i += 1;
        } else {
            out.push((DiffOp::Added, b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| (DiffOp::Removed, *l)));
    out.extend(b[j..].iter().map(|l| (DiffOp::Added, *l)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(g: &Group) -> Vec<&str> {
        g.hosts.iter().map(String::as_str).collect()
    }

    #[test]
    fn groups_form_while_streaming_regardless_of_chunking() {
        let hosts: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut g = Gather::new(&hosts);
        g.feed("a", Stream::Stdout, b"hello\nworld\n");
        g.feed("b", Stream::Stdout, b"hel");
        // mid-stream: b differs from a so far
        assert_eq!(g.groups().len(), 3);
        g.feed("b", Stream::Stdout, b"lo\nworld\n");
        g.feed("c", Stream::Stdout, b"hello\nmars\n");
        let gs = g.groups();
        assert_eq!(gs.len(), 2);
        assert_eq!(names(&gs[0]), vec!["a", "b"]);
        assert_eq!(names(&gs[1]), vec!["c"]);
        // same stdout but output on stderr splits the group
        g.feed("b", Stream::Stderr, b"warn\n");
        assert_eq!(g.groups().len(), 3);
    }

    #[test]
    fn status_is_part_of_the_key() {
        let hosts: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut g = Gather::new(&hosts);
        g.set_status("a", "ok");
        g.set_status("b", "exit 1");
        assert_eq!(g.groups().len(), 2);
        g.set_status("b", "ok");
        assert_eq!(g.groups().len(), 1);
        assert_eq!(g.groups()[0].key.status, "ok");
    }

    #[test]
    fn diff_marks_changed_lines() {
        let a: Vec<&[u8]> = vec![b"1", b"2", b"3", b"4"];
        let b: Vec<&[u8]> = vec![b"1", b"x", b"3", b"4", b"5"];
        let d = diff(&a, &b);
        let ops: Vec<_> = d.iter().map(|(o, l)| (*o, *l)).collect();
        assert_eq!(
            ops,
            vec![
                (DiffOp::Same, &b"1"[..]),
                (DiffOp::Removed, &b"2"[..]),
                (DiffOp::Added, &b"x"[..]),
                (DiffOp::Same, &b"3"[..]),
                (DiffOp::Same, &b"4"[..]),
                (DiffOp::Added, &b"5"[..]),
            ]
        );
    }
}
