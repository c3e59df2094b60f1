//! `crew daemon [--idle-timeout D]` runs the daemon in the foreground; `crew daemon stop`
//! stops a running one.

use clap::{Args, Subcommand};

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// Exit after this long with no client and no run (default 30m; `0` = never).
    #[arg(long, value_parser = crate::duration::parse)]
    pub idle_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DaemonAction {
    /// Stop a running daemon.
    Stop,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<i32> {
    match args.action {
        Some(DaemonAction::Stop) => super::status::stop(),
        None => crate::daemon::run_foreground(args.idle_timeout),
    }
}
