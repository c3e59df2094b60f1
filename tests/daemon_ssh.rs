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
use support::daemon::{accepted, fleet_hosts, login, next_event, run_req, status, Daemon, Outcome};
use support::os::NoexecTmpfs;
use support::{require_root, require_sshd};

async fn run(c: &Client, req: RunRequest) -> Outcome {
    support::daemon::run(c, req, WAIT).await
}
use support::sshd::SshdFleet;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_then_warm_reuse_without_new_connections() {
    if !require_sshd() {
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
    if !require_sshd() {
        return;
    }
    let fleet = SshdFleet::start(3);
    fleet.preinstall_agent();
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
    // Each error names its kind and says what went wrong, and where.
    let expect = [
        ("refused", ErrorKind::Unreachable, "refused"),
        ("silent", ErrorKind::ConnectTimeout, "handshake"),
        ("wrongkey", ErrorKind::Hostkey, "known_hosts"),
        ("unknownkey", ErrorKind::Hostkey, "--accept-new-host-keys"),
        ("stranger", ErrorKind::Auth, "stranger_ed25519 (rejected)"),
    ];
    for (name, kind, says) in expect {
        let (k, msg) = o
            .failed
            .get(name)
            .unwrap_or_else(|| panic!("{name} failed: {o:?}"));
        assert_eq!(*k, kind, "{name}: {msg}");
        assert!(msg.contains(says), "{name}: {msg:?} should say {says:?}");
    }
    assert!(
        o.failed["wrongkey"].1.contains("CHANGED"),
        "{}",
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
    if !require_sshd() {
        return;
    }
    let fleet = SshdFleet::start(1);
    fleet.preinstall_agent();
    let (d, c) = Daemon::start_connected().await;
    let host = fleet_hosts(&fleet).remove(0);
    support::daemon::kill_leaves_no_process(&c, host, WAIT, || fleet.logs()).await;
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_arrive_byte_exact() {
    if !require_sshd() {
        return;
    }
    const SIZE: usize = 100 * 1024 * 1024;
    let fleet = SshdFleet::start(1);
    fleet.preinstall_agent();
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
        match next_event(&mut rx, WAIT, "output and RunFinished").await {
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
    if !require_sshd() {
        return;
    }
    let fleet = SshdFleet::start(20);
    fleet.preinstall_agent();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentless_when_the_uploaded_agent_cannot_execute() {
    if !require_sshd() || !require_root("to mount a noexec tmpfs") {
        return;
    }
    let fleet = SshdFleet::start(1);
    // The agent directory is on a filesystem mounted noexec: the upload works, the uploaded
    // agent cannot run.
    let noexec = NoexecTmpfs::mount();
    let host = Host {
        agent_dir: noexec.path().join("agents").display().to_string(),
        ..fleet_hosts(&fleet).remove(0)
    };
    let (d, c) = Daemon::start_connected().await;
    let o = run(
        &c,
        run_req(
            vec![host.clone()],
            "echo out-$CREW_HOST; echo err >&2; exit 3",
        ),
    )
    .await;
    assert_eq!(
        o.started.get(&host.name).map(|s| s.1),
        Some(true),
        "agentless: {o:?}\n{}",
        fleet.logs()
    );
    assert_eq!(o.exits.get(&host.name), Some(&Some(3)), "{o:?}");
    assert_eq!(
        o.stdout.get(&host.name).map(Vec::as_slice),
        Some(format!("out-{}\n", host.name).as_bytes())
    );
    assert_eq!(
        o.stderr.get(&host.name).map(Vec::as_slice),
        Some(&b"err\n"[..])
    );
    assert_eq!(o.verdicts, vec![(host.name.clone(), Verdict::Failed)]);
    let st = status(&c, WAIT).await;
    assert!(st.hosts[0].agentless, "{st:?}");
    let reason = st.hosts[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("does not execute"),
        "status says why: {reason}"
    );
    // No agent was left installed on the noexec mount.
    let left: Vec<_> = std::fs::read_dir(noexec.path().join("agents"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    drop(c);
    d.stop_within(WAIT).await;
}
