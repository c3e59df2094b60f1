//! The HTTPS API and web view: `crew daemon --listen ADDR:PORT` (or `listen` in daemon.toml).
//!
//! HTTPS only (rustls), with the configured certificate or a self-signed one that clients pin
//! ([`tls`]). Bearer tokens with scopes ([`token`]); every action audited as `token:NAME`.
//! JSON endpoints under `/api/v1/` ([`routes`]), an event stream per run ([`events`]),
//! webhooks ([`hooks`]), the web view (`web/`, embedded), and `/api/v1/connect`: an HTTP/1.1
//! upgrade after which the daemon's own client protocol runs on the TLS stream, so a remote
//! `crew` speaks exactly what it speaks over the Unix socket (`daemon::server::session`).
//!
//! This module sits beside the daemon and imports it; the daemon never imports it (it starts
//! the listener through `daemon::Front`).

pub mod events;
pub mod hooks;
mod routes;
pub mod tls;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::daemon::server::Daemon;
use crate::proto::daemon::ApiStatus;

/// TLS handshakes (and request headers) must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `ADDR:PORT` (port 0: any free port).
    pub listen: String,
    /// The API's own files: tokens.json, the self-signed cert.pem and key.pem.
    pub dir: PathBuf,
    /// A configured certificate chain and key (PEM); None: self-signed in `dir`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The webhooks file (None: hooks.toml beside the daemon's inventory).
    pub hooks: Option<PathBuf>,
}

impl ApiConfig {
    /// The API's directory under `CREW_HOME`.
    pub fn default_dir() -> PathBuf {
        crate::paths::home().join("api")
    }
}

/// The listener, once bound.
#[derive(Debug, Clone)]
pub struct Listening {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

/// Shared by every request.
pub(crate) struct Api {
    pub d: Arc<Daemon>,
    pub tokens: token::Tokens,
    pub hooks_path: Option<PathBuf>,
    pub hooks: hooks::State,
}

/// The names a self-signed certificate is made for: loopback, this machine's name, and the
/// listen address when it is a specific one.
fn cert_names(listen: &SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    names
}

/// Bind, load (or make) the certificate, and serve in the background until the daemon stops.
pub async fn start(d: Arc<Daemon>, cfg: ApiConfig) -> anyhow::Result<Listening> {
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr().context("the listener's address")?;
    let (dir, cert, key, names) = (
        cfg.dir.clone(),
        cfg.cert.clone(),
        cfg.key.clone(),
        cert_names(&addr),
    );
    let tls = tokio::task::spawn_blocking(move || {
        tls::load_or_make(&dir, cert.as_deref(), key.as_deref(), &names)
    })
    .await
    .context("certificate task")??;
    let hooks_path = cfg.hooks.clone().or_else(|| {
        d.opts.inventory.as_ref().map(|inv| {
            inv.parent()
                .unwrap_or(std::path::Path::new("."))
                .join("hooks.toml")
        })
    });
    let api = Arc::new(Api {
        d: d.clone(),
        tokens: token::Tokens::at(&cfg.dir),
        hooks_path,
        hooks: hooks::State::default(),
    });
    let listening = Listening {
        addr,
        fingerprint: tls.fingerprint.clone(),
        cert_path: tls.cert_path.clone(),
    };
    d.set_api(ApiStatus {
        url: format!("https://{addr}"),
        fingerprint: tls.fingerprint.clone(),
    });
    tracing::info!(%addr, fingerprint = %tls.fingerprint, cert = %tls.cert_path.display(), "API listening");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let router = routes::router(api);
    tokio::spawn(accept_loop(d, listener, acceptor, router));
    Ok(listening)
}

async fn accept_loop(
    d: Arc<Daemon>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = d.shutdown.cancelled() => return,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = d.shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "API connection: {e}");
            }
        });
    }
}
