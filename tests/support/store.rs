//! Runs written into a run store the way the daemon leaves them (`meta.json`, `hosts.jsonl`),
//! for tests that start from an earlier session's results.

use std::path::Path;

use crew::daemon::store::{HostRecord, RunMeta, HOSTS_FILE, META_FILE};
use crew::proto::daemon::Verdict;

/// Run `id` of `command` under `<home>/runs/`, one record per host with its verdict.
pub fn stored_run(home: &Path, id: u64, command: &str, hosts: &[(&str, Verdict)]) {
    let dir = home.join("runs").join(id.to_string());
    std::fs::create_dir_all(&dir).expect("run dir");
    let meta = RunMeta {
        id,
        who: "me".into(),
        when: "2025-01-01T00:00:00.000Z".into(),
        selection: "role=demo".into(),
        command: command.into(),
        hosts: hosts.iter().map(|(h, _)| h.to_string()).collect(),
        label: None,
        timeout_ms: None,
        fanout: None,
    };
    let meta = serde_json::to_vec(&meta).expect("meta json");
    std::fs::write(dir.join(META_FILE), meta).expect("meta.json");
    let mut lines = String::new();
    for (h, v) in hosts {
        let mut r = HostRecord::new(h);
        r.verdict = *v;
        lines += &serde_json::to_string(&r).expect("record json");
        lines.push('\n');
    }
    std::fs::write(dir.join(HOSTS_FILE), lines).expect("hosts.jsonl");
}
