//! `crew agent` as a real child process speaking frames on its stdin and stdout: started,
//! its sync marker checked, requests written, replies read with a deadline.

use std::process::Stdio;
use std::time::Duration;

use crew::proto::agent::{decode, AgentMsg, Decoded, SYNC_MARKER};
use crew::proto::frame::{read_frame, write_frame};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long the agent gets for each answer.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct AgentProcess {
    pub child: Child,
    pub r: ChildStdout,
    pub w: ChildStdin,
}

impl AgentProcess {
    /// Start `crew agent` (after `configure` has had its say about the command) and read its
    /// sync marker.
    pub async fn spawn(configure: impl FnOnce(&mut Command)) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crew"));
        cmd.arg("agent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn crew agent");
        let mut r = child.stdout.take().expect("agent stdout");
        let w = child.stdin.take().expect("agent stdin");
        let mut marker = vec![0u8; SYNC_MARKER.len()];
        tokio::time::timeout(WAIT, r.read_exact(&mut marker))
            .await
            .expect("marker in time")
            .expect("read marker");
        assert_eq!(marker, SYNC_MARKER, "the agent starts with its sync marker");
        AgentProcess { child, r, w }
    }

    /// Send `msg` as request `id`.
    pub async fn send(&mut self, id: u64, msg: &AgentMsg) {
        let (kind, payload) = msg.encode();
        write_frame(&mut self.w, kind, id, &payload)
            .await
            .expect("send a frame to the agent");
    }

    /// The next frame from the agent, decoded, within [`WAIT`].
    pub async fn next(&mut self) -> Decoded {
        let f = tokio::time::timeout(WAIT, read_frame(&mut self.r))
            .await
            .expect("frame in time")
            .expect("read frame")
            .expect("agent still talking");
        decode(&f)
    }

    /// Read frames (at most `n`) until `pick` returns something.
    pub async fn find<T>(&mut self, n: usize, mut pick: impl FnMut(Decoded) -> Option<T>) -> T {
        for _ in 0..n {
            if let Some(t) = pick(self.next().await) {
                return t;
            }
        }
        panic!("not among the agent's next {n} frames");
    }

    /// Close the agent's input and wait (within [`WAIT`]) for it to exit.
    pub async fn close_and_wait(mut self) -> std::process::ExitStatus {
        drop(self.w);
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("agent exits after EOF")
            .expect("wait")
    }
}
