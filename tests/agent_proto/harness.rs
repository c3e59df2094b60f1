//! In-process agent harness for `tests/agent_proto.rs`: raw frames over a duplex pipe.

use std::time::Duration;

use crew::agent::{serve, AgentOptions};
use crew::model::{Exit, Stream};
use crew::proto::agent::{decode, AgentMsg, Decoded, Run, SYNC_MARKER};
use crew::proto::frame::{read_frame, write_frame};
use crew::proto::PROTO_VERSION;
use tokio::io::{AsyncReadExt, DuplexStream, ReadHalf, WriteHalf};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Agent {
    pub r: ReadHalf<DuplexStream>,
    pub w: WriteHalf<DuplexStream>,
    pub served: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub tmp: tempfile::TempDir,
}

pub async fn agent(max_jobs: usize) -> Agent {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = AgentOptions {
        max_jobs,
        tmp_root: Some(tmp.path().to_path_buf()),
        kill_grace: Duration::from_millis(300),
        build: "test-build".into(),
    };
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (ar, aw) = tokio::io::split(theirs);
    let served = tokio::spawn(serve(ar, aw, opts));
    let (mut r, w) = tokio::io::split(ours);
    let mut marker = vec![0u8; SYNC_MARKER.len()];
    r.read_exact(&mut marker).await.expect("marker");
    assert_eq!(marker, SYNC_MARKER, "the agent starts with its sync marker");
    let mut a = Agent { r, w, served, tmp };
    match a.reply().await {
        (0, AgentMsg::Hello(h)) => {
            assert_eq!(h.proto, PROTO_VERSION);
            assert_eq!(h.build, "test-build");
            assert_eq!(h.pid, std::process::id());
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    a
}

impl Agent {
    pub async fn send(&mut self, id: u64, msg: AgentMsg) {
        let (kind, payload) = msg.encode();
        write_frame(&mut self.w, kind, id, &payload)
            .await
            .expect("send");
    }

    /// The next reply, within [`WAIT`].
    pub async fn reply(&mut self) -> (u64, AgentMsg) {
        let f = tokio::time::timeout(WAIT, read_frame(&mut self.r))
            .await
            .expect("agent answers in time")
            .expect("read frame")
            .expect("agent still serving");
        match decode(&f) {
            Decoded::Msg { id, msg } => (id, msg),
            Decoded::Invalid { reason, .. } => panic!("agent sent a bad frame: {reason}"),
        }
    }

    pub async fn run(&mut self, id: u64, command: &str) -> Done {
        self.send(id, run_msg(command, None)).await;
        self.collect(id).await
    }

    /// Read frames until job `id` ends (other ids are not expected).
    pub async fn collect(&mut self, id: u64) -> Done {
        let mut d = Done::default();
        loop {
            let (got, msg) = self.reply().await;
            assert_eq!(got, id, "frame for another id: {msg:?}");
            match msg {
                AgentMsg::Started { pid } => d.pid = pid,
                AgentMsg::Output {
                    stream: Stream::Stdout,
                    data,
                } => d.out.extend(data.iter()),
                AgentMsg::Output {
                    stream: Stream::Stderr,
                    data,
                } => d.err.extend(data.iter()),
                AgentMsg::Exit(e) => {
                    d.exit = Some(e);
                    return d;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[derive(Default, Debug)]
pub struct Done {
    pub pid: u32,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub exit: Option<Exit>,
}

impl Done {
    pub fn exit(&self) -> &Exit {
        self.exit.as_ref().expect("exit")
    }
}

pub fn run_msg(command: &str, timeout_ms: Option<u64>) -> AgentMsg {
    AgentMsg::Run(Run {
        command: command.into(),
        env: vec![("CREW_TEST_VAR".into(), "from request".into())],
        timeout_ms,
        stdin: false,
    })
}

pub fn kind_of(msg: AgentMsg) -> u16 {
    msg.encode().0
}

/// Wait (at most [`WAIT`]) until `cond` holds.
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    crate::support::proc::wait_until_async(what, WAIT, cond).await;
}
