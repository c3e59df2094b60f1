//! A site daemon: takes its site's shares of runs from the bus (queue group of the site),
//! checks who asks and what they may do, claims each job once, runs it as a run of its own
//! (its own pool, run store and audit log) and streams the hosts' events to JetStream.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::kv::CreateErrorKind;
use futures::StreamExt as _;

use super::{auth, lock, Bus};
use crate::daemon::registry::Control;
use crate::daemon::run;
use crate::daemon::runlog::Entry;
use crate::daemon::server::Daemon;
use crate::inventory::Inventory;
use crate::model::Host;
use crate::proto::bus::{self as pb, Action, JobMsg, Presence, Reply, SiteRun};
use crate::proto::daemon::{Event, HostEvent, RunRequest};

/// Unacknowledged JetStream publishes per job before it waits for acks.
const ACK_WINDOW: usize = 256;
/// Tries of one publish whose ack failed (the stream drops duplicates by message id).
const PUBLISH_TRIES: usize = 5;

/// Serve the site's run requests and the fleet's kills until the daemon stops.
pub async fn serve(d: Arc<Daemon>, bus: Arc<Bus>, site: String) {
    let names = &bus.names;
    let runs = bus
        .client
        .queue_subscribe(names.site_run(&site), names.site_queue(&site))
        .await;
    let kills = bus.client.subscribe(names.all_job_kills()).await;
    let (mut runs, mut kills) = match (runs, kills) {
        (Ok(r), Ok(k)) => (r, k),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("site {site}: subscribing: {e}; this daemon serves nothing");
            return;
        }
    };
    tracing::info!(%site, daemon = %bus.id, "serving site");
    let inv = Arc::new(InventoryCache::default());
    loop {
        tokio::select! {
            m = runs.next() => match m {
                Some(m) => { tokio::spawn(take(d.clone(), bus.clone(), inv.clone(), m)); }
                None => break,
            },
            k = kills.next() => match k {
                Some(k) => kill(&d, &bus, k).await,
                None => break,
            },
            _ = d.shutdown.cancelled() => break,
        }
    }
    let _ = runs.unsubscribe().await;
    let _ = kills.unsubscribe().await;
}

async fn answer(bus: &Bus, reply: Option<&async_nats::Subject>, r: &Reply) {
    let Some(to) = reply else { return };
    match pb::encode(r) {
        Ok(b) => {
            if let Err(e) = bus.client.publish(to.clone(), b.into()).await {
                tracing::warn!("answering a request: {e}");
            }
            // The answer is on the wire before anything runs.
            let _ = tokio::time::timeout(Duration::from_secs(5), bus.client.flush()).await;
        }
        Err(e) => tracing::error!("{e}"),
    }
}

/// One run request: check, claim, answer, run, stream.
async fn take(d: Arc<Daemon>, bus: Arc<Bus>, inv: Arc<InventoryCache>, m: async_nats::Message) {
    let reply = m.reply.clone();
    let refuse = |reason: String| {
        let bus = bus.clone();
        let reply = reply.clone();
        async move {
            tracing::warn!("refused a request: {reason}");
            answer(&bus, reply.as_ref(), &Reply::Refused { reason }).await
        }
    };
    let (op, body) = match auth::verify(bus.operators.as_ref(), &bus.names.fleet, &m.payload) {
        Ok(v) => v,
        Err(e) => return refuse(e).await,
    };
    if let Err(e) = auth::check(op, &body.action) {
        return refuse(e).await;
    }
    let Action::Run(share) = body.action else {
        return refuse("not a run request".into()).await;
    };
    let site = bus.site.clone().unwrap_or_default();
    if share.site != site || !pb::valid_token(&share.job) {
        return refuse(format!(
            "this daemon serves site {site}, not {}",
            share.site
        ))
        .await;
    }
    let hosts = match inv.resolve(&d, &site, &share.hosts).await {
        Ok(h) => h,
        Err(e) => return refuse(e).await,
    };
    // Claim the job once, before anything runs and before answering.
    match bus.claims.create(&share.job, bus.id.clone().into()).await {
        Ok(_) => {}
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let holder = match bus.claims.get(&share.job).await {
                Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                _ => "another daemon".into(),
            };
            tracing::info!(job = %share.job, %holder, "job claimed before: not run again");
            return answer(&bus, reply.as_ref(), &Reply::Claimed { daemon: holder }).await;
        }
        Err(e) => return refuse(format!("claiming job {}: {e}", share.job)).await,
    }
    let who = if share.operator == op.name || share.operator.starts_with(&format!("{} (", op.name))
    {
        op.name.clone()
    } else {
        format!("{} (as {})", op.name, share.operator)
    };
    let req = RunRequest {
        hosts,
        selection: share.selection.clone(),
        command: share.command.clone(),
        env: share.env.clone(),
        timeout_ms: share.timeout_ms,
        fanout: share.fanout,
        // New host keys are this site's business: never accepted on a remote word.
        accept_new_host_keys: false,
        who: format!("{who} via {}", body.from),
        origin: share.origin.clone(),
        // Shares never carry a sudo password (the router refuses `--sudo` for site hosts).
        sudo: None,
        // Nor stdin.
        stdin: false,
        // No terminal here to ask: unknown keys are refused unless this site accepts new ones.
        ask_host_keys: false,
    };
    let t = match run::start(&d, req, true).await {
        Ok(t) => t,
        Err(e) => {
            // Claimed but nothing ran: say so in the job's events.
            let _ = bus
                .claims
                .put(&share.job, format!("{}: failed to start", bus.id).into())
                .await;
            answer(
                &bus,
                reply.as_ref(),
                &Reply::Accepted {
                    daemon: bus.id.clone(),
                },
            )
            .await;
            let mut p = Publisher::new(&bus, &share.job);
            p.send(&JobMsg::Done { error: Some(e) }).await;
            p.finish().await;
            return;
        }
    };
    let Control::Run { run_id } = t.control else {
        return;
    };
    lock(&bus.jobs).insert(share.job.clone(), (run_id, op.key.clone()));
    answer(
        &bus,
        reply.as_ref(),
        &Reply::Accepted {
            daemon: bus.id.clone(),
        },
    )
    .await;
    tracing::info!(job = %share.job, run_id, who = %who, hosts = share.hosts.len(), "job taken");
    stream_events(&bus, &share, &t).await;
    lock(&bus.jobs).remove(&share.job);
}

/// Follow the job's run and publish its hosts' events.
async fn stream_events(bus: &Bus, share: &SiteRun, t: &crate::daemon::registry::Tracked) {
    let mut p = Publisher::new(bus, &share.job);
    let mut cursor = t.log.follow();
    let mut error = None;
    loop {
        let batch = cursor.next_batch(256).await;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            let msg = match &*e {
                Entry::Output(o) => match o.bytes(&t.log.dir).await {
                    Ok(data) => JobMsg::Host {
                        host: o.host.to_string(),
                        event: HostEvent::Output {
                            stream: o.stream,
                            data,
                        },
                    },
                    Err(err) => {
                        tracing::error!(job = %share.job, "output read back: {err}");
                        continue;
                    }
                },
                Entry::Run(Event::Host { host, event, .. }) => JobMsg::Host {
                    host: host.clone(),
                    event: event.clone(),
                },
                Entry::Run(Event::Error { message }) => {
                    error = Some(message.clone());
                    continue;
                }
                _ => continue,
            };
            p.send(&msg).await;
        }
    }
    p.send(&JobMsg::Done { error }).await;
    p.finish().await;
}

/// Publishes one job's messages to JetStream with a window of acks in flight; a message
/// whose ack fails is sent again under the same message id (the stream keeps one).
struct Publisher<'a> {
    bus: &'a Bus,
    subject: String,
    job: String,
    seq: u64,
    inflight: VecDeque<(u64, bytes::Bytes, PublishAckFuture)>,
}

impl<'a> Publisher<'a> {
    fn new(bus: &'a Bus, job: &str) -> Publisher<'a> {
        Publisher {
            bus,
            subject: bus.names.job_events(job),
            job: job.to_string(),
            seq: 0,
            inflight: VecDeque::new(),
        }
    }

    async fn publish(&self, seq: u64, payload: bytes::Bytes) -> Option<PublishAckFuture> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{}-{seq}", self.job).as_str());
        for _ in 0..PUBLISH_TRIES {
            match self
                .bus
                .js
                .publish_with_headers(self.subject.clone(), headers.clone(), payload.clone())
                .await
            {
                Ok(f) => return Some(f),
                Err(e) => {
                    tracing::warn!(job = %self.job, "publish: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        None
    }

    async fn send(&mut self, msg: &JobMsg) {
        let payload: bytes::Bytes = match pb::encode(msg) {
            Ok(b) => b.into(),
            Err(e) => return tracing::error!("{e}"),
        };
        self.seq += 1;
        if let Some(f) = self.publish(self.seq, payload.clone()).await {
            self.inflight.push_back((self.seq, payload, f));
        }
        while self.inflight.len() > ACK_WINDOW {
            self.settle_one().await;
        }
    }

    async fn settle_one(&mut self) {
        let Some((seq, payload, f)) = self.inflight.pop_front() else {
            return;
        };
        let mut ack = f.await;
        let mut tries = 1;
        while let Err(e) = &ack {
            if tries >= PUBLISH_TRIES {
                tracing::error!(job = %self.job, seq, "event not stored after {tries} tries: {e}");
                return;
            }
            tracing::warn!(job = %self.job, seq, "ack: {e}; sending again");
            tokio::time::sleep(Duration::from_millis(200)).await;
            tries += 1;
            ack = match self.publish(seq, payload.clone()).await {
                Some(f) => f.await,
                None => return,
            };
        }
    }

    async fn finish(mut self) {
        while !self.inflight.is_empty() {
            self.settle_one().await;
        }
    }
}

/// A signed kill for a job this daemon may hold.
async fn kill(d: &Daemon, bus: &Bus, m: async_nats::Message) {
    let (op, body) = match auth::verify(bus.operators.as_ref(), &bus.names.fleet, &m.payload) {
        Ok(v) => v,
        Err(e) => return tracing::warn!("refused a kill: {e}"),
    };
    let Action::Kill { job, host, signal } = &body.action else {
        return;
    };
    let Some((run_id, owner)) = lock(&bus.jobs).get(job).cloned() else {
        return; // another daemon's job (every daemon of the site hears every kill)
    };
    if owner != op.key && op.rights < auth::Rights::Admin {
        return tracing::warn!(%job, "refused a kill from {}: not their job, not admin", op.name);
    }
    if auth::check(op, &body.action).is_err() {
        return tracing::warn!(%job, "refused a kill from {}: rights", op.name);
    }
    tracing::info!(%job, who = %op.name, signal, "kill");
    d.runs.kill(run_id, host.as_deref(), *signal);
    crate::daemon::audit::action(
        &d.audit_log,
        &op.name,
        job,
        "kill",
        Some(serde_json::json!({ "host": host, "signal": signal, "from": body.from })),
    )
    .await;
}

/// Another daemon of our site went silent: reconnect the hosts it had, so the next jobs on
/// them find a live agent here.
pub async fn take_over(d: Arc<Daemon>, bus: Arc<Bus>, gone: Presence) {
    let site = bus.site.clone().unwrap_or_default();
    let names: Vec<String> = gone.hosts.iter().map(|(n, _)| n.clone()).collect();
    tracing::warn!(daemon = %gone.daemon, %site, hosts = names.len(), "a daemon of this site went away: taking over its hosts");
    let inv = InventoryCache::default();
    let hosts = match inv.resolve(&d, &site, &names).await {
        Ok(h) => h,
        Err(e) => return tracing::error!("taking over: {e}"),
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let tasks = hosts.into_iter().map(|h| {
        let (d, sem) = (d.clone(), sem.clone());
        async move {
            let _p = sem.acquire().await;
            if let Err(e) = d.pool.acquire(&h, false).await {
                tracing::warn!(host = %h.name, "taking over: {e}");
            }
        }
    });
    futures::future::join_all(tasks).await;
    crate::daemon::audit::action(
        &d.audit_log,
        &bus.id,
        &gone.daemon,
        "took over hosts",
        Some(serde_json::json!({ "site": site, "hosts": names })),
    )
    .await;
}

/// An inventory as loaded: its file, that file's mtime then, the hosts.
type Loaded = (PathBuf, Option<SystemTime>, Arc<Inventory>);

/// The site daemon's inventory, reloaded when the file changes.
#[derive(Default)]
struct InventoryCache {
    cached: tokio::sync::Mutex<Option<Loaded>>,
}

impl InventoryCache {
    /// The named hosts from this daemon's own inventory; each must be of `site`.
    async fn resolve(&self, d: &Daemon, site: &str, names: &[String]) -> Result<Vec<Host>, String> {
        let path = d.opts.inventory.clone().ok_or_else(|| {
            "this site daemon has no inventory (hosts = … in its daemon.toml)".to_string()
        })?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let inv = {
            let mut c = self.cached.lock().await;
            match &*c {
                Some((p, m, inv)) if *p == path && *m == mtime => inv.clone(),
                _ => {
                    let p = path.clone();
                    let inv = tokio::task::spawn_blocking(move || Inventory::load(&p))
                        .await
                        .map_err(|e| format!("loading the inventory: {e}"))?
                        .map_err(|e| e.to_string())?;
                    let inv = Arc::new(inv);
                    *c = Some((path.clone(), mtime, inv.clone()));
                    inv
                }
            }
        };
        let mut hosts = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        let mut foreign = Vec::new();
        for n in names {
            match inv.host(n) {
                Some(h) if h.tag("site") == Some(site) => hosts.push(h.clone()),
                Some(_) => foreign.push(n.as_str()),
                None => unknown.push(n.as_str()),
            }
        }
        if !unknown.is_empty() {
            return Err(format!(
                "not in site {site}'s inventory ({}): {}",
                path.display(),
                unknown.join(", ")
            ));
        }
        if !foreign.is_empty() {
            return Err(format!("not of site {site}: {}", foreign.join(", ")));
        }
        Ok(hosts)
    }
}
