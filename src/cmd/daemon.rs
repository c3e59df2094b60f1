//! `crew [--nats URL] daemon [--idle-timeout D] [--site S] [--fleet F]` runs the daemon in
//! the foreground; `crew daemon stop` stops a running one; `crew daemon keygen FILE` makes an
//! operator's signing key for the NATS bus.

use clap::{Args, Subcommand};

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// Exit after this long with no client and no run (default 30m; `0` = never).
    #[arg(long, value_parser = crate::duration::parse)]
    pub idle_timeout: Option<std::time::Duration>,
    /// Serve this site's hosts (hosts tagged site=SITE) for the bus: a site daemon.
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// The fleet's name on the bus (subjects crew.FLEET.…; default "default").
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<String>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DaemonAction {
    /// Stop a running daemon.
    Stop,
    /// Write a new operator signing key (an nkey seed, mode 0600) to FILE and print its
    /// public key for the site daemons' operators files.
    Keygen { file: std::path::PathBuf },
}

pub fn run(args: DaemonArgs) -> anyhow::Result<i32> {
    match args.action {
        Some(DaemonAction::Stop) => super::status::stop(),
        Some(DaemonAction::Keygen { file }) => {
            println!("{}", crate::daemon::bus::auth::keygen(&file)?);
            Ok(0)
        }
        None => {
            // The flags win over the environment and daemon.toml; set before any thread runs.
            // (`--nats` is global: crew's top level has set CREW_NATS from it.)
            for (k, v) in [("CREW_SITE", &args.site), ("CREW_FLEET", &args.fleet)] {
                if let Some(v) = v {
                    std::env::set_var(k, v);
                }
            }
            crate::daemon::run_foreground(args.idle_timeout)
        }
    }
}
