//! crew: a terminal fleet console. Roles (console, client commands, daemon, agent) live in
//! their own modules and are entered through [`cli::run`]; tests drive them in-process.
//!
//! Import rules: only `console` uses ratatui/crossterm; only `daemon` uses russh.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod console;
pub mod daemon;
pub mod duration;
pub mod heist;
pub mod inventory;
pub mod logging;
pub mod model;
pub mod nodeset;
pub mod paths;
pub mod pick;
pub mod proto;
pub mod sanitize_class;
pub mod select;
pub mod store;
pub mod textpos;
