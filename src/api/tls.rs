//! The API's certificate: the one configured (`cert`/`key` in daemon.toml), else a
//! self-signed one made on first use and kept under `CREW_HOME/api/` (key file 0600). Clients
//! pin its SHA-256 fingerprint (ssh-style), so no public CA is needed and none is trusted.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// The server's TLS settings and what clients pin.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), `AB:CD:…`.
    pub fingerprint: String,
    /// The certificate file (PEM), for `curl --cacert`.
    pub cert_path: PathBuf,
}

/// `AB:CD:…`: SHA-256 of a certificate's DER, as clients pin it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A fingerprint as typed (any case, colons or not) in the form [`fingerprint`] prints.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).to_string())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The configured certificate and key, or the self-signed pair in `dir` (made when absent,
/// for `names`: the DNS names and IP addresses it is valid for).
pub fn load_or_make(
    dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    names: &[String],
) -> anyhow::Result<Tls> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        (None, None) => {
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            if !c.exists() || !k.exists() {
                make_self_signed(dir, &c, &k, names)?;
            }
            (c, k)
        }
        _ => bail!("daemon.toml: `cert` and `key` go together (set both, or neither for a self-signed certificate)"),
    };
    let chain = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let leaf = chain
        .first()
        .with_context(|| format!("{}: no certificate in it", cert_path.display()))?;
    let fingerprint = fingerprint(leaf.as_ref());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable certificate",
                cert_path.display(),
                key_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
        cert_path,
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::certs(&mut text.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", path.display()))
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut text.as_slice())
        .with_context(|| format!("{}: not a PEM private key", path.display()))?
        .with_context(|| format!("{}: no private key in it", path.display()))
}

fn make_self_signed(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("certificate names for the self-signed certificate")?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("crew daemon ({})", crate::paths::whoami()),
    );
    let key_pair = rcgen::KeyPair::generate().context("making a key for the certificate")?;
    let c = params
        .self_signed(&key_pair)
        .context("making the self-signed certificate")?;
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, c.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for the API");
    Ok(())
}

/// Write a file through a temporary name created with `mode` (a key is never readable by
/// others, not even for a moment), then rename it into place.
fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = load_or_make(tmp.path(), None, None, &names).expect("made");
        let b = load_or_make(tmp.path(), None, None, &names).expect("loaded");
        assert_eq!(a.fingerprint, b.fingerprint, "kept, not remade");
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let mode = std::fs::metadata(tmp.path().join("key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            normalize_fingerprint(&a.fingerprint.replace(':', "").to_lowercase()),
            Some(a.fingerprint.clone())
        );
        assert_eq!(normalize_fingerprint("abc"), None);
    }
}
