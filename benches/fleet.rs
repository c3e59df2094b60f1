//! Fleet benchmark (not a test): crew against pdsh, clush and bssh on a real OpenSSH fleet of
//! N loopback hosts (127.x.y.z, one sshd per 16 addresses).
//!
//! `cargo bench --bench fleet` runs N = 100 and 500. Sizes: positional arguments
//! (`cargo bench --bench fleet -- 20 50`) or `CREW_BENCH_N=20,50`. Knobs (env):
//! `CREW_BENCH_FANOUT` (64: every tool's fanout, crew's `--fanout`), `CREW_BENCH_WARM` (5 warm
//! runs, median), `CREW_BENCH_REPS` (1: cold runs and tool runs, median). See benches/README.md.
//!
//! For each N: crew first run (no daemon, agent not installed: upload), warm runs (daemon and
//! agents up), daemon RSS, cold run (`crew daemon stop` first; agents installed), then each
//! tool; once, a 1-host probe for the key exchange russh negotiates and what a handshake costs.
//! Everything is stopped at the end, also on error: daemons by `crew::Crew`'s drop (before
//! the fleet's), sshd by `SshdFleet`'s drop.

#[path = "fleet/crew.rs"]
mod crew_cli;
#[path = "fleet/exec.rs"]
mod exec;
#[path = "fleet/probe.rs"]
mod probe;
#[path = "fleet/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "fleet/tools.rs"]
mod tools;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crew_cli::Crew;
use report::{SizeResult, ToolResult};
use support::sshd::SshdFleet;

/// Limit on one comparison-tool run (each opens N fresh SSH connections).
const TOOL_LIMIT: Duration = Duration::from_secs(600);

pub struct Config {
    pub sizes: Vec<usize>,
    pub fanout: usize,
    pub warm_reps: usize,
    pub reps: usize,
    /// Which agent executable is uploaded, and its size.
    pub agent_note: String,
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

impl Config {
    fn from_env_and_args() -> Config {
        // cargo passes `--bench`; numbers are sizes.
        let mut sizes: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if sizes.is_empty() {
            sizes = std::env::var("CREW_BENCH_N")
                .unwrap_or_default()
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
        }
        sizes.retain(|&n| (1..=4000).contains(&n));
        if sizes.is_empty() {
            sizes = vec![100, 500];
        }
        Config {
            sizes,
            fanout: env_num("CREW_BENCH_FANOUT", 64),
            warm_reps: env_num("CREW_BENCH_WARM", 5).min(50),
            reps: env_num("CREW_BENCH_REPS", 1).min(20),
            agent_note: String::new(),
        }
    }
}

fn main() {
    if !support::require_tool("sshd") {
        return;
    }
    let mut cfg = Config::from_env_and_args();
    let exe = Path::new(env!("CARGO_BIN_EXE_crew"));
    let agent_dir = match tempfile::Builder::new()
        .prefix("crew-bench-agent-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fleet bench: temp dir: {e}");
            std::process::exit(1);
        }
    };
    let agent = agent_exe(exe, agent_dir.path());
    let size = std::fs::metadata(&agent).map(|m| m.len()).unwrap_or(0);
    cfg.agent_note = format!(
        "{} ({:.1} MB{})",
        agent.display(),
        size as f64 / 1e6,
        if agent == exe {
            ", crew as built"
        } else {
            ", crew stripped of debug info"
        }
    );
    let (soft, hard) = exec::raise_nofile();
    eprintln!(
        "fleet bench: sizes {:?}, fanout {}, warm runs {}, reps {}, open files {soft}/{hard}, crew {}",
        cfg.sizes,
        cfg.fanout,
        cfg.warm_reps,
        cfg.reps,
        exe.display()
    );
    eprintln!("agent uploaded: {}", cfg.agent_note);
    let mut results = Vec::new();
    let mut probe = None;
    for &n in &cfg.sizes {
        eprintln!("== N = {n} (load {})", exec::loadavg());
        let r = catch_unwind(AssertUnwindSafe(|| {
            bench_size(&cfg, n, exe, &agent, probe.is_none())
        }));
        let r = match r {
            Ok(r) => r,
            Err(p) => Err(anyhow::anyhow!("panicked: {}", panic_text(&p))),
        };
        match r {
            Ok((res, p)) => {
                results.push(Ok(res));
                probe = probe.or(p);
            }
            Err(e) => {
                eprintln!("N = {n} failed: {e:#}");
                results.push(Err((n, format!("{e:#}"))));
            }
        }
    }
    println!("{}", report::table(&cfg, &results, probe.as_ref()));
    let failed = results.iter().any(Result::is_err);
    drop(agent_dir);
    if failed {
        std::process::exit(1);
    }
}

/// The executable the daemon uploads as the agent: by default a copy of `crew` stripped of
/// its debug info (the release profile keeps line tables, which makes the file ~6× larger
/// and the first run an upload benchmark); `CREW_BENCH_AGENT=asbuilt` uploads `crew` itself.
fn agent_exe(exe: &Path, dir: &Path) -> std::path::PathBuf {
    if std::env::var("CREW_BENCH_AGENT").is_ok_and(|v| v == "asbuilt") {
        return exe.to_path_buf();
    }
    let Some(strip) = support::find_tool("strip") else {
        eprintln!("fleet bench: no `strip` (binutils): uploading crew as built");
        return exe.to_path_buf();
    };
    let out = dir.join("crew");
    let ok = std::process::Command::new(strip)
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(exe)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        out
    } else {
        eprintln!("fleet bench: strip failed: uploading crew as built");
        exe.to_path_buf()
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

/// Everything measured on one fleet of `n` hosts (and the 1-host probe when `with_probe`).
fn bench_size(
    cfg: &Config,
    n: usize,
    exe: &Path,
    agent: &Path,
    with_probe: bool,
) -> anyhow::Result<(SizeResult, Option<probe::Probe>)> {
    let t0 = std::time::Instant::now();
    let fleet = SshdFleet::start(n);
    let hosts = fleet.hosts();
    eprintln!(
        "  fleet of {n} up in {:.1?} (port {})",
        t0.elapsed(),
        fleet.port
    );
    let load = exec::loadavg();

    // Dropped before `fleet` (declared after it): the daemon goes first.
    let mut crew = Crew::new(exe, agent, &hosts, "info")?;
    eprintln!("  crew: {}", exec::shell_line(&crew.run_cmd(cfg.fanout)));
    let mut notes = Vec::new();
    let mut note = |what: &str, r: (Duration, Option<String>)| {
        if let Some(n) = r.1 {
            eprintln!("  {what}: {n}");
            notes.push(format!("{what}: {n}"));
        }
        r.0
    };
    let first = note(
        "first run",
        crew.run_true(cfg.fanout).context("crew first run")?,
    );
    eprintln!("  crew first run {first:.2?}");
    // Every host of this fleet shares this machine's disk: the first run wrote N copies of
    // the agent, and their writeback would otherwise land in the warm runs (a real fleet
    // writes each copy on its own host). Flush it first.
    let t_sync = std::time::Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    eprintln!("  sync after the uploads {:.1?}", t_sync.elapsed());
    let mut warm = Vec::new();
    for _ in 0..cfg.warm_reps {
        warm.push(note(
            "warm run",
            crew.run_true(cfg.fanout).context("crew warm run")?,
        ));
    }
    eprintln!("  crew warm runs {warm:.3?}");
    let pause = env_num("CREW_BENCH_PAUSE", 0).min(3600);
    if pause > 0 {
        // For profiling by hand: the fleet and the warm daemon stay up meanwhile.
        eprintln!(
            "  pausing {pause} s (CREW_BENCH_PAUSE); try: {}",
            exec::shell_line(&crew.run_cmd(cfg.fanout))
        );
        std::thread::sleep(Duration::from_secs(pause as u64));
    }
    let st = crew.status().context("crew status after warm runs")?;
    let (rss_kib, hwm_kib) = exec::rss_kib(st.pid).unwrap_or((st.rss_kib, st.rss_kib));
    eprintln!(
        "  daemon {} rss {rss_kib} KiB (peak {hwm_kib}), {}/{} hosts connected",
        st.pid, st.connected, st.hosts
    );
    crew.stop().context("crew daemon stop after warm runs")?;
    let mut cold = Vec::new();
    let mut cold_rss = (0, 0);
    for _ in 0..cfg.reps {
        cold.push(note(
            "cold run",
            crew.run_true(cfg.fanout).context("crew cold run")?,
        ));
        // A daemon that started with the agents installed (an operator's usual daemon): its
        // RSS after the run, beside the first daemon's, whose uploads left russh's per-session
        // write buffers at their high-water mark.
        let st = crew.status().context("crew status after cold run")?;
        let rss = exec::rss_kib(st.pid).map_or(st.rss_kib, |r| r.0);
        cold_rss = (rss, st.connected);
        crew.stop().context("crew daemon stop after cold run")?;
    }
    eprintln!("  crew cold runs {cold:.2?}");

    let target = tools::Target::new(&hosts, crew.home())?;
    let mut commands = vec![(
        "crew".to_string(),
        exec::shell_line(&crew.run_cmd(cfg.fanout)),
    )];
    let mut tool_results = Vec::new();
    for tool in tools::ALL {
        let r = run_tool(cfg, &target, tool, crew.home());
        eprintln!("  {}: {r:?}", tool.name());
        if let Some(exe) = tool.find() {
            let line = exec::shell_line(&target.command(tool, &exe, cfg.fanout));
            commands.push((tool.name().to_string(), target.redact(&line)));
        }
        tool_results.push((tool, r));
    }

    let probe = if with_probe {
        match probe::run(exe, agent, &fleet, &hosts[0]) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("  handshake probe failed: {e:#}");
                None
            }
        }
    } else {
        None
    };
    drop(crew);
    let res = SizeResult {
        n,
        load,
        first,
        cold: exec::median(cold),
        warm: exec::median(warm.clone()),
        warm_all: warm,
        connected: st.connected,
        rss_kib,
        hwm_kib,
        cold_rss_kib: cold_rss.0,
        cold_connected: cold_rss.1,
        tools: tool_results,
        commands,
        notes,
    };
    Ok((res, probe))
}

fn run_tool(cfg: &Config, target: &tools::Target, tool: tools::Tool, scratch: &Path) -> ToolResult {
    let Some(exe) = tool.find() else {
        return ToolResult::NotInstalled;
    };
    let mut times = Vec::new();
    for _ in 0..cfg.reps {
        let mut cmd = target.command(tool, &exe, cfg.fanout);
        let line = exec::shell_line(&cmd);
        let t = exec::timed(&mut cmd, TOOL_LIMIT, scratch).and_then(|t| t.require_ok(tool.name()));
        match t {
            Ok(t) => times.push(t.elapsed),
            Err(e) => {
                let line = target.redact(&line);
                return ToolResult::Failed(format!("{e:#}\ncommand: {line}"));
            }
        }
    }
    ToolResult::Time(exec::median(times))
}
