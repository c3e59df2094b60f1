//! A shell for a `local` host (its agent runs on the daemon's machine): the operator's login
//! shell (or one command) in a new PTY on this machine, in its own session. The operator's
//! going away hangs it up, as sshd does.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Stdio};

use tokio::sync::mpsc;

use crate::daemon::ssh::shell::{PtySpec, ShellIn, ShellOut};

fn winsize(cols: u16, rows: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Start the shell; input goes in through the sender (dropping it hangs the shell up),
/// output and the exit come out of the receiver.
pub fn shell(spec: &PtySpec) -> std::io::Result<(mpsc::Sender<ShellIn>, mpsc::Receiver<ShellOut>)> {
    let pty = nix::pty::openpty(Some(&winsize(spec.cols, spec.rows)), None)
        .map_err(std::io::Error::from)?;
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/bash".into());
    let mut cmd = Command::new(&shell);
    match &spec.command {
        Some(c) => cmd.arg("-c").arg(c),
        None => cmd.arg("-l"),
    };
    if let Some(home) = dirs::home_dir() {
        cmd.current_dir(home);
    }
    let slave: OwnedFd = pty.slave;
    cmd.env("TERM", &spec.term)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl) on the
    // child's own descriptors: a new session whose controlling terminal is the PTY (stdin).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone()?;
    let mut writer = master;
    // Set once the shell is reaped: its pid may then belong to someone else.
    let reaped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaped_by_reader = reaped.clone();
    let (in_tx, mut in_rx) = mpsc::channel::<ShellIn>(64);
    let (out_tx, out_rx) = mpsc::channel::<ShellOut>(64);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        // EIO once the last process holding the PTY's other side is gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || out_tx
                    .blocking_send(ShellOut::Data(buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
        let (code, signal) = match child.wait() {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        reaped_by_reader.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = out_tx.blocking_send(ShellOut::Exit { code, signal });
    });
    std::thread::spawn(move || {
        while let Some(m) = in_rx.blocking_recv() {
            let r = match m {
                ShellIn::Data(d) => writer.write_all(&d),
                ShellIn::Resize { cols, rows } => {
                    let ws = winsize(cols, rows);
                    // SAFETY: TIOCSWINSZ reads one winsize from the struct we pass.
                    unsafe { libc::ioctl(writer.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    Ok(())
                }
                // End of input at a terminal is ^D.
                ShellIn::Eof => writer.write_all(&[4]),
            };
            if r.is_err() {
                break;
            }
        }
        // The operator is gone while the shell lives: hang the session up (its process group
        // is the shell's pid, not yet reaped so not reused).
        if !reaped.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory.
            unsafe { libc::kill(-pid, libc::SIGHUP) };
        }
    });
    Ok((in_tx, out_rx))
}
