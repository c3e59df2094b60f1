//! `crew [--nats URL] daemon [--idle-timeout D] [--site S] [--fleet F]` runs the daemon in
//! the foreground; `crew daemon stop` stops a running one; `crew daemon keygen FILE` makes an
//! operator's signing key for the NATS bus.

use clap::{Args, Subcommand};

use crate::api::ApiConfig;
use crate::daemon::config::DaemonConfig;

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// Exit after this long with no client and no run (default 30m, or never when listening;
    /// `0` = never).
    #[arg(long, value_parser = crate::duration::parse)]
    pub idle_timeout: Option<std::time::Duration>,
    /// Serve the HTTPS API and web view on ADDR:PORT (also `listen` in daemon.toml).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
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
        Some(DaemonAction::Stop) => return super::status::stop(),
        Some(DaemonAction::Keygen { file }) => {
            println!("{}", crate::daemon::bus::auth::keygen(&file)?);
            return Ok(0);
        }
        None => {}
    }
    // The flags win over the environment and daemon.toml; set before any thread runs.
    // (`--nats` is global: crew's top level has set CREW_NATS from it.)
    for (k, v) in [("CREW_SITE", &args.site), ("CREW_FLEET", &args.fleet)] {
        if let Some(v) = v {
            std::env::set_var(k, v);
        }
    }
    let cfg = DaemonConfig::load(&DaemonConfig::default_path()).map_err(anyhow::Error::msg)?;
    let Some(listen) = args.listen.or(cfg.listen) else {
        return crate::daemon::run_foreground(args.idle_timeout, None);
    };
    let api = ApiConfig {
        listen,
        dir: ApiConfig::default_dir(),
        cert: cfg.cert,
        key: cfg.key,
        hooks: cfg.hooks,
    };
    let front: crate::daemon::Front = Box::new(move |d| {
        Box::pin(async move {
            let l = crate::api::start(d, api).await?;
            // Printed for the operator (and scripts) that started it.
            println!("crew: API listening on https://{}", l.addr);
            println!("crew: certificate sha256 fingerprint {}", l.fingerprint);
            println!("crew: certificate {}", l.cert_path.display());
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            Ok(())
        })
    });
    // A daemon that serves the network stays up until stopped.
    let idle = Some(args.idle_timeout.unwrap_or(std::time::Duration::ZERO));
    crate::daemon::run_foreground(idle, Some(front))
}
