//! `crew run --sudo` against a real sshd and the real sudo on loopback, with throwaway users
//! and a sudoers drop-in the test creates (and removes, also when it fails):
//!
//! - `np`: NOPASSWD — root without any password;
//! - `pw`: a password — a wrong one gives an `auth` verdict and exactly one failed attempt in
//!   sudo's log, the right one gives root, and a later `--sudo` run needs no password (the
//!   privileged agent is reused; sudo's own timestamp is off, so only reuse explains it);
//!   its `.bashrc` prints `password: ` and waits for an answer it must never get;
//! - `no`: not in sudoers — a clear per-host error;
//! - `tt`: `requiretty` with a password — works (a PTY for sudo).
//!
//! Meanwhile the password must appear in no process's command line, in no crew process's
//! environment, and in no file under CREW_HOME (debug logs included).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::netns::bounded;
use support::{find_tool, require_tool};

/// Users, the sudoers drop-in and the sshd, removed on drop.
struct Machine {
    dir: tempfile::TempDir,
    tag: String,
    users: Vec<String>,
    sudoers: Option<PathBuf>,
    sshd: Option<std::process::Child>,
    port: u16,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(c) = self.sshd.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(f) = &self.sudoers {
            let _ = std::fs::remove_file(f);
        }
        for u in &self.users {
            // Whatever the test left running as that user goes first (only our users).
            kill_user_processes(u);
            let _ = Command::new(find_tool("userdel").unwrap_or_else(|| "userdel".into()))
                .args(["-r", "-f", u])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// SIGKILL every process of throwaway user `user` (by pid, from /proc).
fn kill_user_processes(user: &str) {
    let Ok(out) = Command::new("id").args(["-u", user]).output() else {
        return;
    };
    let Ok(uid) = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>() else {
        return;
    };
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if owner == Some(uid) {
            // SAFETY: kill has no memory effects; the process belongs to our throwaway user.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = bounded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn random_word() -> String {
    let mut b = [0u8; 9];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn available() -> bool {
    for t in [
        "sshd",
        "sudo",
        "useradd",
        "visudo",
        "chpasswd",
        "ssh-keygen",
    ] {
        if !require_tool(t) {
            return false;
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") {
            panic!("CI=true and the sudo test needs root (throwaway users, sudoers)");
        }
        eprintln!("SKIPPED: the sudo test needs root");
        return false;
    }
    true
}

const PW_BASHRC: &str = "printf 'password: ' >&2\nprintf 'Password: '\n\
    if read -t 3 line; then printf '%s' \"$line\" > \"$HOME/got-answer\"; fi\n";

impl Machine {
    fn user(&self, short: &str) -> String {
        format!("cr{short}{}", self.tag)
    }

    fn setup(password: &str) -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("crew-sudo-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        // One set of users per test (tests of this file run at the same time).
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut m = Machine {
            tag: format!("{}{seq}", std::process::id() % 100_000),
            users: Vec::new(),
            sudoers: None,
            sshd: None,
            port: 0,
            dir,
        };
        let d = m.dir.path().to_path_buf();
        // Keys, readable by the users' sshd sessions (StrictModes off).
        for k in ["host_key", "client_key"] {
            run_ok(
                Command::new(find_tool("ssh-keygen").expect("ssh-keygen"))
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(d.join(k)),
            );
        }
        let client_pub = std::fs::read_to_string(d.join("client_key.pub")).expect("pub");
        std::fs::write(d.join("authorized_keys"), &client_pub).expect("authorized_keys");
        std::fs::set_permissions(
            d.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        // The agent, installed beforehand in a directory every user can read.
        let exe = Path::new(env!("CARGO_BIN_EXE_crew"));
        let build = crew::paths::file_hash(exe).expect("hash");
        std::fs::create_dir_all(d.join("agents")).expect("agents");
        std::fs::copy(exe, d.join(format!("agents/agent-{build}"))).expect("agent");

        for short in ["np", "pw", "no", "tt"] {
            let u = m.user(short);
            m.users.push(u.clone());
            run_ok(Command::new(find_tool("useradd").expect("useradd")).args([
                "-m",
                "-s",
                "/bin/bash",
                &u,
            ]));
        }
        // Passwords through chpasswd's stdin (never its arguments).
        for u in &m.users {
            let mut c = Command::new(find_tool("chpasswd").expect("chpasswd"))
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("chpasswd");
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(format!("{u}:{password}\n").as_bytes())
                .expect("write");
            assert!(c.wait().expect("chpasswd").success());
        }
        let home_pw = PathBuf::from(format!("/home/{}", m.user("pw")));
        std::fs::write(home_pw.join(".bashrc"), PW_BASHRC).expect("bashrc");

        let log = d.join("sudo.log");
        let text = format!(
            "Defaults:{np} timestamp_timeout=0\n\
             Defaults:{pw} timestamp_timeout=0, logfile={log}\n\
             Defaults:{tt} timestamp_timeout=0, requiretty\n\
             Defaults:{no} logfile={log}\n\
             {np} ALL=(ALL:ALL) NOPASSWD: ALL\n\
             {pw} ALL=(ALL:ALL) ALL\n\
             {tt} ALL=(ALL:ALL) ALL\n",
            np = m.user("np"),
            pw = m.user("pw"),
            tt = m.user("tt"),
            no = m.user("no"),
            log = log.display(),
        );
        let candidate = d.join("sudoers");
        std::fs::write(&candidate, text).expect("sudoers");
        run_ok(
            Command::new(find_tool("visudo").expect("visudo"))
                .arg("-cf")
                .arg(&candidate),
        );
        let dropin = PathBuf::from(format!("/etc/sudoers.d/crew-test-{}", m.tag));
        std::fs::copy(&candidate, &dropin).expect("install sudoers drop-in");
        std::fs::set_permissions(&dropin, std::fs::Permissions::from_mode(0o440)).expect("chmod");
        m.sudoers = Some(dropin);

        // sshd on loopback (the users' real homes; PAM off for sshd, sudo uses its own).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        m.port = listener.local_addr().expect("addr").port();
        drop(listener);
        std::fs::create_dir_all("/run/sshd").expect("privsep dir");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n\
                 MaxStartups 100\n",
                port = m.port,
                d = d.display()
            ),
        )
        .expect("sshd_config");
        let log_file = std::fs::File::create(d.join("sshd.log")).expect("log");
        m.sshd = Some(
            Command::new(find_tool("sshd").expect("sshd"))
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stderr(log_file)
                .spawn()
                .expect("sshd"),
        );
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", m.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host pub");
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {host_pub}", m.port),
        )
        .expect("known_hosts");
        let mut hosts = format!(
            "[defaults]\nport = {}\nidentity_file = \"{d}/client_key\"\n\
             identities_only = true\nknown_hosts = \"{d}/known_hosts\"\nagent_dir = \"{d}/agents\"\n\
             ssh_config = \"{d}/empty_ssh_config\"\n",
            m.port,
            d = d.display()
        );
        std::fs::write(d.join("empty_ssh_config"), "").expect("ssh config");
        for short in ["np", "pw", "no", "tt"] {
            hosts += &format!(
                "\n[[host]]\nname = \"{short}\"\naddress = \"127.0.0.1\"\nuser = \"{}\"\n",
                m.user(short)
            );
        }
        std::fs::write(d.join("hosts.toml"), hosts).expect("hosts.toml");
        std::fs::create_dir_all(d.join("crewhome")).expect("crew home");
        m
    }

    fn askpass(&self, password: &str) -> PathBuf {
        let p = self.dir.path().join(format!("askpass-{}", random_word()));
        std::fs::write(&p, format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n")).expect("askpass");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        p
    }

    /// `crew run --json --sudo -w HOST -- CMD` with `askpass` (or none).
    fn crew_run(&self, host: &str, cmd: &str, askpass: Option<&Path>) -> serde_json::Value {
        let d = self.dir.path();
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.args(["--hosts"])
            .arg(d.join("hosts.toml"))
            .args(["run", "--json", "--sudo", host, "--", cmd])
            .env("CREW_HOME", d.join("crewhome"))
            .env("CREW_CONFIG_DIR", d.join("crewcfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env("CREW_LOG", "debug")
            .env_remove("SSH_AUTH_SOCK");
        match askpass {
            Some(a) => c.env("CREW_ASKPASS", a),
            None => c.env_remove("CREW_ASKPASS"),
        };
        let out = bounded(&mut c, Duration::from_secs(90));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut last = serde_json::Value::Null;
        let mut stdout = String::new();
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            match v["event"].as_str() {
                Some("stdout") => {
                    // One event per line, without its newline.
                    stdout.push_str(v["data"].as_str().unwrap_or(""));
                    stdout.push('\n');
                }
                Some("exit") | Some("error") => last = v,
                _ => {}
            }
        }
        assert!(
            !last.is_null(),
            "{host}: no result; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last["stdout"] = serde_json::Value::String(stdout);
        last
    }

    /// `crew ARGS…` against this machine's hosts, with `askpass` (or none); its output.
    fn crew(&self, args: &[&str], askpass: Option<&Path>) -> std::process::Output {
        let d = self.dir.path();
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.args(["--hosts"])
            .arg(d.join("hosts.toml"))
            .args(args)
            .current_dir(d)
            .env("CREW_HOME", d.join("crewhome"))
            .env("CREW_CONFIG_DIR", d.join("crewcfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env("CREW_LOG", "debug")
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK");
        match askpass {
            Some(a) => c.env("CREW_ASKPASS", a),
            None => c.env_remove("CREW_ASKPASS"),
        };
        bounded(&mut c, Duration::from_secs(90))
    }

    fn sudo_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sudo.log")).unwrap_or_default()
    }
}

/// The newest run's `<host>.out` in the run store.
fn newest_output(runs: &Path, host: &str) -> Vec<u8> {
    newest_output_named(runs, &format!("{host}.out"))
}

fn newest_output_named(runs: &Path, file: &str) -> Vec<u8> {
    let newest = std::fs::read_dir(runs)
        .expect("run store")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("a run");
    std::fs::read(runs.join(newest.to_string()).join(file)).expect("output file")
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// Processes whose command line (any process) or environment (crew's own processes: the
/// client, the daemon, agents) holds `needle`.
fn processes_holding(needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        if std::fs::read(e.path().join("cmdline")).is_ok_and(|b| has(&b)) {
            hits.push(format!("{pid} cmdline"));
        }
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        let name = exe.file_name().map(|n| n.to_string_lossy().into_owned());
        let crew_proc = name
            .as_deref()
            .is_some_and(|n| n == "crew" || n.starts_with("agent-"));
        if crew_proc && std::fs::read(e.path().join("environ")).is_ok_and(|b| has(&b)) {
            hits.push(format!("{pid} environ ({})", exe.display()));
        }
    }
    hits
}

#[test]
fn sudo_nopasswd_password_wrong_password_not_in_sudoers_requiretty() {
    if !available() {
        return;
    }
    let password = format!("Pw-{}", random_word());
    let m = Machine::setup(&password);
    let good = m.askpass(&password);
    let wrong = m.askpass("not-the-password");

    // Watch every process while the runs go on: the password must never show.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, needle) = (stop.clone(), password.clone().into_bytes());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) && rounds < 20_000 {
                seen.extend(processes_holding(&needle));
                rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, rounds)
        })
    };

    // NOPASSWD: root, no password asked for (none given: no terminal, no askpass).
    let r = m.crew_run("np", "id -u", None);
    assert_eq!(r["verdict"], "ok", "{r}");
    assert_eq!(r["stdout"], "0\n", "{r}");

    // A wrong password: `auth`, one attempt only.
    let r = m.crew_run("pw", "id -u", Some(&wrong));
    assert_eq!(r["event"], "error", "{r}");
    assert_eq!(r["kind"], "auth", "{r}");
    assert_eq!(r["verdict"], "unreachable", "{r}");
    let msg = r["message"].as_str().unwrap_or("");
    assert!(msg.contains("refused the password"), "{msg}");
    // sudo's log file wraps long lines (newline and four spaces).
    let log = m.sudo_log().replace("\n    ", " ");
    assert_eq!(
        log.matches("incorrect password attempt").count(),
        1,
        "one line about failed attempts in sudo's log:\n{log}"
    );
    assert!(
        log.contains(" : 1 incorrect password attempt ;"),
        "exactly one failed attempt in sudo's log:\n{log}"
    );
    // The same wrong password again is not even sent (no lockout).
    let r = m.crew_run("pw", "id -u", Some(&wrong));
    assert_eq!(r["kind"], "auth", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or("")
            .contains("not sent again"),
        "{r}"
    );
    assert_eq!(
        m.sudo_log().matches("incorrect password attempt").count(),
        1
    );

    // The right one: root. The login's `.bashrc` asked `password:` and got nothing.
    let r = m.crew_run("pw", "sleep 1; id -u", Some(&good));
    assert_eq!(r["verdict"], "ok", "{r}");
    assert_eq!(r["stdout"], "0\n", "{r}");
    let got = PathBuf::from(format!("/home/{}/got-answer", m.user("pw")));
    assert_eq!(
        std::fs::read_to_string(&got).unwrap_or_default(),
        "",
        "the login's `password:` must get no answer"
    );
    // Later runs need no password: the privileged agent is reused (sudo's own timestamp is
    // off, so sudo would ask again).
    let r = m.crew_run("pw", "id -u; id -un", None);
    assert_eq!(r["verdict"], "ok", "{r}");
    assert_eq!(r["stdout"], "0\nroot\n", "{r}");
    // A command that prints `password:` gets nothing either.
    let r = m.crew_run(
        "pw",
        "printf 'password: '; read -t 2 x; echo \"[$x]\"",
        Some(&good),
    );
    assert_eq!(r["stdout"], "password: []\n", "{r}");

    // Not in sudoers: a clear error for that host.
    let r = m.crew_run("no", "id -u", Some(&good));
    assert_eq!(r["kind"], "auth", "{r}");
    let msg = r["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&format!("{} may not run the agent as root", m.user("no"))),
        "{msg}"
    );
    assert!(msg.contains("not in the sudoers file"), "{msg}");

    // requiretty: sudo gets a terminal, the frames still pass, every byte value unchanged
    // (the run store keeps the raw output: its hash must be the one the host printed).
    let r = m.crew_run("tt", "id -u", Some(&good));
    assert_eq!(r["verdict"], "ok", "{r}");
    assert_eq!(r["stdout"], "0\n", "{r}");
    let r = m.crew_run(
        "tt",
        "head -c 300000 /dev/urandom > r; sha256sum < r | cut -d' ' -f1 >&2; cat r",
        None,
    );
    assert_eq!(r["verdict"], "ok", "{r}");
    let daemon_log =
        std::fs::read_to_string(m.dir.path().join("crewhome/logs/daemon.log")).unwrap_or_default();
    assert!(
        daemon_log.contains("tt: sudo wants a terminal; again with a PTY"),
        "requiretty made crew use a PTY"
    );
    let raw = newest_output(&m.dir.path().join("crewhome/runs"), "tt");
    assert_eq!(raw.len(), 300_000);
    let err = newest_output_named(&m.dir.path().join("crewhome/runs"), "tt.err");
    assert_eq!(
        String::from_utf8_lossy(&err).trim(),
        sha256_hex(&raw),
        "bytes through the PTY arrived changed"
    );

    // A heist with `become` (and one step that opts out), in a daemon of its own: the
    // password is asked once (askpass) for the whole heist.
    let heists = m.dir.path().join("heists");
    std::fs::create_dir_all(&heists).expect("heists dir");
    std::fs::write(
        heists.join("rooty.toml"),
        "[heist.rooty]\nselect = \"pw\"\nbecome = true\n\n\
         [[heist.rooty.step]]\nname = \"as-root\"\nrun = \"id -u\"\n\n\
         [[heist.rooty.step]]\nname = \"as-me\"\nbecome = false\nrun = \"id -un\"\n",
    )
    .expect("heist file");
    let home2 = m.dir.path().join("crewhome2");
    let out = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .arg("--hosts")
            .arg(m.dir.path().join("hosts.toml"))
            .args(["heist", "run", "rooty", "--json"])
            .env("CREW_HOME", &home2)
            .env("CREW_CONFIG_DIR", m.dir.path().join("crewcfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env("CREW_ASKPASS", &good)
            .env("CREW_LOG", "debug"),
        Duration::from_secs(90),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "step_finished")
        .map(|v| v["result"]["stdout"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        results,
        ["0\n".to_string(), format!("{}\n", m.user("pw"))],
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    let _ = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", &home2),
        Duration::from_secs(30),
    );
    let files = files_containing(&home2, password.as_bytes());
    assert!(files.is_empty(), "the password is in {files:?}");

    stop.store(true, Ordering::Relaxed);
    let (seen, rounds) = watcher.join().expect("watcher");
    assert!(rounds > 10, "the process watcher ran ({rounds} rounds)");
    assert!(seen.is_empty(), "the password showed in: {seen:?}");
    let home = m.dir.path().join("crewhome");
    assert!(home.join("logs").is_dir(), "crew logged under CREW_HOME");
    let files = files_containing(&home, password.as_bytes());
    assert!(files.is_empty(), "the password is in {files:?}");

    let _ = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", &home),
        Duration::from_secs(30),
    );
}

/// Watch every process until stopped: where `needle` showed (command lines, crew's environ).
fn watch_processes(needle: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<(Vec<String>, u32)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (stop, needle) = (stop.clone(), needle.as_bytes().to_vec());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) && rounds < 20_000 {
                seen.extend(processes_holding(&needle));
                rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, rounds)
        })
    };
    (stop, handle)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn put_and_fetch_with_sudo_reach_root_only_places_and_keep_the_owner() {
    use std::os::unix::fs::MetadataExt;
    if !available() {
        return;
    }
    let password = format!("Pw-{}", random_word());
    let m = Machine::setup(&password);
    let good = m.askpass(&password);
    let d = m.dir.path();
    let (stop, watcher) = watch_processes(&password);

    // A directory only root may enter, with a root-only file in it.
    let vault = d.join("vault");
    std::fs::create_dir_all(&vault).expect("vault");
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = vault.join("secret.conf");
    std::fs::write(&secret, "root only\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The source belongs to the `np` user here; as root, crew keeps that owner.
    let src = d.join("app.conf");
    std::fs::write(&src, format!("key = {}\n", random_word()).repeat(5000)).expect("source");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let np_uid: u32 = run_ok(Command::new("id").args(["-u", &m.user("np")]))
        .trim()
        .parse()
        .expect("uid");
    std::os::unix::fs::chown(&src, Some(np_uid), Some(np_uid)).expect("chown the source");
    let src_s = src.to_str().expect("utf8");
    let vault_dir = format!("{}/", vault.display());

    // Without --sudo: the login user may not write there; a clear per-host error.
    let out = m.crew(&["put", "pw", src_s, &vault_dir], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("pw:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("a line for pw: {t}"));
    assert!(
        line.contains("Permission denied") && line.contains("vault"),
        "{line}"
    );
    assert!(!vault.join("app.conf").exists(), "{t}");

    // With --sudo (the password from askpass): it arrives, byte-exact, mode kept, owned as
    // the source is (we are root here).
    let out = m.crew(&["put", "--sudo", "pw", src_s, &vault_dir], Some(&good));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let got = vault.join("app.conf");
    assert_eq!(
        sha256_hex(&std::fs::read(&got).expect("arrived")),
        sha256_hex(&std::fs::read(&src).expect("source")),
        "{t}"
    );
    let meta = std::fs::metadata(&got).expect("meta");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (np_uid, np_uid), "owner kept");

    // Fetch: a root-only file, refused without --sudo, brought back with it (the
    // privileged agent is reused: no password this time).
    let local = d.join("fetched");
    let local_s = local.to_str().expect("utf8");
    let secret_s = secret.to_str().expect("utf8");
    let out = m.crew(&["fetch", "pw", secret_s, local_s], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Permission denied"), "{t}");
    let out = m.crew(&["fetch", "--sudo", "pw", secret_s, local_s], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let back = local
        .join("pw")
        .join(secret.strip_prefix("/").expect("absolute"));
    assert_eq!(
        std::fs::read_to_string(&back).unwrap_or_default(),
        "root only\n",
        "{t}"
    );

    // Heist put and fetch steps with `become`, in a daemon of its own (the password asked
    // once for the heist, through askpass).
    let heists = d.join("heists");
    std::fs::create_dir_all(&heists).expect("heists dir");
    std::fs::copy(&src, heists.join("app.conf")).expect("heist source");
    std::fs::write(
        heists.join("stash.toml"),
        format!(
            "[heist.stash]\nselect = \"pw\"\nbecome = true\n\n\
             [[heist.stash.step]]\nname = \"ship\"\n\
             put = {{ from = \"app.conf\", to = \"{vault}/heist.conf\", mode = 0o600 }}\n\n\
             [[heist.stash.step]]\nname = \"collect\"\n\
             fetch = {{ from = \"{secret}\", to = \"{d}/heist-${{host}}.secret\" }}\n",
            vault = vault.display(),
            secret = secret.display(),
            d = d.display(),
        ),
    )
    .expect("heist file");
    let home2 = d.join("crewhome2");
    let out = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .arg("--hosts")
            .arg(d.join("hosts.toml"))
            .args(["heist", "run", "stash"])
            .current_dir(d)
            .env("CREW_HOME", &home2)
            .env("CREW_CONFIG_DIR", d.join("crewcfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env("CREW_ASKPASS", &good)
            .env("CREW_LOG", "debug"),
        Duration::from_secs(90),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let heist_conf = vault.join("heist.conf");
    assert_eq!(
        std::fs::read(&heist_conf).expect("heist put"),
        std::fs::read(&src).expect("source"),
        "{t}"
    );
    assert_eq!(
        std::fs::metadata(&heist_conf).expect("meta").mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(d.join("heist-pw.secret")).unwrap_or_default(),
        "root only\n",
        "{t}"
    );
    let _ = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", &home2),
        Duration::from_secs(30),
    );
    let files = files_containing(&home2, password.as_bytes());
    assert!(files.is_empty(), "the password is in {files:?}");

    let _ = bounded(
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", d.join("crewhome")),
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::Relaxed);
    let (seen, rounds) = watcher.join().expect("watcher");
    assert!(rounds > 10, "the process watcher ran ({rounds} rounds)");
    assert!(seen.is_empty(), "the password showed in: {seen:?}");
    let home = d.join("crewhome");
    assert!(home.join("logs").is_dir(), "crew logged under CREW_HOME");
    let files = files_containing(&home, password.as_bytes());
    assert!(files.is_empty(), "the password is in {files:?}");
}
