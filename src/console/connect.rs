//! Connecting the console to the daemon, in the background: the TUI is up at once and the
//! status bar says "connecting" until this reports back.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;

use super::action::Action;
use super::effect::Backend;
use crate::client::Client;
use crate::proto::daemon::{Event, Request};

/// The real daemon connection behind the effect executor.
struct ClientBackend(Client);

impl Backend for ClientBackend {
    fn request(&self, req: Request) -> BoxFuture<'_, anyhow::Result<mpsc::Receiver<Event>>> {
        self.0.request(req).boxed()
    }
    fn send(&self, req: Request) -> BoxFuture<'_, anyhow::Result<()>> {
        self.0.send(req).boxed()
    }
}

/// Connect (spawning the daemon when nobody answers), install the backend, report back.
pub fn spawn(slot: Arc<OnceLock<Arc<dyn Backend>>>, tx: mpsc::UnboundedSender<Action>) {
    tokio::spawn(async move {
        let msg = match Client::connect_or_spawn().await {
            Ok(client) => {
                let hello = (client.daemon_pid, client.daemon_build.clone());
                let _ = slot.set(Arc::new(ClientBackend(client)));
                Ok(hello)
            }
            Err(e) => {
                tracing::warn!("daemon connection: {e:#}");
                Err(format!("{e:#}"))
            }
        };
        let _ = tx.send(Action::Connected(msg));
    });
}
