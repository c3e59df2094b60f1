//! From the raw file to resolved hosts: nodesets, defaults, ssh_config, groups.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawFile, RawSettings};
use super::settings::{local_path, Settings};
use super::ssh_config::{IdentityAgent, SshFile};
use super::{InventoryError, Source};
use crate::model::{Host, Transport};

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_AGENT_DIR: &str = "~/.cache/crew";

/// Hosts, groups, and the ssh config named in `[defaults]`.
type Resolved = (Vec<Host>, BTreeMap<String, String>, Option<PathBuf>);

pub(crate) fn resolve(raw: RawFile, src: &Source<'_>) -> Result<Resolved, InventoryError> {
    let base = src.path.parent().unwrap_or(Path::new("")).to_path_buf();
    let defaults_raw = raw.defaults.map(Spanned::into_inner).unwrap_or_default();
    for (key, v) in [
        ("name", &defaults_raw.name),
        ("address", &defaults_raw.address),
    ] {
        if let Some(v) = v {
            return Err(src.error(
                v.span().start,
                format!("`{key}` belongs in a [[host]] entry, not in [defaults]"),
            ));
        }
    }
    let defaults = Settings::from_raw(&defaults_raw, src, &base)?;
    let mut ssh = SshSource::new(defaults_raw.ssh_config.as_ref(), &base);

    let mut hosts = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for entry in &raw.host {
        let table_at = entry.span().start;
        let entry = entry.get_ref();
        expand_entry(
            entry, table_at, src, &base, &defaults, &mut ssh, &mut seen, &mut hosts,
        )?;
    }
    if hosts.iter().any(|h| h.proxy_jump.is_some()) {
        let file = ssh.get(src)?;
        super::hops::fill(&mut hosts, file).map_err(|message| InventoryError::SshConfig {
            path: src.path.to_path_buf(),
            message,
        })?;
    }
    let groups = check_groups(&raw.groups, src)?;
    Ok((hosts, groups, ssh.explicit.map(|(p, _)| p)))
}

#[allow(clippy::too_many_arguments)]
fn expand_entry(
    entry: &RawSettings,
    table_at: usize,
    src: &Source<'_>,
    base: &Path,
    defaults: &Settings,
    ssh: &mut SshSource,
    seen: &mut HashMap<String, usize>,
    hosts: &mut Vec<Host>,
) -> Result<(), InventoryError> {
    let Some(name) = &entry.name else {
        return Err(src.error(table_at, "expected `name` in this [[host]] entry"));
    };
    if let Some(s) = &entry.ssh_config {
        return Err(src.error(
            s.span().start,
            "`ssh_config` belongs in [defaults], not in a [[host]] entry",
        ));
    }
    let names = nodeset(name, src)?;
    let name_at = src.string_body(name.span().start);
    for n in &names {
        // Host names name files and dirs in the run store: at most one file name's length.
        if n.len() > MAX_NAME {
            let head: String = n.chars().take(32).collect();
            return Err(src.error(
                name_at,
                format!(
                    "host name {head:?}… is {} bytes long; at most {MAX_NAME} are allowed",
                    n.len()
                ),
            ));
        }
        if let Some(c) = n
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(src.error(
                name_at,
                format!("host name {n:?}: `{c}` is not allowed (letters, digits, `-`, `_`, `.`)"),
            ));
        }
    }
    let addresses = match &entry.address {
        Some(a) => {
            let addrs = nodeset(a, src)?;
            if addrs.len() != names.len() {
                return Err(src.error(
                    src.string_body(a.span().start),
                    format!(
                        "`address` expands to {} address(es) but `name` to {} name(s); \
                         they must pair up one to one",
                        addrs.len(),
                        names.len()
                    ),
                ));
            }
            addrs.into_iter().map(Some).collect()
        }
        None => vec![None; names.len()],
    };
    let settings = Settings::from_raw(entry, src, base)?.over(defaults);
    for (n, addr) in names.into_iter().zip(addresses) {
        if let Some(first) = seen.get(&n) {
            let (line, col) = src.line_col(*first);
            return Err(src.error(
                name_at,
                format!("duplicate host `{n}` (first defined at line {line}, column {col})"),
            ));
        }
        seen.insert(n.clone(), name_at);
        hosts.push(build(&n, addr, &settings, ssh, src)?);
    }
    Ok(())
}

/// Longest host name in bytes (a file name on Linux).
pub(crate) const MAX_NAME: usize = 255;

fn nodeset(v: &Spanned<String>, src: &Source<'_>) -> Result<Vec<String>, InventoryError> {
    crate::nodeset::expand(v.get_ref()).map_err(|e| {
        src.error(
            src.string_body(v.span().start) + e.pos,
            format!("bad nodeset {:?}: {}", v.get_ref(), e.message),
        )
    })
}

fn build(
    name: &str,
    address: Option<String>,
    s: &Settings,
    ssh: &mut SshSource,
    src: &Source<'_>,
) -> Result<Host, InventoryError> {
    let connect_timeout_ms = |d: Option<std::time::Duration>| {
        d.map_or(DEFAULT_CONNECT_TIMEOUT_MS, |d| d.as_millis().max(1) as u64)
    };
    let agent_dir = s
        .agent_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_AGENT_DIR.to_string());
    if s.transport == Some(Transport::Local) {
        let mut h = Host::local(name);
        h.tags = s.tags.clone();
        h.agent_dir = agent_dir;
        h.connect_timeout_ms = connect_timeout_ms(s.connect_timeout);
        return Ok(h);
    }
    let file = ssh.get(src)?;
    let p = file.query(name);
    Ok(from_ssh(name, address, s, file, p))
}

/// A host from its settings (`[[host]]` over `[defaults]`; empty for a name in no
/// inventory) over what the ssh config says for it (`p`), then the built-ins. Its `jumps`
/// are filled in later ([`super::hops`]), once every host is known.
pub(crate) fn from_ssh(
    name: &str,
    address: Option<String>,
    s: &Settings,
    file: &SshFile,
    mut p: super::ssh_config::SshParams,
) -> Host {
    let connect_timeout_ms = |d: Option<std::time::Duration>| {
        d.map_or(DEFAULT_CONNECT_TIMEOUT_MS, |d| d.as_millis().max(1) as u64)
    };
    let agent_dir = s
        .agent_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_AGENT_DIR.to_string());
    let mut identity_files = s.identity_files.clone().unwrap_or_default();
    for f in std::mem::take(&mut p.identity_files) {
        if !identity_files.contains(&f) {
            identity_files.push(f);
        }
    }
    if identity_files.is_empty() {
        identity_files = file.standard_identities();
    }
    let known_hosts = s
        .known_hosts
        .clone()
        .unwrap_or_else(|| file.known_hosts(&p));
    // `jump = "none"` in hosts.toml: straight to the host, whatever the ssh config says.
    let jump_none = s
        .proxy_jump
        .as_deref()
        .is_some_and(|j| j.trim().eq_ignore_ascii_case("none"));
    Host {
        name: name.to_string(),
        address: address.or(p.host_name).unwrap_or_else(|| name.to_string()),
        port: s.port.or(p.port).unwrap_or(22),
        user: s.user.clone().or(p.user),
        transport: Transport::Ssh,
        tags: s.tags.clone(),
        identity_files,
        identities_only: s.identities_only.or(p.identities_only).unwrap_or(false),
        known_hosts,
        identity_agent: s
            .identity_agent
            .clone()
            .or_else(|| p.identity_agent.and_then(IdentityAgent::socket)),
        // A hosts.toml jump replaces whatever proxy the ssh config names.
        proxy_command: p.proxy_command.filter(|_| s.proxy_jump.is_none()),
        proxy_jump: s.proxy_jump.clone().or(p.proxy_jump).filter(|_| !jump_none),
        jumps: Vec::new(),
        certificate_files: p.certificate_files,
        strict_host_key_checking: p.strict_host_key_checking,
        server_alive_interval_s: p
            .server_alive_interval
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        server_alive_count_max: p.server_alive_count_max.unwrap_or(3),
        ssh_config_notes: p.notes,
        // `ConnectTimeout 0` is ssh's "no timeout": crew keeps its own bound.
        connect_timeout_ms: connect_timeout_ms(
            s.connect_timeout
                .or(p.connect_timeout.filter(|d| !d.is_zero())),
        ),
        kex: p.kex,
        agent_dir,
    }
}

/// The ssh_config, parsed on first use (an all-local inventory never reads it).
struct SshSource {
    /// `[defaults] ssh_config`: resolved path and where it was written.
    explicit: Option<(PathBuf, usize)>,
    loaded: Option<SshFile>,
}

impl SshSource {
    fn new(setting: Option<&Spanned<String>>, base: &Path) -> SshSource {
        SshSource {
            explicit: setting.map(|s| (local_path(s.get_ref(), base), s.span().start)),
            loaded: None,
        }
    }

    fn get(&mut self, src: &Source<'_>) -> Result<&SshFile, InventoryError> {
        if self.loaded.is_none() {
            self.loaded = Some(self.load(src)?);
        }
        self.loaded
            .as_ref()
            .ok_or_else(|| InventoryError::SshConfig {
                path: PathBuf::new(),
                message: "ssh config not loaded".into(),
            })
    }

    fn load(&self, src: &Source<'_>) -> Result<SshFile, InventoryError> {
        if let Some((p, at)) = &self.explicit {
            return SshFile::load(p).map_err(|m| {
                src.error(*at, format!("cannot use ssh config {}: {m}", p.display()))
            });
        }
        default_ssh_file()
    }
}

/// The ssh config when hosts.toml names none: `$CREW_SSH_CONFIG`, else `~/.ssh/config`
/// (optional) then `/etc/ssh/ssh_config`, as for `ssh`.
pub(crate) fn default_ssh_file() -> Result<SshFile, InventoryError> {
    if let Some(path) = env_ssh_config() {
        return SshFile::load(&path).map_err(|message| InventoryError::SshConfig {
            path,
            message: format!("(from $CREW_SSH_CONFIG) {message}"),
        });
    }
    SshFile::load_default(Some(&user_ssh_config()))
        .map_err(|(path, message)| InventoryError::SshConfig { path, message })
}

/// `$CREW_SSH_CONFIG`, when set.
pub(crate) fn env_ssh_config() -> Option<PathBuf> {
    std::env::var_os("CREW_SSH_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// `~/.ssh/config`.
pub(crate) fn user_ssh_config() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("/"))
        .join(".ssh/config")
}

/// Check every group: a valid name, an expression that parses, known groups, no cycles.
fn check_groups(
    raw: &BTreeMap<Spanned<String>, Spanned<String>>,
    src: &Source<'_>,
) -> Result<BTreeMap<String, String>, InventoryError> {
    let mut groups = BTreeMap::new();
    for (k, v) in raw {
        if let Some(c) = k
            .get_ref()
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(src.error(
                k.span().start,
                format!("group name {:?}: `{c}` is not allowed", k.get_ref()),
            ));
        }
        groups.insert(k.get_ref().clone(), v.get_ref().clone());
    }
    for (k, v) in raw {
        let at = src.string_body(v.span().start);
        let fail = |e: crate::select::SelectError| {
            src.error(at + e.pos, format!("bad group expression: {}", e.message))
        };
        let expr = crate::select::parse(v.get_ref()).map_err(fail)?;
        expr.resolve_group_body(k.get_ref(), &groups)
            .map_err(fail)?;
    }
    Ok(groups)
}
