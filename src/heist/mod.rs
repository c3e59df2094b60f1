//! Heists: saved playbooks and the step engine.
//!
//! - [`format`]: the TOML as written; [`validate`]: checked into [`def`] definitions, with
//!   `file:line:col` [`diag`]nostics; [`vars`]: `${name}` templates.
//! - [`plan`]: selection → hosts → rolling waves, every step rendered on every host.
//! - [`engine`] (with `host_run` and `attempt`): runs a plan through an [`executor::Executor`],
//!   emitting [`events::HeistEvent`]s, journaled by [`journal`]; [`view_model`]: the step view.

mod attempt;
pub mod def;
pub mod diag;
pub mod engine;
pub mod events;
pub mod executor;
pub mod format;
mod host_run;
pub mod journal;
pub mod local_run;
pub mod locate;
pub mod outcomes;
pub mod plan;
pub mod save;
pub mod validate;
mod validate_step;
pub mod vars;
pub mod view_model;

pub use host_run::rollback_order;
