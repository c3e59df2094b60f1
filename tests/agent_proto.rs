//! The agent protocol, driven in-process over duplex pipes with real `bash` commands.

#[path = "agent_proto/harness.rs"]
mod harness;
#[path = "agent_proto/jobs.rs"]
mod jobs;
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crew::model::Stream;
use crew::proto::agent::{AgentMsg, ReadFile, WriteFile};
use crew::proto::frame::{write_frame, MAX_FRAME};
use harness::{agent, kind_of, run_msg, wait_until, WAIT};
use sha2::{Digest, Sha256};
use support::group_members;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn run_streams_output_and_reports_exit() {
    let mut a = agent(8).await;
    let script = "echo out; echo err >&2; echo \"$CREW_TEST_VAR\"; \
                  readlink /proc/self/fd/0; pwd; exit 3";
    let d = a.run(1, script).await;
    assert!(d.pid > 0, "Started came first");
    let out = String::from_utf8(d.out.clone()).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["out", "from request", "/dev/null"], "{out}");
    assert_eq!(d.err, b"err\n");
    assert_eq!(d.exit().code, Some(3));
    assert_eq!(d.exit().signal, None);
    assert!(!d.exit().timed_out);
    assert!(d.exit().max_rss_kb > 0, "{:?}", d.exit());
    let dir = PathBuf::from(lines[3]);
    assert!(dir.starts_with(a.tmp.path()), "own temp dir: {dir:?}");
    let agent_dir = dir.parent().expect("agent dir");
    assert_eq!(agent_dir.parent(), Some(a.tmp.path()), "{dir:?}");
    let d2 = a.run(9, "pwd; ls -A | wc -l").await;
    let out2 = String::from_utf8(d2.out).expect("utf8");
    assert_eq!(
        out2,
        format!("{}/job-9\n0\n", agent_dir.display()),
        "fresh empty dir"
    );
    wait_until("temp dir removed after Exit", || !dir.exists()).await;

    let d = a.run(2, "kill -KILL $$").await;
    assert_eq!((d.exit().code, d.exit().signal), (None, Some(9)));

    let d = a
        .run(3, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
        .await;
    assert_eq!(d.exit().code, Some(0));
    let e = d.exit();
    assert!(e.user_ms + e.sys_ms > 0, "CPU time reported: {e:?}");
    assert!(e.wall_ms > 0, "{e:?}");
}

#[tokio::test]
async fn ping_info_and_files() {
    let mut a = agent(8).await;
    a.send(77, AgentMsg::Ping).await;
    assert_eq!(a.reply().await, (77, AgentMsg::Pong));

    a.send(5, AgentMsg::InfoRequest).await;
    let (id, AgentMsg::Info(info)) = a.reply().await else {
        panic!("expected Info")
    };
    assert_eq!(id, 5);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(info.hostname, host.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(info.kernel, kernel.trim());
    assert_eq!(info.arch, std::env::consts::ARCH);
    assert!(info.cpus >= 1 && info.mem_total_kb > 0, "{info:?}");
    if let Ok(os) = std::fs::read_to_string("/etc/os-release") {
        let id = os.lines().find_map(|l| l.strip_prefix("ID=")).expect("ID=");
        let id = id.trim_matches('"');
        assert_eq!(info.facts.get("os_id").map(String::as_str), Some(id));
    }

    let path = a.tmp.path().join("target.bin");
    let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let sum = hex::encode(Sha256::digest(&data));
    let write = |sha256: &str, data: &[u8]| {
        AgentMsg::WriteFile(WriteFile {
            path: path.to_string_lossy().into(),
            data: data.to_vec(),
            mode: 0o640,
            sha256: sha256.into(),
        })
    };
    a.send(6, write(&sum, &data)).await;
    let expected = AgentMsg::FileWritten {
        size: 5000,
        sha256: sum.clone(),
    };
    assert_eq!(a.reply().await, (6, expected));
    assert_eq!(std::fs::read(&path).expect("written"), data);

    a.send(7, write(&sum, b"something else")).await;
    match a.reply().await {
        (7, AgentMsg::Error { message }) => assert!(message.contains("checksum"), "{message}"),
        other => panic!("checksum mismatch must be refused, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).expect("still there"),
        data,
        "untouched"
    );
    let names: Vec<_> = std::fs::read_dir(a.tmp.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp files left behind: {names:?}");

    let read = |path: &str, max_size| {
        AgentMsg::ReadFile(ReadFile {
            path: path.into(),
            max_size,
        })
    };
    let p = path.to_string_lossy().to_string();
    a.send(8, read(&p, 1 << 20)).await;
    match a.reply().await {
        (8, AgentMsg::FileData(f)) => {
            assert_eq!(
                (f.data, f.mode, f.sha256),
                (data.clone(), 0o640, sum.clone())
            )
        }
        other => panic!("expected FileData, got {other:?}"),
    }
    a.send(9, read(&p, 100)).await;
    assert!(
        matches!(a.reply().await, (9, AgentMsg::Error { .. })),
        "over max_size"
    );
    a.send(10, read("/nonexistent/x", 10)).await;
    assert!(matches!(a.reply().await, (10, AgentMsg::Error { .. })));
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_agent_keeps_serving() {
    let mut a = agent(8).await;
    let run_kind = kind_of(run_msg("true", None));
    // Each case, and what its error says.
    let cases: Vec<(&str, u16, u64, Vec<u8>, String)> = vec![
        (
            "bad payload",
            run_kind,
            11,
            vec![0xff; 7],
            format!("bad frame of kind {run_kind}: malformed payload"),
        ),
        (
            "unknown kind",
            999,
            12,
            vec![1, 2, 3],
            "unknown frame kind 999".into(),
        ),
        (
            "ping with junk",
            kind_of(AgentMsg::Ping),
            13,
            vec![1],
            "Ping carries no payload, got 1 bytes".into(),
        ),
        (
            "a reply as request",
            kind_of(AgentMsg::Started { pid: 1 }),
            14,
            vec![1],
            "Started is not a request the agent accepts".into(),
        ),
        (
            "kill of no job",
            kind_of(AgentMsg::Kill { signal: 9 }),
            15,
            AgentMsg::Kill { signal: 9 }.encode().1,
            "no running job 15".into(),
        ),
        (
            // postcard's zigzag varint: the byte 9 is the signal -5.
            "kill with a signal out of range",
            kind_of(AgentMsg::Kill { signal: 9 }),
            19,
            vec![9],
            "signal -5 is out of range 1..=64".into(),
        ),
    ];
    for (what, kind, id, payload, says) in cases {
        write_frame(&mut a.w, kind, id, &payload)
            .await
            .expect("send");
        match a.reply().await {
            (got, AgentMsg::Error { message }) => {
                assert_eq!(got, id, "{what}: {message}");
                assert!(
                    message.contains(&says),
                    "{what}: {message:?} should say {says:?}"
                );
            }
            other => panic!("{what}: expected Error, got {other:?}"),
        }
    }
    // Oversized: the agent skips the whole frame and stays in sync.
    let len = (MAX_FRAME + 1) as u32;
    let mut big = len.to_be_bytes().to_vec();
    big.extend_from_slice(&run_kind.to_be_bytes());
    big.extend_from_slice(&16u64.to_be_bytes());
    big.resize(4 + MAX_FRAME + 1, b'j');
    a.w.write_all(&big).await.expect("send big");
    match a.reply().await {
        (16, AgentMsg::Error { message }) => assert!(message.contains("limit"), "{message}"),
        other => panic!("expected Error for oversized frame, got {other:?}"),
    }
    // Shorter than a header: skipped, answered with id 0.
    a.w.write_all(&3u32.to_be_bytes()).await.expect("send");
    a.w.write_all(b"abc").await.expect("send");
    assert!(matches!(a.reply().await, (0, AgentMsg::Error { .. })));

    a.send(17, AgentMsg::Ping).await;
    assert_eq!(a.reply().await, (17, AgentMsg::Pong));
    let d = a.run(18, "echo still here").await;
    assert_eq!(d.out, b"still here\n");
}

#[tokio::test]
async fn replies_come_out_of_order_and_pings_are_not_queued() {
    let mut a = agent(8).await;
    // The long job ends only when the test lets it: after the short job and the ping have
    // both been answered.
    let go = a.tmp.path().join("go");
    let long = format!(
        "for i in $(seq 600); do [ -e {} ] && break; sleep 0.05; done; echo long",
        go.display()
    );
    a.send(1, run_msg(&long, None)).await;
    assert!(matches!(a.reply().await, (1, AgentMsg::Started { .. })));
    a.send(2, run_msg("echo short", None)).await;
    a.send(3, AgentMsg::Ping).await;
    let mut order = Vec::new();
    let mut outs: HashMap<u64, Vec<u8>> = HashMap::new();
    while order.len() < 3 {
        if order.len() == 2 && !go.exists() {
            std::fs::write(&go, "").expect("let the long job end");
        }
        match a.reply().await {
            (id, AgentMsg::Exit(e)) => {
                assert_eq!(e.code, Some(0));
                order.push(id);
            }
            (3, AgentMsg::Pong) => order.push(3),
            (id, AgentMsg::Output { data, .. }) => outs.entry(id).or_default().extend(data.iter()),
            (2, AgentMsg::Started { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(order.last(), Some(&1), "the long job ends last: {order:?}");
    assert_eq!(outs[&2], b"short\n");
    assert_eq!(outs[&1], b"long\n");
}

#[tokio::test]
async fn queue_limit_refuses_and_kill_reaches_grandchildren() {
    let mut a = agent(2).await;
    a.send(1, run_msg("sleep 1000 & sleep 1000", None)).await;
    let (1, AgentMsg::Started { pid }) = a.reply().await else {
        panic!("expected Started")
    };
    a.send(2, run_msg("sleep 1000", None)).await;
    assert!(matches!(a.reply().await, (2, AgentMsg::Started { .. })));
    a.send(3, run_msg("echo too many", None)).await;
    match a.reply().await {
        (3, AgentMsg::Refused { reason }) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    wait_until("both sleeps running", || group_members(pid).len() >= 2).await;
    a.send(1, AgentMsg::Kill { signal: 9 }).await;
    let d = a.collect(1).await;
    assert_eq!(d.exit().signal, Some(9));
    wait_until("no process of the group left", || {
        group_members(pid).is_empty()
    })
    .await;
    a.send(2, AgentMsg::Kill { signal: 15 }).await;
    assert_eq!(a.collect(2).await.exit().signal, Some(15));
    let d = a.run(4, "echo room again").await;
    assert_eq!(d.out, b"room again\n");
}

#[tokio::test]
async fn timeout_terms_then_kills() {
    let mut a = agent(8).await;
    a.send(1, run_msg("sleep 1000", Some(300))).await;
    let d = a.collect(1).await;
    assert!(d.exit().timed_out);
    assert_eq!(d.exit().signal, Some(libc::SIGTERM));
    let stubborn = "trap '' TERM; sleep 1000; echo survived";
    a.send(2, run_msg(stubborn, Some(300))).await;
    let d = a.collect(2).await;
    assert!(d.exit().timed_out);
    assert_eq!(d.exit().signal, Some(libc::SIGKILL), "KILL after grace");
    assert!(d.out.is_empty());
    wait_until("no process of the group left", || {
        group_members(d.pid).is_empty()
    })
    .await;
}

#[tokio::test]
async fn output_is_binary_safe_and_large_output_is_exact_under_backpressure() {
    let mut a = agent(8).await;
    let all: Vec<u8> = (0..=255u8).collect();
    let small = a.tmp.path().join("all-bytes");
    std::fs::write(&small, &all).expect("write");
    let d = a
        .run(1, &format!("cat {0}; cat {0} >&2", small.display()))
        .await;
    assert_eq!((d.out, d.err), (all.clone(), all));

    let size = 20_000_000usize;
    let big = a.tmp.path().join("big");
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8 ^ (i >> 13) as u8)
        .collect();
    std::fs::write(&big, &data).expect("write big");
    let want = hex::encode(Sha256::digest(&data));
    drop(data);
    let cmd = format!("exec cat {}", big.display());
    a.send(2, run_msg(&cmd, None)).await;
    let (2, AgentMsg::Started { pid }) = a.reply().await else {
        panic!("expected Started")
    };
    // Read nothing: the command must be held back (blocked writing to its pipe), not
    // drained into memory. Wait until cat sleeps inside write(2), then see how much it wrote.
    wait_until("cat blocked in write(2) while nobody reads", || {
        blocked_in_write(pid)
    })
    .await;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/pid/io");
    let wchar: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar");
    assert!(wchar < 4 << 20, "cat wrote {wchar} bytes while nobody read");
    let mut h = Sha256::new();
    let (mut n, mut frames) = (0usize, 0usize);
    loop {
        match a.reply().await {
            (2, AgentMsg::Output { stream, data }) => {
                assert_eq!(stream, Stream::Stdout);
                assert!(data.len() <= 64 * 1024);
                h.update(&data);
                // What was consumed may be sent again (the daemon's link grants likewise).
                let bytes = data.len() as u64;
                a.send(2, AgentMsg::Credit { bytes }).await;
                n += data.len();
                frames += 1;
                if frames % 16 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (2, AgentMsg::Exit(e)) => {
                assert_eq!(e.code, Some(0));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(n, size);
    assert_eq!(hex::encode(h.finalize()), want, "byte-exact");
}

/// True while `pid` sleeps inside write(2) (`/proc/<pid>/syscall` names the call it is
/// blocked in; `running` when it is not in one).
fn blocked_in_write(pid: u32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let sleeping = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/syscall: {e}"));
    let nr = syscall.split_whitespace().next().unwrap_or("");
    sleeping && nr == libc::SYS_write.to_string()
}

#[tokio::test]
async fn input_eof_kills_running_jobs_and_ends_the_agent() {
    let mut a = agent(8).await;
    a.send(
        1,
        run_msg("touch left-behind; sleep 1000 & sleep 1000", None),
    )
    .await;
    let (1, AgentMsg::Started { pid }) = a.reply().await else {
        panic!("expected Started")
    };
    wait_until("both sleeps running", || group_members(pid).len() >= 2).await;
    a.w.shutdown().await.expect("close input");
    let d = a.collect(1).await;
    assert_eq!(d.exit().signal, Some(9));
    let served = tokio::time::timeout(WAIT, &mut a.served)
        .await
        .expect("agent ends");
    served.expect("join").expect("serve ok");
    wait_until("nothing left behind", || group_members(pid).is_empty()).await;
    let left: Vec<_> = std::fs::read_dir(a.tmp.path()).expect("ls").collect();
    assert!(left.is_empty(), "the agent's temp dir is gone: {left:?}");
}

#[tokio::test]
async fn a_job_sends_no_more_than_its_credit_and_others_go_on() {
    use crew::proto::agent::INITIAL_WINDOW;
    let mut a = agent(8).await;
    // 3 MB of output, nothing granted beyond the initial window.
    a.send(1, run_msg("head -c 3000000 /dev/zero", None)).await;
    let (1, AgentMsg::Started { pid }) = a.reply().await else {
        panic!("expected Started")
    };
    let mut got = 0u64;
    while got < INITIAL_WINDOW {
        match a.reply().await {
            (1, AgentMsg::Output { data, .. }) => got += data.len() as u64,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, INITIAL_WINDOW, "exactly the initial window");
    // Job 1 is held; job 2 runs to its end meanwhile, and nothing more of job 1 comes.
    let d = a.run(2, "echo second").await;
    assert_eq!(d.out, b"second\n");
    assert!(
        !group_members(pid).is_empty(),
        "job 1 is blocked, not finished"
    );
    // A grant for a job that does not exist is ignored (no Error reply).
    a.send(99, AgentMsg::Credit { bytes: 5 }).await;
    a.send(1, AgentMsg::Credit { bytes: 1000 }).await;
    let mut more = 0u64;
    while more < 1000 {
        match a.reply().await {
            (1, AgentMsg::Output { data, .. }) => more += data.len() as u64,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(more, 1000, "exactly the grant");
    a.send(1, AgentMsg::Credit { bytes: u64::MAX }).await;
    let d = a.collect(1).await;
    assert_eq!(got + more + d.out.len() as u64, 3_000_000, "nothing lost");
    assert_eq!(d.exit().code, Some(0));
}
