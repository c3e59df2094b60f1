//! `${name}` templates: parsing, the variables they use, and rendering against a scope.
//!
//! Names: `${name}` (a variable from `--set`, the profile, `vars` or an earlier capture),
//! `${host}` (the host's inventory name) and `${tag.KEY}` (the value of the host's `KEY=value`
//! tag). `$${` writes a literal `${` (for shell expansions such as `$${HOME}`).

use std::collections::BTreeMap;

use crate::model::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    /// A variable and the byte offset of its `$` in the source string.
    Var(String, usize),
}

/// A parsed string with `${…}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: String,
    pieces: Vec<Piece>,
}

/// A template that does not parse: byte offset in the source and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub at: usize,
    pub message: String,
}

/// A reference to a variable nothing defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undefined {
    pub name: String,
    pub at: usize,
}

impl std::fmt::Display for Undefined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undefined variable `{}`", self.name)
    }
}

fn valid_name(name: &str) -> bool {
    if let Some(key) = name.strip_prefix("tag.") {
        return !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    }
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for a name a capture or `vars` entry may define (`host` and `tag.*` are built in).
pub fn definable(name: &str) -> bool {
    valid_name(name) && name != "host" && !name.starts_with("tag.")
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = source;
        let mut pos = 0;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let at = pos + i;
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                lit.push_str("${");
                rest = tail;
                pos = at + 3;
            } else if let Some(body) = after.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    return Err(TemplateError {
                        at,
                        message: "`${` is never closed by `}` (write `$${` for a literal `${`)"
                            .into(),
                    });
                };
                let name = body[..end].trim();
                if !valid_name(name) {
                    return Err(TemplateError {
                        at,
                        message: format!(
                            "bad variable name `{name}` (letters, digits and `_`; or `tag.KEY`; write `$${{` for a literal `${{`)"
                        ),
                    });
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(name.to_string(), at));
                rest = &body[end + 1..];
                pos = at + 2 + end + 1;
            } else {
                lit.push('$');
                rest = &after[1..];
                pos = at + 1;
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    /// Every variable used, with the byte offset of its `$`.
    pub fn vars(&self) -> impl Iterator<Item = (&str, usize)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(n, at) => Some((n.as_str(), *at)),
            Piece::Lit(_) => None,
        })
    }

    /// Render; the first variable `lookup` cannot resolve is an error.
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Undefined> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(n, at) => match lookup(n) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(Undefined {
                            name: n.clone(),
                            at: *at,
                        })
                    }
                },
            }
        }
        Ok(out)
    }

    /// Render what can be, leaving unresolved references as `${name}` (for dry runs).
    pub fn render_partial(&self, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(n, _) => match lookup(n) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${");
                        out.push_str(n);
                        out.push('}');
                    }
                },
            }
        }
        out
    }
}

/// Where variables come from for one host: the heist's merged variables (`vars`, then the
/// profile's, then `--set`), the host itself, and the captures of earlier steps on it.
pub struct Scope<'a> {
    pub globals: &'a BTreeMap<String, String>,
    pub host: &'a Host,
    pub captures: &'a BTreeMap<String, String>,
}

impl Scope<'_> {
    pub fn get(&self, name: &str) -> Option<String> {
        if name == "host" {
            return Some(self.host.name.clone());
        }
        if let Some(key) = name.strip_prefix("tag.") {
            return self.host.tag(key).map(str::to_string);
        }
        self.captures
            .get(name)
            .or_else(|| self.globals.get(name))
            .cloned()
    }

    pub fn render(&self, t: &Template) -> Result<String, Undefined> {
        t.render(&|n| self.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("echo ${a} on ${host} as ${tag.role} pid$$ ${x} $HOME $${HOME}")
            .expect("parse");
        let names: Vec<_> = t.vars().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "host", "tag.role", "x"]);
        let mut host = Host::local("web01");
        host.tags = vec!["role=web".into()];
        let globals = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let captures = BTreeMap::from([("x".to_string(), "X".to_string())]);
        let s = Scope {
            globals: &globals,
            host: &host,
            captures: &captures,
        };
        assert_eq!(
            s.render(&t).expect("render"),
            "echo 1 on web01 as web pid$$ X $HOME ${HOME}"
        );
    }

    #[test]
    fn undefined_and_malformed() {
        let t = Template::parse("a ${b} ${tag.zone}").expect("parse");
        let host = Host::local("h");
        let empty = BTreeMap::new();
        let s = Scope {
            globals: &empty,
            host: &host,
            captures: &empty,
        };
        let e = s.render(&t).expect_err("b undefined");
        assert_eq!((e.name.as_str(), e.at), ("b", 2));
        assert_eq!(t.render_partial(&|n| s.get(n)), "a ${b} ${tag.zone}");
        let e = Template::parse("x ${oops").expect_err("unclosed");
        assert_eq!(e.at, 2);
        assert!(Template::parse("${a b}").is_err());
        assert!(definable("rev") && !definable("host") && !definable("tag.x"));
    }
}
