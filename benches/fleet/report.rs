//! The one table: absolute times, ratios (how many times faster crew is than each tool), daemon
//! RSS, the handshake probe and the targets marked met / not met.

use std::fmt::Write as _;
use std::time::Duration;

use super::probe::Probe;
use super::tools::Tool;
use super::Config;

#[derive(Debug)]
pub enum ToolResult {
    NotInstalled,
    Failed(String),
    Time(Duration),
}

pub struct SizeResult {
    pub n: usize,
    pub load: String,
    pub first: Duration,
    pub cold: Duration,
    pub warm: Duration,
    pub warm_all: Vec<Duration>,
    pub connected: usize,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// RSS and connected hosts of the last cold-started daemon after its run.
    pub cold_rss_kib: u64,
    pub cold_connected: usize,
    pub tools: Vec<(Tool, ToolResult)>,
    /// (who, command line) as run, the host list shown as `$HOSTS`.
    pub commands: Vec<(String, String)>,
    /// crew runs that did not succeed on every host (the cell is marked `*`).
    pub notes: Vec<String>,
}

impl SizeResult {
    fn tool(&self, t: Tool) -> Option<Duration> {
        self.tools.iter().find_map(|(tool, r)| match r {
            ToolResult::Time(d) if *tool == t => Some(*d),
            _ => None,
        })
    }

    /// Daemon RSS per connected host: (total / hosts, marginal over the 1-host daemon).
    fn rss_per_host(&self, probe: Option<&Probe>) -> Option<(f64, Option<f64>)> {
        if self.connected == 0 {
            return None;
        }
        let c = self.connected as f64;
        let total = self.rss_kib as f64 / c;
        let marginal = probe
            .filter(|_| self.connected > 1)
            .map(|p| (self.rss_kib as f64 - p.rss_kib as f64) / (c - 1.0));
        Some((total, marginal))
    }

    /// RSS per connected host of the cold-started daemon (no upload in its life).
    fn cold_rss_per_host(&self) -> Option<f64> {
        (self.cold_connected > 0).then(|| self.cold_rss_kib as f64 / self.cold_connected as f64)
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.3} s", s)
    } else {
        format!("{:.2} s", s)
    }
}

fn ratio(tool: Duration, crew: Duration) -> String {
    if crew.is_zero() {
        return "-".into();
    }
    format!("{:.1}×", tool.as_secs_f64() / crew.as_secs_f64())
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

type Col<'a> = Result<&'a SizeResult, &'a (usize, String)>;

/// The benchmark's result as one markdown table, with notes below it.
pub fn table(
    cfg: &Config,
    results: &[Result<SizeResult, (usize, String)>],
    probe: Option<&Probe>,
) -> String {
    let cols: Vec<Col> = results.iter().map(|r| r.as_ref()).collect();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&SizeResult) -> String| {
        let cells = cols
            .iter()
            .map(|c| match c {
                Ok(r) => f(r),
                Err((_, e)) => format!("error: {}", e.lines().next().unwrap_or("")),
            })
            .collect();
        rows.push((label.to_string(), cells));
    };
    let f = cfg.fanout;
    row("load average (1 min) at start", &|r| r.load.clone());
    let star = |r: &SizeResult, what: &str| {
        if r.notes.iter().any(|n| n.starts_with(what)) {
            " * (some hosts failed, see below)"
        } else {
            ""
        }
    };
    row("crew first run (no daemon, agent upload)", &|r| {
        format!("{}{}", secs(r.first), star(r, "first"))
    });
    row(
        &format!(
            "crew cold run (no daemon, agents installed; median of {})",
            cfg.reps
        ),
        &|r| format!("{}{}", secs(r.cold), star(r, "cold")),
    );
    row(
        &format!(
            "crew warm run (daemon + agents up; median of {})",
            cfg.warm_reps
        ),
        &|r| {
            let (lo, hi) = (r.warm_all.iter().min(), r.warm_all.iter().max());
            match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    let (w, lo, hi) = (secs(r.warm), secs(*lo), secs(*hi));
                    format!("{w} (min {lo}, max {hi}){}", star(r, "warm"))
                }
                _ => secs(r.warm),
            }
        },
    );
    for tool in super::tools::ALL {
        let label = format!(
            "{} (fanout {f}; median of {}) — ×slower than crew cold / warm",
            tool.name(),
            cfg.reps
        );
        row(
            &label,
            &|r| match r.tools.iter().find(|(t, _)| *t == tool).map(|(_, x)| x) {
                Some(ToolResult::Time(d)) => format!(
                    "{} — {} / {}",
                    secs(*d),
                    ratio(*d, r.cold),
                    ratio(*d, r.warm)
                ),
                Some(ToolResult::Failed(e)) => {
                    format!("failed: {}", e.lines().next().unwrap_or(""))
                }
                Some(ToolResult::NotInstalled) | None => {
                    format!("not installed ({})", tool.install_hint())
                }
            },
        );
    }
    row("daemon RSS after warm runs (peak), hosts connected", &|r| {
        format!(
            "{:.1} MiB ({:.1} MiB), {}/{}",
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            r.connected,
            r.n
        )
    });
    row(
        "daemon RSS per connected host: total/hosts (marginal over 1-host daemon)",
        &|r| match r.rss_per_host(probe) {
            Some((t, Some(m))) => format!("{t:.0} KiB ({m:.0} KiB)"),
            Some((t, None)) => format!("{t:.0} KiB"),
            None => "no host connected".into(),
        },
    );
    row(
        "daemon RSS per connected host after a cold start (agents installed, no upload)",
        &|r| match r.cold_rss_per_host() {
            Some(t) => format!(
                "{t:.0} KiB ({:.1} MiB total)",
                r.cold_rss_kib as f64 / 1024.0
            ),
            None => "no host connected".into(),
        },
    );
    row("target: warm ≤ 0.5 s (stated for N = 500)", &|r| {
        format!(
            "{} ({})",
            mark(r.warm <= Duration::from_millis(500)),
            secs(r.warm)
        )
    });
    row(
        "target: warm ≥ 10× faster than bssh",
        &|r| match r.tool(Tool::Bssh) {
            Some(b) => format!(
                "{} ({})",
                mark(b.as_secs_f64() >= 10.0 * r.warm.as_secs_f64()),
                ratio(b, r.warm)
            ),
            None => "bssh not measured".into(),
        },
    );
    row(
        "target: cold no slower than bssh",
        &|r| match r.tool(Tool::Bssh) {
            Some(b) => format!("{} ({})", mark(r.cold <= b), ratio(b, r.cold)),
            None => "bssh not measured".into(),
        },
    );
    row(
        "target (indicative): cold ≈ 4× faster than pdsh",
        &|r| match r.tool(Tool::Pdsh) {
            Some(p) => format!(
                "{} ({})",
                mark(p.as_secs_f64() >= 4.0 * r.cold.as_secs_f64()),
                ratio(p, r.cold)
            ),
            None => "pdsh not measured".into(),
        },
    );
    let kb = |t: f64| {
        format!(
            "{} ({t:.0} KiB = {:.0} KB)",
            mark(t * 1.024 <= 200.0),
            t * 1.024
        )
    };
    row(
        "target: daemon RSS ≤ 200 KB per connected host (total/hosts), after the first run's uploads",
        &|r| match r.rss_per_host(probe) {
            Some((t, _)) => kb(t),
            None => "no host connected".into(),
        },
    );
    row(
        "target: daemon RSS ≤ 200 KB per connected host (total/hosts), cold-started daemon",
        &|r| match r.cold_rss_per_host() {
            Some(t) => kb(t),
            None => "no host connected".into(),
        },
    );

    let mut out = String::new();
    let head: Vec<String> = cols
        .iter()
        .map(|c| match c {
            Ok(r) => format!("N = {}", r.n),
            Err((n, _)) => format!("N = {n}"),
        })
        .collect();
    let _ = writeln!(out, "| | {} |", head.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(head.len()));
    for (label, cells) in &rows {
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    if let Some(p) = probe {
        let _ = writeln!(
            out,
            "| key exchange russh negotiated (1 host) | {} |",
            p.negotiated
        );
        let hs = p
            .handshake
            .map(secs)
            .unwrap_or_else(|| "? (no timestamps)".into());
        let ssh = p.openssh.map(secs).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "| handshake cost, 1 host: TCP+kex+auth in the daemon / crew cold run / crew warm run / OpenSSH `ssh host true` | {hs} / {} / {} / {ssh} |",
            secs(p.cold),
            secs(p.warm)
        );
        let kex: Vec<String> = p
            .kex_cost
            .iter()
            .map(|(k, c)| match c {
                Some(c) => format!("{k} {:.1} ms", c.as_secs_f64() * 1000.0),
                None => format!("{k} ?"),
            })
            .collect();
        let _ = writeln!(
            out,
            "| sshd CPU per connection (OpenSSH client, `true`), by key exchange | {} |",
            kex.join(" / ")
        );
    }
    let _ = writeln!(out, "\nAgent uploaded by the first run: {}", cfg.agent_note);
    let _ = writeln!(out);
    for c in &cols {
        match c {
            Ok(r) => {
                for n in &r.notes {
                    let _ = writeln!(out, "N = {}: crew {n}\n", r.n);
                }
                for (tool, res) in &r.tools {
                    if let ToolResult::Failed(e) = res {
                        let _ = writeln!(out, "N = {}: {} failed:\n{e}\n", r.n, tool.name());
                    }
                }
            }
            Err((n, e)) => {
                let _ = writeln!(out, "N = {n} failed:\n{e}\n");
            }
        }
    }
    if let Some(Ok(r)) = cols.iter().rev().find(|c| c.is_ok()) {
        let _ = writeln!(
            out,
            "Command lines (N = {}; $HOSTS = the {} addresses, comma-separated):",
            r.n, r.n
        );
        for (who, line) in &r.commands {
            let _ = writeln!(out, "  {who}: {line}");
        }
    }
    out
}
