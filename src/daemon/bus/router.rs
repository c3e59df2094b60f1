//! The operator's side: a run's hosts of other sites are sent, one share per site, to that
//! site's daemons; their events come back through JetStream and go through the same spool,
//! log, verdict and audit as a local host's, so every client sees one run.
//!
//! **No double execution.** A share is sent with a job key unique over the fleet
//! (`<router>-<run>-<site>`). A site daemon runs a job only after it has created the job's
//! key in the claims bucket (create-if-absent, on the replicated KV), and answers only after
//! that. So the router may re-send a request that got no answer (the same key: a daemon
//! that already claimed it answers `Claimed`, nothing runs twice), and never sends a job
//! under a new key on its own. A job whose daemon goes silent for [`super::DEAD_AFTER`]
//! after accepting it is reported `lost` for each host without a result: it may have run,
//! so it is not re-sent; only a heist's own retry policy may run that step again, as a new
//! attempt the operator wrote down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::{lock, Bus};
use crate::daemon::inflight::Killer;
use crate::daemon::run::HostJob;
use crate::daemon::server::Daemon;
use crate::model::{ErrorKind, HostError, Verdict};
use crate::proto::bus::{self as pb, Action, JobMsg, Reply, SiteRun};
use crate::proto::daemon::{HostEvent, RunRequest};
use crate::store::{HostRecord, HostSpool};

/// How long a site may take to answer one request before it is sent again (same job key).
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How long to keep trying a site that nobody serves (or that does not answer).
const SITE_WAIT: Duration = Duration::from_secs(20);
/// Events queued per remote host.
const HOST_QUEUE: usize = 256;
/// Extra time over the command's timeout before the router gives up on a remote host.
const REMOTE_GRACE: Duration = Duration::from_secs(30);

/// One remote host's events, and how to kill its job.
pub struct HostRoute {
    events: mpsc::Receiver<HostEvent>,
    killer: JobKiller,
}

/// Where a share went, once a daemon took it; kills asked for before wait here.
#[derive(Default)]
struct Target {
    sent: OnceLock<(Arc<Bus>, String)>,
    pending: Mutex<Vec<(String, i32)>>,
}

/// Kills a remote host's job: a signed kill on the job's kill subject.
#[derive(Clone)]
pub struct JobKiller {
    target: Arc<Target>,
    host: String,
}

async fn send_kill(bus: &Bus, job: &str, host: &str, signal: i32) -> Result<(), String> {
    let payload = bus.sign(Action::Kill {
        job: job.to_string(),
        host: Some(host.to_string()),
        signal,
    })?;
    bus.client
        .publish(bus.names.job_kill(job), payload.into())
        .await
        .map_err(|e| format!("sending a kill over NATS: {e}"))
}

impl JobKiller {
    pub async fn kill(&self, signal: i32) -> Result<(), String> {
        let sent = {
            // Under the lock that the share takes to mark itself sent: no kill falls between.
            let mut pending = lock(&self.target.pending);
            let sent = self.target.sent.get().cloned();
            if sent.is_none() {
                pending.push((self.host.clone(), signal));
            }
            sent
        };
        match sent {
            Some((bus, job)) => send_kill(&bus, &job, &self.host, signal).await,
            None => Ok(()),
        }
    }
}

/// The site a host belongs to, when the bus should serve it: the host has a `site` tag, this
/// daemon is on a bus (or will be: its options name one) and serves another site or none.
pub fn remote_site<'h>(d: &Daemon, host: &'h crate::model::Host) -> Option<&'h str> {
    let cfg = d.opts.bus.as_ref()?;
    let site = host.tag("site")?;
    (cfg.site.as_deref() != Some(site)).then_some(site)
}

/// Split a run: start one share per remote site and return each remote host's route, by
/// index in `req.hosts`. Empty when the daemon is not on a bus or every host is local.
pub fn split(d: &Arc<Daemon>, req: &RunRequest, run_id: u64) -> HashMap<usize, HostRoute> {
    let mut routes = HashMap::new();
    let mut by_site: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, h) in req.hosts.iter().enumerate() {
        if let Some(site) = remote_site(d, h) {
            by_site.entry(site.to_string()).or_default().push(i);
        }
    }
    for (site, idx) in by_site {
        let target = Arc::new(Target::default());
        let mut senders = HashMap::new();
        for &i in &idx {
            let name = req.hosts[i].name.clone();
            let (tx, rx) = mpsc::channel(HOST_QUEUE);
            senders.insert(name.clone(), tx);
            let killer = JobKiller {
                target: target.clone(),
                host: name,
            };
            routes.insert(i, HostRoute { events: rx, killer });
        }
        let share = SiteRun {
            job: String::new(),
            run: run_id.to_string(),
            site: site.clone(),
            hosts: idx.iter().map(|&i| req.hosts[i].name.clone()).collect(),
            selection: req.selection.clone(),
            command: req.command.clone(),
            env: req.env.clone(),
            timeout_ms: req.timeout_ms,
            fanout: req.fanout,
            operator: req.who.clone(),
            origin: req.origin.clone(),
        };
        if req.sudo.is_some() {
            // The sudo password stays on this machine: a site would need it in its share.
            let msg = format!(
                "--sudo does not go over the bus yet: host of site `{site}`, run it from a \
                 daemon of that site"
            );
            tokio::spawn(async move { fail_all(&mut senders, ErrorKind::Refused, &msg).await });
            continue;
        }
        tokio::spawn(run_share(d.clone(), share, senders, target));
    }
    routes
}

/// The bus, waiting (bounded) for a daemon that is still joining it.
async fn bus_of(d: &Daemon) -> Result<Arc<Bus>, HostError> {
    let deadline = Instant::now() + SITE_WAIT;
    loop {
        if let Some(b) = d.bus.get() {
            return Ok(b.clone());
        }
        if Instant::now() >= deadline || d.shutdown.is_cancelled() {
            let msg = format!(
                "not connected to NATS within {}s (see the daemon's log)",
                SITE_WAIT.as_secs()
            );
            return Err(HostError::new(ErrorKind::Unreachable, msg));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send every host of the share `kind`/`message` (no result came back for them).
async fn fail_all(
    hosts: &mut HashMap<String, mpsc::Sender<HostEvent>>,
    kind: ErrorKind,
    message: &str,
) {
    for (_, tx) in hosts.drain() {
        let _ = tx
            .send(HostEvent::Failed {
                kind,
                message: message.to_string(),
            })
            .await;
    }
}

/// One site's share: listen for its events, send it, pass each host's events on until every
/// host has its result (or the daemon running it is gone).
async fn run_share(
    d: Arc<Daemon>,
    mut share: SiteRun,
    mut hosts: HashMap<String, mpsc::Sender<HostEvent>>,
    target: Arc<Target>,
) {
    let bus = match bus_of(&d).await {
        Ok(b) => b,
        Err(e) => return fail_all(&mut hosts, e.kind, &e.message).await,
    };
    share.job = pb::token_of(&format!("{}-{}-{}", bus.id, share.run, share.site));
    share.run = format!("{}-{}", bus.id, share.run);
    let (job, site) = (share.job.clone(), share.site.clone());
    // Send and start listening at once: the stream keeps every event from the first, so a
    // consumer made after the site started misses nothing (one round trip saved).
    let (messages, daemon) = tokio::join!(job_messages(&bus, &job), send(&bus, &share));
    let daemon = match daemon {
        Ok(d) => d,
        Err(e) => return fail_all(&mut hosts, e.kind, &e.message).await,
    };
    let mut messages = match messages {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("site {site}: listening for the job's events: {e}");
            return fail_all(&mut hosts, ErrorKind::Internal, &msg).await;
        }
    };
    tracing::info!(%job, %site, %daemon, hosts = hosts.len(), "share accepted");
    let pending = {
        let mut pending = lock(&target.pending);
        let _ = target.sent.set((bus.clone(), job.clone()));
        std::mem::take(&mut *pending)
    };
    for (host, signal) in pending {
        if let Err(e) = send_kill(&bus, &job, &host, signal).await {
            tracing::warn!(%job, "{e}");
        }
    }
    // The daemon's events prove it alive as well as its heartbeats do.
    let mut heard = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !hosts.is_empty() {
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(msg)) => {
                    heard = Instant::now();
                    match pb::decode::<JobMsg>(&msg.payload) {
                        Ok(JobMsg::Host { host, event }) => {
                            let last = matches!(event, HostEvent::Exit { .. } | HostEvent::Failed { .. });
                            if let Some(tx) = hosts.get(&host) {
                                let _ = tx.send(event).await;
                            }
                            if last {
                                hosts.remove(&host);
                            }
                        }
                        Ok(JobMsg::Done { error }) => {
                            let msg = match error {
                                Some(e) => format!("site {site} ({daemon}): {e}"),
                                None => format!("site {site} ({daemon}) finished the job without a result for this host"),
                            };
                            return fail_all(&mut hosts, ErrorKind::Internal, &msg).await;
                        }
                        Err(e) => tracing::warn!(%job, "job event: {e}"),
                    }
                }
                Some(Err(e)) => tracing::debug!(%job, "job events: {e}"),
                None => {
                    let msg = format!("site {site}: the job's event stream ended");
                    return fail_all(&mut hosts, ErrorKind::Lost, &msg).await;
                }
            },
            _ = tick.tick() => {
                if !bus.alive(&daemon, heard) {
                    let msg = format!(
                        "site {site}: daemon {daemon} went away while this ran (no heartbeat for {}s); \
                         it may have run, so it is not sent again",
                        super::DEAD_AFTER.as_secs()
                    );
                    tracing::warn!(%job, "{msg}");
                    return fail_all(&mut hosts, ErrorKind::Lost, &msg).await;
                }
            }
        }
    }
}

/// An ordered consumer over the job's events, from the first.
async fn job_messages(
    bus: &Bus,
    job: &str,
) -> Result<async_nats::jetstream::consumer::push::Ordered, String> {
    super::ordered(bus, bus.names.job_events(job)).await
}

/// Send the share to its site until a daemon takes it (or says it took it before). Every
/// try carries the same job key: see the module docs.
async fn send(bus: &Bus, share: &SiteRun) -> Result<String, HostError> {
    let site = &share.site;
    let payload: bytes::Bytes = bus
        .sign(Action::Run(share.clone()))
        .map_err(|e| HostError::new(ErrorKind::Refused, e))?
        .into();
    let subject = bus.names.site_run(site);
    let deadline = Instant::now() + SITE_WAIT;
    let mut why;
    loop {
        let answer = tokio::time::timeout(
            ANSWER_WAIT,
            bus.client.request(subject.clone(), payload.clone()),
        )
        .await;
        match answer {
            Ok(Ok(msg)) => match pb::decode::<Reply>(&msg.payload) {
                Ok(Reply::Accepted { daemon }) | Ok(Reply::Claimed { daemon }) => {
                    return Ok(daemon)
                }
                Ok(Reply::Refused { reason }) => {
                    return Err(HostError::new(
                        ErrorKind::Refused,
                        format!("site {site} refused: {reason}"),
                    ))
                }
                Ok(Reply::Done) => why = format!("site {site} answered oddly"),
                Err(e) => why = format!("site {site}: {e}"),
            },
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                why = format!("no daemon serves site {site}");
            }
            Ok(Err(e)) => why = format!("site {site}: {e}"),
            Err(_) => why = format!("site {site} did not answer within {ANSWER_WAIT:?}"),
        }
        if Instant::now() >= deadline {
            let kind = if why.starts_with("no daemon") {
                ErrorKind::Unreachable
            } else {
                ErrorKind::Lost
            };
            return Err(HostError::new(
                kind,
                format!("{why} (tried for {}s)", SITE_WAIT.as_secs()),
            ));
        }
        tracing::debug!(job = %share.job, "{why}; sending again");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A remote host's part of a run: its events, spooled and logged as a local host's.
pub(in crate::daemon) async fn drive(
    job: &HostJob<'_>,
    rec: &mut HostRecord,
    files: &mut HostSpool,
    mut route: HostRoute,
) {
    job.set_killer(Killer::Bus(route.killer.clone()));
    let backstop = job
        .req
        .timeout_ms
        .map(|t| Duration::from_millis(t) + REMOTE_GRACE);
    let started = tokio::time::Instant::now();
    loop {
        let sleep = async {
            match backstop {
                Some(b) => tokio::time::sleep_until(started + b).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            e = route.events.recv() => e,
            _ = sleep => {
                let msg = "the site gave no result in time after the command's timeout";
                return job.fail(rec, HostError::new(ErrorKind::Timeout, msg)).await;
            }
        };
        match ev {
            Some(HostEvent::Output { stream, data }) => {
                match stream {
                    crate::model::Stream::Stdout => rec.stdout_bytes += data.len() as u64,
                    crate::model::Stream::Stderr => rec.stderr_bytes += data.len() as u64,
                }
                let data = bytes::Bytes::from(data);
                let offset = files.output(stream, data.clone()).await;
                job.tracked.log.push_output(
                    job.run_id,
                    job.name.clone(),
                    stream,
                    offset,
                    data,
                    files.written().clone(),
                );
            }
            Some(e @ (HostEvent::Started { .. } | HostEvent::Progress { .. })) => job.emit(e),
            Some(HostEvent::Exit { exit, verdict }) => {
                rec.set_exit(&exit);
                // The site knows of kills it delivered; so do we (ours went through it).
                let killed = job.kill_signal().is_some() || verdict == Verdict::Killed;
                rec.verdict = Verdict::from_exit(&exit, killed);
                let verdict = rec.verdict;
                return job.emit(HostEvent::Exit { exit, verdict });
            }
            Some(HostEvent::Failed { kind, message }) => {
                return job.fail(rec, HostError::new(kind, message)).await;
            }
            None => {
                let msg = "the site's share ended without a result for this host";
                return job.fail(rec, HostError::new(ErrorKind::Lost, msg)).await;
            }
        }
    }
}
