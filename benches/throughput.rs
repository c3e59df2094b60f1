//! Throughput benchmark (not a test): MB/s of one host's output through the whole stack
//! (agent → link → daemon → run store → client → stdout) as an operator sees it:
//! `crew run HOST -- CMD > /dev/null`, plain and `--json`, against `ssh HOST CMD > /dev/null`
//! on the same loopback sshd host (and against the command alone, for a `local` host). Also
//! the daemon's and the client's peak RSS, and the start→exit time of a second job on the same
//! host while a first one's reader reads nothing.
//!
//! `cargo bench --bench throughput`. Knobs (environment): `CREW_BENCH_MB` (300: megabytes of
//! 200-byte printable lines), `CREW_BENCH_SEQ` (20000000: `seq 1 N`), `CREW_BENCH_ROUNDS`
//! (3, median shown), `CREW_BENCH_EXE` (the `crew` executable to measure, default this
//! build's: point it at an older build for before/after), `CREW_BENCH_CHECK` (1: once per
//! row, outside the timings, read crew's output through a pipe and check its size and line
//! count against what the command prints). See benches/README.md for the last results.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use support::sshd::SshdFleet;

/// Limit on one timed command (300 MB at 10 MB/s would be 30 s).
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Exit status, wall seconds and peak RSS (KiB) of a child, reaped with wait4 so its own
/// rusage is read (not the sum over every child).
fn wait_rusage(child: Child, limit: Duration) -> anyhow::Result<(i32, f64, u64)> {
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let deadline = start + limit;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, writing into locals valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
            return Ok((
                code,
                start.elapsed().as_secs_f64(),
                ru.ru_maxrss.max(0) as u64,
            ));
        }
        if r < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) of our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            bail!("pid {pid} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `VmHWM` (peak RSS, KiB) of a process.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Reset a process's peak RSS to its current RSS (`clear_refs` 5).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Bench {
    exe: PathBuf,
    dir: tempfile::TempDir,
    fleet: SshdFleet,
    daemon_pid: u32,
}

impl Bench {
    fn new(exe: PathBuf) -> anyhow::Result<Bench> {
        let fleet = SshdFleet::start(1);
        let dir = tempfile::Builder::new()
            .prefix("crew-bench-tp-")
            .tempdir()?;
        let d = dir.path();
        std::fs::write(d.join("ssh_config"), "")?;
        let host = fleet.hosts().into_iter().next().context("a fleet host")?;
        let toml = format!(
            "{}\n[[host]]\nname = \"sshhost\"\naddress = {:?}\n\n[[host]]\nname = \"localhost\"\ntransport = \"local\"\n",
            fleet.inventory_defaults(&d.join("ssh_config")),
            host.address
        );
        std::fs::write(d.join("hosts.toml"), toml)?;
        for sub in ["home", "config", "tmp"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let mut b = Bench {
            exe,
            dir,
            fleet,
            daemon_pid: 0,
        };
        // Agents installed and linked: what is timed is the command's output alone.
        for h in ["sshhost", "localhost"] {
            let (code, _, _) = b.crew_run(&[h, "--", "true"], false)?;
            if code != 0 {
                bail!("warm-up on {h} exited {code}\n{}", b.fleet.logs());
            }
        }
        b.daemon_pid = b.daemon_pid()?;
        Ok(b)
    }

    fn crew(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.exe);
        c.env("CREW_HOME", d.join("home"))
            .env("CREW_CONFIG_DIR", d.join("config"))
            .env("CREW_AGENT_EXE", &self.exe)
            .env("TMPDIR", d.join("tmp"))
            .env_remove("CREW_HOSTS")
            .env_remove("CREW_LOG")
            .arg("--hosts")
            .arg(d.join("hosts.toml"))
            .current_dir(d)
            .stdin(Stdio::null());
        c
    }

    fn daemon_pid(&self) -> anyhow::Result<u32> {
        let out = self.crew().arg("status").output()?;
        let st = String::from_utf8_lossy(&out.stdout);
        st.split(|c: char| !c.is_ascii_alphanumeric())
            .skip_while(|w| *w != "pid")
            .nth(1)
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("no daemon pid in `crew status`:\n{st}"))
    }

    /// `crew run ARGS` with stdout to /dev/null: exit code, seconds, client peak RSS.
    fn crew_run(&self, args: &[&str], json: bool) -> anyhow::Result<(i32, f64, u64)> {
        let mut c = self.crew();
        c.arg("run");
        if json {
            c.arg("--json");
        }
        let child = c
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_rusage(child, RUN_LIMIT)
    }

    /// `ssh HOST CMD` with stdout to /dev/null, as an operator would run it.
    fn ssh_run(&self, cmd: &str) -> anyhow::Result<(i32, f64, u64)> {
        let host = self.fleet.hosts().into_iter().next().context("a host")?;
        let child = Command::new("ssh")
            .args(["-F", "/dev/null", "-T", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.fleet.known_hosts.display()
            ))
            .arg("-i")
            .arg(&self.fleet.client_key)
            .args(["-p", &self.fleet.port.to_string()])
            .arg(format!("{}@{}", support::proc::login(), host.address))
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_rusage(child, RUN_LIMIT)
    }

    /// The command alone (what a `local` host's agent runs), stdout to /dev/null.
    fn bare_run(&self, cmd: &str) -> anyhow::Result<(i32, f64, u64)> {
        let child = Command::new("sh")
            .args(["-c", cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        wait_rusage(child, RUN_LIMIT)
    }

    /// crew's whole stdout for `crew run [--json] HOST -- CMD`: (bytes, lines).
    fn crew_output_size(&self, host: &str, cmd: &str, json: bool) -> anyhow::Result<(u64, u64)> {
        let mut c = self.crew();
        c.arg("run");
        if json {
            c.arg("--json");
        }
        let mut child = c
            .args([host, "--", cmd])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut out = child.stdout.take().context("stdout")?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut bytes, mut lines) = (0u64, 0u64);
        loop {
            let n = out.read(&mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        support::proc::wait_within(&mut child, RUN_LIMIT, "crew run (check)");
        Ok((bytes, lines))
    }
}

impl Drop for Bench {
    /// Stop the daemon (also when the bench fails half-way), bounded.
    fn drop(&mut self) {
        let mut c = self.crew();
        c.args(["daemon", "stop"]);
        support::proc::run_quietly(&mut c, Duration::from_secs(30));
    }
}

/// One kind of output: the command and what it prints.
struct Load {
    name: String,
    cmd: String,
    bytes: u64,
    lines: u64,
}

/// One row of the table.
struct Row {
    what: String,
    secs: f64,
    mbps: f64,
    vs: Option<f64>,
    daemon_peak: Option<u64>,
    client_peak: Option<u64>,
    check: String,
}

fn main() -> anyhow::Result<()> {
    if !support::require_sshd() || !support::require_tool("ssh") {
        return Ok(());
    }
    let mb = env_num("CREW_BENCH_MB", 300);
    let seq = env_num("CREW_BENCH_SEQ", 20_000_000);
    let rounds = env_num("CREW_BENCH_ROUNDS", 3).min(20) as usize;
    let check = std::env::var("CREW_BENCH_CHECK").map_or(true, |v| v.trim() != "0");
    let exe = std::env::var_os("CREW_BENCH_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crew")));
    let load_at_start = load_average();
    let b = Bench::new(exe.clone())?;

    // 200-byte printable lines: 199 × 'x' and a newline.
    let line = "x".repeat(199);
    let long_bytes = mb * 1_000_000;
    let seq_bytes: u64 = (1..=seq).map(|n| n.to_string().len() as u64 + 1).sum();
    let loads = [
        Load {
            name: format!("{mb} MB of 200-byte lines"),
            cmd: format!("yes {line} | head -c {long_bytes}"),
            bytes: long_bytes,
            lines: long_bytes / 200,
        },
        Load {
            name: format!(
                "`seq 1 {seq}` ({:.0} MB, short lines)",
                seq_bytes as f64 / 1e6
            ),
            cmd: format!("seq 1 {seq}"),
            bytes: seq_bytes,
            lines: seq,
        },
    ];

    let mut tables = Vec::new();
    for load in &loads {
        let mut rows: Vec<Row> = Vec::new();
        let timed = |f: &dyn Fn() -> anyhow::Result<(i32, f64, u64)>,
                     daemon: bool|
         -> anyhow::Result<(f64, Option<u64>, u64)> {
            let mut secs = Vec::new();
            let mut daemon_peak = 0u64;
            let mut client_peak = 0u64;
            for _ in 0..rounds {
                if daemon {
                    reset_peak(b.daemon_pid);
                }
                let (code, s, rss) = f()?;
                if code != 0 {
                    bail!("exit {code}");
                }
                secs.push(s);
                client_peak = client_peak.max(rss);
                if daemon {
                    daemon_peak = daemon_peak.max(peak_rss_kib(b.daemon_pid));
                }
            }
            Ok((median(secs), daemon.then_some(daemon_peak), client_peak))
        };
        for (host, base_name) in [("sshhost", "ssh"), ("localhost", "the command alone")] {
            let (base, _, _) = if host == "sshhost" {
                timed(&|| b.ssh_run(&load.cmd), false)?
            } else {
                timed(&|| b.bare_run(&load.cmd), false)?
            };
            let mbps = |s: f64| load.bytes as f64 / 1e6 / s;
            rows.push(Row {
                what: format!("{host}: {base_name}"),
                secs: base,
                mbps: mbps(base),
                vs: None,
                daemon_peak: None,
                client_peak: None,
                check: String::new(),
            });
            for json in [false, true] {
                let args = [host, "--", load.cmd.as_str()];
                let (s, dpeak, cpeak) = timed(&|| b.crew_run(&args, json), true)?;
                let check = if check {
                    let (bytes, lines) = b.crew_output_size(host, &load.cmd, json)?;
                    let ok = if json {
                        // One `stdout` event per line, plus `started` and `exit`.
                        lines == load.lines + 2 && bytes > load.bytes
                    } else {
                        // `HOST | ` before each line.
                        lines == load.lines
                            && bytes == load.bytes + load.lines * (host.len() as u64 + 3)
                    };
                    if ok {
                        format!("{lines} lines, {bytes} B: ok")
                    } else {
                        format!("{lines} lines, {bytes} B: WRONG")
                    }
                } else {
                    String::new()
                };
                rows.push(Row {
                    what: format!("{host}: crew run{}", if json { " --json" } else { "" }),
                    secs: s,
                    mbps: mbps(s),
                    vs: Some(base / s * 100.0),
                    daemon_peak: dpeak,
                    client_peak: Some(cpeak),
                    check,
                });
            }
        }
        tables.push((load.name.clone(), rows));
    }

    // A second job's latency while a first job's reader reads nothing.
    let idle = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(b.crew_run(&["sshhost", "--", "echo hi"], false)?.1);
        }
        median(v)
    };
    let mut flood = b
        .crew()
        .args(["run", "sshhost", "--", "yes | head -c 200000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Let the flood fill every buffer up to the reader that reads nothing.
    std::thread::sleep(Duration::from_secs(2));
    let blocked = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(b.crew_run(&["sshhost", "--", "echo hi"], false)?.1);
        }
        median(v)
    };
    // Now read the flood to its end.
    let mut sink = flood.stdout.take().context("flood stdout")?;
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = sink.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    support::proc::wait_within(&mut flood, RUN_LIMIT, "the flooding run");

    println!();
    println!(
        "crew: {} ({}); load average at start {load_at_start}, at end {}; median of {rounds}",
        exe.display(),
        exe_note(&exe),
        load_average()
    );
    println!();
    for (name, rows) in &tables {
        println!("| {name} | time | MB/s | % of baseline | daemon peak RSS | client peak RSS | output check |");
        println!("|---|---|---|---|---|---|---|");
        for r in rows {
            println!(
                "| {} | {:.2} s | {:.0} | {} | {} | {} | {} |",
                r.what,
                r.secs,
                r.mbps,
                r.vs.map(|v| format!("{v:.0} %")).unwrap_or_default(),
                r.daemon_peak.map(mib).unwrap_or_default(),
                r.client_peak.map(mib).unwrap_or_default(),
                r.check
            );
        }
        println!();
    }
    println!("| second job `crew run sshhost -- echo hi` (whole command) | median of 5 |");
    println!("|---|---|");
    println!("| first job idle | {:.0} ms |", idle * 1e3);
    println!(
        "| while `crew run sshhost -- 'yes | head -c 200000000' | (nobody reads)` holds the first | {:.0} ms |",
        blocked * 1e3
    );
    println!(
        "| (the flood's output, read afterwards) | {} MB |",
        n / 1_000_000
    );
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn exe_note(exe: &Path) -> String {
    std::fs::metadata(exe)
        .map(|m| format!("{:.1} MB", m.len() as f64 / 1e6))
        .unwrap_or_default()
}
