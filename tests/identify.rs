//! Shared accounts: with `identify = true` in the daemon's `daemon.toml`, commands that act
//! say who the operator is (`CREW_OPERATOR`, or the prompt on a terminal), the daemon refuses
//! clients that did not, and the audit log names the operator beside the login.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS: &str = "[[host]]\nname = \"n[1-2]\"\ntransport = \"local\"\ntags = [\"role=demo\"]\n";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts.toml"), HOSTS).expect("hosts.toml");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        std::fs::write(dir.path().join("config/daemon.toml"), "identify = true\n")
            .expect("daemon.toml");
        Env { dir }
    }

    /// crew with stdin not a terminal; (exit code, stdout, stderr), bounded.
    fn crew(&self, args: &[&str], operator: Option<&str>) -> (Option<i32>, String, String) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.arg("--hosts")
            .arg(self.dir.path().join("hosts.toml"))
            .args(args)
            .env("CREW_HOME", self.dir.path().join("home"))
            .env("CREW_CONFIG_DIR", self.dir.path().join("config"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env_remove("CREW_HOSTS")
            .env_remove("CREW_OPERATOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(op) = operator {
            c.env("CREW_OPERATOR", op);
        }
        let mut child = c.spawn().expect("start crew");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("crew {args:?} did not exit within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = child.wait_with_output().expect("output");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.crew(&["daemon", "stop"], None);
    }
}

#[test]
fn a_daemon_that_asks_who_is_there_acts_only_for_a_named_operator() {
    let env = Env::new();
    let (code, _, err) = env.crew(&["run", "role=demo", "--", "true"], None);
    assert_eq!(code, Some(2), "refused without a name: {err}");
    assert!(err.contains("CREW_OPERATOR"), "{err}");
    // Looking is not acting.
    let (code, out, err) = env.crew(&["hosts"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("n1"), "{out}");

    let (code, out, err) = env.crew(&["run", "role=demo", "--", "echo hi"], Some("alice"));
    assert_eq!(code, Some(0), "{out}{err}");
    let audit =
        std::fs::read_to_string(env.dir.path().join("home/audit.jsonl")).expect("audit log");
    let line: serde_json::Value =
        serde_json::from_str(audit.lines().last().expect("a line")).expect("JSON");
    let who = line["who"].as_str().expect("who");
    assert_eq!(who, format!("alice ({})", crew::paths::whoami()));

    // The daemon itself refuses a client that skips the question.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let socket = env.dir.path().join("home/daemon.sock");
        let c = crew::client::Client::connect_at(&socket)
            .await
            .expect("connect")
            .expect("the daemon is up");
        let req = crew::proto::daemon::RunRequest {
            hosts: vec![crew::model::Host::local("n1")],
            selection: "n1".into(),
            command: "true".into(),
            env: vec![],
            timeout_ms: None,
            fanout: None,
            accept_new_host_keys: false,
            who: "mallory".into(),
            origin: crew::model::RunOrigin::Command,
            stdin: false,
            ask_host_keys: false,
            sudo: None,
        };
        let mut rx = c
            .request(crew::proto::daemon::Request::Run(req))
            .await
            .expect("request");
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(crew::proto::daemon::Event::Error { message })) => {
                assert!(message.contains("named operator"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}
