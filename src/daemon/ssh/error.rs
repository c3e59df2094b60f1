//! Why reaching a host over SSH failed, sorted into the kinds the operator sees.

use crate::model::ErrorKind;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    /// TCP connect failed: refused, no route, name resolution.
    #[error("{0}")]
    Unreachable(String),
    /// Connect, handshake or authentication took longer than the host's connect timeout.
    #[error("{0}")]
    Timeout(String),
    /// Host key unknown, changed or revoked; the message names the known_hosts file and line.
    #[error("{0}")]
    HostKey(String),
    /// No identity was accepted; the message names the user and what was tried.
    #[error("{0}")]
    Auth(String),
    /// The agent cannot be installed or run on this host (other OS/arch, noexec, read-only,
    /// upload failed): the daemon falls back to agentless exec.
    #[error("agent unavailable: {0}")]
    AgentUnavailable(String),
    /// The host's SSH settings cannot be used as written (e.g. its ssh_config
    /// `KexAlgorithms` names nothing crew supports): the message says which and where.
    #[error("{0}")]
    Config(String),
    /// The SSH connection or a channel failed after connecting.
    #[error("ssh: {0}")]
    Session(String),
}

impl SshError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SshError::Unreachable(_) => ErrorKind::Unreachable,
            SshError::Timeout(_) => ErrorKind::ConnectTimeout,
            SshError::HostKey(_) => ErrorKind::Hostkey,
            SshError::Auth(_) => ErrorKind::Auth,
            SshError::AgentUnavailable(_) => ErrorKind::Agent,
            SshError::Session(_) => ErrorKind::Agent,
            SshError::Config(_) => ErrorKind::Internal,
        }
    }
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Session(e.to_string())
    }
}
