//! `AgentLink` against the in-process agent over duplex pipes, with real `bash` commands.

#[path = "link/harness.rs"]
mod harness;
mod support;

use std::time::Duration;

use crew::daemon::link::{AgentLink, LinkError};
use crew::model::Stream;
use crew::proto::agent::{AgentMsg, Hello, ReadFile, WriteFile, SYNC_MARKER};
use crew::proto::PROTO_VERSION;
use harness::{drain, fake, finish, next, opts, quick_heartbeats, run, setup, WAIT};
use sha2::{Digest, Sha256};
use support::group_members;
use support::proc::wait_until_async;
use tokio::io::DuplexStream;

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
    let o = quick_heartbeats(100);
    // A consumer that reads nothing for longer than the link takes to declare a silent
    // peer dead.
    let pause = o.heartbeat_interval * (o.heartbeat_misses + 2);
    let s = setup(b"", o).await.expect("connect");
    let job = s.link.start(run("sleep 1000")).await.expect("start");
    let killer = job.killer();
    let mut job = job;
    assert!(matches!(
        next(&mut job).await,
        Some(AgentMsg::Started { .. })
    ));
    killer.kill(9).await.expect("kill");
    let o = finish(job).await;
    assert_eq!(o.exit.expect("exit").signal, Some(9));

    // 4 MB read slowly: pauses longer than the missed-heartbeat window must not kill the link.
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
            tokio::time::sleep(pause).await;
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
async fn a_cut_link_ends_every_pending_job_without_an_exit() {
    let s = setup(b"", opts()).await.expect("connect");
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut job = s.link.start(run("sleep 1000")).await.expect("start");
        assert!(matches!(
            next(&mut job).await,
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
    // A lost link has no terminal message to give: each job's events end, and the link
    // says why (the daemon reports that as `lost`).
    for job in jobs {
        let o = drain(job).await;
        assert!(
            o.terminal.is_none(),
            "no exit for a lost link: {:?}",
            o.terminal
        );
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
    let (link, _) = AgentLink::connect(r, w, quick_heartbeats(100))
        .await
        .expect("connect");
    let pending = tokio::spawn({
        let link = link.clone();
        async move { link.ping().await }
    });
    tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("declared dead");
    let reason = link.close_reason().expect("reason");
    assert!(reason.contains("heartbeat"), "{reason}");
    let pinged = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the pending ping ends with the link");
    assert!(matches!(pinged.expect("join"), Err(LinkError::Closed(_))));
    drop(ours);
}

#[tokio::test]
async fn the_crew_agent_binary_behind_a_chatty_shell() {
    let exe = env!("CARGO_BIN_EXE_crew");
    let build = crew::paths::file_hash(std::path::Path::new(exe)).expect("hash");
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("echo 'Last login: yesterday'; exec '{exe}' agent"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crew agent");
    let r = child.stdout.take().expect("stdout");
    let w = child.stdin.take().expect("stdin");
    let mut o = opts();
    o.expected_build = Some(build.clone());
    let (link, hs) = AgentLink::connect(r, w, o).await.expect("connect");
    assert_eq!(hs.skipped, b"Last login: yesterday\n");
    assert_eq!(hs.agent_build, build);
    assert_eq!(Some(hs.agent_pid), child.id());

    let mut job = link
        .start(run("sleep 1000 & sleep 1000"))
        .await
        .expect("start");
    let Some(AgentMsg::Started { pid }) = next(&mut job).await else {
        panic!("expected Started")
    };
    // bash and its two sleeps must exist first, or the final "none left" proves nothing.
    wait_until_async("the job's sleeps running", WAIT, || {
        group_members(pid).len() >= 2
    })
    .await;
    let o = finish(
        link.start(run("echo from the binary"))
            .await
            .expect("start"),
    )
    .await;
    assert_eq!(o.out, b"from the binary\n");

    // Closing the link closes the agent's stdin: it kills its jobs and exits.
    link.close("test is done");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("agent exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let o = drain(job).await;
    assert!(
        o.terminal.is_none(),
        "a closed link gives no exit: {:?}",
        o.terminal
    );
    let reason = link.close_reason().expect("the link says why it closed");
    assert!(reason.contains("test is done"), "{reason}");
    wait_until_async(
        "no process of the job's group outliving the agent",
        WAIT,
        || group_members(pid).is_empty(),
    )
    .await;
}

/// The real `crew agent` binary on pipes, and a link to it.
async fn binary_agent(envs: &[(&str, &str)]) -> (AgentLink, tokio::process::Child) {
    let exe = env!("CARGO_BIN_EXE_crew");
    let build = crew::paths::file_hash(std::path::Path::new(exe)).expect("hash");
    let mut child = tokio::process::Command::new(exe)
        .arg("agent")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crew agent");
    let r = child.stdout.take().expect("stdout");
    let w = child.stdin.take().expect("stdin");
    let mut o = opts();
    o.expected_build = Some(build);
    let (link, _) = AgentLink::connect(r, w, o).await.expect("connect");
    (link, child)
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_holds_back_only_its_own_job() {
    let (link, agent) = binary_agent(&[]).await;
    let agent_pid = agent.id().expect("agent pid");
    // Job A floods and its consumer reads nothing for now.
    let a = link.start(run("seq 1 3000000")).await.expect("start A");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Job B on the same link starts, streams and exits meanwhile.
    let t = std::time::Instant::now();
    let b = tokio::time::timeout(
        WAIT,
        finish(link.start(run("seq 1 100000")).await.expect("B")),
    )
    .await
    .expect("B finishes while A's consumer stalls");
    let b_latency = t.elapsed();
    let want_b: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(b.out == want_b.as_bytes(), "B's output is whole");
    assert_eq!(b.exit.expect("exit").code, Some(0));
    let rss = vm_rss_kb(agent_pid);
    eprintln!("second job {b_latency:?} with the first stalled; agent VmRSS {rss} kB");
    assert!(rss < 64 * 1024, "agent RSS {rss} kB under a stalled flood");
    // Now A's consumer reads: every byte is there, in order.
    let o = finish(a).await;
    let want_a: String = (1..=3_000_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(o.out.len(), want_a.len());
    assert!(o.out == want_a.as_bytes(), "A's output is exact");
    assert_eq!(o.exit.expect("exit").code, Some(0));
    assert!(!link.is_closed(), "{:?}", link.close_reason());
}

#[tokio::test]
async fn a_dropped_job_does_not_block_its_command() {
    let s = setup(b"", opts()).await.expect("connect");
    let mut job = s
        .link
        .start(run("head -c 20000000 /dev/zero"))
        .await
        .expect("start");
    let Some(AgentMsg::Started { pid }) = job.events.recv().await else {
        panic!("expected Started")
    };
    // Nobody reads its output any more: the command must still run to its end.
    drop(job);
    for _ in 0..600 {
        if group_members(pid).is_empty() {
            assert!(!s.link.is_closed(), "{:?}", s.link.close_reason());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the command of a dropped job stayed blocked");
}

#[tokio::test]
async fn an_agent_sending_past_its_credit_loses_the_link() {
    use crew::proto::agent::INITIAL_WINDOW;
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
    let mut o = opts();
    o.job_window = INITIAL_WINDOW;
    let (link, _) = AgentLink::connect(r, w, o).await.expect("connect");
    let job = link.start(run("flood")).await.expect("start");
    // A rogue agent: 64 KiB chunks, one more than the window allows.
    let mut frames = Vec::new();
    AgentMsg::Started { pid: 2 }
        .encode_frame(job.id, &mut frames)
        .expect("encode");
    for _ in 0..=(INITIAL_WINDOW / 65536) {
        AgentMsg::Output {
            stream: Stream::Stdout,
            data: serde_bytes::ByteBuf::from(vec![b'x'; 65536]),
        }
        .encode_frame(job.id, &mut frames)
        .expect("encode");
    }
    tokio::io::AsyncWriteExt::write_all(&mut ours, &frames)
        .await
        .expect("flood");
    tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("the link is closed");
    let reason = link.close_reason().expect("reason");
    assert!(reason.contains("credit"), "{reason}");
    let o = drain(job).await;
    assert_eq!(
        o.out.len() as u64,
        INITIAL_WINDOW,
        "what was within credit arrives"
    );
}
