//! The `crew` binary end to end: `crew run` (plain, --gather, --json, exit status),
//! `crew status`, `crew daemon stop`, with a temp CREW_HOME and a hosts.toml of `local`
//! hosts (agents are child processes of the daemon the first `crew run` starts).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HOSTS: &str = r#"
[defaults]
transport = "local"

[[host]]
name = "node[1-3]"
tags = ["role=app"]

[[host]]
name = "odd1"
tags = ["role=odd"]
"#;

/// A temp CREW_HOME and hosts.toml; stops the daemon it started when dropped.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts.toml"), HOSTS).expect("hosts.toml");
        std::fs::create_dir(dir.path().join("home")).expect("home");
        std::fs::create_dir(dir.path().join("tmp")).expect("tmp");
        Env { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn crew(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_crew"))
            .args([
                "--hosts",
                &self.dir.path().join("hosts.toml").display().to_string(),
            ])
            .args(args)
            .env("CREW_HOME", self.home())
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            // The daemon's local agents keep their dirs here: another test's agents (same
            // user) would otherwise reap this test's dead agents' leftovers.
            .env("TMPDIR", self.tmp())
            .env_remove("NO_COLOR")
            .current_dir(self.dir.path())
            .output()
            .expect("run crew")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.crew(&["daemon", "stop"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

#[test]
fn plain_run_prefixes_lines_and_sanitises() {
    let env = Env::new();
    let out = env.crew(&[
        "run",
        "role=app",
        "--",
        r"echo hi from $CREW_HOST; echo warn >&2; printf '\033[31mred\n'",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut expected = Vec::new();
    for h in ["node1", "node2", "node3"] {
        expected.push(format!("{h} | hi from {h}"));
        expected.push(format!("{h} ! warn"));
        expected.push(format!("{h} | ^[[31mred"));
    }
    expected.sort();
    assert_eq!(sorted_lines(&stdout), expected);
    assert!(
        !out.stdout.contains(&0x1b),
        "no raw escape reaches the terminal"
    );
    // Each host's lines keep their order.
    let n1: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("node1 |"))
        .collect();
    assert_eq!(n1, ["node1 | hi from node1", "node1 | ^[[31mred"]);
    assert!(stderr.contains("ok:          node[1-3] (3)"), "{stderr}");
}

#[test]
fn gather_folds_identical_hosts_and_failures_exit_1() {
    let env = Env::new();
    let out = env.crew(&[
        "run",
        "--gather",
        "role=app | odd1",
        "--",
        "if [ $CREW_HOST = odd1 ]; then echo different; exit 4; fi; echo same",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let expected = "---------------\nnode[1-3] (3)\n---------------\nsame\n\
                    ---------------\nodd1 (1)\n---------------\ndifferent\n[exit 4]\n";
    assert_eq!(stdout, expected);
    assert!(stderr.contains("ok:          node[1-3] (3)"), "{stderr}");
    assert!(
        stderr.contains("failed:      odd1 (1) — exit 4: odd1"),
        "{stderr}"
    );
}

#[test]
fn json_lines_carry_every_event() {
    let env = Env::new();
    let out = env.crew(&["run", "--json", "odd1", "--", "echo a; echo b >&2; exit 2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(events.iter().all(|e| e["host"] == "odd1"), "{events:?}");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"exit"));
    let find = |k: &str| events.iter().find(|e| e["event"] == k).expect(k).clone();
    assert_eq!(find("stdout")["data"], "a");
    assert_eq!(find("stderr")["data"], "b");
    let exit = find("exit");
    assert_eq!(exit["code"], 2);
    assert!(exit["signal"].is_null());
    assert!(exit["wall_ms"].is_u64());
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let bad = env.crew(&["run", "role=app & (", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains('^'), "a caret under the error: {err}");
    let none = env.crew(&["run", "role=nothing", "--", "true"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("no hosts match"),
        "{}",
        text(&none.stderr)
    );
    assert!(
        !env.home().join("daemon.sock").exists(),
        "no daemon for a usage error"
    );
}

#[test]
fn status_and_daemon_stop() {
    let env = Env::new();
    let none = env.crew(&["daemon", "stop"]);
    assert_eq!(none.status.code(), Some(0));
    assert!(text(&none.stdout).contains("no daemon running"));

    let run = env.crew(&["run", "node[1-2]", "--", "true"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let socket = env.home().join("daemon.sock");
    assert!(socket.exists(), "the daemon stays resident");
    let st = env.crew(&["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stderr));
    let table = text(&st.stdout);
    assert!(table.contains("daemon pid"), "{table}");
    for h in ["node1", "node2"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(h))
            .expect("a row per host");
        assert!(row.contains("ready"), "{row}");
    }
    // The run is on disk and in the audit log.
    assert!(runs(&env.home()).len() == 1);
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("\"command\":\"true\""), "{audit}");

    let stop = env.crew(&["daemon", "stop"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop.stderr));
    assert!(text(&stop.stdout).contains("stopped"));
    assert!(!socket.exists(), "socket removed");
    let st = env.crew(&["status"]);
    assert!(text(&st.stdout).contains("no daemon running"));
}

fn runs(home: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(home.join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn ctrl_c_kills_the_run_and_still_prints_the_summary() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args([
            "--hosts",
            &env.dir.path().join("hosts.toml").display().to_string(),
        ])
        .args(["run", "node[1-2]", "--", "echo up; sleep 1000"])
        .env("CREW_HOME", env.home())
        .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
        .env("TMPDIR", env.tmp())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn crew run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut up = 0;
    while up < 2 {
        let line = lines
            .next()
            .expect("output before the interrupt")
            .expect("line");
        if line.ends_with("| up") {
            up += 1;
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let out = child.wait_with_output().expect("crew exits after Ctrl-C");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("killed:      node[1-2] (2)"), "{stderr}");
    // The daemon recorded the run as killed on both hosts.
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("[\"node1\",\"killed\"]"), "{audit}");
}

#[test]
fn outcome_selection_reruns_exactly_the_failed_hosts() {
    let env = Env::new();
    let first = env.crew(&[
        "run",
        "role=app | role=odd",
        "--",
        "[ $CREW_HOST = node2 -o $CREW_HOST = odd1 ] && exit 4; true",
    ]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let again = env.crew(&["run", "?failed", "--", "echo again on $CREW_HOST"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(
        sorted_lines(&text(&again.stdout)),
        vec!["node2 | again on node2", "odd1  | again on odd1"]
    );
    // `crew hosts` reads the same outcomes from the run store, without a daemon.
    let listed = env.crew(&["hosts", "?ok & role=app"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("1 host: node2"),
        "{}",
        text(&listed.stdout)
    );
    // The latest run succeeded everywhere, so nothing failed any more.
    let none = env.crew(&["run", "?failed", "--", "true"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("no hosts match"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn fanout_0_and_timeout_0_are_usage_errors() {
    let env = Env::new();
    for (args, what) in [
        (["--fanout", "0"], "--fanout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "0s"], "--timeout"),
    ] {
        let out = env.crew(&["run", args[0], args[1], "odd1", "--", "true"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(what), "{args:?}: {err}");
    }
    assert!(
        !env.home().join("daemon.sock").exists(),
        "no daemon for a usage error"
    );
    let ok = env.crew(&[
        "run",
        "--fanout",
        "1",
        "--timeout",
        "1ms",
        "odd1",
        "--",
        "true",
    ]);
    assert_ne!(ok.status.code(), Some(2), "{}", text(&ok.stderr));
}

/// A throwaway user for one test, removed (with its home) when dropped.
struct TempUser(String);

impl TempUser {
    /// None (with a note) where users cannot be made: not root, or no useradd. Under CI that
    /// is a failure.
    fn new() -> Option<TempUser> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let name = format!("crewt{}", std::process::id());
        let made = root
            && Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", &name])
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must be able to make a throwaway user (root and useradd)"
            );
            eprintln!("SKIPPED: cannot make a throwaway user (needs root and useradd)");
            return None;
        }
        Some(TempUser(name))
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[test]
fn another_users_client_is_told_whose_daemon_it_is() {
    use std::os::unix::fs::PermissionsExt;
    let Some(user) = TempUser::new() else { return };
    let env = Env::new();
    let run = env.crew(&["run", "odd1", "--", "true"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let socket = env.home().join("daemon.sock");
    assert!(socket.exists(), "the daemon runs");
    // The other user can reach the socket's directory (not the point under test).
    for d in [env.dir.path(), &env.home()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = Command::new("runuser")
        .args(["-u", &user.0, "--", env!("CARGO_BIN_EXE_crew"), "status"])
        .env("CREW_HOME", env.home())
        .env("HOME", "/nonexistent")
        .output()
        .expect("runuser");
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let want = format!("the daemon at {} belongs to uid 0", socket.display());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    // The daemon is unharmed and still ours.
    let st = env.crew(&["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stderr));
}

#[test]
fn json_output_rebuilds_the_exact_bytes() {
    let env = Env::new();
    let events = |cmd: &str| -> Vec<serde_json::Value> {
        let out = env.crew(&["run", "--json", "odd1", "--", cmd]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .filter(|e: &serde_json::Value| e["event"] == "stdout")
            .collect()
    };
    let pieces = |ev: &[serde_json::Value]| -> Vec<(String, bool)> {
        ev.iter()
            .map(|e| {
                let data = e["data"].as_str().expect("data").to_string();
                (data, e["eol"].as_bool().expect("eol"))
            })
            .collect()
    };
    let without = events("printf 'x\\ny'");
    let with = events("printf 'x\\ny\\n'");
    assert_eq!(
        pieces(&without),
        [("x".to_string(), true), ("y".to_string(), false)]
    );
    assert_eq!(
        pieces(&with),
        [("x".to_string(), true), ("y".to_string(), true)]
    );
    // A line of 150 000 bytes and bytes that are not UTF-8.
    let long = events("head -c 150000 /dev/zero | tr '\\0' a; printf '\\n\\377\\n'");
    let total: usize = long
        .iter()
        .take_while(|e| e["eol"] == false)
        .map(|e| e["data"].as_str().expect("data").len())
        .sum();
    let first_eol = long.iter().position(|e| e["eol"] == true).expect("an eol");
    let last_piece = long[first_eol]["data"].as_str().expect("data").len();
    assert_eq!(total + last_piece, 150_000, "one line, in marked pieces");
    assert_eq!(long.last().expect("last")["bytes"], "/w==", "0xff exactly");
}

/// Live (non-zombie) processes in process group `pgid`.
fn group_alive(pgid: u32) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some(i) = stat.rfind(')') else {
                return false;
            };
            let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
            f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
        })
        .count()
}

/// Through the daemon: the agent's keeper kills the job's group at once, and the pool's Reap
/// on reconnect would too (each alone makes this pass; without both the sleep survives).
#[test]
fn an_agent_killed_mid_run_is_lost_and_failed_and_leaves_no_process() {
    agent_killed_mid_run(false);
}

/// Agent and keeper both killed: the daemon reconnects, the new agent's Reap kills the
/// leftover and `crew status` says so.
#[test]
fn leftovers_of_a_dead_agent_and_keeper_are_reaped_on_reconnect() {
    let env = agent_killed_mid_run(true);
    // The note is set once the Reap's answer is in, just after the kill.
    let want = "killed 1 leftover process(es) in 1 group(s) of a dead agent";
    let mut st = String::new();
    for _ in 0..100 {
        st = text(&env.crew(&["status"]).stdout);
        if st
            .lines()
            .any(|l| l.starts_with("odd1") && l.contains(want))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_dir(env.home().join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    panic!("no leftover note in crew status: {st}\nlogs:\n{log}");
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn agent_killed_mid_run(with_keeper: bool) -> Env {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let warm = env.crew(&["run", "odd1", "--", "true"]);
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args([
            "--hosts",
            &env.dir.path().join("hosts.toml").display().to_string(),
            "run",
            "--json",
            "odd1",
            "--",
            "echo before; sleep 60; echo done",
        ])
        .env("CREW_HOME", env.home())
        .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
        .env("TMPDIR", env.tmp())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("crew run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut pgid = None;
    for line in lines.by_ref() {
        let ev: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
        if ev["event"] == "started" {
            pgid = ev["pid"].as_u64().map(|p| p as u32);
        }
        if ev["event"] == "stdout" && ev["data"] == "before" {
            break;
        }
    }
    let pgid = pgid.expect("a started event");
    // bash forks its sleep after the echo: it must be there, or "none left" proves nothing.
    for _ in 0..500 {
        if group_alive(pgid) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        group_alive(pgid) >= 2,
        "bash and its sleep run in group {pgid}"
    );
    let st = text(&env.crew(&["status"]).stdout);
    let agent: i32 = st
        .lines()
        .find(|l| l.starts_with("odd1"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the agent's pid in {st}"));
    let keeper = children_of(agent).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "crew-keeper")
    });
    let keeper = keeper.expect("the agent's keeper");
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        if with_keeper {
            libc::kill(keeper, libc::SIGSTOP);
        }
        libc::kill(agent, libc::SIGKILL);
        if with_keeper {
            libc::kill(keeper, libc::SIGKILL);
        }
    }
    let rest: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect();
    let status = child.wait().expect("crew run ends");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    let last = rest.last().expect("an event after the kill");
    assert_eq!(
        (&last["event"], &last["kind"], &last["verdict"]),
        (&"error".into(), &"lost".into(), &"failed".into()),
        "{last}"
    );
    assert!(err.contains("failed:      odd1 (1) — lost: odd1"), "{err}");
    // The pool reconnects after its first backoff; allow it a few seconds.
    for _ in 0..500 {
        if group_alive(pgid) == 0 {
            return env;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the job's processes (group {pgid}) outlived the killed agent");
}
