//! Jump hosts. Every host behind one jump host (the same chain of hops) shares ONE SSH
//! connection to it: each target gets a `direct-tcpip` channel on it, and its own SSH
//! session runs inside that channel (so 500 hosts behind a bastion cost one bastion
//! handshake). A chain `a,b` is a connection to `b` running in a channel on the shared
//! connection to `a`, shared in turn by everything behind `b`.
//!
//! The registry keeps only weak references: a jump host's connection lives as long as a
//! connection through it does. When it dies, every channel on it ends, so every session
//! behind it ends too; the pool sees their links die, marks them lost and reconnects them
//! with its backoff, and the first of them to come back opens a new connection to the jump
//! host that the others then share. Concurrent demands for a jump host that is connecting
//! wait for that one attempt and share its outcome, success or error (500 hosts behind a
//! dead bastion get their verdict after one connect timeout, not 500).
//!
//! Each channel is read by the session running inside it (russh's session task reads its
//! stream continuously), so no channel stalls the shared connection as long as the targets'
//! own channels are read (every agent channel has a reader task: see `stream.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::{FutureExt, Shared};
use tokio::time::{timeout_at, Instant};

use super::connect::connect_via;
use super::{SshError, SshOptions, SshSession};
use crate::model::Host;

type Connecting = Shared<Pin<Box<dyn Future<Output = Result<Arc<SshSession>, SshError>> + Send>>>;

enum Slot {
    /// A connection attempt in flight: every demand meanwhile awaits this one.
    Connecting(Connecting),
    /// Connected (while anything behind it holds the session).
    Up(Weak<SshSession>),
}

/// The shared connections to jump hosts, by chain. Cheap to clone (one registry).
#[derive(Clone, Default)]
pub struct Bastions {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// The identity of a connection to `hop` through `before`: who, where, and the way there.
fn chain_key(hop: &Host, before: &[Host]) -> String {
    before
        .iter()
        .chain(std::iter::once(hop))
        .map(|h| {
            format!(
                "{}@{}:{}",
                h.user.as_deref().unwrap_or(""),
                h.address,
                h.port
            )
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

impl Bastions {
    /// A live connection to `hop`, reached through `before` (first to last): the shared
    /// one when it is up, else one new connection attempt shared by every demand that
    /// comes while it runs. Errors name the hop.
    pub(super) async fn session(
        &self,
        hop: &Host,
        before: &[Host],
        opts: &SshOptions,
    ) -> Result<Arc<SshSession>, SshError> {
        let key = chain_key(hop, before);
        let attempt = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(&key) {
                Some(Slot::Up(w)) => match w.upgrade() {
                    Some(s) if !s.is_closed() => return Ok(s),
                    _ => None,
                },
                Some(Slot::Connecting(f)) => Some(f.clone()),
                None => None,
            }
            .unwrap_or_else(|| {
                let f = self.attempt(key.clone(), hop.clone(), before.to_vec(), opts.clone());
                slots.insert(key.clone(), Slot::Connecting(f.clone()));
                f
            })
        };
        attempt.await
    }

    /// One connection attempt to `hop`; at its end the slot records the connection (or is
    /// emptied, so the next demand tries again).
    fn attempt(&self, key: String, hop: Host, before: Vec<Host>, opts: SshOptions) -> Connecting {
        let slots = self.slots.clone();
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            tracing::info!("jump host {}: connecting ({key})", hop.name);
            let r = connect_via(&hop, &before, &opts).await.map(Arc::new);
            let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
            match &r {
                Ok(session) => {
                    tracing::info!("jump host {}: connected", hop.name);
                    s.insert(key, Slot::Up(Arc::downgrade(session)));
                }
                Err(e) => {
                    tracing::warn!("jump host {}: {e}", hop.name);
                    s.remove(&key);
                }
            }
            r.map_err(|e| name_hop(e, &hop))
        });
        fut.shared()
    }
}

/// An error on the way to a jump host, for the hosts behind it: same kind, and it says
/// which jump host (its own message names the hop and what failed there).
fn name_hop(e: SshError, hop: &Host) -> SshError {
    let via = |m: String| {
        if m.starts_with("jump host ") {
            m
        } else {
            format!("jump host {}: {m}", hop.name)
        }
    };
    match e {
        SshError::Unreachable(m) => SshError::Unreachable(via(m)),
        SshError::Timeout(m) => SshError::Timeout(via(m)),
        SshError::HostKey(m) => SshError::HostKey(via(m)),
        SshError::UnknownKey(mut u) => {
            u.message = via(u.message);
            u.jump.get_or_insert_with(|| hop.name.clone());
            SshError::UnknownKey(u)
        }
        SshError::Auth(m) => SshError::Auth(via(m)),
        SshError::Config(m) => SshError::Config(via(m)),
        // A jump host needs no agent: whatever went wrong, the target was not reached.
        SshError::AgentUnavailable(m) | SshError::Session(m) => SshError::Unreachable(via(m)),
    }
}

/// A jump host's error as a target's: `<target>: through <error naming the hop>`.
pub(super) fn for_target(e: SshError, target: &Host) -> SshError {
    let t = |m: String| format!("{}: through {m}", target.name);
    match e {
        SshError::Unreachable(m) => SshError::Unreachable(t(m)),
        SshError::Timeout(m) => SshError::Timeout(t(m)),
        SshError::HostKey(m) => SshError::HostKey(t(m)),
        SshError::UnknownKey(mut u) => {
            u.message = t(u.message);
            SshError::UnknownKey(u)
        }
        SshError::Auth(m) => SshError::Auth(t(m)),
        SshError::Config(m) => SshError::Config(t(m)),
        SshError::AgentUnavailable(m) => SshError::AgentUnavailable(t(m)),
        SshError::Session(m) => SshError::Session(t(m)),
    }
}

/// A `direct-tcpip` channel from `bastion` to `host`'s address and port, as a byte stream.
/// The bastion answers only once its own TCP connect to the host is done (or failed), so
/// the wait is bounded by `deadline` (the host's connect timeout, `limit`).
pub(super) async fn open_tunnel(
    bastion: &SshSession,
    host: &Host,
    deadline: Instant,
    limit: Duration,
) -> Result<russh::ChannelStream<russh::client::Msg>, SshError> {
    let target = format!("{}:{}", host.address, host.port);
    let via = &bastion.host().name;
    let opened = timeout_at(
        deadline,
        bastion.handle.channel_open_direct_tcpip(
            host.address.clone(),
            u32::from(host.port),
            "127.0.0.1",
            0,
        ),
    )
    .await
    .map_err(|_| {
        SshError::Timeout(format!(
            "{}: jump host {via} did not connect to {target} within {:.1}s",
            host.name,
            limit.as_secs_f64()
        ))
    })?;
    match opened {
        Ok(ch) => Ok(ch.into_stream()),
        Err(russh::Error::ChannelOpenFailure(why)) => {
            let what = match why {
                russh::ChannelOpenFailure::ConnectFailed => {
                    "could not connect (refused, no route, or unknown name)".to_string()
                }
                russh::ChannelOpenFailure::AdministrativelyProhibited => {
                    "refused to forward (AllowTcpForwarding or PermitOpen on the jump host)"
                        .to_string()
                }
                russh::ChannelOpenFailure::ResourceShortage => {
                    "is out of resources for another channel".to_string()
                }
                russh::ChannelOpenFailure::UnknownChannelType => {
                    "does not forward TCP (unknown channel type direct-tcpip)".to_string()
                }
                russh::ChannelOpenFailure::Other { code, reason } => {
                    format!("refused the channel ({code}: {reason})")
                }
            };
            Err(SshError::Unreachable(format!(
                "{}: jump host {via} {what} to {target}",
                host.name
            )))
        }
        Err(e) if bastion.is_closed() => Err(SshError::Unreachable(format!(
            "{}: the connection to jump host {via} closed while opening a channel to \
             {target}: {e}",
            host.name
        ))),
        Err(e) => Err(SshError::Unreachable(format!(
            "{}: jump host {via}: opening a channel to {target}: {e}",
            host.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(name: &str, user: &str, addr: &str, port: u16) -> Host {
        let mut h = Host::local(name);
        h.transport = crate::model::Transport::Ssh;
        h.user = Some(user.into());
        h.address = addr.into();
        h.port = port;
        h
    }

    #[test]
    fn chains_differ_by_every_hop_and_the_way_there() {
        let a = hop("a", "u", "10.0.0.1", 22);
        let b = hop("b", "u", "10.0.0.2", 22);
        assert_eq!(
            chain_key(&b, std::slice::from_ref(&a)),
            "u@10.0.0.1:22 > u@10.0.0.2:22"
        );
        assert_ne!(chain_key(&b, std::slice::from_ref(&a)), chain_key(&b, &[]));
        assert_ne!(
            chain_key(&b, &[]),
            chain_key(&hop("b", "v", "10.0.0.2", 22), &[])
        );
        // The name a hop was written as does not matter: the same place is one connection.
        assert_eq!(
            chain_key(&b, &[]),
            chain_key(&hop("alias", "u", "10.0.0.2", 22), &[])
        );
    }

    #[test]
    fn a_hop_error_keeps_its_kind_and_names_the_hop_once() {
        let b = hop("bastion", "u", "10.0.0.1", 22);
        let e = name_hop(
            SshError::Timeout("bastion: TCP connect to 10.0.0.1:22 timed out".into()),
            &b,
        );
        assert_eq!(e.kind(), crate::model::ErrorKind::ConnectTimeout);
        let t = for_target(e, &hop("web01", "u", "10.1.0.1", 22));
        assert_eq!(
            t.to_string(),
            "web01: through jump host bastion: bastion: TCP connect to 10.0.0.1:22 timed out"
        );
        let twice = name_hop(name_hop(SshError::Auth("x".into()), &b), &b);
        assert_eq!(twice.to_string(), "jump host bastion: x");
    }
}
