//! Jump host benchmark (not a test): N hosts (default 100) behind one bastion, on a real
//! OpenSSH fleet on loopback (the bastion is the fleet's first address; every other host is
//! reached through it because the ssh config says `ProxyJump bastion`, host keys checked).
//! `true` on every host with crew (first run: agents uploaded through the bastion; cold:
//! daemon restarted, agents installed; warm: median of `CREW_BENCH_WARM` runs), pdsh and
//! clush with the same ssh config (each `ssh` opens its own bastion connection), and bssh
//! `-J` when installed. Prints a table: wall time, and TCP connections the bastion's sshd
//! accepted during the run. `cargo bench --bench jump` (`-- 50` or `CREW_BENCH_N=50` for
//! another size; `CREW_BENCH_FANOUT`, default 64).

#[path = "fleet/exec.rs"]
#[allow(dead_code)]
mod exec;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use exec::{median, timed, Timed};
use support::sshd::SshdFleet;

const LIMIT: Duration = Duration::from_secs(900);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

struct Bench {
    fleet: SshdFleet,
    n: usize,
    fanout: usize,
    cfg: PathBuf,
    scratch: tempfile::TempDir,
    bastion: String,
    crew_home: PathBuf,
}

impl Bench {
    fn names(&self) -> String {
        format!("t[001-{:03}]", self.n)
    }

    /// TCP connections the bastion's sshd accepted so far.
    fn bastion_connections(&self) -> usize {
        let needle = format!(" on {} port {}", self.bastion, self.fleet.port);
        self.fleet
            .logs()
            .lines()
            .filter(|l| l.contains("Connection from ") && l.contains(&needle))
            .count()
    }

    fn crew(&self, args: &[&str]) -> Command {
        let exe = env!("CARGO_BIN_EXE_crew");
        let mut c = Command::new(exe);
        c.args(args)
            .current_dir(self.scratch.path())
            .env("CREW_HOME", &self.crew_home)
            .env("CREW_CONFIG_DIR", self.scratch.path().join("config"))
            .env("CREW_SSH_CONFIG", &self.cfg)
            .env("CREW_AGENT_EXE", exe)
            .env_remove("CREW_HOSTS")
            .env_remove("SSH_AUTH_SOCK");
        c
    }

    fn run(&self, cmd: &mut Command, what: &str) -> anyhow::Result<(Timed, usize)> {
        let before = self.bastion_connections();
        let t = timed(cmd, LIMIT, self.scratch.path())?.require_ok(what)?;
        // sshd logs the connection as it accepts it: it is in the log by now.
        Ok((t, self.bastion_connections() - before))
    }

    fn crew_run(&self) -> anyhow::Result<(Timed, usize)> {
        let fanout = self.fanout.to_string();
        let names = self.names();
        let mut c = self.crew(&["run", "--fanout", &fanout, "-w", &names, "--", "true"]);
        self.run(&mut c, "crew run")
    }

    fn stop_daemon(&self) {
        let _ = timed(
            &mut self.crew(&["daemon", "stop"]),
            Duration::from_secs(60),
            self.scratch.path(),
        );
    }
}

fn main() {
    if !support::require_tool("sshd") {
        return;
    }
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| env_num("CREW_BENCH_N", 100));
    let fanout = env_num("CREW_BENCH_FANOUT", 64);
    let warm_reps = env_num("CREW_BENCH_WARM", 5);
    exec::raise_nofile();
    let fleet = SshdFleet::start(n + 1);
    let hosts = fleet.hosts();
    let scratch = match tempfile::Builder::new()
        .prefix("crew-jump-bench-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("jump bench: temp dir: {e}");
            std::process::exit(1);
        }
    };
    let user = support::daemon::login();
    let mut cfg = format!("Host bastion\n  HostName {}\n", hosts[0].address);
    for (i, h) in hosts.iter().skip(1).enumerate() {
        cfg += &format!(
            "Host t{:03}\n  HostName {}\n  ProxyJump bastion\n",
            i + 1,
            h.address
        );
    }
    cfg += &format!(
        "Host *\n  Port {}\n  User {user}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  \
         BatchMode yes\n  ConnectTimeout 30\n",
        fleet.port,
        fleet.client_key.display(),
        fleet.known_hosts.display()
    );
    let cfg_path = scratch.path().join("ssh_config");
    if let Err(e) = std::fs::write(&cfg_path, cfg) {
        eprintln!("jump bench: ssh config: {e}");
        std::process::exit(1);
    }
    let b = Bench {
        bastion: hosts[0].address.clone(),
        crew_home: scratch.path().join("crew"),
        cfg: cfg_path,
        n,
        fanout,
        fleet,
        scratch,
    };
    let result = measure(&b, warm_reps);
    b.stop_daemon();
    match result {
        Ok(rows) => print_table(&b, &rows),
        Err(e) => {
            eprintln!("jump bench failed: {e:#}\n{}", tail(&b.fleet.logs()));
            std::process::exit(1);
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// One row: tool, what, wall time, bastion connections (per run).
type Row = (String, String, Option<Duration>, Option<usize>);

fn measure(b: &Bench, warm_reps: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    let (t, c) = b.crew_run()?;
    rows.push((
        "crew".into(),
        "first run (agents uploaded through the bastion)".into(),
        Some(t.elapsed),
        Some(c),
    ));
    let mut warm = Vec::new();
    let mut warm_conns = 0;
    for _ in 0..warm_reps {
        let (t, c) = b.crew_run()?;
        warm.push(t.elapsed);
        warm_conns += c;
    }
    rows.push((
        "crew".into(),
        format!("warm (daemon and agents up; median of {warm_reps})"),
        Some(median(warm)),
        Some(warm_conns / warm_reps.max(1)),
    ));
    b.stop_daemon();
    let (t, c) = b.crew_run()?;
    rows.push((
        "crew".into(),
        "cold (new daemon; agents installed)".into(),
        Some(t.elapsed),
        Some(c),
    ));

    let names = b.names();
    let fanout = b.fanout.to_string();
    let cfg = b.cfg.display().to_string();
    for (tool, install) in [
        ("pdsh", "apt-get install pdsh"),
        ("clush", "apt-get install clustershell"),
        ("bssh", "cargo install bssh --version 2.2.3 --locked"),
    ] {
        let Some(exe) = find(tool) else {
            rows.push((
                tool.into(),
                format!("not installed ({install})"),
                None,
                None,
            ));
            continue;
        };
        let mut c = Command::new(&exe);
        let what = match tool {
            "pdsh" => {
                c.env("PDSH_SSH_ARGS", format!("-F {cfg} %h"))
                    .args(["-S", "-R", "ssh", "-f", &fanout, "-w", &names, "true"]);
                "ssh per host, ProxyJump from the ssh config"
            }
            "clush" => {
                c.args(["-S", "-f", &fanout, "-o", &format!("-F {cfg}")])
                    .args(["-w", &names, "true"]);
                "ssh per host, ProxyJump from the ssh config"
            }
            _ => {
                let home = b.scratch.path().join("bssh-home");
                std::fs::create_dir_all(home.join(".ssh"))?;
                std::fs::copy(&b.fleet.known_hosts, home.join(".ssh/known_hosts"))?;
                let list: Vec<String> = b
                    .fleet
                    .hosts()
                    .iter()
                    .skip(1)
                    .map(|h| format!("{}:{}", h.address, b.fleet.port))
                    .collect();
                let user = support::daemon::login();
                c.env("HOME", &home)
                    .args(["--strict-host-key-checking", "yes", "--require-all-success"])
                    .args(["--parallel", &fanout, "-l", &user, "-i"])
                    .arg(&b.fleet.client_key)
                    .args(["-J", &format!("{user}@{}:{}", b.bastion, b.fleet.port)])
                    .args(["--connect-timeout", "30", "-H", &list.join(","), "true"]);
                "-J bastion"
            }
        };
        match b.run(&mut c, tool) {
            Ok((t, conns)) => rows.push((tool.into(), what.into(), Some(t.elapsed), Some(conns))),
            Err(e) => rows.push((tool.into(), format!("failed: {e:#}"), None, None)),
        }
    }
    Ok(rows)
}

fn find(tool: &str) -> Option<PathBuf> {
    support::find_tool(tool).or_else(|| {
        let p = dirs::home_dir()?.join(".cargo/bin").join(tool);
        p.is_file().then_some(p)
    })
}

fn print_table(b: &Bench, rows: &[Row]) {
    println!(
        "\n{} hosts behind one bastion (loopback sshd, {}), fanout {}, load {}\n",
        b.n,
        openssh_version(),
        b.fanout,
        exec::loadavg()
    );
    println!("| tool | run | wall | bastion TCP connections |");
    println!("|---|---|---:|---:|");
    for (tool, what, wall, conns) in rows {
        let wall = wall.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        let conns = conns.map_or("-".to_string(), |c| c.to_string());
        let what = what.lines().next().unwrap_or("");
        println!("| {tool} | {what} | {wall} | {conns} |");
    }
}

fn openssh_version() -> String {
    Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_else(|_| "?".into())
}
