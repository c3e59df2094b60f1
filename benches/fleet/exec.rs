//! Running a command line with a time limit and timing it; output goes to files (never a pipe
//! that could fill up), and only its tail is kept for messages.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How often a running child is polled.
const POLL: Duration = Duration::from_millis(2);

/// One finished command line.
pub struct Timed {
    pub elapsed: Duration,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Timed {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr (then stdout), for an error message.
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(6);
        lines[from..].join("\n")
    }

    /// Fail with the command's last words unless it exited 0 (every tool runs so that any
    /// host failing makes its exit status non-zero; stderr noise from login shells is not a
    /// failure).
    pub fn require_ok(self, what: &str) -> anyhow::Result<Timed> {
        if !self.ok() {
            bail!("{what} exited with {:?}:\n{}", self.code, self.tail());
        }
        Ok(self)
    }
}

/// Run `cmd` (stdin closed), killing it after `limit`. Output is captured through files in
/// `scratch`, a directory that must exist.
pub fn timed(cmd: &mut Command, limit: Duration, scratch: &Path) -> anyhow::Result<Timed> {
    let out_path = scratch.join("out");
    let err_path = scratch.join("err");
    let out = fs::File::create(&out_path).context("create stdout capture file")?;
    let err = fs::File::create(&err_path).context("create stderr capture file")?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    let status = loop {
        if let Some(st) = child.try_wait().context("wait for child")? {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{:?} did not finish within {limit:?}; killed",
                cmd.get_program()
            );
        }
        sleep(POLL);
    };
    let elapsed = start.elapsed();
    Ok(Timed {
        elapsed,
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// A command line as a user would type it (for the report), with `env` assignments first.
pub fn shell_line(cmd: &Command) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%^[]+".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, quote(v?.to_str()?))))
        .collect();
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Median of some durations (the lower middle for an even count); zero for none.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Resident and peak resident memory (KiB) of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Raise the soft open-files limit to the hard limit (the daemon, spawned by `crew run`,
/// inherits it; 500 hosts need a socket each plus run-store files). Returns (soft, hard).
pub fn raise_nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// The 1-minute load average (the machine is shared; timings are only as good as it is idle).
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
