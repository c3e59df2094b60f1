//! Network namespaces a test creates, joined by veth pairs, with sshd processes inside them:
//! a lab network that only exists for the test. Nothing routes out of it (no default route,
//! no forwarding), and the test's own namespace has no link into it at all. Dropping the
//! [`Lab`] kills every process left in its namespaces (they are all ours: sshd, the crew
//! daemon the test started there, its ProxyCommands) and deletes the namespaces, which
//! removes their links, also when the test fails.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{find_tool, require_tool};

/// True when the lab can be built: root and `ip` (iproute2). Outside CI a missing piece
/// skips the test visibly; under `CI=true` it fails it.
pub fn available() -> bool {
    if !require_tool("ip") || !require_tool("sshd") || !require_tool("ssh-keygen") {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let msg = "network namespaces need root";
        if std::env::var("CI")
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        {
            panic!("CI=true and {msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return false;
    }
    true
}

/// Run `cmd` to its end, at most `limit` (then it is killed and the test fails, saying
/// what it ran).
pub fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    // Read both pipes on threads so a chatty command never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = bounded(
        Command::new(find_tool("ip").expect("ip")).args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces and the processes started in them.
pub struct Lab {
    /// Unique per lab (pid and a counter): namespace and link names never collide with
    /// another test run's.
    tag: String,
    namespaces: Vec<String>,
    procs: Vec<Child>,
    links: u32,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Lab {
            tag: format!("{}{n}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            procs: Vec::new(),
            links: 0,
            dir: tempfile::Builder::new()
                .prefix("crew-lab-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// A new namespace with its loopback up; returns its full name.
    pub fn ns(&mut self, short: &str) -> String {
        let name = format!("crew-{short}-{}", self.tag);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair between namespaces `a` and `b`, with `a_addr` and `b_addr` (CIDR) on its
    /// ends; returns the two device names.
    pub fn link(&mut self, a: &str, a_addr: &str, b: &str, b_addr: &str) -> (String, String) {
        self.links += 1;
        let (da, db) = (
            format!("v{}a{}", self.tag, self.links),
            format!("v{}b{}", self.tag, self.links),
        );
        ip(&[
            "link", "add", &da, "netns", a, "type", "veth", "peer", "name", &db, "netns", b,
        ]);
        for (ns, dev, addr) in [(a, &da, a_addr), (b, &db, b_addr)] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        (da, db)
    }

    /// One more address on a device.
    pub fn addr(&self, ns: &str, dev: &str, addr: &str) {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
    }

    /// A command run inside namespace `ns` (`ip netns exec`).
    pub fn exec(&self, ns: &str, program: &Path) -> Command {
        let mut c = Command::new(find_tool("ip").expect("ip"));
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Start sshd in `ns` with `config` (its stderr in `log`), and wait (bounded) until it
    /// says it listens on every one of `listen` addresses. Killed when the lab drops.
    pub fn sshd(&mut self, ns: &str, config: &Path, log: &Path, listen: usize) {
        let sshd = find_tool("sshd").expect("sshd");
        let log_file = fs::File::create(log).expect("sshd log");
        let mut cmd = self.exec(ns, &sshd);
        cmd.args(["-D", "-e", "-f"]).arg(config);
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
            .expect("spawn sshd");
        self.procs.push(child);
        let start = Instant::now();
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.matches("Server listening on").count() >= listen {
                return;
            }
            if let Some(Ok(Some(st))) = self.procs.last_mut().map(Child::try_wait) {
                panic!("sshd in {ns} exited ({st}):\n{text}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "sshd in {ns} not listening on {listen} addresses after 15 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process ids of the sshd listeners started with [`Lab::sshd`], in order.
    pub fn sshd_pids(&self) -> Vec<u32> {
        self.procs.iter().map(Child::id).collect()
    }

    /// Processes still running in namespace `ns`.
    pub fn pids(&self, ns: &str) -> Vec<u32> {
        let out = bounded(
            Command::new(find_tool("ip").expect("ip")).args(["netns", "pids", ns]),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// A path in the lab's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

/// Direct children of `pid` (from /proc).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        if rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            // Everything still in the namespace was started by this test.
            for pid in self.pids(ns) {
                // SAFETY: kill has no memory effects; the pid was just listed in our
                // namespace.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            let _ = Command::new(find_tool("ip").unwrap_or_else(|| PathBuf::from("ip")))
                .args(["netns", "del", ns])
                .status();
        }
    }
}
