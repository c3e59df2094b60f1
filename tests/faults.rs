//! The fault matrix, as an operator meets it: a real sshd fleet on loopback and the `crew`
//! binary, with one fault per case. Each case asserts a verdict for every host within a bound,
//! no byte lost that the host produced before the fault, no process left on the host, and the
//! daemon usable afterwards. (Hosts that refuse, stay silent, present a wrong key or refuse
//! the login are in `verdicts.rs`; the agent killed with and without its keeper in
//! `run_cli.rs` and `agent_deathsig.rs`.)

mod support;

use std::io::Read as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::proc::{sleeps_with, wait_until, Lines};
use support::ssh_env::{host_processes, signal_all, SshEnv};
use support::{group_members, require_tool};

/// How long any host may take to get its verdict once the fault happened.
const VERDICT_WAIT: Duration = Duration::from_secs(60);
const HOSTS: usize = 3;

fn ready(n: usize) -> Option<SshEnv> {
    if !require_tool("sshd") {
        return None;
    }
    let env = SshEnv::new(n);
    env.warm();
    Some(env)
}

/// The daemon still serves: `true` on every host exits 0.
fn usable(env: &SshEnv) {
    let out = env.crew(&["run", "role=web", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the daemon is usable afterwards: {}",
        support::cli::text(&out)
    );
}

/// `crew run --json SEL -- CMD` started with stdout read line by line.
fn json_run(env: &SshEnv, sel: &str, cmd: &str) -> (Child, Lines) {
    let mut child = env
        .command(&["run", "--json", sel, "--", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crew run");
    let lines = Lines::new(child.stdout.take().expect("stdout"));
    (child, lines)
}

/// Read JSON events until `n` hosts have started and printed their first line; their job
/// pids (process groups) by host.
fn until_started(lines: &mut Lines, n: usize) -> Vec<(String, u32)> {
    let deadline = Instant::now() + VERDICT_WAIT;
    let (mut pids, mut printed) = (Vec::new(), 0);
    while printed < n {
        let line = lines
            .next_before(deadline, "every host's first line")
            .expect("crew run ended early");
        let ev: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        match ev["event"].as_str() {
            Some("started") => pids.push((
                ev["host"].as_str().expect("host").to_string(),
                ev["pid"].as_u64().expect("pid") as u32,
            )),
            Some("stdout") => printed += 1,
            _ => {}
        }
    }
    pids
}

/// The rest of a `--json` run: verdict by host.
fn verdicts(lines: &mut Lines) -> Vec<(String, String, String)> {
    let rest = lines.rest(VERDICT_WAIT, "every host's verdict");
    rest.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "exit" || e["event"] == "error")
        .map(|e| {
            (
                e["host"].as_str().unwrap_or_default().to_string(),
                e["verdict"].as_str().unwrap_or_default().to_string(),
                e["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn gone(what: &str, pgids: &[u32]) {
    wait_until(what, VERDICT_WAIT, || {
        pgids.iter().all(|g| group_members(*g).is_empty())
    });
}

#[test]
fn a_host_that_dies_mid_run_is_lost_and_its_output_so_far_is_kept() {
    let Some(env) = ready(HOSTS) else { return };
    let (mut child, mut lines) = json_run(&env, "role=web", "echo before-$CREW_HOST; sleep 3");
    let pids = until_started(&mut lines, HOSTS);
    let t0 = Instant::now();
    // h002 goes away at once, whole: its sshd session, its agent, its jobs.
    let victim = host_processes(env.agent_pid("h002"), &env.fleet.listener_pids());
    signal_all(&victim, libc::SIGKILL);
    let v = verdicts(&mut lines);
    support::proc::wait_within(&mut child, VERDICT_WAIT, "crew run");
    assert!(t0.elapsed() < VERDICT_WAIT);
    assert_eq!(v.len(), HOSTS, "{v:?}");
    for (h, verdict, kind) in &v {
        if h == "h002" {
            assert_eq!(
                (verdict.as_str(), kind.as_str()),
                ("failed", "lost"),
                "{v:?}"
            );
        } else {
            assert_eq!(verdict, "ok", "{v:?}");
        }
    }
    let run = env.runs().pop().expect("the run is stored");
    let out = std::fs::read_to_string(run.join("h002.out")).expect("h002's output");
    assert_eq!(
        out, "before-h002\n",
        "what h002 printed before it died is kept"
    );
    gone(
        "no process of the jobs left",
        &pids.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
    );
    usable(&env);
}

#[test]
fn a_frozen_host_is_declared_lost_and_leaves_nothing_once_it_thaws() {
    let Some(env) = ready(HOSTS) else { return };
    let (mut child, mut lines) = json_run(
        &env,
        "role=web",
        "echo up; [ $CREW_HOST = h002 ] && sleep 120; true",
    );
    let pids = until_started(&mut lines, HOSTS);
    let frozen = host_processes(env.agent_pid("h002"), &env.fleet.listener_pids());
    signal_all(&frozen, libc::SIGSTOP);
    // The link's heartbeats go unanswered: the host is lost (no FIN ever comes).
    let v = verdicts(&mut lines);
    signal_all(&frozen, libc::SIGCONT);
    support::proc::wait_within(&mut child, VERDICT_WAIT, "crew run");
    assert_eq!(v.len(), HOSTS, "{v:?}");
    let h2 = v.iter().find(|x| x.0 == "h002").expect("h002's verdict");
    assert_eq!((h2.1.as_str(), h2.2.as_str()), ("failed", "lost"), "{v:?}");
    // Thawed, the agent finds its link gone and its jobs die with it.
    gone(
        "the frozen host's job gone after it thawed",
        &pids
            .iter()
            .filter(|(h, _)| h == "h002")
            .map(|(_, p)| *p)
            .collect::<Vec<_>>(),
    );
    usable(&env);
}

#[test]
fn sshd_restarted_mid_run_changes_nothing_for_the_run() {
    let Some(mut env) = ready(HOSTS) else { return };
    let (mut child, mut lines) = json_run(&env, "role=web", "echo up; sleep 2; echo done");
    until_started(&mut lines, HOSTS);
    env.fleet.restart_listeners();
    let v = verdicts(&mut lines);
    support::proc::wait_within(&mut child, VERDICT_WAIT, "crew run");
    assert_eq!(v.len(), HOSTS, "{v:?}");
    assert!(v.iter().all(|x| x.1 == "ok"), "{v:?}");
    usable(&env);
}

#[test]
fn a_daemon_killed_mid_run_keeps_the_output_and_the_next_daemon_marks_the_run() {
    let Some(env) = ready(HOSTS) else { return };
    let mark = support::proc::marker();
    let (mut child, mut lines) = json_run(&env, "role=web", &format!("echo before; sleep {mark}"));
    let pids = until_started(&mut lines, HOSTS);
    wait_until("every host's sleep", VERDICT_WAIT, || {
        sleeps_with(&mark).len() == HOSTS
    });
    let daemon = env.daemon_pid();
    // SAFETY: kill(2) on the daemon's pid, read from `crew status` just now.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGKILL) }, 0);
    let status = support::proc::wait_within(&mut child, VERDICT_WAIT, "crew run");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("lost the connection to the daemon"), "{err}");
    // Nothing of the run goes on without its daemon.
    wait_until("the run's sleeps gone", VERDICT_WAIT, || {
        sleeps_with(&mark).is_empty()
    });
    gone(
        "the jobs' groups gone",
        &pids.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
    );
    let run = env.runs().pop().expect("the run is stored");
    for h in ["h001", "h002", "h003"] {
        let out = std::fs::read_to_string(run.join(format!("{h}.out"))).expect("output kept");
        assert_eq!(out, "before\n", "{h}");
    }
    // The next daemon (started by this client) settles the run: lost hosts, FAILED, audit.
    usable(&env);
    let failed = std::fs::read_to_string(run.join("FAILED")).expect("marked failed");
    assert!(failed.contains("interrupted"), "{failed}");
    let stored = crew::store::read_run(&run).expect("the run reads back");
    assert_eq!(stored.hosts.len(), HOSTS);
    assert!(
        stored
            .hosts
            .iter()
            .all(|r| r.error_kind == Some(crew::model::ErrorKind::Lost) && r.stdout_bytes == 7),
        "{:?}",
        stored.hosts
    );
    let id = run
        .file_name()
        .and_then(|n| n.to_str())
        .expect("id")
        .to_string();
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"run_id\":{id},"))),
        "{audit}"
    );
}

#[test]
fn a_client_killed_mid_run_stops_nothing() {
    let Some(env) = ready(HOSTS) else { return };
    let (mut child, mut lines) =
        json_run(&env, "role=web", "echo up; sleep 2; echo done-$CREW_HOST");
    until_started(&mut lines, HOSTS);
    child.kill().expect("SIGKILL the client");
    let _ = child.wait();
    let run = env.runs().pop().expect("the run is stored");
    wait_until("the run finished in the daemon", VERDICT_WAIT, || {
        crew::store::read_run(&run).is_ok_and(|r| r.hosts.len() == HOSTS)
    });
    let stored = crew::store::read_run(&run).expect("read back");
    assert!(
        stored
            .hosts
            .iter()
            .all(|r| r.verdict == crew::model::Verdict::Ok),
        "{:?}",
        stored.hosts
    );
    let id = run
        .file_name()
        .and_then(|n| n.to_str())
        .expect("id")
        .to_string();
    let out = env.crew(&["attach", &id]);
    let text = support::cli::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for h in ["h001", "h002", "h003"] {
        assert!(text.contains(&format!("{h} | done-{h}")), "{text}");
    }
    usable(&env);
}

#[test]
fn a_full_disk_fails_the_run_clearly_and_the_daemon_goes_on() {
    if !support::require_root("to mount a small tmpfs as the run store") {
        return;
    }
    let Some(env) = ready(1) else { return };
    let runs = env.home().join("runs");
    // Runs from now on land on a 1 MiB disk.
    let disk = support::os::SmallTmpfs::mount_at(&runs, "1m");
    let out = env.crew(&[
        "run",
        "h001",
        "--",
        "head -c 3000000 /dev/zero | tr '\\0' x; echo",
    ]);
    let text = support::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("No space left on device") && text.contains("h001.out"),
        "the error names the cause and the file: {text}"
    );
    assert!(!text.contains("\nok:"), "no host is listed as ok: {text}");
    // Room again: the daemon serves the next run.
    drop(disk);
    usable(&env);
}

#[test]
fn an_output_flood_arrives_byte_exact_with_the_daemon_bounded() {
    let Some(env) = ready(1) else { return };
    const LINES: usize = 1_000_000;
    let line = "x".repeat(99);
    let mut child = env
        .command(&[
            "run",
            "h001",
            "--",
            &format!("yes {line} | head -n {LINES}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crew run");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let status = support::proc::wait_within(&mut child, VERDICT_WAIT, "crew run");
    assert_eq!(status.code(), Some(0));
    let got = reader.join().expect("reader");
    let want_line = format!("h001 | {line}\n");
    assert_eq!(
        got.len(),
        LINES * want_line.len(),
        "every byte came through"
    );
    assert!(
        got.chunks(want_line.len())
            .all(|c| c == want_line.as_bytes()),
        "every line intact"
    );
    let run = env.runs().pop().expect("stored");
    let size = std::fs::metadata(run.join("h001.out"))
        .expect("h001.out")
        .len();
    assert_eq!(
        size as usize,
        LINES * (line.len() + 1),
        "the store has all of it"
    );
    // The daemon's peak memory stayed bounded (output goes to disk, not RAM).
    let status = std::fs::read_to_string(format!("/proc/{}/status", env.daemon_pid()))
        .expect("daemon status");
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    assert!(
        hwm_kb < 96 * 1024,
        "daemon peak RSS {hwm_kb} KiB for 100 MB of output"
    );
    usable(&env);
}

#[test]
fn a_slow_reader_holds_back_only_its_own_run() {
    let Some(env) = ready(2) else { return };
    // A consumer that reads nothing: its pipe fills, its run waits on it, not on anyone else.
    let mut stalled = env
        .command(&["run", "h001", "--", "seq 1 3000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("crew run");
    let mut stalled_out = stalled.stdout.take().expect("stdout");
    // It got going: its output is in the store already.
    wait_until("the first run's output on disk", VERDICT_WAIT, || {
        env.runs()
            .last()
            .and_then(|r| std::fs::metadata(r.join("h001.out")).ok())
            .is_some_and(|m| m.len() > 1 << 20)
    });
    let t0 = Instant::now();
    let other = env.crew(&["run", "--json", "h00[1-2]", "--", "echo hi"]);
    let took = t0.elapsed();
    assert_eq!(
        other.status.code(),
        Some(0),
        "{}",
        support::cli::text(&other)
    );
    assert!(
        took < Duration::from_secs(30),
        "a second run on the same host is not held back by the stalled reader ({took:?})"
    );
    // The stalled run loses nothing once its reader reads.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stalled_out.read_to_string(&mut s);
        s
    });
    support::proc::wait_within(&mut stalled, VERDICT_WAIT, "the stalled run");
    let text = reader.join().expect("reader");
    assert_eq!(text.lines().count(), 3_000_000);
    assert_eq!(text.lines().last(), Some("h001 | 3000000"));
    usable(&env);
}

#[test]
fn five_clients_at_once_each_get_their_whole_run() {
    let Some(env) = ready(HOSTS) else { return };
    let clients: Vec<Child> = (0..5)
        .map(|i| {
            env.command(&[
                "run",
                "role=web",
                "--",
                &format!("seq 1 20000 | sed s/^/c{i}-/"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("crew run")
        })
        .collect();
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut out = c.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let st = support::proc::wait_within(&mut c, VERDICT_WAIT, "a client");
        assert_eq!(st.code(), Some(0), "client {i}");
        let text = reader.join().expect("reader");
        assert_eq!(text.lines().count(), HOSTS * 20_000, "client {i}");
        assert!(
            text.lines().all(|l| l.contains(&format!("| c{i}-"))),
            "client {i} got only its own run"
        );
    }
    usable(&env);
}
