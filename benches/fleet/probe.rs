//! One host, fresh daemon: which key exchange russh negotiates (from the daemon's debug log)
//! and what a handshake costs (TCP + kex + auth as the daemon's log timestamps show it, a
//! cold 1-host run vs a warm one, and OpenSSH's `ssh host true` for reference), and what each
//! key exchange costs the server: sshd CPU per connection, curve25519 against NIST P-256.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use crew::model::Host;

use super::crew_cli::Crew;
use super::exec;
use super::support::{find_tool, sshd::SshdFleet};

const WARM_RUNS: usize = 5;

pub struct Probe {
    /// `kex=… hostkey=… cipher=… mac=…` as the daemon logged it.
    pub negotiated: String,
    /// From "run started" to "connected to" in the daemon log (TCP, kex, host key check, auth).
    pub handshake: Option<Duration>,
    /// `crew run` on 1 host with no daemon (spawn + handshake + agent start; agent installed).
    pub cold: Duration,
    pub warm: Duration,
    /// `ssh host true` (OpenSSH client: handshake, auth, exec), median of 3.
    pub openssh: Option<Duration>,
    /// Daemon RSS with one host connected (the per-host baseline).
    pub rss_kib: u64,
    /// (kex, sshd CPU per `ssh host true` connection) for each key exchange measured.
    pub kex_cost: Vec<(&'static str, Option<Duration>)>,
}

/// Key exchanges whose server-side cost is measured (crew prefers the second; russh's
/// default, and bssh's, is the first).
const KEX_MEASURED: [&str; 2] = ["curve25519-sha256", "ecdh-sha2-nistp256"];
/// Connections per key exchange.
const KEX_CONNECTS: usize = 30;

/// CPU time (user + system) of the children `pid` has reaped, from /proc/<pid>/stat.
fn reaped_cpu(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is index 0, so cutime (field 16) is at 13, cstime at 14.
    let ticks: u64 = f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn fleet_reaped(fleet: &SshdFleet) -> Option<Duration> {
    fleet.listener_pids().into_iter().map(reaped_cpu).sum()
}

/// sshd CPU per connection (handshake, auth, `true` in the login shell) for each of
/// [`KEX_MEASURED`], from OpenSSH's client forcing the algorithm: the server side is what
/// a fleet pays, whoever the client is.
fn kex_cost(
    fleet: &SshdFleet,
    host: &Host,
    scratch: &Path,
) -> Vec<(&'static str, Option<Duration>)> {
    KEX_MEASURED
        .iter()
        .map(|kex| {
            let before = fleet_reaped(fleet);
            let mut ok = 0;
            for _ in 0..KEX_CONNECTS {
                if openssh_once(host, scratch, &[&format!("KexAlgorithms={kex}")]).is_some() {
                    ok += 1;
                }
            }
            // The last connection's sshd may still be exiting: give the listener a moment to
            // reap it (bounded).
            std::thread::sleep(Duration::from_millis(300));
            let cost = match (before, fleet_reaped(fleet)) {
                (Some(a), Some(b)) if ok == KEX_CONNECTS && b >= a => {
                    Some((b - a) / KEX_CONNECTS as u32)
                }
                _ => None,
            };
            (*kex, cost)
        })
        .collect()
}

/// Seconds since midnight of a tracing timestamp `2026-01-02T03:04:05.678901Z`.
fn secs_of_day(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split('T').nth(1)?;
    let time = time.trim_end_matches('Z');
    let time = time.split('+').next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The negotiated algorithms and the handshake time of the first run in a daemon log.
fn from_log(log: &str) -> (String, Option<Duration>) {
    let negotiated = log
        .lines()
        .find_map(|l| {
            l.split_once("negotiated ")
                .map(|(_, r)| r.trim().to_string())
        })
        .unwrap_or_else(|| "(not in the daemon log)".into());
    let started = log.lines().find(|l| l.contains("run started"));
    let connected = log.lines().find(|l| l.contains("connected to"));
    let handshake = match (
        started.and_then(secs_of_day),
        connected.and_then(secs_of_day),
    ) {
        (Some(a), Some(b)) if b >= a => Some(Duration::from_secs_f64(b - a)),
        _ => None,
    };
    (negotiated, handshake)
}

/// One `ssh host true` with OpenSSH, strict host key checking, extra `-o` options.
fn openssh_once(host: &Host, scratch: &Path, options: &[&str]) -> Option<Duration> {
    let ssh = find_tool("ssh")?;
    let mut c = std::process::Command::new(&ssh);
    c.args(["-F", "/dev/null", "-p", &host.port.to_string(), "-i"])
        .arg(host.identity_files.first()?)
        .args(["-o", "IdentitiesOnly=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            host.known_hosts.first()?.display()
        ))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]);
    for o in options {
        c.args(["-o", o]);
    }
    c.arg("-l")
        .arg(host.user.clone().unwrap_or_else(crew::paths::whoami))
        .args([host.address.as_str(), "true"]);
    let t = exec::timed(&mut c, Duration::from_secs(30), scratch).ok()?;
    if !t.ok() {
        eprintln!("  openssh reference failed: {}", t.tail());
        return None;
    }
    Some(t.elapsed)
}

fn openssh(host: &Host, scratch: &Path) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(openssh_once(host, scratch, &[])?);
    }
    Some(exec::median(times))
}

/// Probe `host` of `fleet` (its agent is already installed by the fleet's runs).
pub fn run(exe: &Path, agent: &Path, fleet: &SshdFleet, host: &Host) -> anyhow::Result<Probe> {
    let hosts = std::slice::from_ref(host);
    let mut crew = Crew::new(exe, agent, hosts, "info,crew::daemon::ssh=debug")?;
    let (cold, fail) = crew.run_true(1).context("1-host cold run")?;
    if let Some(f) = fail {
        anyhow::bail!("1-host cold run: {f}");
    }
    let mut warm = Vec::new();
    for _ in 0..WARM_RUNS {
        warm.push(crew.run_true(1).context("1-host warm run")?.0);
    }
    let st = crew.status().context("crew status (1 host)")?;
    let rss_kib = exec::rss_kib(st.pid).map(|r| r.0).unwrap_or(st.rss_kib);
    crew.stop().context("crew daemon stop (1 host)")?;
    let log = fs::read_to_string(crew.daemon_log()).unwrap_or_default();
    let (negotiated, handshake) = from_log(&log);
    let openssh = openssh(host, &crew.home().join("scratch"));
    let kex_cost = kex_cost(fleet, host, &crew.home().join("scratch"));
    Ok(Probe {
        negotiated,
        handshake,
        cold,
        warm: exec::median(warm),
        openssh,
        rss_kib,
        kex_cost,
    })
}
