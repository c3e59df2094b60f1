//! Recursive-descent parser for selections. Precedence: `!` > `&` > `|`/`,`.

use std::collections::BTreeSet;

use super::lex::{found_at, lex, Spanned, Tok};
use super::{is_glob, Atom, Expr, SelectError};
use crate::proto::daemon::Verdict;

const ATOM_EXPECTED: &str = "a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`";
const OUTCOMES: &str = "`?ok`, `?failed`, `?timeout`, `?unreachable` or `?killed`";

/// Parse a selection expression.
pub fn parse(text: &str) -> Result<Expr, SelectError> {
    let toks = lex(text)?;
    let mut p = Parser { text, toks, at: 0 };
    if p.toks.is_empty() {
        return Err(SelectError::expected(
            0,
            "a selection",
            "nothing".to_string(),
        ));
    }
    let e = p.or()?;
    if let Some(t) = p.peek() {
        let msg = if t.tok == Tok::RParen {
            "`&`, `|`, `,` or end of input (this `)` has no `(`)"
        } else {
            "`&`, `|`, `,` or end of input"
        };
        return Err(SelectError::expected(t.pos, msg, t.tok.describe()));
    }
    Ok(e)
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Spanned>,
    at: usize,
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
        let mut e = self.and()?;
        while self.next_if(&Tok::Or) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, SelectError> {
        let mut e = self.unary()?;
        while self.next_if(&Tok::And) {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, SelectError> {
        if self.next_if(&Tok::Not) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
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
                let v = match o.as_str() {
                    "ok" => Verdict::Ok,
                    "failed" => Verdict::Failed,
                    "timeout" => Verdict::Timeout,
                    "unreachable" => Verdict::Unreachable,
                    "killed" => Verdict::Killed,
                    _ => return Err(SelectError::expected(t.pos, OUTCOMES, format!("`?{o}`"))),
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
        if value.is_empty() {
            return Err(SelectError::expected(
                pos + i + len,
                "a value after `=`",
                "nothing".into(),
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
        let mut e = Expr::Atom(Atom::Names(plain.into_iter().collect::<BTreeSet<_>>()), pos);
        for g in globs {
            e = Expr::Or(Box::new(e), Box::new(Expr::Atom(Atom::Glob(g), pos)));
        }
        return Ok(e);
    }
    if is_glob(w) {
        return Ok(Expr::Atom(Atom::Glob(w.to_string()), pos));
    }
    Ok(Expr::Atom(Atom::NameOrTag(w.to_string()), pos))
}
