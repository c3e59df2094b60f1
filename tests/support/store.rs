//! Runs written into a run store the way the daemon leaves them (`meta.json`, `hosts.jsonl`),
//! through the store's own writer, for tests that start from an earlier session's results.

use std::path::Path;

use crew::model::Verdict;
use crew::store::{HostRecord, RunMeta};

/// Run `id` of `command` under `<home>/runs/`, one record per host with its verdict.
pub fn stored_run(home: &Path, id: u64, command: &str, hosts: &[(&str, Verdict)]) {
    let names: Vec<&str> = hosts.iter().map(|(h, _)| *h).collect();
    let mut meta = RunMeta::command(id, "me", "role=demo", command, &names);
    meta.when = "2025-01-01T00:00:00.000Z".into();
    let records: Vec<HostRecord> = hosts
        .iter()
        .map(|(h, v)| {
            let mut r = HostRecord::new(h);
            r.verdict = *v;
            r
        })
        .collect();
    crew::store::write_run_blocking(&home.join("runs"), &meta, &records).expect("stored run");
}
