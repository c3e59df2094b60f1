//! A SIGKILLed agent (no chance to run its EOF/kill path) takes its commands with it: the
//! command's direct child has PR_SET_PDEATHSIG(SIGKILL).

mod support;

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
