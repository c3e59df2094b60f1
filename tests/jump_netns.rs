//! Jump hosts on a network the test builds out of namespaces:
//!
//! ```text
//!  client ns ── 10.201.0.0/24 ── bastion ns ── 10.202.0.0/24 ── targets ns
//!  (crew run, its daemon)         sshd .2       (no forwarding)  50 sshd addresses .10-.59,
//!                                                                bastion2 .3
//! ```
//!
//! The targets are reachable only from the bastion: the client namespace has no route to
//! them (and the test's own namespace no link into the lab at all). `crew run` (and the
//! daemon it starts) runs inside the client namespace. Checked: all 50 targets answer
//! through exactly ONE TCP connection to the bastion (counted in the bastion sshd's log);
//! a two-hop chain, a ProxyCommand, a dead bastion (every target's verdict names it), a
//! killed bastion connection (the hosts come back through one new one), and nothing left
//! running once the daemon stops.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::find_tool;
use support::netns::{bounded, children, Lab};

const TARGETS: usize = 50;
const BASTION: &str = "10.201.0.2";
const BASTION2: &str = "10.202.0.3";

fn target_addr(i: usize) -> String {
    format!("10.202.0.{}", 10 + i)
}

fn keygen(path: &Path) {
    let out = bounded(
        Command::new(find_tool("ssh-keygen").expect("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "crew-lab", "-f"])
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "ssh-keygen failed");
}

fn public(path: &Path) -> String {
    std::fs::read_to_string(format!("{}.pub", path.display()))
        .expect("public key")
        .trim()
        .to_string()
}

/// sshd's config for `addrs` (port 22) with the lab's keys.
fn sshd_config(lab: &Lab, name: &str, addrs: &[String]) -> PathBuf {
    let d = lab.dir.path();
    let mut cfg = String::new();
    for a in addrs {
        cfg += &format!("ListenAddress {a}:22\n");
    }
    cfg += &format!(
        "HostKey {d}/host_key\nPidFile {d}/{name}.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
         UsePAM no\nStrictModes no\nPermitRootLogin yes\nPubkeyAuthentication yes\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\n\
         MaxStartups 1000:30:1000\nMaxSessions 50\nLogLevel VERBOSE\nPrintMotd no\nUseDNS no\n\
         SetEnv HOME={d}/home\n",
        d = d.display()
    );
    let p = d.join(format!("{name}.conf"));
    std::fs::write(&p, cfg).expect("sshd config");
    p
}

struct Net {
    lab: Lab,
    client: String,
    targets_ns: String,
}

impl Net {
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.lab.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// TCP connections the bastion's sshd has accepted so far.
    fn bastion_connections(&self) -> usize {
        self.log("bastion").matches("Connection from ").count()
    }

    /// `crew ARGS` inside the client namespace, bounded.
    fn crew(&self, args: &[&str], limit: Duration) -> Output {
        let mut cmd = self
            .lab
            .exec(&self.client, Path::new(env!("CARGO_BIN_EXE_crew")));
        cmd.arg("--hosts")
            .arg(self.lab.path("hosts.toml"))
            .args(args)
            .env("CREW_HOME", self.lab.path("crewhome"))
            .env("CREW_CONFIG_DIR", self.lab.path("crewcfg"))
            .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
            .env("HOME", self.lab.path("operator"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("CREW_SSH_CONFIG")
            .current_dir(self.lab.dir.path());
        bounded(&mut cmd, limit)
    }
}

/// Build the lab: namespaces, links, keys, sshds, the inventory and the ssh config.
fn build() -> Net {
    let mut lab = Lab::new();
    let client = lab.ns("cli");
    let bastion = lab.ns("bas");
    let targets_ns = lab.ns("tgt");
    lab.link(&client, "10.201.0.1/24", &bastion, &format!("{BASTION}/24"));
    let (_, tdev) = lab.link(
        &bastion,
        "10.202.0.1/24",
        &targets_ns,
        &format!("{BASTION2}/24"),
    );
    let addrs: Vec<String> = (0..TARGETS).map(target_addr).collect();
    for a in &addrs {
        lab.addr(&targets_ns, &tdev, &format!("{a}/24"));
    }

    let d = lab.dir.path().to_path_buf();
    for sub in ["home", "agents", "crewhome", "crewcfg", "operator"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::write(
        d.join("authorized_keys"),
        public(&d.join("client_key")) + "\n",
    )
    .expect("authorized_keys");
    let host_pub = public(&d.join("host_key"));
    let mut kh = String::new();
    for a in addrs.iter().map(String::as_str).chain([BASTION, BASTION2]) {
        kh += &format!("{a} {host_pub}\n");
    }
    std::fs::write(d.join("known_hosts"), kh).expect("known_hosts");
    // Agents installed beforehand where the inventory's hosts look (one filesystem); the
    // ad-hoc hosts use their default directory and get the agent uploaded through the hops.
    let exe = Path::new(env!("CARGO_BIN_EXE_crew"));
    let build_hash = crew::paths::file_hash(exe).expect("hash crew");
    std::fs::copy(exe, d.join(format!("agents/agent-{build_hash}"))).expect("preinstall");

    let dd = d.display();
    std::fs::write(
        d.join("ssh_config"),
        format!(
            "Host bastion\n  HostName {BASTION}\n\
             Host bastion2\n  HostName {BASTION2}\n\
             Host deep\n  HostName {t0}\n  ProxyJump bastion,bastion2\n\
             Host gone*\n  HostName {t0}\n  ProxyJump deadbastion\n\
             Host deadbastion\n  HostName {BASTION}\n  Port 2299\n\
             Host blackhole\n  HostName 10.202.0.250\n  ProxyJump bastion\n  ConnectTimeout 1\n\
             Host viaproxy\n  HostName {t1}\n  ProxyCommand {ssh} -F {dd}/ssh_config -W %h:%p bastion\n\
             Host *\n  User root\n  IdentityFile {dd}/client_key\n  IdentitiesOnly yes\n\
             \x20 UserKnownHostsFile {dd}/known_hosts\n  GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 20\n",
            t0 = target_addr(0),
            t1 = target_addr(1),
            ssh = find_tool("ssh").expect("ssh").display(),
        ),
    )
    .expect("ssh_config");
    std::fs::write(
        d.join("hosts.toml"),
        format!(
            "[defaults]\nssh_config = \"{dd}/ssh_config\"\nuser = \"root\"\n\
             identity_file = \"{dd}/client_key\"\nidentities_only = true\n\
             known_hosts = \"{dd}/known_hosts\"\nconnect_timeout = \"20s\"\n\
             agent_dir = \"{dd}/agents\"\n\n\
             [[host]]\nname = \"t[01-{TARGETS}]\"\naddress = \"10.202.0.[10-{}]\"\n\
             jump = \"bastion\"\n",
            9 + TARGETS
        ),
    )
    .expect("hosts.toml");

    let cfg = sshd_config(&lab, "bastion", &[BASTION.to_string()]);
    lab.sshd(&bastion, &cfg, &lab.path("bastion.log"), 1);
    let cfg = sshd_config(&lab, "bastion2", &[BASTION2.to_string()]);
    lab.sshd(&targets_ns, &cfg, &lab.path("bastion2.log"), 1);
    // sshd takes at most 16 ListenAddress lines.
    for (i, chunk) in addrs.chunks(16).enumerate() {
        let name = format!("targets{i}");
        let cfg = sshd_config(&lab, &name, chunk);
        lab.sshd(
            &targets_ns,
            &cfg,
            &lab.path(&format!("{name}.log")),
            chunk.len(),
        );
    }
    Net {
        lab,
        client,
        targets_ns,
    }
}

/// `crew run --json` lines by host: the last `exit` or `error` object of each.
fn results(out: &Output) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut m = std::collections::BTreeMap::new();
    let mut stdout = std::collections::BTreeMap::<String, String>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let host = v["host"].as_str().unwrap_or("").to_string();
        match v["event"].as_str() {
            Some("exit") | Some("error") => {
                m.insert(host, v);
            }
            Some("stdout") => {
                stdout
                    .entry(host)
                    .or_default()
                    .push_str(v["data"].as_str().unwrap_or(""));
            }
            _ => {}
        }
    }
    for (h, text) in stdout {
        if let Some(v) = m.get_mut(&h) {
            v["stdout"] = serde_json::Value::String(text);
        }
    }
    m
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("t{:02}", i + 1)).collect()
}

/// `crew status`: host → its agent's pid (`-` when none).
fn agents(net: &Net) -> std::collections::BTreeMap<String, String> {
    let st = net.crew(&["status"], Duration::from_secs(30));
    String::from_utf8_lossy(&st.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[0].starts_with('t')).then(|| (f[0].to_string(), f[3].to_string()))
        })
        .collect()
}

/// Which network namespace a process of `ns` is in (the inode behind /proc/self/ns/net).
fn netns_id(lab: &Lab, ns: &str) -> String {
    let out = bounded(
        lab.exec(ns, &find_tool("readlink").expect("readlink"))
            .arg("/proc/self/ns/net"),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn fifty_hosts_behind_one_bastion_connection_chains_proxycommand_dead_and_lost_bastion() {
    if !support::netns::available() || !support::require_tool("ssh") {
        return;
    }
    let net = build();
    let long = Duration::from_secs(180);
    let target_net = netns_id(&net.lab, &net.targets_ns);

    // The client namespace has no way to the targets on its own.
    let probe = bounded(
        net.lab
            .exec(&net.client, &find_tool("ssh").expect("ssh"))
            .args(["-F"])
            .arg(net.lab.path("ssh_config"))
            .args(["-o", "ProxyJump=none", "-o", "ConnectTimeout=3"])
            .args([&target_addr(0), "true"]),
        Duration::from_secs(20),
    );
    assert!(
        !probe.status.success(),
        "the client namespace must not reach the targets directly"
    );

    // 1. All 50 through one bastion connection; each command runs in the targets' namespace.
    let out = net.crew(
        &["run", "--json", "t*", "--", "readlink /proc/self/ns/net"],
        long,
    );
    let r = results(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(r.len(), TARGETS, "{err}\n{:?}", r);
    for name in names(0..TARGETS) {
        let v = &r[&name];
        assert_eq!(v["verdict"], "ok", "{name}: {v}\n{err}");
        assert_eq!(
            v["stdout"].as_str().map(str::trim),
            Some(target_net.as_str())
        );
    }
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        net.bastion_connections(),
        1,
        "exactly one TCP connection to the bastion:\n{}",
        net.log("bastion")
    );

    // 1b. `crew shell` behind the bastion: a PTY on the target, over the pooled connection
    // (still one bastion connection in total), its exit status passed through.
    let out = net.crew(
        &[
            "shell",
            "t07",
            "--",
            "readlink /proc/self/ns/net; tty; exit 3",
        ],
        long,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&target_net), "{text}");
    assert!(text.contains("/dev/pts/"), "a pty on the target: {text}");
    assert_eq!(
        net.bastion_connections(),
        1,
        "the shell opened no new bastion connection:\n{}",
        net.log("bastion")
    );

    // 2. Two hops (bastion, then bastion2 from inside); the agent is uploaded through both.
    let out = net.crew(&["run", "--json", "-w", "deep", "--", "echo deep ok"], long);
    let r = results(&out);
    assert_eq!(
        r["deep"]["verdict"],
        "ok",
        "{:?}\n{}",
        r,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["deep"]["stdout"], "deep ok");
    assert_eq!(
        net.bastion_connections(),
        1,
        "the chain shares the bastion connection"
    );
    assert_eq!(net.log("bastion2").matches("Connection from ").count(), 1);

    // 3. A dead bastion: each target gets a verdict that names it, at once.
    let started = Instant::now();
    let out = net.crew(&["run", "--json", "-w", "gone[1-5]", "--", "true"], long);
    let r = results(&out);
    assert_eq!(r.len(), 5, "{}", String::from_utf8_lossy(&out.stderr));
    for (host, v) in &r {
        assert_eq!(v["event"], "error", "{host}: {v}");
        assert_eq!(v["verdict"], "unreachable", "{host}: {v}");
        assert_eq!(v["kind"], "unreachable", "{host}: {v}");
        let m = v["message"].as_str().unwrap_or("");
        assert!(
            m.starts_with(&format!("{host}: through jump host deadbastion: ")),
            "{host}: {m}"
        );
        assert!(m.contains(&format!("{BASTION}:2299")), "{host}: {m}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));

    // A target the bastion cannot reach (no such address on its network): the wait for the
    // bastion's own connect is bounded by the target's ConnectTimeout.
    let started = Instant::now();
    let out = net.crew(&["run", "--json", "-w", "blackhole", "--", "true"], long);
    let r = results(&out);
    let v = &r["blackhole"];
    assert_eq!(v["kind"], "connect_timeout", "{v}");
    assert_eq!(
        v["message"], "blackhole: jump host bastion did not connect to 10.202.0.250:22 within 1.0s",
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // 4. The bastion connection dies (its sshd session process killed): the hosts behind it
    //    are lost and reconnect on their own (the pool's backoff), all through ONE new
    //    bastion connection: every host gets a new agent without any run asking.
    let before = agents(&net);
    assert_eq!(before.len(), TARGETS, "{before:?}");
    let bastion_sshd = net.lab.sshd_pids()[0];
    let mut sessions = children(bastion_sshd);
    assert!(!sessions.is_empty(), "the bastion has a session process");
    let mut i = 0;
    while i < sessions.len() {
        let more = children(sessions[i]);
        sessions.extend(more);
        i += 1;
    }
    for pid in &sessions {
        // SAFETY: kill has no memory effects; the pid is a child of our sshd.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = agents(&net);
        let renewed = before
            .iter()
            .filter(|(h, pid)| now.get(*h).is_some_and(|p| p != *pid && p != "-"))
            .count();
        if renewed == TARGETS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {renewed} of {TARGETS} hosts came back after the bastion connection died: \
             {now:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        net.bastion_connections(),
        2,
        "one new connection to the bastion for all 50:\n{}",
        net.log("bastion")
    );
    let out = net.crew(&["run", "--json", "t*", "--", "echo again"], long);
    let r = results(&out);
    for name in names(0..TARGETS) {
        assert_eq!(r[&name]["verdict"], "ok", "{name}: {}", r[&name]);
    }
    assert_eq!(
        net.bastion_connections(),
        2,
        "the run used the new connection"
    );

    // 5. ProxyCommand: `ssh -W` through the bastion is the transport.
    let out = net.crew(
        &["run", "--json", "-w", "viaproxy", "--", "echo proxied"],
        long,
    );
    let r = results(&out);
    assert_eq!(
        r["viaproxy"]["verdict"],
        "ok",
        "{:?}\n{}",
        r,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        net.bastion_connections(),
        3,
        "ssh -W made its own connection"
    );

    // 6. The daemon stops: nothing of ours stays in the client namespace (ProxyCommand
    //    children included).
    let out = net.crew(&["daemon", "stop"], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !net.lab.pids(&net.client).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left in the client namespace: {:?}",
            net.lab.pids(&net.client)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
