//! Heists: saved playbooks and the step engine.
//!
//! - [`format`]: the TOML as written; [`validate`]: checked into [`def`] definitions, with
//!   `file:line:col` [`diag`]nostics; [`vars`]: `${name}` templates.
//! - [`locate`]: where heist files live.

pub mod cli;
pub mod def;
pub mod diag;
pub mod format;
pub mod validate;
pub mod vars;
