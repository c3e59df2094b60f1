//! `crew run [OPTIONS] SELECTION -- COMMAND…`: pick hosts, fan the command out through the
//! daemon, stream what comes back, print a summary. Exit 0 only when every host exited 0;
//! 1 otherwise; 2 for usage and configuration errors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::output::{Mode, Output};
use super::render::Style;
use super::Client;
use crate::cli::RunArgs;
use crate::heist::outcomes;
use crate::heist::select_ctx::{fetch_facts, SelectCtx};
use crate::inventory::Inventory;
use crate::model::Host;
use crate::model::Verdict;
use crate::proto::daemon::{Event, Request, RunRequest};
use crate::select;

/// After Ctrl-C: how long a TERM gets before KILL, and how long KILL gets before we stop
/// waiting for the daemon's RunFinished.
const TERM_GRACE: Duration = Duration::from_secs(3);
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn run(hosts: Option<PathBuf>, args: RunArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    let path = match Inventory::find_default(hosts.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crew: {e}");
            return Ok(2);
        }
    };
    let inv = match Inventory::load(&path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("crew: {e}");
            return Ok(2);
        }
    };
    let expr = match select::parse(&args.selection) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("crew: bad selection:\n{}", e.render(&args.selection));
            return Ok(2);
        }
    };
    // One thread: the client only waits on the daemon's socket and writes what comes back;
    // worker threads would only add wake-ups between them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(inv, expr, args))
}

async fn run_async(inv: Inventory, expr: select::Expr, args: RunArgs) -> anyhow::Result<i32> {
    // Selections without facts are settled before any daemon is involved.
    // Outcomes (`?failed`) come from the latest run or heist in the run store.
    // Groups may test facts or outcomes too: look through them before deciding.
    let full = match expr.resolve_groups(&inv.groups) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("crew: bad selection:\n{}", e.render(&args.selection));
            return Ok(2);
        }
    };
    let mut client = None;
    let mut ctx = SelectCtx::default();
    if full.uses_outcomes() {
        ctx.outcomes = outcomes::last(&crate::paths::runs_dir());
    }
    if full.uses_facts() {
        let c = client.insert(Client::connect_or_spawn().await?);
        ctx.facts = fetch_facts(c, &inv.hosts, args.accept_new_host_keys).await?;
    }
    let picked = match inv.try_select(&expr, &ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crew: bad selection:\n{}", e.render(&args.selection));
            return Ok(2);
        }
    };
    if picked.is_empty() {
        eprintln!(
            "crew: no hosts match `{}` in {}",
            args.selection,
            inv.path.display()
        );
        return Ok(2);
    }
    let hosts: Vec<Host> = picked.into_iter().cloned().collect();
    let client = match client {
        Some(c) => c,
        None => Client::connect_or_spawn().await?,
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let req = RunRequest {
        hosts,
        selection: args.selection.clone(),
        command: args.command.join(" "),
        env: Vec::new(),
        timeout_ms: args.timeout.map(|t| t.as_millis() as u64),
        fanout: args.fanout,
        accept_new_host_keys: args.accept_new_host_keys,
        who: crate::paths::whoami(),
        label: None,
    };
    let mode = if args.json {
        Mode::Json
    } else if args.gather {
        Mode::Gather
    } else {
        Mode::Lines
    };
    let style = Style::detect(std::io::stdout().is_terminal() && mode != Mode::Json);
    let err_style = Style::detect(std::io::stderr().is_terminal());
    let mut out = Output::new(
        mode,
        style,
        err_style,
        &names,
        std::io::BufWriter::new(std::io::stdout()),
        std::io::stderr(),
    );
    let mut rx = client.request(Request::Run(req)).await?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut run_id: Option<u64> = None;
    let mut interrupts = 0u32;
    // Escalation after Ctrl-C: (when, what to do).
    let mut deadline: Option<(tokio::time::Instant, bool)> = None;
    let mut finished: Option<Vec<(String, Verdict)>> = None;
    let mut store_failed = false;
    loop {
        let wait = async {
            match deadline {
                Some((t, _)) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                None => {
                    out.message("lost the connection to the daemon");
                    break;
                }
                Some(Event::RunStarted { run_id: id, .. }) => {
                    run_id = Some(id);
                    if interrupts > 0 {
                        kill(&client, id, libc::SIGTERM).await;
                    }
                }
                Some(Event::Host { host, event, .. }) => {
                    out.host_event(&host, event);
                    if rx.is_empty() {
                        out.flush();
                    }
                }
                Some(Event::RunFinished { summary, .. }) => {
                    finished = Some(summary.hosts);
                    break;
                }
                Some(Event::Error { message }) => {
                    out.message(&message);
                    store_failed = true;
                    break;
                }
                Some(_) => {}
            },
            _ = sigint.recv() => {
                interrupts += 1;
                let sig = if interrupts == 1 { libc::SIGTERM } else { libc::SIGKILL };
                out.message(if interrupts == 1 {
                    "interrupted: stopping the run (Ctrl-C again to kill at once)"
                } else {
                    "killing the run"
                });
                if let Some(id) = run_id {
                    kill(&client, id, sig).await;
                }
                deadline = Some(if interrupts == 1 {
                    (tokio::time::Instant::now() + TERM_GRACE, true)
                } else {
                    (tokio::time::Instant::now() + KILL_WAIT, false)
                });
            }
            _ = wait => match deadline {
                Some((_, true)) => {
                    if let Some(id) = run_id {
                        kill(&client, id, libc::SIGKILL).await;
                    }
                    deadline = Some((tokio::time::Instant::now() + KILL_WAIT, false));
                }
                _ => {
                    out.message("the run did not finish after the kill; giving up waiting");
                    break;
                }
            },
        }
    }
    out.finish();
    let unended = if interrupts > 0 {
        Verdict::Killed
    } else {
        Verdict::Failed
    };
    let verdicts = out.verdicts(finished.as_deref(), unended);
    out.summary(&verdicts);
    let all_ok = !store_failed && finished.is_some() && verdicts.iter().all(|v| v.1 == Verdict::Ok);
    Ok(if all_ok { 0 } else { 1 })
}

async fn kill(client: &Client, run_id: u64, signal: i32) {
    let req = Request::Kill {
        run_id,
        host: None,
        signal,
    };
    if let Err(e) = client.send(req).await {
        eprintln!("crew: could not send the kill: {e:#}");
    }
}
