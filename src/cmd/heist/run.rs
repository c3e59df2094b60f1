//! `crew heist plan NAME` (here: pick the hosts, with facts and last-run outcomes when the
//! selection asks for them, and print the plan) and `crew heist run NAME` (the daemon picks,
//! plans and runs it; this follows it: progress, or JSON lines of [`HeistEvent`]s with
//! `--json`, and answers `ask`s on the terminal). The heist belongs to the daemon: this
//! client going away stops nothing; `--detach` only starts it.
//!
//! Ctrl-C: the engine starts nothing more, the steps in flight get TERM, KILL 3 s later (or
//! at a second Ctrl-C); the journal records the interruption, the summary is printed and
//! the exit status is 1.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::progress::{print_summary, Printer};
use super::HeistRunArgs;
use crate::client::facts::DaemonFacts;
use crate::client::Client;
use crate::cmd::run::OnCtrlC;
use crate::heist::events::{Choice, HeistEvent, StepRef};
use crate::heist::{locate, plan};
use crate::inventory::Inventory;
use crate::paths;
use crate::pick;
use crate::proto::daemon::{Event, HeistRequest, Request};
use crate::store;

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
    // What can be checked here is checked here (exit 2 before anything runs); the daemon
    // picks, plans and runs the heist.
    let sets = plan::parse_sets(&args.set)?;
    let client = Client::connect_or_spawn().await?;
    // A remote daemon uses its own inventory and heists.
    let (inventory, file) = if client.remote {
        if args.file.file.is_some() {
            anyhow::bail!(
                "--file names a file on this machine; a remote daemon runs its own heists"
            );
        }
        (None, None)
    } else {
        let inventory = std::path::absolute(Inventory::find_default(hosts)?)?;
        let file = match &args.file.file {
            Some(f) => Some(std::path::absolute(f)?),
            None => None,
        };
        (Some(inventory), file)
    };
    // A heist with `become` steps: the password is asked here, once, before it starts. (A
    // remote daemon's heists are not readable here: their `become` steps need NOPASSWD or an
    // agent already up.)
    let sudo_password = match &inventory {
        Some(inv) => {
            let (files, looked) = locate::heist_files(file.as_deref(), Some(inv));
            match locate::find(&args.name, &files, &looked) {
                Ok(h) if h.needs_sudo() => crate::cmd::askpass::ask(
                    h.steps
                        .iter()
                        .chain(&h.rollback)
                        .find_map(|s| s.become_user.as_deref())
                        .unwrap_or("root"),
                    &format!("heist {}", h.name),
                )?,
                _ => None,
            }
        }
        None => None,
    };
    let req = HeistRequest {
        name: args.name.clone(),
        profile: args.profile.clone(),
        vars: sets,
        inventory,
        file,
        accept_new_host_keys: args.accept_new_host_keys,
        detach: args.detach,
        sudo_password,
        // Followed on a terminal: one question about unknown host keys (a detached heist has
        // nobody to ask: refused, as without a terminal).
        ask_host_keys: !args.detach && crate::cmd::hostkeys::can_ask(args.json),
    };
    let mut rx = client.request(Request::Heist(req)).await?;
    let run = match rx.recv().await {
        Some(Event::Accepted { run }) => run,
        Some(Event::Error { message }) => anyhow::bail!("{message}"),
        Some(other) => anyhow::bail!("the daemon answered {other:?}"),
        None => anyhow::bail!("the daemon closed the connection"),
    };
    if args.detach {
        println!("{run}");
        return Ok(0);
    }
    let how = Follow {
        json: args.json,
        ctrl_c: OnCtrlC::Kill,
        answer_asks: Answer::OrAbort,
    };
    follow(&client, &run, rx, how).await
}

/// Whether the terminal answers a heist's asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// On a terminal, ask; else abort the host (`crew heist run`).
    OrAbort,
    /// On a terminal, ask; else leave the ask to other clients (`crew attach`).
    OrLeave,
}

#[derive(Debug, Clone, Copy)]
pub struct Follow {
    pub json: bool,
    /// Kill: interrupt the heist (TERM, then KILL); Detach: stop following.
    pub ctrl_c: OnCtrlC,
    pub answer_asks: Answer,
}

/// Print a heist's events as they come (progress text or `--json` lines), answer its asks on
/// the terminal, then the summary. Exit status: 0 when it completed on every host, else 1.
pub async fn follow(
    client: &Client,
    run: &str,
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    how: Follow,
) -> anyhow::Result<i32> {
    let json = how.json;
    let mut sigint = signal(SignalKind::interrupt()).context("catching Ctrl-C")?;
    let interactive = std::io::stdin().is_terminal();
    // One prompt on the terminal at a time; prompts run beside the event loop so Ctrl-C
    // is still heard while one waits.
    let prompting = Arc::new(tokio::sync::Mutex::new(()));
    let mut printer: Option<Printer> = None;
    let mut waves = 0;
    let mut summary = None;
    let mut interrupts = 0u32;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => {
                    eprintln!("crew: lost the connection to the daemon; the heist goes on there (crew attach {run})");
                    break;
                }
            },
            _ = sigint.recv() => {
                interrupts += 1;
                if how.ctrl_c == OnCtrlC::Detach {
                    eprintln!("detached; the heist goes on in the daemon (crew attach {run} follows it again)");
                    break;
                }
                let kill = interrupts > 1;
                if kill {
                    eprintln!("killing the steps in flight");
                } else {
                    eprintln!("interrupted: stopping the heist; the steps in flight get TERM (Ctrl-C again to kill at once)");
                }
                let req = Request::Interrupt { run: run.to_string(), kill };
                if let Err(e) = client.send(req).await {
                    eprintln!("crew: could not interrupt the heist: {e:#}");
                }
                continue;
            }
        };
        let ev = match ev {
            Event::Heist { json: text, .. } => match serde_json::from_str::<HeistEvent>(&text) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!("undecodable heist event: {e}");
                    continue;
                }
            },
            Event::HeistOutput {
                host,
                rollback,
                step,
                stream,
                data,
                ..
            } => HeistEvent::Output {
                host,
                step: StepRef {
                    rollback,
                    index: step as usize,
                },
                stream,
                data,
            },
            Event::HeistDone { .. } => break,
            Event::Error { message } => {
                eprintln!("crew: {}", super::sanitize(&message));
                continue;
            }
            // The heist's one question about unknown host keys, as `crew run` asks it.
            Event::HostKeys {
                run: id,
                ask_id,
                groups,
            } => {
                if !crate::cmd::hostkeys::can_ask(json) {
                    if how.answer_asks == Answer::OrLeave {
                        eprintln!("crew: the heist asks about new host keys; answer from a console or `crew attach {run}` on a terminal");
                    }
                    continue;
                }
                let (lock, tx) = (prompting.clone(), client.sender());
                tokio::spawn(async move {
                    let _one = lock.lock().await;
                    let accept = crate::cmd::hostkeys::ask(&groups).await;
                    let answer = Request::AnswerHostKeys {
                        run: id,
                        ask_id,
                        accept,
                    };
                    if let Err(e) = tx.send(answer).await {
                        eprintln!("crew: could not answer: {e:#}");
                    }
                });
                continue;
            }
            _ => continue,
        };
        if json {
            json_line(&ev);
        }
        match &ev {
            HeistEvent::Started {
                heist,
                hosts,
                steps,
                rollback,
                waves: w,
                ..
            } => {
                waves = w.len();
                if !json {
                    println!("heist {heist}: {} host(s) in {waves} wave(s)", hosts.len());
                    let dir = store::journal::journal_dir(&paths::runs_dir(), run);
                    println!("run {run} (journal: {})", dir.display());
                }
                printer = Some(Printer {
                    steps: steps.clone(),
                    rollback: rollback.clone(),
                    width: hosts.iter().map(|h| h.len()).max().unwrap_or(4),
                });
            }
            HeistEvent::Wave { index, hosts } if !json => {
                println!("── wave {}/{waves}: {}", index + 1, hosts.join(","))
            }
            HeistEvent::Ask {
                ask_id,
                host,
                step,
                reason,
            } => {
                let step = printer
                    .as_ref()
                    .map(|p| p.step_name(*step))
                    .unwrap_or_default();
                if !interactive && how.answer_asks == Answer::OrLeave {
                    eprintln!("{host}: step `{step}` asks the operator; answer it from a console or `crew attach {run}` on a terminal");
                    continue;
                }
                let (ask_id, host, reason) = (*ask_id, host.clone(), reason.clone());
                let (lock, run, tx) = (prompting.clone(), run.to_string(), client.sender());
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
                    let choice = format!("{choice:?}").to_lowercase();
                    let answer = Request::Answer {
                        run,
                        ask_id,
                        choice,
                    };
                    if let Err(e) = tx.send(answer).await {
                        eprintln!("crew: could not answer: {e:#}");
                    }
                });
            }
            HeistEvent::Finished { summary: s } => summary = Some(s.clone()),
            _ if !json => {
                if let Some(p) = &printer {
                    p.print(&ev)
                }
            }
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
    let Some(summary) = summary else {
        return Ok(1);
    };
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
