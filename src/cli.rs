//! The command-line surface: clap's top level and dispatch. Each command's arguments and
//! work live in its own module under `cmd/`; the console in `console/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(name = "crew", version, about = "A terminal fleet console", long_about = None)]
pub struct Cli {
    /// Inventory file (default: ./hosts.toml, then <config dir>/crew/hosts.toml).
    #[arg(long = "hosts", global = true, env = "CREW_HOSTS")]
    pub hosts: Option<PathBuf>,

    /// A remote daemon, `https://HOST:PORT` (token from CREW_TOKEN or CREW_TOKEN_FILE).
    #[arg(
        long = "daemon",
        global = true,
        env = "CREW_DAEMON",
        value_name = "URL"
    )]
    pub daemon: Option<String>,

    /// The remote daemon's certificate fingerprint (SHA-256, as `crew status` shows it);
    /// else the one remembered in <config dir>/crew/known_daemons, learned on first use.
    #[arg(
        long,
        global = true,
        env = "CREW_DAEMON_FINGERPRINT",
        value_name = "SHA256"
    )]
    pub fingerprint: Option<String>,
    /// Join the NATS bus at URL (sites; comma-separated servers). For clients: the daemon
    /// they start joins it (a daemon already running keeps its own settings).
    #[arg(long = "nats", global = true, env = "CREW_NATS", value_name = "URL")]
    pub nats: Option<String>,

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
    Run(cmd::run::RunArgs),
    /// List the hosts a selection picks.
    Hosts(cmd::hosts::HostsArgs),
    /// Copy local files (or trees, -r) to the hosts a selection picks.
    Put(cmd::transfer::PutArgs),
    /// Copy files (or trees, -r) from the hosts a selection picks into LOCALDIR/<host>/.
    Fetch(cmd::transfer::FetchArgs),
    /// Saved playbooks: list, check, plan, run.
    #[command(subcommand)]
    Heist(cmd::heist::HeistCmd),
    /// Runs and heists in flight and recent ones.
    Runs(cmd::runs::RunsArgs),
    /// Follow a run or heist from its beginning (what already happened, then live).
    Attach(cmd::runs::AttachArgs),
    /// An interactive shell (or one command) on a host, over the pooled connection.
    Shell(cmd::shell::ShellArgs),
    /// Show the daemon and its host pool.
    Status,
    /// Print the shell code that registers crew's completions (bash, zsh, fish).
    Completions(cmd::completion::CompletionsArgs),
    /// Print the manual page (roff; `crew man | man -l -`).
    Man,
    /// The resident daemon (started on demand; `crew daemon stop` stops it).
    Daemon(cmd::daemon::DaemonArgs),
    /// The HTTPS API's bearer tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
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

impl ConsoleArgs {
    fn options(self) -> crate::console::Options {
        crate::console::Options {
            theme: self.theme,
            read_only: self.read_only,
            accept_new_host_keys: self.accept_new_host_keys,
        }
    }
}

/// Run the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let hosts = cli.hosts.clone();
    // Every client command talks to the remote daemon when one is named (the daemon, the
    // agent and the commands that need no daemon never do).
    let local_only = matches!(
        &cli.command,
        Some(Command::Agent)
            | Some(Command::Token(_))
            | Some(Command::Completions(_))
            | Some(Command::Man)
    ) || matches!(&cli.command, Some(Command::Daemon(a)) if !matches!(a.action, Some(cmd::daemon::DaemonAction::Stop)));
    if let (Some(url), false) = (cli.daemon.as_deref().filter(|u| !u.is_empty()), local_only) {
        crate::client::remote::configure(url, cli.fingerprint.as_deref())?;
    }
    if let Some(url) = &cli.nats {
        // Inherited by a daemon this process starts (before any thread exists).
        std::env::set_var("CREW_NATS", url);
    }
    // Commands that act on hosts or runs say who the operator is where the daemon asks.
    let acts = matches!(
        &cli.command,
        None | Some(Command::Console(_))
            | Some(Command::Run(_))
            | Some(Command::Put(_))
            | Some(Command::Fetch(_))
            | Some(Command::Attach(_))
            | Some(Command::Shell(_))
            | Some(Command::Heist(cmd::heist::HeistCmd::Run(_)))
    );
    if acts {
        crate::client::identify()?;
    }
    match cli.command {
        None => crate::console::run(hosts, cli.console.options()),
        Some(Command::Console(args)) => crate::console::run(hosts, args.options()),
        Some(Command::Run(args)) => cmd::run::run(hosts, args),
        Some(Command::Hosts(args)) => cmd::hosts::run(hosts, args),
        Some(Command::Put(args)) => cmd::transfer::put(hosts, args),
        Some(Command::Fetch(args)) => cmd::transfer::fetch(hosts, args),
        Some(Command::Heist(c)) => cmd::heist::run(hosts, c),
        Some(Command::Runs(args)) => cmd::runs::runs(args),
        Some(Command::Attach(args)) => cmd::runs::attach(args),
        Some(Command::Shell(args)) => cmd::shell::run(hosts, args),
        Some(Command::Status) => cmd::status::run(),
        Some(Command::Completions(args)) => cmd::completion::completions(args),
        Some(Command::Man) => {
            use clap::CommandFactory as _;
            cmd::completion::man(Cli::command())
        }
        Some(Command::Daemon(args)) => cmd::daemon::run(args),
        Some(Command::Token(c)) => cmd::token::run(c),
        Some(Command::Agent) => crate::agent::run_stdio(),
    }
}
