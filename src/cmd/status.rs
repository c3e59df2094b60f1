//! `crew status` (the daemon and its host pool as a table) and `crew daemon stop`.

use std::fmt::Write as _;

use super::render::sanitize;
use crate::client::Client;
use crate::proto::daemon::{Event, Request, StatusReport};

pub fn run() -> anyhow::Result<i32> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let Some(client) = Client::connect().await? else {
            println!("no daemon running (one starts on demand with `crew run` or the console)");
            return Ok(1);
        };
        let mut rx = client.request(Request::Status).await?;
        match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Event::Status(r))) => {
                print!("{}", table(&r));
                print!("{}", sites(&r));
                Ok(0)
            }
            Ok(other) => anyhow::bail!("the daemon answered Status with {other:?}"),
            Err(_) => anyhow::bail!("the daemon did not answer Status within 10s"),
        }
    })
}

pub fn stop() -> anyhow::Result<i32> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let Some(client) = Client::connect().await? else {
            println!("no daemon running");
            return Ok(0);
        };
        let pid = client.daemon_pid;
        if client.remote {
            client.stop_and_wait(&crate::paths::socket()).await?;
            println!("daemon {pid} asked to stop");
            return Ok(0);
        }
        client.stop_and_wait(&crate::paths::socket()).await?;
        println!("daemon {pid} stopped");
        Ok(0)
    })
}

fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The status report as text: a header, then one row per host.
pub fn table(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "daemon pid {}  build {}  up {}  rss {} KiB  runs {} active / {} total  hosts {}",
        r.pid,
        r.build,
        human_secs(r.uptime_s),
        r.rss_kb,
        r.runs_active,
        r.runs_total,
        r.hosts.len()
    );
    if let Some(api) = &r.api {
        let _ = writeln!(
            out,
            "api {}  certificate sha256 {}",
            api.url, api.fingerprint
        );
    }
    if r.hosts.is_empty() {
        return out;
    }
    let rows: Vec<[String; 6]> = r
        .hosts
        .iter()
        .map(|h| {
            [
                sanitize(h.name.as_bytes()),
                h.state.clone(),
                h.jobs.to_string(),
                match (h.agentless, h.agent_pid) {
                    (true, _) => "agentless".to_string(),
                    (false, Some(p)) => p.to_string(),
                    (false, None) => "-".to_string(),
                },
                if h.connected_for_s > 0 || h.agent_pid.is_some() {
                    human_secs(h.connected_for_s)
                } else {
                    "-".to_string()
                },
                sanitize(h.reason.as_deref().unwrap_or("").as_bytes()),
            ]
        })
        .collect();
    let head = ["HOST", "STATE", "JOBS", "AGENT", "UP", "REASON"];
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let fmt_row = |cells: [&str; 6]| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 5 {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<width$}  ", width = w[i]);
            }
        }
        line.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", fmt_row(head));
    for row in &rows {
        let cells = [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]].map(|s| s.as_str());
        let _ = writeln!(out, "{}", fmt_row(cells));
    }
    out
}

/// The daemons on the NATS bus, by site: each one's state, jobs and hosts (empty off the bus).
pub fn sites(r: &StatusReport) -> String {
    let mut out = String::new();
    if r.daemons.is_empty() {
        return out;
    }
    let mut ds: Vec<_> = r.daemons.iter().collect();
    ds.sort_by(|a, b| (&a.0.site, &a.0.daemon).cmp(&(&b.0.site, &b.0.daemon)));
    let _ = writeln!(
        out,
        "\nSITE      DAEMON                            STATE  HEARD  PID      JOBS  HOSTS"
    );
    for (p, ago) in ds {
        let gone = *ago >= crate::daemon::bus::DEAD_AFTER.as_millis() as u64;
        let ready: Vec<&str> = p
            .hosts
            .iter()
            .filter(|(_, s)| s == "ready" || s == "busy")
            .map(|(n, _)| n.as_str())
            .collect();
        let all: Vec<&str> = p.hosts.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<9} {:<33} {:<6} {:<6} {:<8} {:<5} {}/{} ready {}",
            sanitize(p.site.as_deref().unwrap_or("(router)").as_bytes()),
            sanitize(p.daemon.as_bytes()),
            if gone { "gone" } else { "up" },
            format!("{:.1}s", *ago as f64 / 1000.0),
            p.pid,
            p.jobs.len(),
            ready.len(),
            all.len(),
            sanitize(crate::nodeset::fold(&all).as_bytes()),
        );
    }
    out
}
