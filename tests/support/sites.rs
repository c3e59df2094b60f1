//! Several "machines" on one: each a directory with its own CREW_HOME, config dir
//! (daemon.toml) and hosts.toml; site daemons as real `crew daemon --site … --nats …`
//! processes (SIGKILL-able); operators' crews as the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::nats::{NatsCluster, FLEET, USER};
use super::sshd::SshdFleet;

/// One host line set for hosts.toml: full connection settings per host, so one file can
/// describe hosts of several fleets (each with its own key and known_hosts).
pub fn host_entries(fleet: &SshdFleet, prefix: &str, site: &str) -> (Vec<String>, String) {
    let mut toml = String::new();
    let mut names = Vec::new();
    for (i, h) in fleet.hosts().iter().enumerate() {
        let name = format!("{prefix}{:02}", i + 1);
        toml += &format!(
            "\n[[host]]\nname = {name:?}\naddress = {addr:?}\nport = {port}\nuser = {user:?}\n\
             identity_file = {key:?}\nidentities_only = true\nknown_hosts = {kh:?}\n\
             agent_dir = {agents:?}\nconnect_timeout = 20\ntags = [\"site={site}\", \"role=web\"]\n",
            addr = h.address,
            port = fleet.port,
            user = super::daemon::login(),
            key = fleet.client_key.display().to_string(),
            kh = fleet.known_hosts.display().to_string(),
            agents = fleet.agent_dir().display().to_string(),
        );
        names.push(name);
    }
    (names, toml)
}

/// `count` hosts of the `local` transport (the agent a child of the daemon), for scale.
pub fn local_entries(prefix: &str, site: &str, count: usize) -> (Vec<String>, String) {
    let mut toml = String::new();
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}{:04}", i + 1);
        toml += &format!(
            "\n[[host]]\nname = {name:?}\ntransport = \"local\"\ntags = [\"site={site}\", \"role=web\"]\n"
        );
        names.push(name);
    }
    (names, toml)
}

/// What a machine's daemon.toml says about the bus.
#[derive(Default, Clone)]
pub struct BusSettings {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub operators: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    /// TLS: trust this CA (and require TLS).
    pub ca: Option<PathBuf>,
}

pub struct Machine {
    pub dir: PathBuf,
    pub name: String,
}

impl Machine {
    pub fn new(root: &Path, name: &str) -> Machine {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("home")).expect("machine home");
        std::fs::create_dir_all(dir.join("config")).expect("machine config");
        std::fs::create_dir_all(dir.join("heists")).expect("machine heists");
        std::fs::write(dir.join("ssh_config"), "").expect("ssh_config");
        Machine {
            dir,
            name: name.to_string(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts.toml")
    }

    /// hosts.toml from host entries.
    pub fn write_hosts(&self, entries: &str) {
        let text = format!(
            "[defaults]\nssh_config = {:?}\n{entries}",
            self.dir.join("ssh_config").display().to_string()
        );
        std::fs::write(self.hosts(), text).expect("hosts.toml");
    }

    /// daemon.toml: this machine's inventory and its bus settings (None: no bus).
    pub fn write_daemon_toml(&self, bus: Option<&BusSettings>) {
        let mut t = format!("hosts = {:?}\n", self.hosts().display().to_string());
        if let Some(b) = bus {
            t += &format!("[nats]\nfleet = {FLEET:?}\nuser = {USER:?}\n");
            let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            if let Some(u) = &b.url {
                t += &format!("url = {u:?}\n");
            }
            for (k, v) in [
                ("password_file", path(&b.password_file)),
                ("operators", path(&b.operators)),
                ("identity", path(&b.identity)),
                ("ca", path(&b.ca)),
            ] {
                if let Some(v) = v {
                    t += &format!("{k} = {v:?}\n");
                }
            }
        }
        std::fs::write(self.config().join("daemon.toml"), t).expect("daemon.toml");
    }

    /// The crew binary as this machine's operator runs it.
    pub fn crew(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
        c.arg("--hosts")
            .arg(self.hosts())
            .args(args)
            .env("CREW_HOME", self.home())
            .env("CREW_CONFIG_DIR", self.config())
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            // async_nats logs every message at debug: kept at info (CREW_TEST_LOG overrides).
            .env(
                "CREW_LOG",
                std::env::var("CREW_TEST_LOG").unwrap_or_else(|_| "debug,async_nats=info".into()),
            )
            .env_remove("CREW_HOSTS")
            .env_remove("CREW_NATS")
            .env_remove("CREW_SITE")
            .env_remove("CREW_FLEET")
            .stdin(Stdio::null())
            .current_dir(&self.dir);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.crew(args).output().expect("run crew")
    }

    /// The tail of this machine's daemon log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let t = std::fs::read_to_string(self.home().join("logs/daemon.log")).unwrap_or_default();
        let v: Vec<&str> = t.lines().collect();
        format!(
            "--- {} daemon.log\n{}",
            self.name,
            v[v.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// Stop this machine's daemon (if one runs).
    pub fn stop_daemon(&self) {
        let _ = self.run(&["daemon", "stop"]);
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A site daemon: `crew daemon --site S --nats URL` as its own process.
pub struct SiteDaemon {
    pub machine: Machine,
    pub site: String,
    child: Option<Child>,
}

impl SiteDaemon {
    /// A site daemon (`site`), or an operator's daemon on the bus (`""`).
    pub fn start(machine: Machine, nats: &NatsCluster, site: &str) -> SiteDaemon {
        let log = std::fs::File::create(machine.dir.join("stderr.log")).expect("stderr log");
        let url = nats.url();
        let mut args = vec![
            "daemon",
            "--idle-timeout",
            "0",
            "--nats",
            &url,
            "--fleet",
            FLEET,
        ];
        if !site.is_empty() {
            args.extend(["--site", site]);
        }
        let child = machine
            .crew(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a site daemon");
        SiteDaemon {
            machine,
            site: site.to_string(),
            child: Some(child),
        }
    }

    /// A daemon with no bus (`crew daemon --idle-timeout 0`), as one machine alone runs it.
    pub fn start_local(machine: Machine) -> SiteDaemon {
        let log = std::fs::File::create(machine.dir.join("stderr.log")).expect("stderr log");
        let child = machine
            .crew(&["daemon", "--idle-timeout", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a daemon");
        let t0 = Instant::now();
        while !machine.home().join("daemon.sock").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "daemon socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SiteDaemon {
            machine,
            site: String::new(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded), then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SiteDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Make an operator key with `crew daemon keygen`; returns (seed file, public key).
pub fn keygen(m: &Machine, name: &str) -> (PathBuf, String) {
    let path = m.dir.join(format!("{name}.nk"));
    let o = m.run(&["daemon", "keygen", &path.display().to_string()]);
    assert!(o.status.success(), "keygen: {}", text(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(public.starts_with('U'), "{public}");
    (path, public)
}

/// Poll `crew status` on `m` until `pred` holds for its text (bounded).
pub fn wait_status(m: &Machine, what: &str, wait: Duration, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < wait {
        let o = m.run(&["status"]);
        last = text(&o);
        if o.status.success() && pred(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "{what}: not within {wait:?}; last status:\n{last}\n{}",
        m.log_tail(400)
    );
}
