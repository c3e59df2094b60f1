//! The daemon in-process (`crew::daemon::serve`) under a temp `CREW_HOME`, a client on its
//! socket, and small helpers shared by the daemon tests (local and over sshd).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crew::client::Client;
use crew::daemon::{serve, DaemonOptions};
use crew::model::Host;
use crew::model::Stream;
use crew::model::{ErrorKind, Verdict};
use crew::proto::daemon::{Event, HostEvent, Request, RunRequest, StatusReport, Summary};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::sshd::SshdFleet;

/// How long a daemon may take to answer on its socket after it was started.
pub const START_WAIT: Duration = Duration::from_secs(10);

/// A client of the daemon at `socket`, retrying until one answers; panics after `wait`.
pub async fn connect_within(socket: &Path, wait: Duration) -> Client {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(Some(c)) = Client::connect_at(socket).await {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no daemon answered on {} within {wait:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct Daemon {
    pub home: tempfile::TempDir,
    pub opts: DaemonOptions,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    fn spawn() -> Daemon {
        Daemon::spawn_with(|_| {})
    }

    /// Serve under a fresh home, after `prepare` has adjusted the options (and the home
    /// they point into); does not wait for the socket.
    pub fn spawn_with(prepare: impl FnOnce(&mut DaemonOptions)) -> Daemon {
        let home = tempfile::tempdir().expect("tempdir");
        let mut opts =
            DaemonOptions::in_home(home.path(), PathBuf::from(env!("CARGO_BIN_EXE_crew")));
        prepare(&mut opts);
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(opts.clone(), token.clone()));
        Daemon {
            home,
            opts,
            token,
            task,
        }
    }

    /// Start the daemon and wait (at most [`START_WAIT`]) until it answers on its socket.
    pub async fn start() -> Daemon {
        let d = Daemon::spawn();
        drop(connect_within(&d.opts.socket, START_WAIT).await);
        d
    }

    /// Start the daemon and connect a client to it (within [`START_WAIT`]).
    pub async fn start_connected() -> (Daemon, Client) {
        let d = Daemon::spawn();
        let c = connect_within(&d.opts.socket, START_WAIT).await;
        (d, c)
    }

    pub async fn client(&self) -> Client {
        Client::connect_at(&self.opts.socket)
            .await
            .expect("connect")
            .expect("daemon answers")
    }

    /// True once the daemon has ended (by itself: idle, or asked to stop).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Wait (at most `wait`) for the daemon to end by itself, cleanly.
    pub async fn ends_within(self, wait: Duration) {
        tokio::time::timeout(wait, self.task)
            .await
            .expect("the daemon ends in time")
            .expect("daemon task")
            .expect("daemon result");
    }

    /// Cancel the daemon and wait (at most `wait`) for it to end cleanly.
    pub async fn stop_within(self, wait: Duration) {
        self.token.cancel();
        tokio::time::timeout(wait, self.task)
            .await
            .expect("daemon stops in time")
            .expect("daemon task")
            .expect("daemon result");
    }

    /// As `stop_within`, and the daemon removed its socket on exit.
    pub async fn stop_within_checked(self, wait: Duration) {
        let socket = self.opts.socket.clone();
        self.stop_within(wait).await;
        assert!(!socket.exists(), "socket removed on exit");
    }
}

/// The daemon's status report, waiting at most `wait` for it.
pub async fn status(c: &Client, wait: Duration) -> StatusReport {
    let mut rx = c.request(Request::Status).await.expect("status");
    match tokio::time::timeout(wait, rx.recv())
        .await
        .expect("status in time")
    {
        Some(Event::Status(s)) => s,
        other => panic!("expected Status, got {other:?}"),
    }
}

pub use super::proc::login;

/// The fleet's hosts, logging in as us.
pub fn fleet_hosts(fleet: &SshdFleet) -> Vec<Host> {
    let me = login();
    fleet
        .hosts()
        .into_iter()
        .map(|h| Host {
            user: Some(me.clone()),
            ..h
        })
        .collect()
}

/// How many SSH logins the fleet's sshds have accepted so far.
pub fn accepted(fleet: &SshdFleet) -> usize {
    fleet.logs().matches("Accepted publickey").count()
}

/// A run of `command` on `hosts`, as a client would ask for it.
pub fn run_req(hosts: Vec<Host>, command: &str) -> RunRequest {
    RunRequest {
        hosts,
        selection: "test-selection".into(),
        command: command.into(),
        env: vec![],
        timeout_ms: None,
        fanout: None,
        accept_new_host_keys: false,
        who: "tester".into(),
        origin: crew::model::RunOrigin::Command,
        stdin: false,
        ask_host_keys: false,
        sudo: None,
    }
}

/// What a run reported, per host, and the daemon's summary.
#[derive(Default, Debug)]
pub struct Outcome {
    pub stdout: BTreeMap<String, Vec<u8>>,
    pub stderr: BTreeMap<String, Vec<u8>>,
    pub exits: BTreeMap<String, Option<i32>>,
    pub failed: BTreeMap<String, (ErrorKind, String)>,
    /// pid, agentless
    pub started: BTreeMap<String, (u32, bool)>,
    pub verdicts: Vec<(String, Verdict)>,
}

/// Every event of a request until (and including) its final one, each within `wait`: a
/// run's ends with RunFinished (its summary is returned) or an Error (`None`).
pub async fn collect(mut rx: Receiver<Event>, wait: Duration) -> (Vec<Event>, Option<Summary>) {
    let mut events = Vec::new();
    loop {
        let ev = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {wait:?}; so far: {events:?}"))
            .unwrap_or_else(|| panic!("the stream ended without RunFinished: {events:?}"));
        match &ev {
            Event::RunFinished { summary, .. } => {
                let s = summary.clone();
                events.push(ev);
                return (events, Some(s));
            }
            Event::Error { .. } => {
                events.push(ev);
                return (events, None);
            }
            _ => events.push(ev),
        }
    }
}

/// The next event of `rx` within `wait`, naming `what` when none comes.
pub async fn next_event(rx: &mut Receiver<Event>, wait: Duration, what: &str) -> Event {
    tokio::time::timeout(wait, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {wait:?}"))
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}

/// Send `req` and sum up its events until RunFinished (each event within `wait`).
pub async fn run(c: &Client, req: RunRequest, wait: Duration) -> Outcome {
    let rx = c.request(Request::Run(req)).await.expect("run");
    let (events, summary) = collect(rx, wait).await;
    let mut o = Outcome::default();
    for ev in events {
        match ev {
            Event::Host { host, event, .. } => match event {
                HostEvent::Started { pid, agentless } => {
                    o.started.insert(host, (pid, agentless));
                }
                HostEvent::Output { stream, data } => {
                    let to = match stream {
                        Stream::Stdout => &mut o.stdout,
                        Stream::Stderr => &mut o.stderr,
                    };
                    to.entry(host).or_default().extend_from_slice(&data);
                }
                HostEvent::Exit { exit, .. } => {
                    o.exits.insert(host, exit.code);
                }
                HostEvent::Failed { kind, message } => {
                    o.failed.insert(host, (kind, message));
                }
                HostEvent::Progress { .. } => {}
            },
            Event::RunFinished { .. } | Event::RunStarted { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    o.verdicts = summary.expect("RunFinished").hosts;
    o
}

/// The kill scenario, over any transport: `host` runs a shell with two background sleeps;
/// once all three run (or "none left" would prove nothing), the run is killed; the host's
/// verdict is `killed` and nothing of its process group is left. `context` is added to a
/// failure message (e.g. sshd's logs).
pub async fn kill_leaves_no_process(
    c: &Client,
    host: Host,
    wait: Duration,
    context: impl Fn() -> String,
) {
    let name = host.name.clone();
    let mut rx = c
        .request(Request::Run(run_req(
            vec![host],
            "sleep 1000 & sleep 1000; wait",
        )))
        .await
        .expect("run");
    let (mut run_id, mut pid) = (None, None);
    while pid.is_none() {
        match next_event(&mut rx, wait, "RunStarted and Started").await {
            Event::RunStarted { run_id: id, .. } => run_id = Some(id),
            Event::Host {
                event: HostEvent::Started { pid: p, .. },
                ..
            } => pid = Some(p),
            other => panic!("unexpected {other:?}\n{}", context()),
        }
    }
    let (run_id, pid) = (run_id.expect("run id"), pid.expect("pid"));
    assert_ne!(pid, 0, "an agent (not agentless) reports the real pid");
    super::proc::wait_until_async("bash and two sleeps in the job's group", wait, || {
        super::group_members(pid).len() >= 3
    })
    .await;
    c.send(Request::Kill {
        run_id,
        host: None,
        signal: libc::SIGKILL,
    })
    .await
    .expect("kill");
    let (_, summary) = collect(rx, wait).await;
    let summary = summary.expect("RunFinished");
    assert_eq!(summary.hosts, vec![(name, Verdict::Killed)]);
    super::proc::wait_until_async("no process left in the job's group", wait, || {
        super::group_members(pid).is_empty()
    })
    .await;
}
