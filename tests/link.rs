//! `AgentLink` against the in-process agent over duplex pipes, with real `bash` commands.

use std::io::Cursor;
use std::time::Duration;

use crew::agent::{serve, AgentOptions};
use crew::daemon::link::{AgentLink, Handshake, Job, LinkError, LinkOptions};
use crew::proto::agent::{AgentMsg, Exit, Hello, ReadFile, Run, Stream, WriteFile, SYNC_MARKER};
use crew::proto::PROTO_VERSION;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    link: AgentLink,
    hs: Handshake,
    /// Relays bytes between link and agent; aborting it cuts the link.
    wire: JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

fn opts() -> LinkOptions {
    LinkOptions {
        expected_build: Some("test-build".into()),
        handshake_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_misses: 3,
    }
}

/// An in-process agent whose output is preceded by `junk`, reached through a cuttable wire.
async fn setup(junk: &[u8], link_opts: LinkOptions) -> Result<Setup, LinkError> {
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

fn run(command: &str) -> Run {
    Run {
        command: command.into(),
        env: Vec::new(),
        timeout_ms: None,
    }
}

#[derive(Default)]
struct Outcome {
    out: Vec<u8>,
    err: Vec<u8>,
    exit: Option<Exit>,
    terminal: Option<AgentMsg>,
}

/// Drain a job's events; checks the sequence Started, Output…, one terminal message, end.
async fn finish(mut job: Job) -> Outcome {
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
            None => {
                assert!(o.terminal.is_some(), "a terminal message before the end");
                return o;
            }
        }
    }
}

#[tokio::test]
async fn junk_before_the_marker_is_skipped_and_reported() {
    let junk = b"Welcome to host\n\x1b[1mchatty .bashrc\x1b[0m\n\x00\xff";
    let s = setup(junk, opts()).await.expect("connect");
    assert_eq!(s.hs.skipped, junk);
    assert_eq!(s.hs.agent_build, "test-build");
    assert_eq!(s.hs.agent_pid, std::process::id());
    let rtt = s.link.ping().await.expect("ping");
    assert!(rtt < WAIT);
    let o = finish(
        s.link
            .start(run("echo hi; echo oops >&2"))
            .await
            .expect("start"),
    )
    .await;
    assert_eq!((o.out, o.err), (b"hi\n".to_vec(), b"oops\n".to_vec()));
    assert_eq!(o.exit.expect("exit").code, Some(0));
}

#[tokio::test]
async fn version_mismatch_and_bad_greetings_are_detected() {
    let mut o = opts();
    o.expected_build = Some("other-build".into());
    match setup(b"", o).await {
        Err(LinkError::VersionMismatch { agent, expected }) => {
            assert_eq!(
                (agent.as_str(), expected.as_str()),
                ("test-build", "other-build")
            )
        }
        Err(e) => panic!("expected VersionMismatch, got {e}"),
        Ok(_) => panic!("expected VersionMismatch, got a link"),
    }

    // An agent speaking another protocol version.
    let mut greeting = SYNC_MARKER.to_vec();
    let hello = AgentMsg::Hello(Hello {
        proto: PROTO_VERSION + 1,
        build: "test-build".into(),
        pid: 1,
    });
    hello.encode_frame(0, &mut greeting).expect("encode");
    let r = fake(greeting);
    let res = AgentLink::connect(r, tokio::io::sink(), opts()).await;
    assert!(matches!(res, Err(LinkError::VersionMismatch { .. })));

    // No marker at all, then EOF: a handshake error that shows what was printed.
    let res = AgentLink::connect(
        fake(b"bash: crew: command not found\n".to_vec()),
        tokio::io::sink(),
        opts(),
    )
    .await;
    match res {
        Err(LinkError::Handshake(m)) => assert!(m.contains("command not found"), "{m}"),
        Err(e) => panic!("expected Handshake, got {e}"),
        Ok(_) => panic!("expected Handshake, got a link"),
    }

    // A silent peer: timeout.
    let (silent, _keep) = tokio::io::duplex(64);
    let mut o = opts();
    o.handshake_timeout = Duration::from_millis(200);
    let res = AgentLink::connect(silent, tokio::io::sink(), o).await;
    assert!(matches!(res, Err(LinkError::Timeout(_))));
}

fn fake(bytes: Vec<u8>) -> impl AsyncRead + Unpin + Send + 'static {
    Cursor::new(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_jobs_and_requests() {
    let s = setup(b"", opts()).await.expect("connect");
    let mut tasks = Vec::new();
    for n in 0..60u32 {
        let link = s.link.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = run(&format!("sleep 0.$(( {n} % 4 )); echo job $N"));
            r.env.push(("N".into(), n.to_string()));
            let job = link.start(r).await.expect("start");
            let id = job.id;
            let o = finish(job).await;
            assert_eq!(o.out, format!("job {n}\n").into_bytes());
            assert_eq!(o.exit.expect("exit").code, Some(0));
            id
        }));
    }
    let info = s.link.info().await.expect("info");
    assert!(!info.hostname.is_empty() && info.cpus >= 1);
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("job task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "request ids are unique");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f").to_string_lossy().to_string();
    let data = b"payload".to_vec();
    let sha256 = hex::encode(Sha256::digest(&data));
    let req = WriteFile {
        path: path.clone(),
        data: data.clone(),
        mode: 0o600,
        sha256: sha256.clone(),
    };
    assert_eq!(
        s.link.write_file(req).await.expect("write"),
        (7, sha256.clone())
    );
    let f = s
        .link
        .read_file(ReadFile {
            path: path.clone(),
            max_size: 100,
        })
        .await
        .expect("read");
    assert_eq!((f.data, f.mode, f.sha256), (data, 0o600, sha256));
    let bad = WriteFile {
        path,
        data: b"x".to_vec(),
        mode: 0o600,
        sha256: "00".into(),
    };
    assert!(matches!(
        s.link.write_file(bad).await,
        Err(LinkError::Agent(_))
    ));
}

#[tokio::test]
async fn kill_and_slow_consumer_without_losing_the_link() {
    let s = setup(b"", opts()).await.expect("connect");
    let job = s.link.start(run("sleep 1000")).await.expect("start");
    let killer = job.killer();
    let mut job = job;
    assert!(matches!(
        job.events.recv().await,
        Some(AgentMsg::Started { .. })
    ));
    killer.kill(9).await.expect("kill");
    let o = finish(job).await;
    assert_eq!(o.exit.expect("exit").signal, Some(9));

    // 4 MB read slowly: pauses longer than three heartbeats must not kill the link.
    let mut job = s
        .link
        .start(run("head -c 4000000 /dev/urandom | tee >(sha256sum >&2)"))
        .await
        .expect("start");
    let (mut out, mut err) = (Sha256::new(), Vec::new());
    let mut n = 0;
    while let Some(ev) = tokio::time::timeout(WAIT, job.events.recv())
        .await
        .expect("event")
    {
        match ev {
            AgentMsg::Output {
                stream: Stream::Stdout,
                data,
            } => out.update(&data),
            AgentMsg::Output {
                stream: Stream::Stderr,
                data,
            } => err.extend(data.iter()),
            AgentMsg::Exit(e) => assert_eq!(e.code, Some(0)),
            AgentMsg::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        n += 1;
        if n == 3 || n == 6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(!s.link.is_closed(), "{:?}", s.link.close_reason());
    // stderr carries the sha256sum of what the command wrote to stdout.
    let got = hex::encode(out.finalize());
    let want = String::from_utf8_lossy(&err);
    assert!(
        want.starts_with(&got),
        "stdout hashes to {got}, sha256sum said {want}"
    );
    s.link.ping().await.expect("still alive");
}

#[tokio::test]
async fn a_cut_link_gives_every_pending_job_a_terminal_error() {
    let s = setup(b"", opts()).await.expect("connect");
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut job = s.link.start(run("sleep 1000")).await.expect("start");
        assert!(matches!(
            job.events.recv().await,
            Some(AgentMsg::Started { .. })
        ));
        jobs.push(job);
    }
    s.wire.abort();
    tokio::time::timeout(WAIT, s.link.closed())
        .await
        .expect("closed resolves");
    assert!(s.link.is_closed());
    assert!(s.link.close_reason().is_some());
    for job in jobs {
        match finish(job).await.terminal {
            Some(AgentMsg::Error { message }) => {
                assert!(message.starts_with("link lost"), "{message}")
            }
            other => panic!("expected link lost, got {other:?}"),
        }
    }
    assert!(matches!(
        s.link.start(run("true")).await,
        Err(LinkError::Closed(_))
    ));
    assert!(matches!(s.link.ping().await, Err(LinkError::Closed(_))));
}

#[tokio::test]
async fn missed_heartbeats_declare_the_link_dead() {
    // A peer that says Hello and then nothing, ever (but keeps the pipe open).
    let mut greeting = SYNC_MARKER.to_vec();
    let hello = AgentMsg::Hello(Hello {
        proto: PROTO_VERSION,
        build: "test-build".into(),
        pid: 1,
    });
    hello.encode_frame(0, &mut greeting).expect("encode");
    let (mut ours, theirs): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 20);
    tokio::io::AsyncWriteExt::write_all(&mut ours, &greeting)
        .await
        .expect("greet");
    let (r, w) = tokio::io::split(theirs);
    let (link, _) = AgentLink::connect(r, w, opts()).await.expect("connect");
    let pending = tokio::spawn({
        let link = link.clone();
        async move { link.ping().await }
    });
    tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("declared dead");
    let reason = link.close_reason().expect("reason");
    assert!(reason.contains("heartbeat"), "{reason}");
    assert!(matches!(
        pending.await.expect("join"),
        Err(LinkError::Closed(_))
    ));
    drop(ours);
}
