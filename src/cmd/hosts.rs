//! `crew hosts [SELECTION]`: the hosts a selection picks, as a table, and their nodeset.

use std::io::Write;

use clap::Args;

use crate::daemon::ssh;
use crate::inventory::Inventory;
use crate::model::{Host, Transport};
use crate::paths;
use crate::pick::{self, NoFacts};

#[derive(Debug, Args, Clone)]
pub struct HostsArgs {
    /// Selection expression; all hosts when omitted.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::selection_candidates))]
    pub selection: Option<String>,
    /// One JSON object per host and line, as resolved: name, hostname, port, user,
    /// identity_files, proxy_jump, known_hosts, transport, tags, notes.
    #[arg(long)]
    pub json: bool,
    /// These names (a nodeset), even names in no inventory, resolved through the ssh config.
    #[arg(short = 'w', long = "nodes", value_name = "NODESET")]
    pub nodes: Option<String>,
    /// The host key each host presents and whether known_hosts knows it (known, unknown,
    /// changed, revoked): a handshake that stops at the key, nothing authenticated or run.
    /// Exit 1 when some host's key is not known (or it cannot be reached).
    #[arg(long)]
    pub keys: bool,
}

/// One host as `crew hosts --json` prints it.
#[derive(serde::Serialize)]
struct HostJson<'a> {
    name: &'a str,
    hostname: &'a str,
    port: u16,
    user: String,
    identity_files: &'a [std::path::PathBuf],
    proxy_jump: Option<&'a str>,
    /// The jump hosts as resolved, first to last: `user@hostname:port` each.
    via: Vec<String>,
    known_hosts: &'a [std::path::PathBuf],
    transport: Transport,
    tags: &'a [String],
    notes: &'a [String],
}

fn json_line(h: &Host) -> serde_json::Result<String> {
    serde_json::to_string(&HostJson {
        name: &h.name,
        hostname: &h.address,
        port: h.port,
        user: h.user.clone().unwrap_or_else(paths::whoami),
        identity_files: &h.identity_files,
        proxy_jump: h.proxy_jump.as_deref(),
        via: h
            .jumps
            .iter()
            .map(|j| {
                let user = j.user.clone().unwrap_or_else(paths::whoami);
                format!("{user}@{}:{}", j.address, j.port)
            })
            .collect(),
        known_hosts: &h.known_hosts,
        transport: h.transport,
        tags: &h.tags,
        notes: &h.ssh_config_notes,
    })
}

/// Exit codes: 0 listed (even if nothing matched), 2 bad inventory or selection.
pub fn run(hosts: Option<std::path::PathBuf>, args: HostsArgs) -> anyhow::Result<i32> {
    let inv = match Inventory::load_default(hosts.as_deref()) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("crew hosts: {e}");
            return Ok(2);
        }
    };
    if inv.from_ssh_config {
        let looked = match Inventory::find_default(None) {
            Err(crate::inventory::InventoryError::NotFound { looked }) => looked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        eprintln!(
            "crew hosts: no hosts.toml found (looked for {looked}); the hosts are the Host \
             names of {}",
            inv.path.display()
        );
    }
    let inv = match &args.nodes {
        Some(set) => {
            let names = match crate::nodeset::expand(set) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("crew hosts: -w {set}: bad nodeset: {}", e.message);
                    return Ok(2);
                }
            };
            match inv.with_names(&names) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("crew hosts: {e}");
                    return Ok(2);
                }
            }
        }
        None => inv,
    };
    // Outcomes (`?failed`) come from the latest run in the run store; facts need the
    // agents, which `crew hosts` does not contact.
    let text = args.selection.as_deref().unwrap_or("*");
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let picked = match rt.block_on(pick::pick(&inv, text, &mut NoFacts, &paths::runs_dir())) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crew hosts: {e}");
            return Ok(2);
        }
    };
    if picked.facts_unavailable {
        eprintln!(
            "crew hosts: note: fact.* tests need the agents' facts; here they match nothing \
             (`crew run` asks the daemon for them)"
        );
    }
    let picked: Vec<&Host> = picked.hosts.iter().collect();
    if args.keys {
        return keys(&picked, args.json);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        for h in &picked {
            writeln!(out, "{}", json_line(h)?)?;
        }
        out.flush()?;
        return Ok(0);
    }
    out.write_all(table(&picked).as_bytes())?;
    out.flush()?;
    Ok(0)
}

/// The table and the closing count line.
pub fn table(hosts: &[&Host]) -> String {
    let rows: Vec<[String; 4]> = hosts
        .iter()
        .map(|h| {
            let addr = match h.transport {
                Transport::Local => "local".to_string(),
                Transport::Ssh if h.address.contains(':') => format!("[{}]:{}", h.address, h.port),
                Transport::Ssh => format!("{}:{}", h.address, h.port),
            };
            [
                h.name.clone(),
                addr,
                h.user.clone().unwrap_or_else(|| "-".into()),
                h.tags.join(" "),
            ]
        })
        .collect();
    let header = ["NAME", "ADDRESS", "USER", "TAGS"].map(String::from);
    let mut s = padded(&header, &rows);
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let noun = if hosts.len() == 1 { "host" } else { "hosts" };
    if hosts.is_empty() {
        s.push_str("0 hosts\n");
    } else {
        s.push_str(&format!(
            "{} {noun}: {}\n",
            hosts.len(),
            crate::nodeset::fold(&names)
        ));
    }
    s
}

/// Key scans at once.
const SCANS: usize = 32;

/// One host's line of `crew hosts --keys`.
struct KeyRow {
    name: String,
    address: String,
    found: Result<ssh::Scanned, String>,
}

/// `crew hosts --keys`: scan every SSH host's key (local hosts have none), print a table
/// (or JSON lines) and the counts; exit 0 only when every key is known.
fn keys(hosts: &[&Host], json: bool) -> anyhow::Result<i32> {
    let ssh_hosts: Vec<Host> = hosts
        .iter()
        .filter(|h| h.transport == Transport::Ssh)
        .map(|h| (*h).clone())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let opts = ssh::SshOptions::for_scan();
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(SCANS));
        let mut tasks = Vec::with_capacity(ssh_hosts.len());
        for h in ssh_hosts {
            let (opts, limit) = (opts.clone(), limit.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = limit.acquire_owned().await;
                let found = ssh::scan(&h, &opts).await.map_err(|e| e.to_string());
                KeyRow {
                    address: ssh::known_hosts::lookup_name(&h.address, h.port),
                    name: h.name,
                    found,
                }
            }));
        }
        let mut rows = Vec::with_capacity(tasks.len());
        for t in tasks {
            match t.await {
                Ok(r) => rows.push(r),
                Err(e) => anyhow::bail!("a key scan failed: {e}"),
            }
        }
        Ok(rows)
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in &rows {
            let v = match &r.found {
                Ok(k) => serde_json::json!({
                    "name": r.name, "address": r.address, "key_type": k.key_type,
                    "fingerprint": k.fingerprint, "state": k.state.as_str(), "where": k.detail,
                }),
                Err(e) => serde_json::json!({
                    "name": r.name, "address": r.address, "state": "error", "error": e,
                }),
            };
            writeln!(out, "{v}")?;
        }
    } else {
        out.write_all(keys_table(&rows).as_bytes())?;
    }
    out.flush()?;
    let all_known = rows
        .iter()
        .all(|r| matches!(&r.found, Ok(k) if k.state == ssh::KeyState::Known));
    Ok(if all_known { 0 } else { 1 })
}

fn keys_table(rows: &[KeyRow]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let (kind, fp, state, detail) = match &r.found {
                Ok(k) => (
                    k.key_type.clone(),
                    k.fingerprint.clone(),
                    k.state.as_str().to_string(),
                    k.detail.clone().unwrap_or_default(),
                ),
                Err(e) => ("-".into(), "-".into(), "error".into(), e.clone()),
            };
            [
                r.name.clone(),
                r.address.clone(),
                kind,
                fp,
                state,
                super::render::sanitize(detail.as_bytes()).to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "ADDRESS", "KEY", "FINGERPRINT", "STATE", "WHERE"].map(String::from);
    let mut s = padded(&header, &cells);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in &cells {
        match counts.iter_mut().find(|(k, _)| *k == c[4]) {
            Some((_, n)) => *n += 1,
            None => counts.push((c[4].clone(), 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    s.push_str(&format!(
        "{} host(s): {}\n",
        rows.len(),
        if counts.is_empty() {
            "no SSH hosts".to_string()
        } else {
            counts.join(", ")
        }
    ));
    s
}

/// Rows under a header, each column padded to its widest cell plus two spaces, the last one
/// unpadded. Padded by hand: a format width is limited to u16 (a 65 536-character name would
/// panic in `format!`).
fn padded<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in std::iter::once(header).chain(rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < N {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
