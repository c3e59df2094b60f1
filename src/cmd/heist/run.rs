//! `crew heist plan NAME` and `crew heist run NAME`: pick the hosts (facts and last-run
//! outcomes when the selection asks for them), build the plan, run it through the daemon,
//! stream progress (or JSON lines of [`HeistEvent`]s with `--json`), answer `ask`s on the
//! terminal.
//!
//! Ctrl-C: the engine starts nothing more, the steps in flight get TERM through the daemon,
//! KILL [`TERM_GRACE`] later (or at a second Ctrl-C); the journal records the interruption,
//! the summary is printed and the exit status is 1.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::progress::{print_summary, Printer};
use super::HeistRunArgs;
use crate::client::facts::DaemonFacts;
use crate::client::heist_exec::DaemonExecutor;
use crate::client::Client;
use crate::heist::engine::{self, AskReply};
use crate::heist::events::{Choice, HeistEvent};
use crate::heist::{locate, plan};
use crate::inventory::Inventory;
use crate::paths;
use crate::pick;

/// After Ctrl-C, how long the steps in flight get to end on TERM before KILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// Find the heist, pick its hosts, build the plan. The daemon is asked (and `facts` keeps its
/// connection) only when the selection needs facts.
pub async fn make_plan(
    hosts: Option<&Path>,
    args: &HeistRunArgs,
    facts: &mut DaemonFacts,
) -> anyhow::Result<(Vec<(String, String)>, plan::Plan)> {
    let inv_path = Inventory::find_default(hosts)?;
    let (files, looked) = locate::heist_files(args.file.file.as_deref(), Some(&inv_path));
    let heist = locate::find(&args.name, &files, &looked)?;
    let sets = plan::parse_sets(&args.set)?;
    let inv = Inventory::load(&inv_path)?;
    let selection = plan::selection(&heist, args.profile.as_deref())?;
    let picked = pick::pick(&inv, selection, facts, &paths::runs_dir())
        .await
        .with_context(|| format!("heist `{}` ({})", heist.name, heist.loc))?;
    for (host, why) in &picked.missing_facts {
        eprintln!("crew: {host}: no facts: {}", super::sanitize(why));
    }
    let plan = plan::build(&heist, args.profile.as_deref(), &sets, picked.hosts)?;
    Ok((sets, plan))
}

pub async fn plan_cmd(hosts: Option<&Path>, args: HeistRunArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(!args.json, "--json is for `crew heist run`");
    let mut facts = DaemonFacts::new(None, args.accept_new_host_keys);
    let (_, plan) = make_plan(hosts, &args, &mut facts).await?;
    print!("{}", plan.describe());
    Ok(0)
}

fn json_line(ev: &HeistEvent) {
    match serde_json::to_string(ev) {
        Ok(line) => println!("{line}"),
        Err(e) => tracing::error!("heist event as JSON: {e}"),
    }
}

pub async fn run_heist(hosts: Option<&Path>, args: HeistRunArgs) -> anyhow::Result<i32> {
    let mut facts = DaemonFacts::new(None, args.accept_new_host_keys);
    let (sets, plan) = make_plan(hosts, &args, &mut facts).await?;
    let client = match facts.into_client() {
        Some(c) => c,
        None => Client::connect_or_spawn().await?,
    };
    let exec = Arc::new(DaemonExecutor::new(client, args.accept_new_host_keys));
    let json = args.json;
    let p = Printer {
        steps: plan.heist.steps.iter().map(|s| s.name.clone()).collect(),
        rollback: plan.heist.rollback.iter().map(|s| s.name.clone()).collect(),
        width: plan.hosts.iter().map(|h| h.name.len()).max().unwrap_or(4),
    };
    let waves = plan.waves.len();
    if !json {
        println!(
            "heist {}: {} host(s) in {waves} wave(s)",
            plan.heist.name,
            plan.hosts.len()
        );
    }
    let mut sigint = signal(SignalKind::interrupt()).context("catching Ctrl-C")?;
    let mut running = engine::start(exec.clone(), plan, sets)?;
    if !json {
        println!(
            "run {} (journal: {})",
            running.run_id,
            running.run_dir.display()
        );
    }
    let interactive = std::io::stdin().is_terminal();
    // One prompt on the terminal at a time; prompts run beside the event loop so Ctrl-C
    // is still heard while one waits.
    let prompting = Arc::new(tokio::sync::Mutex::new(()));
    let mut interrupts = 0u32;
    let mut kill_at: Option<tokio::time::Instant> = None;
    loop {
        let escalate = async {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = running.events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts == 1 {
                    eprintln!("interrupted: stopping the heist; the steps in flight get TERM (Ctrl-C again to kill at once)");
                    running.interrupt();
                    exec.interrupt(libc::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + TERM_GRACE);
                } else {
                    eprintln!("killing the steps in flight");
                    exec.interrupt(libc::SIGKILL);
                    kill_at = None;
                }
                continue;
            }
            _ = escalate => {
                exec.interrupt(libc::SIGKILL);
                kill_at = None;
                continue;
            }
        };
        if json {
            json_line(&ev);
        }
        match &ev {
            HeistEvent::Wave { index, hosts } if !json => {
                println!("── wave {}/{waves}: {}", index + 1, hosts.join(","))
            }
            HeistEvent::Ask {
                ask_id,
                host,
                step,
                reason,
            } => {
                let (ask_id, asks) = (*ask_id, running.asks.clone());
                let (step, host, reason) = (p.step_name(*step), host.clone(), reason.clone());
                let lock = prompting.clone();
                tokio::spawn(async move {
                    let choice = if interactive {
                        let _one = lock.lock().await;
                        prompt(&step, &host, &reason).await
                    } else {
                        eprintln!(
                            "{host}: step `{step}` asks the operator ({reason}), but stdin is not a terminal: aborting this host (run it from a terminal or the console to answer)"
                        );
                        Choice::Abort
                    };
                    let _ = asks.send(AskReply { ask_id, choice }).await;
                });
            }
            _ if !json => p.print(&ev),
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
    let summary = running
        .task
        .await
        .context("the heist engine stopped unexpectedly")?;
    if !json {
        print_summary(&summary);
    }
    Ok(if summary.ok() { 0 } else { 1 })
}

async fn prompt(step: &str, host: &str, reason: &str) -> Choice {
    let (step, host, reason) = (step.to_string(), host.to_string(), reason.to_string());
    tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            eprint!(
                "{host}: step `{step}` failed: {}\n  [a]dvance, [r]etry, roll[b]ack or abor[x]? ",
                super::sanitize(&reason)
            );
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => return Choice::Abort,
                Ok(_) => {
                    if let Some(c) = Choice::parse(&line) {
                        return c;
                    }
                }
            }
        }
        Choice::Abort
    })
    .await
    .unwrap_or(Choice::Abort)
}
