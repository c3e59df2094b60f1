//! `~/.ssh/config` resolved exactly as OpenSSH 9.2 (`ssh -G NAME`) resolves it, for the
//! keywords crew uses. The reference is `OpenSSH_9.2p1 Debian-2+deb12u10`, which backports
//! 10.3's ProxyJump/ProxyCommand rules; tests/ssh_config_diff.rs holds crew to the installed
//! `ssh -G`. Newer OpenSSH differs in what crew does not follow: `Match tagged`,
//! `localnetwork`, `version`, `sessiontype`, `command` (noted, not evaluated), tokens in
//! `User` and `Include` (10.x), and the default KexAlgorithms.
//!
//! Files are read once ([`SshFile::load`]): every line is split and checked as
//! `readconf.c` does (a line `ssh` refuses is a load error naming `file:line:col`), and
//! `Include`s are expanded (relative to `~/.ssh` in a user config, `/etc/ssh` in the system
//! one; globbed; at most 16 deep). [`SshFile::query`] then walks the lines for one name:
//! `Host` (patterns with `!`, case-sensitive) and `Match` (`all`, `host`, `originalhost`,
//! `user`, `localuser`, `canonical`, `final`; `exec` and newer criteria are not run but noted)
//! switch blocks on and off, the first value of a setting wins, `HostName` takes `%h`, and a
//! second pass runs when any `Match final` exists or `CanonicalizeHostname` is on — as `ssh`
//! does. What crew cannot know (DNS for canonicalisation, `exec` results) is noted per host
//! in [`SshParams::notes`] rather than guessed.
//!
//! Homes: `~` in file names and `%d` are the password database's home of the current user,
//! `~` in `Include` is `$HOME` (OpenSSH's `tilde_expand` vs glob's `GLOB_TILDE`). A config
//! named explicitly that lives in another home's `.ssh` directory (`<dir>/.ssh/config`,
//! `<dir>` not `$HOME`) is read as that home's owner would: `<dir>` is its home for both.

mod eval;
mod expand;
mod jump;
mod kex;
mod lex;
mod parse;
mod pattern;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::model::StrictHostKeyChecking;
pub use kex::DEFAULT_KEX;

/// The system-wide client configuration, read after the user's unless a config is named.
pub const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";

/// Who resolves: the homes, user and machine that `~`, `%d`, `%u`, `%i`, `%l`, `%L`,
/// `Match localuser` and the default user stand for.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// `~` in file names and `%d`: the user's home in the password database.
    pub home: PathBuf,
    /// `~` in `Include` (and relative includes' `~/.ssh`): `$HOME`.
    pub include_home: PathBuf,
    /// `%u`, `Match localuser`, and `User` when none is set.
    pub local_user: String,
    /// `%i`.
    pub uid: u32,
    /// `%l` (and `%L`, up to the first dot): this machine's host name.
    pub local_host: String,
}

impl Env {
    /// The current user and machine, as `ssh` sees them.
    pub fn system() -> Env {
        let uid = nix::unistd::getuid();
        let pw = nix::unistd::User::from_uid(uid).ok().flatten();
        let env_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let pw_home = pw.as_ref().map(|p| p.dir.clone());
        let home = pw_home
            .clone()
            .or_else(|| env_home.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        Env {
            include_home: env_home.or(pw_home).unwrap_or_else(|| home.clone()),
            home,
            local_user: pw.map(|p| p.name).unwrap_or_else(crate::paths::whoami),
            uid: uid.as_raw(),
            local_host: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
        }
    }

    /// The environment for a config at `path`: [`Env::system`], except that a config in
    /// another home's `.ssh` directory takes that home for `~` (see the module docs).
    pub fn for_config(path: &Path) -> Env {
        let mut env = Env::system();
        let dir = path
            .parent()
            .filter(|d| d.file_name().is_some_and(|n| n == ".ssh"));
        if let Some(owner_home) = dir.and_then(Path::parent) {
            let is_home = std::env::var_os("HOME").is_some_and(|h| Path::new(&h) == owner_home);
            if !is_home && !owner_home.as_os_str().is_empty() {
                env.home = owner_home.to_path_buf();
                env.include_home = owner_home.to_path_buf();
            }
        }
        env
    }
}

/// Options given as on `ssh`'s command line, set before the files are read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preset {
    /// `-l USER`.
    pub user: Option<String>,
    /// `-p PORT`.
    pub port: Option<u16>,
    /// `-J …` given: the files' `ProxyJump` and `ProxyCommand` are ignored.
    pub jumped: bool,
}

/// One hop of a `ProxyJump` value: `[user@]host[:port]` (or an `ssh://` URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// The hops of a `ProxyJump` value (`a,u@b:2222,c`), first to last, as OpenSSH reads them.
/// `None` for `none`; `Err` naming the hop that does not parse.
pub fn parse_hops(value: &str) -> Result<Option<Vec<Hop>>, String> {
    jump::hops(value)
}

/// `IdentityAgent` as `ssh` applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityAgent {
    /// `SSH_AUTH_SOCK`: the agent of the environment.
    Environment,
    /// `none`, or `$VAR` naming an unset variable: no agent.
    Disabled,
    /// A socket path (`~`, `%` tokens and `${VAR}` expanded; `$VAR` looked up).
    Socket(PathBuf),
}

impl IdentityAgent {
    /// The socket path, when one is named.
    pub fn socket(self) -> Option<PathBuf> {
        match self {
            IdentityAgent::Socket(p) => Some(p),
            _ => None,
        }
    }
}

/// What ssh_config says for one host name, resolved as `ssh -G` resolves it. `None` (or
/// empty) means the configuration does not set it: the caller's default applies.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SshParams {
    /// The host `ssh` connects to: `HostName` with `%h` expanded (else the name),
    /// lowercased unless an address, numeric addresses in canonical form. Always `Some` from
    /// [`SshFile::query`].
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Every `IdentityFile` that applies, in order, `~`, `%` tokens and `${VAR}` expanded;
    /// `none` left out.
    pub identity_files: Vec<PathBuf>,
    /// Every `CertificateFile` that applies, expanded like `identity_files`.
    pub certificate_files: Vec<PathBuf>,
    /// `UserKnownHostsFile`, expanded; `Some(vec![])` for `none`.
    pub known_hosts: Option<Vec<PathBuf>>,
    /// `GlobalKnownHostsFile` as written (OpenSSH 9.2 does not expand it); `Some(vec![])`
    /// for `none`.
    pub global_known_hosts: Option<Vec<PathBuf>>,
    pub identity_agent: Option<IdentityAgent>,
    /// `ProxyJump` as `ssh -G` prints it (`[hops,][user@]host[:port]`); `None` when unset or
    /// `none`.
    pub proxy_jump: Option<String>,
    /// `ProxyCommand` as written (tokens are expanded when connecting); `None` when unset,
    /// `none`, or when a `ProxyJump` came first.
    pub proxy_command: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<u32>,
    pub identities_only: Option<bool>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `KexAlgorithms`, resolved (`+`, `-`, `^` applied to OpenSSH's default list, see
    /// [`kex::DEFAULT_KEX`]); `None` when unset (crew then uses its own order).
    pub kex: Option<Vec<String>>,
    /// What crew could not resolve as `ssh` would for this host (a `Match exec`, a DNS
    /// lookup), or why `ssh` itself would refuse it, each naming the config line.
    pub notes: Vec<String>,
}

/// A parsed configuration (user file, then the system file when it is read) and who
/// resolves against it.
pub struct SshFile {
    files: Vec<parse::Parsed>,
    env: Env,
    /// The home `~` stands for.
    pub home: Option<PathBuf>,
}

impl SshFile {
    /// Read one config file as `ssh -F FILE` does (no system config), for the current user
    /// (see [`Env::for_config`]).
    pub fn load(path: &Path) -> Result<SshFile, String> {
        SshFile::load_with(path, Env::for_config(path))
    }

    /// [`SshFile::load`] for an explicit environment.
    pub fn load_with(path: &Path, env: Env) -> Result<SshFile, String> {
        let text = read(path).map_err(|e| format!("cannot open: {e}"))?;
        let parsed = parse::Parser::new(&env, true).parse(path, &text)?;
        Ok(SshFile::new(vec![parsed], env))
    }

    /// What `ssh NAME` reads without `-F`: `user` (when it exists) then the system config
    /// (when it exists). `Err`: the file at fault and why.
    pub fn load_default(user: Option<&Path>) -> Result<SshFile, (PathBuf, String)> {
        let env = Env::system();
        let mut files = Vec::new();
        for (path, user_conf) in [(user, true), (Some(Path::new(SYSTEM_CONFIG)), false)] {
            let Some(path) = path else { continue };
            let text = match read(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err((path.to_path_buf(), format!("cannot open: {e}"))),
            };
            let parsed = parse::Parser::new(&env, user_conf)
                .parse(path, &text)
                .map_err(|m| (path.to_path_buf(), m))?;
            files.push(parsed);
        }
        Ok(SshFile::new(files, env))
    }

    fn new(files: Vec<parse::Parsed>, env: Env) -> SshFile {
        SshFile {
            home: Some(env.home.clone()),
            files,
            env,
        }
    }

    /// Lines crew skipped that `ssh` would refuse (unknown keywords), `file:line: …`.
    pub fn warnings(&self) -> Vec<String> {
        self.files.iter().flat_map(|f| f.warnings.clone()).collect()
    }

    /// The settings that apply to `name`, as `ssh -G name` resolves them.
    pub fn query(&self, name: &str) -> SshParams {
        eval::resolve(&self.files, &self.env, name)
    }

    /// The settings for `name` as `ssh -G` resolves them with command-line options
    /// (`-l USER -p PORT [-J …]`): how OpenSSH resolves each hop of a `ProxyJump`.
    pub fn query_preset(&self, name: &str, preset: &Preset) -> SshParams {
        eval::resolve_preset(&self.files, &self.env, name, preset)
    }

    /// The concrete names of `Host` lines, in file order, once each: patterns without
    /// wildcards (`*`, `?`) that are not negated. The inventory of an operator with no
    /// hosts.toml.
    pub fn concrete_hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            parse::concrete_hosts(&f.items, &mut out);
        }
        out
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

    /// OpenSSH's defaults: `~/.ssh/known_hosts`, `~/.ssh/known_hosts2`, then the global
    /// `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
    pub fn standard_known_hosts(&self) -> Vec<PathBuf> {
        self.known_hosts(&SshParams::default())
    }

    /// The known_hosts files `ssh` checks for a host: its user files (UserKnownHostsFile or
    /// the defaults), then its global ones (GlobalKnownHostsFile or the defaults).
    pub fn known_hosts(&self, p: &SshParams) -> Vec<PathBuf> {
        let user = p.known_hosts.clone().unwrap_or_else(|| match &self.home {
            Some(h) => vec![h.join(".ssh/known_hosts"), h.join(".ssh/known_hosts2")],
            None => Vec::new(),
        });
        let global = p.global_known_hosts.clone().unwrap_or_else(|| {
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ]
        });
        user.into_iter().chain(global).collect()
    }

    /// No ssh_config at all: only the standard files of the current user.
    pub fn empty() -> SshFile {
        SshFile::new(Vec::new(), Env::system())
    }
}

/// A config file's text (a directory reads as empty, as `fopen` + `getline` give).
fn read(path: &Path) -> std::io::Result<String> {
    if std::fs::metadata(path)?.is_dir() {
        return Ok(String::new());
    }
    let bytes = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
