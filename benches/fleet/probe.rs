//! One host, fresh daemon: which key exchange russh negotiates (from the daemon's debug log)
//! and what a handshake costs (TCP + kex + auth as the daemon's log timestamps show it, a
//! cold 1-host run vs a warm one, and OpenSSH's `ssh host true` for reference).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use crew::inventory::Host;

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

fn openssh(host: &Host, scratch: &Path) -> Option<Duration> {
    let ssh = find_tool("ssh")?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut c = std::process::Command::new(&ssh);
        c.args(["-F", "/dev/null", "-p", &host.port.to_string(), "-i"])
            .arg(host.identity_files.first()?)
            .args(["-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                host.known_hosts.first()?.display()
            ))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-l",
            ])
            .arg(host.user.clone().unwrap_or_else(crew::paths::whoami))
            .args([host.address.as_str(), "true"]);
        let t = exec::timed(&mut c, Duration::from_secs(30), scratch).ok()?;
        if !t.ok() {
            eprintln!("  openssh reference failed: {}", t.tail());
            return None;
        }
        times.push(t.elapsed);
    }
    Some(exec::median(times))
}

/// Probe `host` of `fleet` (its agent is already installed by the fleet's runs).
pub fn run(exe: &Path, agent: &Path, fleet: &SshdFleet, host: &Host) -> anyhow::Result<Probe> {
    let _ = fleet; // the fleet must outlive the probe
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
    Ok(Probe {
        negotiated,
        handshake,
        cold,
        warm: exec::median(warm),
        openssh,
        rss_kib,
    })
}
