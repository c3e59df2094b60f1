//! Tokens of the selection language.

use super::SelectError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    Not,
    And,
    /// `|` or `,`
    Or,
    /// `@name`
    Group(String),
    /// `?word`
    Outcome(String),
    /// `/regex/` (the text between the slashes, `\/` unescaped)
    Regex(String),
    /// Anything else: a name, nodeset, glob, `key=value`, `key!=value`, `fact.k=v`.
    Word(String),
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Not => "`!`".into(),
            Tok::And => "`&`".into(),
            Tok::Or => "`|`".into(),
            Tok::Group(g) => format!("`@{g}`"),
            Tok::Outcome(o) => format!("`?{o}`"),
            Tok::Regex(r) => format!("`/{r}/`"),
            Tok::Word(w) => format!("`{w}`"),
        }
    }
}

/// A token and its byte span in the expression.
#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub tok: Tok,
    pub pos: usize,
}

const OPERATORS: &[char] = &['(', ')', '!', '&', '|', ','];

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

pub(crate) fn lex(text: &str) -> Result<Vec<Spanned>, SelectError> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(pos, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '!' => Some(Tok::Not),
            '&' => Some(Tok::And),
            '|' | ',' => Some(Tok::Or),
            _ => None,
        };
        if let Some(tok) = simple {
            it.next();
            out.push(Spanned { tok, pos });
            continue;
        }
        match c {
            '@' | '?' => {
                it.next();
                let mut name = String::new();
                while let Some(&(_, c)) = it.peek() {
                    if !is_name_char(c) {
                        break;
                    }
                    name.push(c);
                    it.next();
                }
                if name.is_empty() {
                    let what = if c == '@' {
                        "a group name"
                    } else {
                        "an outcome"
                    };
                    return Err(SelectError::expected(
                        pos + 1,
                        what,
                        found_at(text, pos + 1),
                    ));
                }
                let tok = if c == '@' {
                    Tok::Group(name)
                } else {
                    Tok::Outcome(name)
                };
                out.push(Spanned { tok, pos });
            }
            '/' => {
                it.next();
                let mut re = String::new();
                let mut closed = false;
                while let Some((_, c)) = it.next() {
                    match c {
                        '/' => {
                            closed = true;
                            break;
                        }
                        '\\' if matches!(it.peek(), Some((_, '/'))) => {
                            re.push('/');
                            it.next();
                        }
                        c => re.push(c),
                    }
                }
                if !closed {
                    return Err(SelectError::expected(
                        text.len(),
                        "`/` to close the regex",
                        "end of input".into(),
                    ));
                }
                out.push(Spanned {
                    tok: Tok::Regex(re),
                    pos,
                });
            }
            _ => out.push(Spanned {
                tok: Tok::Word(word(text, &mut it)?),
                pos,
            }),
        }
    }
    Ok(out)
}

/// A word runs until whitespace or an operator; commas inside `[...]`, `!=`, and
/// `"quoted text"` (quotes removed, e.g. `fact.os="Debian GNU/Linux"`) are part of it.
fn word(
    text: &str,
    it: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, SelectError> {
    let mut w = String::new();
    let mut depth = 0usize;
    while let Some(&(pos, c)) = it.peek() {
        if c.is_whitespace() && depth == 0 {
            break;
        }
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '!' if depth == 0 && text[pos + 1..].starts_with('=') => {
                w.push_str("!=");
                it.next();
                it.next();
                continue;
            }
            '"' => {
                it.next();
                loop {
                    match it.next() {
                        Some((_, '"')) => break,
                        Some((_, c)) => w.push(c),
                        None => {
                            return Err(SelectError::expected(
                                text.len(),
                                "`\"` to close the quoted text",
                                "end of input".into(),
                            ))
                        }
                    }
                }
                continue;
            }
            c if depth == 0 && OPERATORS.contains(&c) => break,
            _ => {}
        }
        w.push(c);
        it.next();
    }
    Ok(w)
}

/// What the user wrote at `pos`, for "found …" in messages.
pub(crate) fn found_at(text: &str, pos: usize) -> String {
    match text.get(pos..).and_then(|s| s.chars().next()) {
        None => "end of input".into(),
        Some(c) if c.is_whitespace() => "a space".into(),
        Some(c) => format!("`{c}`"),
    }
}
