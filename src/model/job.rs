//! One job's life on a host: its output streams, how it exited, and the host's facts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub user_ms: u64,
    pub sys_ms: u64,
    pub max_rss_kb: u64,
    /// The agent killed the command because its timeout elapsed.
    pub timed_out: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Info {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub mem_total_kb: u64,
    pub uptime_s: u64,
    /// Extra facts: `os_id`, `os_version`, … (from /etc/os-release and the like).
    pub facts: BTreeMap<String, String>,
}

impl Info {
    /// A fact by key (`fact.KEY` in selections): the standard ones, then the extra facts.
    pub fn fact(&self, key: &str) -> Option<String> {
        Some(match key {
            "hostname" => self.hostname.clone(),
            "os" => self.os.clone(),
            "kernel" => self.kernel.clone(),
            "arch" => self.arch.clone(),
            "cpus" => self.cpus.to_string(),
            "mem_total_kb" => self.mem_total_kb.to_string(),
            "uptime_s" => self.uptime_s.to_string(),
            other => self.facts.get(other)?.clone(),
        })
    }
}
