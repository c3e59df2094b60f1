//! Stdin for a run's jobs (`RunRequest::stdin`): one bounded queue per host, filled by
//! `Request::Input` (every host's queue in turn, so the slowest job paces the sender: its
//! connection is not read meanwhile) and drained into the job's stdin on the agent within the
//! agent's credit. Chunks are shared, not copied, between hosts.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::inflight::{lock, RunCtl, Runs};
use super::link::JobInput;
use super::run::HostJob;

/// Chunks queued per host before `Request::Input` waits.
const HOST_QUEUE: usize = 16;

#[derive(Debug, Clone)]
pub enum InputItem {
    Data(Arc<[u8]>),
    Eof,
}

pub struct HostInput {
    tx: mpsc::Sender<InputItem>,
    /// Taken by the host's job when it starts.
    rx: Option<mpsc::Receiver<InputItem>>,
}

impl RunCtl {
    /// Open a stdin queue for each host.
    pub fn open_inputs(&self, names: &[String]) {
        let mut inputs = lock(&self.inputs);
        for name in names {
            let (tx, rx) = mpsc::channel(HOST_QUEUE);
            inputs.insert(name.clone(), HostInput { tx, rx: Some(rx) });
        }
    }

    /// The host's job is over (or never started): drop its queue.
    pub fn close_input(&self, host: &str) {
        lock(&self.inputs).remove(host);
    }

    fn take_input(&self, host: &str) -> Option<mpsc::Receiver<InputItem>> {
        lock(&self.inputs).get_mut(host).and_then(|i| i.rx.take())
    }
}

impl Runs {
    /// Queue `data` (then EOF when `eof`) for the stdin of run `run_id`'s jobs on `hosts`
    /// (all when None), waiting while a job's queue is full. Hosts whose job is over (or
    /// never started) are skipped.
    pub async fn input(
        &self,
        run_id: u64,
        hosts: Option<&[String]>,
        data: Vec<u8>,
        eof: bool,
    ) -> Result<(), String> {
        let ctl = self
            .get(run_id)
            .ok_or_else(|| format!("no run {run_id} in flight"))?;
        let targets: Vec<(String, mpsc::Sender<InputItem>)> = {
            let inputs = lock(&ctl.inputs);
            if inputs.is_empty() {
                return Err(format!("run {run_id} was started without stdin"));
            }
            let mut picked: HashMap<&str, _> = HashMap::new();
            for (name, i) in inputs.iter() {
                if hosts.is_none_or(|h| h.iter().any(|x| x == name)) {
                    picked.insert(name.as_str(), i.tx.clone());
                }
            }
            picked
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect()
        };
        let chunk: Option<Arc<[u8]>> = (!data.is_empty()).then(|| Arc::from(data));
        for (host, tx) in targets {
            if let Some(c) = &chunk {
                if tx.send(InputItem::Data(c.clone())).await.is_err() {
                    tracing::debug!(run_id, %host, "input for a job that is over");
                    continue;
                }
            }
            if eof {
                let _ = tx.send(InputItem::Eof).await;
            }
        }
        Ok(())
    }
}

impl HostJob<'_> {
    /// Feed the job's stdin from its queue (when the run has stdin); `input` None (an
    /// agentless job) drops the queue: input for it is skipped.
    pub(super) fn feed_input(&self, input: Option<JobInput>) {
        let Some(mut rx) = self.ctl.take_input(&self.host.name) else {
            return;
        };
        let Some(input) = input else { return };
        let host = self.host.name.clone();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let r = match item {
                    InputItem::Data(d) => input.send(&d).await,
                    InputItem::Eof => {
                        let r = input.end().await;
                        if let Err(e) = r {
                            tracing::debug!(%host, "stdin EOF: {e}");
                        }
                        return;
                    }
                };
                if let Err(e) = r {
                    // The job is over: what is queued for it goes nowhere.
                    tracing::debug!(%host, "stdin: {e}");
                    return;
                }
            }
        });
    }
}
