//! `~/.ssh/config` through the `ssh2-config` crate: what it says about one host.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

/// A parsed ssh_config and the home directory its `~` and relative `Include`s resolve
/// against: the parent of its `.ssh` directory when it lives in one, else `$HOME`.
pub(crate) struct SshFile {
    config: SshConfig,
    pub home: Option<PathBuf>,
}

/// What ssh_config says for one host name (only what hosts.toml may leave unset).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SshParams {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// `Some(vec![])` for `UserKnownHostsFile none`.
    pub known_hosts: Option<Vec<PathBuf>>,
    /// `Some(None)` means `IdentityAgent none` / `SSH_AUTH_SOCK`: use the environment.
    pub identity_agent: Option<Option<PathBuf>>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub identities_only: Option<bool>,
    /// `KexAlgorithms`, resolved: see [`kex_algorithms`].
    pub kex: Option<Vec<String>>,
}

/// The `KexAlgorithms` list ssh2-config resolved (`+`, `-` and `^` applied to OpenSSH's
/// default list, `-` by exact name), without duplicates; `None` when ssh_config does not set
/// it (crew then uses its own order).
fn kex_algorithms(algos: &ssh2_config::Algorithms) -> Option<Vec<String>> {
    if algos.is_default() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for a in algos.algorithms() {
        let a = a.trim();
        if !a.is_empty() && !out.iter().any(|o| o == a) {
            out.push(a.to_string());
        }
    }
    Some(out)
}

/// Home directory for a config file: `<home>/.ssh/config` → `<home>`.
fn home_for(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    if dir.file_name().is_some_and(|n| n == ".ssh") {
        return dir.parent().map(Path::to_path_buf);
    }
    dirs::home_dir()
}

impl SshFile {
    /// Parse an ssh_config file (unknown and unsupported keywords are tolerated).
    pub fn load(path: &Path) -> Result<SshFile, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let home = home_for(path);
        let mut cfg = SshConfig::default();
        if let Some(h) = &home {
            cfg = cfg.home_dir(h.clone());
        }
        let config = cfg
            .parse(
                &mut BufReader::new(file),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|e| format!("cannot parse ssh config: {e}"))?;
        Ok(SshFile { config, home })
    }

    fn expand(&self, p: &str) -> PathBuf {
        match (&self.home, p.strip_prefix("~/")) {
            (Some(h), Some(rest)) => h.join(rest),
            _ if p == "~" => self.home.clone().unwrap_or_else(|| PathBuf::from(p)),
            _ => PathBuf::from(p),
        }
    }

    /// The settings that apply to `name` (first match wins, as in ssh).
    pub fn query(&self, name: &str) -> SshParams {
        let p = self.config.query(name);
        let unsupported = |key: &str| p.unsupported_fields.get(key).filter(|v| !v.is_empty());
        let known_hosts = unsupported("userknownhostsfile").map(|args| {
            args.iter()
                .flat_map(|a| a.split_whitespace())
                .filter(|a| !a.eq_ignore_ascii_case("none"))
                .map(|a| self.expand(a))
                .collect()
        });
        let identity_agent = unsupported("identityagent").map(|args| {
            let a = args[0].as_str();
            if a.eq_ignore_ascii_case("none") || a == "SSH_AUTH_SOCK" {
                None
            } else {
                Some(self.expand(a))
            }
        });
        let identities_only = unsupported("identitiesonly")
            .map(|args| matches!(args[0].to_ascii_lowercase().as_str(), "yes" | "true" | "on"));
        let proxy_jump = p
            .proxy_jump
            .as_ref()
            .map(|v| v.join(","))
            .filter(|j| !j.is_empty() && !j.eq_ignore_ascii_case("none"));
        SshParams {
            host_name: p.host_name.clone(),
            user: p.user.clone(),
            port: p.port,
            identity_files: p.identity_file.clone().unwrap_or_default(),
            known_hosts,
            identity_agent,
            proxy_jump,
            connect_timeout: p.connect_timeout,
            identities_only,
            kex: kex_algorithms(&p.kex_algorithms),
        }
    }

    /// The standard key files that exist: `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub fn standard_identities(&self) -> Vec<PathBuf> {
        let Some(home) = &self.home else {
            return Vec::new();
        };
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|k| home.join(".ssh").join(k))
            .filter(|p| p.is_file())
            .collect()
    }

    /// `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`.
    pub fn standard_known_hosts(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(home) = &self.home {
            v.push(home.join(".ssh/known_hosts"));
        }
        v.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        v
    }

    /// No ssh_config at all: only the standard files of `$HOME`.
    pub fn empty() -> SshFile {
        SshFile {
            config: SshConfig::default(),
            home: dirs::home_dir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kex_for(config: &str, host: &str) -> Option<Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, config).expect("write config");
        SshFile::load(&path).expect("parse").query(host).kex
    }

    #[test]
    fn kex_algorithms_as_written_first_match_wins() {
        let cfg = "Host fast\n  KexAlgorithms curve25519-sha256,ecdh-sha2-nistp256\n\
                   Host *\n  KexAlgorithms ecdh-sha2-nistp384\n";
        assert_eq!(
            kex_for(cfg, "fast"),
            Some(vec![
                "curve25519-sha256".to_string(),
                "ecdh-sha2-nistp256".to_string()
            ])
        );
        assert_eq!(
            kex_for(cfg, "other"),
            Some(vec!["ecdh-sha2-nistp384".to_string()])
        );
        assert_eq!(
            kex_for("Host x\n  User me\n", "x"),
            None,
            "unset: crew's order"
        );
    }

    #[test]
    fn kex_prefixes_apply_to_openssh_defaults() {
        let defaults = ssh2_config::DefaultAlgorithms::default().kex_algorithms;
        let plus = kex_for("KexAlgorithms +diffie-hellman-group14-sha1\n", "h").expect("set");
        assert_eq!(plus[..defaults.len()], defaults[..]);
        assert_eq!(
            plus.last().map(String::as_str),
            Some("diffie-hellman-group14-sha1")
        );
        let minus = kex_for("KexAlgorithms -curve25519-sha256\n", "h").expect("set");
        assert!(!minus.iter().any(|k| k == "curve25519-sha256"), "{minus:?}");
        assert_eq!(minus.len(), defaults.len() - 1);
        // `^` puts the names first; the later duplicate is dropped.
        let head = kex_for("KexAlgorithms ^ecdh-sha2-nistp256\n", "h").expect("set");
        assert_eq!(head[0], "ecdh-sha2-nistp256");
        assert_eq!(head.len(), defaults.len(), "{head:?}");
    }
}
