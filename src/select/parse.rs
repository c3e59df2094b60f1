//! Recursive-descent parser for selections. Precedence: `!` > `&` > `|`/`,`.

use std::collections::BTreeSet;

use super::lex::{found_at, lex, Spanned, Tok};
use super::{is_glob, Atom, Expr, SelectError};
use crate::model::Verdict;

const ATOM_EXPECTED: &str = "a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`";
/// Longest selection, in tokens, and deepest nesting of `(` and `!` (keeps the recursive
/// parser and evaluator far from the stack limit).
const MAX_TOKENS: usize = 4096;
const MAX_DEPTH: usize = 64;
const OUTCOMES: &str = "`?ok`, `?failed`, `?timeout`, `?unreachable` or `?killed`";

/// Parse a selection expression.
pub fn parse(text: &str) -> Result<Expr, SelectError> {
    let toks = lex(text)?;
    if let Some(t) = toks.get(MAX_TOKENS) {
        return Err(SelectError::other(
            t.pos,
            format!("selection too long: more than {MAX_TOKENS} terms and operators"),
        ));
    }
    let mut p = Parser {
        text,
        toks,
        at: 0,
        depth: 0,
    };
    if p.toks.is_empty() {
        return Err(SelectError::expected(
            0,
            "a selection",
            "nothing".to_string(),
        ));
    }
    let e = p.or()?;
    if let Some(t) = p.peek() {
        let msg = match &t.tok {
            Tok::RParen => "`&`, `|`, `,` or end of input (this `)` has no `(`)",
            Tok::Word(w) if w.starts_with('=') => {
                "`&`, `|`, `,` or end of input (write tags without spaces: `role=web`)"
            }
            Tok::Not
                if p.toks
                    .get(p.at + 1)
                    .is_some_and(|n| matches!(&n.tok, Tok::Word(w) if w.starts_with('='))) =>
            {
                "`&`, `|`, `,` or end of input (write tags without spaces: `role!=web`)"
            }
            _ => "`&`, `|`, `,` or end of input",
        };
        return Err(SelectError::expected(t.pos, msg, t.tok.describe()));
    }
    Ok(e)
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Spanned>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.toks.get(self.at)
    }

    fn next_if(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Position and description of the next token (or end of input).
    fn here(&self) -> (usize, String) {
        match self.peek() {
            Some(t) => (t.pos, t.tok.describe()),
            None => (self.text.len(), "end of input".to_string()),
        }
    }

    fn or(&mut self) -> Result<Expr, SelectError> {
        let mut v = vec![self.and()?];
        while self.next_if(&Tok::Or) {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, SelectError> {
        let mut v = vec![self.unary()?];
        while self.next_if(&Tok::And) {
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn unary(&mut self) -> Result<Expr, SelectError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (pos, _) = self.here();
            return Err(SelectError::other(
                pos,
                format!(
                    "selection nested too deeply (more than {MAX_DEPTH} levels of `(` and `!`)"
                ),
            ));
        }
        let r = if self.next_if(&Tok::Not) {
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Result<Expr, SelectError> {
        let Some(t) = self.peek().cloned() else {
            let (pos, found) = self.here();
            return Err(SelectError::expected(pos, ATOM_EXPECTED, found));
        };
        self.at += 1;
        match t.tok {
            Tok::LParen => {
                let e = self.or()?;
                if !self.next_if(&Tok::RParen) {
                    let (pos, found) = self.here();
                    return Err(SelectError::expected(
                        pos,
                        &format!("`)` to close the `(` at column {}", t.pos + 1),
                        found,
                    ));
                }
                Ok(e)
            }
            Tok::Group(g) => Ok(Expr::Atom(Atom::Group(g), t.pos)),
            Tok::Outcome(o) => {
                let Some(v) = Verdict::parse(&o) else {
                    return Err(SelectError::expected(t.pos, OUTCOMES, format!("`?{o}`")));
                };
                Ok(Expr::Atom(Atom::Outcome(v), t.pos))
            }
            Tok::Regex(r) => {
                let re = regex::Regex::new(&r).map_err(|e| {
                    let detail = e.to_string();
                    let last = detail
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ");
                    SelectError::other(t.pos, format!("bad regex /{r}/: {last}"))
                })?;
                Ok(Expr::Atom(Atom::Regex(re), t.pos))
            }
            Tok::Word(w) => word(&w, t.pos),
            _ => {
                self.at -= 1;
                Err(SelectError::expected(
                    t.pos,
                    ATOM_EXPECTED,
                    t.tok.describe(),
                ))
            }
        }
    }
}

/// A word: `key=value`, `key!=value`, `fact.k=v`, nodeset, glob or bare name/tag.
fn word(w: &str, pos: usize) -> Result<Expr, SelectError> {
    let split = w
        .find("!=")
        .map(|i| (i, 2, true))
        .or_else(|| w.find('=').map(|i| (i, 1, false)));
    if let Some((i, len, negated)) = split {
        let (key, value) = (&w[..i], &w[i + len..]);
        if key.is_empty() {
            return Err(SelectError::expected(
                pos,
                "a tag name before `=`",
                "`=`".into(),
            ));
        }
        if value.is_empty() || value.starts_with('=') {
            let found = if value.is_empty() { "nothing" } else { "`=`" };
            return Err(SelectError::expected(
                pos + i + len,
                "a value after `=`",
                found.into(),
            ));
        }
        let atom = match key.strip_prefix("fact.") {
            Some("") => {
                return Err(SelectError::expected(
                    pos + 5,
                    "a fact name after `fact.`",
                    "`=`".into(),
                ))
            }
            Some(k) => Atom::Fact {
                key: k.to_string(),
                value: value.to_string(),
            },
            None => Atom::Tag {
                key: key.to_string(),
                value: value.to_string(),
            },
        };
        let e = Expr::Atom(atom, pos);
        return Ok(if negated { Expr::Not(Box::new(e)) } else { e });
    }
    if let Some(rest) = w.strip_prefix("fact.") {
        return Err(SelectError::expected(
            pos + w.len(),
            &format!("`=` or `!=` and a value after `fact.{rest}`"),
            found_at(w, w.len()),
        ));
    }
    if w.contains(['[', ']']) {
        let names = crate::nodeset::expand(w)
            .map_err(|e| SelectError::other(pos + e.pos, format!("bad nodeset: {}", e.message)))?;
        let (globs, plain): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| is_glob(n));
        let mut alts = vec![Expr::Atom(
            Atom::Names(plain.into_iter().collect::<BTreeSet<_>>()),
            pos,
        )];
        alts.extend(globs.into_iter().map(|g| Expr::Atom(Atom::Glob(g), pos)));
        let e = if alts.len() == 1 {
            alts.remove(0)
        } else {
            Expr::Or(alts)
        };
        return Ok(e);
    }
    if is_glob(w) {
        return Ok(Expr::Atom(Atom::Glob(w.to_string()), pos));
    }
    Ok(Expr::Atom(Atom::NameOrTag(w.to_string()), pos))
}
