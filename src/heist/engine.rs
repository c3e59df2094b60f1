//! The step engine: rolling waves, per-host step loops ([`super::host_run`]), the heist-wide
//! rollback, the operator's answers to `ask`, and the journal.
//!
//! Policies once a step has failed and its retries are spent:
//! - `abort`: this host stops; its wave counts as failed: the other hosts of the wave finish,
//!   later waves never start.
//! - `continue`: the failure is let through; the host goes on with its next step.
//! - `rollback`: the heist stops (steps in flight finish, no new step starts), then every host
//!   that reached the failing step runs the rollback steps: those with `undo = "step"` only
//!   where that step ran, latest step first, then those without `undo`, in file order.
//! - `ask`: the engine sends [`HeistEvent::Ask`] and waits for an [`AskReply`].
//!
//! [`Running::interrupt`] (Ctrl-C) stops the heist where it is: no step, retry, wave or
//! rollback starts after it; waits (backoff, ask) end; the steps in flight end as the
//! executor ends them (the CLI kills them through the daemon); the summary says
//! `interrupted`. Killing what runs is the caller's job: the engine does not know how.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};

use super::events::{Choice, HeistEvent, HeistSummary, HostOutcome, Outcome};
use super::executor::Executor;
use super::host_run::{self, HostState};
use super::journal::{now_ms, Journal, Meta};
use super::plan::Plan;

/// The operator's answer to [`HeistEvent::Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskReply {
    pub ask_id: u64,
    pub choice: Choice,
}

/// Why the heist stopped starting new steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Halt {
    pub step: usize,
    pub trigger: String,
}

pub(super) struct Ctx<E> {
    pub exec: Arc<E>,
    pub plan: Arc<Plan>,
    pub run_id: String,
    events: mpsc::Sender<HeistEvent>,
    journal: Journal,
    pub halt: watch::Sender<Option<Halt>>,
    pub stop: watch::Sender<bool>,
    asks: Mutex<HashMap<u64, oneshot::Sender<Choice>>>,
    next_ask: AtomicU64,
}

impl<E: Executor> Ctx<E> {
    /// Journal the event (fsynced) unless it is live output, then hand it to the listener.
    pub async fn emit(&self, ev: HeistEvent) {
        if !matches!(ev, HeistEvent::Output { .. }) {
            if let Err(e) = self.journal.append(&ev).await {
                tracing::error!("heist {}: journal write failed: {e:#}", self.run_id);
            }
        }
        // A listener that went away does not stop the heist; the journal has everything.
        let _ = self.events.send(ev).await;
    }

    pub fn halted(&self) -> bool {
        self.halt.borrow().is_some()
    }

    /// True once the operator interrupted the heist.
    pub fn interrupted(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when the operator interrupts the heist.
    pub async fn until_interrupted(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Stop the heist for a rollback (the first request wins).
    pub fn request_rollback(&self, step: usize, trigger: &str) {
        self.halt.send_if_modified(|h| {
            if h.is_none() {
                *h = Some(Halt {
                    step,
                    trigger: trigger.to_string(),
                });
                true
            } else {
                false
            }
        });
    }

    /// Ask the operator; `None` when the heist halted first (and `watch_halt` is set).
    pub async fn ask(
        &self,
        host: &str,
        step: super::events::StepRef,
        reason: String,
        watch_halt: bool,
    ) -> Option<Choice> {
        let ask_id = self.next_ask.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut asks) = self.asks.lock() {
            asks.insert(ask_id, tx);
        }
        self.emit(HeistEvent::Ask {
            ask_id,
            host: host.to_string(),
            step,
            reason,
        })
        .await;
        let mut halt = self.halt.subscribe();
        let timeout = async {
            match self.plan.heist.ask_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let choice = tokio::select! {
            c = rx => c.ok(),
            _ = halt.wait_for(Option::is_some), if watch_halt => None,
            _ = self.until_interrupted() => None,
            // Nobody answered in time: the heist file's default decides.
            _ = timeout => Some(self.plan.heist.ask_default),
        };
        if let Ok(mut asks) = self.asks.lock() {
            asks.remove(&ask_id);
        }
        self.emit(HeistEvent::AskClosed { ask_id, choice }).await;
        choice
    }

    fn answer(&self, reply: AskReply) {
        let tx = self
            .asks
            .lock()
            .ok()
            .and_then(|mut a| a.remove(&reply.ask_id));
        if let Some(tx) = tx {
            let _ = tx.send(reply.choice);
        }
    }
}

/// A heist in progress: its events, where answers to `ask` go, and the final summary.
pub struct Running {
    pub run_id: String,
    pub run_dir: std::path::PathBuf,
    pub events: mpsc::Receiver<HeistEvent>,
    pub asks: mpsc::Sender<AskReply>,
    pub task: tokio::task::JoinHandle<HeistSummary>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Stop the heist (Ctrl-C): nothing more starts; see the module docs.
    pub fn interrupt(&self) {
        self.stop.send_replace(true);
    }

    /// A handle that interrupts the heist from elsewhere.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.stop.clone())
    }
}

/// Interrupts one running heist (see [`Running::interrupt`]).
#[derive(Clone)]
pub struct Interrupter(watch::Sender<bool>);

impl Interrupter {
    pub fn interrupt(&self) {
        self.0.send_replace(true);
    }
}

/// Who starts a heist and where its journal goes.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Recorded in the journal's meta (the operator, for the audit).
    pub who: String,
    /// The run store the journal goes in.
    pub runs_dir: std::path::PathBuf,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            who: crate::paths::whoami(),
            runs_dir: crate::paths::runs_dir(),
        }
    }
}

/// Start a heist: creates its run store directory and spawns the engine.
pub fn start<E: Executor>(
    exec: Arc<E>,
    plan: Plan,
    sets: Vec<(String, String)>,
) -> anyhow::Result<Running> {
    start_with(exec, plan, sets, StartOptions::default())
}

/// [`start`] for `opts.who`, journaled under `opts.runs_dir`.
pub fn start_with<E: Executor>(
    exec: Arc<E>,
    plan: Plan,
    sets: Vec<(String, String)>,
    opts: StartOptions,
) -> anyhow::Result<Running> {
    let run_id = super::journal::new_run_id(&plan.heist.name);
    let meta = Meta {
        run_id: run_id.clone(),
        heist: plan.heist.name.clone(),
        file: plan.heist.loc.path.display().to_string(),
        profile: plan.profile.clone(),
        selection: plan.selection.clone(),
        vars: sets,
        who: opts.who,
        build: crate::paths::build_hash().to_string(),
        started_ms: now_ms(),
        finished_ms: None,
        outcome: None,
    };
    let journal = Journal::create_in(&opts.runs_dir, &meta)?;
    let run_dir = journal.dir().to_path_buf();
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (ask_tx, mut ask_rx) = mpsc::channel::<AskReply>(64);
    let stop = watch::channel(false).0;
    let ctx = Arc::new(Ctx {
        exec,
        plan: Arc::new(plan),
        run_id: run_id.clone(),
        events: ev_tx,
        journal,
        halt: watch::channel(None).0,
        stop: stop.clone(),
        asks: Mutex::new(HashMap::new()),
        next_ask: AtomicU64::new(0),
    });
    let router_ctx = ctx.clone();
    let router = tokio::spawn(async move {
        while let Some(reply) = ask_rx.recv().await {
            router_ctx.answer(reply);
        }
    });
    let task = tokio::spawn(async move {
        let summary = drive(ctx.clone(), meta).await;
        router.abort();
        summary
    });
    Ok(Running {
        run_id,
        run_dir,
        events: ev_rx,
        asks: ask_tx,
        task,
        stop,
    })
}

async fn drive<E: Executor>(ctx: Arc<Ctx<E>>, mut meta: Meta) -> HeistSummary {
    let t0 = Instant::now();
    let plan = ctx.plan.clone();
    let names = |idx: &[usize]| {
        idx.iter()
            .map(|&i| plan.hosts[i].name.clone())
            .collect::<Vec<_>>()
    };
    ctx.emit(HeistEvent::Started {
        run_id: ctx.run_id.clone(),
        heist: plan.heist.name.clone(),
        profile: plan.profile.clone(),
        hosts: plan.hosts.iter().map(|h| h.name.clone()).collect(),
        waves: plan.waves.iter().map(|w| names(w)).collect(),
        steps: plan.heist.steps.iter().map(|s| s.name.clone()).collect(),
        rollback: plan.heist.rollback.iter().map(|s| s.name.clone()).collect(),
    })
    .await;
    let mut states: Vec<Option<HostState>> = vec![None; plan.hosts.len()];
    let mut outcomes: Vec<HostOutcome> = vec![HostOutcome::NotStarted; plan.hosts.len()];
    let mut stop = false;
    for (wi, wave) in plan.waves.iter().enumerate() {
        if stop {
            for &i in wave {
                ctx.emit(HeistEvent::HostDone {
                    host: plan.hosts[i].name.clone(),
                    outcome: HostOutcome::NotStarted,
                })
                .await;
            }
            continue;
        }
        ctx.emit(HeistEvent::Wave {
            index: wi,
            hosts: names(wave),
        })
        .await;
        let done = join_all(wave.iter().map(|&i| host_run::run_host(&ctx, i))).await;
        for (&i, st) in wave.iter().zip(done) {
            outcomes[i] = st.outcome.clone();
            stop |= !matches!(st.outcome, HostOutcome::Completed { .. });
            states[i] = Some(st);
        }
        stop |= ctx.halted() || ctx.interrupted();
    }
    let halt = ctx.halt.borrow().clone();
    // An interrupted heist starts nothing more, not even a rollback (the journal shows
    // what ran; the operator decides what to undo).
    if let Some(h) = halt.filter(|_| !ctx.interrupted()) {
        let targets: Vec<usize> = (0..plan.hosts.len())
            .filter(|&i| {
                states[i]
                    .as_ref()
                    .and_then(|s| s.reached)
                    .is_some_and(|r| r >= h.step)
            })
            .collect();
        ctx.emit(HeistEvent::RollbackStarted {
            trigger: h.trigger.clone(),
            step: h.step,
            hosts: names(&targets),
        })
        .await;
        let done = join_all(targets.iter().map(|&i| {
            let ran = states[i]
                .as_ref()
                .map(|s| s.ran.clone())
                .unwrap_or_default();
            let captures = states[i]
                .as_ref()
                .map(|s| s.captures.clone())
                .unwrap_or_default();
            host_run::roll_back(&ctx, i, h.step, ran, captures)
        }))
        .await;
        for (&i, outcome) in targets.iter().zip(done) {
            outcomes[i] = outcome;
        }
    }
    let outcome = if ctx.interrupted() {
        Outcome::Interrupted
    } else if ctx.halted() {
        Outcome::RolledBack
    } else if outcomes
        .iter()
        .all(|o| matches!(o, HostOutcome::Completed { .. }))
    {
        Outcome::Completed
    } else {
        Outcome::Failed
    };
    let summary = HeistSummary {
        run_id: ctx.run_id.clone(),
        heist: plan.heist.name.clone(),
        outcome,
        hosts: plan
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .zip(outcomes)
            .collect(),
        elapsed_ms: t0.elapsed().as_millis() as u64,
        run_dir: ctx.journal.dir().display().to_string(),
    };
    ctx.emit(HeistEvent::Finished {
        summary: summary.clone(),
    })
    .await;
    meta.finished_ms = Some(now_ms());
    meta.outcome = Some(format!("{:?}", summary.outcome).to_lowercase());
    if let Err(e) = ctx.journal.write_meta(&meta) {
        tracing::error!("heist {}: meta.json: {e:#}", ctx.run_id);
    }
    summary
}
