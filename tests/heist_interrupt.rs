//! `crew heist run` (the real binary, its own daemon, local hosts) interrupted by Ctrl-C:
//! the remote jobs in flight are killed (TERM, then KILL for one that ignores TERM), the
//! journal records the interruption, the summary is printed and the exit status is 1.
//! And `--json`: one HeistEvent per line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crew::heist::events::{Decision, HeistEvent, HostOutcome, Outcome, StepRef};

const HOSTS: &str = r#"
[defaults]
transport = "local"
[[host]]
name = "n[1-3]"
tags = ["role=demo"]
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(heists: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts.toml"), HOSTS).expect("hosts.toml");
        std::fs::create_dir_all(dir.path().join("heists")).expect("heists dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        std::fs::write(dir.path().join("heists/h.toml"), heists).expect("heist file");
        Env { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.arg("--hosts")
            .arg(self.dir.path().join("hosts.toml"))
            .args(args)
            .env("CREW_HOME", self.dir.path().join("home"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env_remove("CREW_HOSTS")
            .stdin(Stdio::null())
            .current_dir(self.dir.path());
        c
    }

    fn heist_run_dir(&self) -> PathBuf {
        let runs = std::fs::read_dir(self.dir.path().join("home/runs")).expect("run store");
        let mut heists: Vec<PathBuf> = runs
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("heist-"))
            })
            .collect();
        assert_eq!(heists.len(), 1, "{heists:?}");
        heists.remove(0)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.command(&["daemon", "stop"]).output();
    }
}

/// Pids of processes whose command line contains `marker` (read from /proc).
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(marker).then_some(pid)
        })
        .collect()
}

/// Pids of `sleep` processes whose command line contains `marker`: the steps' sleeps
/// themselves, not the `bash -c` around them (whose script also names the marker).
fn sleeps_with(marker: &str) -> Vec<u32> {
    processes_with(marker)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect()
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("crew heist run did not exit within {limit:?} after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_kills_the_steps_in_flight_and_journals_the_interruption() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    // A sleep nobody else runs: its argument is the marker we look for in /proc.
    let marker = format!("987.{}{nanos}", std::process::id());
    let heists = format!(
        r#"
[heist.slow]
select = "role=demo"
params = ["dir"]

[[heist.slow.step]]
name = "start"
run = "echo started ${{host}}"

[[heist.slow.step]]
name = "wait"
# n2 ignores TERM: it takes the KILL that follows.
run = "if [ ${{host}} = n2 ]; then trap '' TERM; fi; sleep {marker}; echo slept"
on_fail = {{ retry = 3, backoff = "1s" }}

[[heist.slow.step]]
name = "after"
run = "touch ${{dir}}/${{host}}-after"
"#
    );
    let env = Env::new(&heists);
    let set = format!("dir={}", env.dir.path().display());
    let mut child = env
        .command(&["heist", "run", "slow", "--set", &set])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crew heist run");
    let t0 = Instant::now();
    while sleeps_with(&marker).len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the three sleeps never started: {:?}",
            child.try_wait()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        out.push_str(&line.expect("stdout line"));
        out.push('\n');
    }
    let mut err = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        err.push_str(&line.expect("stderr line"));
        err.push('\n');
    }
    let all = format!("--- stdout\n{out}--- stderr\n{err}");
    assert_eq!(status.code(), Some(1), "{all}");
    assert_eq!(
        processes_with(&marker),
        Vec::<u32>::new(),
        "sleeps left\n{all}"
    );
    assert!(err.contains("interrupted: stopping the heist"), "{all}");
    assert!(
        out.contains("== heist slow INTERRUPTED: completed on 0/3 host(s)"),
        "{all}"
    );
    for h in ["n1", "n2", "n3"] {
        assert!(out.contains(&format!("{h}  interrupted at wait")), "{all}");
        assert!(!env.dir.path().join(format!("{h}-after")).exists(), "{h}");
    }

    // The journal says what happened: each host's `wait` was killed (n2 by KILL, after
    // ignoring TERM), not retried, and the heist ended interrupted.
    let dir = env.heist_run_dir();
    let events = crew::heist::journal::read(&dir).expect("journal");
    for h in ["n1", "n2", "n3"] {
        let results: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HeistEvent::StepFinished {
                    host, step, result, ..
                } if host == h && *step == StepRef::main(1) => Some(result.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1, "{h}: one attempt, no retry: {results:?}");
        let want = if h == "n2" {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        assert_eq!(results[0].signal, Some(want), "{h}: {:?}", results[0]);
        assert!(events.iter().any(|e| matches!(e,
            HeistEvent::Decision { host, decision: Decision::Interrupted, .. } if host == h)));
        assert!(events.iter().any(|e| matches!(e,
            HeistEvent::HostDone { host, outcome: HostOutcome::Interrupted { step } }
                if host == h && step == "wait")));
    }
    match events.last() {
        Some(HeistEvent::Finished { summary }) => {
            assert_eq!(summary.outcome, Outcome::Interrupted)
        }
        other => panic!("journal ends with {other:?}"),
    }
    let meta = crew::heist::journal::read_meta(&dir).expect("meta");
    assert_eq!(meta.outcome.as_deref(), Some("interrupted"));
}

#[test]
fn json_prints_one_heist_event_per_line() {
    let env = Env::new(
        "[heist.two]\nselect = \"role=demo\"\n[[heist.two.step]]\nname = \"a\"\nrun = \"echo a-${host}\"\n\
         [[heist.two.step]]\nname = \"b\"\nrun = \"test ${host} != n3\"\n",
    );
    let o = env
        .command(&["heist", "run", "two", "--json"])
        .output()
        .expect("run crew");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let events: Vec<HeistEvent> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a HeistEvent: {l}: {e}")))
        .collect();
    assert!(matches!(events.first(), Some(HeistEvent::Started { hosts, .. }) if hosts.len() == 3));
    let Some(HeistEvent::Finished { summary }) = events.last() else {
        panic!("last line is not Finished: {out}");
    };
    assert_eq!(summary.outcome, Outcome::Failed);
    assert_eq!(
        summary.hosts,
        vec![
            ("n1".into(), HostOutcome::Completed { ignored: 0 }),
            ("n2".into(), HostOutcome::Completed { ignored: 0 }),
            ("n3".into(), HostOutcome::Failed { step: "b".into() }),
        ]
    );
    let a_out: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            HeistEvent::StepFinished { step, result, .. } if *step == StepRef::main(0) => {
                Some(result.stdout.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(a_out.len(), 3);
    assert!(a_out.contains(&"a-n2\n"), "{a_out:?}");
    // The same records as the journal (which has no live Output events; hosts running at
    // once may interleave differently).
    let journal = crew::heist::journal::read(&env.heist_run_dir()).expect("journal");
    let lines = |evs: Vec<&HeistEvent>| {
        let mut v: Vec<String> = evs
            .into_iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        v.sort();
        v
    };
    let printed = events
        .iter()
        .filter(|e| !matches!(e, HeistEvent::Output { .. }))
        .collect();
    assert_eq!(lines(printed), lines(journal.iter().collect()));
}
