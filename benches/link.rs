//! Agent link benchmark (not a test): one job's output throughput from a real `crew agent`
//! through `AgentLink` (the agent→daemon path alone, no client), against reading the same
//! command's stdout straight from a pipe; and the latency of a second job on the same link
//! while the first job's consumer reads nothing (per-job flow control).
//!
//! `cargo bench --bench link` (`CREW_BENCH_MB` megabytes per throughput run, default 300;
//! `CREW_BENCH_ROUNDS`, default 3, median shown). Prints markdown tables.
//!
//! Results on the shared 2-core dev machine (noisy; bench profile built with LTO off to save
//! build time; 300 MB, median of 3):
//!
//! | 300 MB of output | pipe, no crew | link, window 256 KiB | 1 MiB (default) | 4 MiB |
//! |---|---|---|---|---|
//! | 100-byte lines (`yes`) | 542 MB/s | 432 MB/s | 406 MB/s | 573 MB/s |
//! | `seq` lines | 568 MB/s | 339 MB/s | 371 MB/s | 367 MB/s |
//!
//! | second job (`echo hi`) start → exit | before (one reader, per-job channel of 16) | after (per-job credit) |
//! |---|---|---|
//! | first job idle | | 2.5 ms |
//! | first job flooding, its consumer reading nothing | never while the first is unread (tests/link.rs waited 30 s) | 4.0 ms |
//! | agent VmRSS meanwhile | | 8.6 MiB (release), 13.8 MiB (debug, 3 M lines held back) |

use std::process::Stdio;
use std::time::{Duration, Instant};

use crew::daemon::link::{AgentLink, LinkOptions};
use crew::proto::agent::{AgentMsg, Run};
use tokio::io::AsyncReadExt;

fn run(command: &str) -> Run {
    Run {
        command: command.into(),
        env: Vec::new(),
        timeout_ms: None,
        stdin: false,
    }
}

async fn agent(window: u64) -> anyhow::Result<(AgentLink, tokio::process::Child)> {
    let exe = env!("CARGO_BIN_EXE_crew");
    let mut child = tokio::process::Command::new(exe)
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let r = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let w = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    let opts = LinkOptions {
        job_window: window,
        ..LinkOptions::default()
    };
    let (link, _) = AgentLink::connect(r, w, opts).await?;
    Ok((link, child))
}

/// Bytes and seconds of one job's whole output through the link.
async fn through_link(link: &AgentLink, cmd: &str) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let mut job = link.start(run(cmd)).await?;
    let mut n = 0u64;
    while let Some(m) = job.events.recv().await {
        if let AgentMsg::Output { data, .. } = m {
            n += data.len() as u64;
        }
    }
    Ok((n, t.elapsed().as_secs_f64()))
}

/// The same command's stdout read straight from a pipe.
async fn through_pipe(cmd: &str) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let mut child = tokio::process::Command::new("bash")
        .args(["-c", cmd])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = out.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    child.wait().await?;
    Ok((n, t.elapsed().as_secs_f64()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mb: u64 = std::env::var("CREW_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rounds: usize = std::env::var("CREW_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let long = format!("yes {} | head -c {}000000", "x".repeat(99), mb);
        let short = format!("seq 1 100000000 | head -c {}000000", mb);
        println!("| {mb} MB of output | MB/s (median of {rounds}) |");
        println!("|---|---|");
        for (what, cmd) in [("100-byte lines", &long), ("seq lines", &short)] {
            let mut pipe = Vec::new();
            for _ in 0..rounds {
                let (n, s) = through_pipe(cmd).await?;
                pipe.push(n as f64 / 1e6 / s);
            }
            println!("| {what}: pipe, no crew | {:.0} |", median(pipe));
            for window in [256 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
                let (link, _agent) = agent(window).await?;
                let mut v = Vec::new();
                for _ in 0..rounds {
                    let (n, s) = through_link(&link, cmd).await?;
                    v.push(n as f64 / 1e6 / s);
                }
                println!(
                    "| {what}: agent link, window {} KiB | {:.0} |",
                    window / 1024,
                    median(v)
                );
            }
        }

        println!();
        println!("| second job on a link (`echo hi`, start → exit) | ms (median of {rounds}) |");
        println!("|---|---|");
        let (link, agent) = agent(crew::daemon::link::JOB_WINDOW).await?;
        let pid = agent.id().unwrap_or(0);
        let mut idle = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            through_link(&link, "echo hi").await?;
            idle.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("| first job idle | {:.1} |", median(idle));
        let mut stalled = Vec::new();
        let mut rss = 0;
        for _ in 0..rounds {
            let flood = link.start(run("yes")).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = Instant::now();
            through_link(&link, "echo hi").await?;
            stalled.push(t.elapsed().as_secs_f64() * 1e3);
            rss = rss.max(rss_kb(pid));
            flood.kill(9).await?;
            drop(flood);
        }
        println!(
            "| first job flooding (`yes`), its consumer reading nothing | {:.1} |",
            median(stalled)
        );
        println!("| agent VmRSS meanwhile | {rss} kB |");
        Ok(())
    })
}
