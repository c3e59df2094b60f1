//! Following a run or heist for one client: its log from the beginning, then live, as the
//! protocol's events; or, for one no longer held in memory, rebuilt from the run store.

use std::sync::Arc;

use super::registry::Tracked;
use super::runlog::Entry;
use super::server::{Daemon, Sink};
use crate::heist::events::HeistEvent;
use crate::heist::journal;
use crate::model::{Exit, Stream};
use crate::proto::daemon::{Event, HostEvent, RunKind, Summary};
use crate::store;

/// Entries taken from the log at a time.
const BATCH: usize = 256;
/// Bytes per output event when a stored run is replayed.
const CHUNK: usize = 64 * 1024;

/// Stream the run's events to `sink` until the run's log ends or the client goes away.
pub async fn follow(t: Arc<Tracked>, sink: Sink) {
    let mut cursor = t.log.follow();
    loop {
        let batch = cursor.next_batch(BATCH).await;
        if batch.is_empty() {
            break;
        }
        // Output chunks of one host's stream that follow each other go out as one event.
        let mut gathered: Option<Gathered> = None;
        for e in batch {
            if let Entry::Output(o) = &*e {
                let fits = |g: &Gathered| {
                    g.run_id == o.run_id
                        && g.stream == o.stream
                        && g.host == o.host
                        && g.data.len() + o.len <= GATHER
                };
                if !gathered.as_ref().is_some_and(fits) {
                    if let Some(g) = gathered.take() {
                        if !sink.deliver(g.event()).await {
                            return;
                        }
                    }
                    gathered = Some(Gathered {
                        run_id: o.run_id,
                        host: o.host.clone(),
                        stream: o.stream,
                        data: Vec::new(),
                    });
                }
                if let Some(g) = &mut gathered {
                    if let Err(err) = o.append_to(&t.log.dir, &mut g.data).await {
                        tracing::error!(run = %t.id, host = %o.host, "reading output back: {err}");
                    }
                }
                continue;
            }
            if let Some(g) = gathered.take() {
                if !sink.deliver(g.event()).await {
                    return;
                }
            }
            let Some(ev) = event_of(&t, &e).await else {
                continue;
            };
            if !sink.deliver(ev).await {
                return;
            }
        }
        if let Some(g) = gathered.take() {
            if !sink.deliver(g.event()).await {
                return;
            }
        }
    }
    if t.kind == RunKind::Heist {
        sink.send(Event::HeistDone { run: t.id.clone() }).await;
    }
}

/// Most output bytes gathered into one event.
const GATHER: usize = 256 * 1024;

/// Consecutive output chunks of one host's stream, sent as one event: what a client pays per
/// event (decoding, writing, a terminal's flush) is paid once for many chunks when it is behind.
struct Gathered {
    run_id: u64,
    host: Arc<str>,
    stream: Stream,
    data: Vec<u8>,
}

impl Gathered {
    fn event(self) -> Event {
        Event::Host {
            run_id: self.run_id,
            host: self.host.to_string(),
            event: HostEvent::Output {
                stream: self.stream,
                data: self.data,
            },
        }
    }
}

/// The protocol's event for one log entry (None: nothing to send).
pub(super) async fn event_of(t: &Tracked, e: &Entry) -> Option<Event> {
    match e {
        // A question already answered is not put again to a client attaching later.
        Entry::Run(Event::HostKeys { ask_id, .. }) if t.open_ask(*ask_id).is_none() => None,
        Entry::Run(ev) => Some(ev.clone()),
        Entry::Output(o) => match o.bytes(&t.log.dir).await {
            Ok(data) => Some(Event::Host {
                run_id: o.run_id,
                host: o.host.to_string(),
                event: HostEvent::Output {
                    stream: o.stream,
                    data,
                },
            }),
            Err(err) => {
                tracing::error!(run = %t.id, host = %o.host, "reading output back: {err}");
                None
            }
        },
        Entry::Heist(h) => heist_event(&t.id, h.event()?),
    }
}

/// A heist event as the protocol carries it.
pub fn heist_event(run: &str, ev: &HeistEvent) -> Option<Event> {
    if let HeistEvent::Output {
        host,
        step,
        stream,
        data,
    } = ev
    {
        return Some(Event::HeistOutput {
            run: run.to_string(),
            host: host.clone(),
            rollback: step.rollback,
            step: step.index as u32,
            stream: *stream,
            data: data.clone(),
        });
    }
    match serde_json::to_string(ev) {
        Ok(json) => Some(Event::Heist {
            run: run.to_string(),
            json,
        }),
        Err(e) => {
            tracing::error!("heist event as JSON: {e}");
            None
        }
    }
}

/// Replay a run or heist that the daemon no longer holds, from the run store.
pub async fn from_store(d: &Arc<Daemon>, run: &str, sink: Sink) {
    let root = d.store.root().to_path_buf();
    let run = run.to_string();
    let events = tokio::task::spawn_blocking(move || stored_events(&root, &run)).await;
    match events {
        Ok(Ok(events)) => {
            for ev in events {
                if !sink.deliver(ev).await {
                    return;
                }
            }
        }
        Ok(Err(message)) => sink.send(Event::Error { message }).await,
        Err(e) => {
            sink.send(Event::Error {
                message: format!("reading the run store: {e}"),
            })
            .await
        }
    }
}

/// The events of a stored run or heist, as they would have streamed (blocking).
pub fn stored_events(root: &std::path::Path, run: &str) -> Result<Vec<Event>, String> {
    if let Ok(id) = run.parse::<u64>() {
        return stored_run(&root.join(run), id);
    }
    let id = run
        .strip_prefix(store::journal::JOURNAL_PREFIX)
        .unwrap_or(run);
    let dir = store::journal::journal_dir(root, id);
    if !dir.is_dir() {
        return Err(format!(
            "no run or heist {run} (in flight, or in {})",
            root.display()
        ));
    }
    let mut out = Vec::new();
    let mut finished = false;
    for ev in journal::read(&dir).map_err(|e| format!("{e:#}"))? {
        finished |= matches!(ev, HeistEvent::Finished { .. });
        out.extend(heist_event(id, &ev));
    }
    if !finished {
        out.push(Event::Error {
            message: format!(
                "heist {id} never finished (its daemon went away); `crew heist show {id}` shows what ran"
            ),
        });
    }
    out.push(Event::HeistDone {
        run: id.to_string(),
    });
    Ok(out)
}

fn stored_run(dir: &std::path::Path, run_id: u64) -> Result<Vec<Event>, String> {
    let run = store::read_run(dir).map_err(|e| format!("{e:#}"))?;
    let mut out = vec![Event::RunStarted {
        run_id,
        hosts: run.meta.hosts.clone(),
    }];
    for r in &run.hosts {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let data = match std::fs::read(store::spool::output_path(dir, &r.host, stream)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            };
            for chunk in data.chunks(CHUNK) {
                out.push(Event::Host {
                    run_id,
                    host: r.host.clone(),
                    event: HostEvent::Output {
                        stream,
                        data: chunk.to_vec(),
                    },
                });
            }
        }
        let event = match (r.error_kind, &r.error) {
            (Some(kind), message) => HostEvent::Failed {
                kind,
                message: message.clone().unwrap_or_default(),
            },
            (None, _) => HostEvent::Exit {
                exit: Exit {
                    code: r.code,
                    signal: r.signal,
                    wall_ms: r.wall_ms.unwrap_or(0),
                    user_ms: r.user_ms.unwrap_or(0),
                    sys_ms: r.sys_ms.unwrap_or(0),
                    max_rss_kb: r.max_rss_kb.unwrap_or(0),
                    timed_out: r.timed_out,
                },
                verdict: r.verdict,
            },
        };
        out.push(Event::Host {
            run_id,
            host: r.host.clone(),
            event,
        });
    }
    match std::fs::read_to_string(dir.join(store::FAILED_FILE)) {
        Ok(why) => out.push(Event::Error {
            message: format!("run {run_id} is not fully on disk, marked failed: {why}"),
        }),
        Err(_) => out.push(Event::RunFinished {
            run_id,
            summary: Summary {
                hosts: run
                    .hosts
                    .iter()
                    .map(|r| (r.host.clone(), r.verdict))
                    .collect(),
                store_dir: dir.display().to_string(),
            },
        }),
    }
    Ok(out)
}
