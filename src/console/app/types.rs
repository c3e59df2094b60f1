//! Small types of the Model: focus, views, daemon state, settings, a pending run.

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Hosts,
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Output,
    Gathered,
    Heist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    Connecting,
    Up { pid: u32, build: String },
    Down(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// Console settings (from `console.toml` and flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub read_only: bool,
    pub dangerous: Vec<Regex>,
    pub scrollback: usize,
    pub timeout_ms: Option<u64>,
    pub accept_new_host_keys: bool,
    pub who: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            read_only: false,
            dangerous: Vec::new(),
            scrollback: 10_000,
            timeout_ms: None,
            accept_new_host_keys: false,
            who: String::new(),
        }
    }
}

/// A run waiting for the operator's yes in the confirm dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRun {
    pub command: String,
    pub targets: Vec<String>,
    /// The dangerous pattern that matched.
    pub pattern: String,
}
