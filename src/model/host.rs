//! The resolved host: everything the daemon needs to reach one inventory entry.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the daemon reaches a host's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Ssh,
    /// The agent runs as a local child process of the daemon: no SSH at all.
    Local,
}

/// ssh_config `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrictHostKeyChecking {
    /// `yes`: only known keys.
    Yes,
    /// `no` / `off`: unknown keys are added, changed keys refused.
    No,
    /// `ask` (OpenSSH's default).
    Ask,
    /// `accept-new`: unknown keys are added.
    AcceptNew,
}

/// One host after hosts.toml defaults, per-host overrides and `~/.ssh/config` are applied.
/// This is what clients send to the daemon, so it carries no unresolved references.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Host {
    /// Inventory name (unique in one inventory).
    pub name: String,
    /// Address to connect to (after ssh_config HostName).
    pub address: String,
    pub port: u16,
    /// Login user; `None` means the operator's own user name.
    pub user: Option<String>,
    pub transport: Transport,
    /// Tags as written: `key=value` or bare `canary`.
    pub tags: Vec<String>,
    /// Private key files to try, in order (hosts.toml first, then ssh_config IdentityFile).
    pub identity_files: Vec<PathBuf>,
    /// Only use `identity_files`, never every key the ssh-agent offers.
    pub identities_only: bool,
    /// known_hosts files to check host keys against, in order.
    pub known_hosts: Vec<PathBuf>,
    /// ssh-agent socket; `None` means `$SSH_AUTH_SOCK`.
    pub identity_agent: Option<PathBuf>,
    /// ProxyJump as written in hosts.toml (`jump`), else as `ssh -G` prints ssh_config's.
    pub proxy_jump: Option<String>,
    /// The jump hosts to go through, in order: the first is connected to from here (or
    /// through its own `proxy_command`), each later one through the one before it, and this
    /// host through the last. Each hop is resolved like a host of its own (its user, port,
    /// keys, known_hosts, timeout); hops have no `jumps` themselves. Empty: direct (or
    /// through `proxy_command`).
    pub jumps: Vec<Host>,
    /// ssh_config ProxyCommand as written (`%h`, `%p`, `%r` not yet expanded); `None` when
    /// unset, `none`, or a ProxyJump came first.
    pub proxy_command: Option<String>,
    /// ssh_config CertificateFile, expanded.
    pub certificate_files: Vec<PathBuf>,
    /// ssh_config StrictHostKeyChecking; `None` when unset.
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// ssh_config ServerAliveInterval in seconds (0: off, OpenSSH's default).
    pub server_alive_interval_s: u32,
    /// ssh_config ServerAliveCountMax (OpenSSH's default: 3).
    pub server_alive_count_max: u32,
    /// What crew could not resolve as `ssh` would for this host (a `Match exec`, a DNS
    /// lookup for canonicalisation), each naming the ssh_config line.
    pub ssh_config_notes: Vec<String>,
    pub connect_timeout_ms: u64,
    /// Key exchanges to offer, best first: ssh_config `KexAlgorithms` as OpenSSH resolves
    /// it; `None` means crew's own order (`daemon::ssh` `KEX_ORDER`).
    pub kex: Option<Vec<String>>,
    /// Directory on the host where the agent executable is installed (`~` allowed).
    pub agent_dir: String,
}

impl Host {
    /// A `local`-transport host with defaults, handy for tests and the demo fleet.
    pub fn local(name: &str) -> Host {
        Host {
            name: name.to_string(),
            address: "localhost".to_string(),
            port: 0,
            user: None,
            transport: Transport::Local,
            tags: Vec::new(),
            identity_files: Vec::new(),
            identities_only: false,
            known_hosts: Vec::new(),
            identity_agent: None,
            proxy_jump: None,
            jumps: Vec::new(),
            proxy_command: None,
            certificate_files: Vec::new(),
            strict_host_key_checking: None,
            server_alive_interval_s: 0,
            server_alive_count_max: 3,
            ssh_config_notes: Vec::new(),
            connect_timeout_ms: 10_000,
            kex: None,
            agent_dir: "~/.cache/crew".to_string(),
        }
    }

    /// Value of a `key=value` tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| {
            let (k, v) = t.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// True when a bare tag `name` is present.
    pub fn has_bare_tag(&self, name: &str) -> bool {
        self.tags.iter().any(|t| t == name)
    }

    /// Identity of the connection: two hosts with the same key share one agent link.
    pub fn link_key(&self) -> String {
        match self.transport {
            Transport::Local => format!("local:{}", self.name),
            Transport::Ssh => format!(
                "ssh:{}@{}:{}#{}",
                self.user.as_deref().unwrap_or(""),
                self.address,
                self.port,
                self.name
            ),
        }
    }
}
