//! The daemon in-process (`crew::daemon::serve`) with `local`-transport hosts: real agents
//! (`crew agent` children), a real Unix socket, a real run store under a temp CREW_HOME.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crew::client::Client;
use crew::daemon::serve;
use crew::model::Host;
use crew::model::Verdict;
use crew::proto::daemon::{Event, HostEvent, Request, StatusReport, Summary};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

mod support;
use support::daemon::{connect_within, next_event, run_req, Daemon};
use support::os::ThrowawayUser;
use support::proc::Bounded;
use support::require_root;

const WAIT: Duration = Duration::from_secs(30);

fn hosts(names: &[&str]) -> Vec<Host> {
    names.iter().map(|n| Host::local(n)).collect()
}

/// Every event of a run until (and including) its final one.
async fn collect(rx: Receiver<Event>) -> (Vec<Event>, Option<Summary>) {
    support::daemon::collect(rx, WAIT).await
}

fn output_of(events: &[Event], host: &str, stderr: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if let Event::Host {
            host: h,
            event: HostEvent::Output { stream, data },
            ..
        } = e
        {
            let is_err = *stream == crew::model::Stream::Stderr;
            if h == host && is_err == stderr {
                out.extend_from_slice(data);
            }
        }
    }
    out
}

async fn status(c: &Client) -> StatusReport {
    support::daemon::status(c, WAIT).await
}

#[tokio::test]
async fn socket_is_private_and_a_second_daemon_exits() {
    let d = Daemon::start().await;
    let mode = std::fs::metadata(&d.opts.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let dir = std::fs::metadata(d.home.path())
        .expect("home")
        .permissions()
        .mode();
    assert_eq!(dir & 0o777, 0o700, "socket directory mode {dir:o}");

    // A second daemon on the same socket returns at once, leaving the first serving.
    let second = serve(d.opts.clone(), CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second daemon returns")
        .expect("second daemon exits cleanly");
    let c = d.client().await;
    assert_eq!(c.daemon_pid, std::process::id());
    let s = status(&c).await;
    assert!(s.hosts.is_empty());
    assert!(s.rss_kb > 0, "rss from /proc/self/status");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_from_another_uid_is_refused() {
    use std::os::unix::process::CommandExt;
    if !require_root("to create a throwaway user") {
        return;
    }
    let d = Daemon::start().await;
    let user = ThrowawayUser::create();
    // Open the directory and the socket to everyone: only the daemon's own check of the
    // peer's uid stands between that user and the daemon.
    std::fs::set_permissions(d.home.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod home");
    std::fs::set_permissions(&d.opts.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    // crew's own client refuses first ("the daemon at … belongs to uid 0"): talk to the
    // socket raw, as any program of that user could, and send a Hello frame.
    if !support::require_tool("python3") {
        return;
    }
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(20)\n\
         s.connect({socket:?})\n\
         s.sendall(bytes([0,0,0,16, 0,1, 0,0,0,0,0,0,0,1]) + b'xxxxxx')\n\
         data = s.recv(100)\nprint('GOT', len(data))\n",
        socket = d.opts.socket.display().to_string()
    );
    let mut raw_as_user = Command::new("python3");
    raw_as_user
        .args(["-c", &script])
        .uid(user.uid)
        .gid(user.gid);
    let out = tokio::task::spawn_blocking(move || raw_as_user.output_within(WAIT))
        .await
        .expect("a raw client as another user");
    let (shown, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // The daemon hangs up before answering anything: the read sees the end of the stream.
    assert!(
        shown.contains("GOT 0") || err.contains("Broken pipe") || err.contains("reset"),
        "uid {} was answered:\n{shown}{err}",
        user.uid
    );
    // We are still served.
    let c = d.client().await;
    assert!(status(&c).await.hosts.is_empty());
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let d = Daemon::spawn_with(|opts| {
        // A socket file nobody listens on (a daemon that died without cleaning up).
        drop(std::os::unix::net::UnixListener::bind(&opts.socket).expect("bind"));
        assert!(opts.socket.exists());
    });
    // The new daemon answers on the old path.
    let c = connect_within(&d.opts.socket, WAIT).await;
    let mut rx = c.request(Request::Stop).await.expect("stop");
    assert_eq!(next_event(&mut rx, WAIT, "Stopping").await, Event::Stopping);
    d.ends_within(WAIT).await;
}

#[tokio::test]
async fn run_streams_and_stores_every_host_before_finishing() {
    let d = Daemon::start().await;
    let c = d.client().await;
    let names = ["alpha", "beta", "gamma"];
    let rx = c
        .request(Request::Run(run_req(
            hosts(&names),
            "echo hello; echo oops >&2; exit 3",
        )))
        .await
        .expect("run");
    let (events, summary) = collect(rx).await;
    let summary = summary.expect("RunFinished");
    // Checked right when RunFinished arrives: everything must already be on disk.
    let dir = PathBuf::from(&summary.store_dir);
    assert!(
        dir.starts_with(d.home.path().join("runs")),
        "{}",
        dir.display()
    );
    for h in names {
        assert_eq!(output_of(&events, h, false), b"hello\n", "{h} stdout");
        assert_eq!(output_of(&events, h, true), b"oops\n", "{h} stderr");
        assert_eq!(
            std::fs::read(dir.join(format!("{h}.out"))).expect("out"),
            b"hello\n"
        );
        assert_eq!(
            std::fs::read(dir.join(format!("{h}.err"))).expect("err"),
            b"oops\n"
        );
    }
    // One results file, one JSON line per host.
    let lines = std::fs::read_to_string(dir.join("hosts.jsonl")).expect("hosts.jsonl");
    let mut recs: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("host line"))
        .collect();
    recs.sort_by_key(|r| r["host"].as_str().map(str::to_string));
    assert_eq!(recs.len(), 3, "{lines}");
    for (rec, h) in recs.iter().zip(["alpha", "beta", "gamma"]) {
        assert_eq!(rec["host"], h);
        assert_eq!(rec["code"], 3);
        assert_eq!(rec["verdict"], "failed");
        assert!(rec["wall_ms"].is_u64());
        assert_eq!(rec["stdout_bytes"], 6);
    }
    // The typed reader sees the same, in the run's host order.
    let run = crew::store::read_run(&dir).expect("read_run");
    let read: Vec<&str> = run.hosts.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(read, names);
    assert_eq!(run.meta.command, "echo hello; echo oops >&2; exit 3");
    let exits: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Host {
                host,
                event: HostEvent::Exit { exit: x, .. },
                ..
            } if x.code == Some(3) => Some(host.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(exits.len(), 3, "{events:?}");
    assert_eq!(summary.hosts.len(), 3);
    assert!(summary.hosts.iter().all(|(_, v)| *v == Verdict::Failed));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta"))
            .expect("meta json");
    assert_eq!(meta["command"], "echo hello; echo oops >&2; exit 3");
    // The daemon records who asked from the connection, not from what the client wrote.
    assert_eq!(meta["who"], crew::paths::whoami());
    assert_eq!(meta["hosts"], serde_json::json!(names));
    let audit = std::fs::read_to_string(d.home.path().join("audit.jsonl")).expect("audit log");
    let line: serde_json::Value =
        serde_json::from_str(audit.lines().last().expect("a line")).expect("json");
    assert_eq!(line["selection"], "test-selection");
    assert_eq!(line["who"], crew::paths::whoami());
    assert_eq!(line["hosts"][0], serde_json::json!(["alpha", "failed"]));
    assert!(line["when"].as_str().expect("when").ends_with('Z'));
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn kill_leaves_no_process_behind() {
    let d = Daemon::start().await;
    let c = d.client().await;
    support::daemon::kill_leaves_no_process(&c, Host::local("k1"), WAIT, String::new).await;
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_second_run_reuses_the_agents() {
    let d = Daemon::start().await;
    let c = d.client().await;
    let names = ["r1", "r2", "r3"];
    let pids = |s: &StatusReport| -> Vec<(String, Option<u32>, String)> {
        s.hosts
            .iter()
            .map(|h| (h.name.clone(), h.agent_pid, h.state.clone()))
            .collect()
    };
    let all_ok = |o: support::daemon::Outcome| o.verdicts.iter().all(|(_, v)| *v == Verdict::Ok);
    let s1 = support::daemon::run(&c, run_req(hosts(&names), "true"), WAIT).await;
    assert!(all_ok(s1));
    let first = pids(&status(&c).await);
    assert_eq!(first.len(), 3);
    assert!(
        first.iter().all(|(_, p, st)| p.is_some() && st == "ready"),
        "{first:?}"
    );
    let s2 = support::daemon::run(&c, run_req(hosts(&names), "true"), WAIT).await;
    assert!(all_ok(s2));
    let report = status(&c).await;
    assert_eq!(pids(&report), first, "same agents serve the second run");
    assert_eq!(report.runs_total, 2);
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_lost_agent_is_reported_and_replaced() {
    let d = Daemon::start().await;
    let c = d.client().await;
    let (_, s) = collect(
        c.request(Request::Run(run_req(hosts(&["l1"]), "true")))
            .await
            .expect("run"),
    )
    .await;
    assert!(s.is_some());
    let pid = status(&c).await.hosts[0].agent_pid.expect("agent pid");
    // The agent dies under the daemon.
    let killed = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status_within(WAIT);
    assert!(killed.success());
    // The daemon notices at once (EOF) and reconnects only after a backoff.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut host = status(&c).await.hosts[0].clone();
    while host.state != "lost" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host never became lost: {host:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        host = status(&c).await.hosts[0].clone();
    }
    assert!(host.reason.is_some(), "a lost host says why");
    let (_, s) = collect(
        c.request(Request::Run(run_req(hosts(&["l1"]), "echo back")))
            .await
            .expect("run"),
    )
    .await;
    assert_eq!(
        s.expect("finished").hosts,
        vec![("l1".to_string(), Verdict::Ok)]
    );
    let new_pid = status(&c).await.hosts[0].agent_pid.expect("new agent pid");
    assert_ne!(new_pid, pid, "a new agent replaced the dead one");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn an_idle_daemon_exits() {
    let d = Daemon::spawn_with(|opts| opts.idle_timeout = Some(Duration::from_millis(300)));
    let socket = d.opts.socket.clone();
    // A client keeps it alive while connected: longer than its idle timeout.
    let c = connect_within(&socket, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!d.ended(), "a connected client keeps the daemon up");
    let _ = status(&c).await;
    drop(c);
    d.ends_within(WAIT).await;
    assert!(!socket.exists());
}

#[tokio::test]
async fn a_daemon_whose_socket_is_removed_exits_once_idle() {
    // No idle timeout: only the socket's going can end it.
    let d = Daemon::spawn_with(|opts| opts.idle_timeout = None);
    drop(connect_within(&d.opts.socket, WAIT).await);
    std::fs::remove_file(&d.opts.socket).expect("remove the socket");
    d.ends_within(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn facts_and_files_go_through_the_agent() {
    use crew::proto::daemon::{FileOp, FileResult};
    let d = Daemon::start().await;
    let c = d.client().await;
    let mut rx = c
        .request(Request::Facts {
            hosts: hosts(&["f1", "f2"]),
            accept_new_host_keys: false,
        })
        .await
        .expect("facts");
    let Some(Event::Facts(facts)) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
    else {
        panic!("expected Facts");
    };
    assert_eq!(facts.len(), 2);
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    for (name, info) in &facts {
        let info = info.as_ref().expect("facts of a local host");
        assert_eq!(info.hostname, own.trim(), "{name}");
        assert!(info.cpus > 0);
    }
    let path = d.home.path().join("written.txt").display().to_string();
    let write = FileOp::Write {
        path: path.clone(),
        data: b"payload\n".to_vec(),
        mode: 0o640,
    };
    let mut rx = c
        .request(Request::File {
            host: Host::local("f1"),
            op: write,
            accept_new_host_keys: false,
        })
        .await
        .expect("file");
    match tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
    {
        Some(Event::FileDone(Ok(FileResult::Written { size, .. }))) => assert_eq!(size, 8),
        other => panic!("expected Written, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("written file"), b"payload\n");
    let read = FileOp::Read {
        path,
        max_size: 1024,
    };
    let mut rx = c
        .request(Request::File {
            host: Host::local("f1"),
            op: read,
            accept_new_host_keys: false,
        })
        .await
        .expect("file");
    match tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
    {
        Some(Event::FileDone(Ok(FileResult::Read { data, mode, .. }))) => {
            assert_eq!(data, b"payload\n");
            assert_eq!(mode & 0o777, 0o640);
        }
        other => panic!("expected Read, got {other:?}"),
    }
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_run_store_failure_is_an_error_not_a_finish() {
    let d = Daemon::start().await;
    // The run store's directory is replaced by a plain file: nothing can be stored.
    let runs = d.home.path().join("runs");
    std::fs::remove_dir_all(&runs).expect("rm runs");
    std::fs::write(&runs, b"not a directory").expect("file");
    let c = d.client().await;
    let rx = c
        .request(Request::Run(run_req(hosts(&["s1"]), "true")))
        .await
        .expect("run");
    let (events, summary) = collect(rx).await;
    assert!(summary.is_none(), "never reported finished: {events:?}");
    match events.last() {
        Some(Event::Error { message }) => {
            assert!(
                message.contains(&runs.display().to_string()),
                "names the path: {message}"
            )
        }
        other => panic!("expected an Error, got {other:?}"),
    }
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_host_file_that_cannot_be_written_fails_the_run() {
    let d = Daemon::start().await;
    let c = d.client().await;
    // `<name>.out` exceeds the file-name limit (ENAMETOOLONG): that host cannot be stored.
    let long = "h".repeat(300);
    let rx = c
        .request(Request::Run(run_req(hosts(&["fine", &long]), "echo x")))
        .await
        .expect("run");
    let (events, summary) = collect(rx).await;
    assert!(summary.is_none(), "never reported finished: {events:?}");
    let run_id = events
        .iter()
        .find_map(|e| match e {
            Event::RunStarted { run_id, .. } => Some(*run_id),
            _ => None,
        })
        .expect("RunStarted");
    let message = match events.last() {
        Some(Event::Error { message }) => message.clone(),
        other => panic!("expected an Error, got {other:?}"),
    };
    assert!(
        message.contains(&format!("{long}.out")),
        "names the path: {message}"
    );
    assert!(message.contains("marked failed"), "{message}");
    // The run directory says so too: FAILED holds the error.
    let failed = d.home.path().join(format!("runs/{run_id}/FAILED"));
    let marker =
        std::fs::read_to_string(&failed).unwrap_or_else(|e| panic!("{}: {e}", failed.display()));
    assert!(marker.contains(&format!("{long}.out")), "{marker}");
    assert!(message.ends_with(&marker), "{message}\n{marker}");
    drop(c);
    d.stop_within_checked(WAIT).await;
}

#[tokio::test]
async fn a_failed_marker_that_cannot_be_written_is_reported() {
    let d = Daemon::start().await;
    let c = d.client().await;
    let go = d.home.path().join("go");
    let long = "h".repeat(300);
    // The hosts wait for `go`, so the test can block FAILED before the run ends.
    let cmd = format!(
        "for i in $(seq 600); do [ -e {} ] && break; sleep 0.05; done; echo x",
        go.display()
    );
    let mut rx = c
        .request(Request::Run(run_req(hosts(&["fine", &long]), &cmd)))
        .await
        .expect("run");
    let run_id = match next_event(&mut rx, WAIT, "RunStarted").await {
        Event::RunStarted { run_id, .. } => run_id,
        other => panic!("expected RunStarted, got {other:?}"),
    };
    // A directory where the marker file would go: it cannot be created.
    let failed = d.home.path().join(format!("runs/{run_id}/FAILED"));
    std::fs::create_dir(&failed).expect("block FAILED");
    std::fs::write(&go, "").expect("go");
    let (events, summary) = collect(rx).await;
    assert!(summary.is_none(), "never reported finished: {events:?}");
    match events.last() {
        Some(Event::Error { message }) => {
            assert!(message.contains("could not be marked failed"), "{message}");
            assert!(message.contains(&failed.display().to_string()), "{message}");
            assert!(message.contains(&format!("{long}.out")), "{message}");
        }
        other => panic!("expected an Error, got {other:?}"),
    }
    drop(c);
    d.stop_within_checked(WAIT).await;
}
