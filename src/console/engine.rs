//! The console's seam to the engine: inventory, selection language and nodesets.
//!
//! TEMPORARY: `crate::inventory::Inventory`, `crate::select` and `crate::nodeset` (branch
//! `inv`) have not landed on main yet. Until they do, this module holds a minimal stand-in
//! (whitespace-separated terms, each a name, a `*` glob or a tag, all must match) so the
//! console can be built and tested; the bodies are replaced by calls into the real modules
//! once they land. The public shape of this module is what the rest of the console uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::inventory::Host;
use crate::proto::daemon::Verdict;

/// What a filter may ask about a host beyond the inventory: facts and last outcomes.
pub trait Context {
    fn fact(&self, host: &str, key: &str) -> Option<String>;
    fn outcome(&self, host: &str) -> Option<Verdict>;
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
    pub groups: BTreeMap<String, String>,
}

impl Fleet {
    pub fn new(hosts: Vec<Host>) -> Fleet {
        Fleet {
            path: PathBuf::new(),
            hosts,
            groups: BTreeMap::new(),
        }
    }

    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Fleet> {
        let path = explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("hosts.toml"));
        anyhow::bail!(
            "{}: the inventory loader (crate::inventory) has not landed on this branch yet",
            path.display()
        )
    }
}

/// A filter expression that failed to parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Character offset in the filter text.
    pub pos: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Filter {
    terms: Vec<String>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut terms = Vec::new();
        let mut offset = 0;
        for t in text.split(' ') {
            if let Some(i) = t.find(|c: char| "()&|!,".contains(c)) {
                return Err(FilterError {
                    pos: offset + i,
                    message: "expected a name, glob or tag".into(),
                });
            }
            if !t.is_empty() {
                terms.push(t.to_string());
            }
            offset += t.chars().count() + 1;
        }
        Ok(Filter { terms })
    }

    pub fn uses_facts(&self) -> bool {
        self.terms.iter().any(|t| t.starts_with("fact."))
    }

    pub fn matches(&self, host: &Host, _fleet: &Fleet, ctx: &dyn Context) -> Result<bool, String> {
        Ok(self.terms.iter().all(|t| term_matches(t, host, ctx)))
    }
}

fn term_matches(t: &str, host: &Host, ctx: &dyn Context) -> bool {
    if let Some(o) = t.strip_prefix('?') {
        return ctx
            .outcome(&host.name)
            .is_some_and(|v| format!("{v:?}").eq_ignore_ascii_case(o));
    }
    if let Some(g) = t.strip_suffix('*') {
        return host.name.starts_with(g);
    }
    host.name == t || host.tags.iter().any(|tag| tag == t)
}

/// Fold host names into a compact nodeset (`web[01-03],db1`).
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    names.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",")
}
