//! Reading ssh_config files into [`Item`]s once, with every check OpenSSH 9.2 makes on a line
//! whatever host it is resolving (`readconf.c` `process_config_line_depth`): bad lines are
//! load errors naming `file:line:col`, as `ssh` refuses the whole file for them. `Include`d
//! files are read here too (globbed, sorted, permission-checked, at most 16 deep).

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::expand::{a2port, convtime, dollar_expand, strtonum};
use super::jump::{parse_jump, Jump};
use super::lex::{argv_split, rest, split_line, strdelim, Cursor, LineError};
use super::{kex, Env, StrictHostKeyChecking};

/// `READCONF_MAX_DEPTH`.
const MAX_DEPTH: usize = 16;

/// Where a line is, for notes: `file:line`.
#[derive(Debug, Clone)]
pub(super) struct At {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One line that matters for resolution, in file order.
#[derive(Debug)]
pub(super) enum Item {
    /// `Host` patterns, each with its `!`.
    Host(Vec<(bool, String)>),
    Match(Vec<Criterion>, At),
    /// The files an `Include` line names, each file's items.
    Include(Vec<Vec<Item>>),
    Set(Setting, At),
}

/// One `Match` criterion.
#[derive(Debug)]
pub(super) struct Criterion {
    pub negate: bool,
    pub kind: Crit,
}

#[derive(Debug)]
pub(super) enum Crit {
    All,
    Canonical,
    Final,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    Exec(String),
    /// A criterion of newer OpenSSH (`tagged`, `localnetwork`, `version`, `sessiontype`,
    /// `command`) crew does not evaluate.
    Newer(String, String),
}

/// `CanonicalizeHostname`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Canon {
    No,
    Yes,
    Always,
}

/// A setting crew resolves, its value checked.
#[derive(Debug)]
pub(super) enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    /// The name as written and whether it came from a user (not the system) config.
    IdentityFile(String, bool),
    CertificateFile(String, bool),
    IdentitiesOnly(bool),
    IdentityAgent(String),
    UserKnownHosts(Vec<String>),
    GlobalKnownHosts(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    ProxyJump(Jump),
    ProxyCommand(String),
    /// Seconds; `None` for `none`, which leaves the setting unset.
    ConnectTimeout(Option<u32>),
    ServerAliveInterval(Option<u32>),
    ServerAliveCountMax(u32),
    KexAlgorithms(String),
    CanonicalizeHostname(Canon),
    CanonicalizeMaxDots(u32),
    CanonicalizeFallbackLocal(bool),
    CanonicalDomains(Vec<String>),
    /// Whether `CanonicalizePermittedCNAMEs` names rules (not `none`).
    PermittedCnames(bool),
    HostKeyAlias(String),
}

/// Every keyword OpenSSH knows (9.2 through 10.x, with Debian's GSSAPI additions): crew
/// skips those it does not use silently, and warns about the others (`ssh` refuses them).
const KNOWN_KEYWORDS: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "afstokenpassing",
    "batchmode",
    "bindaddress",
    "bindinterface",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "casignaturealgorithms",
    "certificatefile",
    "challengeresponseauthentication",
    "channeltimeout",
    "checkhostip",
    "cipher",
    "ciphers",
    "clearallforwardings",
    "compression",
    "compressionlevel",
    "connectionattempts",
    "connecttimeout",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dsaauthentication",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fallbacktorsh",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "globalknownhostsfile",
    "globalknownhostsfile2",
    "gssapiauthentication",
    "gssapiclientidentity",
    "gssapidelegatecredentials",
    "gssapikexalgorithms",
    "gssapikeyexchange",
    "gssapirenewalforcesrekey",
    "gssapiserveridentity",
    "gssapitrustdns",
    "hashknownhosts",
    "host",
    "hostbasedacceptedalgorithms",
    "hostbasedauthentication",
    "hostbasedkeytypes",
    "hostkeyalgorithms",
    "hostkeyalias",
    "hostname",
    "identitiesonly",
    "identityagent",
    "identityfile",
    "identityfile2",
    "ignoreunknown",
    "include",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "keepalive",
    "kerberosauthentication",
    "kerberostgtpassing",
    "kexalgorithms",
    "knownhostscommand",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "match",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "pkcs11provider",
    "port",
    "preferredauthentications",
    "protocol",
    "proxycommand",
    "proxyjump",
    "proxyusefdpass",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "refuseconnection",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "revokedhostkeys",
    "rhostsauthentication",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "securitykeyprovider",
    "sendenv",
    "serveralivecountmax",
    "serveraliveinterval",
    "sessiontype",
    "setenv",
    "skeyauthentication",
    "smartcarddevice",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "stricthostkeychecking",
    "syslogfacility",
    "tag",
    "tcpkeepalive",
    "tisauthentication",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "useprivilegedport",
    "user",
    "userknownhostsfile",
    "userknownhostsfile2",
    "useroaming",
    "usersh",
    "verifyhostkeydns",
    "versionaddendum",
    "visualhostkey",
    "warnweakcrypto",
    "xauthlocation",
];

/// Everything read from one configuration (a file and what it includes).
pub(super) struct Parsed {
    pub items: Vec<Item>,
    /// Some `Match` line has `final`: OpenSSH then always makes a second pass.
    pub has_final: bool,
    /// Lines crew skipped that `ssh` would refuse (unknown keywords).
    pub warnings: Vec<String>,
}

/// Reads one configuration: a user config (`-F` or `~/.ssh/config`) or the system one.
pub(super) struct Parser<'a> {
    env: &'a Env,
    user_conf: bool,
    has_final: bool,
    warnings: Vec<String>,
}

/// A line's error: `file:line:col: message`.
fn err(file: &str, line: usize, raw: &str, byte: usize, msg: impl fmt::Display) -> String {
    let col = raw.get(..byte).map_or(1, |s| s.chars().count() + 1);
    format!("{file}:{line}:{col}: {msg}")
}

impl<'a> Parser<'a> {
    pub fn new(env: &'a Env, user_conf: bool) -> Parser<'a> {
        Parser {
            env,
            user_conf,
            has_final: false,
            warnings: Vec::new(),
        }
    }

    /// Parse the top file's text.
    pub fn parse(mut self, path: &Path, text: &str) -> Result<Parsed, String> {
        let items = self.file(path, text, 0)?;
        Ok(Parsed {
            items,
            has_final: self.has_final,
            warnings: self.warnings,
        })
    }

    fn file(&mut self, path: &Path, text: &str, depth: usize) -> Result<Vec<Item>, String> {
        let file: Arc<str> = Arc::from(path.display().to_string());
        let mut items = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            if let Some(item) = self.line(&file, i + 1, raw, depth)? {
                items.push(item);
            }
        }
        Ok(items)
    }

    fn line(
        &mut self,
        file: &Arc<str>,
        n: usize,
        raw: &str,
        depth: usize,
    ) -> Result<Option<Item>, String> {
        let e = |byte: usize, msg: String| err(file, n, raw, byte, msg);
        let l = match split_line(raw) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            Err(LineError::NoArgument(k)) => {
                return Err(e(0, format!("no argument after keyword \"{k}\"")))
            }
        };
        // Byte offset of the arguments in `raw` (`rest` is a slice of it).
        let at = l.rest_col;
        let args = argv_split(l.rest).ok_or_else(|| e(at, "invalid quotes".into()))?;
        let kw = l.keyword.as_str();
        let here = At {
            file: file.clone(),
            line: n,
        };
        let set =
            |s: Setting| -> Result<Option<Item>, String> { Ok(Some(Item::Set(s, here.clone()))) };
        let one = |args: &[String]| -> Result<String, String> {
            match args.first() {
                Some(a) if !a.is_empty() => {
                    if args.len() > 1 {
                        Err(e(
                            at,
                            format!("keyword {kw} extra arguments at end of line"),
                        ))
                    } else {
                        Ok(a.clone())
                    }
                }
                _ => Err(e(at, format!("{kw}: missing argument"))),
            }
        };
        let flag = |args: &[String]| -> Result<bool, String> {
            let v = one(args)?;
            match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(e(at, format!("{kw}: unsupported option \"{v}\""))),
            }
        };
        let time = |args: &[String]| -> Result<Option<u32>, String> {
            let v = one(args)?;
            if v == "none" {
                return Ok(None);
            }
            convtime(&v)
                .map(Some)
                .ok_or_else(|| e(at, format!("{kw}: invalid time value \"{v}\"")))
        };
        let int = |args: &[String]| -> Result<u32, String> {
            let v = args.first().cloned().unwrap_or_default();
            let n = strtonum(&v, 0, i64::from(i32::MAX))
                .ok_or_else(|| e(at, format!("{kw}: integer value \"{v}\" is invalid")))?;
            if args.len() > 1 {
                return Err(e(
                    at,
                    format!("keyword {kw} extra arguments at end of line"),
                ));
            }
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        // The raw rest of the line for ProxyCommand / ProxyJump (`strspn(str, WHITESPACE "=")`).
        let raw_rest = l.rest.trim_start_matches([' ', '\t', '\r', '\n', '=']);
        match kw {
            "host" => {
                let mut pats = Vec::with_capacity(args.len());
                for a in &args {
                    if a.is_empty() {
                        return Err(e(at, "keyword host empty argument".into()));
                    }
                    match a.strip_prefix('!') {
                        Some(p) => pats.push((true, p.to_string())),
                        None => pats.push((false, a.clone())),
                    }
                }
                Ok(Some(Item::Host(pats)))
            }
            "match" => {
                let crit = self.match_line(l.rest, args.len()).map_err(|m| e(at, m))?;
                Ok(Some(Item::Match(crit, here)))
            }
            "include" => self.include(&args, &e, at, depth).map(Some),
            "hostname" => set(Setting::HostName(one(&args)?)),
            "user" => set(Setting::User(one(&args)?)),
            "hostkeyalias" => set(Setting::HostKeyAlias(one(&args)?)),
            "port" => {
                let v = one(&args)?;
                match a2port(&v) {
                    Some(p) if p > 0 => set(Setting::Port(p)),
                    _ => Err(e(at, format!("Bad port '{v}'"))),
                }
            }
            "identityfile" => set(Setting::IdentityFile(one(&args)?, self.user_conf)),
            "certificatefile" => set(Setting::CertificateFile(one(&args)?, self.user_conf)),
            "identitiesonly" => set(Setting::IdentitiesOnly(flag(&args)?)),
            "canonicalizefallbacklocal" => set(Setting::CanonicalizeFallbackLocal(flag(&args)?)),
            "identityagent" => {
                let v = one(&args)?;
                if dollar_expand(&v).is_err() {
                    return Err(e(at, format!("Invalid environment expansion {v}")));
                }
                if let Some(name) = v.strip_prefix('$').filter(|n| !n.starts_with('{')) {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(e(at, format!("Invalid environment name {v}")));
                    }
                }
                set(Setting::IdentityAgent(v))
            }
            "userknownhostsfile" | "globalknownhostsfile" => {
                for (i, a) in args.iter().enumerate() {
                    if a.is_empty() {
                        return Err(e(at, format!("keyword {kw} empty argument")));
                    }
                    if a.eq_ignore_ascii_case("none") && (i > 0 || args.len() > 1) {
                        return Err(e(
                            at,
                            format!("keyword {kw} \"none\" argument must appear alone."),
                        ));
                    }
                }
                if kw == "userknownhostsfile" {
                    set(Setting::UserKnownHosts(args))
                } else {
                    set(Setting::GlobalKnownHosts(args))
                }
            }
            "stricthostkeychecking" => {
                let v = one(&args)?;
                let s = match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "ask" => StrictHostKeyChecking::Ask,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    _ => return Err(e(at, format!("{kw}: unsupported option \"{v}\""))),
                };
                set(Setting::StrictHostKeyChecking(s))
            }
            "canonicalizehostname" => {
                let v = one(&args)?;
                let c = match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" => Canon::Yes,
                    "no" | "false" => Canon::No,
                    "always" => Canon::Always,
                    _ => return Err(e(at, format!("{kw}: unsupported option \"{v}\""))),
                };
                set(Setting::CanonicalizeHostname(c))
            }
            "proxycommand" => set(Setting::ProxyCommand(raw_rest.to_string())),
            "proxyjump" => match parse_jump(raw_rest) {
                Ok(j) => set(Setting::ProxyJump(j)),
                Err(()) => Err(e(at, format!("Invalid ProxyJump \"{raw_rest}\""))),
            },
            "connecttimeout" => set(Setting::ConnectTimeout(time(&args)?)),
            "serveraliveinterval" => set(Setting::ServerAliveInterval(time(&args)?)),
            "serveralivecountmax" => set(Setting::ServerAliveCountMax(int(&args)?)),
            "canonicalizemaxdots" => set(Setting::CanonicalizeMaxDots(int(&args)?)),
            "kexalgorithms" => {
                let v = one(&args)?;
                match kex::validate(&v) {
                    Ok(()) => set(Setting::KexAlgorithms(v)),
                    Err(name) => Err(e(
                        at,
                        format!("Bad SSH2 KexAlgorithms '{v}' (unsupported: \"{name}\")"),
                    )),
                }
            }
            "canonicaldomains" => {
                for (i, a) in args.iter().enumerate() {
                    if a.is_empty() {
                        return Err(e(at, format!("keyword {kw} empty argument")));
                    }
                    if a.eq_ignore_ascii_case("none") {
                        if i > 0 || args.len() > 1 {
                            return Err(e(
                                at,
                                format!("keyword {kw} \"none\" argument must appear alone."),
                            ));
                        }
                    } else if !valid_domain(a) {
                        return Err(e(at, format!("domain name \"{a}\" is not valid")));
                    }
                }
                set(Setting::CanonicalDomains(args))
            }
            "canonicalizepermittedcnames" => {
                for (i, a) in args.iter().enumerate() {
                    if a.eq_ignore_ascii_case("none") {
                        if i > 0 || args.len() > 1 {
                            return Err(e(
                                at,
                                format!("keyword {kw} \"none\" argument must appear alone."),
                            ));
                        }
                    } else if a != "*" && a.split_once(':').is_none_or(|(_, t)| t.is_empty()) {
                        return Err(e(at, format!("Invalid permitted CNAME \"{a}\"")));
                    }
                }
                let none = args.len() == 1 && args[0].eq_ignore_ascii_case("none");
                set(Setting::PermittedCnames(!args.is_empty() && !none))
            }
            other => {
                if !KNOWN_KEYWORDS.contains(&other) {
                    let msg = format!(
                        "{file}:{n}: unknown keyword \"{other}\" (ssh refuses it; crew skips it)"
                    );
                    tracing::warn!("ssh config: {msg}");
                    self.warnings.push(msg);
                }
                Ok(None)
            }
        }
    }

    /// `match_cfg_line`'s reading of the criteria (`strdelim` tokens of the raw rest): what
    /// it refuses whatever the host. `argc` is the line's `argv_split` count.
    fn match_line(&mut self, text: &str, argc: usize) -> Result<Vec<Criterion>, String> {
        let mut cur: Cursor = Some(0);
        let mut crit = Vec::new();
        let mut attributes = 0;
        while let Some(attrib) = strdelim(text, &mut cur).filter(|a| !a.is_empty()) {
            if attrib.starts_with('#') {
                cur = None;
                break;
            }
            let (negate, name) = match attrib.strip_prefix('!') {
                Some(n) => (true, n.to_string()),
                None => (false, attrib.clone()),
            };
            let lower = name.to_ascii_lowercase();
            if lower == "all" {
                let arg = strdelim(text, &mut cur);
                let trailing = arg
                    .as_deref()
                    .is_some_and(|a| !a.is_empty() && !a.starts_with('#'));
                if attributes > 1 || trailing {
                    return Err(format!(
                        "'{attrib}' cannot be combined with other Match attributes"
                    ));
                }
                if arg.as_deref().is_some_and(|a| a.starts_with('#')) {
                    cur = None;
                }
                crit.push(Criterion {
                    negate,
                    kind: Crit::All,
                });
                return self.match_done(text, cur, argc, crit);
            }
            attributes += 1;
            if lower == "canonical" || lower == "final" {
                if lower == "final" {
                    self.has_final = true;
                }
                let kind = if lower == "final" {
                    Crit::Final
                } else {
                    Crit::Canonical
                };
                crit.push(Criterion { negate, kind });
                continue;
            }
            let newer = [
                "tagged",
                "localnetwork",
                "version",
                "sessiontype",
                "command",
            ];
            let arg = strdelim(text, &mut cur);
            let arg = match arg {
                Some(a) if a.is_empty() && (lower == "tagged" || lower == "command") => a,
                Some(a) if !a.is_empty() && !a.starts_with('#') => a,
                _ => return Err(format!("Missing Match criteria for {name}")),
            };
            let kind = match lower.as_str() {
                "host" => Crit::Host(arg),
                "originalhost" => Crit::OriginalHost(arg),
                "user" => Crit::User(arg),
                "localuser" => Crit::LocalUser(arg),
                "exec" => Crit::Exec(arg),
                n if newer.contains(&n) => Crit::Newer(n.to_string(), arg),
                _ => return Err(format!("Unsupported Match attribute {name}")),
            };
            crit.push(Criterion { negate, kind });
        }
        if attributes == 0 {
            return Err("One or more attributes required for Match".into());
        }
        self.match_done(text, cur, argc, crit)
    }

    /// Criteria left unread make the line's arguments "extra".
    fn match_done(
        &mut self,
        text: &str,
        cur: Cursor,
        argc: usize,
        crit: Vec<Criterion>,
    ) -> Result<Vec<Criterion>, String> {
        if !rest(text, cur).is_empty() && argc > 0 {
            return Err("keyword match extra arguments at end of line".into());
        }
        Ok(crit)
    }

    /// `Include`: each argument made absolute (relative to `~/.ssh` in a user config,
    /// `/etc/ssh` in the system one), globbed, and every match read (parse errors in them are
    /// errors here).
    fn include(
        &mut self,
        args: &[String],
        e: &dyn Fn(usize, String) -> String,
        at: usize,
        depth: usize,
    ) -> Result<Item, String> {
        let mut files = Vec::new();
        for a in args {
            if a.is_empty() {
                return Err(e(at, "keyword include empty argument".into()));
            }
            if a.starts_with('~') && !self.user_conf {
                return Err(e(at, format!("bad include path {a}")));
            }
            let pattern = if a.starts_with('/') || a.starts_with('~') {
                a.clone()
            } else if self.user_conf {
                format!("~/.ssh/{a}")
            } else {
                format!("/etc/ssh/{a}")
            };
            for path in self.glob(&pattern) {
                if depth + 1 > MAX_DEPTH {
                    return Err(e(at, "Too many recursive configuration includes".into()));
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => {
                        return Err(e(
                            at,
                            format!("Can't open user config file {}: {err}", path.display()),
                        ))
                    }
                };
                if (meta.uid() != 0 && meta.uid() != self.env.uid) || meta.mode() & 0o022 != 0 {
                    return Err(e(
                        at,
                        format!("Bad owner or permissions on {}", path.display()),
                    ));
                }
                // A directory opens but reads as nothing.
                let text = if meta.is_dir() {
                    String::new()
                } else {
                    match std::fs::read(&path) {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(err) => {
                            return Err(e(
                                at,
                                format!("Can't open user config file {}: {err}", path.display()),
                            ))
                        }
                    }
                };
                files.push(self.file(&path, &text, depth + 1)?);
            }
        }
        Ok(Item::Include(files))
    }

    /// `glob(pattern, GLOB_TILDE)`: `~` is `$HOME` (`~user` that user's home), matches in
    /// byte order, no match is no file. A pattern the glob crate cannot read is taken
    /// literally.
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let pattern = match pattern.strip_prefix('~') {
            Some(after) => {
                let (user, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
                let home = if user.is_empty() {
                    Some(self.env.include_home.clone())
                } else {
                    nix::unistd::User::from_name(user)
                        .ok()
                        .flatten()
                        .map(|u| u.dir)
                };
                match home {
                    Some(h) => format!("{}{tail}", h.display()),
                    None => pattern.to_string(),
                }
            }
            None => pattern.to_string(),
        };
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut found: Vec<PathBuf> = match glob::glob_with(&pattern, opts) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(_) => {
                let p = PathBuf::from(&pattern);
                if std::fs::symlink_metadata(&p).is_ok() {
                    vec![p]
                } else {
                    Vec::new()
                }
            }
        };
        found.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        found
    }
}

/// `valid_domain(name, 1)` for `CanonicalDomains`.
fn valid_domain(name: &str) -> bool {
    let b = name.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut last = 0u8;
    for &c in b {
        if last == b'.' && c == b'.' {
            return false;
        }
        if c != b'.' && c != b'-' && c != b'_' && !c.is_ascii_alphanumeric() {
            return false;
        }
        last = c;
    }
    true
}

/// The names of `Host` lines in `items` (and the files they include) that stand for one
/// host each: not negated, no `*` or `?`; appended to `out` once each, in order.
pub(super) fn concrete_hosts(items: &[Item], out: &mut Vec<String>) {
    for item in items {
        match item {
            Item::Host(pats) => {
                for (negated, p) in pats {
                    if !negated && !p.contains(['*', '?']) && !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
            Item::Include(files) => {
                for f in files {
                    concrete_hosts(f, out);
                }
            }
            Item::Match(..) | Item::Set(..) => {}
        }
    }
}
