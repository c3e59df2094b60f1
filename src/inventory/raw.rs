//! hosts.toml as written: serde structs with spans, before any resolution.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub defaults: Option<Spanned<RawSettings>>,
    #[serde(default)]
    pub host: Vec<Spanned<RawSettings>>,
    #[serde(default)]
    pub groups: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// The keys of `[defaults]` and of one `[[host]]` (the same set, so an operator can move a
/// setting between them; `name`/`address` only make sense in a host, `ssh_config` only in
/// the defaults, which [`super::resolve`] checks with a clear message).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub transport: Option<Spanned<String>>,
    /// A string or a list of strings.
    pub identity_file: Option<Spanned<toml::Value>>,
    /// A string or a list of strings.
    pub identity_files: Option<Spanned<toml::Value>>,
    pub identities_only: Option<bool>,
    /// A string or a list of strings.
    pub known_hosts: Option<Spanned<toml::Value>>,
    pub identity_agent: Option<Spanned<String>>,
    /// `jump` (or `proxy_jump`): ProxyJump's `[user@]host[:port]` hops, comma-separated, or
    /// `none`.
    #[serde(alias = "jump")]
    pub proxy_jump: Option<Spanned<String>>,
    /// Seconds (integer) or a duration string like "1500ms", "10s".
    pub connect_timeout: Option<Spanned<toml::Value>>,
    pub agent_dir: Option<Spanned<String>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub ssh_config: Option<Spanned<String>>,
}
