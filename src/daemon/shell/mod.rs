//! Interactive shells for clients: `crew shell HOST` and the console's `s`. The session rides
//! the host's pooled SSH connection ([`crate::daemon::ssh::SshSession::shell`]); its bytes are
//! relayed between the client's connection and the channel untouched (this is the one place
//! host output goes to a terminal raw: the operator asked for an interactive session). The
//! audit log records who opened a shell on which host, when and for how long — never the
//! keystrokes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::audit;
use super::pool::Lease;
use super::server::{Daemon, Sink};
use super::ssh::shell::{PtySpec, ShellIn, ShellOut};

mod local;
use crate::model::Transport;
use crate::proto::daemon::{Event, ShellRequest};

/// The shells one client connection has open, by the id of the request that opened each.
#[derive(Default)]
pub struct Shells(HashMap<u64, mpsc::Sender<ShellIn>>);

impl Shells {
    /// Hand input to shell `id`; false when it is gone.
    pub async fn input(&mut self, id: u64, m: ShellIn) -> bool {
        let Some(tx) = self.0.get(&id) else {
            return false;
        };
        if tx.send(m).await.is_err() {
            self.0.remove(&id);
            return false;
        }
        true
    }
}

/// Open the session and relay its output to `sink` until it ends.
pub async fn open(d: &Arc<Daemon>, shells: &mut Shells, who: &str, req: ShellRequest, sink: Sink) {
    let host = req.host.clone();
    let spec = PtySpec {
        term: req.term.clone(),
        cols: req.cols,
        rows: req.rows,
        command: req.command.clone(),
    };
    if host.transport == Transport::Local {
        // A local host's agent runs on this machine: its shell is a local one, in a PTY.
        match local::shell(&spec) {
            Ok((input, output)) => {
                shells.0.insert(sink.id(), input);
                relay(
                    d,
                    who,
                    &host.name,
                    req.command.is_some(),
                    None,
                    output,
                    sink,
                );
            }
            Err(e) => {
                let message = format!("{}: cannot start a local shell: {e}", host.name);
                sink.send(Event::Error { message }).await;
            }
        }
        return;
    }
    let (lease, ssh) = match d.pool.ssh(&host, req.accept_new_host_keys).await {
        Ok(x) => x,
        Err(e) => {
            sink.send(Event::Error {
                message: format!("{}: {e}", host.name),
            })
            .await;
            return;
        }
    };
    let Some(ssh) = ssh else {
        let message = format!("{}: no SSH connection to open a shell on", host.name);
        sink.send(Event::Error { message }).await;
        return;
    };
    let (input, output) = match ssh.shell(spec).await {
        Ok(x) => x,
        Err(e) => {
            sink.send(Event::Error {
                message: format!("{}: {e}", host.name),
            })
            .await;
            return;
        }
    };
    shells.0.insert(sink.id(), input);
    relay(
        d,
        who,
        &host.name,
        req.command.is_some(),
        Some(lease),
        output,
        sink,
    );
}

/// Relay the session's output to the client until it ends, then audit it.
fn relay(
    d: &Arc<Daemon>,
    who: &str,
    host: &str,
    command: bool,
    lease: Option<Lease>,
    mut output: mpsc::Receiver<ShellOut>,
    sink: Sink,
) {
    let (d, who, host) = (d.clone(), who.to_string(), host.to_string());
    tokio::spawn(async move {
        // The lease keeps the connection counted as in use while the shell is open.
        let _lease = lease;
        let started = Instant::now();
        let opened = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let (mut code, mut signal) = (None, None);
        while let Some(m) = output.recv().await {
            match m {
                ShellOut::Data(data) => {
                    if !sink.deliver(Event::ShellOutput { data }).await {
                        break;
                    }
                }
                ShellOut::Exit { code: c, signal: s } => {
                    (code, signal) = (c, s);
                    break;
                }
            }
        }
        sink.send(Event::ShellExit { code, signal }).await;
        let detail = serde_json::json!({
            "host": host,
            "command": command,
            "opened": opened,
            "seconds": started.elapsed().as_secs_f64(),
            "exit": code,
            "signal": signal,
        });
        audit::action(
            &d.audit_log,
            &who,
            &format!("shell:{host}"),
            "shell",
            Some(detail),
        )
        .await;
    });
}
