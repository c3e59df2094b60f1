//! One verdict everywhere. Hosts that fail in each way an operator meets (connection refused,
//! a silent port, a wrong host key, a refused login, a timeout, exit 3, a job killed by the
//! operator) and one that succeeds, over real agents on a loopback sshd fleet. Each host's
//! verdict must be the same from `crew run --json`, from the run store, from the console's
//! model fed with the daemon's real events, from `?unreachable` / `?timeout` / `?failed` /
//! `?killed` / `?ok` after the run, and from the same atoms after a heist over the same hosts
//! (also one whose failing step says `then = "continue"`).

mod support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crew::client::Client;
use crew::console::action::Action;
use crew::console::app::{Model, Settings};
use crew::console::effect::Effect;
use crew::console::history::History;
use crew::console::keymap::{Key, KeyCode, Keymap};
use crew::inventory::Inventory;
use crew::model::{Host, Verdict};
use crew::proto::daemon::{Event, HostEvent, Request};
use support::require_tool;
use support::sshd::SshdFleet;

/// What each host does with the one command, and the verdict every path must give it.
const EXPECTED: &[(&str, Verdict)] = &[
    ("ok", Verdict::Ok),
    ("exit3", Verdict::Failed),
    ("slow", Verdict::Timeout),
    ("killme", Verdict::Killed),
    ("badkey", Verdict::Unreachable),
    ("noauth", Verdict::Unreachable),
    ("refused", Verdict::Unreachable),
    ("silent", Verdict::Unreachable),
];

/// The one command of the run: each host's fate is in its name.
const COMMAND: &str =
    "case $CREW_HOST in exit3) exit 3;; slow) sleep 30;; killme) sleep 60;; *) true;; esac";

/// Wait for a process at most this long.
const PROCESS_WAIT: Duration = Duration::from_secs(120);

struct Env {
    dir: tempfile::TempDir,
    fleet: SshdFleet,
    _silent: TcpListener,
}

fn expected() -> BTreeMap<String, Verdict> {
    EXPECTED.iter().map(|(h, v)| (h.to_string(), *v)).collect()
}

impl Env {
    fn new() -> Env {
        let fleet = SshdFleet::start(6);
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("ssh_config"), "").expect("ssh_config");
        std::fs::create_dir_all(d.join("home")).expect("home");
        std::fs::create_dir_all(d.join("heists")).expect("heists");
        let good = fleet.hosts();
        let mut hosts: Vec<Host> = Vec::new();
        for (i, name) in ["ok", "exit3", "slow", "killme"].iter().enumerate() {
            hosts.push(Host {
                name: name.to_string(),
                ..good[i].clone()
            });
        }
        hosts.push(Host {
            name: "badkey".into(),
            ..fleet.with_wrong_host_key(&good[4])
        });
        hosts.push(Host {
            name: "noauth".into(),
            ..fleet.with_stranger_key(&good[5])
        });
        hosts.push(fleet.refused_host("refused"));
        let (silent, listener) = fleet.silent_host("silent");
        hosts.push(silent);
        let mut toml = format!(
            "[defaults]\nuser = {user:?}\nidentities_only = true\nagent_dir = {agents:?}\n\
             connect_timeout = \"20s\"\nssh_config = {cfg:?}\n",
            user = support::daemon::login(),
            agents = fleet.agent_dir().display().to_string(),
            cfg = d.join("ssh_config").display().to_string(),
        );
        for h in &hosts {
            // The silent host is given up on sooner; every other one answers at once.
            let timeout = if h.name == "silent" { "2s" } else { "20s" };
            toml += &format!(
                "\n[[host]]\nname = {:?}\naddress = {:?}\nport = {}\nidentity_file = {:?}\n\
                 known_hosts = {:?}\nconnect_timeout = {timeout:?}\n",
                h.name,
                h.address,
                h.port,
                h.identity_files[0].display().to_string(),
                h.known_hosts[0].display().to_string(),
            );
        }
        std::fs::write(d.join("hosts.toml"), toml).expect("hosts.toml");
        Env {
            dir,
            fleet,
            _silent: listener,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.arg("--hosts")
            .arg(self.dir.path().join("hosts.toml"))
            .args(args)
            .env("CREW_HOME", self.home())
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env_remove("CREW_HOSTS")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .current_dir(self.dir.path());
        c
    }

    /// Run crew to its end (bounded); (exit code, stdout, stderr).
    fn crew(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crew");
        let (code, out, err) = wait_output(child, PROCESS_WAIT);
        (code, out, err)
    }

    /// The hosts `?word` picks after the last run, by `crew hosts`.
    fn outcome_hosts(&self, word: &str) -> Vec<String> {
        let (code, out, err) = self.crew(&["hosts", &format!("?{word}")]);
        assert_eq!(code, Some(0), "crew hosts ?{word}: {err}");
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n != "0" && !n.ends_with(':'))
            .filter(|n| EXPECTED.iter().any(|(h, _)| h == n))
            .map(str::to_string)
            .collect()
    }

    /// Every host's verdict as the outcome atoms see it now.
    fn verdicts_by_atoms(&self) -> BTreeMap<String, Verdict> {
        let mut out = BTreeMap::new();
        for v in [
            Verdict::Ok,
            Verdict::Failed,
            Verdict::Timeout,
            Verdict::Unreachable,
            Verdict::Killed,
        ] {
            for h in self.outcome_hosts(v.as_str()) {
                assert!(out.insert(h.clone(), v).is_none(), "{h} matched twice");
            }
        }
        out
    }

    fn newest_run_dir(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.home().join("runs"))
            .ok()?
            .flatten()
            .filter_map(|e| {
                let id: u64 = e.file_name().to_str()?.parse().ok()?;
                Some((id, e.path()))
            })
            .max_by_key(|(id, _)| *id)
            .map(|(_, p)| p)
    }

    /// Kill one host's job of the newest run, through the daemon's socket (as the
    /// console's `x` does).
    fn kill_host(&self, rt: &tokio::runtime::Runtime, host: &str) {
        let dir = self.newest_run_dir().expect("the run is in the store");
        let run_id: u64 = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("numbered run dir");
        rt.block_on(async {
            let client = Client::connect_at(&self.home().join("daemon.sock"))
                .await
                .expect("connect")
                .expect("the daemon is up");
            client
                .send(Request::Kill {
                    run_id,
                    host: Some(host.to_string()),
                    signal: libc::SIGTERM,
                })
                .await
                .expect("kill sent");
        });
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.crew(&["daemon", "stop"]);
    }
}

/// Wait for `child` to exit within `limit`, reading its output; kills it past the limit.
fn wait_output(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(out.map(|o| Box::new(o) as Box<dyn std::io::Read + Send>));
    let err = read(err.map(|e| Box::new(e) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + limit;
    let code = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break s.code(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("crew did not exit within {limit:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    (
        code,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// Lines of a child's stdout, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn verdict_of(word: &str) -> Verdict {
    Verdict::parse(word).unwrap_or_else(|| panic!("not a verdict: {word}"))
}

#[test]
fn every_path_gives_each_host_the_same_verdict() {
    if !require_tool("sshd") {
        return;
    }
    let env = Env::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Agents installed and linked first, so the timed part below is the command alone.
    let (code, _, err) = env.crew(&["run", "ok,exit3,slow,killme", "--", "true"]);
    assert_eq!(code, Some(0), "warm-up: {err}\n{}", env.fleet.logs());

    // 1. `crew run --json`: the verdict on every exit and error event.
    let mut child = env
        .command(&["run", "--json", "--timeout", "3s", "*", "--", COMMAND])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crew run");
    let lines = lines_of(&mut child);
    let mut json = BTreeMap::new();
    let deadline = Instant::now() + PROCESS_WAIT;
    while json.len() < EXPECTED.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("crew run --json ended early; verdicts so far {json:?}"));
        let ev: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let host = ev["host"].as_str().expect("host").to_string();
        match ev["event"].as_str() {
            Some("started") if host == "killme" => env.kill_host(&rt, "killme"),
            Some("exit") | Some("error") => {
                let v = verdict_of(ev["verdict"].as_str().expect("verdict"));
                json.insert(host, v);
            }
            _ => {}
        }
    }
    let (code, _, err) = wait_output(child, PROCESS_WAIT);
    assert_eq!(code, Some(1), "not every host succeeded: {err}");
    assert_eq!(json, expected(), "crew run --json");

    // 2. The run store.
    let dir = env.newest_run_dir().expect("the run is stored");
    let run = crew::store::read_run(&dir).expect("read the run");
    let stored: BTreeMap<String, Verdict> = run
        .hosts
        .iter()
        .map(|r| (r.host.clone(), r.verdict))
        .collect();
    assert_eq!(stored, expected(), "run store");

    // 3. The outcome atoms after the run.
    assert_eq!(env.verdicts_by_atoms(), expected(), "?atoms after crew run");

    // 4. The console's model, fed the daemon's events for the same command.
    let console = console_verdicts(&env, &rt);
    assert_eq!(console, expected(), "console model");

    // 5. The outcome atoms after a heist over the same hosts, with the default policy and
    //    with `continue`.
    for policy in ["abort", "continue"] {
        let heists = format!(
            r#"
[heist.same]
select = "*"

[[heist.same.step]]
name = "one"
run = "case ${{host}} in exit3) exit 3;; slow) sleep 30;; *) true;; esac"
timeout = "3s"
on_fail = {{ then = "{policy}" }}

[[heist.same.step]]
name = "two"
run = "case ${{host}} in killme) sleep 60;; *) true;; esac"
"#
        );
        std::fs::write(env.dir.path().join("heists/same.toml"), heists).expect("heist file");
        let heist = heist_verdicts(&env);
        let mut want = expected();
        if policy == "continue" {
            // The failures were let through, but they stay each host's verdict.
            assert_eq!(heist, want, "?atoms after a heist with then = continue");
        } else {
            want.insert("killme".into(), Verdict::Killed);
            assert_eq!(heist, want, "?atoms after a heist");
        }
    }
}

/// Run the heist; once every host but `killme` is done, interrupt it (Ctrl-C), so `killme`
/// is the one host killed. The verdicts as `?atoms` then read them.
fn heist_verdicts(env: &Env) -> BTreeMap<String, Verdict> {
    let mut child = env
        .command(&["heist", "run", "same", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crew heist run");
    let lines = lines_of(&mut child);
    let mut done = Vec::new();
    let deadline = Instant::now() + PROCESS_WAIT;
    let mut interrupted = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let ev: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        if ev["event"] == "host_done" || ev.get("HostDone").is_some() || line.contains("host_done")
        {
            if let Some(h) = line_host(&ev) {
                done.push(h);
            }
        }
        if !interrupted && done.len() == EXPECTED.len() - 1 && !done.iter().any(|h| h == "killme") {
            // SAFETY: kill(2) on the pid of our own child; it has not been reaped yet.
            let r = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            assert_eq!(r, 0, "SIGINT to crew heist run");
            interrupted = true;
        }
    }
    let (code, _, err) = wait_output(child, PROCESS_WAIT);
    assert!(
        interrupted,
        "the heist never reached the point to interrupt it: {err}"
    );
    assert_eq!(code, Some(1), "an interrupted heist exits 1: {err}");
    env.verdicts_by_atoms()
}

/// The host of a `host_done` heist event as JSON.
fn line_host(ev: &serde_json::Value) -> Option<String> {
    let body = ev.get("host_done").unwrap_or(ev);
    body["host"].as_str().map(str::to_string)
}

/// Type the command into a console model, run its Run effect through the daemon, feed the
/// events back (killing `killme` when it starts, as the `x` key would), and read each host's
/// verdict from the model.
fn console_verdicts(env: &Env, rt: &tokio::runtime::Runtime) -> BTreeMap<String, Verdict> {
    let inv = Inventory::load(&env.dir.path().join("hosts.toml")).expect("inventory");
    let settings = Settings {
        timeout_ms: Some(3_000),
        ..Settings::default()
    };
    let km = Keymap::load(None).expect("keymap");
    let mut m = Model::new(inv, km, settings, History::default());
    m.key(Key::ch(':'));
    for c in COMMAND.chars() {
        m.key(Key::ch(c));
    }
    let effects = m.key(Key::plain(KeyCode::Enter));
    let (tag, req) = effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Run { tag, req } => Some((tag, req)),
            _ => None,
        })
        .expect("the console asks for a run");
    assert_eq!(req.hosts.len(), EXPECTED.len(), "all hosts are targets");
    rt.block_on(async {
        let client = Client::connect_at(&env.home().join("daemon.sock"))
            .await
            .expect("connect")
            .expect("the daemon is up");
        let mut rx = client.request(Request::Run(req)).await.expect("run");
        let mut run_id = None;
        loop {
            let ev = tokio::time::timeout(PROCESS_WAIT, rx.recv())
                .await
                .expect("the run ends in time")
                .expect("the daemon stays connected");
            let finished = matches!(ev, Event::RunFinished { .. } | Event::Error { .. });
            match &ev {
                Event::RunStarted { run_id: id, .. } => run_id = Some(*id),
                Event::Host {
                    host,
                    event: HostEvent::Started { .. },
                    ..
                } if host == "killme" => {
                    let kill = Request::Kill {
                        run_id: run_id.expect("RunStarted comes first"),
                        host: Some(host.clone()),
                        signal: libc::SIGTERM,
                    };
                    client.send(kill).await.expect("kill");
                }
                _ => {}
            }
            m.update(Action::Daemon { tag, event: ev });
            if finished {
                break;
            }
        }
    });
    m.outcomes.clone().into_iter().collect()
}
