//! A SIGKILLed agent (no chance to run its EOF/kill path) takes its commands with it: the
//! command's direct child has PR_SET_PDEATHSIG(SIGKILL).

use std::process::Stdio;
use std::time::Duration;

use crew::proto::agent::{decode, AgentMsg, Decoded, Run, SYNC_MARKER};
use crew::proto::frame::{read_frame, write_frame};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(30);

/// True while `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|x| x.1.trim_start())
                .unwrap_or("");
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn killing_the_agent_kills_its_command() {
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"))
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crew agent");
    let mut r = agent.stdout.take().expect("agent stdout");
    let mut w = agent.stdin.take().expect("agent stdin");
    let mut marker = vec![0u8; SYNC_MARKER.len()];
    tokio::time::timeout(WAIT, r.read_exact(&mut marker))
        .await
        .expect("marker in time")
        .expect("read marker");
    assert_eq!(marker, SYNC_MARKER);
    let run = AgentMsg::Run(Run {
        command: "exec sleep 1000".into(),
        env: vec![],
        timeout_ms: None,
    });
    let (kind, payload) = run.encode();
    write_frame(&mut w, kind, 1, &payload)
        .await
        .expect("send Run");
    let mut pid = None;
    for _ in 0..10 {
        let f = tokio::time::timeout(WAIT, read_frame(&mut r))
            .await
            .expect("frame in time")
            .expect("read frame")
            .expect("agent still talking");
        if let Decoded::Msg {
            msg: AgentMsg::Started { pid: p },
            ..
        } = decode(&f)
        {
            pid = Some(p);
            break;
        }
    }
    let pid = pid.expect("Started after Hello");
    assert!(running(pid), "the command runs");

    agent.start_kill().expect("SIGKILL the agent");
    let _ = tokio::time::timeout(WAIT, agent.wait()).await;
    let mut alive = true;
    for _ in 0..500 {
        alive = running(pid);
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if alive {
        // SAFETY: kill(2) has no memory-safety preconditions; clean up before failing.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(!alive, "command {pid} outlived its SIGKILLed agent");
    drop(w);
}
