//! The daemon in-process (`crew::daemon::serve`) under a temp `CREW_HOME`, a client on its
//! socket, and small helpers shared by the daemon tests (local and over sshd).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crew::client::Client;
use crew::daemon::{serve, DaemonOptions};
use crew::model::Host;
use crew::model::Stream;
use crew::model::{ErrorKind, Verdict};
use crew::proto::daemon::{Event, HostEvent, Request, RunRequest, StatusReport};
use tokio_util::sync::CancellationToken;

use super::sshd::SshdFleet;

pub struct Daemon {
    pub home: tempfile::TempDir,
    pub opts: DaemonOptions,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    fn spawn() -> Daemon {
        let home = tempfile::tempdir().expect("tempdir");
        let opts = DaemonOptions::in_home(home.path(), PathBuf::from(env!("CARGO_BIN_EXE_crew")));
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(opts.clone(), token.clone()));
        Daemon {
            home,
            opts,
            token,
            task,
        }
    }

    /// Start the daemon and wait (at most 5 s) until its socket exists.
    pub async fn start() -> Daemon {
        let d = Daemon::spawn();
        for _ in 0..500 {
            if d.opts.socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(d.opts.socket.exists(), "daemon socket never appeared");
        d
    }

    /// Start the daemon and wait (at most ~5 s) until a client connects to it.
    pub async fn start_connected() -> (Daemon, Client) {
        let d = Daemon::spawn();
        for _ in 0..500 {
            if let Ok(Some(c)) = Client::connect_at(&d.opts.socket).await {
                return (d, c);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("daemon never answered");
    }

    pub async fn client(&self) -> Client {
        Client::connect_at(&self.opts.socket)
            .await
            .expect("connect")
            .expect("daemon answers")
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

/// Our login name from the passwd database (`$USER` may be unset where tests run).
pub fn login() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

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

/// Send `req` and collect its events until RunFinished (each event within `wait`).
pub async fn run(c: &Client, req: RunRequest, wait: Duration) -> Outcome {
    let mut rx = c.request(Request::Run(req)).await.expect("run");
    let mut o = Outcome::default();
    loop {
        let ev = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("events in time")
            .expect("event");
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
            },
            Event::RunFinished { summary, .. } => {
                o.verdicts = summary.hosts;
                return o;
            }
            Event::RunStarted { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
