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
    #[arg(required_unless_present = "nodes", add = clap_complete::engine::ArgValueCompleter::new(super::completion::selection_candidates))]
    pub selection: Option<String>,
    /// Run on these names (a nodeset, as pdsh and clush take it: `web[01-20],db1`), even
    /// names in no inventory: they are resolved through the ssh config as `ssh NAME` would.
    /// With a SELECTION too, only the names it picks.
    #[arg(short = 'w', long = "nodes", value_name = "NODESET")]
    pub nodes: Option<String>,
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
    /// Do not forward stdin to the hosts' jobs (they get /dev/null). Without it, stdin is
    /// read once and sent to every host's job when it is not a terminal.
    #[arg(long)]
    pub no_stdin: bool,
    /// Run through sudo on each host (as root, or `--sudo-user`). The password is asked once
    /// (no echo; or from `$CREW_ASKPASS`); a privileged agent per host is started once and
    /// reused by later `--sudo` runs. Empty answer: NOPASSWD.
    #[arg(long)]
    pub sudo: bool,
    /// The user sudo runs the command as (implies `--sudo`).
    #[arg(long, value_name = "USER")]
    pub sudo_user: Option<String>,
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
/// Bytes of printed output gathered before a write to stdout (it is flushed anyway whenever
/// no more events are waiting).
const STDOUT_BUFFER: usize = 128 * 1024;

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
    let inv = match &args.nodes {
        Some(set) => {
            let names = match crate::nodeset::expand(set) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!(
                        "crew: -w {set}: bad nodeset (column {}): {}",
                        e.pos + 1,
                        e.message
                    );
                    return Ok(2);
                }
            };
            match inv.with_names(&names) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("crew: {e}");
                    return Ok(2);
                }
            }
        }
        None => inv,
    };
    let selection = match (&args.selection, &args.nodes) {
        (Some(s), _) => s.clone(),
        (None, Some(set)) => set.clone(),
        (None, None) => "*".to_string(),
    };
    let pick_text = args.selection.as_deref().unwrap_or("*");
    // Facts are asked of the daemon only when the selection tests them; that connection is
    // then the one the run goes through.
    let mut facts = DaemonFacts::new(None, args.accept_new_host_keys);
    let picked = match pick::pick(&inv, pick_text, &mut facts, &paths::runs_dir()).await {
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
        let whence = if inv.from_ssh_config {
            format!(
                "the Host names of {} (no hosts.toml found)",
                inv.path.display()
            )
        } else {
            inv.path.display().to_string()
        };
        eprintln!("crew: no hosts match `{selection}` in {whence}");
        return Ok(2);
    }
    let hosts = picked.hosts;
    let sudo = super::askpass::sudo_for(&args.sudo_user, args.sudo, hosts.len())?;
    let client = facts.into_client();
    let client = match client {
        Some(c) => c,
        None => Client::connect_or_spawn().await?,
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let req = RunRequest {
        hosts,
        selection,
        command: args.command.join(" "),
        env: Vec::new(),
        timeout_ms: args.timeout.map(|t| t.as_millis() as u64),
        fanout: args.fanout,
        accept_new_host_keys: args.accept_new_host_keys,
        // The daemon records who asked, from the connection.
        who: String::new(),
        origin: RunOrigin::Command,
        stdin: !args.no_stdin && !std::io::stdin().is_terminal(),
        ask_host_keys: super::hostkeys::can_ask(args.json),
        sudo,
    };
    let stdin = req.stdin;
    let mode = Mode::of(args.json, args.gather);
    let mut rx = client.request(Request::Run(req)).await?;
    if stdin {
        rx = forward_stdin(rx).await;
    }
    Ok(follow(&client, rx, mode, Some(names), OnCtrlC::Kill).await)
}

/// Bytes of stdin per `Request::Input`.
const STDIN_CHUNK: usize = 64 * 1024;

/// Once the run has started, send our stdin to every host's job (read once, on a connection
/// of its own so the daemon's back-pressure holds up only the reading, never the run's
/// events), then EOF. The run's events pass through unchanged.
async fn forward_stdin(
    mut rx: tokio::sync::mpsc::Receiver<Event>,
) -> tokio::sync::mpsc::Receiver<Event> {
    let first = rx.recv().await;
    if let Some(Event::RunStarted { run_id, .. }) = &first {
        let run_id = *run_id;
        tokio::spawn(async move {
            if let Err(e) = pump_stdin(run_id).await {
                tracing::warn!("stdin for run {run_id}: {e:#}");
                eprintln!("crew: stdin not forwarded: {e:#}");
            }
        });
    }
    let (tx, out) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut next = first;
        while let Some(ev) = next {
            if tx.send(ev).await.is_err() {
                return;
            }
            next = rx.recv().await;
        }
    });
    out
}

async fn pump_stdin(run_id: u64) -> anyhow::Result<()> {
    let client = Client::connect_or_spawn().await?;
    // A thread of its own reads stdin: a blocking read must not hold up the runtime's end
    // when the run is over before stdin is.
    let (tx, mut chunks) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; STDIN_CHUNK];
            let r = match stdin.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let end = !matches!(&r, Ok(b) if !b.is_empty());
            if tx.blocking_send(r).is_err() || end {
                return;
            }
        }
    });
    let sender = client.sender();
    while let Some(r) = chunks.recv().await {
        let data = r?;
        let eof = data.is_empty();
        sender
            .send(Request::Input {
                run_id,
                hosts: None,
                data,
                eof,
            })
            .await?;
        if eof {
            break;
        }
    }
    // Wait for the daemon to take the last request off the connection before dropping it.
    let _ = client.request(Request::Status).await?.recv().await;
    Ok(())
}

/// What Ctrl-C does while a run is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCtrlC {
    /// Kill the run's jobs: TERM, then KILL after [`TERM_GRACE`] (or at a second Ctrl-C).
    Kill,
    /// Stop following; the run goes on in the daemon.
    Detach,
}

/// Print a run's events as they come (lines, gathered blocks or JSON), then the summary;
/// the exit status of `crew run`: 0 only when every host exited 0. `names` is the run's hosts
/// when known up front; else they come with its first event (`crew attach`).
pub async fn follow(
    client: &Client,
    rx: tokio::sync::mpsc::Receiver<Event>,
    mode: Mode,
    names: Option<Vec<String>>,
    on_ctrl_c: OnCtrlC,
) -> i32 {
    follow_with(client, rx, mode, names, on_ctrl_c, &mut NoWatch).await
}

/// Something that watches a followed run besides its printed output (a progress bar).
pub trait Watch {
    /// Every event, before it is printed.
    fn event(&mut self, ev: &Event);
    /// Print through this (a progress bar hides itself meanwhile).
    fn print(&mut self, f: &mut dyn FnMut());
    /// The run is over: before the summary.
    fn done(&mut self);
    /// Stop drawing while a question is on the terminal (`true`), draw again (`false`).
    fn hold(&mut self, _on: bool) {}
}

pub struct NoWatch;

impl Watch for NoWatch {
    fn event(&mut self, _: &Event) {}
    fn print(&mut self, f: &mut dyn FnMut()) {
        f()
    }
    fn done(&mut self) {}
}

/// [`follow`], with a [`Watch`].
pub async fn follow_with(
    client: &Client,
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    mode: Mode,
    names: Option<Vec<String>>,
    on_ctrl_c: OnCtrlC,
    watch: &mut dyn Watch,
) -> i32 {
    let style = Style::detect(std::io::stdout().is_terminal() && mode != Mode::Json);
    let err_style = Style::detect(std::io::stderr().is_terminal());
    let output = |names: &[String]| {
        Output::new(
            mode,
            style,
            err_style,
            names,
            std::io::BufWriter::with_capacity(STDOUT_BUFFER, std::io::stdout()),
            std::io::stderr(),
        )
    };
    let mut out = names.as_deref().map(output);
    let mut sigint = match signal(SignalKind::interrupt()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("crew: cannot catch Ctrl-C: {e}");
            None
        }
    };
    let mut run_id: Option<u64> = None;
    let mut interrupts = 0u32;
    // Escalation after Ctrl-C: (when, what to do).
    let mut deadline: Option<(tokio::time::Instant, bool)> = None;
    let mut finished: Option<Vec<(String, Verdict)>> = None;
    let mut store_failed = false;
    let mut detached = false;
    loop {
        let wait = async {
            match deadline {
                Some((t, _)) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let ctrl_c = async {
            match sigint.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev.inspect(|e| watch.event(e)) {
                None => {
                    message(&mut out, "lost the connection to the daemon");
                    break;
                }
                Some(Event::RunStarted { run_id: id, hosts }) => {
                    run_id = Some(id);
                    if out.is_none() {
                        out = Some(output(&hosts));
                    }
                    if interrupts > 0 && on_ctrl_c == OnCtrlC::Kill {
                        kill(client, id, libc::SIGTERM).await;
                    }
                }
                Some(Event::Host { host, event, .. }) => {
                    if let Some(out) = out.as_mut() {
                        let mut event = Some(event);
                        let last = rx.is_empty();
                        watch.print(&mut || {
                            if let Some(ev) = event.take() {
                                out.host_event(&host, ev);
                            }
                            if last {
                                out.flush();
                            }
                        });
                    }
                }
                Some(Event::HostKeys { run, ask_id, groups }) => {
                    if let Some(o) = out.as_mut() {
                        o.flush();
                    }
                    if super::hostkeys::can_ask(mode == Mode::Json) {
                        // A progress bar keeps still while the operator reads and answers.
                        watch.hold(true);
                        let accept = super::hostkeys::ask(&groups).await;
                        watch.hold(false);
                        let req = Request::AnswerHostKeys { run, ask_id, accept };
                        if let Err(e) = client.send(req).await {
                            message(&mut out, &format!("could not send the answer: {e:#}"));
                        }
                    }
                }
                Some(Event::RunFinished { summary, .. }) => {
                    finished = Some(summary.hosts);
                    break;
                }
                Some(Event::Error { message: m }) => {
                    message(&mut out, &m);
                    if let Some(o) = out.as_mut() {
                        o.store_failed();
                    }
                    store_failed = true;
                    break;
                }
                Some(_) => {}
            },
            _ = ctrl_c => {
                interrupts += 1;
                if on_ctrl_c == OnCtrlC::Detach {
                    let id = run_id.map(|i| i.to_string()).unwrap_or_default();
                    message(&mut out, &format!("detached; the run goes on in the daemon (crew attach {id} follows it again)"));
                    detached = true;
                    break;
                }
                let sig = if interrupts == 1 { libc::SIGTERM } else { libc::SIGKILL };
                message(&mut out, if interrupts == 1 {
                    "interrupted: stopping the run (Ctrl-C again to kill at once)"
                } else {
                    "killing the run"
                });
                if let Some(id) = run_id {
                    kill(client, id, sig).await;
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
                        kill(client, id, libc::SIGKILL).await;
                    }
                    deadline = Some((tokio::time::Instant::now() + KILL_WAIT, false));
                }
                _ => {
                    message(&mut out, "the run did not finish after the kill; giving up waiting");
                    break;
                }
            },
        }
    }
    watch.done();
    let Some(mut out) = out else {
        return 1;
    };
    out.finish();
    if detached {
        return 1;
    }
    let unended = if interrupts > 0 {
        Verdict::Killed
    } else {
        Verdict::Failed
    };
    let verdicts = out.verdicts(finished.as_deref(), unended);
    out.summary(&verdicts);
    let all_ok = !store_failed && finished.is_some() && verdicts.iter().all(|v| v.1 == Verdict::Ok);
    if all_ok {
        0
    } else {
        1
    }
}

/// Crew's own message, through the output when there is one.
fn message<W: std::io::Write, E: std::io::Write>(out: &mut Option<Output<W, E>>, m: &str) {
    match out {
        Some(o) => o.message(m),
        None => eprintln!("crew: {}", sanitize(m.as_bytes())),
    }
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
