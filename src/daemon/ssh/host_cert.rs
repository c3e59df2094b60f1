//! Host certificates, as OpenSSH checks them (`sshconnect.c` `check_host_key`,
//! `sshkey_cert_check_host`). A host that presents a certificate is accepted when an
//! `@cert-authority` line matching the host lists the CA that signed it, the certificate is
//! a host certificate, its principals include the name crew connected to, it is inside its
//! validity window, it has no critical options (none are defined for hosts), and its
//! signature verifies. A revoked certificate key or CA (`@revoked`) is always refused. A
//! certificate that fails any other check is refused with the reason, unless its plain key
//! is itself recorded for the host (OpenSSH's fallback to the raw key). Certificates are
//! asked for only from hosts an `@cert-authority` line covers ([`wanted`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::{Certificate, HashAlg, PublicKey};

use super::known_hosts::{self, lookup, lookup_name, marked, Lookup, Marked};
use super::SshError;

/// True when some `@cert-authority` line applies to `host:port` (then crew offers the
/// certificate algorithms first). Reads the files on the blocking pool.
pub(super) async fn wanted(files: &[PathBuf], host: &str, port: u16) -> bool {
    let (files, host) = (files.to_vec(), host.to_string());
    tokio::task::spawn_blocking(move || !marked(&files, &host, port).0.is_empty())
        .await
        .unwrap_or(false)
}

/// Check a host's certificate (on the blocking pool): Ok to trust it, else the `HostKey`
/// error with the reason.
pub(super) async fn verify(
    files: &[PathBuf],
    host: &str,
    port: u16,
    cert: &Certificate,
) -> Result<(), SshError> {
    let (files, host, cert) = (files.to_vec(), host.to_string(), cert.clone());
    tokio::task::spawn_blocking(move || check(&files, &host, port, &cert, now()))
        .await
        .map_err(|e| SshError::HostKey(format!("checking a host certificate: {e}")))?
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn when(secs: u64) -> String {
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) if secs < u64::MAX => humantime::format_rfc3339_seconds(t).to_string(),
        _ => "forever".to_string(),
    }
}

/// [`verify`] at time `now` (seconds since the epoch). Blocking: reads the files.
pub(super) fn check(
    files: &[PathBuf],
    host: &str,
    port: u16,
    cert: &Certificate,
    now: u64,
) -> Result<(), SshError> {
    let name = lookup_name(host, port);
    let plain = PublicKey::new(cert.public_key().clone(), "");
    let fp = plain.fingerprint(HashAlg::Sha256);
    let ca_fp = cert.signature_key().fingerprint(HashAlg::Sha256);
    let (cas, revoked) = marked(files, host, port);
    for r in &revoked {
        if r.key.key_data() == plain.key_data() {
            return Err(SshError::HostKey(format!(
                "host certificate for {name}: its key ({} {fp}) is REVOKED by known_hosts {}; \
                 refusing",
                plain.algorithm(),
                r.place
            )));
        }
        if r.key.key_data() == cert.signature_key() {
            return Err(SshError::HostKey(format!(
                "host certificate for {name}: the CA that signed it ({ca_fp}) is REVOKED by \
                 known_hosts {}; refusing",
                r.place
            )));
        }
    }
    let reason = match problem(cert, &cas, host, now) {
        None => {
            tracing::debug!(
                "host certificate for {name} (key id {:?}) accepted: signed by CA {ca_fp}",
                cert.key_id()
            );
            return Ok(());
        }
        Some(r) => r,
    };
    // As OpenSSH: a certificate that is not good enough leaves the plain key to be checked.
    match lookup(files, host, port, &plain) {
        Lookup::Known(place) => {
            tracing::warn!(
                "host certificate for {name} not accepted ({reason}); its key is known at {place}"
            );
            Ok(())
        }
        found @ Lookup::Revoked(_) => {
            known_hosts::decide_plain(found, files, &name, &plain).map(|_| ())
        }
        _ => Err(SshError::HostKey(format!(
            "host certificate for {name} refused: {reason}; and its key ({} {fp}) is not in \
             known_hosts",
            plain.algorithm()
        ))),
    }
}

/// Why the certificate cannot be trusted for `host`, or `None` when it can.
fn problem(cert: &Certificate, cas: &[Marked], host: &str, now: u64) -> Option<String> {
    let ca_fp = cert.signature_key().fingerprint(HashAlg::Sha256);
    if cas.is_empty() {
        return Some("no @cert-authority line in known_hosts matches this host".into());
    }
    let Some(ca) = cas
        .iter()
        .find(|c| c.key.key_data() == cert.signature_key())
    else {
        let listed: Vec<String> = cas.iter().map(|c| c.place.to_string()).collect();
        return Some(format!(
            "it is signed by CA {ca_fp}, which is not the CA of the @cert-authority line(s) \
             for this host ({})",
            listed.join(", ")
        ));
    };
    if !cert.cert_type().is_host() {
        return Some("it is a user certificate, not a host certificate".into());
    }
    if now < cert.valid_after() {
        return Some(format!(
            "it is not valid before {}",
            when(cert.valid_after())
        ));
    }
    if now >= cert.valid_before() {
        return Some(format!("it EXPIRED at {}", when(cert.valid_before())));
    }
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Some("it lists no principals".into());
    }
    if !principals.iter().any(|p| p.eq_ignore_ascii_case(host)) {
        return Some(format!(
            "it is not valid for {host} (its principals: {})",
            principals.join(", ")
        ));
    }
    if let Some((opt, _)) = cert.critical_options().iter().next() {
        return Some(format!(
            "it has a critical option crew does not know: {opt}"
        ));
    }
    if cert.validate_at(now, [&ca_fp]).is_err() {
        return Some(format!(
            "its signature does not verify against CA {ca_fp} (known_hosts {})",
            ca.place
        ));
    }
    None
}
