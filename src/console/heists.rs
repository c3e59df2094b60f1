//! The console's seam to heists (`crate::heist`): finding them beside the inventory, running
//! one through the engine on a tokio task (its events come back as [`Action::Heist`]), the
//! operator's answers to `ask`, and saving a command as a heist. Everything here runs off the
//! UI path: listing and saving on blocking tasks, the engine on its own task.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::action::Action;
use crate::client::heist_exec::DaemonExecutor;
use crate::heist::def::HeistDef;
use crate::heist::engine::{self, AskReply};
use crate::heist::locate;
use crate::heist::plan::Plan;
use crate::heist::save::{self, SaveRequest};

/// A value shared by reference; equal only to itself (Actions and Effects compare, heist
/// definitions hold regexes that do not).
pub struct Shared<T>(pub Arc<T>);

impl<T> Shared<T> {
    pub fn new(v: T) -> Shared<T> {
        Shared(Arc::new(v))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared<{}>", std::any::type_name::<T>())
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The heists found beside the inventory in use.
#[derive(Debug, Clone, Default)]
pub struct HeistList {
    pub files: Vec<PathBuf>,
    /// Where they were looked for (for the "none found" message).
    pub looked: Vec<PathBuf>,
    pub heists: Vec<HeistDef>,
    /// Files that do not check out, as `file:line:col` messages.
    pub errors: Vec<String>,
}

/// Read the heist files beside `hosts_file` (blocking).
pub fn list(hosts_file: &Path) -> HeistList {
    let (files, looked) = locate::heist_files(None, Some(hosts_file));
    let (heists, errors) = locate::load_all(&files);
    HeistList {
        files,
        looked,
        heists,
        errors: errors.iter().map(|d| d.to_string()).collect(),
    }
}

/// Where the running heist's engine takes answers to `ask` (empty when none runs).
pub type AskSlot = Arc<Mutex<Option<mpsc::Sender<AskReply>>>>;

/// Connect to the daemon, start the engine, forward its events until it finishes.
pub fn start(
    plan: Plan,
    sets: Vec<(String, String)>,
    accept_new_host_keys: bool,
    tx: mpsc::UnboundedSender<Action>,
    asks: AskSlot,
) {
    tokio::spawn(async move {
        let exec = match DaemonExecutor::connect(accept_new_host_keys).await {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.send(Action::HeistFailed(format!("daemon: {e:#}")));
                return;
            }
        };
        let mut running = match engine::start(Arc::new(exec), plan, sets) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Action::HeistFailed(format!("{e:#}")));
                return;
            }
        };
        if let Ok(mut slot) = asks.lock() {
            *slot = Some(running.asks.clone());
        }
        let _ = tx.send(Action::HeistStarted {
            run_id: running.run_id.clone(),
            run_dir: running.run_dir.display().to_string(),
        });
        while let Some(ev) = running.events.recv().await {
            if tx.send(Action::Heist(ev)).is_err() {
                break;
            }
        }
        if let Err(e) = running.task.await {
            let _ = tx.send(Action::HeistFailed(format!("heist engine: {e}")));
        }
        if let Ok(mut slot) = asks.lock() {
            *slot = None;
        }
    });
}

/// Hand the operator's answers to the running engine.
pub fn answer(replies: Vec<AskReply>, asks: &AskSlot, tx: mpsc::UnboundedSender<Action>) {
    let sender = asks.lock().ok().and_then(|s| s.clone());
    tokio::spawn(async move {
        let Some(sender) = sender else {
            let _ = tx.send(Action::HeistFailed(
                "no heist is waiting for an answer".into(),
            ));
            return;
        };
        for r in replies {
            if sender.send(r).await.is_err() {
                let _ = tx.send(Action::HeistFailed("the heist is no longer running".into()));
                return;
            }
        }
    });
}

/// Save a command as a heist (blocking): refused when any heist file already has the name.
/// Returns the file written.
pub fn save_heist(hosts_file: &Path, req: &SaveRequest) -> Result<PathBuf, String> {
    save::check_name(&req.name)?;
    let found = list(hosts_file);
    if let Some(h) = found.heists.iter().find(|h| h.name == req.name) {
        return Err(format!(
            "a heist named `{}` already exists ({}); pick another name",
            req.name, h.loc
        ));
    }
    let target = save::target_file(&found.files, Some(hosts_file));
    save::save(&target, req)?;
    Ok(target)
}
