//! Why reaching a host over SSH failed, sorted into the kinds the operator sees.

use std::path::PathBuf;

use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::Mpint;
use russh::keys::{EcdsaCurve, HashAlg, PublicKey};

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

    /// The visual host key of its SHA-256 fingerprint, as `ssh-keygen -lv` draws it.
    pub fn randomart(&self) -> String {
        randomart(&self.key)
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

/// The visual host key (randomart) of `key`'s SHA-256 fingerprint, headed `[TYPE BITS]` as
/// OpenSSH heads it (`[ED25519 256]`, `[RSA 3072]`, `[ECDSA 256]`).
pub fn randomart(key: &PublicKey) -> String {
    let (name, bits) = match key.key_data() {
        KeyData::Ed25519(_) => ("ED25519", Some(256)),
        KeyData::SkEd25519(_) => ("ED25519-SK", Some(256)),
        // The modulus's own bit count (ssh-key rounds an odd size up to whole bytes).
        KeyData::Rsa(r) => ("RSA", mpint_bits(r.n())),
        KeyData::Dsa(d) => ("DSA", mpint_bits(d.p())),
        KeyData::Ecdsa(e) => (
            "ECDSA",
            Some(match e.curve() {
                EcdsaCurve::NistP256 => 256,
                EcdsaCurve::NistP384 => 384,
                EcdsaCurve::NistP521 => 521,
            }),
        ),
        KeyData::SkEcdsaSha2NistP256(_) => ("ECDSA-SK", Some(256)),
        _ => ("UNKNOWN", None),
    };
    let header = match bits {
        Some(b) => format!("[{name} {b}]"),
        None => format!("[{name}]"),
    };
    key.fingerprint(HashAlg::Sha256).to_randomart(&header)
}

/// The number of significant bits of a positive integer.
fn mpint_bits(m: &Mpint) -> Option<u32> {
    let bytes = m.as_positive_bytes()?;
    let first = *bytes.first()?;
    Some((bytes.len() as u32 - 1) * 8 + (8 - first.leading_zeros()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `ssh-keygen -lv -f PUB`'s visual host key: the lines after the fingerprint line.
    fn keygen_art(public: &std::path::Path) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lv")
            .arg("-E")
            .arg("sha256")
            .arg("-f")
            .arg(public)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "ssh-keygen -lv failed");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn randomart_is_what_ssh_keygen_draws() {
        if Command::new("ssh-keygen").arg("-?").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ssh-keygen missing under CI"
            );
            eprintln!("SKIPPED: no ssh-keygen");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kinds: &[(&str, &[&str])] = &[
            ("ed25519", &["-t", "ed25519"]),
            ("rsa", &["-t", "rsa", "-b", "3072"]),
            ("rsa1", &["-t", "rsa", "-b", "1025"]),
            ("p256", &["-t", "ecdsa", "-b", "256"]),
            ("p384", &["-t", "ecdsa", "-b", "384"]),
            ("p521", &["-t", "ecdsa", "-b", "521"]),
        ];
        for (name, args) in kinds {
            let path = dir.path().join(name);
            let st = Command::new("ssh-keygen")
                .args(*args)
                .args(["-q", "-N", "", "-C", "", "-f"])
                .arg(&path)
                .status()
                .expect("ssh-keygen runs");
            assert!(st.success(), "ssh-keygen {args:?}");
            let public = path.with_extension("pub");
            let text = std::fs::read_to_string(&public).expect("read the public key");
            let key = PublicKey::from_openssh(text.trim()).expect("a public key");
            assert_eq!(randomart(&key), keygen_art(&public), "{name}");
        }
    }
}
