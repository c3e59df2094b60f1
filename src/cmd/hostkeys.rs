//! The question about unknown host keys, on the terminal: `crew run` (and `crew attach`)
//! prints the groups numbered and reads one line: `a` accepts all, numbers accept those
//! groups, Enter or `n` refuses.

use std::io::{IsTerminal, Write};

use super::render::sanitize;
use crate::proto::daemon::KeyGroup;

/// True when an operator can be asked: stdin and stderr are terminals and the output is not
/// JSON (scripts keep the refusal).
pub fn can_ask(json: bool) -> bool {
    !json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The question as printed: a head line, then one numbered line per group.
pub fn question_text(groups: &[KeyGroup]) -> String {
    let hosts: usize = groups.iter().map(|g| g.hosts.len()).sum();
    let mut s =
        format!("crew: {hosts} host(s) present host keys that known_hosts does not record:\n");
    for (i, g) in groups.iter().enumerate() {
        s.push_str(&format!("  {}) {}\n", i + 1, sanitize(g.line().as_bytes())));
    }
    s
}

/// The prompt after the question.
pub fn prompt_text(groups: usize) -> &'static str {
    if groups == 1 {
        "Accept this key? [a]ccept, Enter or [n] refuses: "
    } else {
        "Accept which? [a]ll, group numbers (e.g. 1 3), Enter or [n] refuses: "
    }
}

/// One answer line: the accepted groups (0-based), empty to refuse; None when it is not an
/// answer (asked again).
pub fn parse_answer(line: &str, groups: usize) -> Option<Vec<u32>> {
    let t = line.trim().to_ascii_lowercase();
    match t.as_str() {
        "" | "n" | "no" => return Some(Vec::new()),
        "a" | "all" | "y" | "yes" => return Some((0..groups as u32).collect()),
        _ => {}
    }
    let mut out = Vec::new();
    for w in t.split(|c: char| c == ',' || c.is_whitespace()) {
        if w.is_empty() {
            continue;
        }
        let n: usize = w.parse().ok()?;
        if n == 0 || n > groups {
            return None;
        }
        if !out.contains(&((n - 1) as u32)) {
            out.push((n - 1) as u32);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Put the question on the terminal and read the answer (stdin ended: refused).
pub async fn ask(groups: &[KeyGroup]) -> Vec<u32> {
    let text = question_text(groups);
    let n = groups.len();
    tokio::task::spawn_blocking(move || {
        let mut err = std::io::stderr();
        let _ = err.write_all(text.as_bytes());
        for _ in 0..20 {
            let _ = err.write_all(prompt_text(n).as_bytes());
            let _ = err.flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => return Vec::new(),
                Ok(_) => match parse_answer(&line, n) {
                    Some(a) => return a,
                    None => {
                        let _ = writeln!(err, "crew: `{}`: not an answer", line.trim());
                    }
                },
            }
        }
        Vec::new()
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(fp: &str, hosts: &[&str]) -> KeyGroup {
        KeyGroup {
            key_type: "ssh-ed25519".into(),
            fingerprint: fp.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn answers() {
        assert_eq!(parse_answer("\n", 2), Some(vec![]));
        assert_eq!(parse_answer("n", 2), Some(vec![]));
        assert_eq!(parse_answer("a\n", 2), Some(vec![0, 1]));
        assert_eq!(parse_answer("2", 2), Some(vec![1]));
        assert_eq!(parse_answer("1, 2 1", 2), Some(vec![0, 1]));
        assert_eq!(parse_answer("3", 2), None);
        assert_eq!(parse_answer("0", 2), None);
        assert_eq!(parse_answer("maybe", 2), None);
    }

    #[test]
    fn question_lists_groups_folded_with_counts() {
        let t = question_text(&[
            group("SHA256:aaa", &["web01", "web02", "web03"]),
            group("SHA256:bbb", &["db1"]),
        ]);
        assert!(t.starts_with("crew: 4 host(s) present"), "{t}");
        assert!(
            t.contains("  1) ssh-ed25519 SHA256:aaa \u{2014} web[01-03] (3)\n"),
            "{t}"
        );
        assert!(
            t.contains("  2) ssh-ed25519 SHA256:bbb \u{2014} db1 (1)\n"),
            "{t}"
        );
    }
}
