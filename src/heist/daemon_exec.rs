//! The real [`Executor`]: each step is a one-host `Run` through the daemon (the host's agent
//! runs it in its own process group and kills the group on timeout); put/fetch are the
//! daemon's `File` requests (the agent's WriteFile / ReadFile).

use std::time::Duration;

use crate::client::Client;
use crate::inventory::Host;
use crate::proto::daemon::{ErrorKind, Event, FileOp, FileResult, HostEvent, Request, RunRequest};

use super::executor::{Executor, OutputSink, RunSpec, StepOutcome};

/// After a step's own timeout, how long the daemon has to report the kill before the engine
/// kills the job itself and gives up on it.
const TIMEOUT_GRACE: Duration = Duration::from_secs(30);
/// How long a file read or write may take.
const FILE_WAIT: Duration = Duration::from_secs(120);

pub struct DaemonExecutor {
    client: Client,
    accept_new_host_keys: bool,
}

impl DaemonExecutor {
    pub fn new(client: Client, accept_new_host_keys: bool) -> DaemonExecutor {
        DaemonExecutor {
            client,
            accept_new_host_keys,
        }
    }

    /// Connect to the daemon of `CREW_HOME`, starting it when needed.
    pub async fn connect(accept_new_host_keys: bool) -> anyhow::Result<DaemonExecutor> {
        Ok(DaemonExecutor::new(
            Client::connect_or_spawn().await?,
            accept_new_host_keys,
        ))
    }

    async fn file(&self, host: &Host, op: FileOp) -> Result<FileResult, String> {
        let req = Request::File {
            host: host.clone(),
            op,
            accept_new_host_keys: self.accept_new_host_keys,
        };
        let mut rx = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("daemon: {e:#}"))?;
        let deadline = tokio::time::Instant::now() + FILE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => {
                    return Err(format!(
                        "no answer from the daemon within {}s",
                        FILE_WAIT.as_secs()
                    ))
                }
                Ok(None) => return Err("the daemon connection closed".into()),
                Ok(Some(Event::FileDone(r))) => return r,
                Ok(Some(Event::Error { message })) => return Err(message),
                Ok(Some(_)) => {}
            }
        }
    }
}

fn lost(message: String) -> StepOutcome {
    StepOutcome::Failed {
        kind: ErrorKind::Agent,
        message,
    }
}

impl Executor for DaemonExecutor {
    async fn run(&self, host: &Host, spec: RunSpec, sink: OutputSink) -> StepOutcome {
        let req = Request::Run(RunRequest {
            hosts: vec![host.clone()],
            selection: host.name.clone(),
            command: spec.command,
            env: spec.env,
            timeout_ms: spec.timeout.map(|t| t.as_millis() as u64),
            fanout: None,
            accept_new_host_keys: self.accept_new_host_keys,
            who: crate::paths::whoami(),
            label: Some(spec.label),
        });
        let mut rx = match self.client.request(req).await {
            Ok(rx) => rx,
            Err(e) => return lost(format!("daemon: {e:#}")),
        };
        let deadline = spec
            .timeout
            .map(|t| tokio::time::Instant::now() + t + TIMEOUT_GRACE);
        let mut run_id = None;
        let mut result = None;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(ev) => ev,
                    Err(_) => {
                        if let Some(run_id) = run_id {
                            let kill = Request::Kill {
                                run_id,
                                host: Some(host.name.clone()),
                                signal: libc::SIGKILL,
                            };
                            let _ = self.client.send(kill).await;
                        }
                        return StepOutcome::Failed {
                            kind: ErrorKind::Timeout,
                            message: format!(
                                "no result {}s past the step's timeout; job killed",
                                TIMEOUT_GRACE.as_secs()
                            ),
                        };
                    }
                },
                None => rx.recv().await,
            };
            match next {
                None => {
                    return result
                        .unwrap_or_else(|| lost("the daemon connection closed mid-step".into()))
                }
                Some(Event::RunStarted { run_id: id, .. }) => run_id = Some(id),
                Some(Event::Host { event, .. }) => match event {
                    HostEvent::Started { .. } => {}
                    HostEvent::Output { stream, data } => {
                        let _ = sink.send((stream, data)).await;
                    }
                    HostEvent::Exit(e) => result = Some(StepOutcome::Exited(e)),
                    HostEvent::Failed { kind, message } => {
                        result = Some(StepOutcome::Failed { kind, message })
                    }
                },
                Some(Event::RunFinished { .. }) => {
                    return result.unwrap_or_else(|| StepOutcome::Failed {
                        kind: ErrorKind::Internal,
                        message: "the daemon finished the run without a result for this host"
                            .into(),
                    })
                }
                Some(Event::Error { message }) => {
                    return StepOutcome::Failed {
                        kind: ErrorKind::Internal,
                        message,
                    }
                }
                Some(_) => {}
            }
        }
    }

    async fn read_file(&self, host: &Host, path: &str, max_size: u64) -> Result<Vec<u8>, String> {
        match self
            .file(
                host,
                FileOp::Read {
                    path: path.to_string(),
                    max_size,
                },
            )
            .await?
        {
            FileResult::Read { data, .. } => Ok(data),
            FileResult::Written { .. } => Err("the daemon answered a read with a write".into()),
        }
    }

    async fn write_file(
        &self,
        host: &Host,
        path: &str,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<u64, String> {
        match self
            .file(
                host,
                FileOp::Write {
                    path: path.to_string(),
                    data,
                    mode,
                },
            )
            .await?
        {
            FileResult::Written { size, .. } => Ok(size),
            FileResult::Read { .. } => Err("the daemon answered a write with a read".into()),
        }
    }
}
