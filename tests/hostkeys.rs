//! First contact with a fleet: hosts whose keys known_hosts does not record wait, and the
//! operator gets one question for all of them, grouped by key, on a terminal (tmux) or in
//! the console; without a terminal they are refused as before. A changed key is never asked
//! about: it is refused naming the file and line of the old key. Real OpenSSH sshd fleets on
//! loopback (tests/support/sshd.rs), the built `crew` binary, an empty known_hosts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;
use support::proc::{Bounded, COMMAND_WAIT};
use support::require_tools;
use support::sshd::SshdFleet;
use support::tmux::{Session, REPORT_EXIT};

/// A temp dir with a hosts.toml naming one or more fleets' hosts (each with its own port,
/// client key and agent dir), all checked against one known_hosts that starts as `kh`.
struct Env {
    dir: tempfile::TempDir,
    fleets: Vec<SshdFleet>,
}

impl Env {
    /// `fleets[i]`'s hosts are named `prefixes[i]` + two digits from 01.
    fn new(fleets: Vec<SshdFleet>, prefixes: &[&str], kh: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("ssh_config"), "").expect("ssh_config");
        std::fs::write(d.join("known_hosts"), kh).expect("known_hosts");
        let mut toml = format!(
            "[defaults]\ntransport = \"ssh\"\nuser = {user:?}\nidentities_only = true\n\
             known_hosts = {kh:?}\nconnect_timeout = \"20s\"\nssh_config = {cfg:?}\n",
            user = support::proc::login(),
            kh = d.join("known_hosts").display().to_string(),
            cfg = d.join("ssh_config").display().to_string(),
        );
        for (fleet, prefix) in fleets.iter().zip(prefixes) {
            fleet.preinstall_agent();
            for (i, h) in fleet.hosts().iter().enumerate() {
                let _ = write!(
                    toml,
                    "\n[[host]]\nname = \"{prefix}{:02}\"\naddress = {:?}\nport = {}\n\
                     identity_file = {:?}\nagent_dir = {:?}\n",
                    i + 1,
                    h.address,
                    fleet.port,
                    fleet.client_key.display().to_string(),
                    fleet.agent_dir().display().to_string(),
                );
            }
        }
        std::fs::write(d.join("hosts.toml"), toml).expect("hosts.toml");
        for sub in ["home", "config", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).expect("env dir");
        }
        Env { dir, fleets }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.path().join("known_hosts")).expect("read known_hosts")
    }

    fn hosts_toml(&self) -> PathBuf {
        self.path().join("hosts.toml")
    }

    /// `crew ARGS…` without a terminal (stdin is /dev/null), bounded.
    fn crew(&self, args: &[&str]) -> std::process::Output {
        support::cli::crew_command(&self.path().join("home"), &self.path().join("config"))
            .env("TMPDIR", self.path().join("tmp"))
            .arg("--hosts")
            .arg(self.hosts_toml())
            .args(args)
            .current_dir(self.path())
            .output_within(COMMAND_WAIT)
    }

    /// `crew ARGS…` in a detached tmux session (a terminal), sharing this env's CREW_HOME
    /// (and so its daemon).
    fn tmux(&self, tag: &str, args: &str) -> Session {
        let exe = env!("CARGO_BIN_EXE_crew");
        let p = self.path();
        Session::start(
            format!("crew-hostkeys-{tag}-{}", std::process::id()),
            160,
            60,
            |_| {
                format!(
                    "cd '{d}' && env TMPDIR='{d}/tmp' CREW_HOME='{d}/home' \
                     CREW_CONFIG_DIR='{d}/config' CREW_AGENT_EXE='{exe}' '{exe}' \
                     --hosts '{d}/hosts.toml' {args}{REPORT_EXIT}",
                    d = p.display(),
                )
            },
        )
        .with_logs_on_timeout()
    }

    fn logs(&self) -> String {
        self.fleets.iter().map(SshdFleet::logs).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.crew(&["daemon", "stop"]);
    }
}

/// The SHA-256 fingerprint of a fleet's host key, as `ssh-keygen -l` prints it.
fn fingerprint(fleet: &SshdFleet) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(fleet.dir().join("host_ed25519.pub"))
        .output_within(Duration::from_secs(30));
    assert!(out.status.success(), "ssh-keygen -l failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// The visual host key of a fleet's host key, as `ssh-keygen -lv` draws it (its lines).
fn randomart(fleet: &SshdFleet) -> Vec<String> {
    let out = Command::new("ssh-keygen")
        .arg("-lv")
        .arg("-f")
        .arg(fleet.dir().join("host_ed25519.pub"))
        .output_within(Duration::from_secs(30));
    assert!(out.status.success(), "ssh-keygen -lv failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let art: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    assert_eq!(art.len(), 11, "a header, 9 rows, a footer:\n{text}");
    art
}

/// A three-step heist over every host (`host*`), in one wave.
const HEIST: &str = r#"[heist.hk]
description = "three steps on every host"
select = "host*"

[[heist.hk.step]]
name = "one"
run = "echo one-${host}"

[[heist.hk.step]]
name = "two"
run = "echo two-${host}"

[[heist.hk.step]]
name = "three"
run = "echo three-${host}"
"#;

impl Env {
    /// `heists/hk.toml` ([`HEIST`]) beside the hosts.toml.
    fn with_heist(self) -> Env {
        let dir = self.path().join("heists");
        std::fs::create_dir_all(&dir).expect("heists dir");
        std::fs::write(dir.join("hk.toml"), HEIST).expect("heist file");
        self
    }
}

fn host_lines(kh: &str) -> usize {
    kh.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

#[test]
fn crew_run_on_a_terminal_asks_once_for_twenty_new_hosts() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(20)], &["host"], "");
    let fp = fingerprint(&env.fleets[0]);
    let s = env.tmux("run", "run 'host[01-20]' -- echo hello-from-\\$CREW_HOST");
    let screen = s.wait_for("Accept this key?", 90);
    assert_eq!(
        screen.matches("Accept this key?").count(),
        1,
        "one question:\n{screen}"
    );
    assert!(
        screen.contains(&format!("1) ssh-ed25519 {fp} \u{2014} host[01-20] (20)")),
        "the group with its fingerprint and folded hosts:\n{screen}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0, "nothing recorded yet");
    s.keys(&["a", "Enter"]);
    let screen = s.wait_for("EXITED", 120);
    assert!(
        screen.contains("EXITED 0"),
        "every host ran:\n{screen}\n{}",
        env.logs()
    );
    assert!(screen.contains("hello-from-host20"), "{screen}");
    let kh = env.known_hosts();
    assert_eq!(host_lines(&kh), 20, "one line per host:\n{kh}");
    for h in env.fleets[0].hosts() {
        assert!(
            kh.contains(&format!(
                "[{}]:{} ssh-ed25519 ",
                h.address, env.fleets[0].port
            )),
            "{} recorded:\n{kh}",
            h.address
        );
    }
    drop(s);

    // Known now: a second run on a terminal asks nothing.
    let s = env.tmux("again", "run 'host[01-20]' -- true");
    let screen = s.wait_for("EXITED", 120);
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(!screen.contains("Accept"), "asked again:\n{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 20, "nothing added");
}

#[test]
fn refusing_on_the_terminal_gives_hostkey_and_records_nothing() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "");
    let s = env.tmux("refuse", "run 'host*' -- true");
    s.wait_for("Accept this key?", 90);
    s.keys(&["Enter"]);
    let screen = s.wait_for("EXITED", 120);
    assert!(screen.contains("EXITED 1"), "{screen}");
    assert!(
        screen.contains("not accepted by the operator"),
        "why:\n{screen}"
    );
    assert!(screen.contains("hostkey"), "verdict:\n{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 0);
}

#[test]
fn without_a_terminal_unknown_keys_are_refused_as_before() {
    if !require_tools(&["sshd"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "");
    let out = env.crew(&["run", "host*", "--", "true"]);
    let text = support::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        !text.contains("Accept"),
        "asked without a terminal:\n{text}"
    );
    assert_eq!(
        text.matches("is unknown (ssh-ed25519 SHA256:").count(),
        3,
        "each host refused, naming its key:\n{text}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0);
    // --json on a terminal is for scripts too: refused, not asked.
    let s = env.tmux("json", "run --json 'host*' -- true");
    let screen = s.wait_for("EXITED", 120);
    assert!(screen.contains("EXITED 1"), "{screen}");
    assert!(!screen.contains("Accept"), "{screen}");
    assert!(screen.contains("\"kind\":\"hostkey\""), "{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 0);
}

#[test]
fn a_changed_key_is_refused_with_file_and_line_and_never_offered() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let fleet = SshdFleet::start(4);
    let first = fleet.hosts()[0].clone();
    // Line 2 records another key for host01; the other three are unknown.
    let kh = format!(
        "# crew test\n[{}]:{} {}\n",
        first.address, fleet.port, fleet.other_pub
    );
    let env = Env::new(vec![fleet], &["host"], &kh);
    let s = env.tmux("changed", "run 'host*' -- true");
    let screen = s.wait_for("Accept this key?", 90);
    assert!(
        screen.contains("host[02-04] (3)"),
        "only the unknown ones are offered:\n{screen}"
    );
    assert!(!screen.contains("host[01-04]"), "{screen}");
    s.keys(&["a", "Enter"]);
    let screen = s.wait_for("EXITED", 120);
    assert!(screen.contains("EXITED 1"), "host01 failed:\n{screen}");
    let khf = env.path().join("known_hosts");
    let joined: String = screen
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("");
    assert!(
        joined.contains(&format!("{}:2", khf.display())),
        "names the old key's file and line:\n{screen}"
    );
    assert!(
        joined.contains(&format!(
            "ssh-keygen -R '[{}]:{}'",
            first.address, env.fleets[0].port
        )),
        "says how to remove it:\n{screen}"
    );
    let kh = env.known_hosts();
    assert_eq!(
        host_lines(&kh),
        4,
        "three accepted, the old line kept:\n{kh}"
    );
}

/// The console on `env`'s hosts.toml in tmux, its hosts listed.
fn console(env: &Env, tag: &str, hosts: usize) -> Session {
    let s = env.tmux(tag, "");
    s.wait_for(&format!("Hosts {hosts} shown"), 30);
    s
}

#[test]
fn console_asks_once_for_twenty_new_hosts_and_runs_on_all() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(20)], &["host"], "");
    let fp = fingerprint(&env.fleets[0]);
    let s = console(&env, "console", 20);
    s.keys(&[":"]);
    s.text("echo hi-$CREW_HOST");
    s.keys(&["Enter"]);
    let screen = s.wait_for("New host keys", 90);
    assert!(screen.contains("20 host(s) wait"), "{screen}");
    assert_eq!(screen.matches(&fp).count(), 1, "one group:\n{screen}");
    assert!(
        screen.contains(&format!("ssh-ed25519 {fp} \u{2014} host[01-20] (20)")),
        "{screen}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0, "nothing recorded yet");
    s.keys(&["a"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(
        screen.contains("run #1 done: 20 ok"),
        "{screen}\n{}",
        env.logs()
    );
    assert_eq!(host_lines(&env.known_hosts()), 20);
    // Known now: the next run asks nothing.
    s.keys(&[":"]);
    s.text("true");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #2 done", 120);
    assert!(screen.contains("run #2 done: 20 ok"), "{screen}");
    assert!(!screen.contains("New host keys"), "{screen}");
}

#[test]
fn console_two_keys_two_groups_accepting_one_runs_only_those() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(
        vec![SshdFleet::start(5), SshdFleet::start(5)],
        &["a", "b"],
        "",
    );
    let (fa, fb) = (fingerprint(&env.fleets[0]), fingerprint(&env.fleets[1]));
    assert_ne!(fa, fb, "two sshd with their own keys");
    let s = console(&env, "groups", 10);
    s.keys(&[":"]);
    s.text("echo hi-$CREW_HOST");
    s.keys(&["Enter"]);
    let screen = s.wait_for("New host keys", 90);
    assert!(screen.contains("10 host(s) wait"), "{screen}");
    assert!(
        screen.contains(&format!("> ssh-ed25519 {fa} \u{2014} a[01-05] (5)")),
        "group a first, highlighted:\n{screen}"
    );
    assert!(
        screen.contains(&format!("  ssh-ed25519 {fb} \u{2014} b[01-05] (5)")),
        "{screen}"
    );
    // Highlight b's key and accept it alone.
    s.keys(&["j"]);
    s.wait_for(&format!("> ssh-ed25519 {fb}"), 10);
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(
        screen.contains("run #1 done: 5 ok, 5 unreachable"),
        "{screen}\n{}",
        env.logs()
    );
    assert_eq!(screen.matches("hostkey").count(), 5, "a01-a05:\n{screen}");
    let kh = env.known_hosts();
    assert_eq!(host_lines(&kh), 5, "{kh}");
    let b_key = env.fleets[1]
        .host_pub
        .split_whitespace()
        .nth(1)
        .expect("key");
    assert_eq!(kh.matches(b_key).count(), 5, "b's key only:\n{kh}");
}

#[test]
fn hosts_keys_shows_known_unknown_changed_revoked_running_nothing() {
    if !require_tools(&["sshd"]) {
        return;
    }
    let fleet = SshdFleet::start(4);
    let hs = fleet.hosts();
    let port = fleet.port;
    let name = |i: usize| format!("[{}]:{}", hs[i].address, port);
    let key = fleet.host_pub.clone();
    let kh = format!(
        "{} {key}\n{} {}\n@revoked {} {key}\n",
        name(0),
        name(1),
        fleet.other_pub,
        name(2)
    );
    let env = Env::new(vec![fleet], &["host"], &kh);
    let fp = fingerprint(&env.fleets[0]);
    let out = env.crew(&["hosts", "--keys", "host*"]);
    let text = support::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "not all known:\n{text}");
    let khf = env.path().join("known_hosts");
    let row = |host: &str| {
        text.lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("no row for {host}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let expect = [
        ("host01", "known", Some(1)),
        ("host02", "changed", Some(2)),
        ("host03", "revoked", Some(3)),
        ("host04", "unknown", None),
    ];
    for (i, (host, state, line)) in expect.iter().enumerate() {
        let r = row(host);
        assert_eq!(r[1], name(i), "{text}");
        assert_eq!(&r[2..5], ["ssh-ed25519", fp.as_str(), state], "{text}");
        match line {
            Some(n) => assert_eq!(r[5], format!("{}:{n}", khf.display()), "{text}"),
            None => assert_eq!(r.len(), 5, "{text}"),
        }
    }
    assert!(
        text.contains("4 host(s): 1 known, 1 changed, 1 revoked, 1 unknown"),
        "{text}"
    );
    assert_eq!(env.known_hosts(), kh, "known_hosts untouched");
    // Nothing ran: no login was authenticated on the fleet.
    let logs = env.logs();
    assert!(!logs.contains("Accepted publickey"), "{logs}");
    // All known: exit 0.
    let out = env.crew(&["hosts", "--keys", "host01"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::cli::text(&out));
}

#[test]
fn console_esc_refuses_every_key() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "");
    let s = console(&env, "esc", 3);
    s.keys(&[":"]);
    s.text("true");
    s.keys(&["Enter"]);
    s.wait_for("New host keys", 90);
    s.keys(&["Escape"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(screen.contains("run #1 done: 3 unreachable"), "{screen}");
    assert_eq!(screen.matches("hostkey").count(), 3, "{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 0);
}

#[test]
fn crew_heist_run_on_a_terminal_asks_once_for_every_step_and_host() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(6)], &["host"], "").with_heist();
    let fp = fingerprint(&env.fleets[0]);
    let art = randomart(&env.fleets[0]);
    let s = env.tmux("heist", "heist run hk");
    let screen = s.wait_for("Accept this key?", 90);
    assert!(
        screen.contains(&format!("1) ssh-ed25519 {fp} \u{2014} host[01-06] (6)")),
        "one group: the fingerprint, the folded hosts and their count:\n{screen}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0, "nothing recorded yet");
    // `v` shows the visual host key ssh-keygen -lv draws for that key, then asks again.
    s.keys(&["v", "Enter"]);
    let screen = s.wait_for(&art[10], 30);
    for line in &art {
        assert!(
            screen.contains(&format!("  {line}")),
            "art line {line:?}:\n{screen}"
        );
    }
    s.keys(&["a", "Enter"]);
    let screen = s.wait_for("EXITED", 180);
    let all = s.scrollback();
    assert!(
        screen.contains("EXITED 0"),
        "every step on every host:\n{all}\n{}",
        env.logs()
    );
    assert!(
        all.contains("== heist hk completed: completed on 6/6 host(s)"),
        "{all}"
    );
    for step in ["[1/3 one] ok", "[2/3 two] ok", "[3/3 three] ok"] {
        assert_eq!(all.matches(step).count(), 6, "{step} on each host:\n{all}");
    }
    assert_eq!(
        all.matches("present host keys that known_hosts does not record")
            .count(),
        1,
        "one question for the whole heist, none per step:\n{all}"
    );
    let kh = env.known_hosts();
    assert_eq!(host_lines(&kh), 6, "one line per host:\n{kh}");
    drop(s);

    // Known now: the heist again asks nothing.
    let s = env.tmux("heist-again", "heist run hk");
    let screen = s.wait_for("EXITED", 180);
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(!s.scrollback().contains("Accept"), "asked again:\n{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 6, "nothing added");
}

#[test]
fn refusing_a_heist_s_question_gives_every_host_hostkey() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(4)], &["host"], "").with_heist();
    let s = env.tmux("heist-refuse", "heist run hk");
    s.wait_for("Accept this key?", 90);
    s.keys(&["n", "Enter"]);
    let screen = s.wait_for("EXITED", 180);
    let all = s.scrollback();
    assert!(screen.contains("EXITED 1"), "{all}");
    assert!(
        all.contains("== heist hk FAILED: completed on 0/4 host(s)"),
        "{all}"
    );
    // Long lines wrap at the pane's width: joined, each host's reason reads whole.
    let joined: String = all.lines().map(str::trim_end).collect();
    assert_eq!(
        joined.matches("FAILED: hostkey: ").count(),
        4,
        "each host's first step fails with hostkey:\n{all}"
    );
    assert_eq!(
        joined.matches("not accepted by the operator").count(),
        4,
        "and says why:\n{all}"
    );
    assert!(!all.contains("[2/3 two]"), "no host went on:\n{all}");
    assert_eq!(all.matches("Accept this key?").count(), 1, "{all}");
    assert_eq!(host_lines(&env.known_hosts()), 0);
}

#[test]
fn a_heist_without_a_terminal_refuses_unknown_keys_as_before() {
    if !require_tools(&["sshd"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "").with_heist();
    let out = env.crew(&["heist", "run", "hk"]);
    let text = support::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        !text.contains("Accept"),
        "asked without a terminal:\n{text}"
    );
    assert_eq!(
        text.matches("is unknown (ssh-ed25519 SHA256:").count(),
        3,
        "each host refused, naming its key:\n{text}"
    );
    assert!(
        text.contains("== heist hk FAILED: completed on 0/3 host(s)"),
        "{text}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0);
}

#[test]
fn console_popup_shows_the_visual_host_key_on_v() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "");
    let art = randomart(&env.fleets[0]);
    let s = console(&env, "art", 3);
    s.keys(&[":"]);
    s.text("true");
    s.keys(&["Enter"]);
    let screen = s.wait_for("New host keys", 90);
    assert!(!screen.contains(&art[0]), "no art before v:\n{screen}");
    s.keys(&["v"]);
    let screen = s.wait_for(&art[0], 10);
    for line in &art {
        assert!(screen.contains(line), "art line {line:?}:\n{screen}");
    }
    // v again hides it; the question is still open.
    s.keys(&["v"]);
    s.wait(&format!("no {}", art[0]), 10, |sc| !sc.contains(&art[0]));
    s.keys(&["a"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(screen.contains("run #1 done: 3 ok"), "{screen}");
}

#[test]
fn console_heist_asks_once_and_runs_every_step_on_the_accepted_hosts() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(4)], &["host"], "").with_heist();
    let fp = fingerprint(&env.fleets[0]);
    let s = console(&env, "console-heist", 4);
    s.keys(&["h"]);
    s.wait("the picker with the plan of `hk`", 20, |t| {
        t.contains("heist hk (") && t.contains("4 host(s)")
    });
    s.keys(&["Enter"]);
    let screen = s.wait_for("New host keys", 90);
    assert!(screen.contains("4 host(s) wait"), "{screen}");
    assert!(
        screen.contains(&format!("ssh-ed25519 {fp} \u{2014} host[01-04] (4)")),
        "{screen}"
    );
    assert_eq!(host_lines(&env.known_hosts()), 0, "nothing recorded yet");
    s.keys(&["a"]);
    let screen = s.wait("the final summary", 120, |t| {
        t.contains("heist completed:") && t.contains("4 completed")
    });
    assert!(!screen.contains("New host keys"), "asked again:\n{screen}");
    assert_eq!(host_lines(&env.known_hosts()), 4);
}

#[test]
fn crew_fetch_on_a_terminal_asks_as_crew_run_does() {
    if !require_tools(&["sshd", "tmux"]) {
        return;
    }
    let env = Env::new(vec![SshdFleet::start(3)], &["host"], "");
    let fp = fingerprint(&env.fleets[0]);
    let s = env.tmux("fetch", "fetch 'host*' /etc/hostname got");
    let screen = s.wait_for("Accept this key?", 90);
    assert!(
        screen.contains(&format!("1) ssh-ed25519 {fp} \u{2014} host[01-03] (3)")),
        "{screen}"
    );
    s.keys(&["a", "Enter"]);
    let screen = s.wait_for("EXITED", 120);
    assert!(
        screen.contains("EXITED 0"),
        "{}\n{}",
        s.scrollback(),
        env.logs()
    );
    for h in ["host01", "host02", "host03"] {
        let got = env.path().join("got").join(h).join("etc/hostname");
        assert!(got.is_file(), "{} fetched:\n{screen}", got.display());
    }
    assert_eq!(host_lines(&env.known_hosts()), 3);
}
