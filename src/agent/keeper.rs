//! The keeper: a small process forked when `crew agent` starts, that outlives the agent just
//! long enough to kill its jobs' process groups when the agent dies in a way that runs none of
//! its own cleanup (SIGKILL, the OOM killer, a crash).
//!
//! The agent tells the keeper, over a pipe, each job's process group as it starts (`+pgid`)
//! and as it is reaped (`-pgid`), 4 bytes a record (writes of 4 bytes to a pipe are atomic).
//! When the pipe reaches EOF (the agent is gone, however it went) the keeper sends SIGKILL to
//! every group still listed and exits. Only the job's direct child has `PR_SET_PDEATHSIG`; the
//! keeper is what takes the rest of the group (a `sleep` under `bash -c`) with it.
//!
//! The keeper runs in its own session (a signal to the agent's process group, a terminal's
//! Ctrl-C, a hang-up, does not reach it) and ignores SIGHUP, SIGINT and SIGTERM: it never
//! outlives the agent by more than the time to send its kills. Should it be killed as well (a
//! `kill -9` of both), the next agent's `Reap` finds the groups from the dead agent's state
//! files (see `jobdir` and `leftovers`).
//!
//! It is forked before the agent starts any thread, and the child only makes raw libc calls on
//! its own stack (no allocation, no locks), so it is safe whatever the process held.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Process groups the keeper tracks at once (the agent runs at most `max_jobs`, 256 by
/// default); beyond this a group is left to the next agent's `Reap`.
const MAX_GROUPS: usize = 4096;

/// The agent's end of the pipe to its keeper.
#[derive(Debug)]
pub(super) struct Keeper {
    fd: OwnedFd,
    pid: i32,
}

impl Keeper {
    /// Fork the keeper. Call before any thread is started.
    pub fn spawn() -> io::Result<Keeper> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fork has no memory-safety preconditions; the child below runs only raw
        // async-signal-safe libc calls and never returns into Rust code of ours.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child; `keep` never returns.
            unsafe { keep(r.as_raw_fd(), w.as_raw_fd()) }
        }
        drop(r);
        // Never block the agent on its keeper: a full pipe (the keeper is stuck) loses a
        // record, which the next agent's Reap covers.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Keeper { fd: w, pid })
    }

    /// The keeper's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Process group `pgid` of a job has started.
    pub fn started(&self, pgid: i32) {
        self.record(pgid);
    }

    /// Process group `pgid`'s job is about to be reaped: no longer the keeper's business.
    pub fn finished(&self, pgid: i32) {
        self.record(-pgid);
    }

    fn record(&self, v: i32) {
        let b = v.to_ne_bytes();
        // SAFETY: write of 4 bytes from a valid buffer to a descriptor we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), b.as_ptr().cast(), b.len()) };
        if n != 4 {
            tracing::debug!("keeper record {v}: {}", io::Error::last_os_error());
        }
    }
}

/// The keeper's life: track groups until EOF, then kill what is left and exit.
///
/// # Safety
/// Only in the child of `fork`, with `r` the pipe's read end and `w` its write end.
unsafe fn keep(r: libc::c_int, w: libc::c_int) -> ! {
    // SAFETY: plain syscall wrappers on our own descriptors and stack buffers.
    unsafe {
        libc::close(w);
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"crew-keeper".as_ptr(), 0, 0, 0);
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Hold none of the agent's descriptors: its stdout must reach EOF when it dies.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                if fd != r {
                    libc::dup2(null, fd);
                }
            }
        }
        let r = if r == 3 || libc::dup2(r, 3) == 3 {
            3
        } else {
            r
        };
        if r == 3 && libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            for fd in 4..1024 {
                libc::close(fd);
            }
        }

        let mut groups = [0i32; MAX_GROUPS];
        let mut len = 0usize;
        let mut buf = [0u8; 4096];
        let mut have = 0usize;
        loop {
            let n = libc::read(r, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            have += n as usize;
            let whole = have - have % 4;
            let mut i = 0;
            while i < whole {
                let v = i32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                if v > 0 {
                    if len < MAX_GROUPS {
                        groups[len] = v;
                        len += 1;
                    }
                } else if let Some(pos) = groups[..len].iter().position(|g| *g == -v) {
                    groups[pos] = groups[len - 1];
                    len -= 1;
                }
                i += 4;
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        for g in &groups[..len] {
            libc::kill(-*g, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}
