//! The `crew` binary against an sshd fleet on loopback, as an operator runs it: a temp dir with
//! a hosts.toml naming the fleet's hosts (`h001`…, tag `role=web`), `heists/`, a `CREW_HOME`
//! and a private TMPDIR; every run bounded; the daemon stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::proc::{Bounded, COMMAND_WAIT};
use super::sshd::{FleetOptions, SshdFleet};

pub struct SshEnv {
    pub dir: tempfile::TempDir,
    pub fleet: SshdFleet,
}

impl SshEnv {
    /// A fleet of `n` hosts and its hosts.toml.
    pub fn new(n: usize) -> SshEnv {
        SshEnv::with(n, FleetOptions::default())
    }

    /// [`SshEnv::new`] with fleet options (e.g. a home of its own per host).
    pub fn with(n: usize, options: FleetOptions) -> SshEnv {
        let fleet = SshdFleet::start_with(n, options);
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("ssh_config"), "").expect("ssh_config");
        let mut toml = format!(
            "[defaults]\nuser = {user:?}\nport = {port}\nidentity_file = {key:?}\n\
             identities_only = true\nknown_hosts = {kh:?}\nagent_dir = {agents:?}\n\
             connect_timeout = \"20s\"\nssh_config = {cfg:?}\n",
            user = super::proc::login(),
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
        for sub in ["heists", "home", "config", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).expect("env dir");
        }
        SshEnv { dir, fleet }
    }

    /// Run `true` everywhere once: agents installed and linked, so what a test times is its
    /// own command.
    pub fn warm(&self) {
        let out = self.crew(&["run", "role=web", "--", "true"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "warm-up: {}\n{}",
            super::cli::text(&out),
            self.fleet.logs()
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Write `heists/<name>`.
    pub fn heist_file(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("heists").join(name), text).expect("heist file");
    }

    /// `crew --hosts <hosts.toml> ARGS…`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = super::cli::crew_command(&self.home(), &self.dir.path().join("config"));
        c.env("TMPDIR", self.dir.path().join("tmp"))
            .arg("--hosts")
            .arg(self.dir.path().join("hosts.toml"))
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// Run `crew ARGS…` to completion within [`COMMAND_WAIT`].
    pub fn crew(&self, args: &[&str]) -> Output {
        self.command(args).output_within(COMMAND_WAIT)
    }

    /// `crew status` as text.
    pub fn status(&self) -> String {
        let out = self.crew(&["status"]);
        assert_eq!(out.status.code(), Some(0), "{}", super::cli::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The daemon's pid, from `crew status`.
    pub fn daemon_pid(&self) -> i32 {
        let st = self.status();
        st.split(|c: char| !c.is_ascii_alphanumeric())
            .skip_while(|w| *w != "pid")
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in `crew status`:\n{st}"))
    }

    /// The pid of `host`'s agent, from `crew status`.
    pub fn agent_pid(&self, host: &str) -> u32 {
        let st = self.status();
        st.lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no agent pid for {host} in `crew status`:\n{st}"))
    }

    /// Numbered run directories of the store, oldest first.
    pub fn runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(self.home().join("runs"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs.into_iter().map(|(_, p)| p).collect()
    }
}

impl Drop for SshEnv {
    fn drop(&mut self) {
        let _ = self
            .command(&["daemon", "stop"])
            .output_within(COMMAND_WAIT);
    }
}

/// Parent pid of `pid` (None when it is gone).
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Everything of one host's connection on this machine: the sshd processes serving it (the
/// agent's ancestors below the fleet's listening sshd), the agent, and every descendant of the
/// agent (its keeper, its jobs).
pub fn host_processes(agent: u32, listeners: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = ppid(agent);
    while let Some(pid) = p {
        if pid <= 1 || listeners.contains(&pid) {
            break;
        }
        out.push(pid);
        p = ppid(pid);
    }
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![agent];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &c in &all {
            if ppid(c) == Some(parent) && !tree.contains(&c) {
                tree.push(c);
            }
        }
        i += 1;
    }
    out.extend(tree);
    out
}

/// Send `signal` to each of `pids`.
pub fn signal_all(pids: &[u32], signal: i32) {
    for &p in pids {
        // SAFETY: kill(2) on pids read from /proc just now; no memory involved.
        unsafe { libc::kill(p as i32, signal) };
    }
}
