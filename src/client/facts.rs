//! Agent facts for the host picker, asked of the daemon (connected on first need).

use crate::model::Host;
use crate::pick::{FactSource, Facts};
use crate::proto::daemon::{Event, Request};

use super::Client;

/// Facts through the daemon. The connection is made on the first question and kept, so a
/// command that goes on to run through the daemon reuses it ([`DaemonFacts::into_client`]).
pub struct DaemonFacts {
    client: Option<Client>,
    accept_new_host_keys: bool,
}

impl DaemonFacts {
    pub fn new(client: Option<Client>, accept_new_host_keys: bool) -> DaemonFacts {
        DaemonFacts {
            client,
            accept_new_host_keys,
        }
    }

    /// The connection, when one was made.
    pub fn into_client(self) -> Option<Client> {
        self.client
    }
}

impl FactSource for DaemonFacts {
    async fn facts(&mut self, hosts: &[Host]) -> anyhow::Result<Facts> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(Client::connect_or_spawn().await?),
        };
        let mut rx = client
            .request(Request::Facts {
                hosts: hosts.to_vec(),
                accept_new_host_keys: self.accept_new_host_keys,
            })
            .await?;
        let mut facts = Facts::default();
        match rx.recv().await {
            Some(Event::Facts(list)) => {
                for (host, r) in list {
                    match r {
                        Ok(info) => {
                            facts.by_host.insert(host, info);
                        }
                        Err(e) => facts.missing.push((host, e)),
                    }
                }
            }
            Some(Event::Error { message }) => anyhow::bail!("{message}"),
            None => anyhow::bail!("the daemon closed the connection"),
            Some(other) => anyhow::bail!("unexpected answer {other:?}"),
        }
        Ok(facts)
    }
}
