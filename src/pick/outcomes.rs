//! "How did the last run go on this host?" for the selection atoms `?ok`, `?failed`,
//! `?timeout`, `?unreachable`, `?killed`: read from the run store.
//!
//! The last run is the newest of:
//! - the newest command run (a numbered directory whose origin is a command; the per-step
//!   runs a heist makes through the daemon do not count on their own), with each host's
//!   verdict from its record ([`store::read_run`]);
//! - the newest heist run (`heist-<ms>-<name>/`), with each host's verdict from its journal
//!   ([`heist::outcomes::host_verdicts`]); hosts in waves that never started have none.
//!
//! Only hosts of that one run have an outcome: `?failed` after `crew run web1 -- false`
//! matches web1 alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::heist;
use crate::model::Verdict;
use crate::store;

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
    let plain = newest_command_run(runs_dir);
    let heist_run = heist::journal::list_runs_in(runs_dir).into_iter().next();
    let heist_ms = heist_run
        .as_deref()
        .and_then(|d| heist::journal::read_meta(d).ok())
        .map(|m| m.started_ms);
    let heist_newer = match (&plain, heist_ms) {
        (Some((ms, _)), Some(hm)) => hm > *ms,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    match (heist_run, plain) {
        (Some(dir), _) if heist_newer => {
            let events = heist::journal::read(&dir).unwrap_or_else(|e| {
                tracing::warn!("outcomes of the last heist: {e:#}");
                Vec::new()
            });
            LastOutcomes {
                hosts: heist::outcomes::host_verdicts(&events),
                run: Some(dir),
            }
        }
        (_, Some((_, dir))) => from_command_run(&dir),
        _ => LastOutcomes::default(),
    }
}

/// The newest numbered run started by a command: (start ms, dir). Reads `meta.json` files
/// newest first and stops at the first command run.
fn newest_command_run(runs_dir: &Path) -> Option<(u64, PathBuf)> {
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
        if meta.origin().is_heist_step() {
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

fn from_command_run(dir: &Path) -> LastOutcomes {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunOrigin;
    use crate::store::{HostRecord, RunMeta};

    fn run(runs: &Path, id: u64, origin: RunOrigin, hosts: &[(&str, Verdict)]) {
        let names: Vec<&str> = hosts.iter().map(|(h, _)| *h).collect();
        let mut meta = RunMeta::command(id, "me", "all", "true", &names);
        meta.when = format!("2025-01-01T00:00:{id:02}.000Z");
        meta.origin = origin;
        let records: Vec<HostRecord> = hosts
            .iter()
            .map(|(h, v)| {
                let mut r = HostRecord::new(h);
                r.verdict = *v;
                r
            })
            .collect();
        store::write_run_blocking(runs, &meta, &records).expect("stored");
    }

    #[test]
    fn the_newest_command_run_counts_not_heist_steps_nor_unreadable_runs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path();
        run(runs, 1, RunOrigin::Command, &[("a", Verdict::Failed)]);
        run(
            runs,
            2,
            RunOrigin::Command,
            &[("a", Verdict::Ok), ("b", Verdict::Failed)],
        );
        let step = RunOrigin::HeistStep {
            run: "1-deploy".into(),
            heist: "deploy".into(),
            step: "pull".into(),
        };
        run(runs, 3, step, &[("c", Verdict::Failed)]);
        // A run of the older layout, labelled as a heist step, is passed over too.
        run(runs, 4, RunOrigin::Command, &[("d", Verdict::Failed)]);
        let meta = runs.join("4/meta.json");
        let text = std::fs::read_to_string(&meta).expect("meta");
        let text = text.replace("\"origin\"", "\"label\": \"heist deploy/pull\", \"old\"");
        std::fs::write(&meta, text).expect("meta");
        // A run whose meta.json cannot be read (being created, or damaged) is passed over.
        std::fs::create_dir(runs.join("5")).expect("mkdir");
        std::fs::write(runs.join("5/meta.json"), "{").expect("meta");
        let last = last(runs);
        assert_eq!(last.run.as_deref(), Some(runs.join("2").as_path()));
        assert_eq!(last.get("a"), Some(Verdict::Ok));
        assert_eq!(last.get("b"), Some(Verdict::Failed));
        assert_eq!(last.get("c"), None);
        assert_eq!(last.get("d"), None);
    }
}
