//! The agent's stdin and stdout as async streams driven by the runtime's reactor.
//!
//! `tokio::io::stdin()` / `stdout()` do every read and write on the blocking pool (a thread
//! hop and a futex wake-up each). When fd 0 / fd 1 are pipes or Unix sockets (as under sshd)
//! they are duplicated, made non-blocking and polled like any socket instead; a tty or a
//! regular file keeps tokio's blocking path. `O_NONBLOCK` lives on the open file, which
//! other processes may share: [`Restore`] puts the old flags back when the agent is done.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;
use tokio::net::UnixStream;

pub(super) type Input = Box<dyn AsyncRead + Send + Unpin>;
pub(super) type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// The file status flags of fds 0 and 1 before we touched them.
#[derive(Debug, Default)]
pub(super) struct Restore(Vec<(RawFd, libc::c_int)>);

impl Restore {
    /// Put the saved flags back (blocking mode for whoever shares the file after us).
    pub fn restore(self) {
        for (fd, flags) in self.0 {
            // SAFETY: F_SETFL on fd 0 / 1, which stay open for the agent's whole life.
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
        }
    }
}

/// stdin and stdout as async streams. Must be called inside the runtime.
pub(super) fn open() -> (Input, Output, Restore) {
    let mut restore = Restore::default();
    let input: Input = match reactor_stream(0, &mut restore) {
        Some(Ok(Stream::Pipe(fd))) => match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => Box::new(rx),
            Err(e) => fallback_in(e),
        },
        Some(Ok(Stream::Socket(s))) => Box::new(s),
        Some(Err(e)) => fallback_in(e),
        None => Box::new(tokio::io::stdin()),
    };
    let output: Output = match reactor_stream(1, &mut restore) {
        Some(Ok(Stream::Pipe(fd))) => match pipe::Sender::from_owned_fd(fd) {
            Ok(tx) => Box::new(tx),
            Err(e) => fallback_out(e),
        },
        Some(Ok(Stream::Socket(s))) => Box::new(s),
        Some(Err(e)) => fallback_out(e),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output, restore)
}

fn fallback_in(e: io::Error) -> Input {
    tracing::debug!("stdin through the blocking pool: {e}");
    Box::new(tokio::io::stdin())
}

fn fallback_out(e: io::Error) -> Output {
    tracing::debug!("stdout through the blocking pool: {e}");
    Box::new(tokio::io::stdout())
}

enum Stream {
    Pipe(OwnedFd),
    Socket(UnixStream),
}

/// A non-blocking duplicate of `fd` when it is a pipe or a Unix socket; `None` for anything
/// else (tty, file, closed).
fn reactor_stream(fd: RawFd, restore: &mut Restore) -> Option<io::Result<Stream>> {
    // SAFETY: an all-zero stat is a valid value for fstat to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into `st`, valid for the call; a closed fd just fails.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && !(kind == libc::S_IFSOCK && is_unix_socket(fd)) {
        return None;
    }
    // SAFETY: F_GETFL reads the flags of an open descriptor (fstat just succeeded on it).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Some(Err(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is open (fstat succeeded) and stays open while this borrow is used.
    let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
    let dup = match dup {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    restore.0.push((fd, flags));
    if kind == libc::S_IFIFO {
        // pipe::{Receiver, Sender}::from_owned_fd set O_NONBLOCK themselves.
        return Some(Ok(Stream::Pipe(dup)));
    }
    let std = std::os::unix::net::UnixStream::from(dup);
    Some(
        std.set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(std))
            .map(Stream::Socket),
    )
}

fn is_unix_socket(fd: RawFd) -> bool {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`, valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    };
    rc == 0 && domain == libc::AF_UNIX
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn flags(fd: &OwnedFd) -> libc::c_int {
        // SAFETY: F_GETFL on an open descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    }

    #[tokio::test]
    async fn pipes_and_unix_sockets_are_polled_and_flags_restored() {
        let (r, w) = pipe_pair();
        let mut restore = Restore::default();
        let Some(Ok(Stream::Pipe(dup))) = reactor_stream(r.as_raw_fd(), &mut restore) else {
            panic!("a pipe is polled");
        };
        let mut rx = pipe::Receiver::from_owned_fd(dup).expect("receiver");
        assert_ne!(
            flags(&r) & libc::O_NONBLOCK,
            0,
            "shared file is non-blocking now"
        );
        let mut tx = pipe::Sender::from_owned_fd(w).expect("sender");
        tx.write_all(b"hi").await.expect("write");
        let mut got = [0u8; 2];
        rx.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hi");
        restore.restore();
        assert_eq!(flags(&r) & libc::O_NONBLOCK, 0, "blocking again");

        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let mut restore = Restore::default();
        let Some(Ok(Stream::Socket(mut s))) = reactor_stream(a.as_raw_fd(), &mut restore) else {
            panic!("a Unix socket is polled");
        };
        std::io::Write::write_all(&mut &b, b"yo").expect("write");
        let mut got = [0u8; 2];
        s.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"yo");

        let file = tempfile::tempfile().expect("tempfile");
        let mut restore = Restore::default();
        assert!(
            reactor_stream(file.as_raw_fd(), &mut restore).is_none(),
            "file"
        );
        assert!(restore.0.is_empty());
    }
}
