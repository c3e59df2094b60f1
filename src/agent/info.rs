//! Host facts for `Info`: what the selection language's `fact.KEY=VALUE` matches against.

use std::collections::BTreeMap;

use crate::model::Info;

/// Gather this host's facts (reads a few small files under /proc and /etc).
pub(super) async fn gather() -> Info {
    tokio::task::spawn_blocking(gather_blocking)
        .await
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn gather_blocking() -> Info {
    let hostname = read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .unwrap_or_default();
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let mem_total_kb = read_trimmed("/proc/meminfo")
        .and_then(|m| meminfo_total(&m))
        .unwrap_or(0);
    let uptime_s = read_trimmed("/proc/uptime")
        .and_then(|u| u.split('.').next().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let mut facts = read_trimmed("/etc/os-release")
        .map(|t| os_release_facts(&t))
        .unwrap_or_default();
    let info = Info {
        hostname,
        os: std::env::consts::OS.to_string(),
        kernel,
        arch: std::env::consts::ARCH.to_string(),
        cpus,
        mem_total_kb,
        uptime_s,
        facts: BTreeMap::new(),
    };
    facts.insert("hostname".into(), info.hostname.clone());
    facts.insert("kernel".into(), info.kernel.clone());
    facts.insert("arch".into(), info.arch.clone());
    facts.insert("cpus".into(), info.cpus.to_string());
    facts.insert("mem_total_kb".into(), info.mem_total_kb.to_string());
    facts.entry("os".into()).or_insert_with(|| info.os.clone());
    Info { facts, ..info }
}

fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `os` and `os_id` (ID), `os_version` (VERSION_ID), `os_name` (PRETTY_NAME), `os_like`
/// (ID_LIKE), `os_codename` (VERSION_CODENAME) from an os-release file.
pub(super) fn os_release_facts(text: &str) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string();
        let names: &[&str] = match key.trim() {
            "ID" => &["os", "os_id"],
            "VERSION_ID" => &["os_version"],
            "PRETTY_NAME" => &["os_name"],
            "ID_LIKE" => &["os_like"],
            "VERSION_CODENAME" => &["os_codename"],
            _ => &[],
        };
        for name in names {
            facts.insert((*name).to_string(), value.clone());
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_parsed() {
        let f = os_release_facts(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n# c\n",
        );
        assert_eq!(f.get("os").map(String::as_str), Some("debian"));
        assert_eq!(f.get("os_id").map(String::as_str), Some("debian"));
        assert_eq!(f.get("os_version").map(String::as_str), Some("12"));
        assert_eq!(
            f.get("os_name").map(String::as_str),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            meminfo_total("MemTotal:   1024 kB\nMemFree: 3 kB"),
            Some(1024)
        );
    }
}
