//! `local = true` steps: `bash -c` on the operator's machine, in its own process group, with
//! the whole group killed (TERM, then KILL) when the timeout elapses.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::executor::{OutputSink, RunSpec, StdinData, StepOutcome};
use crate::model::{ErrorKind, HostError};
use crate::model::{Exit, Stream};

const KILL_GRACE: Duration = Duration::from_secs(2);

fn kill_group(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(mut r: R, stream: Stream, sink: OutputSink) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 || sink.send((stream, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
}

pub async fn run(spec: RunSpec, sink: OutputSink) -> StepOutcome {
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&spec.command)
        .envs(spec.env.iter().cloned())
        .stdin(match spec.stdin {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return StepOutcome::Failed(HostError::new(
                ErrorKind::Exec,
                format!("cannot start bash on this machine: {e}"),
            ))
        }
    };
    let pid = child.id().unwrap_or(0);
    // The writer ends on its own once the command stops reading (EPIPE).
    if let (Some(mut w), Some(src)) = (child.stdin.take(), spec.stdin.clone()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let r = match src {
                StdinData::Bytes(b) => w.write_all(&b).await,
                StdinData::File(p) => match tokio::fs::File::open(&p).await {
                    Ok(mut f) => tokio::io::copy(&mut f, &mut w).await.map(|_| ()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = r {
                tracing::debug!("a local step's stdin: {e}");
            }
        });
    }
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(pump(o, Stream::Stdout, sink.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(pump(e, Stream::Stderr, sink)));
    let mut timed_out = false;
    let status = match spec.timeout {
        None => child.wait().await,
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                timed_out = true;
                kill_group(pid, libc::SIGTERM);
                match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        kill_group(pid, libc::SIGKILL);
                        child.wait().await
                    }
                }
            }
        },
    };
    if timed_out {
        // Whatever is left of the group (children that ignored TERM) goes too.
        kill_group(pid, libc::SIGKILL);
    }
    for task in [out, err].into_iter().flatten() {
        // Readers end when every writer of the pipe is gone; bounded so a daemonised
        // grandchild holding the pipe cannot hang the heist.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            StepOutcome::Exited(Exit {
                code: s.code(),
                signal: s.signal(),
                wall_ms: start.elapsed().as_millis() as u64,
                user_ms: 0,
                sys_ms: 0,
                max_rss_kb: 0,
                timed_out,
            })
        }
        Err(e) => StepOutcome::Failed(HostError::new(
            ErrorKind::Internal,
            format!("waiting for local command: {e}"),
        )),
    }
}
