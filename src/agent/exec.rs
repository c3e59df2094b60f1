//! One command: `bash -c` (started by `shell`) in its own process group and temp dir (from
//! `jobdir`), output pumped as produced, `Exit` with status and resource usage, timeout
//! enforcement.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::unix::pipe;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use super::credit::Credit;
use super::input;
use super::outbox::Outbox;
use super::serve::Shared;
use crate::model::{Exit, Stream};
use crate::proto::agent::{AgentMsg, Run};
use crate::proto::frame;

/// Largest output chunk per frame.
pub(super) const CHUNK: usize = 64 * 1024;
/// Room for the first output read of a pipe.
const FIRST_READ: usize = 4 * 1024;

/// Send `signal` to every process of group `pgid`.
pub(super) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions. A negative pid addresses the group.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc != 0 {
        tracing::debug!("kill(-{pgid}, {signal}): {}", io::Error::last_os_error());
    }
}

/// Run one command to completion and report it as job `id`. Never panics; every failure
/// becomes an `Error` frame for the job.
pub(super) async fn run_job(
    id: u64,
    run: Run,
    input: Option<input::InputRx>,
    shared: &Shared,
    outbox: &Outbox,
) {
    let dir = match shared.dirs.create(id) {
        Ok(dir) => dir,
        Err(e) => return cannot_run(id, e, shared, outbox).await,
    };
    match run_inner(id, &run, input, &dir, shared, outbox).await {
        // The temp dir goes once the result has been delivered (or the writer is gone).
        Ok(exit) => {
            let _ = outbox.data_written(id, &AgentMsg::Exit(exit)).await;
            shared.jobs().remove(&id);
        }
        Err(e) => cannot_run(id, e, shared, outbox).await,
    }
    let shown = dir.display().to_string();
    if let Err(e) = shared.dirs.remove(dir).await {
        tracing::warn!("job {id}: removing its temp dir {shown}: {e}");
    }
}

async fn cannot_run(id: u64, e: io::Error, shared: &Shared, outbox: &Outbox) {
    shared.jobs().remove(&id);
    let message = format!("cannot run command: {e}");
    let _ = outbox.data(id, &AgentMsg::Error { message }).await;
}

async fn run_inner(
    id: u64,
    run: &Run,
    input_rx: Option<input::InputRx>,
    dir: &Path,
    shared: &Shared,
    outbox: &Outbox,
) -> io::Result<Exit> {
    let started = Instant::now();
    let (stdin_read, stdin_write) = match run.stdin {
        true => {
            let (r, w) = input::pipe()?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let child = shared.shell().spawn(
        &run.command,
        &run.env,
        dir,
        stdin_read.as_ref().map(|f| f.as_fd()),
    )?;
    // The command has its own copy of the read end now.
    drop(stdin_read);
    let pid = child.pid;
    // Ends the stdin writer when the job is over (a grandchild may keep the pipe open).
    let input_done = CancellationToken::new();
    let _input_guard = input_done.clone().drop_guard();
    if let (Some(w), Some(rx)) = (stdin_write, input_rx) {
        if let Err(e) = input::start(id, w, rx, outbox.clone(), input_done.clone()) {
            tracing::warn!("job {id}: cannot feed its stdin: {e}");
        }
    }
    // From here on the child is ours to reap: it never outlives this function unreaped.
    let (out, err) = (child.stdout, child.stderr);
    if let Some(k) = &shared.keeper {
        k.started(pid);
    }
    shared.dirs.mark(pid, id);
    let credit = {
        let mut jobs = shared.jobs();
        let slot = jobs.entry(id).or_default();
        slot.pgid = Some(pid);
        if let Some(sig) = slot.pending.take() {
            signal_group(pid, sig);
        }
        Arc::clone(&slot.credit)
    };
    let _ = outbox
        .data(id, &AgentMsg::Started { pid: pid as u32 })
        .await;

    let pumps = async {
        let a = pump(out, id, Stream::Stdout, outbox, &credit);
        let b = pump(err, id, Stream::Stderr, outbox, &credit);
        let _ = tokio::join!(a, b);
    };
    tokio::pin!(pumps);
    let exited = exited(pid);
    tokio::pin!(exited);

    let far = tokio::time::Instant::now() + Duration::from_secs(10 * 365 * 86400);
    let mut term_at = run
        .timeout_ms
        .map(|ms| tokio::time::Instant::from_std(started + Duration::from_millis(ms)));
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut timed_out = false;
    let mut wall = None;
    let mut drained = false;
    while wall.is_none() || !drained {
        tokio::select! {
            _ = &mut exited, if wall.is_none() => wall = Some(started.elapsed()),
            _ = &mut pumps, if !drained => drained = true,
            _ = sleep_until(term_at.unwrap_or(far)), if term_at.is_some() => {
                timed_out = true;
                term_at = None;
                signal_group(pid, libc::SIGTERM);
                kill_at = Some(tokio::time::Instant::now() + shared.opts.kill_grace);
            }
            _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                kill_at = None;
                signal_group(pid, libc::SIGKILL);
            }
        }
    }
    // Stop signalling before reaping: once reaped, its pid (and group id) may be reused. The
    // slot stays until Exit is written, so a late Kill is ignored rather than answered with an
    // error that could overtake the Exit.
    if let Some(slot) = shared.jobs().get_mut(&id) {
        slot.pgid = None;
        slot.finished = true;
        slot.input = None;
    }
    if let Some(k) = &shared.keeper {
        k.finished(pid);
    }
    shared.dirs.unmark(pid);
    // `exited` resolved: the child is a zombie, so this wait4 does not block. Only if waiting
    // on its pidfd failed may it still run; then a blocking thread waits.
    let (status, usage) = match reap(pid, libc::WNOHANG)? {
        Some(reaped) => reaped,
        None => tokio::task::spawn_blocking(move || reap(pid, 0))
            .await
            .map_err(io::Error::other)??
            .ok_or_else(|| io::Error::other(format!("wait4({pid}) returned no status")))?,
    };
    let wall = wall.unwrap_or_else(|| started.elapsed());
    let exit = Exit {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        wall_ms: wall.as_millis() as u64,
        user_ms: tv_ms(usage.ru_utime),
        sys_ms: tv_ms(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss.max(0) as u64,
        timed_out,
    };
    Ok(exit)
}

fn tv_ms(tv: libc::timeval) -> u64 {
    (tv.tv_sec.max(0) as u64) * 1000 + (tv.tv_usec.max(0) as u64) / 1000
}

/// Resolves once child `pid` has exited, without reaping it. Uses a pidfd (no thread per
/// job); where the kernel has none, a blocking thread waits instead.
async fn exited(pid: i32) {
    let registered = pidfd_open(pid).and_then(|fd| {
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd: it stays open and refers to the
        // same pidfd until the AsyncFd is dropped, and as_raw_fd always returns it.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
    });
    match registered {
        Ok(fd) => {
            // A pidfd turns readable when the process exits; any error also means "stop
            // waiting here" and the reap below reports what happened.
            let _ = fd.readable().await;
        }
        Err(e) => {
            tracing::debug!("pidfd for {pid}: {e}; waiting on a thread");
            let _ = tokio::task::spawn_blocking(move || wait_exited(pid)).await;
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Block until process `pid` has exited, leaving it a zombie (so its pid and process group
/// cannot be reused while we may still signal the group).
fn wait_exited(pid: i32) -> io::Result<()> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reap process `pid`: its wait status and resource usage; `None` if `flags` has WNOHANG and
/// it has not exited yet.
fn reap(pid: i32, flags: i32) -> io::Result<Option<(i32, libc::rusage)>> {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both out-pointers are valid and writable for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if rc == pid {
            return Ok(Some((status, usage)));
        }
        if rc == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::new(e.kind(), format!("wait4({pid}): {e}")));
        }
    }
}

/// Copy one pipe into `Output` frames until EOF, within the job's credit. Waits whenever the
/// credit is used up or the data lane is full; meanwhile the pipe is not read, so the command
/// blocks on write.
async fn pump(fd: OwnedFd, id: u64, stream: Stream, outbox: &Outbox, credit: &Credit) {
    let rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("job {id}: cannot watch its {stream:?}: {e}");
            return;
        }
    };
    let kind = AgentMsg::Output {
        stream,
        data: ByteBuf::new(),
    }
    .encode()
    .0;
    let head = 4 + frame::HEADER;
    // Each frame is read straight into its own buffer (no zeroing, no copy). Capacity starts
    // small (most commands print little) and follows what the last read delivered.
    let mut want = FIRST_READ;
    let mut writer_alive = true;
    loop {
        // Readable first, then credit: a pump never holds credit while it waits for data (the
        // other stream of the job may need it). Between `take` and `try_read_buf` nothing else
        // runs on this task, and a read never exceeds what was taken.
        if let Err(e) = rx.readable().await {
            tracing::warn!("job {id}: waiting on its {stream:?}: {e}");
            return;
        }
        if writer_alive {
            credit.ready().await;
        }
        let allow = match writer_alive {
            true => credit.take(want),
            false => want,
        };
        if allow == 0 {
            continue; // another stream of the job took the credit first
        }
        let mut buf = Vec::with_capacity(head + allow);
        buf.resize(head, 0);
        let read = rx.try_read_buf(&mut buf);
        let n = match read {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                if writer_alive {
                    credit.give_back(allow);
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("job {id}: reading its {stream:?}: {e}");
                return;
            }
        };
        if writer_alive {
            credit.give_back(allow - n);
        }
        if n >= want {
            want = (want * 2).min(CHUNK);
        }
        if !writer_alive {
            continue; // keep draining so the command is not stuck on a full pipe
        }
        match frame::header(kind, id, n) {
            Ok(h) => buf[..head].copy_from_slice(&h),
            // Unreachable: a read fills at most the buffer's spare capacity (about CHUNK,
            // 64 KiB), far below the 16 MiB frame limit.
            Err(e) => {
                tracing::error!("job {id}: {stream:?} chunk: {e}");
                continue;
            }
        }
        writer_alive = outbox.data_frame(buf).await;
    }
}
