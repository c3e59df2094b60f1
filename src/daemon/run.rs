//! Runs: fan a command out to hosts, forward every host's events to the client, write
//! everything to the run store, and report the run finished only once it is on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::audit::{self, AuditLine};
use super::host_state::HostError;
use super::inflight::{lock, Killer, RunCtl};
use super::pool::{link_error, ssh_error, Conn};
use super::server::{Daemon, Sink};
use super::store::{self, HostFiles, HostRecord, ResultSender, RunWriter};
use crate::inventory::Host;
use crate::proto::agent::{self, AgentMsg};
use crate::proto::daemon::{ErrorKind, Event, HostEvent, RunRequest, Summary, Verdict};

/// How long a killed (or timed-out) job may take to report its exit before we stop waiting.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Execute one `Run` request to the end.
pub async fn execute(d: Arc<Daemon>, req: RunRequest, sink: Sink) {
    let (run_id, dir) = match d.store.create_run(&req).await {
        Ok(x) => x,
        Err(e) => {
            sink.send(Event::Error {
                message: format!("run store: {e:#}"),
            })
            .await;
            return;
        }
    };
    let names: Vec<String> = req.hosts.iter().map(|h| h.name.clone()).collect();
    let ctl = d.runs.register(run_id, &names);
    tracing::info!(run_id, hosts = req.hosts.len(), command = %req.command, "run started");
    sink.send(Event::RunStarted {
        run_id,
        hosts: names,
    })
    .await;

    let fanout = req
        .fanout
        .map(|f| f as usize)
        .unwrap_or(req.hosts.len())
        .max(1);
    let permits = Arc::new(Semaphore::new(fanout));
    let req = Arc::new(req);
    let writer = RunWriter::start(&dir);
    let mut tasks = Vec::with_capacity(req.hosts.len());
    // Tasks index the shared request: no copy of the inventory entries per host.
    for i in 0..req.hosts.len() {
        let (d, ctl, req, sink, dir, permits, results) = (
            d.clone(),
            ctl.clone(),
            req.clone(),
            sink.clone(),
            dir.clone(),
            permits.clone(),
            writer.sender(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.ok();
            let job = HostJob {
                d: &d,
                ctl: &ctl,
                req: &req,
                sink: &sink,
                run_id,
                host: &req.hosts[i],
            };
            job.run(&dir, permit, &results).await
        }));
    }
    let mut records = Vec::with_capacity(tasks.len());
    let mut store_error: Option<String> = None;
    for (t, h) in tasks.into_iter().zip(req.hosts.iter()) {
        match t.await {
            Ok((rec, err)) => {
                if store_error.is_none() {
                    store_error = err;
                }
                records.push(rec);
            }
            Err(e) => {
                store_error.get_or_insert(format!("host {} task failed: {e}", h.name));
                records.push(HostRecord::new(&h.name));
            }
        }
    }
    let line = AuditLine {
        run_id,
        who: &req.who,
        when: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        selection: &req.selection,
        command: &req.command,
        label: req.label.as_deref(),
        hosts: records
            .iter()
            .map(|r| (r.host.as_str(), r.verdict))
            .collect(),
    };
    // meta.json, hosts.jsonl and the run directory fsynced once, alongside the audit line:
    // all of it on disk before the run may be reported finished.
    let (stored, audited) = tokio::join!(writer.finish(), audit::append(&d.audit_log, &line));
    if let Err(e) = stored {
        store_error.get_or_insert(e);
    }
    if let Err(e) = audited {
        store_error.get_or_insert(format!("{e:#}"));
    }
    d.runs.remove(run_id);
    d.touch();
    match store_error {
        None => {
            tracing::info!(run_id, "run finished");
            let summary = Summary {
                hosts: records
                    .iter()
                    .map(|r| (r.host.clone(), r.verdict))
                    .collect(),
                store_dir: dir.display().to_string(),
            };
            sink.send(Event::RunFinished { run_id, summary }).await;
        }
        Some(e) => {
            tracing::error!(run_id, "run store failed: {e}");
            let marker = dir.join("FAILED");
            let message = match store::write_synced(&marker, e.as_bytes()).await {
                Ok(()) => format!("run {run_id} is not fully on disk, marked failed: {e}"),
                Err(m) => {
                    tracing::error!(run_id, "cannot mark the run failed: {m:#}");
                    format!(
                        "run {run_id} is not fully on disk and could not be marked failed \
                         ({m:#}): {e}"
                    )
                }
            };
            sink.send(Event::Error { message }).await;
        }
    }
}

/// Verdict of a host that produced no exit status.
pub fn failed_verdict(kind: ErrorKind) -> Verdict {
    match kind {
        ErrorKind::Unreachable
        | ErrorKind::Hostkey
        | ErrorKind::Auth
        | ErrorKind::Agent
        | ErrorKind::Timeout => Verdict::Unreachable,
        ErrorKind::Killed => Verdict::Killed,
        ErrorKind::Refused | ErrorKind::Internal => Verdict::Failed,
    }
}

/// Verdict of a host that exited; `killed` when a kill was requested for it.
pub fn exit_verdict(e: &agent::Exit, killed: bool) -> Verdict {
    if e.timed_out {
        Verdict::Timeout
    } else if e.code == Some(0) {
        Verdict::Ok
    } else if killed {
        Verdict::Killed
    } else {
        Verdict::Failed
    }
}

struct HostJob<'a> {
    d: &'a Arc<Daemon>,
    ctl: &'a RunCtl,
    req: &'a RunRequest,
    sink: &'a Sink,
    run_id: u64,
    host: &'a Host,
}

impl HostJob<'_> {
    async fn emit(&self, event: HostEvent) {
        self.sink
            .send(Event::Host {
                run_id: self.run_id,
                host: self.host.name.clone(),
                event,
            })
            .await;
    }

    async fn fail(&self, rec: &mut HostRecord, e: HostError) {
        rec.verdict = failed_verdict(e.kind);
        rec.error_kind = Some(e.kind);
        rec.error = Some(e.message.clone());
        self.emit(HostEvent::Failed {
            kind: e.kind,
            message: e.message,
        })
        .await;
    }

    fn cancel_token(&self) -> CancellationToken {
        lock(&self.ctl.hosts)
            .get(&self.host.name)
            .map(|c| c.cancel.clone())
            .unwrap_or_default()
    }

    fn kill_signal(&self) -> Option<i32> {
        lock(&self.ctl.hosts)
            .get(&self.host.name)
            .and_then(|c| c.signal)
    }

    /// Register the job's killer; kills at once when a kill already arrived.
    fn set_killer(&self, k: Killer) {
        let mut hosts = lock(&self.ctl.hosts);
        if let Some(c) = hosts.get_mut(&self.host.name) {
            if let Some(sig) = c.signal {
                k.kill(sig);
            }
            c.killer = Some(k);
        }
    }

    /// Run on one host; returns its record and the first run-store error, if any. The
    /// fanout `permit` is given back as soon as the host's exit (or failure) is known: storing
    /// it does not hold up the next host.
    async fn run(
        &self,
        dir: &Path,
        permit: Option<OwnedSemaphorePermit>,
        results: &ResultSender,
    ) -> (HostRecord, Option<String>) {
        let mut rec = HostRecord::new(&self.host.name);
        let mut files = HostFiles::new(dir, &self.host.name);
        self.drive(&mut rec, &mut files).await;
        drop(permit);
        // Output first (written and fsynced), then the record that accounts for it. A store
        // error is reported once, at the end of the run, in place of RunFinished; the record
        // is kept all the same.
        let err = files.finish().await.err();
        let sent = results.send(&rec).err();
        (rec, err.or(sent))
    }

    async fn drive(&self, rec: &mut HostRecord, files: &mut HostFiles) {
        let cancel = self.cancel_token();
        if cancel.is_cancelled() {
            return self.killed_before_start(rec).await;
        }
        let lease = tokio::select! {
            l = self.d.pool.acquire(self.host, self.req.accept_new_host_keys) => l,
            _ = cancel.cancelled() => return self.killed_before_start(rec).await,
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => return self.fail(rec, e).await,
        };
        rec.agentless = lease.agentless;
        let mut env = self.req.env.clone();
        env.push(("CREW_HOST".to_string(), self.host.name.clone()));
        let run = agent::Run {
            command: self.req.command.clone(),
            env,
            timeout_ms: self.req.timeout_ms,
        };
        let mut events: mpsc::Receiver<AgentMsg> = match &lease.conn {
            Conn::Agent(link) => match link.start(run).await {
                Ok(job) => {
                    self.set_killer(Killer::Agent(job.killer()));
                    job.events
                }
                Err(e) => return self.fail(rec, link_error(e)).await,
            },
            Conn::Agentless(s) => match s.exec(run).await {
                Ok(job) => {
                    self.set_killer(Killer::Agentless(job.killer()));
                    job.events
                }
                Err(e) => {
                    let e = ssh_error(e);
                    self.d.pool.invalidate(self.host, e.message.clone()).await;
                    return self.fail(rec, e).await;
                }
            },
        };
        // The agent enforces the timeout; this is the daemon's backstop.
        let backstop = self
            .req
            .timeout_ms
            .map(|t| Duration::from_millis(t) + KILL_GRACE);
        let started = tokio::time::Instant::now();
        let mut kill_deadline: Option<tokio::time::Instant> = None;
        let mut timed_out = false;
        loop {
            let deadline = match (backstop, kill_deadline) {
                (_, Some(k)) => Some(k),
                (Some(b), None) => Some(started + b),
                (None, None) => None,
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                m = events.recv() => m,
                _ = cancel.cancelled(), if kill_deadline.is_none() => {
                    kill_deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
                    continue;
                }
                _ = sleep => {
                    if kill_deadline.is_some() {
                        let (kind, what) = if timed_out {
                            (ErrorKind::Timeout, "timed out")
                        } else {
                            (ErrorKind::Killed, "killed")
                        };
                        let msg = format!("{what}; no exit status within {}s of the kill", KILL_GRACE.as_secs());
                        return self.fail(rec, HostError::new(kind, msg)).await;
                    }
                    timed_out = true;
                    self.set_killer_signal(libc::SIGKILL);
                    kill_deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
                    continue;
                }
            };
            match msg {
                Some(AgentMsg::Started { pid }) => {
                    self.emit(HostEvent::Started {
                        pid,
                        agentless: lease.agentless,
                    })
                    .await
                }
                Some(AgentMsg::Output { stream, data }) => {
                    match stream {
                        agent::Stream::Stdout => rec.stdout_bytes += data.len() as u64,
                        agent::Stream::Stderr => rec.stderr_bytes += data.len() as u64,
                    }
                    if let Some(e) = files.write(stream, &data).await {
                        tracing::error!(host = %self.host.name, "run store: {e}");
                    }
                    self.emit(HostEvent::Output {
                        stream,
                        data: data.into_vec(),
                    })
                    .await
                }
                Some(AgentMsg::Exit(mut e)) => {
                    e.timed_out |= timed_out;
                    rec.set_exit(&e);
                    rec.verdict = exit_verdict(&e, self.kill_signal().is_some());
                    return self.emit(HostEvent::Exit(e)).await;
                }
                Some(AgentMsg::Refused { reason }) => {
                    return self
                        .fail(rec, HostError::new(ErrorKind::Refused, reason))
                        .await
                }
                Some(AgentMsg::Error { message }) => {
                    return self
                        .fail(rec, HostError::new(ErrorKind::Agent, message))
                        .await
                }
                Some(other) => tracing::debug!(host = %self.host.name, "ignored {}", other.name()),
                None => {
                    let e = HostError::new(ErrorKind::Agent, "job ended without an exit status");
                    return self.fail(rec, e).await;
                }
            }
        }
    }

    /// The daemon's own timeout fired: kill the job with `signal`.
    fn set_killer_signal(&self, signal: i32) {
        if let Some(c) = lock(&self.ctl.hosts).get(&self.host.name) {
            if let Some(k) = &c.killer {
                k.kill(signal);
            }
        }
    }

    async fn killed_before_start(&self, rec: &mut HostRecord) {
        let e = HostError::new(ErrorKind::Killed, "killed before the command started");
        self.fail(rec, e).await
    }
}
