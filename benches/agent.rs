//! Agent benchmark (not a test): what one `crew agent` costs in CPU per job and per start.
//!
//! `cargo bench --bench agent [-- N]` (or `CREW_BENCH_JOBS=N`, default 2000; `CREW_BENCH_ROUNDS`
//! rounds of N jobs, each on a fresh agent, default 3, the median round shown) copies the built
//! `crew` into a temp dir as `agent-<build hash>` (as installed on hosts, so the agent does not
//! hash itself at start), spawns it over pipes, and after its `Hello` sends N `Run{"true"}`
//! jobs with up to 64 in flight, waiting for every `Exit`. It prints a markdown table:
//! wall time, the agent's own CPU per job (utime+stime of /proc/<pid>/stat), its children's CPU
//! per job (cutime+cstime: the `bash -c true` shells), the agent's RSS after the jobs, and the
//! median over 20 agent starts of spawn→`Hello` wall time and the CPU of a whole agent life
//! (start, `Hello`, stdin EOF, exit; from wait4's rusage). `CREW_BENCH_EXE=path` measures
//! another crew executable (e.g. an older build) instead of the one cargo built.
//!
//! Before/after on the shared 2-core dev machine (N = 2000 × 3 rounds; noisy: other builds
//! ran meanwhile; /tmp is ext4 mounted with `discard`):
//!
//! | build | agent CPU / job | children CPU / job | jobs/s | RSS | start → Hello | start CPU |
//! |---|---|---|---|---|---|---|
//! | before (fork + pre_exec, tempdir in /tmp, blocking-pool stdio, spawn_blocking reap) | 910–1050 µs | 1745–2050 µs | 290–440 | 10.5 MiB | 1.6–1.8 ms | 2.0–2.15 ms |
//! | after (clone VM+VFORK, per-agent job dir, reactor stdio, inline reap, lean start) | 285–295 µs | 1175–1315 µs | 890–980 | 8.6 MiB | 1.5–1.65 ms | 1.6–1.85 ms |
//! | before, TMPDIR=/dev/shm | 600 µs | 1560 µs | 440 | 10.5 MiB | | |
//! | after, TMPDIR=/dev/shm | 95 µs | 1160 µs | 765 | 8.2 MiB | | |
//!
//! What is left per job on ext4 is mostly the kernel's mkdir/rmdir of the job's temp dir
//! (inode allocation, block discard): the same run with TMPDIR on tmpfs costs a third.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crew::proto::agent::{decode, AgentMsg, Decoded, Run, SYNC_MARKER};
use crew::proto::frame::{read_frame, write_frame};
use std::os::fd::OwnedFd;
use std::process::{Child, Command};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::unix::pipe;

const IN_FLIGHT: u64 = 64;
const STARTS: usize = 20;
const WAIT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let jobs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("CREW_BENCH_JOBS").ok())
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let rounds: usize = std::env::var("CREW_BENCH_ROUNDS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let exe = install_agent(dir.path())?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for _ in 0..rounds {
            rows.push(run_jobs(&exe, jobs).await?);
        }
        rows.sort_by(|a, b| a.agent_us.total_cmp(&b.agent_us));
        let (min, max) = (rows[0].agent_us, rows[rows.len() - 1].agent_us);
        let jobs_row = &rows[rows.len() / 2];
        let start_row = starts(&exe).await?;
        println!("| agent ({}) | value |", exe.display());
        println!("|---|---|");
        println!(
            "| jobs (`true`, {IN_FLIGHT} in flight) | {jobs} × {rounds} rounds, median round |"
        );
        println!("| wall | {:.3} s |", jobs_row.wall.as_secs_f64());
        println!(
            "| jobs / s | {:.0} |",
            jobs as f64 / jobs_row.wall.as_secs_f64()
        );
        println!(
            "| agent CPU per job | {:.0} µs (rounds: {min:.0}–{max:.0}) |",
            jobs_row.agent_us
        );
        println!("| children CPU per job | {:.0} µs |", jobs_row.children_us);
        println!("| agent RSS after jobs | {} KiB |", jobs_row.rss_kb);
        println!(
            "| agent start: spawn → Hello (median of {STARTS}) | {:.2} ms |",
            start_row.0.as_secs_f64() * 1e3
        );
        println!(
            "| agent start: CPU of a whole agent life (median of {STARTS}) | {:.2} ms |",
            start_row.1.as_secs_f64() * 1e3
        );
        anyhow::Ok(())
    })
}

/// Copy the built executable to `dir/agent-<hash>`, the name an installed agent has.
fn install_agent(dir: &Path) -> anyhow::Result<PathBuf> {
    let built = std::env::var_os("CREW_BENCH_EXE");
    let built = built
        .as_deref()
        .map_or(Path::new(env!("CARGO_BIN_EXE_crew")), Path::new);
    let hash = crew::paths::file_hash(built)?;
    let exe = dir.join(format!("agent-{hash}"));
    std::fs::copy(built, &exe)?;
    Ok(exe)
}

/// A spawned agent. `std::process::Child` neither kills nor reaps on drop: every path below
/// ends with `finish`, which closes stdin and reaps it with wait4 (for its rusage).
struct Agent {
    child: Child,
    r: pipe::Receiver,
    w: BufWriter<pipe::Sender>,
}

async fn spawn(exe: &Path) -> anyhow::Result<Agent> {
    let mut child = Command::new(exe)
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let inp = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    let mut r = pipe::Receiver::from_owned_fd(OwnedFd::from(out))?;
    let w = BufWriter::new(pipe::Sender::from_owned_fd(OwnedFd::from(inp))?);
    let mut marker = vec![0u8; SYNC_MARKER.len()];
    tokio::time::timeout(WAIT, r.read_exact(&mut marker)).await??;
    anyhow::ensure!(marker == SYNC_MARKER, "agent sent no sync marker");
    let mut a = Agent { child, r, w };
    match a.recv().await? {
        (0, AgentMsg::Hello(_)) => Ok(a),
        other => anyhow::bail!("expected Hello, got {other:?}"),
    }
}

impl Agent {
    async fn recv(&mut self) -> anyhow::Result<(u64, AgentMsg)> {
        let f = tokio::time::timeout(WAIT, read_frame(&mut self.r))
            .await??
            .ok_or_else(|| anyhow::anyhow!("agent closed its output"))?;
        match decode(&f) {
            Decoded::Msg { id, msg } => Ok((id, msg)),
            Decoded::Invalid { reason, .. } => anyhow::bail!("bad frame: {reason}"),
        }
    }

    async fn run(&mut self, id: u64) -> anyhow::Result<()> {
        let run = AgentMsg::Run(Run {
            command: "true".into(),
            env: vec![],
            timeout_ms: None,
            stdin: false,
        });
        let (kind, payload) = run.encode();
        write_frame(&mut self.w, kind, id, &payload).await?;
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Close the agent's stdin, wait for it to exit, and return its user+system CPU over its
    /// whole life (µs resolution, from wait4).
    async fn finish(self) -> anyhow::Result<Duration> {
        let pid = self.child.id() as i32;
        drop(self.w);
        drop(self.r);
        tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || reap(pid))).await??
    }
}

/// (own CPU, children's CPU) of `pid` so far, from /proc/<pid>/stat.
fn cpu(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .ok_or_else(|| anyhow::anyhow!("odd /proc/{pid}/stat"))?;
    // After the command name: state is field 3; utime..cstime are fields 14..17.
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(f.len() == 4, "short /proc/{pid}/stat");
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let d = |ticks: u64| Duration::from_secs_f64(ticks as f64 / hz);
    Ok((d(f[0] + f[1]), d(f[2] + f[3])))
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("odd VmRSS"))?
        .parse()?)
}

struct JobsRow {
    wall: Duration,
    agent_us: f64,
    children_us: f64,
    rss_kb: u64,
}

async fn run_jobs(exe: &Path, jobs: u64) -> anyhow::Result<JobsRow> {
    let mut a = spawn(exe).await?;
    let pid = a.pid();
    let (cpu0, kids0) = cpu(pid)?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < jobs.min(IN_FLIGHT) {
        sent += 1;
        a.run(sent).await?;
    }
    a.w.flush().await?;
    let mut done = 0;
    while done < jobs {
        match a.recv().await? {
            (_, AgentMsg::Exit(e)) => {
                anyhow::ensure!(e.code == Some(0), "job failed: {e:?}");
                done += 1;
                if sent < jobs {
                    sent += 1;
                    a.run(sent).await?;
                    a.w.flush().await?;
                }
            }
            (id, m @ (AgentMsg::Error { .. } | AgentMsg::Refused { .. })) => {
                anyhow::bail!("job {id}: {m:?}")
            }
            _ => {}
        }
    }
    let wall = started.elapsed();
    let (cpu1, kids1) = cpu(pid)?;
    let rss_kb = rss_kb(pid)?;
    let per_job = |d: Duration| d.as_secs_f64() * 1e6 / jobs as f64;
    a.finish().await?;
    Ok(JobsRow {
        wall,
        agent_us: per_job(cpu1 - cpu0),
        children_us: per_job(kids1 - kids0),
        rss_kb,
    })
}

/// Median (spawn → Hello wall time, CPU of the agent's whole life) over `STARTS` agents.
async fn starts(exe: &Path) -> anyhow::Result<(Duration, Duration)> {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..STARTS {
        let t = Instant::now();
        let a = spawn(exe).await?;
        walls.push(t.elapsed());
        cpus.push(a.finish().await?);
    }
    walls.sort();
    cpus.sort();
    Ok((walls[STARTS / 2], cpus[STARTS / 2]))
}

fn reap(pid: i32) -> anyhow::Result<Duration> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both out-pointers are valid for the call; `pid` is our own child, which nothing
    // else reaps (std's Child only waits when asked to).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    let st = std::process::ExitStatus::from_raw(status);
    anyhow::ensure!(st.success(), "agent exited with {st}");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}
