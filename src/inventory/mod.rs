//! The inventory: hosts.toml, resolved against `~/.ssh/config`.
//!
//! Precedence for every setting: the `[[host]]` entry, then `[defaults]`, then the
//! ssh_config (`[defaults] ssh_config`, else `$CREW_SSH_CONFIG`, else `~/.ssh/config` then
//! `/etc/ssh/ssh_config`; resolved as `ssh -G` does, see [`ssh_config`]), then built-in
//! defaults (port 22, the standard key files that exist, OpenSSH's known_hosts files,
//! 10 s connect timeout).

mod hops;
mod raw;
mod resolve;
mod settings;
pub mod ssh_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::Host;

/// A loaded inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The hosts.toml it came from.
    pub path: PathBuf,
    /// Hosts in file order (nodesets expanded in their written order).
    pub hosts: Vec<Host>,
    /// Named selections (`[groups]`), used as `@name`; checked at load time.
    pub groups: BTreeMap<String, String>,
    /// `[defaults] ssh_config`: names outside the inventory are resolved through it too.
    pub ssh_config: Option<PathBuf>,
    /// No hosts.toml: the hosts are the concrete `Host` names of the ssh config at `path`.
    pub from_ssh_config: bool,
}

/// Why an inventory could not be loaded. `Display` gives `file:line:col: message` when the
/// problem is at a place in a file. Messages quote the file's contents, which may hold control
/// characters (an escape sequence, NUL, U+009B): they are shown as visible stand-ins, as
/// `crew run` shows host output, never raw.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: {source}", shown(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: {}", shown(path), visible(message))]
    At {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: {}", shown(path), visible(message))]
    SshConfig { path: PathBuf, message: String },
    #[error("no hosts.toml found; looked for {}", list(looked))]
    NotFound { looked: Vec<PathBuf> },
}

fn visible(text: &str) -> String {
    crate::sanitize_class::visible(text.as_bytes())
}

fn shown(path: &Path) -> String {
    crate::sanitize_class::visible(path.as_os_str().as_encoded_bytes())
}

fn list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| shown(p)).collect();
    v.join(", ")
}

/// A file's text and name, to turn byte offsets into `file:line:col` errors.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        crate::textpos::line_col(self.text, offset)
    }

    pub fn error(&self, offset: usize, message: impl Into<String>) -> InventoryError {
        let (line, col) = self.line_col(offset);
        InventoryError::At {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Offset of the first character inside a string value whose span starts at `start`
    /// (skips the opening quote or triple quote).
    pub fn string_body(&self, start: usize) -> usize {
        let rest = self.text.get(start..).unwrap_or("");
        if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
            start + 3
        } else if rest.starts_with('"') || rest.starts_with('\'') {
            start + 1
        } else {
            start
        }
    }
}

impl Inventory {
    /// Read and resolve a hosts.toml.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::from_str(&text, path)
    }

    /// Resolve hosts.toml text; `path` names it in errors and anchors relative paths.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let src = Source { path, text };
        let raw: raw::RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            src.error(offset, e.message().trim_end())
        })?;
        let (hosts, groups, ssh_config) = resolve::resolve(raw, &src)?;
        Ok(Inventory {
            path: path.to_path_buf(),
            hosts,
            groups,
            ssh_config,
            from_ssh_config: false,
        })
    }

    /// No hosts.toml: the concrete `Host` names of the ssh config (`$CREW_SSH_CONFIG`, else
    /// `~/.ssh/config` and `/etc/ssh/ssh_config`; patterns are left out), each resolved as
    /// `ssh NAME` would. `path` is the config file.
    pub fn from_ssh_config() -> Result<Inventory, InventoryError> {
        let file = resolve::default_ssh_file()?;
        let path = resolve::env_ssh_config().unwrap_or_else(resolve::user_ssh_config);
        let mut hosts: Vec<Host> = Vec::new();
        for name in file.concrete_hosts() {
            let h =
                hops::adhoc(&name, &hosts, &file).map_err(|message| InventoryError::SshConfig {
                    path: path.clone(),
                    message,
                })?;
            hosts.push(h);
        }
        Ok(Inventory {
            path,
            hosts,
            groups: BTreeMap::new(),
            ssh_config: None,
            from_ssh_config: true,
        })
    }

    /// An inventory of exactly these names (a `-w` nodeset, as pdsh and clush take it): a
    /// name of this inventory is its host; any other is resolved through the ssh config as
    /// `ssh NAME` would, even though no hosts.toml lists it. Groups are kept.
    pub fn with_names(&self, names: &[String]) -> Result<Inventory, InventoryError> {
        let mut file = None;
        let mut hosts = Vec::with_capacity(names.len());
        for name in names {
            if let Some(h) = self.host(name) {
                hosts.push(h.clone());
                continue;
            }
            if file.is_none() {
                file = Some(match &self.ssh_config {
                    Some(p) => ssh_config::SshFile::load(p).map_err(|message| {
                        InventoryError::SshConfig {
                            path: p.clone(),
                            message,
                        }
                    })?,
                    None => resolve::default_ssh_file()?,
                });
            }
            let Some(f) = file.as_ref() else { continue };
            let h =
                hops::adhoc(name, &self.hosts, f).map_err(|message| InventoryError::SshConfig {
                    path: self.path.clone(),
                    message,
                })?;
            hosts.push(h);
        }
        Ok(Inventory {
            path: self.path.clone(),
            hosts,
            groups: self.groups.clone(),
            ssh_config: self.ssh_config.clone(),
            from_ssh_config: self.from_ssh_config,
        })
    }

    /// Where the inventory is: `explicit` when given, else `./hosts.toml`, else
    /// `<config dir>/hosts.toml`.
    pub fn find_default(explicit: Option<&Path>) -> Result<PathBuf, InventoryError> {
        let candidates = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => vec![
                PathBuf::from("hosts.toml"),
                crate::paths::config_dir().join("hosts.toml"),
            ],
        };
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => Ok(p.clone()),
            None => Err(InventoryError::NotFound { looked: candidates }),
        }
    }

    /// `explicit`, else `./hosts.toml`, else `<config dir>/hosts.toml`, loaded; with none of
    /// them (and none named), the ssh config's hosts ([`Inventory::from_ssh_config`]).
    pub fn load_default(explicit: Option<&Path>) -> Result<Inventory, InventoryError> {
        match Inventory::find_default(explicit) {
            Ok(p) => Inventory::load(&p),
            Err(InventoryError::NotFound { .. }) if explicit.is_none() => {
                Inventory::from_ssh_config()
            }
            Err(e) => Err(e),
        }
    }

    /// An inventory of these hosts, from no file (tests, benchmarks).
    pub fn from_hosts(hosts: Vec<Host>) -> Inventory {
        Inventory {
            path: PathBuf::new(),
            hosts,
            groups: BTreeMap::new(),
            ssh_config: None,
            from_ssh_config: false,
        }
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
