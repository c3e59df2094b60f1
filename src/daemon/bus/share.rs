//! Runs and heists seen from any machine on the bus: the owning daemon publishes each one's
//! events (the client protocol's, as its own followers get them) to
//! `crew.<fleet>.run.<id>.log` in JetStream and lists it in KV `runs`; another daemon lists
//! them for `crew runs`, replays one from its beginning and follows it live for
//! `crew attach` (and the console), and forwards answers and interrupts to the owner, which
//! checks the signer's rights. Audit lines go to `crew.<fleet>.audit` too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use super::{auth, Bus};
use crate::daemon::registry::Tracked;
use crate::daemon::server::{Daemon, Sink};
use crate::daemon::{audit, follow, heist, server};
use crate::proto::bus::{self as pb, Action, ListedRun, LogMsg, Reply};
use crate::proto::daemon::{Event, RunInfo, RunKind};

/// How often a run's listing is refreshed while it goes on.
const LIST_EVERY: Duration = Duration::from_secs(1);

/// The id of one of our runs on the bus.
pub fn bus_id(bus: &Bus, local: &str) -> String {
    format!("{}-{}", bus.id, pb::token_of(local))
}

/// Our own run named by its bus id (`<our id>-<run>`): the run's id here. Other names as
/// they are.
pub fn local_id(d: &Daemon, run: &str) -> String {
    match d.bus.get() {
        Some(bus) => run
            .strip_prefix(&format!("{}-", bus.id))
            .unwrap_or(run)
            .to_string(),
        None => run.to_string(),
    }
}

/// Publish a listed run or heist of this daemon to the bus (no-op off the bus).
pub fn publish(d: &Arc<Daemon>, t: &Arc<Tracked>) {
    let Some(bus) = d.bus.get() else { return };
    if t.hidden {
        return;
    }
    tokio::spawn(publish_log(bus.clone(), t.clone()));
}

async fn list(bus: &Bus, key: &str, info: RunInfo) {
    let listed = ListedRun {
        owner: bus.id.clone(),
        info: RunInfo {
            id: key.to_string(),
            ..info
        },
    };
    match serde_json::to_vec(&listed) {
        Ok(v) => {
            if let Err(e) = bus.runs.put(key, v.into()).await {
                tracing::debug!(run = %key, "listing: {e}");
            }
        }
        Err(e) => tracing::error!("listing: {e}"),
    }
}

async fn publish_log(bus: Arc<Bus>, t: Arc<Tracked>) {
    let key = bus_id(&bus, &t.id);
    let subject = bus.names.run_log(&key);
    list(&bus, &key, t.info()).await;
    let mut cursor = t.log.follow();
    let mut seq = 0u64;
    let mut listed = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    let send = |ev: Event, seq: u64| {
        let bus = bus.clone();
        let subject = subject.clone();
        let id = format!("{key}-{seq}");
        async move {
            let payload: bytes::Bytes = match pb::encode(&LogMsg { event: ev }) {
                Ok(b) => b.into(),
                Err(e) => {
                    tracing::error!("{e}");
                    return None;
                }
            };
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            for _ in 0..5 {
                match bus
                    .js
                    .publish_with_headers(subject.clone(), h.clone(), payload.clone())
                    .await
                {
                    Ok(f) => return Some(f),
                    Err(e) => {
                        tracing::warn!("run log publish: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            None
        }
    };
    let mut tick = tokio::time::interval(LIST_EVERY);
    let mut last_info = None;
    loop {
        // The listing follows the run's state also while no event comes (a heist waiting
        // for an answer); next_batch only waits at its end, so leaving it for a tick loses
        // nothing.
        let batch = tokio::select! {
            b = cursor.next_batch(256) => b,
            _ = tick.tick() => {
                let info = t.info();
                if last_info.as_ref() != Some(&info) {
                    list(&bus, &key, info.clone()).await;
                    last_info = Some(info);
                    listed = Instant::now();
                }
                continue;
            }
        };
        if batch.is_empty() {
            break;
        }
        for e in batch {
            let Some(ev) = follow::event_of(&t, &e).await else {
                continue;
            };
            seq += 1;
            if let Some(f) = send(ev, seq).await {
                acks.push_back(f);
            }
            while acks.len() > 256 {
                if let Some(f) = acks.pop_front() {
                    if let Err(e) = f.await {
                        tracing::warn!(run = %key, "run log ack: {e}");
                    }
                }
            }
        }
        if listed.elapsed() >= LIST_EVERY {
            let info = t.info();
            list(&bus, &key, info.clone()).await;
            last_info = Some(info);
            listed = Instant::now();
        }
    }
    if t.kind == RunKind::Heist {
        seq += 1;
        if let Some(f) = send(Event::HeistDone { run: key.clone() }, seq).await {
            acks.push_back(f);
        }
    }
    for f in acks {
        if let Err(e) = f.await {
            tracing::warn!(run = %key, "run log ack: {e}");
        }
    }
    list(&bus, &key, t.info()).await;
}

/// Runs and heists of other daemons on the bus (ours are listed from the registry).
pub async fn list_remote(d: &Daemon) -> Vec<RunInfo> {
    let Some(bus) = super::ready(d, super::JOIN_WAIT).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let keys = match bus.runs.keys().await {
        Ok(k) => k,
        Err(e) => {
            tracing::debug!("listing bus runs: {e}");
            return out;
        }
    };
    let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
    for k in keys {
        if let Ok(Some(v)) = bus.runs.get(&k).await {
            if let Ok(l) = serde_json::from_slice::<ListedRun>(&v) {
                if l.owner != bus.id {
                    out.push(l.info);
                }
            }
        }
    }
    out.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    out
}

/// The daemon owning a bus run id, when it is on the bus and not us.
async fn owner(bus: &Bus, run: &str) -> Option<String> {
    if !pb::valid_token(run) {
        return None;
    }
    let v = bus.runs.get(run).await.ok()??;
    let l: ListedRun = serde_json::from_slice(&v).ok()?;
    (l.owner != bus.id).then_some(l.owner)
}

/// `crew attach RUN` for a run of another daemon: its log from the stream, from the first
/// event, then live until it ends. False when `run` is not on the bus.
pub async fn attach(d: &Arc<Daemon>, run: &str, sink: &Sink) -> bool {
    let Some(bus) = super::ready(d, super::JOIN_WAIT).await else {
        return false;
    };
    let Some(owner) = owner(&bus, run).await else {
        return false;
    };
    let (run, sink) = (run.to_string(), sink.clone());
    tokio::spawn(async move {
        if let Err(message) = replay(&bus, &run, &owner, &sink).await {
            sink.send(Event::Error { message }).await;
        }
    });
    true
}

async fn replay(bus: &Bus, run: &str, owner: &str, sink: &Sink) -> Result<(), String> {
    let mut msgs = super::ordered(bus, bus.names.run_log(run)).await?;
    let since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            m = msgs.next() => match m {
                Some(Ok(m)) => {
                    let mut ev = pb::decode::<LogMsg>(&m.payload)?.event;
                    // Here the run is known by its bus id: answers and interrupts sent with
                    // it reach its owner.
                    if let Event::Heist { run: r, .. }
                    | Event::HeistOutput { run: r, .. }
                    | Event::HeistDone { run: r } = &mut ev
                    {
                        *r = run.to_string();
                    }
                    let last = ev.is_final();
                    if !sink.deliver(ev).await || last {
                        return Ok(());
                    }
                }
                Some(Err(e)) => tracing::debug!(%run, "following: {e}"),
                None => return Err(format!("{run}: the stream ended")),
            },
            _ = tick.tick() => {
                // A run whose owner went away never ends by itself.
                if !bus.alive(owner, since) && !listed_over(bus, run).await {
                    return Err(format!(
                        "{run}: its daemon {owner} went away before it finished"
                    ));
                }
            }
        }
    }
}

async fn listed_over(bus: &Bus, run: &str) -> bool {
    match bus.runs.get(run).await {
        Ok(Some(v)) => serde_json::from_slice::<ListedRun>(&v)
            .map(|l| l.info.state.is_over())
            .unwrap_or(false),
        _ => false,
    }
}

/// Answer or interrupt a run of another daemon: signed, sent to its owner, which checks.
/// None when `run` is not another daemon's run on the bus.
pub async fn forward(d: &Daemon, run: &str, action: Action) -> Option<Result<(), String>> {
    let bus = super::ready(d, super::JOIN_WAIT).await?;
    let owner = owner(&bus, run).await?;
    let r = async {
        let payload = bus.sign(action)?;
        let m = bus
            .client
            .request(bus.names.ctl(&owner), payload.into())
            .await
            .map_err(|e| format!("{run}: its daemon {owner} did not answer: {e}"))?;
        match pb::decode::<Reply>(&m.payload)? {
            Reply::Done | Reply::Accepted { .. } | Reply::Claimed { .. } => Ok(()),
            Reply::Refused { reason } => Err(reason),
        }
    };
    Some(r.await)
}

/// Answers and interrupts for our runs, from other machines (signed; rights checked here).
pub async fn serve_ctl(d: Arc<Daemon>, bus: Arc<Bus>) {
    let mut sub = match bus.client.subscribe(bus.names.ctl(&bus.id)).await {
        Ok(s) => s,
        Err(e) => return tracing::error!("subscribing to {}: {e}", bus.names.ctl(&bus.id)),
    };
    loop {
        let m = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => return },
            _ = d.shutdown.cancelled() => return,
        };
        let r = ctl(&d, &bus, &m.payload).await;
        let reply = match r {
            Ok(()) => Reply::Done,
            Err(reason) => Reply::Refused { reason },
        };
        if let (Some(to), Ok(b)) = (m.reply, pb::encode(&reply)) {
            let _ = bus.client.publish(to, b.into()).await;
        }
    }
}

async fn ctl(d: &Arc<Daemon>, bus: &Bus, payload: &[u8]) -> Result<(), String> {
    let (op, body) = auth::verify(bus.operators.as_ref(), &bus.names.fleet, payload)?;
    auth::check(op, &body.action)?;
    let who = format!("{} via {}", op.name, body.from);
    let local = |run: &str| {
        run.strip_prefix(&format!("{}-", bus.id))
            .map(str::to_string)
            .ok_or_else(|| format!("{run} is not a run of {}", bus.id))
    };
    match &body.action {
        Action::Answer {
            run,
            ask_id,
            choice,
        } => heist::answer(d, &local(run)?, *ask_id, choice, &who).await,
        Action::Interrupt { run, kill } => server::interrupt(d, &local(run)?, *kill, &who).await,
        _ => Err("not a control request".into()),
    }
}

/// Mirror this daemon's audit lines to `crew.<fleet>.audit` (JetStream), each with the
/// daemon's id in a header.
pub fn mirror_audit(d: &Arc<Daemon>, bus: &Arc<Bus>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    audit::mirror_to(&d.audit_log, tx);
    let bus = bus.clone();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Crew-Daemon", bus.id.as_str());
            let mut tries = 0;
            loop {
                let r = match bus
                    .js
                    .publish_with_headers(bus.names.audit(), h.clone(), line.clone().into())
                    .await
                {
                    Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match r {
                    Ok(()) => break,
                    Err(e) if tries < 5 => {
                        tries += 1;
                        tracing::warn!("audit to the bus: {e}; again");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(e) => {
                        tracing::error!("audit line not on the bus (it is in the local file): {e}");
                        break;
                    }
                }
            }
        }
    });
}
