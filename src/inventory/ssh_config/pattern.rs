//! OpenSSH's wildcard matching (`match.c`): `*` and `?` only, byte by byte.

/// `match_pattern`: does `s` match `pattern` (`*` any run, `?` any one byte)?
pub(super) fn match_pattern(s: &str, pattern: &str) -> bool {
    let (s, p) = (s.as_bytes(), pattern.as_bytes());
    // Iterative wildcard matching with one backtrack point: equivalent to the recursive C.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            while pi < p.len() && p[pi] == b'*' {
                pi += 1;
            }
            star = Some((pi, si));
        } else if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// `match_pattern_list`: `1` a positive match, `-1` a negated (`!`) match, `0` neither.
/// Subpatterns are comma-separated; `dolower` lowercases them first (for host names).
pub(super) fn match_pattern_list(s: &str, list: &str, dolower: bool) -> i32 {
    let mut positive = false;
    let pieces: Vec<&str> = list.split(',').collect();
    // A trailing comma ends the list (C stops at the end of the string); an empty piece
    // anywhere else is an empty subpattern.
    let n = match pieces.last() {
        Some(&"") => pieces.len() - 1,
        _ => pieces.len(),
    };
    for sub in pieces.into_iter().take(n) {
        let (negated, sub) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        // C copies each subpattern into a 1024-byte buffer and fails the whole list when
        // one does not fit.
        if sub.len() >= 1023 {
            return 0;
        }
        let hit = if dolower {
            match_pattern(s, &sub.to_ascii_lowercase())
        } else {
            match_pattern(s, sub)
        };
        if hit {
            if negated {
                return -1;
            }
            positive = true;
        }
    }
    i32::from(positive)
}

/// `match_hostname`: the host lowercased against a lowercased pattern list.
pub(super) fn match_hostname(host: &str, list: &str) -> i32 {
    match_pattern_list(&host.to_ascii_lowercase(), list, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(match_pattern("db1", "db*"));
        assert!(match_pattern("db", "db*"));
        assert!(match_pattern("app.prod", "*.prod"));
        assert!(!match_pattern("prod", "*.prod"));
        assert!(match_pattern("a1b", "a?b"));
        assert!(!match_pattern("ab", "a?b"));
        assert!(match_pattern("abcbd", "a*b*d"));
        assert!(match_pattern("", "*"));
        assert!(match_pattern("x", "**"));
        assert!(!match_pattern("App", "app"), "case-sensitive");
        assert!(match_pattern("[x]", "[x]"), "no character classes");
    }

    #[test]
    fn lists_with_negation() {
        assert_eq!(match_pattern_list("a", "b,a", false), 1);
        assert_eq!(match_pattern_list("a", "*,!a", false), -1);
        assert_eq!(match_pattern_list("a", "!b", false), 0);
        assert_eq!(match_pattern_list("a", "", false), 0);
        assert_eq!(match_hostname("DB1", "DB*"), 1);
        assert_eq!(match_pattern_list("Root", "root", false), 0);
        let long = "x".repeat(1100);
        assert_eq!(match_pattern_list("a", &format!("a,{long}"), false), 0);
    }
}
