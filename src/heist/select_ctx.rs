//! What a heist's selection may ask beyond the inventory: agent facts (`fact.os=debian`,
//! asked of the daemon only when the selection uses them) and the last run's outcomes
//! (`?failed`, read from the run store, see [`super::outcomes`]).

use std::collections::HashMap;

use super::outcomes::{self, LastOutcomes};
use crate::client::Client;
use crate::inventory::Inventory;
use crate::model::Host;
use crate::model::Info;
use crate::model::Verdict;
use crate::proto::daemon::{Event, Request};
use crate::select::{self, Context};

#[derive(Debug, Default)]
pub struct SelectCtx {
    pub facts: HashMap<String, Info>,
    pub outcomes: LastOutcomes,
}

/// A fact by key: the agent's standard ones, then its extra facts.
pub fn fact_of(i: &Info, key: &str) -> Option<String> {
    Some(match key {
        "hostname" => i.hostname.clone(),
        "os" => i.os.clone(),
        "kernel" => i.kernel.clone(),
        "arch" => i.arch.clone(),
        "cpus" => i.cpus.to_string(),
        "mem_total_kb" => i.mem_total_kb.to_string(),
        "uptime_s" => i.uptime_s.to_string(),
        other => i.facts.get(other)?.clone(),
    })
}

impl Context for SelectCtx {
    fn fact(&self, host: &str, key: &str) -> Option<String> {
        fact_of(self.facts.get(host)?, key)
    }
    fn outcome(&self, host: &str) -> Option<Verdict> {
        self.outcomes.get(host)
    }
}

/// Ask the daemon for the facts of `hosts`. Hosts without facts (unreachable, …) are
/// reported on stderr and simply match no `fact.` atom.
pub async fn fetch_facts(
    client: &Client,
    hosts: &[Host],
    accept_new_host_keys: bool,
) -> anyhow::Result<HashMap<String, Info>> {
    let mut rx = client
        .request(Request::Facts {
            hosts: hosts.to_vec(),
            accept_new_host_keys,
        })
        .await?;
    let mut facts = HashMap::new();
    match rx.recv().await {
        Some(Event::Facts(list)) => {
            for (host, r) in list {
                match r {
                    Ok(info) => {
                        facts.insert(host, info);
                    }
                    Err(e) => eprintln!("crew: {host}: no facts: {}", super::cli::sanitize(&e)),
                }
            }
        }
        Some(Event::Error { message }) => anyhow::bail!("facts: {message}"),
        other => anyhow::bail!("facts: unexpected answer {other:?}"),
    }
    Ok(facts)
}

/// The hosts `selection` picks. Facts are fetched through `client` (connected on first
/// need) only when the selection uses them; outcomes come from the run store only when it
/// tests them.
pub async fn select_hosts(
    inv: &Inventory,
    selection: &str,
    client: &mut Option<Client>,
    accept_new_host_keys: bool,
) -> anyhow::Result<Vec<Host>> {
    let bad = |e: select::SelectError| anyhow::anyhow!("selection:\n{}", e.render(selection));
    let expr = select::parse(selection).map_err(bad)?;
    // Groups may test facts or outcomes too: look through them.
    let full = expr.resolve_groups(&inv.groups).map_err(bad)?;
    let mut ctx = SelectCtx::default();
    if full.uses_outcomes() {
        ctx.outcomes = outcomes::last(&crate::paths::runs_dir());
    }
    if full.uses_facts() {
        let c = match client {
            Some(c) => c,
            None => client.insert(Client::connect_or_spawn().await?),
        };
        ctx.facts = fetch_facts(c, &inv.hosts, accept_new_host_keys).await?;
    }
    let picked = inv.try_select(&expr, &ctx).map_err(bad)?;
    Ok(picked.into_iter().cloned().collect())
}
