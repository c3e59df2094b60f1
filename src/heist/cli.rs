//! `crew heist list | check FILE | plan NAME | run NAME | show [RUN]`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::def::HeistDef;
use super::engine::{self, AskReply};
use super::events::{Choice, Decision, HeistEvent, HeistSummary, StepRef};
use super::{journal, locate, plan, validate};
use crate::cli::{HeistCmd, HeistRunArgs};
use crate::inventory::{Host, Inventory};

pub fn run(hosts: Option<PathBuf>, cmd: HeistCmd) -> anyhow::Result<i32> {
    match cmd {
        HeistCmd::List(f) => list(hosts.as_deref(), f.file.as_deref()),
        HeistCmd::Check { file } => check(&file),
        HeistCmd::Plan(args) => {
            let (_, plan) = make_plan(hosts.as_deref(), &args)?;
            print!("{}", plan.describe());
            Ok(0)
        }
        HeistCmd::Run(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(run_heist(hosts.as_deref(), args))
        }
        HeistCmd::Show { run } => show(run.as_deref()),
    }
}

/// The hosts.toml in use, when there is one (heists live beside it).
fn hosts_file(explicit: Option<&Path>) -> Option<PathBuf> {
    Inventory::find_default(explicit).ok()
}

fn list(hosts: Option<&Path>, file: Option<&Path>) -> anyhow::Result<i32> {
    let (files, looked) = locate::heist_files(file, hosts_file(hosts).as_deref());
    if files.is_empty() {
        let dirs: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        println!("no heist files (looked in {})", dirs.join(", "));
        return Ok(0);
    }
    let mut bad = false;
    for f in &files {
        println!("{}", f.display());
        match validate::load_file(f) {
            Ok(hs) => {
                for h in hs {
                    println!("  {:16} {}", h.name, summary_line(&h));
                }
            }
            Err(d) => {
                bad = true;
                eprintln!("{d}");
            }
        }
    }
    Ok(if bad { 1 } else { 0 })
}

fn summary_line(h: &HeistDef) -> String {
    let mut s = h.description.clone().unwrap_or_default();
    s.push_str(&format!(
        "  [{} step(s); select {}",
        h.steps.len(),
        h.select
    ));
    if let Some(b) = h.batch {
        s.push_str(&format!("; batch {b}"));
    }
    if !h.profiles.is_empty() {
        let p: Vec<&str> = h.profiles.keys().map(String::as_str).collect();
        s.push_str(&format!("; profiles {}", p.join(",")));
    }
    s.push(']');
    s.trim_start().to_string()
}

fn check(file: &Path) -> anyhow::Result<i32> {
    match validate::load_file(file) {
        Ok(hs) => {
            let names: Vec<&str> = hs.iter().map(|h| h.name.as_str()).collect();
            println!(
                "{}: ok ({} heist(s): {})",
                file.display(),
                hs.len(),
                names.join(", ")
            );
            Ok(0)
        }
        Err(d) => {
            eprintln!("{d}");
            Ok(1)
        }
    }
}

fn make_plan(
    hosts: Option<&Path>,
    args: &HeistRunArgs,
) -> anyhow::Result<(Vec<(String, String)>, plan::Plan)> {
    let inv_path = Inventory::find_default(hosts)?;
    let (files, looked) = locate::heist_files(args.file.file.as_deref(), Some(&inv_path));
    let heist = locate::find(&args.name, &files, &looked)?;
    let sets = plan::parse_sets(&args.set)?;
    let inv = Inventory::load(&inv_path)?;
    let selection = plan::selection(&heist, args.profile.as_deref())?;
    let picked = select_hosts(&inv, selection)
        .with_context(|| format!("heist `{}` ({})", heist.name, heist.loc))?;
    let plan = plan::build(&heist, args.profile.as_deref(), &sets, picked)?;
    Ok((sets, plan))
}

/// The hosts a heist's selection picks (facts and outcomes are not known here).
pub fn select_hosts(inv: &Inventory, selection: &str) -> anyhow::Result<Vec<Host>> {
    let expr = crate::select::parse(selection)
        .map_err(|e| anyhow::anyhow!("selection:\n{}", e.render(selection)))?;
    let picked = inv
        .try_select(&expr, &crate::select::NoContext)
        .map_err(|e| anyhow::anyhow!("selection:\n{}", e.render(selection)))?;
    Ok(picked.into_iter().cloned().collect())
}

async fn run_heist(hosts: Option<&Path>, args: HeistRunArgs) -> anyhow::Result<i32> {
    let (sets, plan) = make_plan(hosts, &args)?;
    let exec = super::daemon_exec::DaemonExecutor::connect(args.accept_new_host_keys).await?;
    let steps: Vec<String> = plan.heist.steps.iter().map(|s| s.name.clone()).collect();
    let rollback: Vec<String> = plan.heist.rollback.iter().map(|s| s.name.clone()).collect();
    let width = plan.hosts.iter().map(|h| h.name.len()).max().unwrap_or(4);
    println!(
        "heist {}: {} host(s) in {} wave(s)",
        plan.heist.name,
        plan.hosts.len(),
        plan.waves.len()
    );
    let waves = plan.waves.len();
    let mut running = engine::start(std::sync::Arc::new(exec), plan, sets)?;
    println!(
        "run {} (journal: {})",
        running.run_id,
        running.run_dir.display()
    );
    let interactive = std::io::stdin().is_terminal();
    let p = Printer {
        steps,
        rollback,
        width,
    };
    while let Some(ev) = running.events.recv().await {
        match &ev {
            HeistEvent::Wave { index, hosts } => {
                println!("── wave {}/{waves}: {}", index + 1, hosts.join(","))
            }
            HeistEvent::Ask {
                ask_id,
                host,
                step,
                reason,
            } => {
                let choice = if interactive {
                    prompt(&p.step_name(*step), host, reason).await
                } else {
                    eprintln!(
                        "{host}: step `{}` asks the operator ({reason}), but stdin is not a terminal: aborting this host (run it from a terminal or the console to answer)",
                        p.step_name(*step)
                    );
                    Choice::Abort
                };
                let _ = running
                    .asks
                    .send(AskReply {
                        ask_id: *ask_id,
                        choice,
                    })
                    .await;
            }
            _ => p.print(&ev),
        }
        let _ = std::io::stdout().flush();
    }
    let summary = running
        .task
        .await
        .context("the heist engine stopped unexpectedly")?;
    print_summary(&summary);
    Ok(if summary.ok() { 0 } else { 1 })
}

async fn prompt(step: &str, host: &str, reason: &str) -> Choice {
    let (step, host, reason) = (step.to_string(), host.to_string(), reason.to_string());
    tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            eprint!("{host}: step `{step}` failed: {reason}\n  [a]dvance, [r]etry, roll[b]ack or abor[x]? ");
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

struct Printer {
    steps: Vec<String>,
    rollback: Vec<String>,
    width: usize,
}

impl Printer {
    fn step_name(&self, s: StepRef) -> String {
        if s.rollback {
            format!(
                "rollback {}",
                self.rollback
                    .get(s.index)
                    .map(String::as_str)
                    .unwrap_or("?")
            )
        } else {
            format!(
                "{}/{} {}",
                s.index + 1,
                self.steps.len(),
                self.steps.get(s.index).map(String::as_str).unwrap_or("?")
            )
        }
    }

    fn print(&self, ev: &HeistEvent) {
        let w = self.width;
        match ev {
            HeistEvent::StepFinished { host, step, attempt, result } => {
                let name = self.step_name(*step);
                let secs = result.wall_ms as f64 / 1000.0;
                let tries = if *attempt > 1 { format!(", attempt {attempt}") } else { String::new() };
                if result.ok {
                    println!("{host:w$}  [{name}] ok ({secs:.1}s{tries})");
                } else {
                    println!("{host:w$}  [{name}] FAILED: {}{tries}", result.reason.as_deref().unwrap_or("failed"));
                    for line in tail(&result.stderr, 5).into_iter().chain(tail(&result.stdout, 5)) {
                        println!("{:w$}    │ {}", "", sanitize(line));
                    }
                }
            }
            HeistEvent::Decision { host, step, decision } => {
                let name = self.step_name(*step);
                let what = match decision {
                    Decision::Retry { next_attempt, delay_ms } => format!("retrying (attempt {next_attempt}) in {:.1}s", *delay_ms as f64 / 1000.0),
                    Decision::Continue => "failure let through; continuing".into(),
                    Decision::Abort => "aborting this host; later waves will not start".into(),
                    Decision::Rollback => "rolling the heist back".into(),
                    Decision::Operator { choice } => format!("operator chose {choice:?}").to_lowercase(),
                    Decision::Halted => "stopped: the heist is rolling back".into(),
                    Decision::Advance | Decision::Ask => return,
                };
                println!("{host:w$}  [{name}] → {what}");
            }
            HeistEvent::RollbackStarted { trigger, step, hosts } => println!(
                "── rollback: `{}` failed on {trigger}; rolling back {} host(s) that reached it: {}",
                self.steps.get(*step).map(String::as_str).unwrap_or("?"),
                hosts.len(),
                crate::nodeset::fold(hosts)
            ),
            _ => {}
        }
    }
}

fn tail(s: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Host output is untrusted: control characters never reach the terminal raw.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => "    ".to_string(),
            c if c.is_control() => format!("\\x{:02x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

fn print_summary(s: &HeistSummary) {
    let done = s
        .hosts
        .iter()
        .filter(|(_, o)| matches!(o, super::events::HostOutcome::Completed { .. }))
        .count();
    println!(
        "== heist {} {}: completed on {done}/{} host(s) in {:.1}s",
        s.heist,
        match s.outcome {
            super::events::Outcome::Completed => "completed",
            super::events::Outcome::Failed => "FAILED",
            super::events::Outcome::RolledBack => "ROLLED BACK",
        },
        s.hosts.len(),
        s.elapsed_ms as f64 / 1000.0
    );
    let w = s.hosts.iter().map(|(h, _)| h.len()).max().unwrap_or(4);
    for (h, o) in &s.hosts {
        println!("   {h:w$}  {}", o.label());
    }
    println!("   journal: {}", s.run_dir);
}

fn show(run: Option<&str>) -> anyhow::Result<i32> {
    let dir = match run {
        Some(r) if Path::new(r).is_dir() => PathBuf::from(r),
        Some(r) => {
            let d =
                crate::paths::runs_dir().join(format!("heist-{}", r.trim_start_matches("heist-")));
            anyhow::ensure!(
                d.is_dir(),
                "no heist run {r} in {}",
                crate::paths::runs_dir().display()
            );
            d
        }
        None => journal::list_runs()
            .into_iter()
            .next()
            .with_context(|| format!("no heist runs in {}", crate::paths::runs_dir().display()))?,
    };
    let vm = journal::reconstruct(&dir)?;
    print!("{}", vm.render_text());
    for (si, row) in vm.cells.iter().enumerate() {
        for (hi, c) in row.iter().enumerate() {
            if let Some(reason) = &c.reason {
                println!(
                    "  {} [{}]: {}",
                    vm.hosts[hi],
                    vm.steps[si],
                    sanitize(reason)
                );
            }
        }
    }
    println!("journal: {}", dir.display());
    Ok(if vm.summary.as_ref().is_some_and(HeistSummary::ok) {
        0
    } else {
        1
    })
}
