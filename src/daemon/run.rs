//! Runs: fan a command out to hosts, spool every host's output to the run store as it
//! arrives, log every event for the clients that follow the run ([`RunLog`]), and report the
//! run finished only once it is on disk. A run belongs to the daemon: no client's going away
//! stops it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::audit::{self, AuditLine};
use super::hostkeys::Question;
use super::inflight::{lock, Killer, RunCtl};
use super::pool::{link_error, ssh_error, Conn};
use super::registry::{Control, Tracked};
use super::runlog::RunLog;
use super::server::Daemon;
use crate::model::{ErrorKind, Host, HostError, Verdict};
use crate::proto::agent::{self, AgentMsg};
use crate::proto::daemon::{Event, HostEvent, RunKind, RunRequest, RunState, Summary};
use crate::store::{self, HostRecord, HostSpool, RunSpool};

/// How long a killed (or timed-out) job may take to report its exit before we stop waiting.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Output chunks of one stream already queued behind each other are handled as one up to
/// this size (see [`gather`]).
const GATHER: usize = 256 * 1024;

/// `first`, plus the chunks of the same stream already waiting in `events` (up to
/// [`GATHER`] bytes): what comes after is paid once per gathered chunk (the run store's
/// write, the log entry, each follower's event), and chunks wait in the queue only while the
/// daemon is behind, so gathering costs nothing when it keeps up and saves most when it does
/// not. Returns the chunk, and the message that ended the gathering if one was taken.
fn gather(
    stream: crate::model::Stream,
    first: Vec<u8>,
    events: &mut mpsc::Receiver<AgentMsg>,
) -> (Vec<u8>, Option<AgentMsg>) {
    let mut data = first;
    while data.len() < GATHER {
        match events.try_recv() {
            Ok(AgentMsg::Output {
                stream: s,
                data: more,
            }) if s == stream => {
                if data.capacity() - data.len() < more.len() {
                    let mut bigger = Vec::with_capacity((data.len() + more.len()).max(GATHER));
                    bigger.extend_from_slice(&data);
                    data = bigger;
                }
                data.extend_from_slice(&more);
            }
            Ok(other) => return (data, Some(other)),
            Err(_) => break,
        }
    }
    (data, None)
}

/// Start a run: its store directory, its log and its host tasks. `hidden` runs (a heist's
/// steps) are not listed by `crew runs`. Returns once the run is registered; it goes on in
/// the background.
pub async fn start(d: &Arc<Daemon>, req: RunRequest, hidden: bool) -> Result<Arc<Tracked>, String> {
    start_work(d, req, hidden, Work::Command).await
}

/// Who asks the operator about the unknown host keys a run meets.
#[derive(Clone)]
pub enum Asking {
    /// The run's own question, when its request asks for one.
    OwnQuestion,
    /// Another's: a heist's step runs share the heist's question (None: nobody asks).
    Shared(Option<Arc<Question>>),
}

/// What each host of a run does: run the request's command, or a copy ([`super::transfer`]).
#[derive(Clone)]
pub enum Work {
    Command,
    Transfer(Arc<super::transfer::Plan>),
}

/// [`start`] for any kind of work.
pub async fn start_work(
    d: &Arc<Daemon>,
    req: RunRequest,
    hidden: bool,
    work: Work,
) -> Result<Arc<Tracked>, String> {
    start_asking(d, req, hidden, work, Asking::OwnQuestion).await
}

/// [`start_work`], with unknown host keys put to the question `asking` names.
pub async fn start_asking(
    d: &Arc<Daemon>,
    req: RunRequest,
    hidden: bool,
    work: Work,
    asking: Asking,
) -> Result<Arc<Tracked>, String> {
    let (run_id, dir) = d
        .store
        .create_run(&req)
        .await
        .map_err(|e| format!("run store: {e:#}"))?;
    let names: Vec<String> = req.hosts.iter().map(|h| h.name.clone()).collect();
    let ctl = d.runs.register(run_id, &names);
    let log = Arc::new(RunLog::new(dir.clone()));
    let tracked = Arc::new(Tracked::new(
        run_id.to_string(),
        RunKind::Run,
        req.command.clone(),
        req.who.clone(),
        names.len() as u32,
        hidden,
        log.clone(),
        Control::Run { run_id },
    ));
    d.registry.add(tracked.clone());
    super::bus::share::publish(d, &tracked);
    tracing::info!(run_id, hosts = req.hosts.len(), command = %req.command, "run started");
    log.push(Event::RunStarted {
        run_id,
        hosts: names.clone(),
    });
    let spool = RunSpool::start(&dir, &names);
    if req.stdin {
        ctl.open_inputs(&names);
    }
    let question = match asking {
        Asking::OwnQuestion => {
            let q = question(&req, &tracked);
            if let Some(q) = &q {
                d.questions.add(q.clone());
            }
            q
        }
        Asking::Shared(q) => q,
    };
    tokio::spawn(execute(
        d.clone(),
        req,
        run_id,
        dir,
        ctl,
        spool,
        tracked.clone(),
        work,
        question,
    ));
    Ok(tracked)
}

/// The run's question about unknown host keys, when its client asks for one and it has SSH
/// hosts (and does not accept new keys anyway).
fn question(req: &RunRequest, tracked: &Arc<Tracked>) -> Option<Arc<Question>> {
    if !req.ask_host_keys || req.accept_new_host_keys {
        return None;
    }
    let q = new_question(&req.hosts, 0)?;
    q.attach(tracked.clone());
    Some(q)
}

/// A question about the unknown keys of `hosts` (None when none is an SSH host), its asks
/// numbered from `first_ask`, not yet attached to a log. Its window: the longest connect
/// timeout of the hosts (by then each has connected or failed), within 1 to 30 s.
pub fn new_question(hosts: &[Host], first_ask: u64) -> Option<Arc<Question>> {
    let ssh = hosts
        .iter()
        .filter(|h| h.transport == crate::model::Transport::Ssh);
    let longest = ssh.map(|h| h.connect_timeout_ms).max()?;
    let names = hosts.iter().map(|h| h.name.clone()).collect();
    let window =
        Duration::from_millis(longest).clamp(Duration::from_secs(1), Duration::from_secs(30));
    Some(Arc::new(Question::new(names, window, first_ask)))
}

/// Run every host to its end, then store, audit and close the log.
#[allow(clippy::too_many_arguments)]
async fn execute(
    d: Arc<Daemon>,
    req: RunRequest,
    run_id: u64,
    dir: std::path::PathBuf,
    ctl: Arc<RunCtl>,
    spool: RunSpool,
    tracked: Arc<Tracked>,
    work: Work,
    question: Option<Arc<Question>>,
) {
    let fanout = req
        .fanout
        .map(|f| f as usize)
        .unwrap_or(req.hosts.len())
        .max(1);
    let permits = Arc::new(Semaphore::new(fanout));
    // Hosts of other sites go to their site daemons over the bus (None: no bus, or none).
    // Copies are driven here only (`transfer::start` refuses other sites' hosts).
    let mut routes = match work {
        Work::Command => super::bus::router::split(&d, &req, run_id),
        Work::Transfer(_) => Default::default(),
    };
    let req = Arc::new(req);
    let mut tasks = Vec::with_capacity(req.hosts.len());
    // Tasks index the shared request: no copy of the inventory entries per host.
    for i in 0..req.hosts.len() {
        let (d, ctl, req, permits, tracked, work, question) = (
            d.clone(),
            ctl.clone(),
            req.clone(),
            permits.clone(),
            tracked.clone(),
            work.clone(),
            question.clone(),
        );
        let files = spool.host(i, &req.hosts[i].name);
        let route = routes.remove(&i);
        tasks.push(tokio::spawn(async move {
            // A site applies the fanout to its own share.
            let permit = match route {
                Some(_) => None,
                None => permits.acquire_owned().await.ok(),
            };
            let job = HostJob {
                d: &d,
                ctl: &ctl,
                req: &req,
                tracked: &tracked,
                run_id,
                host: &req.hosts[i],
                name: Arc::from(req.hosts[i].name.as_str()),
                work: &work,
                question,
            };
            job.run(permit, files, route).await
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
        origin: &req.origin,
        hosts: records
            .iter()
            .map(|r| (r.host.as_str(), r.verdict))
            .collect(),
    };
    // Output files, hosts.jsonl, meta.json and the run directory fsynced, alongside the audit
    // line: all of it on disk before the run may be reported finished.
    let (stored, audited) = tokio::join!(spool.finish(), audit::append(&d.audit_log, &line));
    if let Err(e) = stored {
        store_error.get_or_insert(e);
    }
    if let Err(e) = audited {
        store_error.get_or_insert(format!("{e:#}"));
    }
    d.runs.remove(run_id);
    d.questions.remove(&tracked.id);
    d.touch();
    let log = &tracked.log;
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
            let all_ok = records.iter().all(|r| r.verdict == Verdict::Ok);
            let killed = records.iter().any(|r| r.verdict == Verdict::Killed);
            tracked.finish(if all_ok {
                RunState::Ok
            } else if killed {
                RunState::Interrupted
            } else {
                RunState::Failed
            });
            log.push(Event::RunFinished { run_id, summary });
        }
        Some(e) => {
            tracing::error!(run_id, "run store failed: {e}");
            let marker = dir.join(store::FAILED_FILE);
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
            tracked.finish(RunState::Failed);
            log.push(Event::Error { message });
        }
    }
    log.close();
    d.registry.finished(&tracked.id);
}

pub(super) struct HostJob<'a> {
    pub(super) d: &'a Arc<Daemon>,
    pub(super) ctl: &'a RunCtl,
    pub(super) req: &'a RunRequest,
    pub(super) tracked: &'a Tracked,
    pub(super) run_id: u64,
    pub(super) host: &'a Host,
    pub(super) name: Arc<str>,
    pub(super) work: &'a Work,
    pub(super) question: Option<Arc<Question>>,
}

impl HostJob<'_> {
    pub(super) fn emit(&self, event: HostEvent) {
        match &event {
            HostEvent::Exit { verdict, .. } => self.tracked.set_verdict(&self.name, *verdict),
            HostEvent::Failed { kind, .. } => self
                .tracked
                .set_verdict(&self.name, Verdict::from_error(*kind)),
            _ => {}
        }
        self.tracked.log.push(Event::Host {
            run_id: self.run_id,
            host: self.host.name.clone(),
            event,
        });
    }

    pub(super) async fn fail(&self, rec: &mut HostRecord, e: HostError) {
        rec.verdict = Verdict::from_error(e.kind);
        rec.error_kind = Some(e.kind);
        rec.error = Some(e.message.clone());
        self.emit(HostEvent::Failed {
            kind: e.kind,
            message: e.message,
        });
    }

    pub(super) fn cancel_token(&self) -> CancellationToken {
        lock(&self.ctl.hosts)
            .get(&self.host.name)
            .map(|c| c.cancel.clone())
            .unwrap_or_default()
    }

    pub(super) fn kill_signal(&self) -> Option<i32> {
        lock(&self.ctl.hosts)
            .get(&self.host.name)
            .and_then(|c| c.signal)
    }

    /// Register the job's killer; kills at once when a kill already arrived.
    pub(super) fn set_killer(&self, k: Killer) {
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
        permit: Option<OwnedSemaphorePermit>,
        mut files: HostSpool,
        route: Option<super::bus::router::HostRoute>,
    ) -> (HostRecord, Option<String>) {
        let mut rec = HostRecord::new(&self.host.name);
        if route.is_some() {
            // Stdin is not carried to other sites: never let input wait on such a host.
            self.ctl.close_input(&self.host.name);
        }
        match route {
            Some(r) => super::bus::router::drive(self, &mut rec, &mut files, r).await,
            None => self.drive(&mut rec, &mut files).await,
        }
        // Input for this host goes nowhere now: senders stop waiting on it.
        self.ctl.close_input(&self.host.name);
        drop(permit);
        // The writer fsyncs the host's output, then appends the record that accounts for it. A
        // store error is reported once, at the end of the run, in place of RunFinished; the
        // record is kept all the same.
        let err = files.done(&rec).await.err();
        (rec, err)
    }

    async fn drive(&self, rec: &mut HostRecord, files: &mut HostSpool) {
        if let Work::Transfer(plan) = self.work {
            return super::transfer::drive(self, plan, rec, files).await;
        }
        let cancel = self.cancel_token();
        if cancel.is_cancelled() {
            return self.killed_before_start(rec).await;
        }
        let acquired = tokio::select! {
            l = self.d.pool.acquire_asking(self.host, self.req.accept_new_host_keys, self.question.clone()) => Some(l),
            _ = cancel.cancelled() => None,
        };
        if let Some(q) = &self.question {
            q.settled(&self.host.name);
        }
        let Some(lease) = acquired else {
            return self.killed_before_start(rec).await;
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => return self.fail(rec, e).await,
        };
        rec.agentless = lease.agentless;
        // Through sudo: the host's privileged agent for that user (started on first use).
        let privileged;
        let conn = match &self.req.sudo {
            None => &lease.conn,
            Some(sudo) => {
                let link = tokio::select! {
                    l = self.d.pool.privileged(self.host, sudo, self.req.accept_new_host_keys) => l,
                    _ = cancel.cancelled() => return self.killed_before_start(rec).await,
                };
                match link {
                    Ok(l) => {
                        privileged = Conn::Agent(l);
                        &privileged
                    }
                    Err(e) => return self.fail(rec, e).await,
                }
            }
        };
        let mut env = self.req.env.clone();
        env.push(("CREW_HOST".to_string(), self.host.name.clone()));
        let run = agent::Run {
            stdin: self.req.stdin,
            command: self.req.command.clone(),
            env,
            timeout_ms: self.req.timeout_ms,
        };
        let mut events: mpsc::Receiver<AgentMsg> = match conn {
            Conn::Agent(link) => match link.start(run).await {
                Ok(job) => {
                    self.set_killer(Killer::Agent(job.killer()));
                    self.feed_input(job.input());
                    job.events
                }
                Err(e) => return self.fail(rec, link_error(e)).await,
            },
            Conn::Agentless(s) => match s.exec(run).await {
                Ok(job) => {
                    self.feed_input(None);
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
        // A message taken from the queue while gathering output: handled next.
        let mut held: Option<AgentMsg> = None;
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
            let msg = if let Some(m) = held.take() {
                Some(m)
            } else {
                tokio::select! {
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
                }
            };
            match msg {
                Some(AgentMsg::Started { pid }) => self.emit(HostEvent::Started {
                    pid,
                    agentless: lease.agentless,
                }),
                Some(AgentMsg::Output { stream, data }) => {
                    let (data, next) = gather(stream, data.into_vec(), &mut events);
                    held = next;
                    match stream {
                        crate::model::Stream::Stdout => rec.stdout_bytes += data.len() as u64,
                        crate::model::Stream::Stderr => rec.stderr_bytes += data.len() as u64,
                    }
                    // On disk first (queued to the writer), then to the followers.
                    let data = Bytes::from(data);
                    let offset = files.output(stream, data.clone()).await;
                    self.tracked.log.push_output(
                        self.run_id,
                        self.name.clone(),
                        stream,
                        offset,
                        data,
                        files.written().clone(),
                    );
                }
                Some(AgentMsg::Exit(mut e)) => {
                    e.timed_out |= timed_out;
                    rec.set_exit(&e);
                    rec.verdict = Verdict::from_exit(&e, self.kill_signal().is_some());
                    let verdict = rec.verdict;
                    return self.emit(HostEvent::Exit { exit: e, verdict });
                }
                Some(AgentMsg::Refused { reason }) => {
                    return self
                        .fail(rec, HostError::new(ErrorKind::Refused, reason))
                        .await
                }
                Some(AgentMsg::Error { message }) => {
                    return self
                        .fail(rec, HostError::new(ErrorKind::Exec, message))
                        .await
                }
                Some(other) => tracing::debug!(host = %self.host.name, "ignored {}", other.name()),
                None => {
                    let reason = match conn {
                        Conn::Agent(link) => link.close_reason(),
                        Conn::Agentless(_) => None,
                    };
                    let message = match reason {
                        Some(r) => format!("link lost: {r}"),
                        None => "the link closed without an exit status".to_string(),
                    };
                    return self
                        .fail(rec, HostError::new(ErrorKind::Lost, message))
                        .await;
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

    pub(super) async fn killed_before_start(&self, rec: &mut HostRecord) {
        let e = HostError::new(ErrorKind::Killed, "killed before the command started");
        self.fail(rec, e).await
    }
}
