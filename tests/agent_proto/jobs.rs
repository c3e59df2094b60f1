//! How jobs are started: environment, bad requests, a missing bash (real agent process).

use std::process::Stdio;

use crew::proto::agent::{decode, AgentMsg, Decoded, Run, SYNC_MARKER};
use crew::proto::frame::{read_frame, write_frame};
use tokio::io::AsyncReadExt;

use super::harness::{agent, WAIT};
use crate::support::agent::AgentProcess;

fn run_with_env(command: &str, env: &[(&str, &str)]) -> AgentMsg {
    AgentMsg::Run(Run {
        command: command.into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timeout_ms: None,
        stdin: false,
    })
}

#[tokio::test]
async fn jobs_get_the_agent_environment_with_request_overrides() {
    let mut a = agent(4).await;
    let home = std::env::var("HOME").unwrap_or_default();
    let script = "echo \"$HOME|$SHLVL|$X|$Y\"";
    a.send(
        1,
        run_with_env(script, &[("X", "first"), ("Y", "y"), ("X", "last")]),
    )
    .await;
    let d = a.collect(1).await;
    let out = String::from_utf8(d.out).expect("utf8");
    let fields: Vec<&str> = out.trim_end().split('|').collect();
    assert_eq!(fields[0], home, "inherited: {out}");
    let shlvl: u32 = fields[1].parse().expect("SHLVL is a number");
    assert!(
        shlvl >= 2,
        "bash -c raised the job SHLVL (>= 1) by one: {out}"
    );
    assert_eq!(&fields[2..], ["last", "y"], "the last setting wins: {out}");

    a.send(2, run_with_env("echo $HOME", &[("HOME", "/over/ridden")]))
        .await;
    assert_eq!(a.collect(2).await.out, b"/over/ridden\n");
}

#[tokio::test]
async fn a_command_with_a_nul_byte_is_an_error_and_the_agent_keeps_serving() {
    let mut a = agent(4).await;
    a.send(1, run_with_env("echo a\0b", &[])).await;
    match a.reply().await {
        (1, AgentMsg::Error { message }) => assert!(message.contains("NUL"), "{message}"),
        other => panic!("expected Error, got {other:?}"),
    }
    a.send(2, run_with_env("echo ok", &[("BAD\0KEY", "v")]))
        .await;
    match a.reply().await {
        (2, AgentMsg::Error { message }) => assert!(message.contains("BAD"), "{message}"),
        other => panic!("expected Error, got {other:?}"),
    }
    a.send(3, run_with_env("echo ok", &[])).await;
    assert_eq!(a.collect(3).await.out, b"ok\n");
}

#[tokio::test]
async fn without_bash_in_path_each_job_gets_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProcess::spawn(|c| {
        c.env("PATH", dir.path());
    })
    .await;
    agent.send(7, &run_with_env("true", &[])).await;
    let error = agent
        .find(3, |d| match d {
            Decoded::Msg {
                id: 7,
                msg: AgentMsg::Error { message },
            } => Some(message),
            _ => None,
        })
        .await;
    assert!(error.contains("bash not found in PATH"), "{error}");
    assert!(error.contains(&*dir.path().to_string_lossy()), "{error}");
    let status = agent.close_and_wait().await;
    assert!(status.success(), "{status}");
}

/// The real agent over one Unix socket as both stdin and stdout (as some sshd builds do).
#[tokio::test]
async fn the_agent_serves_over_a_unix_socket() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let theirs_out = theirs.try_clone().expect("dup");
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"))
        .arg("agent")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crew agent");
    ours.set_nonblocking(true).expect("nonblocking");
    let ours = tokio::net::UnixStream::from_std(ours).expect("tokio socket");
    let (mut r, mut w) = ours.into_split();
    let mut marker = vec![0u8; SYNC_MARKER.len()];
    tokio::time::timeout(WAIT, r.read_exact(&mut marker))
        .await
        .expect("marker in time")
        .expect("read marker");
    assert_eq!(marker, SYNC_MARKER);
    let (kind, payload) = run_with_env("echo over-socket", &[]).encode();
    write_frame(&mut w, kind, 3, &payload)
        .await
        .expect("send Run");
    let mut out = Vec::new();
    for _ in 0..10 {
        let f = tokio::time::timeout(WAIT, read_frame(&mut r))
            .await
            .expect("frame in time")
            .expect("read frame")
            .expect("agent still talking");
        match decode(&f) {
            Decoded::Msg {
                id: 3,
                msg: AgentMsg::Output { data, .. },
            } => out.extend_from_slice(&data),
            Decoded::Msg {
                id: 3,
                msg: AgentMsg::Exit(e),
            } => {
                assert_eq!(e.code, Some(0));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(out, b"over-socket\n");
    // Polled by the reactor (not read on a blocking thread): the socket is non-blocking now.
    let pid = agent.id().expect("agent pid");
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/0")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags line");
    let flags = u32::from_str_radix(flags.trim(), 8).expect("octal flags");
    assert_ne!(flags & libc::O_NONBLOCK as u32, 0, "flags {flags:o}");
    drop(w); // shuts our socket down for writing: the agent reads EOF
    let status = tokio::time::timeout(WAIT, agent.wait())
        .await
        .expect("agent exits after EOF")
        .expect("wait");
    assert!(status.success(), "{status}");
}
