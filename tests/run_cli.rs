//! The `crew` binary end to end: `crew run` (plain, --gather, --json, --timeout, --fanout,
//! colour, Ctrl-C on its terminal, exit status), `crew status`, `crew daemon stop`, with a
//! temp CREW_HOME and a hosts.toml of `local` hosts (agents are child processes of the
//! daemon the first `crew run` starts).

mod support;

use std::time::{Duration, Instant};

use crew::model::Verdict;
use crew::store::{read_run, HostRecord};
use support::cli::{local_hosts, CliEnv};
use support::proc::{alive, marker, sleeps_with, wait_until, Bounded};
use support::pty::{Io, PtyChild};

const WAIT: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

/// The host records of the newest plain run in the store.
fn last_run_records(env: &CliEnv) -> Vec<HostRecord> {
    let runs = env.plain_runs();
    let dir = runs.last().expect("a run in the store");
    read_run(dir).expect("read the run").hosts
}

fn record<'a>(recs: &'a [HostRecord], host: &str) -> &'a HostRecord {
    recs.iter()
        .find(|r| r.host == host)
        .unwrap_or_else(|| panic!("no record for {host}: {recs:?}"))
}

/// `CREW_HOST` in the environment of process `pid`.
fn crew_host_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"CREW_HOST="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The sleeps running `marker`, by the host they run for.
fn sleeps_by_host(marker: &str) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = sleeps_with(marker)
        .into_iter()
        .filter_map(|pid| Some((crew_host_of(pid)?, pid)))
        .collect();
    v.sort();
    v
}

#[test]
fn plain_run_prefixes_lines_and_sanitises() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
    assert_eq!(env.plain_runs().len(), 1, "{:?}", env.runs());
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("\"command\":\"true\""), "{audit}");

    let stop = env.crew(&["daemon", "stop"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop.stderr));
    assert!(text(&stop.stdout).contains("stopped"));
    assert!(!socket.exists(), "socket removed");
    let st = env.crew(&["status"]);
    assert!(text(&st.stdout).contains("no daemon running"));
}

#[test]
fn outcome_selection_reruns_exactly_the_failed_hosts() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
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
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
    let cmd = ["run", "node1", "--", "echo hi; echo warn >&2"];
    // Piped: plain text.
    let piped = env.crew(&cmd);
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert!(!piped.stdout.contains(&0x1b), "{}", text(&piped.stdout));
    assert!(!piped.stderr.contains(&0x1b), "{}", text(&piped.stderr));
    assert!(text(&piped.stdout).contains("node1 | hi"));

    // On a terminal: the host name in colour, the summary too.
    let mut tty = PtyChild::spawn(&mut env.command(&cmd), Io::ALL);
    assert_eq!(tty.wait_exit(WAIT).code(), Some(0), "{}", tty.text());
    let shown = tty.wait_for("ok:", WAIT);
    assert!(shown.contains("\x1b[36mnode1\x1b[0m"), "{shown:?}");
    assert!(shown.contains("\x1b[31m!\x1b[0m warn"), "{shown:?}");

    // On a terminal with NO_COLOR: no escape at all.
    let mut c = env.command(&cmd);
    c.env("NO_COLOR", "1");
    let mut tty = PtyChild::spawn(&mut c, Io::ALL);
    assert_eq!(tty.wait_exit(WAIT).code(), Some(0), "{}", tty.text());
    let shown = tty.wait_for("ok:", WAIT);
    assert!(shown.contains("node1 | hi"), "{shown:?}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
}

/// `crew run` on `node[1-2]` on a terminal, the command printing `up` then sleeping `mark`;
/// node1 ignores TERM when `stubborn` names it. Returns once both sleeps run.
fn interruptible_run(env: &CliEnv, mark: &str, stubborn: &str) -> PtyChild {
    let cmd = format!(
        "case \" {stubborn} \" in *\" $CREW_HOST \"*) trap '' TERM;; esac; echo up; sleep {mark}"
    );
    let tty = PtyChild::spawn(&mut env.command(&["run", "node[1-2]", "--", &cmd]), Io::ALL);
    // (The `|` between host and line is coloured on a terminal.)
    tty.wait("both hosts up", WAIT, |t| t.matches(" up\n").count() >= 2);
    wait_until("both sleeps running", WAIT, || {
        sleeps_by_host(mark).len() == 2
    });
    tty
}

#[test]
fn ctrl_c_terms_then_kills_after_3s_and_prints_the_summary() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
    let mark = marker();
    // node1 ignores TERM: only the KILL that follows 3 s later ends it.
    let mut tty = interruptible_run(&env, &mark, "node1");
    let sleeps = sleeps_by_host(&mark);
    let (n1, n2) = (sleeps[0].1, sleeps[1].1);
    assert_eq!(
        (sleeps[0].0.as_str(), sleeps[1].0.as_str()),
        ("node1", "node2")
    );
    let t0 = Instant::now();
    tty.ctrl_c();
    tty.wait_for("interrupted: stopping the run", WAIT);
    wait_until("node2's sleep to end on TERM", WAIT, || !alive(n2));
    assert!(alive(n1), "node1 ignores TERM, its sleep must outlive it");
    let status = tty.wait_exit(WAIT);
    let waited = t0.elapsed();
    let shown = tty.wait_for("killed:", WAIT);
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("killed:      node[1-2] (2)"), "{shown}");
    assert!(sleeps_with(&mark).is_empty(), "sleeps left after the run");
    assert!(
        waited >= Duration::from_millis(2500),
        "node1 was killed {waited:?} after Ctrl-C: the KILL must wait for the 3 s grace"
    );
    let recs = last_run_records(&env);
    assert_eq!(
        record(&recs, "node2").signal,
        Some(libc::SIGTERM),
        "{recs:?}"
    );
    assert_eq!(
        record(&recs, "node1").signal,
        Some(libc::SIGKILL),
        "{recs:?}"
    );
    assert!(
        recs.iter().all(|r| r.verdict == Verdict::Killed),
        "{recs:?}"
    );
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("[\"node1\",\"killed\"]"), "{audit}");
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
    let mark = marker();
    // Both ignore TERM: only a KILL ends them.
    let mut tty = interruptible_run(&env, &mark, "node1 node2");
    let t0 = Instant::now();
    tty.ctrl_c();
    tty.wait_for("interrupted: stopping the run", WAIT);
    tty.ctrl_c();
    tty.wait_for("killing the run", WAIT);
    let status = tty.wait_exit(WAIT);
    let waited = t0.elapsed();
    let shown = tty.wait_for("killed:", WAIT);
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("killed:      node[1-2] (2)"), "{shown}");
    assert!(sleeps_with(&mark).is_empty(), "sleeps left after the run");
    assert!(
        waited < Duration::from_secs(3),
        "the run ended {waited:?} after the first Ctrl-C: the second must not wait for the 3 s grace"
    );
    let recs = last_run_records(&env);
    for h in ["node1", "node2"] {
        assert_eq!(record(&recs, h).signal, Some(libc::SIGKILL), "{recs:?}");
    }
}

#[test]
fn timeout_kills_the_command_and_reports_timed_out() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
    let mark = marker();
    let cmd = format!("echo started; sleep {mark} & sleep {mark}; echo never");
    let out = env.crew(&["run", "--timeout", "1s", "node1", "--", &cmd]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("node1 | started"), "{stdout}");
    assert!(!stdout.contains("never"), "{stdout}");
    assert!(stderr.contains("timed out:   node1 (1)"), "{stderr}");
    wait_until("the timed-out sleeps to be gone", WAIT, || {
        sleeps_with(&mark).is_empty()
    });
    let recs = last_run_records(&env);
    let r = record(&recs, "node1");
    assert_eq!(r.verdict, Verdict::Timeout, "{r:?}");
    assert!(r.timed_out, "{r:?}");
    // The store remembers the timeout asked for.
    let run = read_run(env.plain_runs().last().expect("run")).expect("run");
    assert_eq!(run.meta.timeout_ms, Some(1000));
}

#[test]
fn fanout_limits_how_many_hosts_run_at_once() {
    let env = CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]));
    let dir = env.path().join("fanout");
    std::fs::create_dir(&dir).expect("dir");
    // Each job counts itself in (under a lock), records how many run, then waits until a
    // third job has come in too (it never should) or 1 s has passed, and counts itself out.
    let cmd = format!(
        "d={d}; enter() {{ exec 9>$d/lock; flock 9; c=$(cat $d/n 2>/dev/null || echo 0); \
         c=$((c $1 1)); echo $c > $d/n; echo $c >> $d/seen; flock -u 9; }}; \
         enter +; for i in $(seq 20); do [ $(cat $d/n) -gt 2 ] && break; sleep 0.05; done; enter -",
        d = dir.display()
    );
    let out = env.crew(&["run", "--fanout", "2", "role=app | odd1", "--", &cmd]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = std::fs::read_to_string(dir.join("seen")).expect("seen");
    let counts: Vec<u32> = seen
        .lines()
        .map(|l| l.trim().parse().expect("a count"))
        .collect();
    let most = counts.iter().max().copied().unwrap_or(0);
    assert_eq!(
        most, 2,
        "at most two at once, and two did run together: {counts:?}"
    );
    assert_eq!(counts.len(), 8, "four hosts in, four out: {counts:?}");
    assert_eq!(counts.last(), Some(&0), "all out at the end: {counts:?}");
    let run = read_run(env.plain_runs().last().expect("run")).expect("run");
    assert_eq!(run.meta.fanout, Some(2));
    assert_eq!(run.hosts.len(), 4);
}

/// The fleet most tests here use: three `role=app` nodes and `odd1`.
fn app_env() -> CliEnv {
    CliEnv::new(&local_hosts(&[
        ("node[1-3]", &["role=app"]),
        ("odd1", &["role=odd"]),
    ]))
}

#[test]
fn fanout_0_and_timeout_0_are_usage_errors() {
    let env = app_env();
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

#[test]
fn another_users_client_is_told_whose_daemon_it_is() {
    use std::os::unix::fs::PermissionsExt;
    if !support::require_root("another_users_client_is_told_whose_daemon_it_is") {
        return;
    }
    let user = support::os::ThrowawayUser::create();
    let env = app_env();
    let run = env.crew(&["run", "odd1", "--", "true"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let socket = env.home().join("daemon.sock");
    assert!(socket.exists(), "the daemon runs");
    // The other user can reach the socket's directory (not the point under test).
    for d in [env.path().to_path_buf(), env.home()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = std::process::Command::new("runuser")
        .args(["-u", &user.name, "--", env!("CARGO_BIN_EXE_crew"), "status"])
        .env("CREW_HOME", env.home())
        .env("HOME", "/nonexistent")
        .output_within(WAIT);
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
    let env = app_env();
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
    wait_until("the leftover note in crew status", WAIT, || {
        text(&env.crew(&["status"]).stdout)
            .lines()
            .any(|l| l.starts_with("odd1") && l.contains(want))
    });
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn agent_killed_mid_run(with_keeper: bool) -> CliEnv {
    let env = app_env();
    let warm = env.crew(&["run", "odd1", "--", "true"]);
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));
    let mut child = env
        .command(&[
            "run",
            "--json",
            "odd1",
            "--",
            "echo before; sleep 60; echo done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("crew run");
    let mut lines = support::proc::Lines::new(child.stdout.take().expect("stdout"));
    let err_reader = child.stderr.take().expect("stderr");
    let deadline = Instant::now() + WAIT;
    let mut pgid = None;
    while let Some(line) = lines.next_before(deadline, "the job's first line") {
        let ev: serde_json::Value = serde_json::from_str(&line).expect("json");
        if ev["event"] == "started" {
            pgid = ev["pid"].as_u64().map(|p| p as u32);
        }
        if ev["event"] == "stdout" && ev["data"] == "before" {
            break;
        }
    }
    let pgid = pgid.expect("a started event");
    // bash forks its sleep after the echo: it must be there, or "none left" proves nothing.
    wait_until("bash and its sleep in the job's group", WAIT, || {
        support::group_members(pgid).len() >= 2
    });
    let st = text(&env.crew(&["status"]).stdout);
    let agent: i32 = st
        .lines()
        .find(|l| l.starts_with("odd1"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the agent's pid in {st}"));
    let keeper = children_of(agent)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "crew-keeper")
        })
        .expect("the agent's keeper");
    // SAFETY: kill(2) on pids read from /proc and `crew status` just now.
    unsafe {
        if with_keeper {
            libc::kill(keeper, libc::SIGSTOP);
        }
        libc::kill(agent, libc::SIGKILL);
        if with_keeper {
            libc::kill(keeper, libc::SIGKILL);
        }
    }
    let rest = lines.rest(WAIT, "crew run's last events");
    let status = support::proc::wait_within(&mut child, WAIT, "crew run");
    let mut err = String::new();
    let mut err_reader = err_reader;
    std::io::Read::read_to_string(&mut err_reader, &mut err).expect("stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    let last: serde_json::Value =
        serde_json::from_str(rest.lines().last().expect("an event after the kill")).expect("json");
    assert_eq!(
        (&last["event"], &last["kind"], &last["verdict"]),
        (&"error".into(), &"lost".into(), &"failed".into()),
        "{last}"
    );
    assert!(err.contains("failed:      odd1 (1) — lost: odd1"), "{err}");
    // The pool reconnects after its first backoff; allow it a few seconds.
    wait_until("the job's processes gone", WAIT, || {
        support::group_members(pgid).is_empty()
    });
    env
}
