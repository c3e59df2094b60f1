//! At start-up: settle what a daemon that went away (a crash, SIGKILL, a power cut) left
//! unfinished, so that nothing claims success that did not happen.
//!
//! - A heist whose journal has no end: each host gets what is known — the step it was
//!   running is recorded as cut short (`lost`), the host as interrupted there (or not
//!   started, when its wave never began) — then the heist is recorded as interrupted, with an
//!   audit line. `crew heist show` and `crew attach` then say so, per host.
//! - A run without every host's record: the hosts without one get a `lost` record (the
//!   output they printed is in the run store already), the run a `FAILED` marker and its
//!   audit line.
//!
//! The remote processes died with the daemon's connections (the agent kills its jobs when
//! its link goes away). Runs are checked from the highest id settled last time
//! (`runs/.settled`), so start-up stays quick however long the store is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::audit::{self, AuditLine};
use super::server::Daemon;
use crate::heist::events::{
    Decision, HeistEvent, HeistSummary, HostOutcome, Outcome, StepRef, StepResult,
};
use crate::heist::journal;
use crate::model::{ErrorKind, Verdict};
use crate::store::{self, journal::JournalFile, HostRecord};

const SETTLED: &str = ".settled";
const WHY: &str = "the daemon went away while this ran";

/// Settle everything left unfinished in the daemon's run store (errors are logged).
pub async fn settle(d: &Arc<Daemon>) {
    let root = d.opts.runs_dir.clone();
    let r = tokio::task::spawn_blocking(move || settle_blocking(&root)).await;
    let done = match r {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!("settling unfinished runs: {e:#}");
            return;
        }
        Err(e) => {
            tracing::error!("settling unfinished runs: {e}");
            return;
        }
    };
    for s in done {
        match s {
            Settled::Heist { run, who, hosts } => {
                let detail =
                    serde_json::json!({ "outcome": "interrupted", "why": WHY, "hosts": hosts });
                audit::action(&d.audit_log, &who, &run, "heist interrupted", Some(detail)).await;
            }
            Settled::Run { meta, records } => {
                let line = AuditLine {
                    run_id: meta.id,
                    who: &meta.who,
                    when: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string(),
                    selection: &meta.selection,
                    command: &meta.command,
                    origin: &meta.origin,
                    hosts: records
                        .iter()
                        .map(|r| (r.host.as_str(), r.verdict))
                        .collect(),
                };
                if let Err(e) = audit::append(&d.audit_log, &line).await {
                    tracing::error!(run = meta.id, "audit line of an interrupted run: {e:#}");
                }
            }
        }
    }
}

enum Settled {
    Heist {
        run: String,
        who: String,
        hosts: usize,
    },
    Run {
        meta: Box<store::RunMeta>,
        records: Vec<HostRecord>,
    },
}

fn settle_blocking(root: &Path) -> anyhow::Result<Vec<Settled>> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for dir in journal::list_runs_in(root) {
        let Ok(meta) = journal::read_meta(&dir) else {
            continue;
        };
        if meta.outcome.is_some() {
            continue;
        }
        match settle_heist(&dir, meta) {
            Ok(s) => out.push(s),
            Err(e) => tracing::error!("settling heist {}: {e:#}", dir.display()),
        }
    }
    let settled: u64 = std::fs::read_to_string(root.join(SETTLED))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut highest = settled;
    let mut ids: Vec<u64> = std::fs::read_dir(root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|id| *id > settled)
        .collect();
    ids.sort_unstable();
    for id in ids {
        highest = highest.max(id);
        match settle_run(&root.join(id.to_string())) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => tracing::error!("settling run {id}: {e:#}"),
        }
    }
    if highest > settled {
        store::write_synced_blocking(&root.join(SETTLED), highest.to_string().as_bytes())?;
    }
    Ok(out)
}

/// Close a heist journal that has no end.
fn settle_heist(dir: &Path, mut meta: journal::Meta) -> anyhow::Result<Settled> {
    let events = journal::read(dir)?;
    let mut steps: Vec<String> = Vec::new();
    let mut rollback: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let mut started_waves: BTreeSet<String> = BTreeSet::new();
    // Per host: the step running (started, not finished) with its attempt, and the last step
    // that started at all.
    let mut running: BTreeMap<String, (StepRef, u32)> = BTreeMap::new();
    let mut last: BTreeMap<String, StepRef> = BTreeMap::new();
    let mut done: BTreeMap<String, HostOutcome> = BTreeMap::new();
    for ev in &events {
        match ev {
            HeistEvent::Started {
                hosts: h,
                steps: s,
                rollback: r,
                ..
            } => {
                hosts = h.clone();
                steps = s.clone();
                rollback = r.clone();
            }
            HeistEvent::Wave { hosts: h, .. } => started_waves.extend(h.iter().cloned()),
            HeistEvent::StepStarted {
                host,
                step,
                attempt,
                ..
            } => {
                running.insert(host.clone(), (*step, *attempt));
                last.insert(host.clone(), *step);
            }
            HeistEvent::StepFinished { host, .. } => {
                running.remove(host);
            }
            HeistEvent::HostDone { host, outcome } => {
                done.insert(host.clone(), outcome.clone());
            }
            _ => {}
        }
    }
    let name = |s: StepRef| {
        let list = if s.rollback { &rollback } else { &steps };
        list.get(s.index).cloned().unwrap_or_else(|| "?".into())
    };
    let file = JournalFile::open_append(dir)?;
    for host in &hosts {
        if done.contains_key(host) {
            continue;
        }
        let outcome = if let Some((step, attempt)) = running.get(host) {
            let result = StepResult {
                ok: false,
                error_kind: Some(ErrorKind::Lost),
                error: Some(format!("lost: {WHY}")),
                reason: Some(format!("{WHY}; what it did after is unknown")),
                ..StepResult::default()
            };
            file.append_blocking(&HeistEvent::StepFinished {
                host: host.clone(),
                step: *step,
                attempt: *attempt,
                result,
            })?;
            file.append_blocking(&HeistEvent::Decision {
                host: host.clone(),
                step: *step,
                decision: Decision::Interrupted,
            })?;
            HostOutcome::Interrupted { step: name(*step) }
        } else if started_waves.contains(host) {
            let step = last
                .get(host)
                .map(|s| name(*s))
                .or_else(|| steps.first().cloned())
                .unwrap_or_default();
            HostOutcome::Interrupted { step }
        } else {
            HostOutcome::NotStarted
        };
        file.append_blocking(&HeistEvent::HostDone {
            host: host.clone(),
            outcome: outcome.clone(),
        })?;
        done.insert(host.clone(), outcome);
    }
    let now = store::journal::now_ms();
    let summary = HeistSummary {
        run_id: meta.run_id.clone(),
        heist: meta.heist.clone(),
        outcome: Outcome::Interrupted,
        hosts: hosts
            .iter()
            .map(|h| {
                (
                    h.clone(),
                    done.get(h).cloned().unwrap_or(HostOutcome::NotStarted),
                )
            })
            .collect(),
        elapsed_ms: now.saturating_sub(meta.started_ms),
        run_dir: dir.display().to_string(),
    };
    file.append_blocking(&HeistEvent::Finished { summary })?;
    meta.finished_ms = Some(now);
    meta.outcome = Some("interrupted".into());
    file.write_meta(&meta)?;
    tracing::warn!(heist = %meta.run_id, "marked interrupted: {WHY}");
    Ok(Settled::Heist {
        run: meta.run_id.clone(),
        who: meta.who.clone(),
        hosts: hosts.len(),
    })
}

/// Mark a run without every host's record; None when it is complete or marked already.
fn settle_run(dir: &Path) -> anyhow::Result<Option<Settled>> {
    if dir.join(store::FAILED_FILE).exists() {
        return Ok(None);
    }
    let Ok(run) = store::read_run(dir) else {
        // No readable meta.json: a run that was being created; nothing ran.
        return Ok(None);
    };
    let have: BTreeSet<&str> = run.hosts.iter().map(|r| r.host.as_str()).collect();
    let missing: Vec<String> = run
        .meta
        .hosts
        .iter()
        .filter(|h| !have.contains(h.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let mut lines = Vec::new();
    let mut records = run.hosts.clone();
    for h in &missing {
        let mut r = HostRecord::new(h);
        r.error_kind = Some(ErrorKind::Lost);
        r.error = Some(WHY.to_string());
        r.verdict = Verdict::from_error(ErrorKind::Lost);
        for (stream, n) in [
            (crate::model::Stream::Stdout, &mut r.stdout_bytes),
            (crate::model::Stream::Stderr, &mut r.stderr_bytes),
        ] {
            *n = std::fs::metadata(store::spool::output_path(dir, h, stream))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        serde_json::to_writer(&mut lines, &r)?;
        lines.push(b'\n');
        records.push(r);
    }
    let path = dir.join(store::HOSTS_FILE);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&lines)?;
        f.sync_all()?;
    }
    let why = format!(
        "interrupted: {WHY}; {} of {} host(s) had no result and are recorded as lost",
        missing.len(),
        run.meta.hosts.len()
    );
    store::write_synced_blocking(&dir.join(store::FAILED_FILE), why.as_bytes())?;
    store::sync_dir_blocking(dir)?;
    tracing::warn!(run = run.meta.id, "{why}");
    Ok(Some(Settled::Run {
        meta: Box::new(run.meta),
        records,
    }))
}
