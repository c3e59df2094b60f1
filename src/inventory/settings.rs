//! One `[defaults]` or `[[host]]` table, checked and typed (values still optional: what is
//! unset falls through to the defaults, then ssh_config, then built-ins).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::RawSettings;
use super::{InventoryError, Source};
use crate::model::Transport;

#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub transport: Option<Transport>,
    pub identity_files: Option<Vec<PathBuf>>,
    pub identities_only: Option<bool>,
    pub known_hosts: Option<Vec<PathBuf>>,
    pub identity_agent: Option<PathBuf>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub agent_dir: Option<String>,
    pub tags: Vec<String>,
}

impl Settings {
    pub fn from_raw(
        raw: &RawSettings,
        src: &Source<'_>,
        base: &Path,
    ) -> Result<Settings, InventoryError> {
        let text = |v: &Option<Spanned<String>>, key: &str| -> Result<_, InventoryError> {
            match v {
                Some(s) if s.get_ref().trim().is_empty() => {
                    Err(src.error(s.span().start, format!("`{key}` is empty")))
                }
                Some(s) => Ok(Some(s.get_ref().clone())),
                None => Ok(None),
            }
        };
        let port = match &raw.port {
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(src.error(
                        p.span().start,
                        format!("port {} out of range: expected 1-65535", p.get_ref()),
                    ))
                }
            },
            None => None,
        };
        let transport = match &raw.transport {
            Some(t) => Some(match t.get_ref().as_str() {
                "ssh" => Transport::Ssh,
                "local" => Transport::Local,
                other => {
                    return Err(src.error(
                        t.span().start,
                        format!("unknown transport `{other}`: expected \"ssh\" or \"local\""),
                    ))
                }
            }),
            None => None,
        };
        let mut identity_files: Option<Vec<PathBuf>> = None;
        for (key, v) in [
            ("identity_file", &raw.identity_file),
            ("identity_files", &raw.identity_files),
        ] {
            if let Some(v) = v {
                let files = strings(v, key, src)?;
                identity_files
                    .get_or_insert_with(Vec::new)
                    .extend(files.iter().map(|f| local_path(f, base)));
            }
        }
        let known_hosts = match &raw.known_hosts {
            Some(v) => Some(
                strings(v, "known_hosts", src)?
                    .iter()
                    .map(|f| local_path(f, base))
                    .collect(),
            ),
            None => None,
        };
        let mut tags = Vec::new();
        for t in raw.tags.iter().flatten() {
            check_tag(t.get_ref()).map_err(|m| {
                src.error(t.span().start, format!("bad tag {:?}: {m}", t.get_ref()))
            })?;
            tags.push(t.get_ref().clone());
        }
        Ok(Settings {
            user: text(&raw.user, "user")?,
            port,
            transport,
            identity_files,
            identities_only: raw.identities_only,
            known_hosts,
            identity_agent: text(&raw.identity_agent, "identity_agent")?
                .map(|p| local_path(&p, base)),
            proxy_jump: match &raw.proxy_jump {
                Some(v) => {
                    super::ssh_config::parse_hops(v.get_ref()).map_err(|m| {
                        src.error(src.string_body(v.span().start), format!("`jump`: {m}"))
                    })?;
                    text(&raw.proxy_jump, "jump")?
                }
                None => None,
            },
            connect_timeout: match &raw.connect_timeout {
                Some(v) => Some(duration(v, src)?),
                None => None,
            },
            agent_dir: text(&raw.agent_dir, "agent_dir")?,
            tags,
        })
    }

    /// A host's settings over the defaults: the host wins; tags add up, and a host's
    /// `key=value` tag replaces a default tag with the same key.
    pub fn over(self, defaults: &Settings) -> Settings {
        let mut tags: Vec<String> = defaults
            .tags
            .iter()
            .filter(|d| {
                let dk = d.split_once('=').map(|(k, _)| k);
                !self.tags.iter().any(|t| match (dk, t.split_once('=')) {
                    (Some(dk), Some((k, _))) => dk == k,
                    _ => *t == **d,
                })
            })
            .cloned()
            .collect();
        tags.extend(self.tags);
        Settings {
            user: self.user.or_else(|| defaults.user.clone()),
            port: self.port.or(defaults.port),
            transport: self.transport.or(defaults.transport),
            identity_files: self
                .identity_files
                .or_else(|| defaults.identity_files.clone()),
            identities_only: self.identities_only.or(defaults.identities_only),
            known_hosts: self.known_hosts.or_else(|| defaults.known_hosts.clone()),
            identity_agent: self
                .identity_agent
                .or_else(|| defaults.identity_agent.clone()),
            proxy_jump: self.proxy_jump.or_else(|| defaults.proxy_jump.clone()),
            connect_timeout: self.connect_timeout.or(defaults.connect_timeout),
            agent_dir: self.agent_dir.or_else(|| defaults.agent_dir.clone()),
            tags,
        }
    }
}

/// `~/x` → home; a relative path is relative to hosts.toml's directory.
pub(crate) fn local_path(p: &str, base: &Path) -> PathBuf {
    let expanded = crate::paths::expand_tilde(p);
    if expanded.is_relative() && !base.as_os_str().is_empty() {
        base.join(expanded)
    } else {
        expanded
    }
}

/// A string or a list of strings.
fn strings(
    v: &Spanned<toml::Value>,
    key: &str,
    src: &Source<'_>,
) -> Result<Vec<String>, InventoryError> {
    let bad = || {
        src.error(
            v.span().start,
            format!("`{key}`: expected a string or a list of strings"),
        )
    };
    match v.get_ref() {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// Seconds (integer or float) or a duration string ("1500ms", "10s").
fn duration(v: &Spanned<toml::Value>, src: &Source<'_>) -> Result<Duration, InventoryError> {
    let at = v.span().start;
    let d = match v.get_ref() {
        toml::Value::Integer(n) if *n > 0 => Duration::from_secs(*n as u64),
        toml::Value::Float(f) if *f > 0.0 && f.is_finite() => Duration::from_secs_f64(*f),
        toml::Value::String(s) => crate::duration::parse(s)
            .map_err(|e| src.error(at, format!("`connect_timeout`: {e}")))?,
        _ => return Err(src.error(
            at,
            "`connect_timeout`: expected a positive number of seconds or a duration like \"10s\"",
        )),
    };
    if d.is_zero() {
        return Err(src.error(at, "`connect_timeout` must be more than zero"));
    }
    Ok(d)
}

/// Tags must be selectable: `key=value` or a bare word, nothing the selection language
/// would read as an operator.
pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    let (key, value) = match tag.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (tag, None),
    };
    if key.is_empty() {
        return Err("expected a name before `=`".into());
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("{c:?} is not allowed in a tag name"));
    }
    if key.starts_with("fact.") || key == "fact" {
        return Err("`fact.` is reserved for agent facts".into());
    }
    if let Some(v) = value {
        if v.is_empty() {
            return Err("expected a value after `=`".into());
        }
        if let Some(c) = v.chars().find(|c| {
            c.is_whitespace()
                || matches!(c, '(' | ')' | '&' | '|' | ',' | '!' | '"' | '*' | '?' | '=')
        }) {
            return Err(format!("{c:?} is not allowed in a tag value"));
        }
    }
    Ok(())
}
