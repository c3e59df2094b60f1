//! The console's seam to the engine: the inventory (`crate::inventory`) and the selection
//! language (`crate::select`), in the shapes the Model uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::inventory::Inventory;
use crate::model::Host;
use crate::select::{self, Expr};

pub use crate::select::Context;

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

    /// `--hosts FILE`, else `./hosts.toml`, else `<config dir>/hosts.toml`.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Fleet> {
        let path = Inventory::find_default(explicit)?;
        let inv = Inventory::load(&path)?;
        Ok(Fleet {
            path: inv.path,
            hosts: inv.hosts,
            groups: inv.groups,
        })
    }
}

/// A filter expression that does not parse (or names an unknown group): where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Character offset in the filter text.
    pub pos: usize,
    pub message: String,
}

/// A parsed filter with its `@group`s resolved against the inventory.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    pub fn parse(text: &str, groups: &BTreeMap<String, String>) -> Result<Filter, FilterError> {
        let err = |e: select::SelectError| FilterError {
            pos: e.column(text).saturating_sub(1),
            message: e.message,
        };
        let expr = select::parse(text).map_err(err)?;
        let expr = expr.resolve_groups(groups).map_err(err)?;
        Ok(Filter { expr })
    }

    pub fn uses_facts(&self) -> bool {
        self.expr.uses_facts()
    }

    pub fn matches(&self, host: &Host, ctx: &dyn Context) -> bool {
        self.expr.eval(host, ctx)
    }
}
