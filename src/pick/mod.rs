//! The one host picker: selection text → hosts, for `crew run`, `crew hosts`, heists and the
//! console's filter.
//!
//! A [`Selection`] is parsed once with its `@group`s resolved against the inventory (so a group
//! that tests facts or outcomes is seen through). Only what the selection uses is gathered: the
//! last run's outcomes are read from the run store ([`outcomes::last`]) when it tests `?ok`,
//! `?failed`…, and agent facts are asked of a [`FactSource`] (the daemon) when it tests
//! `fact.KEY`. Hosts without facts simply match no `fact.` atom; the caller is told which.

pub mod outcomes;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;

pub use outcomes::LastOutcomes;

use crate::inventory::Inventory;
use crate::model::{Host, Info, Verdict};
use crate::select::{self, Expr, SelectError};

/// A parsed selection, groups resolved.
#[derive(Debug, Clone)]
pub struct Selection {
    text: String,
    expr: Expr,
}

impl Selection {
    /// Parse `text` and resolve its `@group`s; errors carry their position in `text`.
    pub fn parse(text: &str, groups: &BTreeMap<String, String>) -> Result<Selection, SelectError> {
        let expr = select::parse(text)?.resolve_groups(groups)?;
        Ok(Selection {
            text: text.to_string(),
            expr,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the selection (through its groups) tests agent facts.
    pub fn uses_facts(&self) -> bool {
        self.expr.uses_facts()
    }

    /// True when the selection (through its groups) tests the last run's outcomes.
    pub fn uses_outcomes(&self) -> bool {
        self.expr.uses_outcomes()
    }

    pub fn matches(&self, host: &Host, ctx: &dyn select::Context) -> bool {
        self.expr.eval(host, ctx)
    }

    /// The hosts of `hosts` it picks, in their order.
    pub fn pick<'a>(&self, hosts: &'a [Host], ctx: &dyn select::Context) -> Vec<&'a Host> {
        hosts.iter().filter(|h| self.matches(h, ctx)).collect()
    }
}

/// What a selection may test beyond the inventory: facts by host, the last run's outcomes.
#[derive(Debug, Default, Clone)]
pub struct Context {
    pub facts: HashMap<String, Info>,
    pub outcomes: LastOutcomes,
}

impl select::Context for Context {
    fn fact(&self, host: &str, key: &str) -> Option<String> {
        self.facts.get(host)?.fact(key)
    }
    fn outcome(&self, host: &str) -> Option<Verdict> {
        self.outcomes.get(host)
    }
}

/// Facts of some hosts, and the hosts that gave none (with why).
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub by_host: HashMap<String, Info>,
    pub missing: Vec<(String, String)>,
}

/// Where agent facts come from: the daemon (through a client, or the daemon itself).
pub trait FactSource {
    fn facts(&mut self, hosts: &[Host]) -> impl Future<Output = anyhow::Result<Facts>> + Send;
}

/// No facts: `fact.` atoms match nothing (e.g. `crew hosts`, which contacts no agent).
pub struct NoFacts;

impl FactSource for NoFacts {
    async fn facts(&mut self, _hosts: &[Host]) -> anyhow::Result<Facts> {
        Ok(Facts::default())
    }
}

/// Why hosts could not be picked.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// The selection does not parse or names an unknown group; `Display` shows where.
    #[error("bad selection (column {column}):\n{rendered}")]
    Selection {
        column: usize,
        rendered: String,
        error: SelectError,
    },
    /// The facts could not be asked for (the daemon did not answer).
    #[error("facts: {0:#}")]
    Facts(anyhow::Error),
}

impl PickError {
    fn selection(text: &str, error: SelectError) -> PickError {
        PickError::Selection {
            column: error.column(text),
            rendered: error.render(text),
            error,
        }
    }
}

/// What [`pick`] found.
#[derive(Debug, Default)]
pub struct Picked {
    /// The hosts picked, in inventory order.
    pub hosts: Vec<Host>,
    /// Hosts whose facts were asked for but did not come (host, why): they matched no
    /// `fact.` atom.
    pub missing_facts: Vec<(String, String)>,
    /// True when the selection tests facts but no source gave any (see [`NoFacts`]).
    pub facts_unavailable: bool,
}

/// Pick the hosts of `inv` that `text` selects. Outcomes come from the run store at
/// `runs_dir` when the selection tests them; facts from `facts` when it tests them.
pub async fn pick<F: FactSource>(
    inv: &Inventory,
    text: &str,
    facts: &mut F,
    runs_dir: &Path,
) -> Result<Picked, PickError> {
    let sel = Selection::parse(text, &inv.groups).map_err(|e| PickError::selection(text, e))?;
    let mut ctx = Context::default();
    if sel.uses_outcomes() {
        ctx.outcomes = outcomes::last(runs_dir);
    }
    let mut picked = Picked::default();
    if sel.uses_facts() {
        let f = facts.facts(&inv.hosts).await.map_err(PickError::Facts)?;
        picked.facts_unavailable = f.by_host.is_empty() && f.missing.is_empty();
        ctx.facts = f.by_host;
        picked.missing_facts = f.missing;
    }
    picked.hosts = sel.pick(&inv.hosts, &ctx).into_iter().cloned().collect();
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let text = r#"
[[host]]
name = "web[1-3]"
transport = "local"
tags = ["role=web"]

[[host]]
name = "db1"
transport = "local"
tags = ["role=db"]

[groups]
front = "role=web & ?failed"
"#;
        Inventory::from_str(text, Path::new("hosts.toml")).expect("inventory")
    }

    struct Fixed(Vec<(&'static str, &'static str)>);

    impl FactSource for Fixed {
        async fn facts(&mut self, hosts: &[Host]) -> anyhow::Result<Facts> {
            let mut f = Facts::default();
            for h in hosts {
                match self.0.iter().find(|(n, _)| *n == h.name) {
                    Some((_, os)) => {
                        let info = Info {
                            os: os.to_string(),
                            ..Info::default()
                        };
                        f.by_host.insert(h.name.clone(), info);
                    }
                    None => f.missing.push((h.name.clone(), "unreachable".into())),
                }
            }
            Ok(f)
        }
    }

    fn names(p: &Picked) -> Vec<&str> {
        p.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[tokio::test]
    async fn groups_facts_and_outcomes_are_seen_through() {
        let runs = tempfile::tempdir().expect("tempdir");
        let meta = crate::store::RunMeta::command(1, "me", "all", "false", &["web1", "web2"]);
        let mut failed = crate::store::HostRecord::new("web2");
        failed.verdict = Verdict::Failed;
        let mut ok = crate::store::HostRecord::new("web1");
        ok.verdict = Verdict::Ok;
        crate::store::write_run_blocking(runs.path(), &meta, &[ok, failed]).expect("stored");
        let inv = inv();
        let p = pick(&inv, "@front", &mut NoFacts, runs.path())
            .await
            .expect("picks");
        assert_eq!(names(&p), ["web2"]);
        let mut facts = Fixed(vec![("web1", "linux"), ("db1", "bsd")]);
        let p = pick(&inv, "fact.os=linux | fact.os=bsd", &mut facts, runs.path())
            .await
            .expect("picks");
        assert_eq!(names(&p), ["web1", "db1"]);
        let missing: Vec<&str> = p.missing_facts.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(missing, ["web2", "web3"]);
        let p = pick(&inv, "fact.os=linux", &mut NoFacts, runs.path())
            .await
            .expect("picks");
        assert!(p.hosts.is_empty() && p.facts_unavailable);
    }

    #[tokio::test]
    async fn bad_selection_says_where() {
        let runs = tempfile::tempdir().expect("tempdir");
        let e = pick(&inv(), "role=web & @nope", &mut NoFacts, runs.path())
            .await
            .expect_err("unknown group");
        let text = e.to_string();
        assert!(
            text.contains("column 12") && text.contains("nope"),
            "{text}"
        );
    }
}
