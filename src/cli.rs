//! Command-line surface: clap definitions and dispatch to the roles.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "crew", version, about = "A terminal fleet console", long_about = None)]
pub struct Cli {
    /// Inventory file (default: ./hosts.toml, then <config dir>/crew/hosts.toml).
    #[arg(long = "hosts", global = true, env = "CREW_HOSTS")]
    pub hosts: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub console: ConsoleArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the console (the default with no subcommand).
    Console(ConsoleArgs),
    /// Run a command on the hosts a selection picks.
    Run(RunArgs),
    /// List the hosts a selection picks.
    Hosts(HostsArgs),
    /// Saved playbooks: list, check, plan, run.
    #[command(subcommand)]
    Heist(HeistCmd),
    /// Show the daemon and its host pool.
    Status,
    /// The resident daemon (started on demand; `crew daemon stop` stops it).
    Daemon(DaemonArgs),
    /// The agent: speaks frames on stdin/stdout (started by the daemon on each host).
    Agent,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ConsoleArgs {
    /// Theme name (a file in themes/ or the user config dir) or path.
    #[arg(long)]
    pub theme: Option<String>,
    /// Refuse to run anything (browse only).
    #[arg(long)]
    pub read_only: bool,
    /// Accept and remember host keys never seen before (changed or revoked keys are always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

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
    /// Per-host command timeout (e.g. `30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Max hosts running at once.
    #[arg(long)]
    pub fanout: Option<u32>,
    /// Accept and remember host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Args, Clone)]
pub struct HostsArgs {
    /// Selection expression; all hosts when omitted.
    pub selection: Option<String>,
}

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
}

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// Exit after this long with no client and no run (default 30m; `0` = never).
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DaemonAction {
    /// Stop a running daemon.
    Stop,
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e} (try 30s, 2m, 1h)"))
}

/// Run the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let hosts = cli.hosts.clone();
    match cli.command {
        None => crate::console::run(hosts, cli.console),
        Some(Command::Console(args)) => crate::console::run(hosts, args),
        Some(Command::Run(args)) => crate::client::run_cmd::run(hosts, args),
        Some(Command::Hosts(args)) => crate::inventory::hosts_cmd::run(hosts, args),
        Some(Command::Heist(cmd)) => crate::heist::cli::run(hosts, cmd),
        Some(Command::Status) => crate::client::status_cmd::run(),
        Some(Command::Daemon(args)) => match args.action {
            Some(DaemonAction::Stop) => crate::client::status_cmd::stop(),
            None => crate::daemon::run_foreground(args.idle_timeout),
        },
        Some(Command::Agent) => crate::agent::run_stdio(),
    }
}
