//! A remote daemon: `crew --daemon https://HOST:PORT …` (or `CREW_DAEMON`). The token comes
//! from `CREW_TOKEN` or the file `CREW_TOKEN_FILE` names; the daemon's certificate is pinned
//! by its SHA-256 fingerprint: `--fingerprint` / `CREW_DAEMON_FINGERPRINT`, else the one
//! remembered in `<config dir>/known_daemons` (learned on first use, ssh-style), and a
//! daemon whose certificate changed is refused.
//!
//! The connection is TLS, then `GET /api/v1/connect` upgraded to the daemon's own client
//! protocol: from there [`Client::over`] runs on it exactly as on the Unix socket.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use http_body_util::BodyExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::conn::Client;
use crate::api::tls::{fingerprint, normalize_fingerprint};

/// Connecting, the TLS handshake and the upgrade each get this long.
const WAIT: Duration = Duration::from_secs(10);

/// Where the remote daemon is and how to prove who we are.
#[derive(Clone)]
pub struct Remote {
    /// `https://HOST:PORT`, as given.
    pub url: String,
    host: String,
    port: u16,
    token: String,
    /// From `--fingerprint` / `CREW_DAEMON_FINGERPRINT`.
    pin: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

static REMOTE: OnceLock<Remote> = OnceLock::new();

/// The remote daemon this process talks to, if one was named.
pub fn configured() -> Option<&'static Remote> {
    REMOTE.get()
}

/// Talk to the daemon at `url` for the rest of this process.
pub fn configure(url: &str, fingerprint: Option<&str>) -> anyhow::Result<()> {
    let r = Remote::new(url, fingerprint, token_from_env()?)?;
    let _ = REMOTE.set(r);
    Ok(())
}

fn token_from_env() -> anyhow::Result<String> {
    if let Some(t) = std::env::var("CREW_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(t.trim().to_string());
    }
    if let Some(f) = std::env::var_os("CREW_TOKEN_FILE").filter(|f| !f.is_empty()) {
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("reading CREW_TOKEN_FILE {}", PathBuf::from(&f).display()))?;
        let t = text.trim();
        if t.is_empty() {
            bail!("CREW_TOKEN_FILE {} is empty", PathBuf::from(&f).display());
        }
        return Ok(t.to_string());
    }
    bail!("a remote daemon needs a token: set CREW_TOKEN or CREW_TOKEN_FILE (`crew token create` on the daemon's machine makes one)")
}

impl Remote {
    pub fn new(url: &str, fp: Option<&str>, token: String) -> anyhow::Result<Remote> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--daemon {url}: not a URL (https://HOST:PORT)"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--daemon {url}: only https:// (the API is TLS only)");
        }
        let host = uri
            .host()
            .with_context(|| format!("--daemon {url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let pin = match fp {
            Some(f) => Some(normalize_fingerprint(f).with_context(|| {
                format!(
                    "fingerprint `{f}`: 64 hex digits (colons allowed), as `crew status` shows it"
                )
            })?),
            None => None,
        };
        Ok(Remote {
            url: url.to_string(),
            host,
            port,
            token,
            pin,
        })
    }

    fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `<config dir>/known_daemons`: `HOST:PORT FINGERPRINT` lines.
pub fn known_daemons_file() -> PathBuf {
    crate::paths::config_dir().join("known_daemons")
}

fn remembered(key: &str) -> Option<(String, usize)> {
    let text = std::fs::read_to_string(known_daemons_file()).ok()?;
    text.lines().enumerate().find_map(|(i, l)| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next().map(|f| (f.to_string(), i + 1)))?
    })
}

fn remember(key: &str, fp: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = known_daemons_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{key} {fp}").with_context(|| format!("writing {}", path.display()))
}

/// Accepts exactly the pinned certificate (or, with no pin, any: trust on first use, then
/// remembered); handshake signatures are checked as usual.
#[derive(Debug)]
struct Pin {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
        match &self.expected {
            Some(want) if *want != fp => Err(rustls::Error::General(format!(
                "certificate fingerprint {fp} is not the pinned {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connect to the remote daemon: TLS (pinned), the upgrade, then the client protocol.
pub async fn connect(r: &Remote) -> anyhow::Result<Client> {
    let key = r.key();
    let known = remembered(&key);
    let expected = r
        .pin
        .clone()
        .or_else(|| known.as_ref().map(|k| k.0.clone()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pin = Arc::new(Pin {
        expected: expected.clone(),
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(pin.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::time::timeout(
        WAIT,
        tokio::net::TcpStream::connect((r.host.as_str(), r.port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{}: no answer within {}s", r.url, WAIT.as_secs()))?
    .with_context(|| format!("connecting to {}", r.url))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(r.host.clone())
        .with_context(|| format!("{}: not a host name", r.url))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = match tokio::time::timeout(WAIT, connector.connect(name, tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let seen = pin.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let (Some(seen), Some(want)) = (seen, expected.as_ref()) {
                if seen != *want {
                    let whence = match (&r.pin, &known) {
                        (Some(_), _) => {
                            "the fingerprint given (--fingerprint / CREW_DAEMON_FINGERPRINT)"
                                .to_string()
                        }
                        (None, Some((_, line))) => {
                            format!("{}:{line}", known_daemons_file().display())
                        }
                        (None, None) => "the pin".to_string(),
                    };
                    bail!(
                        "REFUSED: the daemon at {} presents a certificate with fingerprint {seen}, \
                         but {whence} says {want}. Someone may be in the middle; if the daemon's \
                         certificate really changed, check the new fingerprint with `crew status` \
                         on its machine and update {whence}.",
                        r.url
                    );
                }
            }
            return Err(e).with_context(|| format!("TLS with {}", r.url));
        }
        Err(_) => bail!("{}: TLS handshake took over {}s", r.url, WAIT.as_secs()),
    };
    if expected.is_none() {
        if let Some(fp) = pin.seen.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            remember(&key, &fp)?;
            eprintln!(
                "crew: first connection to {}: certificate fingerprint {fp}, remembered in {} \
                 (compare it with `crew status` on the daemon's machine)",
                r.url,
                known_daemons_file().display()
            );
        }
    }
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .with_context(|| format!("HTTP with {}", r.url))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("remote connection: {e}");
        }
    });
    let req = hyper::Request::get("/api/v1/connect")
        .header(hyper::header::HOST, key.as_str())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {}", r.token))
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, crate::proto::daemon::UPGRADE)
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .context("building the connect request")?;
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .map_err(|_| anyhow::anyhow!("{}: no answer to connect within {}s", r.url, WAIT.as_secs()))?
        .with_context(|| format!("connect to {}", r.url))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .ok()
            .and_then(|b| b.ok())
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
        bail!("{}: {status}: {msg}", r.url);
    }
    let up = tokio::time::timeout(WAIT, hyper::upgrade::on(resp))
        .await
        .map_err(|_| anyhow::anyhow!("{}: upgrade took over {}s", r.url, WAIT.as_secs()))?
        .with_context(|| format!("upgrade with {}", r.url))?;
    let (rd, wr) = tokio::io::split(hyper_util::rt::TokioIo::new(up));
    let mut c = Client::over(rd, wr, &r.url).await?;
    c.remote = true;
    Ok(c)
}
