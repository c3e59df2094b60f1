//! Runs in flight: per-host kill switches for `Kill`, counts for `Status`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// Runs in flight, for `Kill` and `Status`.
#[derive(Default)]
pub struct Runs {
    map: Mutex<HashMap<u64, Arc<RunCtl>>>,
    total: AtomicU64,
}

#[derive(Default)]
pub struct RunCtl {
    pub(super) hosts: Mutex<HashMap<String, HostCtl>>,
    /// Per-host stdin queues of a run with `stdin` (see [`super::input`]).
    pub(super) inputs: Mutex<HashMap<String, super::input::HostInput>>,
}

#[derive(Default)]
pub struct HostCtl {
    pub(super) cancel: CancellationToken,
    pub(super) signal: Option<i32>,
    pub(super) killer: Option<Killer>,
}

#[derive(Clone)]
pub enum Killer {
    Agent(super::link::JobKiller),
    Agentless(super::ssh::AgentlessKiller),
    /// A host of another site: the kill goes over the bus to the daemon running it.
    Bus(super::bus::JobKiller),
}

impl Killer {
    pub fn kill(&self, signal: i32) {
        let k = self.clone();
        tokio::spawn(async move {
            let r = match &k {
                Killer::Agent(k) => k.kill(signal).await.map_err(|e| e.to_string()),
                Killer::Agentless(k) => k.kill(signal).map_err(|e| e.to_string()),
                Killer::Bus(k) => k.kill(signal).await,
            };
            if let Err(e) = r {
                tracing::warn!("kill: {e}");
            }
        });
    }
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runs {
    /// Register a run and its hosts.
    pub fn register(&self, run_id: u64, hosts: &[String]) -> Arc<RunCtl> {
        let ctl = Arc::new(RunCtl::default());
        {
            let mut h = lock(&ctl.hosts);
            for name in hosts {
                h.insert(name.clone(), HostCtl::default());
            }
        }
        lock(&self.map).insert(run_id, ctl.clone());
        self.total.fetch_add(1, Ordering::Relaxed);
        ctl
    }

    /// The run is over (its results are stored or its failure reported).
    pub fn remove(&self, run_id: u64) {
        lock(&self.map).remove(&run_id);
    }

    pub fn active(&self) -> u32 {
        lock(&self.map).len() as u32
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The controls of run `run_id`, while it is in flight.
    pub(super) fn get(&self, run_id: u64) -> Option<Arc<RunCtl>> {
        lock(&self.map).get(&run_id).cloned()
    }

    /// Kill one host's job (or all jobs) of a run; false when the run is unknown.
    pub fn kill(&self, run_id: u64, host: Option<&str>, signal: i32) -> bool {
        let Some(run) = lock(&self.map).get(&run_id).cloned() else {
            return false;
        };
        let mut hosts = lock(&run.hosts);
        for (name, ctl) in hosts.iter_mut() {
            if host.is_some_and(|h| h != name) {
                continue;
            }
            ctl.signal = Some(signal);
            ctl.cancel.cancel();
            if let Some(k) = &ctl.killer {
                k.kill(signal);
            }
        }
        true
    }

    /// Kill every job of every run (daemon stop).
    pub fn kill_all(&self, signal: i32) {
        let ids: Vec<u64> = lock(&self.map).keys().copied().collect();
        for id in ids {
            self.kill(id, None, signal);
        }
    }
}
