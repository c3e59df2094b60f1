//! `crew heist list | check FILE | plan NAME | run NAME | show [RUN]`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

mod progress;
pub mod run;

use crate::heist::def::HeistDef;
use crate::heist::events::HeistSummary;
use crate::heist::{journal, locate, validate};
use crate::inventory::Inventory;
use crate::store::journal::{journal_dir, JOURNAL_PREFIX};

pub use progress::sanitize;

#[derive(Debug, Subcommand, Clone)]
pub enum HeistCmd {
    /// List the heists found.
    List(HeistFileArg),
    /// Validate a heist file.
    Check { file: PathBuf },
    /// Dry run: waves, hosts, rendered commands.
    Plan(HeistRunArgs),
    /// Run a heist, streaming progress.
    Run(HeistRunArgs),
    /// Show a heist run from its journal (the latest when RUN is omitted), also after a crash.
    Show { run: Option<String> },
}

#[derive(Debug, Args, Clone)]
pub struct HeistFileArg {
    /// Heist file (default: heists/ beside hosts.toml, then <config dir>/crew/heists/).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct HeistRunArgs {
    pub name: String,
    #[arg(long)]
    pub profile: Option<String>,
    /// Variables: `--set k=v` (repeatable).
    #[arg(long = "set", value_name = "K=V")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub file: HeistFileArg,
    /// Accept and remember host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// `run` only: print JSON lines of heist events instead of progress text.
    #[arg(long)]
    pub json: bool,
    /// `run` only: start the heist in the daemon, print its run id and return.
    #[arg(long, conflicts_with = "json")]
    pub detach: bool,
}

pub fn run(hosts: Option<PathBuf>, cmd: HeistCmd) -> anyhow::Result<i32> {
    match cmd {
        HeistCmd::List(f) => list(hosts.as_deref(), f.file.as_deref()),
        HeistCmd::Check { file } => check(&file),
        HeistCmd::Plan(args) => block_on(run::plan_cmd(hosts.as_deref(), args)),
        HeistCmd::Run(args) => block_on(run::run_heist(hosts.as_deref(), args)),
        HeistCmd::Show { run } => show(run.as_deref()),
    }
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let code = rt.block_on(f);
    // A prompt may still be blocked reading the terminal: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    code
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

fn show(run: Option<&str>) -> anyhow::Result<i32> {
    let dir = match run {
        Some(r) if Path::new(r).is_dir() => PathBuf::from(r),
        Some(r) => {
            let d = journal_dir(
                &crate::paths::runs_dir(),
                r.trim_start_matches(JOURNAL_PREFIX),
            );
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
