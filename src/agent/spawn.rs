//! Start a job's process without fork: `clone(CLONE_VM | CLONE_VFORK)` onto a small stack of
//! its own, the technique of glibc's `posix_spawn`. Copying the agent's page tables (fork's
//! `dup_mmap`) and the copy-on-write faults after it cost more than the job shell itself.
//!
//! Everything is prepared in the parent (program path, argv, envp, cwd, descriptors); the child
//! shares the agent's memory until it execs, so it only makes raw async-signal-safe libc calls:
//! reset caught signal handlers (and SIGPIPE, which Rust ignores) to the default, `setpgid(0,
//! 0)`, `PR_SET_PDEATHSIG(SIGKILL)`, a `getppid` check, `dup2` of stdin/stdout/stderr, `chdir`,
//! restore the signal mask, `execve`. A failing step stores its number and errno in memory the
//! parent reads once the child is gone, and the child `_exit(127)`s.
//!
//! Death signal: the command's direct child gets SIGKILL when the agent dies, even by SIGKILL
//! (when it cannot run its EOF/kill path). Only the direct child (`bash -c`, or the program
//! bash execs in its place) is covered; grandchildren in its process group survive unless the
//! agent's own kill path (stdin EOF → group KILL) runs. The "parent" Linux watches is the
//! *thread* that cloned: jobs are started from runtime threads, which live as long as the agent.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

/// Child stack (above one guard page). The child runs a handful of libc calls.
const STACK: usize = 64 * 1024;

/// What to start.
pub(super) struct Request<'a> {
    /// Absolute path of the program (no PATH search happens here).
    pub program: &'a CStr,
    pub argv: &'a [&'a CStr],
    /// `KEY=VALUE` strings: the whole environment of the new process.
    pub envp: &'a [&'a CStr],
    pub cwd: &'a CStr,
    /// Becomes the child's stdin.
    pub stdin: BorrowedFd<'a>,
}

/// A started process: its pid (also its process group id) and the read ends of its stdout and
/// stderr pipes. The caller must reap `pid`.
#[derive(Debug)]
pub(super) struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The step that failed while starting the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Pipe,
    Clone,
    Setpgid,
    Deathsig,
    Dup2,
    Chdir,
    Exec,
}

const STEPS: [Step; 7] = [
    Step::Pipe,
    Step::Clone,
    Step::Setpgid,
    Step::Deathsig,
    Step::Dup2,
    Step::Chdir,
    Step::Exec,
];

/// Starting the process failed at `step`.
#[derive(Debug)]
pub(super) struct SpawnError {
    pub step: Step,
    pub error: io::Error,
    /// The program or directory the step was about.
    what: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            Step::Pipe => "creating output pipes",
            Step::Clone => "clone",
            Step::Setpgid => "setpgid",
            Step::Deathsig => "prctl(PR_SET_PDEATHSIG)",
            Step::Dup2 => "dup2 of stdin/stdout/stderr",
            Step::Chdir => "chdir",
            Step::Exec => "execve",
        };
        match self.what.is_empty() {
            true => write!(f, "{step}: {}", self.error),
            false => write!(f, "{step} {}: {}", self.what, self.error),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Shared between the parent and the child (same memory until the child execs).
struct ChildArgs {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    /// Sources for fds 0, 1, 2; all >= 3, so no dup2 overwrites a later source.
    fds: [RawFd; 3],
    agent: libc::pid_t,
    mask: *const libc::sigset_t,
    /// Index into `STEPS` + 1 of the step that failed; 0 while all went well.
    failed: AtomicI32,
    errno: AtomicI32,
}

/// Start `req.argv` running `req.program` in its own process group, stdin from `req.stdin`,
/// stdout and stderr into new pipes, dying with the agent.
pub(super) fn spawn(req: &Request<'_>) -> Result<Spawned, SpawnError> {
    let fail = |step, error, what: &CStr| SpawnError {
        step,
        error,
        what: what.to_string_lossy().into_owned(),
    };
    let none = c"";
    let pipes = pipe().and_then(|o| Ok((o, pipe()?)));
    let ((out_r, out_w), (err_r, err_w)) = pipes.map_err(|e| fail(Step::Pipe, e, none))?;
    let stdin = above_stdio(req.stdin).map_err(|e| fail(Step::Pipe, e, none))?;
    let argv = nul_terminated(req.argv);
    let envp = nul_terminated(req.envp);
    // SAFETY: an all-zero sigset_t is a valid (empty) set; sigfillset fills it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // One raw pointer for every use of `old` (the child reads it, pthread_sigmask writes it):
    // no reference to it is created after this, so none invalidates the child's pointer.
    let old_p: *mut libc::sigset_t = &raw mut old;
    // SAFETY: `all` is a valid sigset_t to write.
    unsafe { libc::sigfillset(&mut all) };
    let args = ChildArgs {
        program: req.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: req.cwd.as_ptr(),
        fds: [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        agent: std::process::id() as libc::pid_t,
        mask: old_p,
        failed: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    let pid = STACK_TOP.try_with(|top| {
        let Ok(mut top) = top.try_borrow_mut() else {
            return Err(io::Error::other("child stack of this thread in use"));
        };
        let top = match top.as_mut() {
            Some(s) => s,
            None => top.insert(Stack::new()?),
        };
        // SAFETY: all signals are blocked on this thread while the child shares our memory,
        // so no handler of ours can run in it before it resets them (a handler running in
        // the child would act on our memory from another stack). glibc keeps its two
        // internal signals (SIGCANCEL, SIGSETXID) unblocked; it only sends them to the
        // agent's own thread ids, and their handlers ignore signals not from this process.
        // `old` receives the mask we restore below and the child restores before exec.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, old_p) };
        // SAFETY: CLONE_VM | CLONE_VFORK: the child runs `child` on `top`'s stack (ours
        // alone: this thread is suspended until the child has exec'd or exited, so the
        // stack and everything `args` points to — argv, envp, the request's strings, `old`
        // — stay alive and unchanged meanwhile; other threads never touch them). No
        // CLONE_FILES / CLONE_FS / CLONE_SIGHAND: the child's dup2, chdir and sigaction
        // act on its own copies. `child` never unwinds or returns into Rust code of ours.
        let pid = unsafe {
            libc::clone(
                child,
                top.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                ptr::from_ref(&args).cast_mut().cast(),
            )
        };
        let error = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old_p, ptr::null_mut()) };
        if pid < 0 {
            return Err(error);
        }
        Ok(pid)
    });
    let pid = pid
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| fail(Step::Clone, e, req.program))?;
    let failed = args.failed.load(Ordering::Acquire);
    if failed != 0 {
        reap_failed(pid);
        let errno = args.errno.load(Ordering::Acquire);
        let step = (failed as usize)
            .checked_sub(1)
            .and_then(|i| STEPS.get(i))
            .copied()
            .unwrap_or(Step::Exec);
        let what = match step {
            Step::Chdir => req.cwd,
            Step::Exec => req.program,
            _ => none,
        };
        return Err(fail(step, io::Error::from_raw_os_error(errno), what));
    }
    drop((out_w, err_w));
    Ok(Spawned {
        pid,
        stdout: out_r,
        stderr: err_r,
    })
}

/// The child: runs on its own stack in the parent's memory until execve. Only async-signal-
/// safe libc calls; no allocation, locks, panics or unwinding.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of `spawn`, alive and unchanged until we exec or exit
    // (the parent is suspended by CLONE_VFORK); we only read it and write its atomics.
    let a = unsafe { &*arg.cast::<ChildArgs>() };
    let fail = |step: Step| -> c_int {
        let n = STEPS.iter().position(|s| *s == step).map_or(0, |i| i + 1);
        // SAFETY: __errno_location returns this thread's errno slot (the parent thread's
        // TLS, which we run on; the parent ignores errno once clone has succeeded).
        let errno = unsafe { *libc::__errno_location() };
        a.errno.store(errno, Ordering::Release);
        a.failed.store(n as i32, Ordering::Release);
        // SAFETY: _exit ends this process at once, without running any of the agent's code.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: the calls below are plain syscall wrappers, async-signal-safe, on pointers
    // prepared by the parent (NUL-terminated strings and arrays) or on our own locals.
    unsafe {
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, ptr::null(), &mut sa) != 0 {
                continue; // not a signal, or one of libc's internal ones
            }
            // Caught and ignored ones alike: a daemon started under `nohup` must not hand its
            // jobs an ignored SIGHUP or SIGINT; a job starts with the dispositions ssh gives.
            if sa.sa_sigaction != libc::SIG_DFL || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(Step::Setpgid);
        }
        let kill = libc::SIGKILL as libc::c_ulong;
        if libc::prctl(libc::PR_SET_PDEATHSIG, kill, 0, 0, 0) != 0 {
            return fail(Step::Deathsig);
        }
        // The agent may have died before prctl: then no signal will come, and we were
        // reparented already.
        if libc::getppid() != a.agent {
            libc::_exit(137);
        }
        for (target, src) in (0..).zip(a.fds) {
            if libc::dup2(src, target) < 0 {
                return fail(Step::Dup2);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            return fail(Step::Chdir);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, a.mask, ptr::null_mut());
        libc::execve(a.program, a.argv, a.envp);
        fail(Step::Exec)
    }
}

/// Reap a child that reported a failure (it has called or is about to call `_exit`).
fn reap_failed(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid out-pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
}

fn nul_terminated(strings: &[&CStr]) -> Vec<*const c_char> {
    let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    v.push(ptr::null());
    v
}

/// A close-on-exec pipe (read end, write end), both above the stdio descriptors.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio_owned(r)?, above_stdio_owned(w)?))
}

fn above_stdio_owned(fd: OwnedFd) -> io::Result<OwnedFd> {
    match fd.as_raw_fd() < 3 {
        true => above_stdio(fd.as_fd()),
        false => Ok(fd),
    }
}

/// A close-on-exec duplicate of `fd` numbered 3 or higher (only when the agent was started
/// with some of 0..2 closed can a new descriptor land there, and dup2 onto 0..2 would then
/// clobber another source).
fn above_stdio(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a valid descriptor; no memory is involved.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

thread_local! {
    /// One child stack per thread that spawns, made on first use: a thread is suspended
    /// while its child runs, so it never needs two at once.
    static STACK_TOP: RefCell<Option<Stack>> = const { RefCell::new(None) };
}

/// An mmap'd stack with a PROT_NONE guard page below it.
struct Stack {
    base: *mut c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = STACK + page;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the first page lies inside the mapping just made, which only we use.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The (16-byte aligned, page-aligned in fact) top of the stack: stacks grow down.
    fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `Stack::new` and no child runs on it any more (the
        // owning thread is exiting, and its children had exec'd or exited before it resumed).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
