//! Heists run in the daemon: picked, planned and driven here, so a client that goes away
//! (a closed laptop, a dropped SSH session to the jump box) stops nothing. Clients follow a
//! heist's log, answer its asks and interrupt it through the socket (or the API); every one
//! of those actions is audited with who did it.
//!
//! Each step on each host is a run of this daemon ([`run::start`], hidden from `crew runs`),
//! so its output lands in the run store like any run's; the heist's own journal is written by
//! the engine.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::hostkeys::{self, Question};
use super::registry::{Control, HeistControl, Tracked};
use super::run::{self, Asking, Work};
use super::runlog::{Entry, RunLog};
use super::server::{self, Daemon};
use super::{audit, transfer};
use crate::heist::engine::{self, AskReply, Running, StartOptions};
use crate::heist::events::{Choice, HeistEvent, Outcome};
use crate::heist::executor::{Executor, OutputSink, PutData, RunSpec, StdinData, StepOutcome};
use crate::heist::outcomes::Tally;
use crate::heist::{locate, plan};
use crate::inventory::Inventory;
use crate::model::{ErrorKind, Host, HostError, RunOrigin};
use crate::pick::{self, FactSource, Facts};
use crate::proto::daemon::{
    Event, HeistRequest, HostEvent, PutSource, RunKind, RunRequest, RunState, TransferOp,
    TransferRequest,
};

/// After an interrupt, how long the steps in flight get to end on TERM before KILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// Pick, plan and start a heist for `who`; it goes on in the background.
pub async fn start(
    d: &Arc<Daemon>,
    req: HeistRequest,
    who: String,
) -> Result<Arc<Tracked>, String> {
    let inv_path = req
        .inventory
        .clone()
        .or_else(|| d.opts.inventory.clone())
        .ok_or_else(|| {
            "no inventory: the request names none and the daemon has none (`crew daemon --hosts FILE`)"
                .to_string()
        })?;
    let (name, file) = (req.name.clone(), req.file.clone());
    let path = inv_path.clone();
    let (inv, heist) = tokio::task::spawn_blocking(move || {
        let inv = Inventory::load(&path).map_err(|e| e.to_string())?;
        let (files, looked) = locate::heist_files(file.as_deref(), Some(&path));
        let heist = locate::find(&name, &files, &looked).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((inv, heist))
    })
    .await
    .map_err(|e| format!("loading the heist: {e}"))??;
    let selection = plan::selection(&heist, req.profile.as_deref()).map_err(|e| e.to_string())?;
    let mut facts = PoolFacts {
        d: d.clone(),
        accept: req.accept_new_host_keys,
    };
    let picked = pick::pick(&inv, selection, &mut facts, &d.opts.runs_dir)
        .await
        .map_err(|e| format!("heist `{}` ({}): {e}", heist.name, heist.loc))?;
    let what = match &req.profile {
        Some(p) => format!("{} --profile {p}", heist.name),
        None => heist.name.clone(),
    };
    let plan = plan::build(&heist, req.profile.as_deref(), &req.vars, picked.hosts)
        .map_err(|e| e.to_string())?;
    let hosts = plan.hosts.len() as u32;
    // One question about unknown host keys for the whole heist, shared by its step runs.
    let question = (req.ask_host_keys && !req.accept_new_host_keys)
        .then(|| run::new_question(&plan.hosts, hostkeys::HEIST_FIRST_ASK))
        .flatten();
    let exec = Arc::new(
        PoolExecutor::new(d.clone(), req.accept_new_host_keys, &who)
            .with_sudo_password(req.sudo_password.clone())
            .with_question(question.clone()),
    );
    let opts = StartOptions {
        who: who.clone(),
        runs_dir: d.opts.runs_dir.clone(),
    };
    let running = engine::start_with(exec.clone(), plan, req.vars.clone(), opts)
        .map_err(|e| format!("{e:#}"))?;
    let interrupter = running.interrupter();
    let control = HeistControl {
        asks: running.asks.clone(),
        interrupt: Box::new(move |kill| {
            interrupter.interrupt();
            if kill {
                exec.interrupt(libc::SIGKILL);
                return;
            }
            exec.interrupt(libc::SIGTERM);
            let exec = exec.clone();
            tokio::spawn(async move {
                tokio::time::sleep(TERM_GRACE).await;
                exec.interrupt(libc::SIGKILL);
            });
        }),
    };
    let log = Arc::new(RunLog::new(running.run_dir.clone()));
    let t = Arc::new(Tracked::new(
        running.run_id.clone(),
        RunKind::Heist,
        what,
        who.clone(),
        hosts,
        false,
        log,
        Control::Heist(control),
    ));
    d.registry.add(t.clone());
    if let Some(q) = question {
        q.attach(t.clone());
        d.questions.add(q);
    }
    super::bus::share::publish(d, &t);
    let detail = serde_json::json!({
        "heist": heist.name,
        "profile": req.profile,
        "file": heist.loc.path.display().to_string(),
        "vars": req.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "hosts": hosts,
    });
    audit::action(&d.audit_log, &who, &t.id, "heist started", Some(detail)).await;
    tokio::spawn(pump(d.clone(), t.clone(), running));
    Ok(t)
}

/// Move the engine's events into the heist's log until it ends; keep its status.
async fn pump(d: Arc<Daemon>, t: Arc<Tracked>, mut running: Running) {
    let mut tally = Tally::default();
    while let Some(ev) = running.events.recv().await {
        match &ev {
            HeistEvent::Ask { ask_id, host, .. } => t.ask_opened(*ask_id, host),
            HeistEvent::AskClosed { ask_id, .. } => t.ask_closed(*ask_id),
            // Its question about host keys waits for this wave's hosts only.
            HeistEvent::Wave { hosts, .. } => {
                if let Some(q) = d.questions.get(&t.id) {
                    q.wave(hosts);
                }
            }
            _ => {}
        }
        if let Some((host, Some(v))) = tally.apply(&ev) {
            t.set_verdict(&host, v);
        }
        t.log.push_heist(ev);
    }
    let (state, outcome) = match (&mut running.task).await {
        Ok(s) if s.ok() => (RunState::Ok, "completed"),
        Ok(s) if s.outcome == Outcome::Interrupted => (RunState::Interrupted, "interrupted"),
        Ok(s) if s.outcome == Outcome::RolledBack => (RunState::Failed, "rolled back"),
        Ok(_) => (RunState::Failed, "failed"),
        Err(e) => {
            tracing::error!(heist = %t.id, "heist engine: {e}");
            (RunState::Failed, "engine failed")
        }
    };
    d.questions.remove(&t.id);
    t.finish(state);
    let detail = serde_json::json!({ "outcome": outcome });
    audit::action(&d.audit_log, &t.who, &t.id, "heist finished", Some(detail)).await;
    t.log.close();
    d.registry.finished(&t.id);
    d.touch();
}

/// An operator's answer to a heist's ask, audited.
pub async fn answer(
    d: &Arc<Daemon>,
    run: &str,
    ask_id: u64,
    choice: &str,
    who: &str,
) -> Result<(), String> {
    let t = d
        .registry
        .get(run)
        .ok_or_else(|| format!("no heist {run} in flight"))?;
    let Control::Heist(h) = &t.control else {
        return Err(format!("{run} is a run, not a heist: it asks nothing"));
    };
    let choice = Choice::parse(choice)
        .ok_or_else(|| format!("`{choice}` is not an answer: advance, retry, rollback or abort"))?;
    let host = t
        .open_ask(ask_id)
        .ok_or_else(|| format!("heist {run} has no open ask {ask_id} (answered already?)"))?;
    if ask_id >= hostkeys::HEIST_FIRST_ASK {
        return Err(format!(
            "ask {ask_id} of heist {run} is its question about host keys: answer it with the \
             accepted groups"
        ));
    }
    h.asks
        .send(AskReply { ask_id, choice })
        .await
        .map_err(|_| format!("heist {run} is no longer running"))?;
    let detail = serde_json::json!({ "ask": ask_id, "host": host, "choice": format!("{choice:?}").to_lowercase() });
    audit::action(&d.audit_log, who, run, "answer", Some(detail)).await;
    Ok(())
}

/// Agent facts for the picker, straight from the pool.
pub struct PoolFacts {
    pub d: Arc<Daemon>,
    pub accept: bool,
}

impl FactSource for PoolFacts {
    async fn facts(&mut self, hosts: &[Host]) -> anyhow::Result<Facts> {
        let mut f = Facts::default();
        for (host, r) in server::facts(&self.d, hosts.to_vec(), self.accept).await {
            match r {
                Ok(info) => {
                    f.by_host.insert(host, info);
                }
                Err(e) => f.missing.push((host, e)),
            }
        }
        Ok(f)
    }
}

/// Runs a heist's steps as runs of this daemon.
pub struct PoolExecutor {
    d: Arc<Daemon>,
    accept: bool,
    who: String,
    /// The signal every step in flight (and every step started from now on) gets.
    stop: watch::Sender<Option<i32>>,
    /// Step runs in flight.
    inflight: Mutex<BTreeSet<u64>>,
    /// The answer to sudo's prompt for `become` steps (wiped when the heist is dropped).
    sudo_password: Option<crate::model::Secret>,
    /// The heist's question about unknown host keys, shared by every step (None: refused).
    question: Option<Arc<Question>>,
}

impl PoolExecutor {
    pub fn new(d: Arc<Daemon>, accept: bool, who: &str) -> PoolExecutor {
        PoolExecutor {
            d,
            accept,
            who: who.to_string(),
            stop: watch::channel(None).0,
            inflight: Mutex::default(),
            sudo_password: None,
            question: None,
        }
    }

    /// Put the unknown host keys the steps meet to `question` (an operator follows).
    pub fn with_question(mut self, question: Option<Arc<Question>>) -> Self {
        self.question = question;
        self
    }

    /// The password for the heist's `become` steps.
    pub fn with_sudo_password(mut self, password: Option<crate::model::Secret>) -> Self {
        self.sudo_password = password;
        self
    }

    /// A put or fetch step: a copy run of this daemon (streamed, no size cap but the disk),
    /// interrupted like a command step.
    async fn transfer(
        &self,
        host: &Host,
        op: TransferOp,
        origin: RunOrigin,
        sudo_user: Option<String>,
    ) -> Result<(), HostError> {
        let req = TransferRequest {
            hosts: vec![host.clone()],
            selection: host.name.clone(),
            op,
            fanout: None,
            accept_new_host_keys: self.accept,
            who: self.who.clone(),
            origin,
            ask_host_keys: self.question.is_some(),
            sudo: sudo_user.map(|user| crate::model::Sudo {
                user,
                password: self.sudo_password.clone(),
            }),
        };
        // A copy refused before it starts (a missing local file) is the step's failure.
        let asking = Asking::Shared(self.question.clone());
        let t = transfer::start(&self.d, req, true, asking)
            .await
            .map_err(|e| HostError::new(ErrorKind::File, e))?;
        let Control::Run { run_id } = t.control else {
            return Err(internal("a step's copy has no run id"));
        };
        match self.follow_step(&t, run_id, None).await {
            StepOutcome::Exited(e) if e.code == Some(0) => Ok(()),
            StepOutcome::Exited(e) => Err(internal(format!("the copy ended with {:?}", e.code))),
            StepOutcome::Failed(e) => Err(e),
        }
    }

    /// Follow a step's run to its end (its output into `sink`), passing on interrupts.
    async fn follow_step(
        &self,
        t: &Tracked,
        run_id: u64,
        sink: Option<&OutputSink>,
    ) -> StepOutcome {
        self.track(run_id, true);
        let mut stop = self.stop.subscribe();
        if let Some(sig) = *stop.borrow_and_update() {
            self.d.runs.kill(run_id, None, sig);
        }
        let mut cursor = t.log.follow();
        let mut result = None;
        loop {
            let batch = tokio::select! {
                b = cursor.next_batch(256) => b,
                _ = stop.changed() => {
                    if let Some(sig) = *stop.borrow_and_update() {
                        self.d.runs.kill(run_id, None, sig);
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                break;
            }
            for e in batch {
                match &*e {
                    Entry::Output(o) => match o.bytes(&t.log.dir).await {
                        Ok(data) => {
                            if let Some(sink) = sink {
                                let _ = sink.send((o.stream, data)).await;
                            }
                        }
                        Err(err) => tracing::error!(run_id, "step output read back: {err}"),
                    },
                    Entry::Run(Event::Host { event, .. }) => match event {
                        HostEvent::Exit { exit, .. } => {
                            result = Some(StepOutcome::Exited(exit.clone()))
                        }
                        HostEvent::Failed { kind, message } => {
                            result =
                                Some(StepOutcome::Failed(HostError::new(*kind, message.clone())))
                        }
                        _ => {}
                    },
                    Entry::Run(Event::Error { message }) => {
                        result.get_or_insert(StepOutcome::Failed(internal(message.clone())));
                    }
                    _ => {}
                }
            }
        }
        self.track(run_id, false);
        result.unwrap_or_else(|| {
            StepOutcome::Failed(internal("the step's run ended without a result"))
        })
    }

    /// Send `signal` to every step in flight and to any started from now on.
    pub fn interrupt(&self, signal: i32) {
        self.stop.send_replace(Some(signal));
        let ids: Vec<u64> = self
            .inflight
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.d.runs.kill(id, None, signal);
        }
    }

    fn track(&self, run_id: u64, on: bool) {
        if let Ok(mut s) = self.inflight.lock() {
            if on {
                s.insert(run_id);
            } else {
                s.remove(&run_id);
            }
        }
    }
}

/// Send a step's stdin to its run (read in chunks: a file of any size), then EOF.
async fn feed_stdin(d: Arc<Daemon>, run_id: u64, src: StdinData) {
    use tokio::io::AsyncReadExt;
    let r: Result<(), String> = async {
        match src {
            StdinData::Bytes(b) => d.runs.input(run_id, None, b, true).await,
            StdinData::File(p) => {
                let mut f = tokio::fs::File::open(&p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                loop {
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = f
                        .read(&mut buf)
                        .await
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    buf.truncate(n);
                    d.runs.input(run_id, None, buf, n == 0).await?;
                    if n == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(run_id, "a step's stdin: {e}");
        // Close it all the same: the command must not wait for input that never comes.
        let _ = d.runs.input(run_id, None, Vec::new(), true).await;
    }
}

fn internal(message: impl Into<String>) -> HostError {
    HostError::new(ErrorKind::Internal, message)
}

impl Executor for PoolExecutor {
    async fn run(&self, host: &Host, spec: RunSpec, sink: OutputSink) -> StepOutcome {
        let req = RunRequest {
            hosts: vec![host.clone()],
            selection: host.name.clone(),
            command: spec.command,
            env: spec.env,
            timeout_ms: spec.timeout.map(|t| t.as_millis() as u64),
            fanout: None,
            accept_new_host_keys: self.accept,
            who: self.who.clone(),
            origin: spec.origin,
            ask_host_keys: self.question.is_some(),
            sudo: spec.sudo_user.map(|user| crate::model::Sudo {
                user,
                password: self.sudo_password.clone(),
            }),
            stdin: spec.stdin.is_some(),
        };
        let asking = Asking::Shared(self.question.clone());
        let t = match run::start_asking(&self.d, req, true, Work::Command, asking).await {
            Ok(t) => t,
            Err(e) => return StepOutcome::Failed(internal(e)),
        };
        let Control::Run { run_id } = t.control else {
            return StepOutcome::Failed(internal("a step's run has no run id"));
        };
        if let Some(src) = spec.stdin {
            tokio::spawn(feed_stdin(self.d.clone(), run_id, src));
        }
        self.follow_step(&t, run_id, Some(&sink)).await
    }

    async fn read_file(
        &self,
        host: &Host,
        path: &str,
        to: &std::path::Path,
        max_size: u64,
        origin: RunOrigin,
        sudo_user: Option<String>,
    ) -> Result<u64, HostError> {
        let op = TransferOp::FetchTo {
            remote: path.to_string(),
            local: to.to_path_buf(),
            max_size: (max_size != u64::MAX).then_some(max_size),
        };
        self.transfer(host, op, origin, sudo_user).await?;
        tokio::fs::metadata(to)
            .await
            .map(|m| m.len())
            .map_err(|e| internal(format!("{}: {e}", to.display())))
    }

    async fn write_file(
        &self,
        host: &Host,
        path: &str,
        data: PutData,
        mode: u32,
        origin: RunOrigin,
        sudo_user: Option<String>,
    ) -> Result<u64, HostError> {
        let (source, size) = match data {
            PutData::Bytes(data) => {
                let size = data.len() as u64;
                let name = path.rsplit('/').next().unwrap_or("content").to_string();
                (PutSource::Content { name, data }, size)
            }
            PutData::File(p) => {
                let size = tokio::fs::metadata(&p)
                    .await
                    .map_err(|e| HostError::new(ErrorKind::File, format!("{}: {e}", p.display())))?
                    .len();
                (PutSource::Path(p), size)
            }
        };
        let op = TransferOp::Put {
            sources: vec![source],
            remote: path.to_string(),
            recursive: false,
            mode: Some(mode),
            exact: true,
        };
        self.transfer(host, op, origin, sudo_user).await?;
        Ok(size)
    }
}
