//! What the Model asks the outside world to do. The event loop executes effects on tokio
//! tasks (never on the UI thread) and reports results back as [`Action`]s.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::action::Action;
use super::heists::{self, Shared};
use crate::heist::events::{HeistEvent, StepRef};
use crate::heist::save::SaveRequest;
use crate::model::Host;
use crate::proto::daemon::{Event, HeistRequest, Request, RunRequest};

/// Tag of status polls (runs use tags from 1).
pub const STATUS_TAG: u64 = 0;
/// The tag of the heist's events that go to the Model as daemon events (its question about
/// host keys): run tags count up from 1, far from here.
pub const HEIST_TAG: u64 = u64::MAX - 1;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a run; its events come back as `Action::Daemon { tag, .. }`.
    Run {
        tag: u64,
        req: RunRequest,
    },
    Kill {
        run_id: u64,
        host: Option<String>,
        signal: i32,
    },
    /// Bytes (then EOF when `eof`) for the stdin of a run's jobs on `hosts`.
    Input {
        run_id: u64,
        hosts: Vec<String>,
        data: Vec<u8>,
        eof: bool,
    },
    /// Ask the daemon for pool status (answers with tag [`STATUS_TAG`]).
    Status,
    /// Agent facts for the filter's `fact.*` terms.
    Facts {
        tag: u64,
        hosts: Vec<Host>,
    },
    AppendHistory(String),
    /// Read the last run's outcomes from the run store (answers `Action::OutcomesLoaded`).
    LastOutcomes,
    ListRuns,
    LoadRun(PathBuf),
    /// Find the heists beside this hosts.toml (answers `Action::HeistsListed`).
    ListHeists(PathBuf),
    /// Start a heist in the daemon and follow it (its events come back as `Action::Heist`).
    StartHeist(HeistRequest),
    /// Follow a heist started anywhere, from its beginning.
    AttachHeist {
        run: String,
    },
    /// Follow a run started anywhere, from its beginning (events as `Action::Daemon`).
    AttachRun {
        tag: u64,
        run: String,
    },
    /// Runs and heists the daemon holds (answers `Action::LiveRuns`).
    ListLive,
    /// Answers to a heist's `ask`s: (ask id, choice).
    AnswerAsk {
        run: String,
        answers: Vec<(u64, String)>,
    },
    /// Answer a run's (or heist's) question about unknown host keys: the accepted groups.
    AnswerHostKeys {
        run: String,
        ask_id: u64,
        accept: Vec<u32>,
    },
    /// Stop a heist as Ctrl-C does (or at once).
    InterruptHeist {
        run: String,
        kill: bool,
    },
    /// Suspend the screen for an interactive shell on this host (the event loop runs it: it
    /// owns the terminal).
    Shell(Host),
    /// Save a command as a heist beside this hosts.toml (answers `Action::HeistSaved`).
    SaveHeist {
        hosts_file: PathBuf,
        req: SaveRequest,
    },
}

/// The console's view of the daemon: one request, a stream of events back.
pub trait Backend: Send + Sync + 'static {
    fn request(&self, req: Request) -> BoxFuture<'_, anyhow::Result<mpsc::Receiver<Event>>>;
    /// A request with no answer to wait for (`Kill`).
    fn send(&self, req: Request) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// Runs effects on tokio tasks. `backend` is filled once the daemon connection is up.
pub struct Executor {
    pub backend: Arc<OnceLock<Arc<dyn Backend>>>,
    pub tx: mpsc::UnboundedSender<Action>,
    pub history_file: PathBuf,
    pub runs_dir: PathBuf,
}

impl Executor {
    pub fn execute(&self, effect: Effect) {
        let tx = self.tx.clone();
        match effect {
            Effect::AppendHistory(cmd) => {
                let path = self.history_file.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = super::history::append(&path, &cmd) {
                        tracing::warn!("history {}: {e}", path.display());
                    }
                });
            }
            Effect::LastOutcomes => {
                let dir = self.runs_dir.clone();
                tokio::task::spawn_blocking(move || {
                    let last = crate::pick::outcomes::last(&dir);
                    let _ = tx.send(Action::OutcomesLoaded(last));
                });
            }
            Effect::ListRuns => {
                let dir = self.runs_dir.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(Action::RunsListed(super::runs::list(&dir, 200)));
                });
            }
            Effect::LoadRun(dir) => {
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(Action::RunLoaded(super::runs::load(&dir)));
                });
            }
            Effect::ListHeists(hosts_file) => {
                tokio::task::spawn_blocking(move || {
                    let list = heists::list(&hosts_file);
                    let _ = tx.send(Action::HeistsListed(Shared::new(list)));
                });
            }
            Effect::StartHeist(req) => self.heist_stream(Request::Heist(req)),
            Effect::AttachHeist { run } => self.heist_stream(Request::Attach { run }),
            Effect::AttachRun { tag, run } => self.stream(tag, Request::Attach { run }),
            Effect::ListLive => {
                let slot = self.backend.clone();
                tokio::spawn(async move {
                    let Some(backend) = wait_backend(&slot).await else {
                        return;
                    };
                    let list = match backend.request(Request::Runs).await {
                        Ok(mut rx) => match rx.recv().await {
                            Some(Event::Runs(list)) => Ok(list),
                            Some(Event::Error { message }) => Err(message),
                            other => Err(format!("the daemon answered {other:?}")),
                        },
                        Err(e) => Err(format!("{e:#}")),
                    };
                    let _ = tx.send(Action::LiveRuns(list));
                });
            }
            Effect::AnswerAsk { run, answers } => {
                for (ask_id, choice) in answers {
                    self.send(Request::Answer {
                        run: run.clone(),
                        ask_id,
                        choice,
                    });
                }
            }
            Effect::AnswerHostKeys {
                run,
                ask_id,
                accept,
            } => self.send(Request::AnswerHostKeys {
                run,
                ask_id,
                accept,
            }),
            Effect::InterruptHeist { run, kill } => self.send(Request::Interrupt { run, kill }),
            Effect::Shell(host) => {
                tracing::error!(
                    "a shell on {} reached the executor; the event loop runs shells",
                    host.name
                );
            }
            Effect::SaveHeist { hosts_file, req } => {
                tokio::task::spawn_blocking(move || {
                    let r = heists::save_heist(&hosts_file, &req)
                        .map(|p| (req.name.clone(), p.display().to_string()));
                    let _ = tx.send(Action::HeistSaved(r));
                });
            }
            Effect::Run { tag, req } => self.stream(tag, Request::Run(req)),
            Effect::Kill {
                run_id,
                host,
                signal,
            } => self.send(Request::Kill {
                run_id,
                host,
                signal,
            }),
            Effect::Input {
                run_id,
                hosts,
                data,
                eof,
            } => self.send(Request::Input {
                run_id,
                hosts: Some(hosts),
                data,
                eof,
            }),
            Effect::Status => self.stream(STATUS_TAG, Request::Status),
            Effect::Facts { tag, hosts } => self.stream(
                tag,
                Request::Facts {
                    hosts,
                    accept_new_host_keys: false,
                },
            ),
        }
    }

    /// Send `req`; only a failure to send comes back (as an error message).
    fn send(&self, req: Request) {
        let tx = self.tx.clone();
        let slot = self.backend.clone();
        tokio::spawn(async move {
            let Some(backend) = wait_backend(&slot).await else {
                let _ = tx.send(Action::EffectFailed {
                    tag: u64::MAX,
                    message: "not connected to the daemon".into(),
                });
                return;
            };
            if let Err(e) = backend.send(req).await {
                let _ = tx.send(Action::EffectFailed {
                    tag: u64::MAX,
                    message: format!("{e:#}"),
                });
            }
        });
    }

    /// Start or attach to a heist and forward its events as `Action::Heist` until it ends.
    fn heist_stream(&self, req: Request) {
        let tx = self.tx.clone();
        let slot = self.backend.clone();
        let runs_dir = self.runs_dir.clone();
        let attach = matches!(req, Request::Attach { .. });
        tokio::spawn(async move {
            let Some(backend) = wait_backend(&slot).await else {
                let _ = tx.send(Action::HeistFailed("not connected to the daemon".into()));
                return;
            };
            let mut rx = match backend.request(req).await {
                Ok(rx) => rx,
                Err(e) => {
                    let _ = tx.send(Action::HeistFailed(format!("{e:#}")));
                    return;
                }
            };
            while let Some(event) = rx.recv().await {
                let action = match event {
                    Event::Accepted { run } => Action::HeistStarted {
                        run_dir: crate::store::journal::journal_dir(&runs_dir, &run)
                            .display()
                            .to_string(),
                        run_id: run,
                    },
                    Event::Heist { run, json } => match serde_json::from_str::<HeistEvent>(&json) {
                        Ok(ev) => {
                            if attach && matches!(ev, HeistEvent::Started { .. }) {
                                let run_dir = crate::store::journal::journal_dir(&runs_dir, &run);
                                let _ = tx.send(Action::HeistAttached {
                                    run_id: run,
                                    run_dir: run_dir.display().to_string(),
                                });
                            }
                            Action::Heist(ev)
                        }
                        Err(e) => {
                            tracing::error!("undecodable heist event: {e}");
                            continue;
                        }
                    },
                    Event::HeistOutput {
                        host,
                        rollback,
                        step,
                        stream,
                        data,
                        ..
                    } => Action::Heist(HeistEvent::Output {
                        host,
                        step: StepRef {
                            rollback,
                            index: step as usize,
                        },
                        stream,
                        data,
                    }),
                    Event::HeistDone { .. } => break,
                    Event::Error { message } => Action::HeistFailed(message),
                    // The heist's question about host keys: the same popup as a run's.
                    event @ (Event::HostKeys { .. } | Event::HostKeysAnswered { .. }) => {
                        Action::Daemon {
                            tag: HEIST_TAG,
                            event,
                        }
                    }
                    _ => continue,
                };
                if tx.send(action).is_err() {
                    break;
                }
            }
        });
    }

    /// Send `req` and forward every event for it, tagged, until the daemon closes the stream.
    fn stream(&self, tag: u64, req: Request) {
        let tx = self.tx.clone();
        let slot = self.backend.clone();
        tokio::spawn(async move {
            let Some(backend) = wait_backend(&slot).await else {
                let _ = tx.send(Action::EffectFailed {
                    tag,
                    message: "not connected to the daemon".into(),
                });
                return;
            };
            match backend.request(req).await {
                Ok(mut rx) => {
                    while let Some(event) = rx.recv().await {
                        if tx.send(Action::Daemon { tag, event }).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Action::EffectFailed {
                        tag,
                        message: format!("{e:#}"),
                    });
                }
            }
        });
    }
}

/// How long a request made while the console is still connecting waits for the daemon.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The backend, waiting (bounded) while the background connection is still being made.
async fn wait_backend(slot: &OnceLock<Arc<dyn Backend>>) -> Option<Arc<dyn Backend>> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        if let Some(b) = slot.get() {
            return Some(b.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
