//! Copies to and from hosts (`crew put`, `crew fetch`, heist put/fetch steps) as runs of the
//! daemon: in the run store, the audit log, `crew runs` and `crew attach` like a command's run.
//! Each host's share is driven here instead of a command ([`super::run::Work::Transfer`]).
//!
//! Memory is bounded whatever the size. `put` reads each local file once per *pass* and hands
//! the same 128 KiB chunks to every host of the pass through a bounded queue each (the slowest
//! host paces the reader); each host sends them within its agent's write credit. `fetch`
//! receives each host's file within the credit its consumer grants as it writes to disk.
//! See [`put`] and [`fetch`].

mod agentless;
mod fetch;
mod local;
mod plan;
mod put;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::Conn;
use super::registry::Tracked;
use super::run::{self, HostJob, Work};
use super::server::Daemon;
use crate::model::{ErrorKind, Exit, HostError, Stream, Verdict};
use crate::proto::daemon::{HostEvent, RunRequest, TransferOp, TransferRequest};
use crate::store::{HostRecord, HostSpool};

/// What every host of a transfer run does.
pub struct Plan {
    op: Op,
}

enum Op {
    Put(Arc<put::Feeder>),
    Fetch(fetch::FetchPlan),
}

/// How often a host's progress is reported at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Plan a transfer and start it as a run; it goes on in the background. Unknown host keys
/// are put to the question `asking` names (the run's own when the request asks for one).
pub async fn start(
    d: &Arc<Daemon>,
    req: TransferRequest,
    hidden: bool,
    asking: run::Asking,
) -> Result<Arc<Tracked>, String> {
    let command = describe(&req.op);
    let remote: Vec<&str> = req
        .hosts
        .iter()
        .filter(|h| super::bus::router::remote_site(d, h).is_some())
        .map(|h| h.name.as_str())
        .collect();
    if !remote.is_empty() {
        return Err(format!(
            "copies to hosts of another site are not supported yet: {}",
            crate::nodeset::fold(&remote.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        ));
    }
    let op = match req.op.clone() {
        TransferOp::Put {
            sources,
            remote,
            recursive,
            mode,
            exact,
        } => {
            let plan = tokio::task::spawn_blocking(move || {
                plan::put_plan(sources, remote, recursive, mode, exact)
            })
            .await
            .map_err(|e| format!("planning the copy: {e}"))??;
            Op::Put(Arc::new(put::Feeder::new(plan)))
        }
        TransferOp::Fetch {
            remotes,
            local_dir,
            recursive,
        } => Op::Fetch(fetch::FetchPlan::new(remotes, local_dir, recursive)?),
        TransferOp::FetchTo {
            remote,
            local,
            max_size,
        } => Op::Fetch(fetch::FetchPlan::to(remote, local, max_size)),
    };
    let run = RunRequest {
        hosts: req.hosts,
        selection: req.selection,
        command,
        env: Vec::new(),
        timeout_ms: None,
        fanout: req.fanout,
        accept_new_host_keys: req.accept_new_host_keys,
        who: req.who,
        origin: req.origin,
        stdin: false,
        sudo: req.sudo,
        ask_host_keys: req.ask_host_keys,
    };
    let work = Work::Transfer(Arc::new(Plan { op }));
    run::start_asking(d, run, hidden, work, asking).await
}

/// The run's command line as the run store and `crew runs` show it.
fn describe(op: &TransferOp) -> String {
    use crate::proto::daemon::PutSource;
    match op {
        TransferOp::Put {
            sources,
            remote,
            recursive,
            ..
        } => {
            let names: Vec<String> = sources
                .iter()
                .map(|s| match s {
                    PutSource::Path(p) => p.display().to_string(),
                    PutSource::Content { name, .. } => format!("<{name}>"),
                })
                .collect();
            let r = if *recursive { "-r " } else { "" };
            format!("put {r}{} {remote}", names.join(" "))
        }
        TransferOp::Fetch {
            remotes,
            local_dir,
            recursive,
        } => {
            let r = if *recursive { "-r " } else { "" };
            format!("fetch {r}{} {}", remotes.join(" "), local_dir.display())
        }
        TransferOp::FetchTo { remote, local, .. } => {
            format!("fetch {remote} {}", local.display())
        }
    }
}

/// Progress reports of one host, at most every [`PROGRESS_EVERY`].
pub(super) struct Progress<'a> {
    job: &'a HostJob<'a>,
    pub done: u64,
    pub total: u64,
    last: Option<Instant>,
}

impl<'a> Progress<'a> {
    fn new(job: &'a HostJob<'a>, total: u64) -> Progress<'a> {
        Progress {
            job,
            done: 0,
            total,
            last: None,
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        self.report(true);
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        self.report(false);
    }

    pub fn report(&mut self, now: bool) {
        if !now && self.last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.job.emit(HostEvent::Progress {
            done: self.done,
            total: self.total,
        });
    }
}

/// What a host's copy ended with: a line for its output, or why it failed.
type Outcome = Result<String, HostError>;

pub(super) fn file_error(message: impl Into<String>) -> HostError {
    HostError::new(ErrorKind::File, message)
}

fn killed() -> HostError {
    HostError::new(ErrorKind::Killed, "killed: the copy was stopped")
}

/// One host's share of a transfer run.
pub(super) async fn drive(
    job: &HostJob<'_>,
    plan: &Plan,
    rec: &mut HostRecord,
    files: &mut HostSpool,
) {
    let started = Instant::now();
    let cancel = job.cancel_token();
    // A put host counts for its pass from now on (until it joins one or gives up).
    let arrival = match &plan.op {
        Op::Put(f) => Some(f.arrive()),
        Op::Fetch(_) => None,
    };
    if cancel.is_cancelled() {
        return job.fail(rec, killed()).await;
    }
    let accept = job.req.accept_new_host_keys;
    let lease = tokio::select! {
        l = job.d.pool.acquire_asking(job.host, accept, job.question.clone()) => Some(l),
        _ = cancel.cancelled() => None,
    };
    if let Some(q) = &job.question {
        q.settled(&job.host.name);
    }
    let Some(lease) = lease else {
        return job.fail(rec, killed()).await;
    };
    let lease = match lease {
        Ok(l) => l,
        Err(e) => return job.fail(rec, e).await,
    };
    rec.agentless = lease.agentless;
    // Through sudo: the host's privileged agent for that user (started on first use).
    let privileged;
    let conn = match &job.req.sudo {
        None => &lease.conn,
        Some(sudo) => {
            let link = tokio::select! {
                l = job.d.pool.privileged(job.host, sudo, job.req.accept_new_host_keys) => l,
                _ = cancel.cancelled() => return job.fail(rec, killed()).await,
            };
            match link {
                Ok(l) => {
                    privileged = Conn::Agent(l);
                    &privileged
                }
                Err(e) => return job.fail(rec, e).await,
            }
        }
    };
    job.emit(HostEvent::Started {
        pid: 0,
        agentless: lease.agentless,
    });
    let outcome: Outcome = match (&plan.op, conn) {
        (Op::Put(feeder), conn) => {
            let Some(arrival) = arrival else { return };
            let mut progress = Progress::new(job, feeder.plan.total);
            let r = put::host(feeder, arrival, conn, &cancel, &mut progress).await;
            progress.report(true);
            r
        }
        (Op::Fetch(fp), Conn::Agent(link)) => {
            let mut progress = Progress::new(job, 0);
            let r = fetch::host(job, fp, link, &cancel, &mut progress).await;
            progress.report(true);
            r
        }
        (Op::Fetch(fp), Conn::Agentless(ssh)) => {
            let mut progress = Progress::new(job, 0);
            let r = agentless::fetch(job, fp, ssh, &cancel, &mut progress).await;
            progress.report(true);
            r
        }
    };
    drop(lease);
    match outcome {
        Ok(line) => {
            say(job, rec, files, &line).await;
            let exit = Exit {
                code: Some(0),
                signal: None,
                wall_ms: started.elapsed().as_millis() as u64,
                user_ms: 0,
                sys_ms: 0,
                max_rss_kb: 0,
                timed_out: false,
            };
            rec.set_exit(&exit);
            rec.verdict = Verdict::Ok;
            job.emit(HostEvent::Exit {
                exit,
                verdict: Verdict::Ok,
            });
        }
        Err(e) => {
            let e = if cancel.is_cancelled() { killed() } else { e };
            job.fail(rec, e).await
        }
    }
}

/// A line of the host's output (stdout), stored and followed like a command's.
async fn say(job: &HostJob<'_>, rec: &mut HostRecord, files: &mut HostSpool, line: &str) {
    let data = bytes::Bytes::from(format!("{line}\n").into_bytes());
    rec.stdout_bytes += data.len() as u64;
    let offset = files.output(Stream::Stdout, data.clone()).await;
    job.tracked.log.push_output(
        job.run_id,
        job.name.clone(),
        Stream::Stdout,
        offset,
        data,
        files.written().clone(),
    );
}
