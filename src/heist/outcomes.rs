//! "How did the last run go on this host?" for the selection atoms `?ok`, `?failed`,
//! `?timeout`, `?unreachable`, `?killed`: read from the run store (`paths::runs_dir()`).
//!
//! The last run is the newest of:
//! - the newest `crew run` (a numbered directory whose `meta.json` has no `heist …` label;
//!   the per-step runs a heist makes through the daemon do not count on their own), with each
//!   host's verdict from its record (`hosts.jsonl`, read by [`store::read_run`]);
//! - the newest heist run (`heist-<ms>-<name>/`), with each host's outcome from its journal:
//!   completed → ok; stopped at a step → that step's verdict (timeout, unreachable or failed);
//!   rolled back → failed; interrupted or stopped → killed; hosts in waves that never started
//!   have no outcome.
//!
//! Only hosts of that one run have an outcome: `?failed` after `crew run web1 -- false`
//! matches web1 alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::events::{HeistEvent, HostOutcome, StepResult};
use crate::daemon::store;
use crate::model::Verdict;

/// Host → verdict of the last run, and which run that was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastOutcomes {
    pub run: Option<PathBuf>,
    pub hosts: HashMap<String, Verdict>,
}

impl LastOutcomes {
    pub fn get(&self, host: &str) -> Option<Verdict> {
        self.hosts.get(host).copied()
    }
}

/// The last run's outcomes in the run store at `runs_dir` (empty when there is none or it
/// cannot be read: a selection then simply matches no host by outcome).
pub fn last(runs_dir: &Path) -> LastOutcomes {
    let plain = newest_plain_run(runs_dir);
    let heist = super::journal::list_runs_in(runs_dir).into_iter().next();
    let heist_ms = heist.as_deref().and_then(heist_started_ms);
    let heist_newer = match (&plain, heist_ms) {
        (Some((ms, _)), Some(hm)) => hm > *ms,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    match (heist, plain) {
        (Some(h), _) if heist_newer => from_heist(&h),
        (_, Some((_, dir))) => from_plain(&dir),
        _ => LastOutcomes::default(),
    }
}

/// The newest numbered run that is not a heist step: (start ms, dir). Reads `meta.json` files
/// newest first and stops at the first plain run.
fn newest_plain_run(runs_dir: &Path) -> Option<(u64, PathBuf)> {
    let mut ids: Vec<(u64, PathBuf)> = std::fs::read_dir(runs_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse::<u64>().ok()?;
            Some((id, e.path()))
        })
        .collect();
    ids.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    // Heist steps are one-host runs; a bounded look back past them is enough in practice.
    ids.into_iter().take(10_000).find_map(|(_, dir)| {
        let meta = store::read_meta(&dir).ok()?;
        if meta
            .label
            .as_deref()
            .is_some_and(|l| l.starts_with("heist "))
        {
            return None;
        }
        let t = humantime::parse_rfc3339(&meta.when).ok()?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Some((ms, dir))
    })
}

fn heist_started_ms(dir: &Path) -> Option<u64> {
    super::journal::read_meta(dir).ok().map(|m| m.started_ms)
}

fn from_plain(dir: &Path) -> LastOutcomes {
    let hosts = match store::read_run(dir) {
        Ok(run) => run.hosts.into_iter().map(|r| (r.host, r.verdict)).collect(),
        Err(e) => {
            tracing::warn!("outcomes of the last run: {e:#}");
            HashMap::new()
        }
    };
    LastOutcomes {
        run: Some(dir.to_path_buf()),
        hosts,
    }
}

/// Outcomes of one heist run from its journal (also one cut short by a crash: hosts with a
/// recorded end only).
pub fn from_heist(dir: &Path) -> LastOutcomes {
    let events = super::journal::read(dir).unwrap_or_default();
    let mut last_result: HashMap<&str, &StepResult> = HashMap::new();
    let mut hosts = HashMap::new();
    for ev in &events {
        match ev {
            HeistEvent::StepFinished { host, result, .. } => {
                last_result.insert(host, result);
            }
            HeistEvent::HostDone { host, outcome } => {
                let v = match outcome {
                    HostOutcome::Completed { .. } => Some(Verdict::Ok),
                    HostOutcome::Failed { .. } => Some(
                        last_result
                            .get(host.as_str())
                            .map_or(Verdict::Failed, |r| step_verdict(r)),
                    ),
                    HostOutcome::RolledBack { .. } => Some(Verdict::Failed),
                    HostOutcome::Stopped { .. } | HostOutcome::Interrupted { .. } => {
                        Some(Verdict::Killed)
                    }
                    HostOutcome::NotStarted => None,
                };
                match v {
                    Some(v) => hosts.insert(host.clone(), v),
                    None => hosts.remove(host),
                };
            }
            _ => {}
        }
    }
    LastOutcomes {
        run: Some(dir.to_path_buf()),
        hosts,
    }
}

fn step_verdict(r: &StepResult) -> Verdict {
    if r.timed_out {
        Verdict::Timeout
    } else if r
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("unreachable"))
    {
        Verdict::Unreachable
    } else {
        Verdict::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::store::{HostRecord, RunMeta, HOSTS_FILE};

    fn plain_run(runs: &Path, id: u64, label: Option<&str>, hosts: &[(&str, Verdict)]) {
        let dir = runs.join(id.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let meta = RunMeta {
            id,
            who: "me".into(),
            when: format!("2025-01-01T00:00:{id:02}.000Z"),
            selection: "all".into(),
            command: "true".into(),
            hosts: hosts.iter().map(|(h, _)| h.to_string()).collect(),
            label: label.map(str::to_string),
            timeout_ms: None,
            fanout: None,
        };
        std::fs::write(
            dir.join("meta.json"),
            serde_json::to_vec(&meta).expect("json"),
        )
        .expect("meta");
        let mut lines = String::new();
        for (h, v) in hosts {
            let mut r = HostRecord::new(h);
            r.verdict = *v;
            lines += &serde_json::to_string(&r).expect("json");
            lines.push('\n');
        }
        std::fs::write(dir.join(HOSTS_FILE), lines).expect("hosts");
    }

    #[test]
    fn the_newest_plain_run_counts_not_heist_steps_nor_unreadable_runs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path();
        plain_run(runs, 1, None, &[("a", Verdict::Failed)]);
        plain_run(runs, 2, None, &[("a", Verdict::Ok), ("b", Verdict::Failed)]);
        plain_run(
            runs,
            3,
            Some("heist deploy step 1"),
            &[("c", Verdict::Failed)],
        );
        // A run whose meta.json cannot be read (being created, or damaged) is passed over.
        std::fs::create_dir(runs.join("4")).expect("mkdir");
        std::fs::write(runs.join("4/meta.json"), "{").expect("meta");
        let last = last(runs);
        assert_eq!(last.run.as_deref(), Some(runs.join("2").as_path()));
        assert_eq!(last.get("a"), Some(Verdict::Ok));
        assert_eq!(last.get("b"), Some(Verdict::Failed));
        assert_eq!(last.get("c"), None);
    }
}
