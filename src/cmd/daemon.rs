//! `crew daemon [--idle-timeout D] [--listen ADDR:PORT]` runs the daemon in the foreground
//! (with the HTTPS API when it listens); `crew daemon stop` stops a running one.

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
}

#[derive(Debug, Subcommand, Clone)]
pub enum DaemonAction {
    /// Stop a running daemon.
    Stop,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<i32> {
    if let Some(DaemonAction::Stop) = args.action {
        return super::status::stop();
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
