//! The daemon against a real OpenSSH sshd fleet on loopback (tests/support/sshd.rs): fan-out,
//! warm reuse (the second run opens no SSH connection), per-host errors beside good hosts,
//! kill, and 100 MB of output byte-exact.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use crew::client::Client;
use crew::model::Host;
use crew::model::{ErrorKind, Verdict};
use crew::proto::daemon::{Event, HostEvent, Request, RunRequest};
use sha2::{Digest, Sha256};
use support::daemon::{accepted, fleet_hosts, login, run_req, status, Daemon, Outcome};
use support::{group_members, require_tool};

async fn run(c: &Client, req: RunRequest) -> Outcome {
    support::daemon::run(c, req, WAIT).await
}
use support::sshd::SshdFleet;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_then_warm_reuse_without_new_connections() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = SshdFleet::start(6);
    let (d, c) = Daemon::start_connected().await;
    let hosts = fleet_hosts(&fleet);
    let o = run(&c, run_req(hosts.clone(), "echo hi-$CREW_HOST")).await;
    for h in &hosts {
        assert_eq!(
            o.exits.get(&h.name),
            Some(&Some(0)),
            "{o:?}\n{}",
            fleet.logs()
        );
        assert_eq!(o.stdout[&h.name], format!("hi-{}\n", h.name).into_bytes());
        assert!(!o.started[&h.name].1, "served by an agent, not agentless");
    }
    assert_eq!(accepted(&fleet), hosts.len(), "one SSH connection per host");
    let first = status(&c, WAIT).await;
    assert_eq!(
        first.hosts.len(),
        hosts.len(),
        "every host is in the pool: {first:?}"
    );
    let pids: Vec<Option<u32>> = first.hosts.iter().map(|h| h.agent_pid).collect();
    assert!(pids.iter().all(Option::is_some), "{first:?}");

    let o = run(&c, run_req(hosts.clone(), "true")).await;
    assert!(o.verdicts.iter().all(|(_, v)| *v == Verdict::Ok), "{o:?}");
    assert_eq!(
        accepted(&fleet),
        hosts.len(),
        "the second run opened no SSH connection"
    );
    let second: Vec<Option<u32>> = status(&c, WAIT)
        .await
        .hosts
        .iter()
        .map(|h| h.agent_pid)
        .collect();
    assert_eq!(second, pids, "the same agents served the second run");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_fail_alone_with_clear_errors() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = SshdFleet::start(3);
    let good = fleet_hosts(&fleet);
    let me = login();
    let quick = |mut h: Host, name: &str| {
        h.name = name.to_string();
        h.user = Some(me.clone());
        h.connect_timeout_ms = 2_000;
        h
    };
    let refused = quick(fleet.refused_host("refused"), "refused");
    let (silent, _listener) = fleet.silent_host("silent");
    let silent = quick(silent, "silent");
    let wrong = quick(fleet.with_wrong_host_key(&good[1]), "wrongkey");
    let unknown = quick(fleet.with_unknown_host_key(&good[2]), "unknownkey");
    let stranger = quick(fleet.with_stranger_key(&good[0]), "stranger");
    let mut hosts = vec![good[0].clone(), refused, silent, wrong, unknown, stranger];
    hosts.push(good[1].clone());
    let (d, c) = Daemon::start_connected().await;
    let o = run(&c, run_req(hosts, "echo ok")).await;
    for g in [&good[0], &good[1]] {
        assert_eq!(o.exits.get(&g.name), Some(&Some(0)), "{o:?}");
    }
    let expect = [
        ("refused", ErrorKind::Unreachable),
        ("silent", ErrorKind::ConnectTimeout),
        ("wrongkey", ErrorKind::Hostkey),
        ("unknownkey", ErrorKind::Hostkey),
        ("stranger", ErrorKind::Auth),
    ];
    for (name, kind) in expect {
        let (k, msg) = o
            .failed
            .get(name)
            .unwrap_or_else(|| panic!("{name} failed: {o:?}"));
        assert_eq!(*k, kind, "{name}: {msg}");
        assert!(!msg.is_empty());
    }
    assert!(
        o.failed["wrongkey"].1.contains("known_hosts"),
        "names the file: {}",
        o.failed["wrongkey"].1
    );
    let st = status(&c, WAIT).await;
    let down: Vec<&str> = st
        .hosts
        .iter()
        .filter(|h| h.state == "down")
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(down.len(), 5, "{st:?}");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_over_ssh_leaves_no_process() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = SshdFleet::start(1);
    let (d, c) = Daemon::start_connected().await;
    let mut rx = c
        .request(Request::Run(run_req(
            fleet_hosts(&fleet),
            "sleep 1000 & sleep 1000; wait",
        )))
        .await
        .expect("run");
    let (mut run_id, mut pid) = (None, None);
    while pid.is_none() {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("events")
            .expect("event")
        {
            Event::RunStarted { run_id: id, .. } => run_id = Some(id),
            Event::Host {
                event: HostEvent::Started { pid: p, .. },
                ..
            } => pid = Some(p),
            Event::Host {
                event: HostEvent::Failed { kind, message },
                ..
            } => {
                panic!("{kind:?}: {message}\n{}", fleet.logs())
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (run_id, pid) = (run_id.expect("run id"), pid.expect("pid"));
    assert_ne!(pid, 0, "an agent (not agentless) reports the real pid");
    // Bounded poll: up to ~30 s on a loaded 2-core machine.
    for _ in 0..3000 {
        if group_members(pid).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let members = group_members(pid);
    assert!(
        members.len() >= 3,
        "bash and two sleeps run in group {pid}: {members:?}"
    );
    c.send(Request::Kill {
        run_id,
        host: None,
        signal: libc::SIGKILL,
    })
    .await
    .expect("kill");
    loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("events")
            .expect("event")
        {
            Event::RunFinished { summary, .. } => {
                assert_eq!(summary.hosts[0].1, Verdict::Killed);
                break;
            }
            _ => continue,
        }
    }
    let mut left = group_members(pid);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = group_members(pid);
    }
    assert!(left.is_empty(), "left behind in group {pid}: {left:?}");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_arrive_byte_exact() {
    if !require_tool("sshd") {
        return;
    }
    const SIZE: usize = 100 * 1024 * 1024;
    let fleet = SshdFleet::start(1);
    // Deterministic, non-repeating-ish bytes (every value 0..=255 occurs).
    let src = fleet.dir().join("big.bin");
    let mut data = vec![0u8; SIZE];
    let mut x: u32 = 0x2545_f491;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    std::fs::write(&src, &data).expect("write source");
    let want = Sha256::digest(&data);
    drop(data);
    let (d, c) = Daemon::start_connected().await;
    let mut rx = c
        .request(Request::Run(run_req(
            fleet_hosts(&fleet),
            &format!("cat {}", src.display()),
        )))
        .await
        .expect("run");
    let mut got = Sha256::new();
    let mut n = 0usize;
    let store_dir = loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("events in time")
            .expect("event")
        {
            Event::Host {
                event: HostEvent::Output { data, .. },
                ..
            } => {
                n += data.len();
                got.update(&data);
            }
            Event::Host {
                event: HostEvent::Failed { kind, message },
                ..
            } => panic!("{kind:?}: {message}"),
            Event::RunFinished { summary, .. } => {
                assert_eq!(summary.hosts[0].1, Verdict::Ok);
                break PathBuf::from(summary.store_dir);
            }
            _ => {}
        }
    };
    assert_eq!(n, SIZE);
    assert_eq!(got.finalize(), want, "streamed bytes identical");
    let stored = std::fs::read(store_dir.join(format!("{}.out", fleet_hosts(&fleet)[0].name)))
        .expect("stored");
    assert_eq!(Sha256::digest(&stored), want, "stored bytes identical");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_learned_at_once_are_each_recorded_once() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = SshdFleet::start(20);
    let dir = tempfile::tempdir().expect("tempdir");
    // Every host learns into the same, not yet existing, known_hosts file.
    let known_hosts = dir.path().join("ssh/known_hosts");
    let hosts: Vec<Host> = fleet_hosts(&fleet)
        .into_iter()
        .map(|h| Host {
            known_hosts: vec![known_hosts.clone()],
            ..h
        })
        .collect();
    let (d, c) = Daemon::start_connected().await;
    let mut req = run_req(hosts.clone(), "true");
    req.accept_new_host_keys = true;
    let o = run(&c, req).await;
    assert!(
        o.verdicts.iter().all(|(_, v)| *v == Verdict::Ok) && o.verdicts.len() == hosts.len(),
        "{o:?}\n{}",
        fleet.logs()
    );
    let text = std::fs::read_to_string(&known_hosts).expect("known_hosts written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), hosts.len(), "one line per host:\n{text}");
    // The fleet's key without its comment: `ssh-ed25519 AAAA…`.
    let key: Vec<&str> = fleet.host_pub.split_whitespace().take(2).collect();
    let mut names = std::collections::BTreeSet::new();
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "`[address]:port type key`: {line:?}");
        assert_eq!(f[1..], key[..], "the fleet's host key: {line:?}");
        assert!(names.insert(f[0]), "{} recorded twice:\n{text}", f[0]);
    }
    let want: std::collections::BTreeSet<String> = hosts
        .iter()
        .map(|h| format!("[{}]:{}", h.address, h.port))
        .collect();
    assert_eq!(
        names
            .into_iter()
            .map(String::from)
            .collect::<std::collections::BTreeSet<_>>(),
        want
    );
    drop(c);
    d.stop_within_checked(WAIT).await;
}
