//! Transfer benchmark (not a test): `crew put` / `crew fetch` against pdcp / rpdcp,
//! `clush --copy` / `--rcopy` and `bssh upload` / `download` on a real OpenSSH fleet of N
//! loopback hosts.
//!
//! `cargo bench --bench transfer` copies 100 MB to 50 hosts and back. Knobs (env):
//! `CREW_BENCH_N` (hosts, 50), `CREW_BENCH_MB` (file size, 100), `CREW_BENCH_FANOUT` (64),
//! `CREW_BENCH_ONLY_CREW=1` (crew's rows only, e.g. to profile its memory).
//! Tools that are not installed are reported as such. See benches/README.md.
//!
//! All hosts are this machine: every tool writes the same remote path (`<scratch>/dest/`) from
//! N connections at once, and fetches N copies of it into a local directory. Wall time is
//! what the operator waits; CPU is the operator side: the tool and its ssh/scp children
//! (`getrusage(RUSAGE_CHILDREN)`), for crew the client plus the daemon (`/proc/<pid>/stat`).
//! The hosts' sshd and agents are not counted for anyone.

// Shared with the fleet benchmark; not every helper is used here.
#[allow(dead_code)]
#[path = "fleet/crew.rs"]
mod crew_cli;
#[allow(dead_code)]
#[path = "fleet/exec.rs"]
mod exec;
#[path = "../tests/support/mod.rs"]
mod support;
#[allow(dead_code)]
#[path = "fleet/tools.rs"]
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

use crew_cli::Crew;
use support::sshd::SshdFleet;
use tools::{Target, Tool};

const LIMIT: Duration = Duration::from_secs(1200);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// CPU seconds (user + system) of waited-for children of this process so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass; no other memory is involved.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + system) of a running process, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // After the command: state(skipped: not a number) ppid pgrp … utime is field 14 overall.
    // `f` starts at ppid (field 4), so utime is f[10], stime f[11].
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / hz
}

fn sha_file(p: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(p).with_context(|| p.display().to_string())?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Regular files under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// One timed copy that was verified afterwards.
struct Done {
    wall: Duration,
    cpu: f64,
    /// What the check found (e.g. `sha256 ok, 50/50 files`).
    verified: String,
}

struct Row {
    tool: String,
    put: Result<Done, String>,
    fetch: Result<Done, String>,
}

/// wall, CPU, verification: a copy that failed its check is FAILED, never timed.
fn cells(r: &Result<Done, String>) -> (String, String, String) {
    match r {
        Ok(d) => (
            format!("{:.1}", d.wall.as_secs_f64()),
            format!("{:.1}", d.cpu),
            d.verified.clone(),
        ),
        Err(e) => (
            "–".into(),
            "–".into(),
            format!("**FAILED**: {}", e.replace('|', "/")),
        ),
    }
}

/// The fleet's agent directory (set once in `main`).
static AGENT_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Reset a process's peak RSS (VmHWM) to its current RSS (`/proc/PID/clear_refs`, 5).
fn reset_peak(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Pids of this fleet's crew agents (every host's agent runs on this machine, from the
/// fleet's agent directory; their `crew-keeper` forks are left out).
fn agent_pids() -> Vec<u32> {
    let dir = AGENT_DIR.get().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let exe = fs::read_link(e.path().join("exe")).unwrap_or_default();
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if exe.starts_with(&dir)
            && exe
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
            && !comm.starts_with("crew-keeper")
        {
            out.push(pid);
        }
    }
    out
}

/// Peak RSS of the daemon and the largest of the agents' since the last reset, in MiB.
struct Peaks {
    daemon: f64,
    agent_max: f64,
    agents: usize,
}

fn peaks(daemon: u32) -> Peaks {
    let mib = |pid: u32| exec::rss_kib(pid).map_or(0.0, |(_, hwm)| hwm as f64 / 1024.0);
    let agents = agent_pids();
    Peaks {
        daemon: mib(daemon),
        agent_max: agents.iter().map(|p| mib(*p)).fold(0.0, f64::max),
        agents: agents.len(),
    }
}

fn reset_peaks(daemon: u32) {
    reset_peak(daemon);
    for p in agent_pids() {
        reset_peak(p);
    }
}

/// A tool's last words for a table cell: terminal escapes and rules dropped, the lines that
/// say what failed first.
fn gist(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    let lines: Vec<&str> = plain
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '═' || c == '─' || c == '-'))
        .collect();
    let failing: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("fail") || l.contains("error")
        })
        .collect();
    if failing.is_empty() {
        lines.join(" / ")
    } else {
        failing.join(" / ")
    }
}

/// Lines of a tool's stderr that say a host failed although the tool may exit 0 (pdcp
/// and rpdcp do: their exit status ignores the hosts' failures).
fn host_failures(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("exited with exit code")
                || l.contains("connection refused")
                || l.contains("permission denied")
                || l.contains("no such file")
                || l.contains("host key verification failed")
                || l.contains("command not found")
        })
        .map(str::to_string)
        .collect()
}

struct Bench {
    n: usize,
    fanout: usize,
    src: PathBuf,
    sha: String,
    dest: PathBuf,
    target: Target,
    scratch: PathBuf,
}

impl Bench {
    fn remote_file(&self) -> PathBuf {
        self.dest.join("payload.bin")
    }

    /// Run a tool's command line; wall time and CPU of it and its children. A non-zero
    /// exit, or a host failure in its stderr, fails it.
    fn time(&self, mut c: Command) -> anyhow::Result<(Duration, f64)> {
        let before = children_cpu();
        let t = exec::timed(&mut c, LIMIT, &self.scratch)?;
        let cpu = children_cpu() - before;
        if !t.ok() {
            bail!("exit {:?}: {}", t.code, gist(&t.tail()));
        }
        let failed = host_failures(&t.stderr);
        if !failed.is_empty() {
            bail!(
                "exit 0, but {} host error line(s), e.g. {}",
                failed.len(),
                failed[0].trim()
            );
        }
        Ok((t.elapsed, cpu))
    }

    /// After a put: the file at the remote path is the source, byte for byte. (All hosts
    /// are this machine and write the same path: one file to check.)
    fn check_put(&self) -> anyhow::Result<String> {
        let f = self.remote_file();
        if !f.exists() {
            bail!("nothing at {} after the put", f.display());
        }
        let got = sha_file(&f)?;
        if got != self.sha {
            bail!("the copy's sha256 is {got}, the source's {}", self.sha);
        }
        Ok("sha256 = source".into())
    }

    /// After a fetch into `dir`: N files, each the source (every one hashed).
    fn check_fetch(&self, dir: &Path) -> anyhow::Result<String> {
        let files = files_under(dir);
        if files.len() != self.n {
            bail!("{} files fetched, {} hosts", files.len(), self.n);
        }
        for f in &files {
            if sha_file(f)? != self.sha {
                bail!("{}: not the source's bytes", f.display());
            }
        }
        Ok(format!("{}/{} files sha256 = source", files.len(), self.n))
    }

    fn fresh(&self, dir: &Path) {
        let _ = fs::remove_dir_all(dir);
        let _ = fs::create_dir_all(dir);
    }

    fn tool_put(&self, tool: Tool, exe: &Path) -> anyhow::Result<Done> {
        self.fresh(&self.dest);
        let list = self.target.addresses.join(",");
        let f = self.fanout.to_string();
        // pdsh picks its mode by the name it runs as (`/usr/bin/pdcp` is `exec -a pdcp
        // pdsh.bin`): run as `pdsh`, `pdsh … SRC DEST` runs SRC as a command on every host
        // (`Permission denied`) and still exits 0. That was the "pdcp copied nothing".
        let exe = match tool {
            Tool::Pdsh => exe.with_file_name("pdcp"),
            _ => exe.to_path_buf(),
        };
        let mut c = Command::new(&exe);
        match tool {
            Tool::Pdsh => {
                // pdcp: the same OpenSSH options pdsh gets (pdcp must be on the hosts too).
                let mut args = self.target.ssh_opts();
                args.push("-l%u".into());
                args.push("%h".into());
                c.env("PDSH_SSH_ARGS", args.join(" "));
                c.args(["-R", "ssh", "-f", &f, "-l", &self.target.user, "-w", &list])
                    .arg(&self.src)
                    .arg(&self.dest);
            }
            Tool::Clush => {
                c.args(["-S", "-f", &f, "-l", &self.target.user])
                    .args(["-o", &scp_opts(&self.target)])
                    .args(["-w", &list, "--copy"])
                    .arg(&self.src)
                    .arg("--dest")
                    .arg(&self.dest);
            }
            Tool::Bssh => {
                c.env("HOME", &self.target.bssh_home).env("NO_COLOR", "1");
                c.args(["--strict-host-key-checking", "yes"])
                    .args(["--parallel", &f, "-l", &self.target.user, "-i"])
                    .arg(&self.target.key)
                    .args(["-H", &self.target.with_ports(), "upload"])
                    .arg(&self.src)
                    .arg(format!("{}/", self.dest.display()));
            }
        }
        let (wall, cpu) = self.time(c)?;
        let verified = self.check_put()?;
        Ok(Done {
            wall,
            cpu,
            verified,
        })
    }

    fn tool_fetch(&self, tool: Tool, exe: &Path) -> anyhow::Result<Done> {
        let local = self.scratch.join("fetched");
        self.fresh(&local);
        let list = self.target.addresses.join(",");
        let f = self.fanout.to_string();
        let exe = match tool {
            Tool::Pdsh => exe.with_file_name("rpdcp"),
            _ => exe.to_path_buf(),
        };
        let mut c = Command::new(&exe);
        match tool {
            Tool::Pdsh => {
                let mut args = self.target.ssh_opts();
                args.push("-l%u".into());
                args.push("%h".into());
                c.env("PDSH_SSH_ARGS", args.join(" "));
                c.args(["-R", "ssh", "-f", &f, "-l", &self.target.user, "-w", &list])
                    .arg(self.remote_file())
                    .arg(&local);
            }
            Tool::Clush => {
                c.args(["-S", "-f", &f, "-l", &self.target.user])
                    .args(["-o", &scp_opts(&self.target)])
                    .args(["-w", &list, "--rcopy"])
                    .arg(self.remote_file())
                    .arg("--dest")
                    .arg(&local);
            }
            Tool::Bssh => {
                c.env("HOME", &self.target.bssh_home).env("NO_COLOR", "1");
                c.args(["--strict-host-key-checking", "yes"])
                    .args(["--parallel", &f, "-l", &self.target.user, "-i"])
                    .arg(&self.target.key)
                    .args(["-H", &self.target.with_ports(), "download"])
                    .arg(self.remote_file())
                    .arg(format!("{}/", local.display()));
            }
        }
        let (wall, cpu) = self.time(c)?;
        let verified = self.check_fetch(&local)?;
        Ok(Done {
            wall,
            cpu,
            verified,
        })
    }

    /// crew: wall time, and CPU of the client plus the daemon.
    fn crew(&self, crew: &mut Crew, args: &[String]) -> anyhow::Result<(Duration, f64)> {
        let pid = crew.status()?.pid;
        let daemon_before = proc_cpu(pid);
        let mut c = Command::new(&crew.exe);
        c.env("CREW_HOME", crew.home())
            .env("CREW_AGENT_EXE", &crew.agent)
            .env("NO_COLOR", "1")
            .arg("--hosts")
            .arg(&crew.hosts_file)
            .args(args);
        let (wall, client) = self.time(c)?;
        Ok((wall, client + proc_cpu(pid) - daemon_before))
    }

    fn crew_put(&self, crew: &mut Crew) -> anyhow::Result<Done> {
        self.fresh(&self.dest);
        let args = [
            "put".to_string(),
            "--fanout".into(),
            self.fanout.to_string(),
            crew_cli::TAG.into(),
            self.src.display().to_string(),
            format!("{}/", self.dest.display()),
        ];
        let (wall, cpu) = self.crew(crew, &args)?;
        let verified = self.check_put()?;
        Ok(Done {
            wall,
            cpu,
            verified,
        })
    }

    fn crew_fetch(&self, crew: &mut Crew) -> anyhow::Result<Done> {
        let local = self.scratch.join("fetched");
        self.fresh(&local);
        let args = [
            "fetch".to_string(),
            "--fanout".into(),
            self.fanout.to_string(),
            crew_cli::TAG.into(),
            self.remote_file().display().to_string(),
            local.display().to_string(),
        ];
        let (wall, cpu) = self.crew(crew, &args)?;
        let verified = self.check_fetch(&local)?;
        Ok(Done {
            wall,
            cpu,
            verified,
        })
    }
}

/// OpenSSH options for scp as clush runs it (`-P`/`-p` differ between ssh and scp: the port
/// goes as `-oPort=`).
fn scp_opts(t: &Target) -> String {
    let mut o = Vec::new();
    let opts = t.ssh_opts();
    let mut i = 0;
    while i < opts.len() {
        if opts[i] == "-p" {
            o.push(format!(
                "-oPort={}",
                opts.get(i + 1).cloned().unwrap_or_default()
            ));
            i += 2;
            continue;
        }
        o.push(opts[i].clone());
        i += 1;
    }
    o.join(" ")
}

fn main() -> anyhow::Result<()> {
    let n = env_num("CREW_BENCH_N", 50);
    let mb = env_num("CREW_BENCH_MB", 100);
    let fanout = env_num("CREW_BENCH_FANOUT", 64);
    exec::raise_nofile();
    let scratch = tempfile::Builder::new()
        .prefix("crew-bench-transfer-")
        .tempdir()
        .context("scratch dir")?;
    let src = scratch.path().join("payload.bin");
    {
        let out = Command::new("head")
            .args(["-c", &(mb << 20).to_string(), "/dev/urandom"])
            .output()
            .context("head /dev/urandom")?;
        fs::write(&src, &out.stdout).context("write the payload")?;
    }
    let sha = sha_file(&src)?;
    eprintln!("starting {n} loopback hosts…");
    let fleet = SshdFleet::start(n);
    let hosts = fleet.hosts();
    let _ = AGENT_DIR.set(fleet.agent_dir());
    let target = Target::new(&hosts, scratch.path())?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_crew"));
    let mut crew = Crew::new(&exe, &exe, &hosts, "warn")?;
    let (_, note) = crew.run_true(fanout)?;
    if let Some(n) = note {
        bail!("crew warm-up: {n}");
    }
    let bench = Bench {
        n,
        fanout,
        src,
        sha,
        dest: scratch.path().join("dest"),
        target,
        scratch: scratch.path().join("work"),
    };
    fs::create_dir_all(&bench.scratch)?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rows = Vec::new();
    eprintln!("crew put / fetch…");
    let daemon = crew.status()?.pid;
    let idle_rss = exec::rss_kib(daemon).map_or(0.0, |(rss, _)| rss as f64 / 1024.0);
    reset_peaks(daemon);
    let put = bench.crew_put(&mut crew).map_err(|e| format!("{e:#}"));
    let put_peaks = peaks(daemon);
    reset_peaks(daemon);
    let fetch = bench.crew_fetch(&mut crew).map_err(|e| format!("{e:#}"));
    let fetch_peaks = peaks(daemon);
    rows.push(Row {
        tool: "crew (agents up)".into(),
        put,
        fetch,
    });
    let others = if std::env::var("CREW_BENCH_ONLY_CREW").is_ok_and(|v| v == "1") {
        Vec::new()
    } else {
        tools::ALL.to_vec()
    };
    for tool in others {
        let name = match tool {
            Tool::Pdsh => "pdcp / rpdcp",
            Tool::Clush => "clush --copy / --rcopy",
            Tool::Bssh => "bssh upload / download",
        };
        let Some(exe) = tool.find() else {
            eprintln!("{name}: not installed ({})", tool.install_hint());
            rows.push(Row {
                tool: name.into(),
                put: Err(format!("not installed ({})", tool.install_hint())),
                fetch: Err("not installed".into()),
            });
            continue;
        };
        eprintln!("{name}…");
        rows.push(Row {
            tool: name.into(),
            put: bench.tool_put(tool, &exe).map_err(|e| format!("{e:#}")),
            fetch: bench.tool_fetch(tool, &exe).map_err(|e| format!("{e:#}")),
        });
    }
    let _ = fs::remove_dir_all(bench.scratch.join("fetched"));
    let _ = crew.stop();
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n## put {mb} MiB to {n} hosts, fetch it back from each (fanout {fanout})\n\n\
         load average before: {}; after: {}\n\n\
         | tool | put wall s | put CPU s | put verified | fetch wall s | fetch CPU s | fetch verified |\n\
         |---|---|---|---|---|---|---|",
        load.trim(),
        load_after.trim()
    );
    for r in &rows {
        let (pw, pc, pv) = cells(&r.put);
        let (fw, fc, fv) = cells(&r.fetch);
        println!("| {} | {pw} | {pc} | {pv} | {fw} | {fc} | {fv} |", r.tool);
    }
    println!(
        "\n| crew peak RSS (VmHWM, reset before each) | put | fetch |\n|---|---|---|\n\
         | daemon | {:.1} MiB | {:.1} MiB |\n| agent (largest of {}) | {:.1} MiB | {:.1} MiB |\n\n\
         daemon RSS before the put (agents up, idle): {idle_rss:.1} MiB",
        put_peaks.daemon,
        fetch_peaks.daemon,
        put_peaks.agents.max(fetch_peaks.agents),
        put_peaks.agent_max,
        fetch_peaks.agent_max
    );
    println!(
        "\nCPU: the tool and its ssh/scp children; for crew the client plus the daemon. \
         Every copy is checked after it (put: the sha256 of the file at the target; fetch: \
         one file per host, each hashed); a tool that exits 0 with host errors on stderr, or \
         whose copy is missing or wrong, is FAILED, not timed."
    );
    Ok(())
}
