//! Public-key authentication: ssh-agent identities first, then key files. IdentitiesOnly
//! restricts the agent to the configured files' keys (servers hang up after MaxAuthTries).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::connect::Client;
use super::SshError;
use crate::model::Host;

/// Stay below OpenSSH's default MaxAuthTries (6) so we can still report cleanly.
const MAX_ATTEMPTS: usize = 5;

/// Key files tried when the host names none (as OpenSSH does).
fn default_identity_files() -> Vec<PathBuf> {
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|f| crate::paths::expand_tilde(&format!("~/.ssh/{f}")))
        .collect()
}

/// Public key of an identity file: `<file>.pub`, else derived from an unencrypted key.
/// Blocking (file reads): see [`public_keys`].
fn public_of(path: &Path) -> Option<PublicKey> {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    if let Ok(text) = std::fs::read_to_string(PathBuf::from(p)) {
        if let Ok(k) = PublicKey::from_openssh(text.trim()) {
            return Some(k);
        }
    }
    russh::keys::load_secret_key(path, None)
        .ok()
        .map(|k| k.public_key().clone())
}

/// The public keys of `files` (those that have one), read on the blocking pool.
async fn public_keys(files: &[PathBuf]) -> Vec<PublicKey> {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || files.iter().filter_map(|f| public_of(f)).collect())
        .await
        .unwrap_or_default()
}

/// What loading one identity file gave.
enum Loaded {
    Key(Arc<PrivateKey>),
    Encrypted,
    Missing,
    Unreadable(String),
}

/// Load a private key file on the blocking pool (file read and key parsing).
async fn load_key(file: &Path) -> Loaded {
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || match russh::keys::load_secret_key(&file, None) {
        Ok(k) => Loaded::Key(Arc::new(k)),
        Err(russh::keys::Error::KeyIsEncrypted) => Loaded::Encrypted,
        Err(_) if !file.exists() => Loaded::Missing,
        Err(e) => Loaded::Unreadable(e.to_string()),
    })
    .await
    .unwrap_or_else(|e| Loaded::Unreadable(format!("loading it failed: {e}")))
}

pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    host: &Host,
    user: &str,
) -> Result<(), SshError> {
    let files = if host.identity_files.is_empty() && !host.identities_only {
        default_identity_files()
    } else {
        host.identity_files.clone()
    };
    let rsa_hash: Option<HashAlg> = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let mut tried: Vec<String> = Vec::new();
    let mut attempts = 0usize;

    let sock = host
        .identity_agent
        .clone()
        .or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(sock) = sock {
        match AgentClient::connect_uds(&sock).await {
            Ok(mut agent) => {
                let wanted = if host.identities_only {
                    public_keys(&files).await
                } else {
                    Vec::new()
                };
                let ids = agent.request_identities().await.unwrap_or_default();
                let mut offered = 0;
                for id in ids {
                    let AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    if host.identities_only
                        && !wanted.iter().any(|w| w.key_data() == key.key_data())
                    {
                        continue;
                    }
                    if attempts >= MAX_ATTEMPTS {
                        break;
                    }
                    attempts += 1;
                    offered += 1;
                    match handle
                        .authenticate_publickey_with(user, key, rsa_hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("{}: agent signing failed: {e}", host.name),
                    }
                }
                tried.push(format!(
                    "ssh-agent {} ({offered} key(s) rejected)",
                    sock.display()
                ));
            }
            Err(e) => {
                tracing::debug!("{}: ssh-agent {}: {e}", host.name, sock.display());
                tried.push(format!("ssh-agent {} (unreachable: {e})", sock.display()));
            }
        }
    }

    for file in &files {
        if attempts >= MAX_ATTEMPTS {
            tried.push(format!("{} (not tried: attempt limit)", file.display()));
            continue;
        }
        let key = match load_key(file).await {
            Loaded::Key(k) => k,
            Loaded::Encrypted => {
                tried.push(format!(
                    "{} (passphrase-protected: add it to ssh-agent)",
                    file.display()
                ));
                continue;
            }
            Loaded::Unreadable(e) => {
                tried.push(format!("{} (unreadable: {e})", file.display()));
                continue;
            }
            Loaded::Missing => {
                if !host.identity_files.is_empty() {
                    tried.push(format!("{} (missing)", file.display()));
                }
                continue;
            }
        };
        attempts += 1;
        let key = PrivateKeyWithHashAlg::new(key, rsa_hash);
        match handle.authenticate_publickey(user, key).await {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => tried.push(format!("{} (rejected)", file.display())),
            Err(e) => {
                return Err(SshError::Auth(format!(
                    "{}: authentication as {user} failed while trying {}: {e}",
                    host.name,
                    file.display()
                )))
            }
        }
    }
    let what = if tried.is_empty() {
        "no ssh-agent and no identity file".to_string()
    } else {
        tried.join(", ")
    };
    Err(SshError::Auth(format!(
        "{}: permission denied for user {user} on {}:{}; tried {what}",
        host.name, host.address, host.port
    )))
}
