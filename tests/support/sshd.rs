//! A fleet of real OpenSSH sshd processes on loopback: distinct 127.x.y.z addresses act as
//! distinct hosts, all on one port, with their own host key, client key, authorized_keys and
//! known_hosts in a temp dir. Logins get `HOME=<fleet dir>/home` (empty), not the operator's
//! home, so their shells do not run the operator's `~/.bashrc`. Everything is killed on drop.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crew::model::{Host, Transport};

use super::find_tool;
use super::proc::Bounded;

/// sshd accepts at most 16 ListenAddress lines per process.
const PER_PROCESS: usize = 16;
/// Port choices tried before giving up (another fleet may grab the same port).
const PORT_ATTEMPTS: u32 = 8;
/// How long one sshd process gets to accept TCP on all its addresses.
const READY_WAIT: Duration = Duration::from_secs(10);

static FLEET_SEQ: AtomicU32 = AtomicU32::new(0);

/// What a chatty login prints on stdout before the real command runs (see
/// [`FleetOptions::chatty`]).
pub const CHATTY_STDOUT: &str =
    "Welcome to a chatty host -- last login: never\n(motd) have a nice day\n";
/// What a chatty login prints on stderr before the real command runs.
pub const CHATTY_STDERR: &str = "chatty .bashrc: warning on stderr\n";

/// How a fleet's sshd behaves.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// Every login prints [`CHATTY_STDOUT`] on stdout and [`CHATTY_STDERR`] on stderr before
    /// the requested command (like a noisy `.bashrc` or a motd), via `ForceCommand`.
    pub chatty: bool,
    /// Every host gets a `$HOME` of its own ([`SshdFleet::host_home`]; sshd `Match
    /// LocalAddress` + `SetEnv`), so host-relative paths name a different file per host.
    pub own_homes: bool,
    /// Serve a host certificate (sshd `HostCertificate`) signed by the fleet's CA
    /// ([`SshdFleet::ca_pub`]) with `ssh-keygen -s`.
    pub host_cert: Option<HostCert>,
}

/// How the fleet's host certificate is signed.
#[derive(Debug, Clone)]
pub struct HostCert {
    /// `-n`: the principals; `None` for the fleet's addresses.
    pub principals: Option<Vec<String>>,
    /// `-V`: the validity interval (`always:forever`, `-2d:-1d`, …).
    pub validity: String,
    /// Sign a user certificate instead (no `-h`).
    pub user_cert: bool,
}

pub struct SshdFleet {
    dir: tempfile::TempDir,
    procs: Vec<Child>,
    hosts: Vec<Host>,
    pub port: u16,
    /// The fleet's host public key line (`ssh-ed25519 AAAA… comment`).
    pub host_pub: String,
    /// Another host key's public line, for "wrong host key" cases.
    pub other_pub: String,
    pub client_key: PathBuf,
    /// A key pair that is not in authorized_keys.
    pub stranger_key: PathBuf,
    pub known_hosts: PathBuf,
    /// The CA's public key line, when the fleet serves a host certificate.
    pub ca_pub: Option<String>,
    seq: AtomicU32,
    options: FleetOptions,
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new(find_tool("ssh-keygen").expect("ssh-keygen installed"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output_within(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_pub(path: &Path) -> String {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    fs::read_to_string(&p)
        .expect("read public key")
        .trim()
        .to_string()
}

/// A pseudo-random 127.A.B.0/… block so concurrent fleets (other tests, other worktrees)
/// rarely share addresses.
fn address_block() -> (u8, u8) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seq = FLEET_SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919);
    let mix = nanos ^ (std::process::id() << 8) ^ seq;
    (1 + (mix % 250) as u8, ((mix >> 8) % 200) as u8)
}

fn addresses(n: usize) -> Vec<String> {
    let (a, b) = address_block();
    (0..n)
        .map(|i| format!("127.{a}.{}.{}", b as usize + i / 250, 1 + i % 250))
        .collect()
}

fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

impl SshdFleet {
    /// Start `n_hosts` loopback hosts (one sshd per 16 addresses). Panics with sshd's log
    /// when it cannot start.
    pub fn start(n_hosts: usize) -> SshdFleet {
        SshdFleet::start_with(n_hosts, FleetOptions::default())
    }

    /// [`SshdFleet::start`] with options (e.g. chatty logins).
    pub fn start_with(n_hosts: usize, options: FleetOptions) -> SshdFleet {
        let dir = tempfile::Builder::new()
            .prefix("crew-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_ed25519"), "crew-test-host");
        keygen(&d.join("other_host_ed25519"), "crew-other-host");
        keygen(&d.join("client_ed25519"), "crew-test-client");
        keygen(&d.join("stranger_ed25519"), "crew-stranger");
        let host_pub = read_pub(&d.join("host_ed25519"));
        let other_pub = read_pub(&d.join("other_host_ed25519"));
        fs::write(
            d.join("authorized_keys"),
            read_pub(&d.join("client_ed25519")) + "\n",
        )
        .expect("write authorized_keys");
        fs::create_dir_all(d.join("agents")).expect("agents dir");
        fs::create_dir_all(d.join("home")).expect("fleet home dir");
        if is_root() {
            fs::create_dir_all("/run/sshd").expect("create /run/sshd (privsep dir)");
        }

        let addrs = addresses(n_hosts);
        let mut fleet = SshdFleet {
            port: 0,
            procs: Vec::new(),
            hosts: Vec::new(),
            host_pub,
            other_pub,
            client_key: d.join("client_ed25519"),
            stranger_key: d.join("stranger_ed25519"),
            known_hosts: d.join("known_hosts"),
            ca_pub: None,
            seq: AtomicU32::new(0),
            options,
            dir,
        };
        if fleet.options.chatty {
            fleet.write_chatty_login();
        }
        if let Some(spec) = fleet.options.host_cert.clone() {
            fleet.sign_host_key(&spec, &addrs);
        }
        fleet.spawn_all(&addrs);
        fleet.write_known_hosts(&addrs);
        fleet.hosts = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| fleet.host(&format!("h{:03}", i + 1), a, fleet.port))
            .collect();
        fleet
    }

    /// A CA key, and the host key signed by it (`host_ed25519-cert.pub`).
    fn sign_host_key(&mut self, spec: &HostCert, addrs: &[String]) {
        let d = self.dir.path();
        keygen(&d.join("ca"), "crew-test-ca");
        self.ca_pub = Some(read_pub(&d.join("ca")));
        let principals = spec.principals.clone().unwrap_or_else(|| addrs.to_vec());
        let mut cmd = Command::new(find_tool("ssh-keygen").expect("ssh-keygen installed"));
        cmd.args(["-q", "-s"]).arg(d.join("ca"));
        cmd.args(["-I", "crew-test-host", "-V", &spec.validity]);
        if !spec.user_cert {
            cmd.arg("-h");
        }
        cmd.args(["-n", &principals.join(",")])
            .arg(d.join("host_ed25519.pub"));
        let out = cmd.output().expect("run ssh-keygen -s");
        assert!(
            out.status.success(),
            "ssh-keygen -s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn_all(&mut self, addrs: &[String]) {
        let first = addrs.first().map(String::as_str).unwrap_or("127.0.0.1");
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.kill_all();
            self.port = free_port(first);
            match self.try_spawn(addrs) {
                Ok(()) => return,
                Err(log) => last_log = log,
            }
        }
        panic!("sshd fleet did not start after {PORT_ATTEMPTS} ports; last log:\n{last_log}");
    }

    fn try_spawn(&mut self, addrs: &[String]) -> Result<(), String> {
        let sshd = find_tool("sshd").expect("sshd installed (require_tool first)");
        for (i, chunk) in addrs.chunks(PER_PROCESS).enumerate() {
            let cfg = self.write_config(i, chunk);
            let log = self.dir.path().join(format!("sshd{i}.log"));
            let log_file = fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"]).arg(&cfg);
            // If the test process dies without dropping the fleet (killed, aborted), sshd
            // must not outlive it. The fleet must be started from a thread that outlives it
            // (a test's own thread or main).
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", sshd.display()))?;
            self.procs.push(child);
            let idx = self.procs.len() - 1;
            self.wait_ready(idx, chunk)
                .map_err(|e| format!("{e}\n{}", fs::read_to_string(&log).unwrap_or_default()))?;
        }
        Ok(())
    }

    fn write_config(&self, i: usize, chunk: &[String]) -> PathBuf {
        let d = self.dir.path();
        let mut cfg = String::new();
        for a in chunk {
            cfg += &format!("ListenAddress {a}:{}\n", self.port);
        }
        cfg += &format!(
            "HostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
             UsePAM no\nStrictModes no\nPermitRootLogin yes\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             MaxStartups 1000:30:1000\nMaxSessions 20\nMaxAuthTries 6\nLogLevel VERBOSE\n\
             PrintMotd no\nUseDNS no\n\
             Subsystem sftp internal-sftp\n\
             SetEnv HOME={home}\n",
            home = d.join("home").display(),
            hk = d.join("host_ed25519").display(),
            pid = d.join(format!("sshd{i}.pid")).display(),
            ak = d.join("authorized_keys").display(),
        );
        if self.options.host_cert.is_some() {
            cfg += &format!(
                "HostCertificate {}\n",
                d.join("host_ed25519-cert.pub").display()
            );
        }
        if self.options.chatty {
            // sshd runs this with the user's shell; the original command is in
            // $SSH_ORIGINAL_COMMAND.
            cfg += &format!(
                "ForceCommand exec /bin/sh '{}'\n",
                self.chatty_login().display()
            );
        }
        if self.options.own_homes {
            // Match blocks last: they run to the end of the file.
            for a in chunk {
                let home = self.address_home(a);
                fs::create_dir_all(&home).expect("a host's own home");
                cfg += &format!("Match LocalAddress {a}\n  SetEnv HOME={}\n", home.display());
            }
        }
        let path = d.join(format!("sshd{i}.conf"));
        fs::write(&path, cfg).expect("write sshd config");
        path
    }

    fn chatty_login(&self) -> PathBuf {
        self.dir.path().join("chatty-login.sh")
    }

    /// The `ForceCommand` script of a chatty fleet: banners on stdout and stderr, then the
    /// requested command (or a login shell) in place of the script.
    fn write_chatty_login(&self) {
        let path = self.chatty_login();
        assert!(
            !path.display().to_string().contains('\''),
            "temp dir path has a quote: {}",
            path.display()
        );
        for banner in [CHATTY_STDOUT, CHATTY_STDERR] {
            assert!(!banner.contains('\''), "banners are single-quoted");
        }
        let script = format!(
            "#!/bin/sh\n\
             printf '%s' '{CHATTY_STDOUT}'\n\
             printf '%s' '{CHATTY_STDERR}' >&2\n\
             if [ -z \"$SSH_ORIGINAL_COMMAND\" ]; then exec bash -l; fi\n\
             exec bash -c \"$SSH_ORIGINAL_COMMAND\"\n"
        );
        fs::write(&path, script).expect("write chatty login script");
    }

    fn wait_ready(&mut self, idx: usize, chunk: &[String]) -> Result<(), String> {
        let start = Instant::now();
        for a in chunk {
            let sa: SocketAddr = format!("{a}:{}", self.port)
                .parse()
                .map_err(|e| format!("address {a}: {e}"))?;
            loop {
                if let Ok(Some(st)) = self.procs[idx].try_wait() {
                    return Err(format!("sshd exited early ({st})"));
                }
                if TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if start.elapsed() > READY_WAIT {
                    return Err(format!("sshd not accepting on {sa} after {READY_WAIT:?}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Restart the listening sshd processes on the same addresses and port, as a package
    /// upgrade does: connections already open (their session processes) live on.
    pub fn restart_listeners(&mut self) {
        let addrs: Vec<String> = self.hosts.iter().map(|h| h.address.clone()).collect();
        self.kill_all();
        if let Err(log) = self.try_spawn(&addrs) {
            panic!("sshd did not come back on port {}: {log}", self.port);
        }
    }

    fn write_known_hosts(&self, addrs: &[String]) {
        let mut f = fs::File::create(&self.known_hosts).expect("create known_hosts");
        for a in addrs {
            writeln!(f, "[{a}]:{} {}", self.port, self.host_pub).expect("write known_hosts");
        }
    }

    fn kill_all(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            // Reaps the SIGKILLed sshd (a KILL cannot be ignored).
            let _ = c.wait();
        }
        self.procs.clear();
    }

    /// A ready-to-use host entry for `address:port` with the fleet's keys.
    pub fn host(&self, name: &str, address: &str, port: u16) -> Host {
        Host {
            name: name.to_string(),
            address: address.to_string(),
            port,
            user: Some(crew::paths::whoami()),
            transport: Transport::Ssh,
            tags: Vec::new(),
            identity_files: vec![self.client_key.clone()],
            identities_only: true,
            known_hosts: vec![self.known_hosts.clone()],
            identity_agent: None,
            proxy_jump: None,
            jumps: Vec::new(),
            proxy_command: None,
            certificate_files: Vec::new(),
            strict_host_key_checking: None,
            server_alive_interval_s: 0,
            server_alive_count_max: 3,
            ssh_config_notes: Vec::new(),
            connect_timeout_ms: 20_000,
            kex: None,
            agent_dir: self.dir.path().join("agents").display().to_string(),
        }
    }

    /// The `[defaults]` of a hosts.toml for this fleet: our login, the fleet's port, client
    /// key, known_hosts and agent dir, and `ssh_config` (give an empty file to keep the
    /// user's ~/.ssh/config out). Append `[[host]]` entries with the fleet's addresses.
    pub fn inventory_defaults(&self, ssh_config: &Path) -> String {
        format!(
            "[defaults]\ntransport = \"ssh\"\nuser = {user:?}\nport = {port}\n\
             identity_file = {key:?}\nidentities_only = true\nknown_hosts = {kh:?}\n\
             agent_dir = {agents:?}\nconnect_timeout = \"20s\"\nssh_config = {cfg:?}\n",
            user = super::proc::login(),
            port = self.port,
            key = self.client_key.display().to_string(),
            kh = self.known_hosts.display().to_string(),
            agents = self.agent_dir().display().to_string(),
            cfg = ssh_config.display().to_string(),
        )
    }

    /// Put this build's agent where the daemon installs it on the fleet's hosts
    /// (`<agent dir>/agent-<build hash>`), as a host that ran crew before has it: tests whose
    /// point is not the upload skip its cost (the upload has tests of its own).
    pub fn preinstall_agent(&self) {
        use std::os::unix::fs::PermissionsExt;
        static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let exe = Path::new(env!("CARGO_BIN_EXE_crew"));
        let build =
            BUILD.get_or_init(|| crew::paths::file_hash(exe).expect("hash the crew binary"));
        let to = self.agent_dir().join(format!("agent-{build}"));
        fs::copy(exe, &to).expect("copy the agent into place");
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod the agent");
    }

    /// The fleet's hosts, ready to use.
    pub fn hosts(&self) -> Vec<Host> {
        self.hosts.clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `$HOME` of every login on the fleet (sshd `SetEnv`): an empty directory, so logins
    /// never run the operator's own `~/.bashrc` (slow, and not the fleet's).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn address_home(&self, address: &str) -> PathBuf {
        self.dir.path().join("homes").join(address)
    }

    /// `$HOME` of the logins on host `name` of a fleet started with
    /// [`FleetOptions::own_homes`].
    #[allow(dead_code)]
    pub fn host_home(&self, name: &str) -> PathBuf {
        let h = self
            .hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the fleet"));
        self.address_home(&h.address)
    }

    /// Directory the agent is installed into on every host of the fleet.
    pub fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agents")
    }

    /// Process ids of the fleet's listening sshd processes (benchmarks read the CPU time of
    /// the connections they have reaped).
    #[allow(dead_code)]
    pub fn listener_pids(&self) -> Vec<u32> {
        self.procs.iter().map(Child::id).collect()
    }

    /// Contents of every sshd log so far (for assertion messages).
    pub fn logs(&self) -> String {
        (0..self.procs.len())
            .map(|i| fs::read_to_string(self.dir.path().join(format!("sshd{i}.log"))))
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A fresh file in the fleet dir with `content`.
    pub fn file(&self, stem: &str, content: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let p = self.dir.path().join(format!("{stem}-{n}"));
        fs::write(&p, content).expect("write fleet file");
        p
    }

    /// `host` checked against a known_hosts that records another key for it.
    pub fn with_wrong_host_key(&self, host: &Host) -> Host {
        let line = format!("[{}]:{} {}\n", host.address, host.port, self.other_pub);
        Host {
            known_hosts: vec![self.file("known_hosts_wrong", &line)],
            ..host.clone()
        }
    }

    /// `host` checked against an empty known_hosts (its key is unknown).
    pub fn with_unknown_host_key(&self, host: &Host) -> Host {
        Host {
            known_hosts: vec![self.file("known_hosts_empty", "")],
            ..host.clone()
        }
    }

    /// `host` whose real key is marked `@revoked`.
    pub fn with_revoked_host_key(&self, host: &Host) -> Host {
        let line = format!("@revoked * {}\n", self.host_pub);
        Host {
            known_hosts: vec![self.file("known_hosts_revoked", &line)],
            ..host.clone()
        }
    }

    /// `host` authenticating with a key the server does not know.
    pub fn with_stranger_key(&self, host: &Host) -> Host {
        Host {
            identity_files: vec![self.stranger_key.clone()],
            ..host.clone()
        }
    }

    /// A host on a loopback port where nothing listens (connection refused).
    pub fn refused_host(&self, name: &str) -> Host {
        let port = free_port("127.0.0.1");
        self.host(name, "127.0.0.1", port)
    }

    /// A host that accepts TCP and never speaks. Keep the returned listener alive.
    pub fn silent_host(&self, name: &str) -> (Host, TcpListener) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind silent host");
        let port = l.local_addr().expect("silent host address").port();
        (self.host(name, "127.0.0.1", port), l)
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

impl Drop for SshdFleet {
    fn drop(&mut self) {
        self.kill_all();
    }
}
