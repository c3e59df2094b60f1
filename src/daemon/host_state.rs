//! Per-host state in the pool: connecting → (installing) → ready ⇄ busy; lost (the link died:
//! reconnecting with backoff); down (connect, auth or host-key error: retried on next demand).

use std::time::{Duration, Instant};

use crate::model::Host;
use crate::model::Info;
use crate::proto::daemon::HostStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never asked for yet.
    Idle,
    Connecting,
    Installing,
    Ready,
    Lost,
    Down,
}

/// The observable state of one pool entry (behind a std mutex; never held across an await).
#[derive(Debug)]
pub struct HostInfo {
    pub host: Host,
    pub state: State,
    pub reason: Option<String>,
    pub connected_at: Option<Instant>,
    pub agent_pid: Option<u32>,
    pub agentless: bool,
    pub jobs: u32,
    pub facts: Option<Info>,
    /// Bumped on every new connection, so a watcher of an old link never clobbers a new one.
    pub generation: u64,
    /// Consecutive failed reconnect attempts since the link was lost.
    pub failures: u32,
    /// Something worth knowing about the current connection (login output skipped, why it
    /// is agentless); shown by `crew status` when there is no `reason`.
    pub note: Option<String>,
}

impl HostInfo {
    pub fn new(host: Host) -> HostInfo {
        HostInfo {
            host,
            state: State::Idle,
            reason: None,
            connected_at: None,
            agent_pid: None,
            agentless: false,
            jobs: 0,
            facts: None,
            generation: 0,
            failures: 0,
            note: None,
        }
    }

    pub fn set(&mut self, state: State, reason: Option<String>) {
        self.state = state;
        self.reason = reason;
    }

    /// A new connection is up.
    pub fn connected(&mut self, agent_pid: Option<u32>, agentless: bool) -> u64 {
        self.generation += 1;
        self.state = State::Ready;
        self.reason = None;
        self.connected_at = Some(Instant::now());
        self.agent_pid = agent_pid;
        self.agentless = agentless;
        self.facts = None;
        self.failures = 0;
        self.generation
    }

    /// The link of `generation` died; returns false when a newer link already replaced it.
    pub fn lost(&mut self, generation: u64, reason: String) -> bool {
        if self.generation != generation {
            return false;
        }
        self.state = State::Lost;
        self.reason = Some(reason);
        self.connected_at = None;
        self.agent_pid = None;
        true
    }

    /// The name `crew status` shows.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Installing => "installing",
            State::Ready if self.jobs > 0 => "busy",
            State::Ready => "ready",
            State::Lost => "lost",
            State::Down => "down",
        }
    }

    pub fn status(&self, link_key: &str) -> HostStatus {
        HostStatus {
            name: self.host.name.clone(),
            link_key: link_key.to_string(),
            state: self.state_name().to_string(),
            reason: self.reason.clone().or_else(|| self.note.clone()),
            agentless: self.agentless,
            jobs: self.jobs,
            connected_for_s: self
                .connected_at
                .map(|t| t.elapsed().as_secs())
                .unwrap_or(0),
            agent_pid: self.agent_pid,
        }
    }
}

/// Delay before reconnect attempt `n` (0-based): 1 s, 2 s, 4 s … capped at 60 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn busy_and_stale_generations() {
        let mut h = HostInfo::new(Host::local("a"));
        assert_eq!(h.state_name(), "idle");
        let g1 = h.connected(Some(10), false);
        h.jobs = 2;
        assert_eq!(h.state_name(), "busy");
        h.jobs = 0;
        let g2 = h.connected(Some(11), false);
        assert!(
            !h.lost(g1, "old link".into()),
            "an old link's death is ignored"
        );
        assert_eq!(h.state_name(), "ready");
        assert!(h.lost(g2, "eof".into()));
        assert_eq!(h.status("local:a").state, "lost");
        assert_eq!(h.status("local:a").reason.as_deref(), Some("eof"));
    }
}
