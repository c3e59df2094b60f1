//! `crew shell HOST [-- COMMAND]`: an interactive login shell (or one command) on a host,
//! with a PTY, over the daemon's pooled connection to it (no new handshake; through the same
//! jump hosts), like `ssh -t`. The exit status is the remote shell's or command's.

use clap::Args;

use crate::client::{self, Client};
use crate::inventory::Inventory;
use crate::model::Host;

#[derive(Debug, Args, Clone)]
pub struct ShellArgs {
    /// The host's name in the inventory.
    pub host: String,
    /// Run this instead of a login shell (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Accept and remember the host's key if it was never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

pub fn run(hosts: Option<std::path::PathBuf>, args: ShellArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    let inv = match Inventory::load_default(hosts.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("crew shell: {e}");
            return Ok(2);
        }
    };
    let Some(host): Option<Host> = inv.host(&args.host).cloned() else {
        eprintln!(
            "crew shell: no host `{}` in {}",
            args.host,
            inv.path.display()
        );
        return Ok(2);
    };
    let command = (!args.command.is_empty()).then(|| args.command.join(" "));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = Client::connect_or_spawn().await?;
        client::shell::interactive(&c, host, command, args.accept_new_host_keys).await
    })
}
