//! Heists belong to the daemon, over real agents on a loopback sshd fleet: a client killed
//! mid-heist stops nothing (every step runs on every host, `crew heist show` says completed,
//! `crew attach` replays the whole heist); `--detach` starts one and `crew runs` lists it; a
//! daemon killed mid-heist leaves no remote process behind, and the next daemon records the
//! heist as interrupted, per host, in its journal and the audit log.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::require_tool;
use support::sshd::SshdFleet;

const HOSTS: usize = 5;
const WAIT: Duration = Duration::from_secs(120);

struct Env {
    dir: tempfile::TempDir,
    fleet: SshdFleet,
}

impl Env {
    fn new(heists: &str) -> Env {
        let fleet = SshdFleet::start(HOSTS);
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("ssh_config"), "").expect("ssh_config");
        let mut toml = format!(
            "[defaults]\nuser = {user:?}\nport = {port}\nidentity_file = {key:?}\n\
             identities_only = true\nknown_hosts = {kh:?}\nagent_dir = {agents:?}\n\
             connect_timeout = 20\nssh_config = {cfg:?}\n",
            user = support::daemon::login(),
            port = fleet.port,
            key = fleet.client_key.display().to_string(),
            kh = fleet.known_hosts.display().to_string(),
            agents = fleet.agent_dir().display().to_string(),
            cfg = d.join("ssh_config").display().to_string(),
        );
        for h in fleet.hosts() {
            toml += &format!(
                "\n[[host]]\nname = {:?}\naddress = {:?}\ntags = [\"role=web\"]\n",
                h.name, h.address
            );
        }
        std::fs::write(d.join("hosts.toml"), toml).expect("hosts.toml");
        std::fs::create_dir_all(d.join("heists")).expect("heists dir");
        std::fs::write(d.join("heists/h.toml"), heists).expect("heists");
        std::fs::create_dir_all(d.join("home")).expect("home");
        std::fs::create_dir_all(d.join("marks")).expect("marks");
        let env = Env { dir, fleet };
        let (code, out) = env.crew(&["run", "role=web", "--", "true"]);
        assert_eq!(code, Some(0), "warm-up: {out}\n{}", env.fleet.logs());
        env
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn marks(&self) -> PathBuf {
        self.dir.path().join("marks")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.arg("--hosts")
            .arg(self.dir.path().join("hosts.toml"))
            .args(args)
            .env("CREW_HOME", self.home())
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env_remove("CREW_HOSTS")
            .stdin(Stdio::null())
            .current_dir(self.dir.path());
        c
    }

    /// Run crew to its end (bounded): exit code and stdout+stderr.
    fn crew(&self, args: &[&str]) -> (Option<i32>, String) {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crew");
        finish(child, WAIT)
    }

    /// The daemon's pid, from `crew status`.
    fn daemon_pid(&self) -> i32 {
        let (code, out) = self.crew(&["status"]);
        assert_eq!(code, Some(0), "{out}");
        out.split(|c: char| !c.is_ascii_alphanumeric())
            .skip_while(|w| *w != "pid")
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in `crew status`:\n{out}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.crew(&["daemon", "stop"]);
    }
}

/// Wait for `child` (bounded), reading both streams: exit code and stdout+stderr.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let code = wait(&mut child, limit);
    let text = format!(
        "{}{}",
        o.join().expect("stdout reader"),
        e.join().expect("stderr reader")
    );
    (code, text)
}

fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crew did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `cond` until it holds (at most `limit`), or panic naming `what`.
fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes (pid) whose command line is exactly `cmdline` (arguments joined by spaces).
fn processes(cmdline: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.join(" ") == cmdline {
            out.push(pid);
        }
    }
    out
}

fn marks_done(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().count())
        .unwrap_or(0)
}

const SLOW: &str = r#"
[heist.slow]
select = "role=web"
params = ["dir", "nap"]

[[heist.slow.step]]
name = "nap"
run = "sleep ${nap}"

[[heist.slow.step]]
name = "mark"
run = "touch ${dir}/${host}"
"#;

#[test]
fn a_heist_goes_on_when_its_client_is_killed_and_attach_replays_it() {
    if !require_tool("sshd") {
        return;
    }
    let env = Env::new(SLOW);
    let dir = env.marks().display().to_string();
    let nap = "4.123";
    let mut client = env
        .command(&[
            "heist",
            "run",
            "slow",
            "--set",
            &format!("dir={dir}"),
            "--set",
            &format!("nap={nap}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crew heist run");
    // Kill the client once the first step runs on every host (a closed laptop).
    let sleep = format!("sleep {nap}");
    until("the first step on every host", WAIT, || {
        processes(&sleep).len() == HOSTS
    });
    client.kill().expect("SIGKILL the client");
    let _ = client.wait();
    until("the second step on every host", WAIT, || {
        marks_done(&env.marks()) == HOSTS
    });

    // The last step's markers exist a moment before the heist journals its end.
    until("the heist's end in its journal", WAIT, || {
        env.crew(&["heist", "show"]).0 == Some(0)
    });
    let (code, show) = env.crew(&["heist", "show"]);
    assert_eq!(code, Some(0), "crew heist show: {show}");
    assert!(show.contains("completed"), "{show}");
    let id = show
        .lines()
        .find_map(|l| l.strip_prefix("heist slow (run ")?.split(')').next())
        .unwrap_or_else(|| panic!("no run id in:\n{show}"))
        .to_string();

    let (code, list) = env.crew(&["runs"]);
    assert_eq!(code, Some(0), "{list}");
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("crew runs lists no {id}:\n{list}"));
    assert!(row.contains("heist") && row.contains(" ok "), "{row}");
    assert!(
        row.contains(&format!("{HOSTS}/{HOSTS} {HOSTS} ok")),
        "{row}"
    );

    // A new terminal sees the whole heist, from its first event.
    let (code, replay) = env.crew(&["attach", &id]);
    assert_eq!(code, Some(0), "crew attach: {replay}");
    for h in env.fleet.hosts() {
        for step in ["[1/2 nap] ok", "[2/2 mark] ok"] {
            assert!(
                replay
                    .lines()
                    .any(|l| l.starts_with(&h.name) && l.contains(step)),
                "{} {step} missing:\n{replay}",
                h.name
            );
        }
    }
    assert!(
        replay.contains(&format!("completed on {HOSTS}/{HOSTS} host(s)")),
        "{replay}"
    );
    // Two followers at once, one as JSON lines ending with the summary.
    let (code, json) = env.crew(&["attach", "--json", &id]);
    assert_eq!(code, Some(0), "{json}");
    let last: serde_json::Value =
        serde_json::from_str(json.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["event"], "finished", "{json}");
}

#[test]
fn detach_starts_it_and_a_daemon_killed_mid_heist_leaves_it_interrupted() {
    if !require_tool("sshd") {
        return;
    }
    let env = Env::new(SLOW);
    let dir = env.marks().display().to_string();
    let nap = "30.321";
    let (code, out) = env.crew(&[
        "heist",
        "run",
        "slow",
        "--detach",
        "--set",
        &format!("dir={dir}"),
        "--set",
        &format!("nap={nap}"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let id = out.trim().to_string();
    assert!(id.ends_with("-slow"), "the run id: {out}");
    let sleep = format!("sleep {nap}");
    until("the first step on every host", WAIT, || {
        processes(&sleep).len() == HOSTS
    });
    let (_, list) = env.crew(&["runs"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );

    let pid = env.daemon_pid();
    // SAFETY: kill(2) on the daemon's pid, read from `crew status` just now.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(killed, 0, "SIGKILL the daemon");
    // The agents lose their link and kill their jobs: nothing of the heist goes on.
    until(
        "the steps' processes to end",
        Duration::from_secs(30),
        || processes(&sleep).is_empty(),
    );
    assert_eq!(marks_done(&env.marks()), 0, "no second step ran");

    // The next daemon (started by this client) settles the heist.
    let (code, list) = env.crew(&["runs"]);
    assert_eq!(code, Some(0), "{list}");
    let (code, show) = env.crew(&["heist", "show", &id]);
    assert_eq!(code, Some(1), "an interrupted heist: {show}");
    assert!(!show.contains("INTERRUPTED: no end was recorded"), "{show}");
    for h in env.fleet.hosts() {
        let line = show
            .lines()
            .find(|l| l.contains(&format!("{} [nap]", h.name)))
            .unwrap_or_else(|| panic!("no reason for {} in:\n{show}", h.name));
        assert!(line.contains("the daemon went away"), "{line}");
    }
    let journal = crew::heist::journal::read(&env.home().join("runs").join(format!("heist-{id}")))
        .expect("journal");
    let interrupted = journal
        .iter()
        .filter(|e| {
            matches!(
                e,
                crew::heist::events::HeistEvent::HostDone {
                    outcome: crew::heist::events::HostOutcome::Interrupted { step },
                    ..
                } if step == "nap"
            )
        })
        .count();
    assert_eq!(interrupted, HOSTS, "every host interrupted at `nap`");
    let audit = std::fs::read_to_string(env.home().join("audit.jsonl")).expect("audit log");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"heist interrupted\"") && l.contains(&id)),
        "{audit}"
    );
    let (code, replay) = env.crew(&["attach", &id]);
    assert_eq!(code, Some(1), "{replay}");
    assert!(replay.contains("interrupted"), "{replay}");
}
