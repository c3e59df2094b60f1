//! Nodesets: `web[01-20]` expands to web01…web20; a list of names folds back.
//!
//! Syntax (clush style): a comma-separated list of patterns; each pattern is literal text
//! with any number of bracket groups `[a-b,c,d-e/step]`. Several groups expand as a
//! cartesian product, the first group outermost. A range keeps the zero padding of its
//! lower bound: `[01-10]` gives `01`…`10`, `[1-10]` gives `1`…`10`.

use std::collections::BTreeMap;
use std::fmt;

/// Most names one pattern may expand to (a typo like `[1-99999999]` must not eat memory).
pub const MAX_EXPANSION: usize = 100_000;

/// A nodeset that does not parse: `pos` is the byte offset into the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodesetError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for NodesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.pos)
    }
}

impl std::error::Error for NodesetError {}

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, NodesetError> {
    Err(NodesetError {
        pos,
        message: message.into(),
    })
}

/// Expand a nodeset into names, in written order (duplicates are kept).
pub fn expand(pattern: &str) -> Result<Vec<String>, NodesetError> {
    if pattern.is_empty() {
        return err(0, "expected a name or nodeset, found nothing");
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                expand_one(&pattern[start..i], start, &mut out)?;
                start = i + 1;
            }
            _ => {}
        }
    }
    expand_one(&pattern[start..], start, &mut out)?;
    Ok(out)
}

/// One pattern (no top-level comma); `base` is its offset in the full text.
fn expand_one(pat: &str, base: usize, out: &mut Vec<String>) -> Result<(), NodesetError> {
    if pat.is_empty() {
        return err(base, "expected a name, found an empty element");
    }
    // Segments: literal text or the alternatives of one bracket group.
    let mut segments: Vec<Vec<String>> = Vec::new();
    let mut rest = pat;
    let mut off = base;
    while !rest.is_empty() {
        match rest.find(['[', ']']) {
            Some(i) if rest.as_bytes()[i] == b']' => {
                return err(off + i, "unexpected `]` without `[`")
            }
            Some(i) => {
                if i > 0 {
                    segments.push(vec![check_literal(&rest[..i], off)?]);
                }
                let close = match rest[i..].find(']') {
                    Some(c) => i + c,
                    None => return err(off + i, "expected `]` to close this `[`"),
                };
                let inner = &rest[i + 1..close];
                if let Some(j) = inner.find('[') {
                    return err(off + i + 1 + j, "unexpected `[` inside a bracket group");
                }
                segments.push(expand_group(inner, off + i + 1)?);
                off += close + 1;
                rest = &rest[close + 1..];
            }
            None => {
                segments.push(vec![check_literal(rest, off)?]);
                rest = "";
            }
        }
    }
    let total = segments
        .iter()
        .try_fold(1usize, |acc, s| acc.checked_mul(s.len()))
        .unwrap_or(usize::MAX);
    if total.saturating_add(out.len()) > MAX_EXPANSION {
        return err(base, format!("expands to more than {MAX_EXPANSION} names"));
    }
    let mut names = vec![String::new()];
    for seg in &segments {
        let mut next = Vec::with_capacity(names.len() * seg.len());
        for prefix in &names {
            for part in seg {
                next.push(format!("{prefix}{part}"));
            }
        }
        names = next;
    }
    out.extend(names);
    Ok(())
}

fn check_literal(text: &str, off: usize) -> Result<String, NodesetError> {
    match text.char_indices().find(|(_, c)| c.is_whitespace()) {
        Some((i, _)) => err(off + i, "unexpected whitespace in a name"),
        None => Ok(text.to_string()),
    }
}

/// The inside of one `[...]`: `1-3,07,10-20/2`.
fn expand_group(inner: &str, base: usize) -> Result<Vec<String>, NodesetError> {
    if inner.is_empty() {
        return err(base, "expected a number or range inside `[]`");
    }
    let mut out = Vec::new();
    let mut off = base;
    for item in inner.split(',') {
        expand_item(item, off, &mut out)?;
        off += item.len() + 1;
        if out.len() > MAX_EXPANSION {
            return err(base, format!("expands to more than {MAX_EXPANSION} names"));
        }
    }
    Ok(out)
}

fn expand_item(item: &str, off: usize, out: &mut Vec<String>) -> Result<(), NodesetError> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step_off = off + r.len() + 1;
            let step = number(s, step_off)?;
            if step == 0 {
                return err(step_off, "expected a step of at least 1");
            }
            (r, step)
        }
        None => (item, 1),
    };
    let (lo_s, hi_s) = match range.split_once('-') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (range, None),
    };
    let lo = number(lo_s, off)?;
    let Some(hi_s) = hi_s else {
        out.push(lo_s.to_string());
        return Ok(());
    };
    let hi_off = off + lo_s.len() + 1;
    let hi = number(hi_s, hi_off)?;
    if hi < lo {
        return err(hi_off, format!("range end {hi} is below its start {lo}"));
    }
    if (hi - lo) / step >= MAX_EXPANSION as u64 {
        return err(off, format!("expands to more than {MAX_EXPANSION} names"));
    }
    let width = if lo_s.len() > 1 && lo_s.starts_with('0') {
        lo_s.len()
    } else {
        0
    };
    let mut v = lo;
    while v <= hi {
        out.push(format!("{v:0width$}"));
        v += step;
    }
    Ok(())
}

fn number(s: &str, off: usize) -> Result<u64, NodesetError> {
    if s.is_empty() {
        return err(off, "expected a number");
    }
    if let Some(i) = s.find(|c: char| !c.is_ascii_digit()) {
        return err(off + i, format!("expected a digit, found `{}`", &s[i..]));
    }
    s.parse::<u64>().or_else(|_| err(off, "number too large"))
}

/// Split a name around its last run of digits: (prefix, digits, suffix).
fn split_last_number(name: &str) -> Option<(&str, &str, &str)> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(|b| b.is_ascii_digit())? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    // Absurdly long digit runs do not fit a u64: keep such names literal.
    if end - start > 18 {
        return None;
    }
    Some((&name[..start], &name[start..end], &name[end..]))
}

/// Fold names into the shortest nodeset string that expands back to them (duplicates
/// removed), e.g. `demo[1-6],web[01-03,07]`. Output is sorted by prefix, then number.
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, suffix) -> digit strings; names without digits map to themselves.
    let mut groups: BTreeMap<(String, String), Vec<(u64, String)>> = BTreeMap::new();
    let mut plain: Vec<String> = Vec::new();
    for name in names {
        let name = name.as_ref();
        match split_last_number(name) {
            Some((pre, digits, suf)) => {
                let v = digits.parse::<u64>().unwrap_or(0);
                groups
                    .entry((pre.to_string(), suf.to_string()))
                    .or_default()
                    .push((v, digits.to_string()));
            }
            None => plain.push(name.to_string()),
        }
    }
    let mut parts: Vec<(String, String)> = Vec::new(); // (sort key, text)
    for p in plain {
        parts.push((p.clone(), p));
    }
    for ((pre, suf), mut nums) in groups {
        nums.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.len().cmp(&b.1.len())));
        nums.dedup();
        let text = if nums.len() == 1 {
            format!("{pre}{}{suf}", nums[0].1)
        } else {
            format!("{pre}[{}]{suf}", fold_numbers(&nums))
        };
        parts.push((format!("{pre}\u{0}{suf}"), text));
    }
    parts.sort();
    let texts: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
    texts.join(",")
}

/// `[(1,"01"),(2,"02"),(3,"03"),(7,"07")]` → `01-03,07`.
fn fold_numbers(nums: &[(u64, String)]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nums.len() {
        let start_s = &nums[i].1;
        let width = if start_s.len() > 1 && start_s.starts_with('0') {
            start_s.len()
        } else {
            0
        };
        let mut j = i;
        while j + 1 < nums.len() {
            let (v, s) = &nums[j + 1];
            if *v == nums[j].0 + 1 && *s == format!("{v:0width$}") {
                j += 1;
            } else {
                break;
            }
        }
        if j == i {
            out.push(start_s.clone());
        } else {
            out.push(format!("{start_s}-{}", nums[j].1));
        }
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &str) -> Vec<String> {
        expand(p).expect("valid nodeset")
    }

    #[test]
    fn expands_ranges_lists_and_padding() {
        assert_eq!(ex("web[01-03]"), ["web01", "web02", "web03"]);
        assert_eq!(ex("web[8-10]"), ["web8", "web9", "web10"]);
        assert_eq!(
            ex("web[01-03,07,10-12]"),
            ["web01", "web02", "web03", "web07", "web10", "web11", "web12"]
        );
        assert_eq!(ex("n[098-101]"), ["n098", "n099", "n100", "n101"]);
        assert_eq!(ex("x[1-9/4]"), ["x1", "x5", "x9"]);
        assert_eq!(ex("plain"), ["plain"]);
        assert_eq!(ex("web[01-20]").len(), 20);
    }

    #[test]
    fn expands_several_groups_and_top_level_lists() {
        assert_eq!(
            ex("r[1-2]-n[1-2].dc"),
            ["r1-n1.dc", "r1-n2.dc", "r2-n1.dc", "r2-n2.dc"]
        );
        assert_eq!(ex("a[1-2],b,c[3]"), ["a1", "a2", "b", "c3"]);
        assert_eq!(
            ex("10.0.0.[11-13]"),
            ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
        );
    }

    #[test]
    fn errors_carry_positions() {
        let e = |p: &str| expand(p).expect_err("invalid nodeset");
        assert_eq!(e("web[01-").pos, 3);
        assert_eq!(e("web[01-").message, "expected `]` to close this `[`");
        assert_eq!(e("web[01-x]").pos, 7);
        assert_eq!(e("web[5-1]").pos, 6);
        assert_eq!(e("web[5-1]").message, "range end 1 is below its start 5");
        assert_eq!(e("web[]").pos, 4);
        assert_eq!(e("a,,b").pos, 2);
        assert_eq!(e("web]1").pos, 3);
        assert_eq!(e("web[1,,2]").pos, 6);
        assert_eq!(
            e("w[1-9999999]").message,
            "expands to more than 100000 names"
        );
        assert_eq!(e("a b").pos, 1);
    }

    #[test]
    fn folds_to_shortest_form() {
        assert_eq!(fold(&["web01", "web02", "web03", "web07"]), "web[01-03,07]");
        assert_eq!(
            fold(&["web02", "demo3", "web01", "demo1", "demo2", "web03", "db1"]),
            "db1,demo[1-3],web[01-03]"
        );
        assert_eq!(fold(&["a1", "a2"]), "a[1-2]");
        assert_eq!(fold(&["a9", "a10", "a11"]), "a[9-11]");
        assert_eq!(fold(&["a09", "a10", "a11"]), "a[09-11]");
        assert_eq!(fold(&["solo"]), "solo");
        assert_eq!(fold(&["x1", "x1", "x2"]), "x[1-2]");
        assert_eq!(fold::<&str>(&[]), "");
        assert_eq!(fold(&["r1-n1", "r1-n2", "r2-n1"]), "r1-n[1-2],r2-n1");
    }

    #[test]
    fn fold_expand_roundtrip() {
        for pat in [
            "web[01-20]",
            "web[01-03,07,10-12]",
            "demo[1-6],web[01-03]",
            "n[098-101]",
            "a[1-3]b,a[5]b,c",
            "r[1-3]-n[1-4]",
            "x[007-009,011,1000-1003]",
        ] {
            let names = ex(pat);
            let folded = fold(&names);
            let mut back = ex(&folded);
            let mut want = names.clone();
            back.sort();
            want.sort();
            want.dedup();
            assert_eq!(back, want, "{pat} folded to {folded}");
        }
    }
}
