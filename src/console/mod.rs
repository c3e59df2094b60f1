//! The console: full-screen TUI, a client of the daemon.
//!
//! Elm-style: [`app::Model`] holds all state and changes only in `update(Action)`, returning
//! [`effect::Effect`]s that the event loop ([`tui`]) runs on tokio tasks; `ui/` renders the
//! Model with pure functions. Keys ([`keymap`]) and themes ([`theme`]) are TOML data.

pub mod action;
pub mod app;
pub mod effect;
pub mod engine;
pub mod gather;
pub mod history;
pub mod keymap;
pub mod runs;
pub mod sanitize;
pub mod scrollback;
pub mod theme;

pub fn run(
    _hosts: Option<std::path::PathBuf>,
    _args: crate::cli::ConsoleArgs,
) -> anyhow::Result<i32> {
    anyhow::bail!("crew console: not built yet")
}
