//! Privileged agents: one per host and sudo user, started through sudo on a new channel of
//! the host's existing SSH connection (`ssh/sudo.rs`) the first time a job asks for it, then
//! reused by every later job that becomes that user, so sudo asks for the password once per
//! host, not once per command. It lives as long as the connection under it; after a
//! reconnect the next privileged job starts a new one.
//!
//! A password sudo refused is not sent again to that host for that user: a keyed digest of
//! it (a salted hash, never the password) is kept, so a retrying heist step or a re-run with the same
//! wrong password fails at once instead of counting towards a lockout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::link::AgentLink;
use super::pool::{ssh_error, Pool};
use crate::model::{ErrorKind, Host, HostError, Secret, Sudo};

type Key = (String, String);
type Slot = Arc<tokio::sync::Mutex<Option<AgentLink>>>;

pub struct Privileged {
    slots: Mutex<HashMap<Key, Slot>>,
    refused: Mutex<HashMap<Key, Vec<u8>>>,
    /// Random per daemon: what [`Privileged::digest`] hashes before the password.
    salt: [u8; 32],
}

impl Privileged {
    pub fn new() -> Privileged {
        let mut salt = [0u8; 32];
        if let Err(e) = getrandom::getrandom(&mut salt) {
            tracing::warn!("no randomness for the refused-password digests: {e}");
        }
        Privileged {
            slots: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            salt,
        }
    }

    fn slot(&self, key: &Key) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    fn digest(&self, password: Option<&Secret>) -> Vec<u8> {
        use sha2::Digest;
        let pw = password.map(Secret::expose).unwrap_or_default();
        sha2::Sha256::new()
            .chain_update(self.salt)
            .chain_update(pw)
            .finalize()
            .to_vec()
    }

    fn was_refused(&self, key: &Key, password: Option<&Secret>) -> bool {
        let d = self.digest(password);
        self.refused
            .lock()
            .map(|r| r.get(key) == Some(&d))
            .unwrap_or(false)
    }

    fn refuse(&self, key: &Key, password: Option<&Secret>) {
        let d = self.digest(password);
        if let Ok(mut r) = self.refused.lock() {
            r.insert(key.clone(), d);
        }
    }
}

impl Default for Privileged {
    fn default() -> Self {
        Privileged::new()
    }
}

impl Pool {
    /// The agent that runs as `sudo.user` on `host`: the live one, else one started now
    /// through sudo (connecting to the host first when needed).
    pub async fn privileged(
        &self,
        host: &Host,
        sudo: &Sudo,
        accept_new: bool,
    ) -> Result<AgentLink, HostError> {
        let reg = self.privileged_agents();
        let key = (host.link_key(), sudo.user.clone());
        let slot = reg.slot(&key);
        let mut live = slot.lock().await;
        if let Some(link) = live.as_ref().filter(|l| !l.is_closed()) {
            return Ok(link.clone());
        }
        *live = None;
        if reg.was_refused(&key, sudo.password.as_ref()) {
            return Err(HostError::new(
                ErrorKind::Auth,
                format!(
                    "{}: sudo -u {} already refused this password; not sent again (give \
                     another one)",
                    host.name, sudo.user
                ),
            ));
        }
        let (session, opts) = self.session(host, accept_new).await?;
        let ch = match session
            .start_privileged(&opts, &sudo.user, sudo.password.as_ref())
            .await
        {
            Ok(ch) => ch,
            Err(e) => {
                let e = ssh_error(e);
                if e.kind == ErrorKind::Auth && e.message.contains("refused the password") {
                    reg.refuse(&key, sudo.password.as_ref());
                }
                return Err(e);
            }
        };
        let (link, hs) = AgentLink::connect(ch.reader, ch.writer, self.link_options())
            .await
            .map_err(|e| {
                HostError::new(
                    ErrorKind::Agent,
                    format!(
                        "{}: the agent started through sudo -u {} did not greet: {e}",
                        host.name, sudo.user
                    ),
                )
            })?;
        tracing::info!(
            host = %host.name,
            "privileged agent (sudo -u {}) up, pid {}",
            sudo.user,
            hs.agent_pid
        );
        *live = Some(link.clone());
        Ok(link)
    }
}
