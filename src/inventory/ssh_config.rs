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
