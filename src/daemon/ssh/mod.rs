//! The daemon's SSH side (russh): connect with host-key checking and authentication,
//! install and start the agent, or run commands agentless over plain exec channels.

mod auth;
mod capture;
mod connect;
mod error;
mod exec;
mod host_cert;
mod install;
mod jump;
pub mod known_hosts;
mod marker;
mod proxy;
pub mod shell;
mod stream;
mod sudo;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use capture::Captured;
pub use connect::{connect, scan, KeyState, Scanned};
pub use error::{SshError, UnknownKey};
pub use exec::{command_line, sh_quote, AgentlessJob, AgentlessKiller};
pub use install::dir_expr;
pub use jump::Bastions;
pub use stream::AgentChannel;
pub use transfer::{Drain, Feed, ScriptEnd};

use crate::model::Host;

/// How the daemon connects: shared by every connection it makes.
#[derive(Clone)]
pub struct SshOptions {
    /// Learn unknown host keys into the host's first known_hosts file instead of refusing.
    pub accept_new_host_keys: bool,
    /// Limits SSH handshakes in flight (ssh-agent and servers' MaxStartups).
    pub handshakes: Arc<Semaphore>,
    /// SSH keepalive interval (no inactivity timeout: quiet commands are normal).
    pub keepalive: Duration,
    /// Executable uploaded as the agent.
    pub agent_exe: PathBuf,
    /// Build hash naming the installed agent (`agent-<build>`).
    pub agent_build: String,
    /// The connections to jump hosts, each shared by every host behind it.
    pub bastions: Bastions,
}

impl SshOptions {
    /// Options for uploading `agent_exe`, named after its file hash; 64 handshakes, 15 s
    /// keepalive, unknown host keys refused.
    pub fn for_agent(agent_exe: PathBuf) -> std::io::Result<SshOptions> {
        let agent_build = crate::paths::file_hash(&agent_exe)?;
        Ok(SshOptions {
            accept_new_host_keys: false,
            handshakes: Arc::new(Semaphore::new(64)),
            keepalive: Duration::from_secs(15),
            agent_exe,
            agent_build,
            bastions: Bastions::default(),
        })
    }
}

impl SshOptions {
    /// Options for key scans (`crew hosts --keys`): nothing is installed.
    pub fn for_scan() -> SshOptions {
        SshOptions {
            accept_new_host_keys: false,
            handshakes: Arc::new(Semaphore::new(64)),
            keepalive: Duration::from_secs(15),
            agent_exe: PathBuf::new(),
            agent_build: String::new(),
            bastions: Bastions::default(),
        }
    }
}

/// One authenticated SSH connection. Channels open through `&self`, so share it in an `Arc`.
pub struct SshSession {
    handle: russh::client::Handle<connect::Client>,
    host: Host,
    user: String,
    negotiated: String,
    /// The jump host this connection runs through (kept up while this one is).
    _via: Option<Arc<SshSession>>,
    /// The ProxyCommand this connection runs over (killed with it).
    _proxy: Option<proxy::ProxyChild>,
}

impl SshSession {
    /// The host this session is connected to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The user we authenticated as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Negotiated algorithms, e.g. `kex=curve25519-sha256 hostkey=ssh-ed25519 cipher=…`.
    pub fn negotiated(&self) -> &str {
        &self.negotiated
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Close the connection cleanly (every channel on it ends).
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}
