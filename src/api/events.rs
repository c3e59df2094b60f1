//! A run's events as JSON, for the event stream (`GET /api/v1/runs/{id}/events`): the
//! objects `crew run --json` prints for a run (output as chunks), the heist event JSON
//! `crew heist run --json` prints for a heist. Each carries its index in the run's log as its
//! SSE `id:`, so a client that lost its connection resumes with `Last-Event-ID` and neither
//! loses nor repeats an event.

use std::sync::Arc;
use std::time::Duration;

use axum::response::sse;
use tokio::sync::mpsc;

use crate::daemon::registry::Tracked;
use crate::daemon::runlog::Entry;
use crate::daemon::server::Daemon;
use crate::heist::events::{HeistEvent, StepRef};
use crate::proto::daemon::{host_event_json, output_json, Event};

/// Log entries read at a time.
const BATCH: usize = 256;
/// SSE events queued for one client before its reader task waits.
const QUEUE: usize = 64;

/// The JSON of one protocol event (None: nothing to send).
pub fn event_json(ev: &Event) -> Option<serde_json::Value> {
    Some(match ev {
        Event::RunStarted { run_id, hosts } => {
            serde_json::json!({ "event": "run_started", "run_id": run_id, "hosts": hosts })
        }
        Event::Host { host, event, .. } => host_event_json(host, event),
        Event::RunFinished { run_id, summary } => {
            let hosts: serde_json::Map<String, serde_json::Value> = summary
                .hosts
                .iter()
                .map(|(h, v)| (h.clone(), v.as_str().into()))
                .collect();
            serde_json::json!({ "event": "run_finished", "run_id": run_id, "hosts": hosts })
        }
        Event::Error { message } => serde_json::json!({ "event": "error", "message": message }),
        Event::Heist { json, .. } => serde_json::from_str(json).ok()?,
        Event::HeistOutput {
            host,
            rollback,
            step,
            stream,
            data,
            ..
        } => {
            let step = if *rollback {
                StepRef::rollback(*step as usize)
            } else {
                StepRef::main(*step as usize)
            };
            serde_json::to_value(HeistEvent::Output {
                host: host.clone(),
                step,
                stream: *stream,
                data: data.clone(),
            })
            .ok()?
        }
        _ => return None,
    })
}

/// The JSON of one log entry (None: nothing to send, e.g. heist output no longer held).
pub async fn entry_json(t: &Tracked, e: &Entry) -> Option<serde_json::Value> {
    match e {
        Entry::Run(ev) => event_json(ev),
        Entry::Output(o) => match o.bytes(&t.log.dir).await {
            Ok(data) => {
                let eol = data.last() == Some(&b'\n');
                Some(output_json(&o.host, o.stream, &data, eol))
            }
            Err(err) => {
                tracing::error!(run = %t.id, host = %o.host, "reading output back: {err}");
                None
            }
        },
        Entry::Heist(h) => serde_json::to_value(h.event()?).ok(),
    }
}

fn sse_event(id: usize, v: &serde_json::Value) -> sse::Event {
    sse::Event::default().id(id.to_string()).data(v.to_string())
}

fn end_event(id: usize, state: &str) -> sse::Event {
    sse::Event::default()
        .event("end")
        .id(id.to_string())
        .data(serde_json::json!({ "state": state }).to_string())
}

/// Stream a run's events from entry `from` on (live, then the end), or a stored run's.
pub fn stream(d: Arc<Daemon>, run: String, from: usize) -> mpsc::Receiver<sse::Event> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let _guard = d.client_guard();
        match d.registry.get(&run) {
            Some(t) => live(t, from, tx).await,
            None => stored(&d, &run, from, tx).await,
        }
    });
    rx
}

async fn live(t: Arc<Tracked>, from: usize, tx: mpsc::Sender<sse::Event>) {
    let mut cursor = t.log.follow_from(from);
    loop {
        let first = cursor.position();
        let batch = cursor.next_batch(BATCH).await;
        if batch.is_empty() {
            break;
        }
        for (i, e) in batch.iter().enumerate() {
            let Some(v) = entry_json(&t, e).await else {
                continue;
            };
            if tx.send(sse_event(first + i, &v)).await.is_err() {
                return; // the client went away
            }
        }
    }
    // The log is closed; its state is set just before: wait (bounded) for it to show.
    let mut state = t.status().state;
    for _ in 0..50 {
        if state.is_over() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = t.status().state;
    }
    let _ = tx.send(end_event(cursor.position(), state.as_str())).await;
}

async fn stored(d: &Daemon, run: &str, from: usize, tx: mpsc::Sender<sse::Event>) {
    let root = d.store.root().to_path_buf();
    let id = run.to_string();
    let events =
        tokio::task::spawn_blocking(move || crate::daemon::follow::stored_events(&root, &id))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    let events = match events {
        Ok(ev) => ev,
        Err(message) => {
            let v = serde_json::json!({ "event": "error", "message": message });
            let _ = tx
                .send(sse::Event::default().event("error").data(v.to_string()))
                .await;
            return;
        }
    };
    let n = events.len();
    let mut state = "ok";
    for (i, ev) in events.iter().enumerate() {
        state = match ev {
            Event::Error { .. } => "interrupted",
            Event::RunFinished { summary, .. }
                if summary
                    .hosts
                    .iter()
                    .any(|(_, v)| *v != crate::model::Verdict::Ok) =>
            {
                "failed"
            }
            Event::Heist { json, .. } => heist_state(json).unwrap_or(state),
            _ => state,
        };
        if i < from {
            continue;
        }
        let Some(v) = event_json(ev) else { continue };
        if tx.send(sse_event(i, &v)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(end_event(n, state)).await;
}

/// A heist's state from its `finished` event's JSON.
fn heist_state(json: &str) -> Option<&'static str> {
    match serde_json::from_str::<HeistEvent>(json).ok()? {
        HeistEvent::Finished { summary } => Some(summary_state(&summary)),
        _ => None,
    }
}

/// `ok` (completed on every host), `interrupted` or `failed`, as `crew runs` says it.
pub fn summary_state(s: &crate::heist::events::HeistSummary) -> &'static str {
    if s.ok() {
        "ok"
    } else if s.outcome == crate::heist::events::Outcome::Interrupted {
        "interrupted"
    } else {
        "failed"
    }
}
