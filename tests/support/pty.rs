//! A command on a pseudo-terminal of its own, as in a terminal window: the pty is its
//! controlling terminal and its process group the terminal's foreground group, so Ctrl-C
//! typed on it (`\x03` through the line discipline) reaches the whole foreground group, the
//! way a person's Ctrl-C does. What it prints is collected on a thread; waits are for text to
//! appear, with a deadline.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::proc::wait_within;

/// Which of the child's stdio is the terminal (the rest: stdin from /dev/null, output piped
/// to a collector like the terminal's).
#[derive(Debug, Clone, Copy)]
pub struct Io {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Io {
    /// stdin, stdout and stderr all on the terminal.
    pub const ALL: Io = Io {
        stdin: true,
        stdout: true,
        stderr: true,
    };
}

type Screen = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// A child on a pty: what it wrote to the terminal so far, and keys to type on it.
pub struct PtyChild {
    pub child: Child,
    master: File,
    screen: Screen,
    piped: Screen,
}

fn set_cloexec(fd: i32) {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let ok = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
    assert!(ok, "fcntl FD_CLOEXEC: {}", std::io::Error::last_os_error());
}

/// Collect everything `r` yields into `into`, waking waiters at each chunk.
fn collect(mut r: impl Read + Send + 'static, into: Screen) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                // EIO once the last process holding the terminal is gone.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (text, cv) = &*into;
                    text.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                    cv.notify_all();
                }
            }
        }
    });
}

impl PtyChild {
    /// Start `cmd` on a fresh 120×40 pty: its own session, the pty as its controlling
    /// terminal, `io` says which stdio is the terminal.
    pub fn spawn(cmd: &mut Command, io: Io) -> PtyChild {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the ints we pass; name and termios are
        // null (not wanted / kernel defaults), the winsize outlives the call.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        set_cloexec(master);
        set_cloexec(slave);
        // SAFETY: openpty just gave us these descriptors; nothing else owns them.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let tty = |on: bool| {
            if on {
                Stdio::from(slave.try_clone().expect("dup the pty"))
            } else {
                Stdio::piped()
            }
        };
        cmd.stdin(if io.stdin { tty(true) } else { Stdio::null() })
            .stdout(tty(io.stdout))
            .stderr(tty(io.stderr));
        let slave_fd = slave.as_raw_fd();
        // SAFETY: setsid and ioctl are async-signal-safe and touch no memory of the parent;
        // `slave_fd` stays open (close-on-exec) until the exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the command on a pty");
        drop(slave);
        let screen: Screen = Arc::default();
        let piped: Screen = Arc::default();
        collect(
            master.try_clone().expect("dup the pty master"),
            screen.clone(),
        );
        if let Some(out) = child.stdout.take() {
            collect(out, piped.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect(err, piped.clone());
        }
        PtyChild {
            child,
            master,
            screen,
            piped,
        }
    }

    /// Type `bytes` on the terminal.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
        self.master.flush().expect("flush the pty");
    }

    /// Ctrl-C on the terminal: the line discipline sends SIGINT to its foreground group.
    pub fn ctrl_c(&mut self) {
        self.type_bytes(b"\x03");
    }

    /// What reached the terminal so far (`\r` removed).
    pub fn text(&self) -> String {
        text_of(&self.screen)
    }

    /// What the child wrote to its piped (non-terminal) stdout and stderr so far.
    pub fn piped_text(&self) -> String {
        text_of(&self.piped)
    }

    /// Wait (at most `limit`) until the terminal shows `needle`; returns the text so far.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        self.wait(needle, limit, |t| t.contains(needle))
    }

    /// Wait (at most `limit`) until `pred` holds for the terminal's text.
    pub fn wait(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        let (text, cv) = &*self.screen;
        let mut guard = text.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = String::from_utf8_lossy(&guard).replace('\r', "");
            if pred(&now) {
                return now;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {limit:?} waiting for {what} on the terminal; it shows:\n{now}"
            );
            guard = cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait (at most `limit`) for the child to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let what = format!("the command on the pty (terminal:\n{})", self.text());
        wait_within(&mut self.child, limit, &what)
    }
}

fn text_of(s: &Screen) -> String {
    let g = s.0.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&g).replace('\r', "")
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        super::proc::wait_or_kill(&mut self.child, Duration::ZERO);
    }
}
