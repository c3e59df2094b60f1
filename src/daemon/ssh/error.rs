//! Why reaching a host over SSH failed, sorted into the kinds the operator sees.

use std::path::PathBuf;

use russh::keys::{HashAlg, PublicKey};

use crate::model::ErrorKind;

/// A host key no known_hosts line records (and no line records another key of its type):
/// what an operator may be asked about.
#[derive(Debug, Clone)]
pub struct UnknownKey {
    /// The refusal as it reads without a question (names the files).
    pub message: String,
    /// The host whose key it is, as crew connected to it: address and port.
    pub address: String,
    pub port: u16,
    /// The jump host's inventory name when the key is a jump host's, not the target's.
    pub jump: Option<String>,
    pub key: PublicKey,
    /// The known_hosts files checked; an accepted key is recorded in the first.
    pub files: Vec<PathBuf>,
}

impl UnknownKey {
    /// `ssh-ed25519`, `ssh-rsa`, …
    pub fn key_type(&self) -> String {
        self.key.algorithm().to_string()
    }

    /// `SHA256:…`
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The name known_hosts records it under: `host`, or `[host]:port`.
    pub fn name(&self) -> String {
        super::known_hosts::lookup_name(&self.address, self.port)
    }

    /// Record the key in the first known_hosts file: an operator accepted it.
    pub async fn record(&self) -> Result<(), SshError> {
        super::known_hosts::accept(&self.files, &self.address, self.port, &self.key).await
    }
}

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
    /// Host key unknown (not changed, not revoked): refused as `HostKey` unless an operator
    /// is asked and accepts it.
    #[error("{}", .0.message)]
    UnknownKey(Box<UnknownKey>),
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
            SshError::HostKey(_) | SshError::UnknownKey(_) => ErrorKind::Hostkey,
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
