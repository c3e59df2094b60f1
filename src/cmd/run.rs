//! `crew run [OPTIONS] SELECTION -- COMMAND…`: pick hosts, fan the command out through the
//! daemon, stream what comes back, print a summary. Exit 0 only when every host exited 0;
//! 1 otherwise; 2 for usage and configuration errors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use super::output::{Mode, Output};
use super::render::{sanitize, Style};
use crate::client::facts::DaemonFacts;
use crate::client::Client;
use crate::inventory::Inventory;
use crate::model::{RunOrigin, Verdict};
use crate::paths;
use crate::pick::{self, PickError};
use crate::proto::daemon::{Event, Request, RunRequest};

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Selection expression (e.g. `role=web & !canary`, `web[01-05]`, `@frontend`).
    pub selection: String,
    /// The command, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
    /// Fold hosts with identical output into one block.
    #[arg(long, conflicts_with = "json")]
    pub gather: bool,
    /// Print JSON lines (one event per line).
    #[arg(long)]
    pub json: bool,
    /// Per-host command timeout (e.g. `30s`, `2m`; more than zero).
    #[arg(long, value_parser = positive_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Max hosts running at once (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout: Option<u32>,
    /// Accept and remember host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

/// A duration that is not zero (a zero timeout would time every host out at once).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match crate::duration::parse(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// After Ctrl-C: how long a TERM gets before KILL, and how long KILL gets before we stop
/// waiting for the daemon's RunFinished.
const TERM_GRACE: Duration = Duration::from_secs(3);
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn run(hosts: Option<PathBuf>, args: RunArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    let inv = match Inventory::load_default(hosts.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("crew: {e}");
            return Ok(2);
        }
    };
    // One thread: the client only waits on the daemon's socket and writes what comes back;
    // worker threads would only add wake-ups between them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(inv, args))
}

async fn run_async(inv: Inventory, args: RunArgs) -> anyhow::Result<i32> {
    // Facts are asked of the daemon only when the selection tests them; that connection is
    // then the one the run goes through.
    let mut facts = DaemonFacts::new(None, args.accept_new_host_keys);
    let picked = match pick::pick(&inv, &args.selection, &mut facts, &paths::runs_dir()).await {
        Ok(p) => p,
        Err(e @ PickError::Selection { .. }) => {
            eprintln!("crew: {e}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    for (host, why) in &picked.missing_facts {
        eprintln!("crew: {host}: no facts: {}", sanitize(why.as_bytes()));
    }
    if picked.hosts.is_empty() {
        eprintln!(
            "crew: no hosts match `{}` in {}",
            args.selection,
            inv.path.display()
        );
        return Ok(2);
    }
    let hosts = picked.hosts;
    let client = facts.into_client();
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
        origin: RunOrigin::Command,
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
                    out.store_failed();
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
