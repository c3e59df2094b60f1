//! Every run and heist the daemon holds: in flight, and the recent ones a client may still
//! attach to. Each has its [`RunLog`] (what happened, for followers), its status (for
//! `crew runs`) and its controls (kill, interrupt, answers). A heist's per-step runs are held
//! too, hidden from the list.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::runlog::RunLog;
use crate::heist::engine::AskReply;
use crate::model::Verdict;
use crate::proto::daemon::{RunInfo, RunKind, RunState};

/// Finished runs kept in memory for attaching (older ones are read from the run store).
const KEEP_FINISHED: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How to stop or steer one tracked run.
pub enum Control {
    /// A plain run: its id in [`super::inflight::Runs`] (kill switches).
    Run { run_id: u64 },
    /// A heist: its engine's answer channel and how to interrupt it.
    Heist(HeistControl),
}

pub struct HeistControl {
    pub asks: mpsc::Sender<AskReply>,
    /// Ctrl-C (`false`) or a second Ctrl-C (`true`).
    pub interrupt: Box<dyn Fn(bool) + Send + Sync>,
}

/// What changes while a run goes on.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: RunState,
    pub finished_ms: Option<u64>,
    pub verdicts: BTreeMap<String, Verdict>,
    /// Asks waiting for an answer: ask id → host.
    pub asks: BTreeMap<u64, String>,
}

pub struct Tracked {
    pub id: String,
    pub kind: RunKind,
    pub what: String,
    pub who: String,
    pub started_ms: u64,
    pub hosts: u32,
    /// Not listed (a heist's step).
    pub hidden: bool,
    pub log: Arc<RunLog>,
    pub control: Control,
    status: Mutex<Status>,
}

impl Tracked {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        kind: RunKind,
        what: String,
        who: String,
        hosts: u32,
        hidden: bool,
        log: Arc<RunLog>,
        control: Control,
    ) -> Tracked {
        Tracked {
            id,
            kind,
            what,
            who,
            started_ms: crate::store::journal::now_ms(),
            hosts,
            hidden,
            log,
            control,
            status: Mutex::new(Status {
                state: RunState::Running,
                finished_ms: None,
                verdicts: BTreeMap::new(),
                asks: BTreeMap::new(),
            }),
        }
    }

    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    pub fn set_verdict(&self, host: &str, v: Verdict) {
        lock(&self.status).verdicts.insert(host.to_string(), v);
    }

    pub fn ask_opened(&self, ask_id: u64, host: &str) {
        let mut s = lock(&self.status);
        s.asks.insert(ask_id, host.to_string());
        if s.state == RunState::Running {
            s.state = RunState::Asking;
        }
    }

    pub fn ask_closed(&self, ask_id: u64) {
        let mut s = lock(&self.status);
        s.asks.remove(&ask_id);
        if s.asks.is_empty() && s.state == RunState::Asking {
            s.state = RunState::Running;
        }
    }

    /// The ask's host, when it is still open.
    pub fn open_ask(&self, ask_id: u64) -> Option<String> {
        lock(&self.status).asks.get(&ask_id).cloned()
    }

    pub fn finish(&self, state: RunState) {
        let mut s = lock(&self.status);
        s.state = state;
        s.asks.clear();
        s.finished_ms = Some(crate::store::journal::now_ms());
    }

    pub fn info(&self) -> RunInfo {
        let s = lock(&self.status);
        let mut counts: BTreeMap<&'static str, (Verdict, u32)> = BTreeMap::new();
        for v in s.verdicts.values() {
            counts.entry(v.as_str()).or_insert((*v, 0)).1 += 1;
        }
        RunInfo {
            id: self.id.clone(),
            kind: self.kind,
            what: self.what.clone(),
            who: self.who.clone(),
            started_ms: self.started_ms,
            finished_ms: s.finished_ms,
            state: s.state,
            hosts: self.hosts,
            verdicts: counts.into_values().collect(),
            asks: s.asks.len() as u32,
        }
    }
}

/// All tracked runs, by id.
#[derive(Default)]
pub struct Registry {
    map: Mutex<BTreeMap<String, Arc<Tracked>>>,
}

impl Registry {
    pub fn add(&self, t: Arc<Tracked>) {
        lock(&self.map).insert(t.id.clone(), t);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Tracked>> {
        lock(&self.map).get(id).cloned()
    }

    /// A run is over: hidden ones are forgotten at once, others once more than
    /// [`KEEP_FINISHED`] newer finished ones are held.
    pub fn finished(&self, id: &str) {
        let mut map = lock(&self.map);
        if map.get(id).is_some_and(|t| t.hidden) {
            map.remove(id);
            return;
        }
        let mut done: Vec<(u64, String)> = map
            .values()
            .filter(|t| !t.hidden)
            .filter_map(|t| Some((lock(&t.status).finished_ms?, t.id.clone())))
            .collect();
        if done.len() > KEEP_FINISHED {
            done.sort();
            for (_, id) in done.iter().take(done.len() - KEEP_FINISHED) {
                map.remove(id);
            }
        }
    }

    /// Listed runs, oldest first.
    pub fn list(&self) -> Vec<RunInfo> {
        let mut v: Vec<RunInfo> = lock(&self.map)
            .values()
            .filter(|t| !t.hidden)
            .map(|t| t.info())
            .collect();
        v.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        v
    }

    /// Runs not yet over (listed or not).
    pub fn in_flight(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|t| !lock(&t.status).state.is_over())
            .count()
    }
}
