//! Resolving one host name the way `ssh -G NAME` does (OpenSSH 9.2 `ssh.c` `main` and
//! `readconf.c`): a first pass over every file with the name as given, `HostName` expanded
//! and lowercased, numeric addresses canonicalised, and a second (`final`) pass when any
//! `Match final` exists or `CanonicalizeHostname` is on, with `Host` lines then matching the
//! final host name. The first value set wins; `IdentityFile`/`CertificateFile` accumulate.

use std::path::PathBuf;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::expand::{
    canonical_addr, is_addr, is_addr_fast, percent_dollar_expand, percent_expand, tilde_expand,
};
use super::jump::Jump;
use super::kex;
use super::parse::{At, Canon, Crit, Criterion, Item, Parsed, Setting};
use super::pattern::{match_hostname, match_pattern, match_pattern_list};
use super::{Env, IdentityAgent, SshParams, StrictHostKeyChecking};

/// `SSH_MAX_IDENTITY_FILES`, `SSH_MAX_CERTIFICATE_FILES`.
const MAX_FILES: usize = 100;

/// The options as the passes fill them (`None`/empty: not set yet).
#[derive(Default)]
struct Opts {
    hostname: Option<String>,
    user: Option<String>,
    port: Option<u16>,
    identity_files: Vec<(String, bool)>,
    certificate_files: Vec<(String, bool)>,
    identities_only: Option<bool>,
    identity_agent: Option<String>,
    user_known_hosts: Vec<String>,
    global_known_hosts: Vec<String>,
    strict: Option<StrictHostKeyChecking>,
    jump: Option<Jump>,
    proxy_command: Option<String>,
    connect_timeout: Option<u32>,
    server_alive_interval: Option<u32>,
    server_alive_count_max: Option<u32>,
    kex: Option<String>,
    canon: Option<Canon>,
    max_dots: Option<u32>,
    fallback_local: Option<bool>,
    domains: Vec<String>,
    cnames: Option<bool>,
    host_key_alias: Option<String>,
}

/// One resolution in progress.
struct State<'a> {
    env: &'a Env,
    /// The name as given (`%n`, `originalhost`).
    original: &'a str,
    /// What `Host` lines match: the name in the first pass, the final host in the second.
    host: String,
    final_pass: bool,
    opts: Opts,
    notes: Vec<String>,
}

impl State<'_> {
    fn note(&mut self, n: String) {
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    fn run(&mut self, items: &[Item], active: &mut bool) {
        for item in items {
            match item {
                Item::Host(pats) => {
                    *active = false;
                    for (negated, p) in pats {
                        if match_pattern(&self.host, p) {
                            if *negated {
                                *active = false;
                                break;
                            }
                            *active = true;
                        }
                    }
                }
                Item::Match(crit, at) => *active = self.matches(crit, at),
                Item::Include(files) => {
                    // Nothing in a file included from an inactive block can apply (OpenSSH
                    // reads it with SSHCONF_NEVERMATCH); an included file's Host/Match lines
                    // do not change the including file's state.
                    let outer = *active;
                    for f in files {
                        if outer {
                            self.run(f, active);
                        }
                        *active = outer;
                    }
                }
                Item::Set(s, at) => {
                    if *active {
                        self.apply(s, at);
                    }
                }
            }
        }
    }

    /// `match_cfg_line`. A criterion crew cannot evaluate (`exec`, newer ones) leaves the
    /// block off with a note, unless another criterion already decides it is off.
    fn matches(&mut self, crit: &[Criterion], at: &At) -> bool {
        let host = if self.final_pass {
            self.opts
                .hostname
                .clone()
                .unwrap_or_else(|| self.host.clone())
        } else if let Some(h) = self.opts.hostname.clone() {
            match percent_expand(&h, &[('h', self.original)]) {
                Ok(h) => h,
                Err(e) => {
                    self.note(format!("{at}: ssh refuses this host: HostName {h}: {e}"));
                    h
                }
            }
        } else {
            self.original.to_string()
        };
        let ruser = self
            .opts
            .user
            .clone()
            .unwrap_or_else(|| self.env.local_user.clone());
        let mut result = true;
        let mut unknown: Option<String> = None;
        for c in crit {
            let r = match &c.kind {
                Crit::All => {
                    if result {
                        result = !c.negate;
                    }
                    break;
                }
                Crit::Canonical | Crit::Final => self.final_pass,
                Crit::Host(p) => match_hostname(&host, p) == 1,
                Crit::OriginalHost(p) => match_hostname(self.original, p) == 1,
                Crit::User(p) => match_pattern_list(&ruser, p, false) == 1,
                Crit::LocalUser(p) => match_pattern_list(&self.env.local_user, p, false) == 1,
                Crit::Exec(cmd) => {
                    // ssh skips the command once an earlier criterion failed.
                    if result {
                        unknown.get_or_insert_with(|| {
                            format!(
                                "`Match {}exec \"{cmd}\"`: crew does not run commands to resolve \
                                 hosts",
                                if c.negate { "!" } else { "" }
                            )
                        });
                    }
                    continue;
                }
                Crit::Newer(name, arg) => {
                    unknown.get_or_insert_with(|| {
                        format!(
                            "`Match {}{name} {arg}`: not evaluated by crew (newer OpenSSH)",
                            if c.negate { "!" } else { "" }
                        )
                    });
                    continue;
                }
            };
            if r == c.negate {
                result = false;
            }
        }
        match unknown {
            Some(what) if result => {
                self.note(format!(
                    "{at}: {what}; that Match block was treated as not matching"
                ));
                false
            }
            _ => result,
        }
    }

    fn apply(&mut self, s: &Setting, at: &At) {
        let o = &mut self.opts;
        fn first<T: Clone>(slot: &mut Option<T>, v: &T) {
            if slot.is_none() {
                *slot = Some(v.clone());
            }
        }
        match s {
            Setting::HostName(v) => first(&mut o.hostname, v),
            Setting::User(v) => first(&mut o.user, v),
            Setting::HostKeyAlias(v) => first(&mut o.host_key_alias, v),
            Setting::Port(v) => first(&mut o.port, v),
            Setting::IdentityFile(f, user_conf) | Setting::CertificateFile(f, user_conf) => {
                let (list, what) = match s {
                    Setting::IdentityFile(..) => (&mut o.identity_files, "identity"),
                    _ => (&mut o.certificate_files, "certificate"),
                };
                let entry = (f.clone(), *user_conf);
                if list.contains(&entry) {
                    return;
                }
                if list.len() >= MAX_FILES {
                    let n = format!(
                        "{at}: ssh refuses this host: too many {what} files (max {MAX_FILES})"
                    );
                    self.note(n);
                    return;
                }
                list.push(entry);
            }
            Setting::IdentitiesOnly(v) => first(&mut o.identities_only, v),
            Setting::IdentityAgent(v) => first(&mut o.identity_agent, v),
            Setting::UserKnownHosts(v) => {
                if o.user_known_hosts.is_empty() {
                    o.user_known_hosts = v.clone();
                }
            }
            Setting::GlobalKnownHosts(v) => {
                if o.global_known_hosts.is_empty() {
                    o.global_known_hosts = v.clone();
                }
            }
            Setting::StrictHostKeyChecking(v) => first(&mut o.strict, v),
            // OpenSSH 10.3's rules (Debian backports them to 9.2p1-2+deb12u10): a jump sets
            // ProxyCommand to `none` too, so each blocks the other; `ProxyJump none` only
            // blocks later jumps.
            Setting::ProxyJump(Jump::None) => first(&mut o.jump, &Jump::None),
            Setting::ProxyJump(j) => {
                if o.proxy_command.is_none() && o.jump.is_none() {
                    o.proxy_command = Some("none".into());
                    o.jump = Some(j.clone());
                }
            }
            Setting::ProxyCommand(v) => first(&mut o.proxy_command, v),
            Setting::ConnectTimeout(Some(v)) => first(&mut o.connect_timeout, v),
            Setting::ServerAliveInterval(Some(v)) => first(&mut o.server_alive_interval, v),
            Setting::ConnectTimeout(None) | Setting::ServerAliveInterval(None) => {}
            Setting::ServerAliveCountMax(v) => first(&mut o.server_alive_count_max, v),
            Setting::KexAlgorithms(v) => first(&mut o.kex, v),
            Setting::CanonicalizeHostname(v) => first(&mut o.canon, v),
            Setting::CanonicalizeMaxDots(v) => first(&mut o.max_dots, v),
            Setting::CanonicalizeFallbackLocal(v) => first(&mut o.fallback_local, v),
            Setting::CanonicalDomains(v) => {
                if o.domains.is_empty() {
                    o.domains = v.clone();
                }
            }
            Setting::PermittedCnames(v) => first(&mut o.cnames, v),
        }
    }

    /// Proxied (`ProxyCommand`/`ProxyJump`) hosts are not canonicalised unless `always`.
    fn direct(&self) -> bool {
        self.opts
            .proxy_command
            .as_deref()
            .is_none_or(|p| p.eq_ignore_ascii_case("none"))
            && self.opts.jump.is_none()
    }

    /// `resolve_canonicalize` without DNS: numeric addresses get their canonical text; where
    /// ssh would ask DNS, a note. Returns whether the name was resolved (an address).
    fn canonicalize(&mut self) -> bool {
        if let Some(c) = canonical_addr(&self.host) {
            // Replaced only when it differs other than in case.
            if !c.eq_ignore_ascii_case(&self.host) {
                self.host = c;
            }
            return true;
        }
        let canon = self.opts.canon.unwrap_or(Canon::No);
        if is_addr_fast(&self.host) || canon == Canon::No {
            return false;
        }
        if !self.direct() && canon != Canon::Always {
            return false;
        }
        let dns = |what: &str| {
            format!(
                "CanonicalizeHostname: ssh would look {what} up in DNS (crew does not); crew used \
                 the name as it is"
            )
        };
        if self.host.ends_with('.') {
            let n = dns(&format!("\"{}\"", self.host));
            self.note(n);
            return false;
        }
        let dots = self.host.bytes().filter(|b| *b == b'.').count();
        if dots > self.opts.max_dots.unwrap_or(1) as usize {
            return false;
        }
        let domains: Vec<String> = self
            .opts
            .domains
            .iter()
            .take_while(|d| !d.eq_ignore_ascii_case("none"))
            .cloned()
            .collect();
        if !domains.is_empty() {
            let n = dns(&format!("\"{}\" in {}", self.host, domains.join(" ")));
            self.note(n);
            return false;
        }
        if !self.opts.fallback_local.unwrap_or(true) {
            let n = format!(
                "ssh refuses this host: CanonicalizeFallbackLocal no and no CanonicalDomains \
                 to resolve \"{}\"",
                self.host
            );
            self.note(n);
        }
        false
    }
}

/// The SHA-1 of `%l%h%p%r` in hex (`%C`).
fn connection_hash(local: &str, host: &str, port: &str, user: &str) -> String {
    let mut h = Sha1::new();
    for part in [local, host, port, user] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Resolve `name` against the configuration files in order (user, then system).
pub(super) fn resolve(files: &[Parsed], env: &Env, name: &str) -> SshParams {
    resolve_preset(files, env, name, &super::Preset::default())
}

/// [`resolve`] with options given as on `ssh`'s command line (`-l`, `-p`, `-J`): they are
/// set before any file is read, so they win over the files (first value wins) and `Match
/// user` sees the user.
pub(super) fn resolve_preset(
    files: &[Parsed],
    env: &Env,
    name: &str,
    preset: &super::Preset,
) -> SshParams {
    let mut opts = Opts {
        user: preset.user.clone(),
        port: preset.port,
        ..Opts::default()
    };
    if preset.jumped {
        // `-J` given: later ProxyJump and ProxyCommand lines are ignored.
        opts.jump = Some(Jump::None);
        opts.proxy_command = Some("none".into());
    }
    let mut st = State {
        env,
        original: name,
        host: name.to_string(),
        final_pass: false,
        opts,
        notes: Vec::new(),
    };
    for f in files {
        st.run(&f.items, &mut true);
    }
    // fill_default_options_for_canonicalization: fixed before the final pass.
    let canon = *st.opts.canon.get_or_insert(Canon::No);
    st.opts.max_dots.get_or_insert(1);
    st.opts.fallback_local.get_or_insert(true);

    let mut host = name.to_string();
    if let Some(hn) = st.opts.hostname.clone() {
        host = match percent_expand(&hn, &[('h', name)]) {
            Ok(h) => h,
            Err(e) => {
                st.note(format!("ssh refuses this host: HostName {hn}: {e}"));
                hn
            }
        };
        st.opts.hostname = Some(host.clone());
    }
    let was_addr = is_addr(&host);
    if !was_addr {
        host.make_ascii_lowercase();
    }
    st.host = host;
    let mut resolved = false;
    if canon != Canon::No || was_addr {
        resolved = st.canonicalize();
    }
    if !resolved && st.opts.cnames == Some(true) && (st.direct() || canon == Canon::Always) {
        let n = format!(
            "CanonicalizePermittedCNAMEs: ssh would look \"{}\" up in DNS to follow CNAMEs \
             (crew does not); crew used the name as it is",
            st.host
        );
        st.note(n);
    }
    if files.iter().any(|f| f.has_final) || canon != Canon::No {
        st.opts.hostname = Some(st.host.clone());
        st.final_pass = true;
        for f in files {
            st.run(&f.items, &mut true);
        }
    }
    finish(st)
}

/// `fill_default_options` and the expansions `ssh` makes before `-G` prints (and, for
/// IdentityFile and CertificateFile, when it loads them).
fn finish(mut st: State<'_>) -> SshParams {
    let env = st.env;
    let o = std::mem::take(&mut st.opts);
    let host = st.host.clone();
    let jump = match o.jump {
        Some(Jump::None) | None => None,
        Some(j) => Some(j),
    };
    let proxy_command = o.proxy_command.filter(|p| !p.eq_ignore_ascii_case("none"));
    let user = o.user.clone().unwrap_or_else(|| env.local_user.clone());
    let port = o.port.unwrap_or(22);
    if let Some(Jump::Via {
        user: ju,
        host: jh,
        port: jp,
        ..
    }) = &jump
    {
        let jport = if *jp <= 0 { 22 } else { *jp };
        if *jh == host && i32::from(port) == jport && ju.as_deref().unwrap_or(&user) == user {
            st.note(format!("ssh refuses this host: jumphost loop via {jh}"));
        }
    }

    let port_s = port.to_string();
    let uid_s = env.uid.to_string();
    let short = env.local_host.split('.').next().unwrap_or("").to_string();
    let alias = o
        .host_key_alias
        .as_ref()
        .map_or_else(|| st.original.to_string(), |a| a.to_ascii_lowercase());
    let hash = connection_hash(&env.local_host, &host, &port_s, &user);
    let home = env.home.to_string_lossy().into_owned();
    let keys: [(char, &str); 11] = [
        ('C', &hash),
        ('L', &short),
        ('i', &uid_s),
        ('k', &alias),
        ('l', &env.local_host),
        ('n', st.original),
        ('p', &port_s),
        ('d', &home),
        ('h', &host),
        ('r', &user),
        ('u', &env.local_user),
    ];
    let mut notes = std::mem::take(&mut st.notes);
    let mut path = |what: &str, raw: &str| -> Option<String> {
        let r = tilde_expand(raw, &env.home).and_then(|t| percent_dollar_expand(&t, &keys));
        match r {
            Ok(p) => Some(p),
            Err(e) => {
                // Key files are expanded when ssh loads them (after `ssh -G` prints), the
                // others before it connects at all.
                let n = if matches!(what, "IdentityFile" | "CertificateFile") {
                    format!("ssh cannot use {what} {raw} for this host: {e}")
                } else {
                    format!("ssh refuses this host: {what} {raw}: {e}")
                };
                if !notes.contains(&n) {
                    notes.push(n);
                }
                None
            }
        }
    };
    let files = |list: &[(String, bool)],
                 what: &str,
                 path: &mut dyn FnMut(&str, &str) -> Option<String>| {
        list.iter()
            .filter(|(f, _)| !f.eq_ignore_ascii_case("none"))
            .filter_map(|(f, _)| path(what, f).map(PathBuf::from))
            .collect::<Vec<_>>()
    };
    let identity_files = files(&o.identity_files, "IdentityFile", &mut path);
    let certificate_files = files(&o.certificate_files, "CertificateFile", &mut path);
    let known_hosts = if o.user_known_hosts.is_empty() {
        None
    } else if o.user_known_hosts[0].eq_ignore_ascii_case("none") {
        Some(Vec::new())
    } else {
        Some(
            o.user_known_hosts
                .iter()
                .filter_map(|f| path("UserKnownHostsFile", f).map(PathBuf::from))
                .collect(),
        )
    };
    let global_known_hosts = if o.global_known_hosts.is_empty() {
        None
    } else if o.global_known_hosts[0].eq_ignore_ascii_case("none") {
        Some(Vec::new())
    } else {
        Some(o.global_known_hosts.iter().map(PathBuf::from).collect())
    };
    let identity_agent = o.identity_agent.as_ref().and_then(|a| {
        let v = path("IdentityAgent", a)?;
        Some(if v == "none" {
            IdentityAgent::Disabled
        } else if v == "SSH_AUTH_SOCK" {
            IdentityAgent::Environment
        } else if let Some(var) = v.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            match std::env::var_os(var) {
                Some(p) => IdentityAgent::Socket(PathBuf::from(p)),
                None => IdentityAgent::Disabled,
            }
        } else {
            IdentityAgent::Socket(PathBuf::from(v))
        })
    });
    SshParams {
        host_name: Some(host),
        user: o.user,
        port: o.port,
        identity_files,
        certificate_files,
        known_hosts,
        global_known_hosts,
        identity_agent,
        proxy_jump: jump.as_ref().and_then(Jump::display),
        proxy_command,
        connect_timeout: o.connect_timeout.map(|s| Duration::from_secs(u64::from(s))),
        server_alive_interval: o
            .server_alive_interval
            .map(|s| Duration::from_secs(u64::from(s))),
        server_alive_count_max: o.server_alive_count_max,
        identities_only: o.identities_only,
        strict_host_key_checking: o.strict,
        kex: o.kex.as_deref().map(kex::assemble),
        notes,
    }
}
