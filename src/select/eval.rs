//! Evaluating a selection against a host; resolving `@group` references.

use std::collections::BTreeMap;

use super::{parse, value_match, Atom, Context, Expr, SelectError};
use crate::model::Host;

impl Expr {
    /// Does `host` match? Groups are the inventory's named selections, parsed as needed;
    /// an unknown group or a cycle of groups is an error.
    pub fn matches(
        &self,
        host: &Host,
        groups: &BTreeMap<String, String>,
        ctx: &dyn Context,
    ) -> Result<bool, SelectError> {
        Ok(self.resolve_groups(groups)?.eval(host, ctx))
    }

    /// The expression with every `@group` replaced by the group's own expression, so that
    /// [`Expr::eval`] needs no groups. Errors point at the `@group` in this expression.
    pub fn resolve_groups(&self, groups: &BTreeMap<String, String>) -> Result<Expr, SelectError> {
        let mut stack = Vec::new();
        self.resolve(groups, &mut stack, None)
    }

    /// [`Expr::resolve_groups`] for the expression of group `name` itself, so that a
    /// cycle through it is reported from it: `@a -> @b -> @a`.
    pub fn resolve_group_body(
        &self,
        name: &str,
        groups: &BTreeMap<String, String>,
    ) -> Result<Expr, SelectError> {
        let mut stack = vec![name.to_string()];
        self.resolve(groups, &mut stack, None)
    }

    /// `outer_pos`: position of the top-level `@ref` when resolving inside a group.
    fn resolve(
        &self,
        groups: &BTreeMap<String, String>,
        stack: &mut Vec<String>,
        outer_pos: Option<usize>,
    ) -> Result<Expr, SelectError> {
        Ok(match self {
            Expr::Or(v) => Expr::Or(
                v.iter()
                    .map(|e| e.resolve(groups, stack, outer_pos))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::And(v) => Expr::And(
                v.iter()
                    .map(|e| e.resolve(groups, stack, outer_pos))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(a) => Expr::Not(Box::new(a.resolve(groups, stack, outer_pos)?)),
            Expr::Atom(Atom::Group(name), pos) => {
                let at = outer_pos.unwrap_or(*pos);
                if let Some(i) = stack.iter().position(|g| g == name) {
                    let mut cycle: Vec<String> =
                        stack[i..].iter().map(|g| format!("@{g}")).collect();
                    cycle.push(format!("@{name}"));
                    return Err(SelectError::other(
                        at,
                        format!("group cycle: {}", cycle.join(" -> ")),
                    ));
                }
                let Some(text) = groups.get(name) else {
                    let known: Vec<String> = groups.keys().map(|k| format!("@{k}")).collect();
                    let hint = if known.is_empty() {
                        "no groups are defined".to_string()
                    } else {
                        format!("known groups: {}", known.join(", "))
                    };
                    return Err(SelectError::other(
                        at,
                        format!("unknown group `@{name}` ({hint})"),
                    ));
                };
                let inner = parse(text).map_err(|e| {
                    SelectError::other(
                        at,
                        format!(
                            "in group @{name} = {text:?}: {} (at column {})",
                            e.message,
                            e.column(text)
                        ),
                    )
                })?;
                stack.push(name.clone());
                let r = inner.resolve(groups, stack, Some(at));
                stack.pop();
                r?
            }
            Expr::Atom(a, pos) => Expr::Atom(a.clone(), *pos),
        })
    }

    /// Evaluate an expression whose groups are resolved; an unresolved `@group` is false.
    pub fn eval(&self, host: &Host, ctx: &dyn Context) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(host, ctx)),
            Expr::And(v) => v.iter().all(|e| e.eval(host, ctx)),
            Expr::Not(a) => !a.eval(host, ctx),
            Expr::Atom(atom, _) => atom.eval(host, ctx),
        }
    }
}

impl Atom {
    fn eval(&self, host: &Host, ctx: &dyn Context) -> bool {
        match self {
            Atom::NameOrTag(w) => host.name == *w || host.has_bare_tag(w),
            Atom::Names(set) => set.contains(&host.name),
            Atom::Glob(g) => super::glob_match(g, &host.name),
            Atom::Regex(re) => re.is_match(&host.name),
            Atom::Tag { key, value } => host.tags.iter().any(|t| {
                t.split_once('=')
                    .is_some_and(|(k, v)| k == key && value_match(value, v))
            }),
            Atom::Fact { key, value } => ctx
                .fact(&host.name, key)
                .is_some_and(|v| value_match(value, &v)),
            Atom::Group(_) => false,
            Atom::Outcome(v) => ctx.outcome(&host.name) == Some(*v),
        }
    }
}
