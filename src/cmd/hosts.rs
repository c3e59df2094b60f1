//! `crew hosts [SELECTION]`: the hosts a selection picks, as a table, and their nodeset.

use std::io::Write;

use clap::Args;

use crate::inventory::Inventory;
use crate::model::{Host, Transport};
use crate::paths;
use crate::pick::{self, NoFacts};

#[derive(Debug, Args, Clone)]
pub struct HostsArgs {
    /// Selection expression; all hosts when omitted.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::selection_candidates))]
    pub selection: Option<String>,
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
    let mut out = std::io::stdout().lock();
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
    let mut widths = [0usize; 3];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
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
