//! Differential test: for every host of every case under tests/data/ssh_config/, crew's
//! ssh_config resolution equals what the installed `ssh -G -F <config> HOST` prints, field by
//! field, for every keyword crew uses.
//!
//! `CREW_SSH_CONFIG_CORPUS=<dir>` runs another corpus of the same shape (for generated
//! configs).
//!
//! A case is a directory: `config` (the file given to `-F`), `hosts` (one host name a line;
//! `NAME noted` = crew must note that it cannot resolve this host as ssh would, and the
//! fields are not compared; a host crew says `ssh` refuses must make `ssh -G` fail), optionally `home/` (copied as `$HOME`, for `~` and relative
//! `Include`s), other files for absolute includes (`@DIR@` in any file stands for the case's
//! copy), optionally `modes` (`path octal-mode` lines, applied to the copy), and optionally `error` (a substring of crew's load error). Whenever crew refuses a config,
//! `ssh -G` must fail for every host. `ssh` runs with `HOME` set to the copy's `home/`, so the operator's files
//! never leak in, and with every run bounded by a timeout.
//!
//! `ssh -G` prints IdentityFile and CertificateFile unexpanded; their expected expansion is
//! asked of `ssh` itself (the same names as `UserKnownHostsFile`, which it expands with the
//! same `~`, `%` and `${}` rules, in a config that includes the case's config).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crew::inventory::ssh_config::{Env, IdentityAgent, SshFile, SshParams, DEFAULT_KEX};
use crew::model::StrictHostKeyChecking;

const CORPUS: &str = "tests/data/ssh_config";
const SSH_TIMEOUT: Duration = Duration::from_secs(10);
/// A variable the corpus expands with `${…}`, set for crew (this process) and ssh alike.
const VAR: (&str, &str) = ("CREW_SSH_DIFF", "/var/diff");

/// `ssh -G` output: each keyword's values in order (identityfile repeats).
type Dump = BTreeMap<String, Vec<String>>;

/// Run `ssh -G -F config host` with `HOME=home`; `Err` with stderr when it fails.
fn ssh_g(ssh: &Path, config: &Path, home: &Path, host: &str) -> Result<Dump, String> {
    let mut child = Command::new(ssh)
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg("--")
        .arg(host)
        .env("HOME", home)
        .env(VAR.0, VAR.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh -G");
    let deadline = Instant::now() + SSH_TIMEOUT;
    loop {
        match child.try_wait().expect("wait for ssh -G") {
            Some(_) => break,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ssh -G -F {} {host} did not finish within {SSH_TIMEOUT:?}",
                    config.display()
                );
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    let out = child.wait_with_output().expect("ssh -G output");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut dump = Dump::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        dump.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(dump)
}

fn one<'a>(d: &'a Dump, key: &str) -> Option<&'a str> {
    d.get(key).and_then(|v| v.first()).map(String::as_str)
}

/// Copy the case directory `from` into `to`.
fn copy_case(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read case dir") {
        let e = e.expect("dir entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_case(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy case file");
        }
    }
}

/// Replace `@DIR@` in every file under `dir` (after the copy, so the root is known).
fn substitute(dir: &Path, root: &Path) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            substitute(&p, root);
        } else {
            let text = std::fs::read_to_string(&p).expect("read");
            if text.contains("@DIR@") {
                std::fs::write(&p, text.replace("@DIR@", &root.display().to_string()))
                    .expect("write");
            }
        }
    }
}

/// What `ssh` itself takes `~`, `%d`, `%u`, `%i`, `%l` to be (it expands them in
/// UserKnownHostsFile), so crew resolves with the same.
fn probe_env(ssh: &Path, scratch: &Path, include_home: &Path) -> Env {
    let cfg = scratch.join("probe_config");
    std::fs::write(&cfg, "UserKnownHostsFile \"~/|%d|%u|%i|%l\"\n").expect("write probe");
    let d = ssh_g(ssh, &cfg, include_home, "probe").expect("ssh -G on the probe config");
    let line = one(&d, "userknownhostsfile").expect("userknownhostsfile");
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 5, "probe: {line}");
    assert_eq!(
        f[0].trim_end_matches('/'),
        f[1].trim_end_matches('/'),
        "`~` and %d are the same home"
    );
    Env {
        home: PathBuf::from(f[1]),
        include_home: include_home.to_path_buf(),
        local_user: f[2].to_string(),
        uid: f[3].parse().expect("uid"),
        local_host: f[4].to_string(),
    }
}

/// `ssh`'s own expansion of `names` for `host` (each as the one UserKnownHostsFile entry of a
/// config that then includes the case's config: the printed list is blank-separated, and an
/// expansion may hold blanks).
fn ssh_expand(ssh: &Path, config: &Path, home: &Path, host: &str, names: &[String]) -> Vec<String> {
    let wrapper = config.with_file_name("expand_config");
    names
        .iter()
        .map(|n| {
            let quoted = format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""));
            std::fs::write(
                &wrapper,
                format!(
                    "UserKnownHostsFile {quoted}\nInclude {}\n",
                    config.display()
                ),
            )
            .expect("write expand config");
            let d = ssh_g(ssh, &wrapper, home, host)
                .unwrap_or_else(|e| panic!("ssh -G expanding {n:?} for {host}: {e}"));
            one(&d, "userknownhostsfile")
                .expect("userknownhostsfile")
                .to_string()
        })
        .collect()
}

fn paths(v: &[PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.display().to_string()).collect()
}

/// OpenSSH's IdentityFile list when none is configured.
const DEFAULT_IDS: &[&str] = &[
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

struct Ctx<'a> {
    ssh: &'a Path,
    config: &'a Path,
    home: &'a Path,
    env: &'a Env,
    compare_kex: bool,
}

/// Every field crew uses, crew's value against ssh's; one line per difference.
fn compare(cx: &Ctx<'_>, host: &str, p: &SshParams, d: &Dump) -> (usize, Vec<String>) {
    let mut diffs = Vec::new();
    let mut n = 0;
    let mut check = |field: &str, crew: String, ssh: String| {
        n += 1;
        if crew != ssh {
            diffs.push(format!("{host}: {field}: crew {crew:?}, ssh -G {ssh:?}"));
        }
    };
    let s = |k: &str| one(d, k).unwrap_or("").to_string();
    let list = |k: &str| d.get(k).cloned().unwrap_or_default();

    check(
        "hostname",
        p.host_name.clone().unwrap_or_default(),
        s("hostname"),
    );
    check(
        "user",
        p.user.clone().unwrap_or_else(|| cx.env.local_user.clone()),
        s("user"),
    );
    check("port", p.port.unwrap_or(22).to_string(), s("port"));
    for (field, crew, key) in [
        ("identityfile", &p.identity_files, "identityfile"),
        ("certificatefile", &p.certificate_files, "certificatefile"),
    ] {
        let raw: Vec<String> = list(key)
            .into_iter()
            .filter(|f| !f.eq_ignore_ascii_case("none"))
            .collect();
        let default = key == "identityfile" && raw == DEFAULT_IDS;
        let want = if default || raw.is_empty() {
            Vec::new()
        } else {
            ssh_expand(cx.ssh, cx.config, cx.home, host, &raw)
        };
        check(field, format!("{:?}", paths(crew)), format!("{want:?}"));
    }
    check(
        "identitiesonly",
        if p.identities_only.unwrap_or(false) {
            "yes"
        } else {
            "no"
        }
        .into(),
        s("identitiesonly"),
    );
    let agent = one(d, "identityagent").map(|a| match a.strip_prefix('$') {
        Some(var) if !var.starts_with('{') => match std::env::var(var) {
            Ok(v) => v,
            Err(_) => "none".into(),
        },
        _ => a.to_string(),
    });
    let crew_agent = p.identity_agent.as_ref().map(|a| match a {
        IdentityAgent::Environment => "SSH_AUTH_SOCK".to_string(),
        IdentityAgent::Disabled => "none".to_string(),
        IdentityAgent::Socket(s) => s.display().to_string(),
    });
    check(
        "identityagent",
        format!("{crew_agent:?}"),
        format!("{agent:?}"),
    );
    let home = cx.env.home.display().to_string();
    let slash = if home.ends_with('/') { "" } else { "/" };
    let user_kh = match &p.known_hosts {
        None => format!("{home}{slash}.ssh/known_hosts {home}{slash}.ssh/known_hosts2"),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => paths(v).join(" "),
    };
    check("userknownhostsfile", user_kh, s("userknownhostsfile"));
    let global_kh = match &p.global_known_hosts {
        None => "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2".into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => paths(v).join(" "),
    };
    check("globalknownhostsfile", global_kh, s("globalknownhostsfile"));
    let strict = match p.strict_host_key_checking {
        None | Some(StrictHostKeyChecking::Ask) => "ask",
        Some(StrictHostKeyChecking::Yes) => "true",
        Some(StrictHostKeyChecking::No) => "false",
        Some(StrictHostKeyChecking::AcceptNew) => "accept-new",
    };
    check(
        "stricthostkeychecking",
        strict.into(),
        s("stricthostkeychecking"),
    );
    check(
        "proxyjump",
        format!("{:?}", p.proxy_jump),
        format!("{:?}", one(d, "proxyjump")),
    );
    check(
        "proxycommand",
        format!("{:?}", p.proxy_command),
        format!("{:?}", one(d, "proxycommand")),
    );
    check(
        "connecttimeout",
        p.connect_timeout
            .map_or("none".into(), |t| t.as_secs().to_string()),
        s("connecttimeout"),
    );
    check(
        "serveraliveinterval",
        p.server_alive_interval
            .map_or(0, |t| t.as_secs())
            .to_string(),
        s("serveraliveinterval"),
    );
    check(
        "serveralivecountmax",
        p.server_alive_count_max.unwrap_or(3).to_string(),
        s("serveralivecountmax"),
    );
    if cx.compare_kex {
        let crew = p
            .kex
            .clone()
            .unwrap_or_else(|| DEFAULT_KEX.iter().map(|s| s.to_string()).collect());
        check("kexalgorithms", crew.join(","), s("kexalgorithms"));
    }
    (n, diffs)
}

/// One case's row: hosts, fields compared, hosts noted, differences.
struct Row {
    case: String,
    hosts: usize,
    fields: usize,
    noted: usize,
    diffs: Vec<String>,
}

fn run_case(ssh: &Path, case: &Path, compare_kex: bool) -> Row {
    let name = case
        .file_name()
        .expect("case name")
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("case");
    std::fs::create_dir_all(root.join("home")).expect("mkdir home");
    copy_case(case, &root);
    substitute(&root, &root);
    // `modes`: `path octal-mode` lines (git keeps no group/world write bits).
    if let Ok(modes) = std::fs::read_to_string(root.join("modes")) {
        for line in modes.lines().filter(|l| !l.trim().is_empty()) {
            let (path, mode) = line.split_once(' ').expect("`path mode`");
            let mode = u32::from_str_radix(mode.trim(), 8).expect("octal mode");
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    }
    let home = root.join("home");
    let config = root.join("config");
    let env = probe_env(ssh, tmp.path(), &home);
    let hosts_text = std::fs::read_to_string(root.join("hosts")).expect("hosts file");
    let hosts: Vec<(String, bool)> = hosts_text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let h = f.next().unwrap_or("").to_string();
            (h, f.next() == Some("noted"))
        })
        .collect();
    assert!(!hosts.is_empty(), "{name}: no hosts");
    let mut row = Row {
        case: name.clone(),
        hosts: hosts.len(),
        fields: 0,
        noted: 0,
        diffs: Vec::new(),
    };
    let loaded = SshFile::load_with(&config, env.clone());
    let want_error = std::fs::read_to_string(root.join("error")).ok();
    let file = match (loaded, want_error) {
        (Ok(f), None) => f,
        (Ok(_), Some(want)) => {
            row.diffs.push(format!(
                "crew loaded it; expected an error containing {:?}",
                want.trim()
            ));
            return row;
        }
        // Crew refuses the file: so must ssh, for every host.
        (Err(e), want) => {
            if let Some(want) = want.filter(|w| !e.contains(w.trim())) {
                row.diffs
                    .push(format!("crew error {e:?} lacks {:?}", want.trim()));
            }
            for (h, _) in &hosts {
                row.fields += 1;
                if ssh_g(ssh, &config, &home, h).is_ok() {
                    row.diffs
                        .push(format!("{h}: ssh -G accepts the config crew refuses: {e}"));
                }
            }
            return row;
        }
    };
    let cx = Ctx {
        ssh,
        config: &config,
        home: &home,
        env: &env,
        compare_kex,
    };
    for (h, noted) in &hosts {
        let p = file.query(h);
        let ssh_out = ssh_g(ssh, &config, &home, h);
        // Crew says ssh refuses this host: ssh -G must fail for it.
        if p.notes.iter().any(|n| n.contains("ssh refuses this host")) {
            row.fields += 1;
            row.noted += 1;
            if ssh_out.is_ok() {
                row.diffs.push(format!(
                    "{h}: crew says ssh refuses it, ssh -G accepts: {:?}",
                    p.notes
                ));
            }
            continue;
        }
        // Crew says it cannot resolve this host as ssh would: the case must expect that.
        if *noted || !p.notes.is_empty() {
            row.noted += 1;
            if !*noted {
                row.diffs
                    .push(format!("{h}: unexpected notes {:?}", p.notes));
            } else if p.notes.is_empty() {
                row.diffs.push(format!(
                    "{h}: expected a note (crew cannot resolve it as ssh), got none"
                ));
            }
            continue;
        }
        match ssh_out {
            Ok(d) => {
                let (n, diffs) = compare(&cx, h, &p, &d);
                row.fields += n;
                row.diffs.extend(diffs);
            }
            Err(e) => row
                .diffs
                .push(format!("{h}: ssh -G failed, crew resolved it: {e}")),
        }
    }
    row
}

/// A small deterministic generator of ssh_configs (xorshift64*): Host and Match lines with
/// negation, lists, quotes, `=` and case variants, every keyword crew resolves with tokens,
/// `none`, comments, CRLF, and Includes of generated files (two deep). Each generated case is
/// written like a corpus case, so the same comparison runs on configs nobody wrote by hand.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
    fn quoted(&mut self, s: &str) -> String {
        match self.below(100) {
            0..=11 => format!("\"{s}\""),
            12..=15 => format!("'{s}'"),
            _ => s.to_string(),
        }
    }
    fn sep(&mut self) -> &'static str {
        self.pick(&[" ", " = ", "=", "\t", "  ", " =", "= ", "\t=\t"])
    }
    fn keyword(&mut self, k: &str) -> String {
        match self.below(3) {
            0 => k.to_string(),
            1 => k.to_ascii_lowercase(),
            _ => k.to_ascii_uppercase(),
        }
    }
    fn pattern(&mut self) -> String {
        let p = self.pick(&[
            "*",
            "web*",
            "WEB*",
            "db*",
            "*.prod",
            "a",
            "b",
            "?",
            "alias",
            "*.y.z",
            "j",
            "c-*",
            "mixed.case",
            "Mixed.Case",
            "10.*",
            "q",
            "bastion.prod",
        ]);
        if self.chance(20) {
            format!("!{p}")
        } else {
            p.to_string()
        }
    }
    fn criterion(&mut self) -> String {
        let neg = if self.chance(20) { "!" } else { "" };
        let k = self.pick(&[
            "host",
            "originalhost",
            "user",
            "localuser",
            "final",
            "canonical",
            "Host",
            "USER",
        ]);
        let lower = k.to_ascii_lowercase();
        if lower == "final" || lower == "canonical" {
            return format!("{neg}{k}");
        }
        let arg = if lower.contains("host") {
            let n = 1 + self.below(2);
            (0..n).map(|_| self.pattern()).collect::<Vec<_>>().join(",")
        } else {
            self.pick(&["u1", "root", "*", "nobody"]).to_string()
        };
        let sep = if self.chance(80) {
            self.pick(&[" ", "=", " = "])
        } else {
            " "
        };
        let arg = self.quoted(&arg);
        format!("{neg}{k}{sep}{arg}")
    }
    fn match_line(&mut self) -> String {
        if self.chance(8) {
            return format!(
                "Match {}",
                self.pick(&["all", "!all", "all # c", "canonical all"])
            );
        }
        let n = 1 + self.below(3);
        let crit: Vec<String> = (0..n).map(|_| self.criterion()).collect();
        let kw = self.pick(&["Match", "match", "MATCH"]);
        let sep = self.pick(&[" ", "\t", "="]);
        let tail = self.pick(&["", "", "", " # trailing comment", "  "]);
        format!("{kw}{sep}{}{tail}", crit.join(" "))
    }
    fn host_line(&mut self) -> String {
        let kw = self.pick(&["Host", "host", "HOST"]);
        let sep = self.sep();
        let n = 1 + self.below(3);
        let pats: Vec<String> = (0..n)
            .map(|_| {
                let p = self.pattern();
                self.quoted(&p)
            })
            .collect();
        let tail = self.pick(&["", "", " # c"]);
        format!("{kw}{sep}{}{tail}", pats.join(" "))
    }
    fn setting(&mut self) -> String {
        let sep = self.sep();
        let tail = self.pick(&["", "", "", " # comment", "   ", "\t"]);
        let (k, v): (&str, String) = match self.below(19) {
            0 => (
                "User",
                self.pick(&["u1", "root", "a b", "u\\ x", "=x", "u%h"])
                    .into(),
            ),
            1 => (
                "Port",
                self.pick(&["22", "2200", "ssh", "+22", "0022"]).into(),
            ),
            2 => (
                "HostName",
                self.pick(&[
                    "%h.ex",
                    "REAL.ex",
                    "127.1",
                    "0x7f.1",
                    "::FFFF:1.2.3.4",
                    "%h",
                    "x.%%",
                    "a",
                    "j",
                ])
                .into(),
            ),
            3 | 4 => (
                "IdentityFile",
                self.pick(&[
                    "~/k_%h",
                    "~//k",
                    "~",
                    "/k/%r@%h:%p",
                    "NONE",
                    "~/.ssh/a b",
                    "rel/key",
                    "%d/x",
                    "/k/%C-%n-%k",
                ])
                .into(),
            ),
            5 => (
                "UserKnownHostsFile",
                self.pick(&["~/kh", "/a /b", "none", "NONE", "~/kh_%n %d/k2"])
                    .into(),
            ),
            6 => (
                "ProxyJump",
                self.pick(&[
                    "j",
                    "u@j:22",
                    "a,b",
                    "none",
                    "NONE",
                    "ssh://u@j:2",
                    "j # c",
                    "none # c",
                    "a,b # c,d",
                    "10.0.0.1",
                ])
                .into(),
            ),
            7 => (
                "ProxyCommand",
                self.pick(&["nc %h %p", "none", "x 'a b' \"c\"", "NONE"])
                    .into(),
            ),
            8 => (
                "ConnectTimeout",
                self.pick(&["5", "none", "1m30s", "0", "2H"]).into(),
            ),
            9 => (
                "ServerAliveInterval",
                self.pick(&["15", "none", "1W"]).into(),
            ),
            10 => ("ServerAliveCountMax", self.pick(&["1", "+5", "0"]).into()),
            11 => (
                "StrictHostKeyChecking",
                self.pick(&["yes", "No", "ASK", "accept-new", "off", "true", "FALSE"])
                    .into(),
            ),
            12 => (
                "IdentitiesOnly",
                self.pick(&["yes", "no", "TRUE", "False"]).into(),
            ),
            13 => (
                "CanonicalizeHostname",
                self.pick(&["no", "yes", "always"]).into(),
            ),
            14 => ("CanonicalizeMaxDots", self.pick(&["0", "1", "3"]).into()),
            15 => (
                "CertificateFile",
                self.pick(&["~/c", "/c/%n", "none"]).into(),
            ),
            16 => (
                "KexAlgorithms",
                self.pick(&[
                    "-*sha1",
                    "^ecdh-sha2-nistp521",
                    "+curve25519-sha256",
                    "ecdh-sha2-nistp384",
                ])
                .into(),
            ),
            17 => (
                "IdentityAgent",
                self.pick(&["none", "SSH_AUTH_SOCK", "~/agent-%h", "${CREW_SSH_DIFF}/a"])
                    .into(),
            ),
            _ => (
                "GlobalKnownHostsFile",
                self.pick(&["/g", "/g %h", "none"]).into(),
            ),
        };
        let kw = self.keyword(k);
        let v = if matches!(
            k,
            "ProxyJump" | "ProxyCommand" | "UserKnownHostsFile" | "GlobalKnownHostsFile"
        ) {
            v
        } else {
            self.quoted(&v)
        };
        let indent = self.pick(&["  ", "\t", "", " \t "]);
        format!("{indent}{kw}{sep}{v}{tail}")
    }
    fn block(&mut self, lines: &mut Vec<String>, depth: usize, files: &mut Vec<(String, String)>) {
        for _ in 0..2 + self.below(5) {
            match self.below(100) {
                0..=34 => lines.push(self.host_line()),
                35..=54 => lines.push(self.match_line()),
                55..=64 if depth < 2 => {
                    let name = format!("inc{}.conf", files.len());
                    files.push((name.clone(), String::new()));
                    let at = files.len() - 1;
                    let mut sub = Vec::new();
                    self.block(&mut sub, depth + 1, files);
                    files[at].1 = sub.join("\n") + "\n";
                    let kw = self.pick(&["Include ", "include=", "INCLUDE  "]);
                    let target = match self.below(3) {
                        0 => format!("~/.ssh/{name}"),
                        1 => self.quoted(&name),
                        _ => name,
                    };
                    lines.push(format!("{kw}{target}"));
                }
                _ => {}
            }
            for _ in 0..self.below(5) {
                lines.push(self.setting());
            }
            if self.chance(10) {
                lines.push(self.pick(&["", "   ", "# comment", "\t# c"]).to_string());
            }
        }
    }

    /// One case directory under `dir`.
    fn case(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir.join("home/.ssh")).expect("mkdir case");
        let mut files = Vec::new();
        let mut lines = Vec::new();
        self.block(&mut lines, 0, &mut files);
        self.block(&mut lines, 0, &mut files);
        let eol = if self.chance(10) { "\r\n" } else { "\n" };
        std::fs::write(dir.join("config"), lines.join(eol) + eol).expect("write config");
        for (name, text) in files {
            std::fs::write(dir.join("home/.ssh").join(name), text).expect("write include");
        }
        let mut pool = vec![
            "web1",
            "WEB2",
            "db1",
            "app.prod",
            "bastion.prod",
            "10.0.0.5",
            "a",
            "b",
            "alias",
            "Mixed.Case",
            "j",
            "c-1",
            "x.y.z",
            "127.0.0.1",
            "q",
        ];
        let mut hosts = Vec::new();
        for _ in 0..6 {
            hosts.push(pool.remove(self.below(pool.len())));
        }
        std::fs::write(dir.join("hosts"), hosts.join("\n") + "\n").expect("write hosts");
    }
}

#[test]
fn crew_resolves_every_host_as_ssh_g_does() {
    if !support::require_tool("ssh") {
        return;
    }
    let ssh = support::find_tool("ssh").expect("ssh found");
    // Safe here: this is the only test in this binary, and it sets the variable before any
    // thread reads the environment.
    std::env::set_var(VAR.0, VAR.1);

    // The kex comparison needs the installed ssh's defaults to be the ones crew wrote down.
    let scratch = tempfile::tempdir().expect("tempdir");
    let empty = scratch.path().join("empty");
    std::fs::write(&empty, "").expect("write empty config");
    let d = ssh_g(&ssh, &empty, scratch.path(), "h").expect("ssh -G on an empty config");
    let installed = one(&d, "kexalgorithms").unwrap_or("").to_string();
    let compare_kex = installed == DEFAULT_KEX.join(",");
    if !compare_kex {
        eprintln!(
            "NOTE: the installed ssh's default KexAlgorithms differ from crew's constants \
             (OpenSSH 9.2p1 Debian); KexAlgorithms not compared.\n  installed: {installed}"
        );
    }

    let corpus = std::env::var("CREW_SSH_CONFIG_CORPUS").unwrap_or_else(|_| CORPUS.to_string());
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut rows: Vec<Row> = cases
        .iter()
        .map(|c| run_case(&ssh, c, compare_kex))
        .collect();

    // Generated configs: CREW_SSH_DIFF_GENERATED of them (default 40) from
    // CREW_SSH_DIFF_SEED (default fixed, so a run is repeatable), one summary row.
    let count: usize = std::env::var("CREW_SSH_DIFF_GENERATED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("CREW_SSH_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let generated = tempfile::tempdir().expect("tempdir");
    let mut gen = Gen(seed.max(1));
    let mut summary = Row {
        case: format!("generated (seed {seed})"),
        hosts: 0,
        fields: 0,
        noted: 0,
        diffs: Vec::new(),
    };
    let mut refused = 0;
    for i in 0..count {
        let dir = generated.path().join(format!("g{i:04}"));
        gen.case(&dir);
        let r = run_case(&ssh, &dir, compare_kex);
        refused += usize::from(r.fields == r.hosts);
        summary.hosts += r.hosts;
        summary.fields += r.fields;
        summary.noted += r.noted;
        let config = std::fs::read_to_string(dir.join("config")).unwrap_or_default();
        summary.diffs.extend(
            r.diffs
                .into_iter()
                .map(|d| format!("g{i:04}: {d}\n--- config:\n{config}---")),
        );
    }
    if count > 0 {
        eprintln!("generated: {count} configs, {refused} refused by both crew and ssh");
        rows.push(summary);
    }

    eprintln!(
        "{:<28} {:>5} {:>7} {:>5} {:>5}",
        "case", "hosts", "fields", "noted", "diffs"
    );
    for r in &rows {
        eprintln!(
            "{:<28} {:>5} {:>7} {:>5} {:>5}",
            r.case,
            r.hosts,
            r.fields,
            r.noted,
            r.diffs.len()
        );
    }
    let hosts: usize = rows.iter().map(|r| r.hosts).sum();
    let fields: usize = rows.iter().map(|r| r.fields).sum();
    eprintln!(
        "{} cases, {hosts} hosts, {fields} field comparisons",
        rows.len()
    );
    let diffs: Vec<String> = rows
        .iter()
        .flat_map(|r| r.diffs.iter().map(move |d| format!("{}: {d}", r.case)))
        .collect();
    assert!(
        diffs.is_empty(),
        "crew differs from ssh -G:\n{}",
        diffs.join("\n")
    );
    assert!(
        rows.len() >= 15 && fields >= 1000,
        "the corpus is too small to mean much"
    );
}
