//! Driving the release `crew` binary against one fleet: its own `CREW_HOME`, a hosts.toml for
//! the fleet, runs of `true`, `crew status`, `crew daemon stop`. Dropping it stops the daemon
//! (and kills it if it does not stop).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::exec::{self, Timed};
use crew::model::Host;

/// Tag put on every fleet host; the selection used by every run.
pub const TAG: &str = "bench";
/// Limit on any one `crew` command line (a first run on 500 hosts uploads 500 agents).
const RUN_LIMIT: Duration = Duration::from_secs(300);
const SMALL_LIMIT: Duration = Duration::from_secs(30);

pub struct Crew {
    pub exe: PathBuf,
    /// `CREW_AGENT_EXE`: what the daemon uploads and starts on hosts.
    pub agent: PathBuf,
    home: tempfile::TempDir,
    pub hosts_file: PathBuf,
    /// `CREW_LOG` for every process started (the daemon inherits it).
    log: String,
    daemon_pid: Option<u32>,
}

/// What `crew status` says.
pub struct Status {
    pub pid: u32,
    pub rss_kib: u64,
    pub connected: usize,
    pub hosts: usize,
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// hosts.toml for `hosts` (all sharing port, user, keys and agent dir, as a fleet does).
pub fn hosts_toml(hosts: &[Host], ssh_config: &Path) -> anyhow::Result<String> {
    let first = hosts.first().context("a fleet with no hosts")?;
    let mut t = String::from("[defaults]\n");
    let _ = writeln!(
        t,
        "user = {}",
        toml_str(first.user.as_deref().unwrap_or("root"))
    );
    let _ = writeln!(t, "port = {}", first.port);
    let files: Vec<String> = first
        .identity_files
        .iter()
        .map(|p| toml_str(&p.display().to_string()))
        .collect();
    let _ = writeln!(t, "identity_file = [{}]", files.join(", "));
    let _ = writeln!(t, "identities_only = {}", first.identities_only);
    let kh: Vec<String> = first
        .known_hosts
        .iter()
        .map(|p| toml_str(&p.display().to_string()))
        .collect();
    let _ = writeln!(t, "known_hosts = [{}]", kh.join(", "));
    let _ = writeln!(t, "agent_dir = {}", toml_str(&first.agent_dir));
    let _ = writeln!(t, "connect_timeout = \"30s\"");
    let _ = writeln!(
        t,
        "ssh_config = {}",
        toml_str(&ssh_config.display().to_string())
    );
    for h in hosts {
        let _ = write!(
            t,
            "\n[[host]]\nname = {}\naddress = {}\ntags = [\"{TAG}\"]\n",
            toml_str(&h.name),
            toml_str(&h.address)
        );
    }
    Ok(t)
}

impl Crew {
    /// A fresh `CREW_HOME` with a hosts.toml for `hosts`.
    pub fn new(exe: &Path, agent: &Path, hosts: &[Host], log: &str) -> anyhow::Result<Crew> {
        let home = tempfile::Builder::new()
            .prefix("crew-bench-home-")
            .tempdir()
            .context("temp CREW_HOME")?;
        let ssh_config = home.path().join("empty_ssh_config");
        fs::write(&ssh_config, "").context("write empty ssh_config")?;
        let hosts_file = home.path().join("hosts.toml");
        fs::write(&hosts_file, hosts_toml(hosts, &ssh_config)?).context("write hosts.toml")?;
        fs::create_dir_all(home.path().join("scratch")).context("scratch dir")?;
        Ok(Crew {
            exe: exe.to_path_buf(),
            agent: agent.to_path_buf(),
            home,
            hosts_file,
            log: log.to_string(),
            daemon_pid: None,
        })
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.home.path().join("logs/daemon.log")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("CREW_HOME", self.home.path())
            .env("CREW_AGENT_EXE", &self.agent)
            .env("CREW_LOG", &self.log)
            .env("NO_COLOR", "1");
        c
    }

    /// The `crew run` command line for `true` on every host.
    pub fn run_cmd(&self, fanout: usize) -> Command {
        let mut c = self.cmd();
        c.arg("run").arg("--hosts").arg(&self.hosts_file).args([
            "--fanout",
            &fanout.to_string(),
            TAG,
            "--",
            "true",
        ]);
        c
    }

    /// Time one `crew run … -- true`. The note says what failed unless every host ran it with
    /// status 0 (the time still counts: it is what the operator waited).
    pub fn run_true(&mut self, fanout: usize) -> anyhow::Result<(Duration, Option<String>)> {
        let scratch = self.home.path().join("scratch");
        let t = exec::timed(&mut self.run_cmd(fanout), RUN_LIMIT, &scratch)?;
        if !t.ok() {
            // CREW_HOME goes with this struct: keep the daemon log where it can be read.
            let kept = std::env::temp_dir().join(format!(
                "crew-bench-daemon-{}-{}.log",
                std::process::id(),
                self.home.path().display().to_string().replace('/', "_")
            ));
            let _ = fs::copy(self.daemon_log(), &kept);
            let note = format!(
                "`crew run` exited with {:?}:\n{}\n(daemon log kept at {})",
                t.code,
                t.tail(),
                kept.display()
            );
            return Ok((t.elapsed, Some(note)));
        }
        Ok((t.elapsed, None))
    }

    fn small(&self, args: &[&str]) -> anyhow::Result<Timed> {
        let scratch = self.home.path().join("scratch");
        exec::timed(self.cmd().args(args), SMALL_LIMIT, &scratch)
    }

    /// `crew status`, parsed: daemon pid and RSS from the header, connected hosts counted
    /// from the rows in state ready or busy.
    pub fn status(&mut self) -> anyhow::Result<Status> {
        let t = self.small(&["status"])?;
        if !t.ok() {
            bail!("`crew status` exited with {:?}: {}", t.code, t.tail());
        }
        let head = t.stdout.lines().next().unwrap_or_default();
        let word_after = |key: &str| {
            let words: Vec<&str> = head.split_whitespace().collect();
            words
                .windows(2)
                .find(|w| w[0] == key)
                .and_then(|w| w[1].parse::<u64>().ok())
        };
        let (Some(pid), Some(rss_kib), Some(hosts)) =
            (word_after("pid"), word_after("rss"), word_after("hosts"))
        else {
            bail!("cannot read `crew status` header: {head:?}");
        };
        let connected = t
            .stdout
            .lines()
            .skip(2)
            .filter(|l| matches!(l.split_whitespace().nth(1), Some("ready" | "busy")))
            .count();
        let pid = u32::try_from(pid).context("daemon pid")?;
        self.daemon_pid = Some(pid);
        Ok(Status {
            pid,
            rss_kib,
            connected,
            hosts: hosts as usize,
        })
    }

    /// `crew daemon stop`; then make sure the daemon we saw is gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let t = self.small(&["daemon", "stop"])?;
        let waited = self.reap_daemon();
        if !t.ok() {
            bail!("`crew daemon stop` exited with {:?}: {}", t.code, t.tail());
        }
        waited
    }

    /// Wait (bounded) for the last daemon pid seen to exit; SIGKILL it if it does not.
    fn reap_daemon(&mut self) -> anyhow::Result<()> {
        let Some(pid) = self.daemon_pid.take() else {
            return Ok(());
        };
        let alive = || Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
        for _ in 0..250 {
            if !alive() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) with a pid we read from the daemon itself.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        bail!("daemon {pid} did not exit within 5 s of `crew daemon stop`; killed")
    }
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

impl Drop for Crew {
    fn drop(&mut self) {
        if self.daemon_pid.is_none() {
            // Learn the pid if a daemon runs, so that it can be reaped or killed.
            let _ = self.status();
        }
        if let Err(e) = self.stop() {
            eprintln!("bench cleanup: {e:#}");
        }
    }
}
