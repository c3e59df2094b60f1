//! The console: full-screen TUI, a client of the daemon.
//!
//! Elm-style: [`app::Model`] holds all state and changes only in `update(Action)`, returning
//! [`effect::Effect`]s that the event loop ([`tui`]) runs on tokio tasks; `ui/` renders the
//! Model with pure functions. Keys ([`keymap`]) and themes ([`theme`]) are TOML data.

pub mod action;
pub mod app;
pub mod config;
mod connect;
pub mod effect;
pub mod gather;
pub mod heists;
pub mod history;
pub mod keymap;
pub mod runs;
pub mod sanitize;
pub mod scrollback;
pub mod theme;
pub mod tui;
pub mod ui;

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::inventory::Inventory;
use crate::paths;

/// How the console was asked to open.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Theme name (a file in themes/ or the user config dir) or path.
    pub theme: Option<String>,
    /// Refuse to run anything (browse only).
    pub read_only: bool,
    /// Accept and remember host keys never seen before.
    pub accept_new_host_keys: bool,
}

/// `crew` / `crew console`: load the inventory and settings, then open the TUI. Errors in
/// the inventory or config files are printed before the screen is taken over.
pub fn run(hosts: Option<std::path::PathBuf>, args: Options) -> anyhow::Result<i32> {
    crate::logging::to_file("console");
    let fleet = Inventory::load_default(hosts.as_deref())?;
    let cfg_dir = paths::config_dir();
    let cfg =
        config::ConsoleConfig::load(&cfg_dir.join("console.toml")).map_err(anyhow::Error::msg)?;
    let keymap =
        keymap::Keymap::load(Some(&cfg_dir.join("keymap.toml"))).map_err(anyhow::Error::msg)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let theme_name = args.theme.clone().or(cfg.theme.clone());
    let theme = theme::Theme::load(theme_name.as_deref(), &cfg_dir, no_color)
        .map_err(anyhow::Error::msg)?;
    let settings = app::Settings {
        read_only: args.read_only,
        dangerous: cfg.dangerous().map_err(anyhow::Error::msg)?,
        scrollback: cfg.scrollback.unwrap_or(10_000).max(1),
        timeout_ms: cfg.timeout_ms().map_err(anyhow::Error::msg)?,
        accept_new_host_keys: args.accept_new_host_keys,
        who: paths::whoami(),
    };
    let history = history::History::load(&paths::history_file());
    let model = app::Model::new(fleet, keymap, settings, history);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let slot = Arc::new(OnceLock::new());
        let exec = effect::Executor {
            backend: slot.clone(),
            tx: tx.clone(),
            history_file: paths::history_file(),
            runs_dir: paths::runs_dir(),
        };
        connect::spawn(slot, tx);
        for e in model.startup() {
            exec.execute(e);
        }
        tui::run(model, theme, exec, rx).await
    })?;
    Ok(0)
}
