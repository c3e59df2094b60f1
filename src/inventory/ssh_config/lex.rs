//! Splitting ssh_config lines exactly as OpenSSH 9.2's `misc.c` does: `strdelim` (keywords
//! and `Match` criteria: whitespace, one `=`, double quotes) and `argv_split` (arguments:
//! single and double quotes, `\` escapes, `#` comments at a token start).

/// Whitespace as `misc.c` defines it for `strdelim`.
const WHITESPACE: &[u8] = b" \t\r\n";

/// A cursor into one line for [`strdelim`]; `None` once the line is used up (C's `NULL`).
pub(super) type Cursor = Option<usize>;

/// Number of bytes of `s[from..]` that are in `set` (C's `strspn`).
fn span(s: &[u8], from: usize, set: &[u8]) -> usize {
    s.get(from..)
        .unwrap_or(&[])
        .iter()
        .take_while(|b| set.contains(b))
        .count()
}

/// Port of `strdelim_internal(s, split_equals = 1)`: the next token of `line` at `*cur`,
/// advancing the cursor. A double-quoted token may hold whitespace; an unmatched quote
/// gives `None` (and ends the line). After an unquoted token, whitespace and at most one
/// `=` are skipped.
pub(super) fn strdelim(line: &str, cur: &mut Cursor) -> Option<String> {
    let s = line.as_bytes();
    let old = (*cur)?;
    let delim = s
        .get(old..)
        .unwrap_or(&[])
        .iter()
        .position(|b| WHITESPACE.contains(b) || *b == b'"' || *b == b'=')
        .map(|p| old + p);
    let Some(d) = delim else {
        *cur = None;
        return Some(line.get(old..).unwrap_or("").to_string());
    };
    if s[d] == b'"' {
        // The quote is removed; the token runs to the next quote.
        let Some(close) = s[d + 1..]
            .iter()
            .position(|b| *b == b'"')
            .map(|p| d + 1 + p)
        else {
            *cur = None;
            return None;
        };
        let mut tok = String::with_capacity(close - old);
        tok.push_str(line.get(old..d).unwrap_or(""));
        tok.push_str(line.get(d + 1..close).unwrap_or(""));
        *cur = Some(close + 1 + span(s, close + 1, WHITESPACE));
        return Some(tok);
    }
    let was_equals = s[d] == b'=';
    let tok = line.get(old..d).unwrap_or("").to_string();
    let mut next = d + 1 + span(s, d + 1, WHITESPACE);
    if !was_equals && s.get(next) == Some(&b'=') {
        next += 1 + span(s, next + 1, WHITESPACE);
    }
    *cur = Some(next);
    Some(tok)
}

/// The rest of the line at a cursor (`""` when used up).
pub(super) fn rest(line: &str, cur: Cursor) -> &str {
    cur.and_then(|c| line.get(c..)).unwrap_or("")
}

/// Port of `argv_split(s, …, terminate_on_comment = 1)`: arguments with quotes removed and
/// `\\`, `\"`, `\'` (and `\ ` outside quotes) unescaped. `None`: a quote is not closed.
pub(super) fn argv_split(s: &str) -> Option<Vec<String>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        if b[i] == b'#' {
            break;
        }
        let mut quote = 0u8;
        let mut arg: Vec<u8> = Vec::new();
        while i < b.len() {
            let c = b[i];
            if c == b'\\' {
                let n = b.get(i + 1).copied().unwrap_or(0);
                if n == b'\'' || n == b'"' || n == b'\\' || (quote == 0 && n == b' ') {
                    i += 1;
                    arg.push(n);
                } else {
                    arg.push(c);
                }
            } else if quote == 0 && (c == b' ' || c == b'\t') {
                break;
            } else if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if i >= b.len() && quote != 0 {
            return None;
        }
        out.push(String::from_utf8_lossy(&arg).into_owned());
        // C's loop increment steps over the space that ended the token.
        i += 1;
    }
    Some(out)
}

/// One non-empty, non-comment line: its keyword (lowercased), the text after the keyword
/// and its separator, and the byte column where that text starts.
pub(super) struct Line<'a> {
    pub keyword: String,
    pub rest: &'a str,
    pub rest_col: usize,
}

/// Why a line is refused before its keyword is looked at.
pub(super) enum LineError {
    NoArgument(String),
}

/// The start of `process_config_line_depth`: trailing whitespace removed (never the first
/// character), the keyword taken with `strdelim` (a second time when the line starts with
/// whitespace), comments and blank lines skipped (`Ok(None)`).
pub(super) fn split_line(raw: &str) -> Result<Option<Line<'_>>, LineError> {
    let b = raw.as_bytes();
    let mut len = b.len();
    while len > 1 && matches!(b[len - 1], b' ' | b'\t' | b'\r' | b'\n' | b'\x0c') {
        len -= 1;
    }
    let line = raw.get(..len).unwrap_or("");
    if line.is_empty() {
        return Ok(None);
    }
    let mut cur: Cursor = Some(0);
    let Some(mut keyword) = strdelim(line, &mut cur) else {
        return Ok(None);
    };
    if keyword.is_empty() {
        match strdelim(line, &mut cur) {
            Some(k) => keyword = k,
            None => return Ok(None),
        }
    }
    if keyword.is_empty() || keyword.starts_with('\n') || keyword.starts_with('#') {
        return Ok(None);
    }
    keyword.make_ascii_lowercase();
    let start = match cur {
        Some(c) => c + span(line.as_bytes(), c, WHITESPACE),
        None => line.len(),
    };
    let rest = line.get(start..).unwrap_or("");
    if rest.is_empty() {
        return Err(LineError::NoArgument(keyword));
    }
    Ok(Some(Line {
        keyword,
        rest,
        rest_col: start,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Vec<Option<String>> {
        let mut cur = Some(0);
        let mut v = Vec::new();
        while cur.is_some() {
            let t = strdelim(line, &mut cur);
            let stop = t.as_deref().is_none_or(str::is_empty);
            v.push(t);
            if stop {
                break;
            }
        }
        v
    }

    #[test]
    fn strdelim_splits_on_whitespace_one_equals_and_quotes() {
        let s = |v: &[&str]| v.iter().map(|t| Some(t.to_string())).collect::<Vec<_>>();
        assert_eq!(tokens("host = a"), s(&["host", "a"]));
        assert_eq!(tokens("host=a"), s(&["host", "a"]));
        // Only one `=` is a separator: a second one starts an empty token.
        assert_eq!(tokens("host==a"), s(&["host", ""]));
        assert_eq!(tokens("host \"a b\" c"), s(&["host", "a b", "c"]));
        assert_eq!(tokens("x\"a b\""), s(&["xa b", ""]));
        assert_eq!(tokens("host \"a"), vec![Some("host".into()), None]);
    }

    #[test]
    fn argv_split_quotes_escapes_and_comments() {
        let v = |s: &str| argv_split(s).expect("balanced");
        assert_eq!(v("a b\tc"), ["a", "b", "c"]);
        assert_eq!(v("\"a b\" 'c d'"), ["a b", "c d"]);
        assert_eq!(v("a\\ b"), ["a b"]);
        assert_eq!(v("\"a\\\"b\""), ["a\"b"]);
        assert_eq!(v("a\\nb"), ["a\\nb"], "unknown escapes are kept");
        assert_eq!(v("a # comment"), ["a"]);
        assert_eq!(v("a#b"), ["a#b"], "`#` inside a token is not a comment");
        assert_eq!(v("\"\""), [""]);
        assert!(argv_split("\"open").is_none());
        assert!(argv_split("'open").is_none());
    }

    #[test]
    fn split_line_keyword_separators_and_comments() {
        let l = |s: &str| {
            split_line(s)
                .ok()
                .flatten()
                .map(|l| (l.keyword, l.rest.to_string()))
        };
        assert_eq!(l("User foo"), Some(("user".into(), "foo".into())));
        assert_eq!(l("  USER=foo  "), Some(("user".into(), "foo".into())));
        assert_eq!(l("User = foo\r"), Some(("user".into(), "foo".into())));
        assert_eq!(
            l("\tHostName\t\tx # c"),
            Some(("hostname".into(), "x # c".into()))
        );
        assert_eq!(l("# comment"), None);
        assert_eq!(l("   "), None);
        assert_eq!(l(""), None);
        assert!(matches!(split_line("User"), Err(LineError::NoArgument(k)) if k == "user"));
        assert!(matches!(
            split_line("User   "),
            Err(LineError::NoArgument(_))
        ));
    }
}
