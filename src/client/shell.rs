//! The operator's side of an interactive session (`crew shell HOST`, the console's `s`): the
//! terminal in raw mode, keystrokes to the daemon, the session's bytes to the terminal as they
//! are, size changes passed on, the exit status back. The terminal is restored however the
//! session ends (exit, a dropped connection, an error).

use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd};

use anyhow::Context as _;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

use super::Client;
use crate::model::Host;
use crate::proto::daemon::{Event, Request, ShellRequest};

/// Exit status when the session could not be had (ssh's convention).
pub const FAILED: i32 = 255;

/// Puts a terminal in raw mode; restores it when dropped.
struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> anyhow::Result<RawMode> {
        let saved = termios::tcgetattr(fd).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw).context("raw mode")?;
        Ok(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: `fd` is stdin's descriptor, open for the whole life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// Stdin in non-blocking mode for the reactor (so no blocked read outlives the session and
/// steals a keystroke from whatever reads the terminal next); the old flags come back on drop.
struct Input {
    fd: AsyncFd<RawFd>,
    flags: i32,
}

impl Input {
    fn new() -> anyhow::Result<Input> {
        let fd = std::io::stdin().as_fd().as_raw_fd();
        // SAFETY: fcntl(F_GETFL/F_SETFL) on stdin's open descriptor; no memory is passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        anyhow::ensure!(
            flags >= 0,
            "reading stdin's flags: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            anyhow::bail!("stdin non-blocking: {}", std::io::Error::last_os_error());
        }
        // SAFETY: stdin's descriptor stays open, and the same, for the whole process; the
        // AsyncFd is dropped (deregistered) when the session ends.
        match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(fd) => Ok(Input { fd, flags }),
            Err(e) => {
                // SAFETY: restoring the flags read above; no memory is passed.
                unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
                anyhow::bail!("stdin cannot be watched ({e}): it is a file or /dev/null")
            }
        }
    }

    /// Bytes typed (empty at end of input).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: reading into `buf`, a valid writable slice of `buf.len()` bytes.
                let n = unsafe { libc::read(*fd.get_ref(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: restoring stdin's flags as they were; no memory is passed.
        unsafe { libc::fcntl(*self.fd.get_ref(), libc::F_SETFL, self.flags) };
    }
}

async fn read(input: Option<&Input>, buf: &mut [u8]) -> std::io::Result<usize> {
    match input {
        Some(i) => i.read(buf).await,
        None => Ok(0),
    }
}

/// The terminal's size (columns, rows); 80×24 when stdout is not a terminal.
pub fn terminal_size() -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which lives on our stack.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col, ws.ws_row)
    } else {
        (80, 24)
    }
}

/// Run an interactive session on `host` (a login shell, or `command`) through the daemon's
/// pooled connection to it; the exit status of the remote shell or command (128 + N for a
/// signal, [`FAILED`] when there was no session).
pub async fn interactive(
    client: &Client,
    host: Host,
    command: Option<String>,
    accept_new_host_keys: bool,
) -> anyhow::Result<i32> {
    use std::io::IsTerminal as _;
    let (cols, rows) = terminal_size();
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    let name = host.name.clone();
    let req = ShellRequest {
        host,
        term,
        cols,
        rows,
        command,
        accept_new_host_keys,
    };
    let (id, mut rx) = client.request_with_id(Request::Shell(req)).await?;
    let tty = std::io::stdin().is_terminal();
    let _raw = if tty {
        Some(RawMode::enter(std::io::stdin().as_fd())?)
    } else {
        None
    };
    // Stdin that cannot be watched (a file, /dev/null) is input that has ended.
    let input = Input::new().ok();
    let sender = client.sender();
    let mut winch = signal(SignalKind::window_change()).context("watching the terminal size")?;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 16 * 1024];
    let mut input_open = input.is_some();
    if !input_open {
        sender.send(Request::ShellEof { shell: id }).await?;
    }
    let code = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::ShellOutput { data }) => {
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
                Some(Event::ShellExit { code, signal }) => {
                    break code.unwrap_or_else(|| signal.map_or(FAILED, |s| 128 + s));
                }
                Some(Event::Error { message }) => {
                    drop(_raw);
                    eprintln!("crew: {}", crate::sanitize_class::visible(message.as_bytes()));
                    return Ok(FAILED);
                }
                Some(_) => {}
                None => {
                    drop(_raw);
                    eprintln!("crew: the daemon went away; the session to {name} is over");
                    return Ok(FAILED);
                }
            },
            n = read(input.as_ref(), &mut buf), if input_open => match n {
                Ok(0) | Err(_) => {
                    input_open = false;
                    sender.send(Request::ShellEof { shell: id }).await?;
                }
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    sender.send(Request::ShellInput { shell: id, data }).await?;
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = terminal_size();
                sender.send(Request::ShellResize { shell: id, cols, rows }).await?;
            }
        }
    };
    Ok(code)
}
