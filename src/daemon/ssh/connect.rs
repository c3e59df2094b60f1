//! TCP connect, SSH handshake with host-key checking, authentication: all bounded by the
//! host's connect timeout, with at most `opts.handshakes` handshakes in flight.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PublicKeyOrCertificate;
use russh::{client, kex};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{auth, known_hosts, SshError, SshOptions, SshSession};
use crate::model::{Host, StrictHostKeyChecking};

/// Receive window per channel: large enough that one stream of bulk output is not throttled
/// by round trips (russh's client ignores `adjust_window`, so this is the knob).
const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// Key exchanges, best first. A post-quantum hybrid when the server has one; then NIST
/// P-256 ECDH ahead of curve25519, because OpenSSH (through 9.x) computes curve25519 with its
/// portable reference code, about 3 ms of server CPU per handshake more than P-256 through
/// libcrypto: measured on the bench fleet (benches/README.md), the largest single share of a
/// cold run's cost on 500 hosts. Both are in OpenSSH's default list; the rest is russh's.
const KEX_ORDER: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::ECDH_SHA2_NISTP256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::DH_GEX_SHA256,
    kex::DH_G18_SHA512,
    kex::DH_G17_SHA512,
    kex::DH_G16_SHA512,
    kex::DH_G15_SHA512,
    kex::DH_G14_SHA256,
];

/// Extension pseudo-algorithms always offered after the real key exchanges.
const KEX_EXTENSIONS: &[kex::Name] = &[
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// The key exchanges to offer `host`: [`KEX_ORDER`], or the host's ssh_config
/// `KexAlgorithms` (see [`kex_from_list`]).
fn kex_preference(host: &Host) -> Result<Cow<'static, [kex::Name]>, SshError> {
    let Some(list) = &host.kex else {
        return Ok(Cow::Owned([KEX_ORDER, KEX_EXTENSIONS].concat()));
    };
    kex_from_list(list).map(Cow::Owned).map_err(|supported| {
        SshError::Config(format!(
            "{}: KexAlgorithms {} in the ssh config names no key exchange crew supports \
             (crew has: {supported}); fix KexAlgorithms for this host in the ssh config crew \
             reads ([defaults] ssh_config in hosts.toml, else $CREW_SSH_CONFIG, else \
             ~/.ssh/config)",
            host.name,
            if list.is_empty() {
                "(empty)".to_string()
            } else {
                list.join(",")
            }
        ))
    })
}

/// The names of `list` that russh implements, in the list's order, then
/// [`KEX_EXTENSIONS`]. Names it lacks are skipped (OpenSSH's defaults, which `+`, `-` and
/// `^` build on, name some); `none` and the extension names are never taken from the list.
/// None supported: `Err` with the names crew does support.
fn kex_from_list(list: &[String]) -> Result<Vec<kex::Name>, String> {
    let mut names: Vec<kex::Name> = Vec::new();
    for s in list {
        match kex::Name::try_from(s.as_str()) {
            Ok(n) if n != kex::NONE && !names.contains(&n) => names.push(n),
            Ok(_) => {}
            Err(()) => tracing::trace!("KexAlgorithms: {s} is not implemented, skipped"),
        }
    }
    if names.is_empty() {
        return Err(kex::ALL_KEX_ALGORITHMS
            .iter()
            .filter(|n| ***n != kex::NONE)
            .map(|n| n.as_ref())
            .collect::<Vec<_>>()
            .join(","));
    }
    names.extend_from_slice(KEX_EXTENSIONS);
    Ok(names)
}

/// Per-connection handler: holds what `check_server_key` needs (it only receives the key).
pub(super) struct Client {
    address: String,
    port: u16,
    known_hosts: Vec<PathBuf>,
    accept_new: bool,
    negotiated: Arc<Mutex<String>>,
}

impl client::Handler for Client {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                super::host_cert::verify(&self.known_hosts, &self.address, self.port, cert).await?;
                return Ok(true);
            }
        };
        known_hosts::verify(
            &self.known_hosts,
            &self.address,
            self.port,
            key,
            self.accept_new,
        )
        .await?;
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let text = format!(
            "kex={} hostkey={} cipher={} mac={}",
            names.kex.as_ref(),
            names.key.as_str(),
            names.cipher.as_ref(),
            names.client_mac.as_ref(),
        );
        tracing::debug!(
            "{}: negotiated {text}",
            known_hosts::lookup_name(&self.address, self.port)
        );
        if let Ok(mut n) = self.negotiated.lock() {
            *n = text;
        }
        Ok(())
    }
}

/// `certificates`: offer the host certificate algorithms first (an `@cert-authority` line
/// covers this host).
fn config(opts: &SshOptions, kex: Cow<'static, [kex::Name]>, certificates: bool) -> client::Config {
    client::Config {
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: 3,
        // Never garbage-collect a quiet connection: long silent commands are normal.
        inactivity_timeout: None,
        window_size: WINDOW_SIZE,
        nodelay: true,
        preferred: russh::Preferred {
            kex,
            host_key_certificates: if certificates {
                russh::Preferred::DEFAULT.key.clone()
            } else {
                Cow::Borrowed(&[])
            },
            ..russh::Preferred::DEFAULT
        },
        ..client::Config::default()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Connect, verify the host key, authenticate: directly, through the host's
/// `proxy_command`, or through its jump hosts (a channel on the shared connection to the
/// last one, see [`super::jump`]). Errors are sorted by [`SshError::kind`]; one on the way
/// through a jump host names it.
pub async fn connect(host: &Host, opts: &SshOptions) -> Result<SshSession, SshError> {
    connect_via(host, &host.jumps, opts).await
}

/// [`connect`] to `host` through `hops` (empty: directly or through its `proxy_command`).
pub(super) async fn connect_via(
    host: &Host,
    hops: &[Host],
    opts: &SshOptions,
) -> Result<SshSession, SshError> {
    let target = format!("{}:{}", host.address, host.port);
    let user = host.user.clone().unwrap_or_else(crate::paths::whoami);
    let kex = kex_preference(host)?;
    let limit = Duration::from_millis(host.connect_timeout_ms.max(1));
    let Opened {
        stream,
        proxy,
        bastion,
        deadline,
        _permit,
    } = open_stream(host, hops, opts, &user, limit).await?;

    let negotiated = Arc::new(Mutex::new(String::new()));
    let handler = Client {
        address: host.address.clone(),
        port: host.port,
        known_hosts: host.known_hosts.clone(),
        // The ssh config's StrictHostKeyChecking accept-new (or no) learns unknown keys as
        // ssh does; a changed key is refused whatever it says.
        accept_new: opts.accept_new_host_keys
            || matches!(
                host.strict_host_key_checking,
                Some(StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No)
            ),
        negotiated: negotiated.clone(),
    };
    let how = match (&bastion, &proxy) {
        (Some(b), _) => format!(" (through jump host {})", b.host().name),
        (None, Some(_)) => " (through its ProxyCommand)".to_string(),
        (None, None) => String::new(),
    };
    let certificates = super::host_cert::wanted(&host.known_hosts, &host.address, host.port).await;
    let handshake = timeout_at(
        deadline,
        client::connect_stream(Arc::new(config(opts, kex, certificates)), stream, handler),
    )
    .await;
    let mut handle = match handshake {
        Ok(Ok(h)) => h,
        Err(_) => {
            return Err(SshError::Timeout(format!(
                "{}: {target}{how} accepted the connection but the SSH handshake did not \
                 finish within {}{}",
                host.name,
                secs(limit),
                super::proxy::explain(proxy.as_ref()).await
            )))
        }
        Ok(Err(SshError::Session(m))) => {
            let kex = match &host.kex {
                Some(list) => format!(" (KexAlgorithms from the ssh config: {})", list.join(",")),
                None => String::new(),
            };
            let why = super::proxy::explain(proxy.as_ref()).await;
            let m = format!("{}: handshake{how}: {m}{kex}{why}", host.name);
            // A ProxyCommand that never spoke SSH did not reach the host.
            return Err(if proxy.is_some() {
                SshError::Unreachable(m)
            } else {
                SshError::Session(m)
            });
        }
        Ok(Err(other)) => return Err(other),
    };

    timeout_at(deadline, auth::authenticate(&mut handle, host, &user))
        .await
        .map_err(|_| {
            SshError::Timeout(format!(
                "{}: authentication as {user} on {target} did not finish within {}",
                host.name,
                secs(limit)
            ))
        })??;
    let negotiated = negotiated.lock().map(|n| n.clone()).unwrap_or_default();
    tracing::debug!(
        "{}: connected to {target}{how} as {user} ({negotiated})",
        host.name
    );
    Ok(SshSession {
        handle,
        host: host.clone(),
        user,
        negotiated,
        _via: bastion,
        _proxy: proxy,
    })
}

/// A byte stream to a host, ready for the SSH handshake, and what keeps it up.
struct Opened<'a> {
    stream: Box<dyn Io>,
    proxy: Option<super::proxy::ProxyChild>,
    bastion: Option<Arc<SshSession>>,
    /// When the host's connect timeout runs out (counted from the handshake slot).
    deadline: Instant,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

/// TCP to `host`, its ProxyCommand, or a channel through its jump hosts (`hops`), holding
/// one of `opts.handshakes`.
async fn open_stream<'a>(
    host: &Host,
    hops: &[Host],
    opts: &'a SshOptions,
    user: &str,
    limit: Duration,
) -> Result<Opened<'a>, SshError> {
    let target = format!("{}:{}", host.address, host.port);
    // The jump host first, shared with every host behind it; it is connected (or waited
    // for) with no handshake slot held here, so hosts queued behind it never starve it.
    let bastion = match hops.split_last() {
        Some((last, before)) => Some(
            opts.bastions
                .session(last, before, opts)
                .await
                .map_err(|e| super::jump::for_target(e, host))?,
        ),
        None => None,
    };
    // Waiting for a handshake slot is local queueing, not the host's fault: not timed.
    let _permit = opts
        .handshakes
        .acquire()
        .await
        .map_err(|_| SshError::Session("handshake limiter closed (daemon stopping)".into()))?;
    let deadline = Instant::now() + limit;

    let mut proxy = None;
    let stream: Box<dyn Io> = if let Some(b) = &bastion {
        Box::new(super::jump::open_tunnel(b, host, deadline, limit).await?)
    } else if let Some(cmd) = &host.proxy_command {
        let (io, child) = super::proxy::spawn(host, user, cmd)?;
        proxy = Some(child);
        Box::new(io)
    } else {
        let tcp = timeout_at(
            deadline,
            TcpStream::connect((host.address.as_str(), host.port)),
        )
        .await
        .map_err(|_| {
            SshError::Timeout(format!(
                "{}: TCP connect to {target} timed out after {}",
                host.name,
                secs(limit)
            ))
        })?
        .map_err(|e| SshError::Unreachable(format!("{}: connect to {target}: {e}", host.name)))?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("{target}: set_nodelay: {e}");
        }
        Box::new(tcp)
    };
    Ok(Opened {
        stream,
        proxy,
        bastion,
        deadline,
        _permit,
    })
}

/// What a key scan found: the key a host presents and what known_hosts says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// `ssh-ed25519`, … (a certificate's plain key type).
    pub key_type: String,
    /// `SHA256:…`
    pub fingerprint: String,
    pub state: KeyState,
    /// The known_hosts line that says so (`file:line`), or what a certificate check said.
    pub detail: Option<String>,
}

/// What known_hosts says of a presented key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Known,
    Unknown,
    Changed,
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Known => "known",
            KeyState::Unknown => "unknown",
            KeyState::Changed => "changed",
            KeyState::Revoked => "revoked",
        }
    }
}

/// Handler of a key scan: looks the key up, then ends the handshake (no authentication).
struct Scanner {
    address: String,
    port: u16,
    known_hosts: Vec<PathBuf>,
    found: Arc<Mutex<Option<Scanned>>>,
}

impl client::Handler for Scanner {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let scanned = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let (files, host, port, key) = (
                    self.known_hosts.clone(),
                    self.address.clone(),
                    self.port,
                    key.clone(),
                );
                let found = tokio::task::spawn_blocking(move || {
                    (known_hosts::lookup(&files, &host, port, &key), key)
                })
                .await
                .map_err(|e| SshError::HostKey(format!("reading known_hosts: {e}")))?;
                let (state, detail) = match found.0 {
                    known_hosts::Lookup::Known(p) => (KeyState::Known, Some(p.to_string())),
                    known_hosts::Lookup::Unknown { .. } => (KeyState::Unknown, None),
                    known_hosts::Lookup::Changed(p) => (KeyState::Changed, Some(p.to_string())),
                    known_hosts::Lookup::Revoked(p) => (KeyState::Revoked, Some(p.to_string())),
                };
                Scanned {
                    key_type: found.1.algorithm().to_string(),
                    fingerprint: found
                        .1
                        .fingerprint(russh::keys::HashAlg::Sha256)
                        .to_string(),
                    state,
                    detail,
                }
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                let plain = russh::keys::PublicKey::new(cert.public_key().clone(), "");
                let checked =
                    super::host_cert::verify(&self.known_hosts, &self.address, self.port, cert)
                        .await;
                let (state, detail) = match checked {
                    Ok(()) => (KeyState::Known, Some("host certificate".to_string())),
                    Err(e) if e.to_string().contains("REVOKED") => {
                        (KeyState::Revoked, Some(e.to_string()))
                    }
                    Err(e) => (KeyState::Unknown, Some(e.to_string())),
                };
                Scanned {
                    key_type: format!("{} (certificate)", plain.algorithm()),
                    fingerprint: plain.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
                    state,
                    detail,
                }
            }
        };
        if let Ok(mut f) = self.found.lock() {
            *f = Some(scanned);
        }
        // Seen what we came for: end here, before any authentication.
        Ok(false)
    }
}

/// The key `host` presents and what its known_hosts says of it, from a handshake that stops
/// at the key (nothing is authenticated or run; jump hosts are connected as for a run).
pub async fn scan(host: &Host, opts: &SshOptions) -> Result<Scanned, SshError> {
    let user = host.user.clone().unwrap_or_else(crate::paths::whoami);
    let kex = kex_preference(host)?;
    let limit = Duration::from_millis(host.connect_timeout_ms.max(1));
    let Opened {
        stream,
        proxy,
        deadline,
        ..
    } = open_stream(host, &host.jumps, opts, &user, limit).await?;
    let found = Arc::new(Mutex::new(None));
    let handler = Scanner {
        address: host.address.clone(),
        port: host.port,
        known_hosts: host.known_hosts.clone(),
        found: found.clone(),
    };
    let certificates = super::host_cert::wanted(&host.known_hosts, &host.address, host.port).await;
    let handshake = timeout_at(
        deadline,
        client::connect_stream(Arc::new(config(opts, kex, certificates)), stream, handler),
    )
    .await;
    drop(proxy);
    if let Some(s) = found.lock().ok().and_then(|mut f| f.take()) {
        return Ok(s);
    }
    match handshake {
        Err(_) => Err(SshError::Timeout(format!(
            "{}: no host key within {}",
            host.name,
            secs(limit)
        ))),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) => Err(SshError::Session(format!(
            "{}: the handshake ended without a host key",
            host.name
        ))),
    }
}

/// A byte stream an SSH connection runs over: TCP, a ProxyCommand's pipes, or a channel
/// through a jump host.
pub(super) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[kex::Name]) -> Vec<&str> {
        v.iter().map(|n| n.as_ref()).collect()
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_order_and_extensions_when_unset() {
        let h = Host {
            transport: crate::model::Transport::Ssh,
            ..Host::local("h")
        };
        let kex = kex_preference(&h).expect("default");
        assert!(names(&kex).starts_with(&names(KEX_ORDER)));
        assert_eq!(names(&kex).len(), KEX_ORDER.len() + 2);
        assert!(names(&kex).ends_with(&["ext-info-c", "kex-strict-c-v00@openssh.com"]));
    }

    #[test]
    fn user_order_kept_unsupported_skipped_extensions_appended() {
        let got = kex_from_list(&list(&[
            "sntrup761x25519-sha512",
            "ecdh-sha2-nistp384",
            "none",
            "curve25519-sha256",
            "ext-info-c",
            "ecdh-sha2-nistp384",
        ]))
        .expect("some supported");
        assert_eq!(
            names(&got),
            [
                "ecdh-sha2-nistp384",
                "curve25519-sha256",
                "ext-info-c",
                "kex-strict-c-v00@openssh.com"
            ]
        );
    }

    #[test]
    fn nothing_supported_fails_the_host_naming_the_list_and_the_config() {
        let mut h = Host::local("old");
        h.kex = Some(list(&["sntrup761x25519-sha512", "none"]));
        let e = kex_preference(&h).expect_err("nothing usable");
        let msg = e.to_string();
        assert!(msg.starts_with("old: "), "{msg}");
        assert!(
            msg.contains("KexAlgorithms sntrup761x25519-sha512,none"),
            "{msg}"
        );
        assert!(msg.contains("curve25519-sha256"), "lists what works: {msg}");
        assert!(msg.contains("~/.ssh/config"), "{msg}");
        assert_eq!(e.kind(), crate::model::ErrorKind::Internal);
        h.kex = Some(Vec::new());
        assert!(kex_preference(&h)
            .expect_err("empty")
            .to_string()
            .contains("KexAlgorithms (empty)"));
    }
}
