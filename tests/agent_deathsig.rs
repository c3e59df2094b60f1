//! A SIGKILLed agent (no chance to run its EOF/kill path) takes its commands with it: the
//! command's direct child has PR_SET_PDEATHSIG(SIGKILL).

mod support;

use std::process::Stdio;
use std::time::Duration;

use crew::proto::agent::{AgentMsg, Decoded, Run};
use support::agent::{AgentProcess, WAIT};
use support::proc::alive;

#[tokio::test]
async fn killing_the_agent_kills_its_command() {
    let mut agent = AgentProcess::spawn(|_| {}).await;
    let run = AgentMsg::Run(Run {
        command: "exec sleep 1000".into(),
        env: vec![],
        timeout_ms: None,
        stdin: false,
    });
    agent.send(1, &run).await;
    let pid = agent
        .find(10, |d| match d {
            Decoded::Msg {
                msg: AgentMsg::Started { pid },
                ..
            } => Some(pid),
            _ => None,
        })
        .await;
    assert!(alive(pid), "the command runs");

    agent.child.start_kill().expect("SIGKILL the agent");
    let _ = tokio::time::timeout(WAIT, agent.child.wait())
        .await
        .expect("the killed agent is reaped");
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if alive(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; clean up before failing.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("command {pid} outlived its SIGKILLed agent by {WAIT:?}");
    }
}

/// Live (non-zombie) processes of process group `pgid`: (pid, comm).
fn group_members(pgid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string() {
            found.push((pid, stat[open + 1..close].to_string()));
        }
    }
    found
}

/// Poll `what` every 20 ms for up to 10 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

struct Spawned {
    link: crew::daemon::link::AgentLink,
    child: tokio::process::Child,
}

/// The real `crew agent` with `TMPDIR=tmp`, linked.
async fn agent_in(tmp: &std::path::Path) -> Spawned {
    use crew::daemon::link::{AgentLink, LinkOptions};
    let exe = env!("CARGO_BIN_EXE_crew");
    let mut child = tokio::process::Command::new(exe)
        .arg("agent")
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crew agent");
    let r = child.stdout.take().expect("stdout");
    let w = child.stdin.take().expect("stdin");
    let (link, _) = AgentLink::connect(r, w, LinkOptions::default())
        .await
        .expect("connect");
    Spawned { link, child }
}

/// Start `echo before; sleep 60; echo done` and wait until its `sleep` runs: (pgid, output
/// events so far).
async fn start_sleeper(link: &crew::daemon::link::AgentLink) -> (crew::daemon::link::Job, u32) {
    let mut job = link
        .start(Run {
            command: "echo before; sleep 60; echo done".into(),
            env: vec![],
            timeout_ms: None,
            stdin: false,
        })
        .await
        .expect("start");
    let Some(AgentMsg::Started { pid }) = job.events.recv().await else {
        panic!("expected Started")
    };
    wait_for("bash and its sleep run", || {
        group_members(pid).iter().any(|(_, c)| c == "sleep")
    })
    .await;
    (job, pid)
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The keeper of agent `agent`: a process named crew-keeper among its children.
fn keeper_of(agent: u32) -> u32 {
    children_of(agent)
        .into_iter()
        .find(|p| comm(*p) == "crew-keeper")
        .expect("the agent has a keeper")
}

#[tokio::test]
async fn killing_the_agent_kills_its_jobs_whole_process_group() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = agent_in(tmp.path()).await;
    let (_job, pgid) = start_sleeper(&a.link).await;
    a.child.start_kill().expect("SIGKILL the agent");
    let _ = tokio::time::timeout(WAIT, a.child.wait()).await;
    let left = || group_members(pgid);
    for _ in 0..250 {
        if left().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = left();
    for (pid, _) in &left {
        // SAFETY: kill(2) has no memory-safety preconditions; clean up before failing.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    panic!("processes of group {pgid} outlived their SIGKILLed agent: {left:?}");
}

#[tokio::test]
async fn a_new_agent_reaps_and_reports_what_a_dead_agent_left() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = agent_in(tmp.path()).await;
    let (_job, pgid) = start_sleeper(&a.link).await;
    let agent_pid = a.child.id().expect("pid");
    let keeper = keeper_of(agent_pid);
    // Agent and keeper both die without a chance to clean up.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(keeper as i32, libc::SIGSTOP) };
    a.child.start_kill().expect("SIGKILL the agent");
    let _ = tokio::time::timeout(WAIT, a.child.wait()).await;
    // SAFETY: as above.
    unsafe { libc::kill(keeper as i32, libc::SIGKILL) };
    wait_for("the keeper is gone", || comm(keeper) != "crew-keeper").await;
    let orphans = group_members(pgid);
    assert!(
        orphans.iter().any(|(_, c)| c == "sleep"),
        "the sleep is left over: {orphans:?}"
    );
    let dead_dir = std::fs::read_dir(tmp.path())
        .expect("ls")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("crew-agent-"))
        .expect("the dead agent's dir")
        .path();

    let b = agent_in(tmp.path()).await;
    let found = b.link.reap().await.expect("reap");
    let cleanup = || {
        for (pid, _) in group_members(pgid) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    };
    if found.len() != 1 {
        cleanup();
        panic!("one leftover group expected: {found:?}");
    }
    let l = &found[0];
    assert_eq!((l.agent_pid, l.pgid), (agent_pid, pgid), "{l:?}");
    assert!(l.processes.iter().any(|(_, c)| c == "sleep"), "{l:?}");
    wait_for("the leftover group is dead", || {
        group_members(pgid).is_empty()
    })
    .await;
    assert!(!dead_dir.exists(), "the dead agent's dir is removed");
    // Nothing more the second time; the live agent's own things are untouched.
    let (_job2, pgid2) = start_sleeper(&b.link).await;
    assert!(b.link.reap().await.expect("reap").is_empty());
    assert!(
        !group_members(pgid2).is_empty(),
        "a live agent's job is left alone"
    );
}
