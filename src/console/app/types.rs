//! Small types of the Model: focus, views, daemon state, settings, a pending run.

use std::collections::HashMap;

use regex::Regex;

use crate::proto::daemon::StatusReport;

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

/// The daemon's last pool status, indexed by host name: built once when a report arrives, so
/// drawing the host list looks each visible row up in O(1).
#[derive(Debug, Clone)]
pub struct Pool {
    pub report: StatusReport,
    /// Host name → its index in `report.hosts`.
    by_host: HashMap<String, usize>,
    /// Pool state (`ready`, `busy`…) → how many hosts are in it.
    counts: HashMap<String, usize>,
}

impl Pool {
    pub fn new(report: StatusReport) -> Pool {
        let mut by_host = HashMap::with_capacity(report.hosts.len());
        let mut counts = HashMap::new();
        for (i, h) in report.hosts.iter().enumerate() {
            by_host.insert(h.name.clone(), i);
            *counts.entry(h.state.clone()).or_default() += 1;
        }
        Pool {
            report,
            by_host,
            counts,
        }
    }

    /// The pool state of `host` (`connecting`, `ready`, `busy`, `lost`, `down`…).
    pub fn state(&self, host: &str) -> Option<&str> {
        let i = *self.by_host.get(host)?;
        self.report.hosts.get(i).map(|h| h.state.as_str())
    }

    /// How many hosts are in `state`.
    pub fn count(&self, state: &str) -> usize {
        self.counts.get(state).copied().unwrap_or(0)
    }
}
