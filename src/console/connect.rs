//! Connecting the console to the daemon, in the background: the TUI is up at once and the
//! status bar says "connecting" until this reports back.
//!
//! TEMPORARY: `crate::client::Client` (branch `daemon`) has not landed on main yet; until it
//! does, `connect` reports that the daemon client is missing and the console runs in browse
//! mode (hosts, filter, run store). Once it lands, `ClientBackend` wraps it.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::action::Action;
use super::effect::Backend;

/// Connect (spawning the daemon when nobody answers), install the backend, report back.
pub fn spawn(slot: Arc<OnceLock<Arc<dyn Backend>>>, tx: mpsc::UnboundedSender<Action>) {
    tokio::spawn(async move {
        let result = connect().await;
        let msg = match result {
            Ok((backend, pid, build)) => {
                let _ = slot.set(backend);
                Ok((pid, build))
            }
            Err(e) => {
                tracing::warn!("daemon connection: {e:#}");
                Err(format!("{e:#}"))
            }
        };
        let _ = tx.send(Action::Connected(msg));
    });
}

async fn connect() -> anyhow::Result<(Arc<dyn Backend>, u32, String)> {
    anyhow::bail!("the daemon client is not built into this branch yet")
}
