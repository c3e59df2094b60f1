//! `crew::daemon::ssh` against real OpenSSH sshd processes on loopback addresses.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crew::daemon::ssh::{self, SshError, SshOptions, SshSession};
use crew::model::ErrorKind;
use crew::model::Host;
use crew::model::Stream;
use crew::proto::agent::{AgentMsg, Run};
use support::proc::{processes_with, wait_until_async};
use support::sshd::SshdFleet;

/// Hashing the (large, debug) crew binary is slow: once per test process.
fn opts() -> SshOptions {
    static OPTS: OnceLock<SshOptions> = OnceLock::new();
    OPTS.get_or_init(|| {
        SshOptions::for_agent(PathBuf::from(env!("CARGO_BIN_EXE_crew"))).expect("hash crew")
    })
    .clone()
}

fn fleet(n: usize) -> Option<SshdFleet> {
    support::require_sshd().then(|| SshdFleet::start(n))
}

async fn session(h: &Host) -> SshSession {
    ssh::connect(h, &opts())
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", h.name))
}

async fn connect_err(h: &Host, o: &SshOptions) -> SshError {
    match ssh::connect(h, o).await {
        Ok(_) => panic!("{} connected but should not have", h.name),
        Err(e) => e,
    }
}

fn run(command: &str) -> Run {
    Run {
        command: command.into(),
        env: Vec::new(),
        timeout_ms: None,
        stdin: false,
    }
}

/// Collect an agentless job: (stdout, stderr, terminal message).
async fn collect(s: &SshSession, r: Run) -> (Vec<u8>, Vec<u8>, AgentMsg) {
    let mut job = s.exec(r).await.expect("exec");
    let first = tokio::time::timeout(Duration::from_secs(20), job.events.recv())
        .await
        .expect("Started in time");
    assert_eq!(first, Some(AgentMsg::Started { pid: 0 }));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), job.events.recv())
            .await
            .expect("job event in time")
            .expect("a terminal message before the channel ends");
        match msg {
            AgentMsg::Output {
                stream: Stream::Stdout,
                data,
            } => out.extend_from_slice(&data),
            AgentMsg::Output {
                stream: Stream::Stderr,
                data,
            } => err.extend_from_slice(&data),
            other => return (out, err, other),
        }
    }
}

fn exit_code(m: &AgentMsg) -> Option<i32> {
    match m {
        AgentMsg::Exit(e) => e.code,
        other => panic!("expected Exit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_many_loopback_hosts_reaches_each_address() {
    let Some(fleet) = fleet(20) else { return };
    let hosts = fleet.hosts();
    assert_eq!(hosts.len(), 20);
    let mut tasks = Vec::new();
    for h in hosts.clone() {
        tasks.push(tokio::spawn(async move {
            let s = session(&h).await;
            let (out, _, exit) = collect(&s, run("echo $SSH_CONNECTION; hostname")).await;
            let negotiated = s.negotiated().to_string();
            s.disconnect().await;
            (
                h,
                String::from_utf8_lossy(&out).to_string(),
                exit,
                negotiated,
            )
        }));
    }
    let local = support::proc::hostname();
    for t in tasks {
        let (h, out, exit, negotiated) = t.await.expect("task");
        assert_eq!(exit_code(&exit), Some(0), "{}: {out}", h.name);
        let mut lines = out.lines();
        // SSH_CONNECTION = client_ip client_port server_ip server_port
        let conn: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
        assert_eq!(
            conn.get(2..4),
            Some(&[h.address.as_str(), h.port.to_string().as_str()][..]),
            "{}: {out}",
            h.name
        );
        assert_eq!(lines.next(), Some(local.as_str()), "{}: {out}", h.name);
        assert!(negotiated.contains("kex="), "{negotiated}");
        eprintln!("{}: negotiated {negotiated}", h.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_naming_known_hosts_line() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.with_wrong_host_key(&fleet.hosts()[0]);
    let e = connect_err(&h, &opts()).await;
    assert_eq!(e.kind(), ErrorKind::Hostkey, "{e}");
    let kh = h.known_hosts[0].display().to_string();
    let msg = e.to_string();
    assert!(msg.contains("CHANGED"), "{msg}");
    assert!(msg.contains(&format!("known_hosts {kh}:1")), "{msg}");
    // accept-new never overrides a changed key
    let mut o = opts();
    o.accept_new_host_keys = true;
    assert_eq!(connect_err(&h, &o).await.kind(), ErrorKind::Hostkey);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_refused_then_learned_with_accept_new() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.with_unknown_host_key(&fleet.hosts()[0]);
    let e = connect_err(&h, &opts()).await;
    assert_eq!(e.kind(), ErrorKind::Hostkey, "{e}");
    assert!(e.to_string().contains("unknown"), "{e}");
    assert!(e.to_string().contains("--accept-new-host-keys"), "{e}");

    let mut o = opts();
    o.accept_new_host_keys = true;
    let s = ssh::connect(&h, &o).await.expect("accept-new connects");
    s.disconnect().await;
    let learned = std::fs::read_to_string(&h.known_hosts[0]).expect("read known_hosts");
    assert!(
        learned.contains(&format!("[{}]:{}", h.address, h.port)),
        "{learned}"
    );
    // Now known: a strict connect succeeds.
    session(&h).await.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_host_key_refused_even_with_accept_new() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.with_revoked_host_key(&fleet.hosts()[0]);
    let mut o = opts();
    o.accept_new_host_keys = true;
    let e = connect_err(&h, &o).await;
    assert_eq!(e.kind(), ErrorKind::Hostkey, "{e}");
    assert!(e.to_string().contains("REVOKED"), "{e}");
    let text = std::fs::read_to_string(&h.known_hosts[0]).expect("read");
    assert_eq!(text.lines().count(), 1, "nothing learned: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_silent_and_bad_key_hosts_fail_with_their_kind() {
    let Some(fleet) = fleet(1) else { return };
    let e = connect_err(&fleet.refused_host("closed"), &opts()).await;
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains("closed"), "{e}");

    let (mut silent, _listener) = fleet.silent_host("silent");
    silent.connect_timeout_ms = 400;
    let t0 = Instant::now();
    let e = connect_err(&silent, &opts()).await;
    assert_eq!(e.kind(), ErrorKind::ConnectTimeout, "{e}");
    assert!(e.to_string().contains("handshake"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "timeout not enforced"
    );

    let h = fleet.with_stranger_key(&fleet.hosts()[0]);
    let e = connect_err(&h, &opts()).await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&crew::paths::whoami()), "{msg}");
    assert!(msg.contains("stranger_ed25519 (rejected)"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentless_exec_reports_exit_code_and_separate_stderr() {
    let Some(fleet) = fleet(1) else { return };
    let s = session(&fleet.hosts()[0]).await;
    let mut r = run("echo out-$CREW_X; echo err >&2; exit 3");
    r.env = vec![("CREW_X".into(), "it's here".into())];
    let (out, err, exit) = collect(&s, r).await;
    assert_eq!(String::from_utf8_lossy(&out), "out-it's here\n");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    assert_eq!(exit_code(&exit), Some(3));

    // binary-safe, and more than one window of output
    let (out, _, exit) = collect(&s, run("head -c 3000000 /dev/zero")).await;
    assert_eq!(exit_code(&exit), Some(0));
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|b| *b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentless_timeout_and_kill_leave_no_process() {
    let Some(fleet) = fleet(1) else { return };
    let s = Arc::new(session(&fleet.hosts()[0]).await);
    // Unique per run, so pgrep sees only this test's processes.
    let (t_mark, k_mark) = (
        format!("sleep 1000.{}1", fleet.port),
        format!("sleep 1000.{}2", fleet.port),
    );
    let mut r = run(&t_mark);
    r.timeout_ms = Some(300);
    let (_, _, exit) = collect(&s, r).await;
    match exit {
        AgentMsg::Exit(e) => {
            assert!(e.timed_out, "{e:?}");
            assert_eq!(e.code, None, "{e:?}");
            assert!(e.signal.is_some(), "{e:?}");
        }
        other => panic!("expected Exit, got {other:?}"),
    }
    let mut job = s.exec(run(&k_mark)).await.expect("exec");
    let first = tokio::time::timeout(Duration::from_secs(20), job.events.recv())
        .await
        .expect("Started in time");
    assert_eq!(first, Some(AgentMsg::Started { pid: 0 }));
    // The command must really be running before the kill, or "nothing left" proves nothing.
    wait_until_async(
        &format!("`{k_mark}` running"),
        Duration::from_secs(20),
        || !processes_with(&k_mark).is_empty(),
    )
    .await;
    job.kill(15).expect("kill");
    let last = tokio::time::timeout(Duration::from_secs(10), job.events.recv())
        .await
        .unwrap_or_else(|_| panic!("no exit after kill; sshd log:\n{}", fleet.logs()));
    assert!(
        matches!(&last, Some(AgentMsg::Exit(e)) if e.signal == Some(15)),
        "{last:?}"
    );
    for mark in [t_mark, k_mark] {
        let left = processes_with(&mark);
        assert!(left.is_empty(), "`{mark}` left running: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_is_uploaded_once_then_reused() {
    let Some(fleet) = fleet(1) else { return };
    let o = opts();
    let installed = fleet.agent_dir().join(format!("agent-{}", o.agent_build));
    assert!(!installed.exists());

    let s = session(&fleet.hosts()[0]).await;
    let ch = s.start_agent(&o).await.expect("start agent");
    let meta = std::fs::metadata(&installed).expect("agent installed");
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read(&installed).expect("read installed"),
        std::fs::read(env!("CARGO_BIN_EXE_crew")).expect("read crew"),
        "installed agent is byte-identical"
    );
    drop(ch);
    s.disconnect().await;

    let s2 = session(&fleet.hosts()[0]).await;
    let _ch2 = s2.start_agent(&o).await.expect("start agent again");
    let again = std::fs::metadata(&installed).expect("still installed");
    assert_eq!((again.ino(), again.mtime()), (meta.ino(), meta.mtime()));
    assert_eq!(again.mtime_nsec(), meta.mtime_nsec(), "not re-uploaded");
    let leftovers: Vec<_> = std::fs::read_dir(fleet.agent_dir())
        .expect("agent dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_that_cannot_be_installed_is_reported_unavailable() {
    let Some(fleet) = fleet(1) else { return };
    let mut h = fleet.hosts()[0].clone();
    h.agent_dir = "/proc/crew-cannot-write-here".into();
    let s = session(&h).await;
    let e = match s.start_agent(&opts()).await {
        Ok(_) => panic!("agent started in /proc"),
        Err(e) => e,
    };
    assert!(matches!(e, SshError::AgentUnavailable(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Agent);
    assert!(
        e.to_string().contains("/proc/crew-cannot-write-here"),
        "{e}"
    );
    // the connection stays usable for agentless exec
    let (out, _, exit) = collect(&s, run("echo still-here")).await;
    assert_eq!(exit_code(&exit), Some(0));
    assert_eq!(String::from_utf8_lossy(&out), "still-here\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_agent_serves_jobs_over_the_ssh_channel() {
    use crew::daemon::link::{AgentLink, LinkOptions};
    let Some(fleet) = fleet(2) else { return };
    fleet.preinstall_agent();
    let o = opts();
    for h in fleet.hosts() {
        let s = session(&h).await;
        let ch = s.start_agent(&o).await.expect("start agent");
        let link_opts = LinkOptions {
            expected_build: Some(o.agent_build.clone()),
            ..LinkOptions::default()
        };
        let (link, hello) = AgentLink::connect(ch.reader, ch.writer, link_opts)
            .await
            .unwrap_or_else(|e| panic!("{}: agent handshake: {e}", h.name));
        assert_eq!(hello.agent_build, o.agent_build);
        assert!(hello.agent_pid > 0);
        let mut job = link
            .start(run("echo out; echo err >&2; exit 4"))
            .await
            .expect("start job");
        let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), None);
        while let Some(m) = tokio::time::timeout(Duration::from_secs(20), job.events.recv())
            .await
            .expect("job event in time")
        {
            match m {
                AgentMsg::Started { pid } => assert!(pid > 0),
                AgentMsg::Output {
                    stream: Stream::Stdout,
                    data,
                } => out.extend_from_slice(&data),
                AgentMsg::Output {
                    stream: Stream::Stderr,
                    data,
                } => err.extend_from_slice(&data),
                AgentMsg::Exit(e) => {
                    exit = Some(e);
                    break;
                }
                other => panic!("{}: unexpected {other:?}", h.name),
            }
        }
        assert_eq!(out, b"out\n");
        assert_eq!(err, b"err\n");
        assert_eq!(exit.expect("exit").code, Some(4));
        link.ping().await.expect("ping over ssh");
        s.disconnect().await;
        tokio::time::timeout(Duration::from_secs(10), link.closed())
            .await
            .expect("link notices the disconnect");
    }
}

/// `KexAlgorithms` in the ssh_config that hosts.toml names: offered in the user's order
/// (the server takes the client's first it supports), prefixes resolved, and a list of
/// nothing crew supports fails that host alone, naming the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_config_kex_algorithms_are_offered_in_the_users_order() {
    let Some(fleet) = fleet(4) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        "Host h001\n  KexAlgorithms curve25519-sha256\n\
         Host h002\n  KexAlgorithms ^ecdh-sha2-nistp384\n\
         Host h003\n  KexAlgorithms sntrup761x25519-sha512\n",
    )
    .expect("ssh_config");
    let mut toml = fleet.inventory_defaults(&ssh_config);
    for h in fleet.hosts() {
        toml += &format!(
            "\n[[host]]\nname = {:?}\naddress = {:?}\n",
            h.name, h.address
        );
    }
    let hosts_toml = dir.path().join("hosts.toml");
    std::fs::write(&hosts_toml, toml).expect("hosts.toml");
    let inv = crew::inventory::Inventory::load(&hosts_toml).expect("inventory");
    let host = |name: &str| inv.host(name).expect("host in inventory").clone();

    for (name, kex) in [
        ("h001", "curve25519-sha256"),
        ("h002", "ecdh-sha2-nistp384"),
    ] {
        let s = session(&host(name)).await;
        assert!(
            s.negotiated().starts_with(&format!("kex={kex} ")),
            "{name}: {}",
            s.negotiated()
        );
        let (out, _, exit) = collect(&s, run("echo ok")).await;
        assert_eq!(
            (exit_code(&exit), out),
            (Some(0), b"ok\n".to_vec()),
            "{name}"
        );
        s.disconnect().await;
    }

    let before = fleet.logs().matches("Connection from").count();
    assert!(before >= 2, "sshd logs connections:\n{}", fleet.logs());
    let e = connect_err(&host("h003"), &opts()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("h003") && msg.contains("KexAlgorithms sntrup761x25519-sha512"),
        "{msg}"
    );
    assert!(msg.contains("ssh config"), "{msg}");
    assert_eq!(
        fleet.logs().matches("Connection from").count(),
        before,
        "refused before connecting"
    );

    // No KexAlgorithms: crew's own order still works.
    let h = host("h004");
    assert_eq!(h.kex, None);
    session(&h).await.disconnect().await;
}
