//! `crew put [-r] [--mode M] SELECTION LOCAL… REMOTE` and `crew fetch [-r] SELECTION REMOTE…
//! LOCALDIR`: copies as runs of the daemon (in `crew runs`, the run store, the audit log),
//! followed like `crew run` (per-host lines or `--json`, the summary, the exit status), with
//! a progress bar on a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::Mode;
use super::render::sanitize;
use super::run::{follow_with, OnCtrlC, Watch};
use crate::client::facts::DaemonFacts;
use crate::client::Client;
use crate::inventory::Inventory;
use crate::model::{Host, RunOrigin};
use crate::paths;
use crate::pick::{self, PickError};
use crate::proto::daemon::{Event, HostEvent, PutSource, Request, TransferOp, TransferRequest};

/// Options both commands take.
#[derive(Debug, Args, Clone)]
pub struct CopyOpts {
    /// Copy directories and what they hold (symlinks as symlinks, as `cp -a` does).
    #[arg(short, long)]
    pub recursive: bool,
    /// Max hosts copying at once (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout: Option<u32>,
    /// Print JSON lines (one event per line; `progress` events carry `bytes` and `total`).
    #[arg(long)]
    pub json: bool,
    /// Accept and remember host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Copy through sudo on each host (as root, or `--sudo-user`): root-only places can be
    /// read and written, and as root each file's owner is kept. The password is asked once
    /// (no echo; or from `$CREW_ASKPASS`); the privileged agent of `crew run --sudo` is
    /// reused. Empty answer: NOPASSWD.
    #[arg(long)]
    pub sudo: bool,
    /// The user sudo copies as (implies `--sudo`).
    #[arg(long, value_name = "USER")]
    pub sudo_user: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PutArgs {
    #[command(flatten)]
    pub opts: CopyOpts,
    /// Mode of the copied files, octal (e.g. 0644); default: each file's own.
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Selection expression (e.g. `role=web`, `web[01-05]`, `@frontend`).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::selection_candidates))]
    pub selection: String,
    /// Local files (or directories with -r), then the remote path: into it when it is a
    /// directory on the host (or ends with `/`, or several files are given), else as it.
    #[arg(required = true, num_args = 2.., value_names = ["LOCAL", "REMOTE"])]
    pub paths: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct FetchArgs {
    #[command(flatten)]
    pub opts: CopyOpts,
    /// Selection expression.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::selection_candidates))]
    pub selection: String,
    /// Remote files (or directories with -r), then the local directory: each host's copies
    /// land in LOCALDIR/<host>/<remote path>.
    #[arg(required = true, num_args = 2.., value_names = ["REMOTE", "LOCALDIR"])]
    pub paths: Vec<String>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("`{s}` is not an octal mode (0000-7777)")),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn put(hosts: Option<PathBuf>, args: PutArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    let Some((remote, locals)) = args.paths.split_last() else {
        eprintln!("crew put: give LOCAL… REMOTE");
        return Ok(2);
    };
    let mut sources = Vec::new();
    for l in locals {
        let p = Path::new(l);
        if let Err(e) = std::fs::symlink_metadata(p) {
            eprintln!("crew put: {l}: {e}");
            return Ok(2);
        }
        match std::path::absolute(p) {
            Ok(a) => sources.push(PutSource::Path(a)),
            Err(e) => {
                eprintln!("crew put: {l}: {e}");
                return Ok(2);
            }
        }
    }
    let op = TransferOp::Put {
        sources,
        remote: remote.clone(),
        recursive: args.opts.recursive,
        mode: args.mode,
        exact: false,
    };
    runtime()?.block_on(transfer("put", hosts, &args.selection, op, &args.opts))
}

pub fn fetch(hosts: Option<PathBuf>, args: FetchArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    let Some((local, remotes)) = args.paths.split_last() else {
        eprintln!("crew fetch: give REMOTE… LOCALDIR");
        return Ok(2);
    };
    let local_dir = match std::path::absolute(local) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crew fetch: {local}: {e}");
            return Ok(2);
        }
    };
    if local_dir.exists() && !local_dir.is_dir() {
        eprintln!("crew fetch: {local}: not a directory");
        return Ok(2);
    }
    let op = TransferOp::Fetch {
        remotes: remotes.to_vec(),
        local_dir,
        recursive: args.opts.recursive,
    };
    runtime()?.block_on(transfer("fetch", hosts, &args.selection, op, &args.opts))
}

async fn pick_hosts(
    what: &str,
    inv: &Inventory,
    selection: &str,
    facts: &mut DaemonFacts,
) -> anyhow::Result<Result<Vec<Host>, i32>> {
    let picked = match pick::pick(inv, selection, facts, &paths::runs_dir()).await {
        Ok(p) => p,
        Err(e @ PickError::Selection { .. }) => {
            eprintln!("crew {what}: {e}");
            return Ok(Err(2));
        }
        Err(e) => return Err(e.into()),
    };
    for (host, why) in &picked.missing_facts {
        eprintln!("crew: {host}: no facts: {}", sanitize(why.as_bytes()));
    }
    if picked.hosts.is_empty() {
        eprintln!(
            "crew {what}: no hosts match `{selection}` in {}",
            inv.path.display()
        );
        return Ok(Err(2));
    }
    Ok(Ok(picked.hosts))
}

async fn transfer(
    what: &str,
    hosts_file: Option<PathBuf>,
    selection: &str,
    op: TransferOp,
    opts: &CopyOpts,
) -> anyhow::Result<i32> {
    let inv = match Inventory::load_default(hosts_file.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("crew: {e}");
            return Ok(2);
        }
    };
    let mut facts = DaemonFacts::new(None, opts.accept_new_host_keys);
    let hosts = match pick_hosts(what, &inv, selection, &mut facts).await? {
        Ok(h) => h,
        Err(code) => return Ok(code),
    };
    let sudo = super::askpass::sudo_for(&opts.sudo_user, opts.sudo, hosts.len())?;
    let client = match facts.into_client() {
        Some(c) => c,
        None => Client::connect_or_spawn().await?,
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let req = TransferRequest {
        hosts,
        selection: selection.to_string(),
        op,
        fanout: opts.fanout,
        accept_new_host_keys: opts.accept_new_host_keys,
        who: String::new(),
        origin: RunOrigin::Command,
        // On a terminal, unknown host keys are asked about as for `crew run`.
        ask_host_keys: super::hostkeys::can_ask(opts.json),
        sudo,
    };
    let mut rx = client.request(Request::Transfer(req)).await?;
    // A copy the daemon cannot plan (a missing file, a directory without -r, a fifo) is
    // refused before anything runs: a usage error.
    let first = rx.recv().await;
    if let Some(Event::Error { message }) = &first {
        eprintln!("crew {what}: {}", sanitize(message.as_bytes()));
        return Ok(2);
    }
    let (tx, events) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut next = first;
        while let Some(ev) = next {
            if tx.send(ev).await.is_err() {
                return;
            }
            next = rx.recv().await;
        }
    });
    let mode = Mode::of(opts.json, false);
    let bar =
        (mode != Mode::Json && std::io::stderr().is_terminal()).then(|| Bar::new(names.len()));
    let code = match bar {
        Some(mut bar) => {
            follow_with(&client, events, mode, Some(names), OnCtrlC::Kill, &mut bar).await
        }
        None => {
            let mut quiet = super::run::NoWatch;
            follow_with(
                &client,
                events,
                mode,
                Some(names),
                OnCtrlC::Kill,
                &mut quiet,
            )
            .await
        }
    };
    Ok(code)
}

/// The progress bar: bytes (of every host together), rate, ETA, hosts done / failed.
struct Bar {
    bar: ProgressBar,
    hosts: usize,
    each: HashMap<String, (u64, u64)>,
    ok: usize,
    failed: usize,
}

impl Bar {
    fn new(hosts: usize) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut b = Bar {
            bar,
            hosts,
            each: HashMap::new(),
            ok: 0,
            failed: 0,
        };
        b.message();
        b
    }

    fn message(&mut self) {
        let mut m = format!("{}/{} hosts done", self.ok + self.failed, self.hosts);
        if self.failed > 0 {
            m += &format!(", {} failed", self.failed);
        }
        self.bar.set_message(m);
    }
}

impl Watch for Bar {
    fn event(&mut self, ev: &Event) {
        let Event::Host { host, event, .. } = ev else {
            return;
        };
        match event {
            HostEvent::Progress { done, total } => {
                self.each.insert(host.clone(), (*done, *total));
                let (d, t) = self
                    .each
                    .values()
                    .fold((0, 0), |(d, t), (a, b)| (d + a, t + b));
                self.bar.set_length(t);
                self.bar.set_position(d);
            }
            HostEvent::Exit { verdict, .. } => {
                if *verdict == crate::model::Verdict::Ok {
                    self.ok += 1;
                } else {
                    self.failed += 1;
                }
                self.message();
            }
            HostEvent::Failed { .. } => {
                self.failed += 1;
                self.message();
            }
            _ => {}
        }
    }

    fn print(&mut self, f: &mut dyn FnMut()) {
        self.bar.suspend(f);
    }

    fn done(&mut self) {
        self.bar.finish_and_clear();
    }

    fn hold(&mut self, on: bool) {
        if on {
            self.bar.disable_steady_tick();
            self.bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_are_octal() {
        assert_eq!(super::parse_mode("0644"), Ok(0o644));
        assert_eq!(super::parse_mode("755"), Ok(0o755));
        assert_eq!(super::parse_mode("0o600"), Ok(0o600));
        assert!(super::parse_mode("0999").is_err());
        assert!(super::parse_mode("77777").is_err());
    }
}
