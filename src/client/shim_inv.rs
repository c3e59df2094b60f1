//! TEMPORARY shim of interface 3 (the inventory helper's modules), deleted when they land.
#![allow(dead_code, unused_variables)]
pub mod nodeset {
    pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
        names
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>()
            .join(",")
    }
}
pub mod select {
    use crate::proto::daemon::Verdict;
    pub trait Context {
        fn fact(&self, host: &str, key: &str) -> Option<String>;
        fn outcome(&self, host: &str) -> Option<Verdict>;
    }
    pub struct NoContext;
    impl Context for NoContext {
        fn fact(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn outcome(&self, _: &str) -> Option<Verdict> {
            None
        }
    }
    #[derive(Debug)]
    pub struct SelectError;
    impl std::fmt::Display for SelectError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "x")
        }
    }
    impl SelectError {
        pub fn render(&self, text: &str) -> String {
            unimplemented!()
        }
    }
    pub struct Expr;
    impl Expr {
        pub fn uses_facts(&self) -> bool {
            unimplemented!()
        }
    }
    pub fn parse(text: &str) -> Result<Expr, SelectError> {
        unimplemented!()
    }
}
use crate::inventory::Host;
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct InventoryError;
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
}
impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        unimplemented!()
    }
    pub fn find_default(explicit: Option<&Path>) -> Result<PathBuf, InventoryError> {
        unimplemented!()
    }
    pub fn try_select(
        &self,
        expr: &select::Expr,
        ctx: &dyn select::Context,
    ) -> Result<Vec<&Host>, select::SelectError> {
        unimplemented!()
    }
}
