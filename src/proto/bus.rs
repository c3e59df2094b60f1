//! Daemon ↔ daemon messages over NATS (sites; see `daemon::bus`): subject names, the signed
//! envelope, and the messages a router and a site daemon exchange. Payloads are postcard, as
//! on the Unix socket; every subject starts with `crew.<fleet>.`, so one NATS account can
//! carry several fleets and its permissions can fence each one off.
//!
//! | subject | who publishes | who listens | JetStream |
//! |---|---|---|---|
//! | `crew.<fleet>.site.<site>.run` | a router (request) | that site's daemons, queue group `crew-site-<site>` | no |
//! | `crew.<fleet>.job.<job>.ev` | the site daemon running the job | the router that sent it | stream |
//! | `crew.<fleet>.job.<job>.kill` | the router | every daemon of the site (the one holding it acts) | no |
//! | `crew.<fleet>.run.<run>.log` | the router owning a run or heist | any daemon attaching to it | stream |
//! | `crew.<fleet>.daemon.<id>.ctl` | any daemon (answer, interrupt) | daemon `<id>` | no |
//! | `crew.<fleet>.hb.<id>` | every daemon, every second (its [`Presence`]) | every daemon | no |
//! | `crew.<fleet>.audit` | every daemon | operators, auditors | stream |
//!
//! KV buckets: `crew_<fleet>_daemons` (presence: one key per daemon, put every second; the
//! heartbeat subject carries the same without waiting for JetStream),
//! `crew_<fleet>_claims` (one key per job, created once before the job runs: no job runs
//! twice), `crew_<fleet>_runs` (what `crew runs` lists, from any machine).

use serde::{Deserialize, Serialize};

use super::daemon::{Event, HostEvent, RunInfo};
use crate::model::RunOrigin;

/// Version of this message set (checked by site daemons).
pub const BUS_PROTO: u32 = 1;

/// True for a subject token crew may use as a fleet, site or daemon name: `[A-Za-z0-9_-]+`.
pub fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A run or heist id made fit for a subject token (`.` and the like become `_`).
pub fn token_of(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Subject, stream and bucket names of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub fleet: String,
}

impl Names {
    pub fn new(fleet: &str) -> Names {
        Names {
            fleet: fleet.to_string(),
        }
    }
    pub fn site_run(&self, site: &str) -> String {
        format!("crew.{}.site.{site}.run", self.fleet)
    }
    pub fn site_queue(&self, site: &str) -> String {
        format!("crew-site-{site}")
    }
    pub fn job_events(&self, job: &str) -> String {
        format!("crew.{}.job.{job}.ev", self.fleet)
    }
    pub fn job_kill(&self, job: &str) -> String {
        format!("crew.{}.job.{job}.kill", self.fleet)
    }
    pub fn all_job_kills(&self) -> String {
        format!("crew.{}.job.*.kill", self.fleet)
    }
    pub fn run_log(&self, run: &str) -> String {
        format!("crew.{}.run.{run}.log", self.fleet)
    }
    pub fn ctl(&self, daemon: &str) -> String {
        format!("crew.{}.daemon.{daemon}.ctl", self.fleet)
    }
    /// Heartbeats (core NATS, not stored): liveness that no JetStream backlog delays.
    pub fn heartbeat(&self, daemon: &str) -> String {
        format!("crew.{}.hb.{daemon}", self.fleet)
    }
    pub fn all_heartbeats(&self) -> String {
        format!("crew.{}.hb.*", self.fleet)
    }
    pub fn audit(&self) -> String {
        format!("crew.{}.audit", self.fleet)
    }
    /// Replies come back under the fleet too (`custom_inbox_prefix`).
    pub fn inbox(&self, daemon: &str) -> String {
        format!("crew.{}.reply.{daemon}", self.fleet)
    }
    /// The stream holding job events, run logs and the audit log.
    pub fn stream(&self) -> String {
        format!("CREW_{}", self.fleet.to_ascii_uppercase().replace('-', "_"))
    }
    pub fn stream_subjects(&self) -> Vec<String> {
        vec![
            format!("crew.{}.job.*.ev", self.fleet),
            format!("crew.{}.run.*.log", self.fleet),
            self.audit(),
        ]
    }
    pub fn presence_bucket(&self) -> String {
        format!("crew_{}_daemons", self.fleet.replace('-', "_"))
    }
    pub fn claims_bucket(&self) -> String {
        format!("crew_{}_claims", self.fleet.replace('-', "_"))
    }
    pub fn runs_bucket(&self) -> String {
        format!("crew_{}_runs", self.fleet.replace('-', "_"))
    }
}

/// A request signed by the operator's key (an nkey, ed25519): site daemons check the
/// signature against their operators file and act with the rights written there, whatever
/// the body claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// postcard of a [`Signable`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The operator's public user nkey (`U…`).
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// What is signed: the action, when, and a nonce (job keys are claimed once, so a replayed
/// run request is refused; other actions are refused when older than a minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signable {
    pub proto: u32,
    pub fleet: String,
    pub sent_ms: u64,
    /// The daemon that sent it (a router's id).
    pub from: String,
    pub action: Action,
}

// An Action lives only between signing and sending, or decoding and acting.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Run a command on some of a site's hosts.
    Run(SiteRun),
    /// Kill a job's processes (`host`: one host's, else all).
    Kill {
        job: String,
        host: Option<String>,
        signal: i32,
    },
    /// Answer a heist's ask (sent to the daemon that owns the heist).
    Answer {
        run: String,
        ask_id: u64,
        choice: String,
    },
    /// Interrupt a run or heist (sent to the daemon that owns it).
    Interrupt { run: String, kill: bool },
}

/// One site's share of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRun {
    /// Unique over the fleet: `<router>-<run id>-<site>`; claimed once.
    pub job: String,
    /// The run (or heist step) as the operator knows it, for the audit log.
    pub run: String,
    pub site: String,
    /// Host names, resolved in the site daemon's own inventory.
    pub hosts: Vec<String>,
    pub selection: String,
    pub command: String,
    pub env: Vec<(String, String)>,
    pub timeout_ms: Option<u64>,
    pub fanout: Option<u32>,
    /// The operator as the router knows them (`identify`); the site records it beside the
    /// key's name, never instead of it.
    pub operator: String,
    pub origin: RunOrigin,
}

/// A site daemon's (or an owning daemon's) answer to a [`Signed`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Claimed and started by `daemon`.
    Accepted {
        daemon: String,
    },
    /// The job was claimed before (by `daemon`): it runs there, never again.
    Claimed {
        daemon: String,
    },
    /// Done (answers, interrupts, kills).
    Done,
    Refused {
        reason: String,
    },
}

/// One message of a job's event subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobMsg {
    Host {
        host: String,
        event: HostEvent,
    },
    /// Every host of the share has reported (`error`: the site's run store failed).
    Done {
        error: Option<String>,
    },
}

/// One message of a run's log subject: the client protocol's events, as the owning daemon's
/// followers get them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMsg {
    pub event: Event,
}

/// What a daemon publishes about itself every second (KV `crew_<fleet>_daemons`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub daemon: String,
    /// None for an operator's router.
    pub site: Option<String>,
    pub machine: String,
    pub pid: u32,
    pub build: String,
    pub started_ms: u64,
    pub sent_ms: u64,
    /// Hosts in its pool and their state (`ready`, `busy`, `lost`…).
    pub hosts: Vec<(String, String)>,
    /// Jobs in flight.
    pub jobs: Vec<String>,
}

/// A run listed on the bus (KV `crew_<fleet>_runs`), keyed by its bus id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRun {
    pub owner: String,
    pub info: RunInfo,
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(v).map_err(|e| format!("encoding a bus message: {e}"))
}

pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("malformed bus message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_fleet() {
        let n = Names::new("prod-eu");
        assert_eq!(n.site_run("a"), "crew.prod-eu.site.a.run");
        assert_eq!(n.stream(), "CREW_PROD_EU");
        assert_eq!(n.presence_bucket(), "crew_prod_eu_daemons");
        for s in n.stream_subjects() {
            assert!(s.starts_with("crew.prod-eu."), "{s}");
        }
        assert!(valid_token("eu-1_b"));
        assert!(!valid_token("eu.1") && !valid_token("*") && !valid_token(""));
        assert_eq!(token_of("123-deploy.v2"), "123-deploy_v2");
    }
}
