//! The selection language: one grammar for the filter bar, `crew run` and heists.
//!
//! ```text
//! expr    := and (('|' | ',') and)*
//! and     := unary ('&' unary)*
//! unary   := '!' unary | primary
//! primary := '(' expr ')' | atom
//! atom    := key=value | key!=value | fact.KEY=VALUE | fact.KEY!=VALUE
//!          | @group | ?ok | ?failed | ?timeout | ?unreachable | ?killed
//!          | /regex/ | name | nodeset `web[01-05]` | glob `db*` `web?1`
//! ```
//! A bare word matches a host name or a bare tag. Values may be globs (`role=web*`) and
//! may be quoted (`fact.os="Debian GNU/Linux"`). `k!=v` is the same as `!(k=v)`.

mod error;
mod eval;
mod lex;
mod parse;

use std::collections::BTreeSet;

pub use error::SelectError;
pub use parse::parse;

use crate::model::Verdict;

/// What a selection may ask beyond the inventory: agent facts and the last run's outcomes.
pub trait Context {
    fn fact(&self, host: &str, key: &str) -> Option<String>;
    fn outcome(&self, host: &str) -> Option<Verdict>;
}

/// A context that knows nothing: facts and outcomes never match.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoContext;

impl Context for NoContext {
    fn fact(&self, _host: &str, _key: &str) -> Option<String> {
        None
    }
    fn outcome(&self, _host: &str) -> Option<Verdict> {
        None
    }
}

/// A parsed selection.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Any of these (two or more; `a | b | c` is one `Or`, so long lists stay flat).
    Or(Vec<Expr>),
    /// All of these (two or more).
    And(Vec<Expr>),
    Not(Box<Expr>),
    /// An atom and its byte position in the text it was parsed from.
    Atom(Atom, usize),
}

/// One test on a host.
#[derive(Debug, Clone)]
pub enum Atom {
    /// A bare word: the host's name, or one of its bare tags.
    NameOrTag(String),
    /// An expanded nodeset: the host's name is one of these.
    Names(BTreeSet<String>),
    /// A glob (`*`, `?`) on the host name.
    Glob(String),
    /// A regex on the host name.
    Regex(regex::Regex),
    /// `key=value` tag (value may be a glob).
    Tag { key: String, value: String },
    /// `fact.KEY=VALUE` (value may be a glob).
    Fact { key: String, value: String },
    /// `@name`, a named selection from the inventory's `[groups]`.
    Group(String),
    /// `?failed` and friends: the host's verdict in the last run.
    Outcome(Verdict),
}

impl Expr {
    /// True when the expression (not counting groups it names) tests agent facts.
    pub fn uses_facts(&self) -> bool {
        self.any_atom(&|a| matches!(a, Atom::Fact { .. }))
    }

    /// True when the expression (not counting groups it names) tests last-run outcomes.
    pub fn uses_outcomes(&self) -> bool {
        self.any_atom(&|a| matches!(a, Atom::Outcome(_)))
    }

    /// Names of the groups the expression refers to directly.
    pub fn groups(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |a| {
            if let Atom::Group(g) = a {
                out.push(g.clone());
            }
        });
        out
    }

    fn any_atom(&self, f: &dyn Fn(&Atom) -> bool) -> bool {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().any(|e| e.any_atom(f)),
            Expr::Not(a) => a.any_atom(f),
            Expr::Atom(a, _) => f(a),
        }
    }

    fn walk(&self, f: &mut dyn FnMut(&Atom)) {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().for_each(|e| e.walk(f)),
            Expr::Not(a) => a.walk(f),
            Expr::Atom(a, _) => f(a),
        }
    }
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

pub(crate) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Match a value written in a selection (maybe a glob) against an actual value.
pub(crate) fn value_match(pattern: &str, actual: &str) -> bool {
    if is_glob(pattern) {
        glob_match(pattern, actual)
    } else {
        pattern == actual
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("db*", "db1"));
        assert!(glob_match("db*", "db"));
        assert!(!glob_match("db*", "xdb"));
        assert!(glob_match("web?1", "web01"));
        assert!(!glob_match("web?1", "web1"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxxc"));
        assert!(glob_match("*", ""));
    }
}
