//! The daemon's own settings: `<config dir>/crew/daemon.toml` (all keys optional).
//!
//! ```toml
//! hosts = "/etc/crew/hosts.toml"   # the inventory for heists and API requests naming none
//! identify = true                  # ask every client who the operator is (shared accounts)
//! listen = "127.0.0.1:8443"        # serve the HTTPS API and web view there (off when unset)
//! cert = "/etc/crew/api.pem"       # its certificate chain (PEM); unset: a self-signed one
//! key = "/etc/crew/api.key"        # its private key (PEM), with `cert`
//! hooks = "/etc/crew/hooks.toml"   # webhooks (default: hooks.toml beside the inventory)
//! [nats]                           # sites over NATS: see `daemon::bus::BusConfig`
//! url = "nats://127.0.0.1:4222"
//! ```
//!
//! Errors name the file, line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The daemon's inventory.
    pub hosts: Option<PathBuf>,
    /// Refuse to act for a client that did not say who the operator is.
    #[serde(default)]
    pub identify: bool,
    /// Serve the HTTPS API on this address (`ADDR:PORT`).
    pub listen: Option<String>,
    /// The API's certificate chain and key (PEM); both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The webhooks file.
    pub hooks: Option<PathBuf>,
    /// `[nats]`: sites over NATS (see `daemon::bus`).
    pub nats: Option<super::bus::BusConfig>,
}

impl DaemonConfig {
    /// The file's settings; all defaults when it does not exist.
    pub fn load(path: &Path) -> Result<DaemonConfig, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            let (line, col) = crate::textpos::line_col(&text, e.span().map_or(0, |s| s.start));
            format!(
                "{}:{line}:{col}: {}",
                path.display(),
                e.message().trim_end()
            )
        })
    }

    /// `<config dir>/crew/daemon.toml`.
    pub fn default_path() -> PathBuf {
        crate::paths::config_dir().join("daemon.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_names_where_an_error_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("daemon.toml");
        assert_eq!(DaemonConfig::load(&p), Ok(DaemonConfig::default()));
        std::fs::write(&p, "identify = true\nhosts = \"/x/hosts.toml\"\n").expect("write");
        let c = DaemonConfig::load(&p).expect("loads");
        assert!(c.identify);
        assert_eq!(c.hosts.as_deref(), Some(Path::new("/x/hosts.toml")));
        std::fs::write(&p, "identify = true\nidentfy = 1\n").expect("write");
        let e = DaemonConfig::load(&p).expect_err("unknown key");
        assert!(
            e.contains("daemon.toml:2:1") && e.contains("identfy"),
            "{e}"
        );
    }
}
