//! Harness for `tests/link.rs`: an in-process agent reached through a cuttable wire.

use std::io::Cursor;
use std::time::Duration;

use crew::agent::{serve, AgentOptions};
use crew::daemon::link::{AgentLink, Handshake, Job, LinkError, LinkOptions};
use crew::model::{Exit, Stream};
use crew::proto::agent::{AgentMsg, Run};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub link: AgentLink,
    pub hs: Handshake,
    /// Relays bytes between link and agent; aborting it cuts the link.
    pub wire: JoinHandle<()>,
    pub _tmp: tempfile::TempDir,
}

/// Link options for tests: heartbeats far apart enough (10 s without a sign of life) that a
/// loaded machine running many jobs never looks like a dead link. Tests of the heartbeat
/// itself set their own.
pub fn opts() -> LinkOptions {
    LinkOptions {
        expected_build: Some("test-build".into()),
        handshake_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_misses: 10,
        ..LinkOptions::default()
    }
}

/// Heartbeats every `ms` milliseconds, the link dead after three missed.
pub fn quick_heartbeats(ms: u64) -> LinkOptions {
    LinkOptions {
        heartbeat_interval: Duration::from_millis(ms),
        heartbeat_misses: 3,
        ..opts()
    }
}

/// The next event of `job`, within [`WAIT`].
pub async fn next(job: &mut Job) -> Option<AgentMsg> {
    tokio::time::timeout(WAIT, job.events.recv())
        .await
        .expect("job event in time")
}

/// An in-process agent whose output is preceded by `junk`, reached through a cuttable wire.
pub async fn setup(junk: &[u8], link_opts: LinkOptions) -> Result<Setup, LinkError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let agent_opts = AgentOptions {
        tmp_root: Some(tmp.path().to_path_buf()),
        build: "test-build".into(),
        ..AgentOptions::default()
    };
    let (agent_end, mut wire_a) = tokio::io::duplex(64 * 1024);
    let (mut wire_b, link_end) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(agent_end);
    tokio::spawn(serve(ar, aw, agent_opts));
    let wire = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut wire_a, &mut wire_b).await;
    });
    let (lr, lw) = tokio::io::split(link_end);
    let lr = Cursor::new(junk.to_vec()).chain(lr);
    let (link, hs) = AgentLink::connect(lr, lw, link_opts).await?;
    Ok(Setup {
        link,
        hs,
        wire,
        _tmp: tmp,
    })
}

pub fn run(command: &str) -> Run {
    Run {
        command: command.into(),
        env: Vec::new(),
        timeout_ms: None,
        stdin: false,
    }
}

#[derive(Default)]
pub struct Outcome {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub exit: Option<Exit>,
    pub terminal: Option<AgentMsg>,
}

/// Drain a job's events; checks the sequence Started, Output…, one terminal message, end.
pub async fn finish(job: Job) -> Outcome {
    let o = drain(job).await;
    assert!(o.terminal.is_some(), "a terminal message before the end");
    o
}

/// Read a job's events to their end; a job whose link was lost ends with no terminal message.
pub async fn drain(mut job: Job) -> Outcome {
    let mut o = Outcome::default();
    let mut started = false;
    loop {
        let ev = tokio::time::timeout(WAIT, job.events.recv())
            .await
            .expect("job event in time");
        match ev {
            Some(AgentMsg::Started { .. }) => {
                assert!(!started, "one Started");
                started = true;
            }
            Some(AgentMsg::Output { stream, data }) => {
                assert!(started && o.terminal.is_none(), "output in sequence");
                match stream {
                    Stream::Stdout => o.out.extend(data.iter()),
                    Stream::Stderr => o.err.extend(data.iter()),
                }
            }
            Some(m) => {
                assert!(o.terminal.is_none(), "exactly one terminal message");
                if let AgentMsg::Exit(e) = &m {
                    o.exit = Some(e.clone());
                }
                o.terminal = Some(m);
            }
            None => return o,
        }
    }
}

pub fn fake(bytes: Vec<u8>) -> impl AsyncRead + Unpin + Send + 'static {
    Cursor::new(bytes)
}
