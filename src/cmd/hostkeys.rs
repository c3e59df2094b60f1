//! The question about unknown host keys, on the terminal: `crew run` (and `crew attach`)
//! prints the groups numbered and reads one line: `a` accepts all, numbers accept those
//! groups, Enter or `n` refuses; `v` (or `v N`) shows the visual host keys and `?` the
//! answers, then asks again.

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
        "Accept this key? [a]ccept, Enter or [n] refuses, [v]isual key, [?]: "
    } else {
        "Accept which? [a]ll, group numbers (e.g. 1 3), Enter or [n] refuses, [v]isual keys, [?]: "
    }
}

/// What a line that is no answer asks to see (`?`: the answers; `v`, `v 2`: visual host
/// keys), as printed; None when it asks for nothing.
pub fn shown_for(line: &str, groups: &[KeyGroup]) -> Option<String> {
    let t = line.trim().to_ascii_lowercase();
    if t == "?" || t == "h" || t == "help" {
        return Some(
            concat!(
                "  a          accept every key listed (their hosts go on, the keys go to known_hosts)\n",
                "  1 3        accept those groups only (the others are refused)\n",
                "  n, Enter   refuse them all: those hosts fail with `hostkey`\n",
                "  v, v 2     show the visual host keys (all, or group 2) as ssh-keygen -lv draws them\n",
            )
            .to_string(),
        );
    }
    let rest = t.strip_prefix('v')?.trim();
    let which: Vec<usize> = if rest.is_empty() {
        (0..groups.len()).collect()
    } else {
        match rest.parse::<usize>() {
            Ok(n) if n >= 1 && n <= groups.len() => vec![n - 1],
            _ => return None,
        }
    };
    let mut s = String::new();
    for i in which {
        let Some(g) = groups.get(i) else { continue };
        s.push_str(&format!("  {}) {} {}\n", i + 1, g.key_type, g.fingerprint));
        for l in g.randomart.lines() {
            s.push_str(&format!("  {}\n", sanitize(l.as_bytes())));
        }
    }
    Some(s)
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
    let groups = groups.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut err = std::io::stderr();
        let _ = err.write_all(text.as_bytes());
        for _ in 0..20 {
            let _ = err.write_all(prompt_text(n).as_bytes());
            let _ = err.flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => return Vec::new(),
                Ok(_) => match (parse_answer(&line, n), shown_for(&line, &groups)) {
                    (Some(a), _) => return a,
                    (None, Some(shown)) => {
                        let _ = err.write_all(shown.as_bytes());
                    }
                    (None, None) => {
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
            randomart: format!("+---[ED25519 256]-+\n|{fp}|\n+----[SHA256]-----+"),
        }
    }

    #[test]
    fn v_shows_the_visual_keys_and_is_no_answer() {
        let gs = [group("SHA256:aaa", &["w1"]), group("SHA256:bbb", &["w2"])];
        assert_eq!(parse_answer("v", 2), None, "asked again after showing");
        let all = shown_for("v\n", &gs).expect("shows");
        assert!(
            all.contains("|SHA256:aaa|") && all.contains("|SHA256:bbb|"),
            "{all}"
        );
        let two = shown_for("v 2", &gs).expect("shows group 2");
        assert!(two.contains("  2) ssh-ed25519 SHA256:bbb\n"), "{two}");
        assert!(!two.contains("SHA256:aaa"), "{two}");
        assert!(shown_for("v 3", &gs).is_none());
        assert!(shown_for("?", &gs).is_some_and(|h| h.contains("visual host keys")));
        assert!(shown_for("maybe", &gs).is_none());
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
