//! Bounded waits on processes: every command a test runs has a deadline and fails naming what
//! it waited for; lines from a child's pipe come through a channel with a deadline; and the
//! /proc readers tests use to prove what runs (process groups, command lines).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a command run by a test may take unless the test says otherwise.
pub const COMMAND_WAIT: Duration = Duration::from_secs(120);

/// Wait for `child` at most `limit`; kill (and reap) it when it is still running then.
/// `None` on timeout.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            // Reaps the SIGKILLed child (a KILL cannot be ignored).
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Wait for `child` at most `limit`; on timeout kill it and panic naming `what`.
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    match wait_or_kill(child, limit) {
        Some(st) => st,
        None => panic!("{what}: did not exit within {limit:?} (killed)"),
    }
}

/// Run `cmd` with stdio from/to /dev/null, killing it after `limit`; never panics (for
/// clean-up in `Drop`). `None` when it could not start or ran out of time.
pub fn run_quietly(cmd: &mut Command, limit: Duration) -> Option<ExitStatus> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_or_kill(&mut child, limit)
}

/// Read all of `r` on a thread; the bytes arrive on the returned channel.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// `Command::output` and `status` with a deadline.
pub trait Bounded {
    /// Run to completion (stdin from /dev/null, stdout and stderr captured) within `limit`;
    /// on timeout the command is killed and the test fails naming it and what it printed.
    fn output_within(&mut self, limit: Duration) -> Output;
    /// [`Bounded::output_within`] with [`COMMAND_WAIT`].
    fn output_bounded(&mut self) -> Output {
        self.output_within(COMMAND_WAIT)
    }
    /// Run to completion with stdio from/to /dev/null, within `limit`.
    fn status_within(&mut self, limit: Duration) -> ExitStatus;
}

impl Bounded for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        let what = format!("{self:?}");
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = drain(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take().expect("piped stderr"));
        let status = wait_or_kill(&mut child, limit);
        // A process it left behind may hold the pipes open: read what came, within reason.
        let grace = Duration::from_secs(if status.is_some() { 10 } else { 1 });
        let stdout = out.recv_timeout(grace).unwrap_or_default();
        let stderr = err.recv_timeout(grace).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "{what}: did not finish within {limit:?} (killed)\n--- stdout\n{}--- stderr\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        };
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn status_within(&mut self, limit: Duration) -> ExitStatus {
        let what = format!("{self:?}");
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        wait_within(&mut child, limit, &what)
    }
}

/// Lines of a child's pipe, read on a thread, each taken with a deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line read so far (for failure messages).
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line, waiting at most until `deadline`; `None` at the end of the stream.
    /// Panics naming `what` when the deadline passes first.
    pub fn next_before(&mut self, deadline: Instant, what: &str) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "timed out waiting for {what}; lines so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Read until a line satisfies `pred`, within `limit`.
    pub fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            match self.next_before(deadline, what) {
                Some(l) if pred(&l) => return,
                Some(_) => {}
                None => panic!(
                    "the stream ended before {what}; lines:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything up to the end of the stream, within `limit`.
    pub fn rest(&mut self, limit: Duration, what: &str) -> String {
        let deadline = Instant::now() + limit;
        while self.next_before(deadline, what).is_some() {}
        self.seen.join("\n") + "\n"
    }
}

/// Poll `cond` (every 10 ms at first, then up to every 100 ms) until it holds; panic naming
/// `what` when `limit` passes first.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut nap = Duration::from_millis(10);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// [`wait_until`] for async tests.
pub async fn wait_until_async(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut nap = Duration::from_millis(10);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(nap).await;
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (state, ppid, pgrp, …).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc is needed to see which processes run")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// Live (non-zombie) processes whose process group is `pgid` (the test's hosts run on this
/// machine).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let pgid = pgid.to_string();
    pids()
        .into_iter()
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f.len() > 2 && f[0] != "Z" && f[2] == pgid))
        .collect()
}

/// Live processes (not this test process) whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|pid| *pid != me && alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// Live `sleep` processes whose command line contains `needle`: a step's sleep itself, not
/// the `bash -c` around it (whose script names it too).
pub fn sleeps_with(needle: &str) -> Vec<u32> {
    processes_with(needle)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect()
}

/// A number nobody else puts on a command line, for `sleep <marker>` (found in /proc later).
pub fn marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "987{}.{}{:09}",
        SEQ.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        nanos
    )
}

/// Our login name from the passwd database (`$USER` may be unset where tests run).
pub fn login() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output_within(Duration::from_secs(30));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// This machine's host name, as `hostname` prints it.
pub fn hostname() -> String {
    let out = Command::new("hostname").output_within(Duration::from_secs(30));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
