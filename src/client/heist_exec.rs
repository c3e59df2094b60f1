//! The real [`Executor`]: each step is a one-host `Run` through the daemon (the host's agent
//! runs it in its own process group and kills the group on timeout); put/fetch are the
//! daemon's `File` requests (the agent's WriteFile / ReadFile).

use std::time::Duration;

use tokio::sync::watch;

use crate::model::{ErrorKind, Host, HostError};
use crate::proto::daemon::{Event, FileOp, FileResult, HostEvent, Request, RunRequest};

use super::Client;
use crate::heist::executor::{Executor, OutputSink, RunSpec, StepOutcome};

/// After a step's own timeout, how long the daemon has to report the kill before the engine
/// kills the job itself and gives up on it.
const TIMEOUT_GRACE: Duration = Duration::from_secs(30);
/// How long a file read or write may take.
const FILE_WAIT: Duration = Duration::from_secs(120);
/// After an interrupt's kill, how long the daemon has to report the job's end.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct DaemonExecutor {
    client: Client,
    accept_new_host_keys: bool,
    /// The signal every job in flight should get (set by [`DaemonExecutor::interrupt`]).
    stop: watch::Sender<Option<i32>>,
}

impl DaemonExecutor {
    pub fn new(client: Client, accept_new_host_keys: bool) -> DaemonExecutor {
        DaemonExecutor {
            client,
            accept_new_host_keys,
            stop: watch::channel(None).0,
        }
    }

    /// Send `signal` (TERM, then KILL if need be) to every job this executor has in flight
    /// and to any it starts from now on; each then ends within [`KILL_WAIT`] even if the
    /// daemon never reports its end. Pair with [`super::engine::Running::interrupt`].
    pub fn interrupt(&self, signal: i32) {
        self.stop.send_replace(Some(signal));
    }

    async fn kill(&self, run_id: u64, host: &Host, signal: i32) {
        let kill = Request::Kill {
            run_id,
            host: Some(host.name.clone()),
            signal,
        };
        if let Err(e) = self.client.send(kill).await {
            tracing::warn!("heist: kill run {run_id} on {}: {e:#}", host.name);
        }
    }

    /// Connect to the daemon of `CREW_HOME`, starting it when needed.
    pub async fn connect(accept_new_host_keys: bool) -> anyhow::Result<DaemonExecutor> {
        Ok(DaemonExecutor::new(
            Client::connect_or_spawn().await?,
            accept_new_host_keys,
        ))
    }

    async fn file(&self, host: &Host, op: FileOp) -> Result<FileResult, HostError> {
        let req = Request::File {
            host: host.clone(),
            op,
            accept_new_host_keys: self.accept_new_host_keys,
        };
        let mut rx = self
            .client
            .request(req)
            .await
            .map_err(|e| HostError::new(ErrorKind::Internal, format!("daemon: {e:#}")))?;
        let deadline = tokio::time::Instant::now() + FILE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => {
                    return Err(HostError::new(
                        ErrorKind::Internal,
                        format!("no answer from the daemon within {}s", FILE_WAIT.as_secs()),
                    ))
                }
                Ok(None) => {
                    return Err(HostError::new(
                        ErrorKind::Internal,
                        "the daemon connection closed",
                    ))
                }
                Ok(Some(Event::FileDone(r))) => return r,
                Ok(Some(Event::Error { message })) => {
                    return Err(HostError::new(ErrorKind::Internal, message))
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// The daemon connection failed: the step's fate on the host is unknown.
fn lost(message: String) -> StepOutcome {
    StepOutcome::Failed(HostError::new(ErrorKind::Lost, message))
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
            origin: spec.origin,
        });
        let mut rx = match self.client.request(req).await {
            Ok(rx) => rx,
            Err(e) => return lost(format!("daemon: {e:#}")),
        };
        let deadline = spec
            .timeout
            .map(|t| tokio::time::Instant::now() + t + TIMEOUT_GRACE);
        let mut stop = self.stop.subscribe();
        // The signal this run was last sent after an interrupt, and when to give up on it.
        let mut sent: Option<i32> = None;
        let mut kill_deadline: Option<tokio::time::Instant> = None;
        let mut run_id = None;
        let mut result = None;
        loop {
            let wanted = *stop.borrow_and_update();
            if let (Some(sig), Some(id)) = (wanted, run_id) {
                if sent != Some(sig) {
                    sent = Some(sig);
                    self.kill(id, host, sig).await;
                    kill_deadline = Some(tokio::time::Instant::now() + KILL_WAIT);
                }
            }
            let until = match (deadline, kill_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                ev = rx.recv() => ev,
                _ = stop.changed() => continue,
                _ = timer => {
                    if sent.is_some() {
                        return StepOutcome::Failed(HostError::new(
                            ErrorKind::Killed,
                            format!("interrupted: no result {}s after the kill", KILL_WAIT.as_secs()),
                        ));
                    }
                    if let Some(run_id) = run_id {
                        self.kill(run_id, host, libc::SIGKILL).await;
                    }
                    return StepOutcome::Failed(HostError::new(
                        ErrorKind::Timeout,
                        format!(
                            "no result {}s past the step's timeout; job killed",
                            TIMEOUT_GRACE.as_secs()
                        ),
                    ));
                }
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
                    HostEvent::Exit { exit, .. } => result = Some(StepOutcome::Exited(exit)),
                    HostEvent::Failed { kind, message } => {
                        result = Some(StepOutcome::Failed(HostError::new(kind, message)))
                    }
                },
                Some(Event::RunFinished { .. }) => {
                    return result.unwrap_or_else(|| {
                        StepOutcome::Failed(HostError::new(
                            ErrorKind::Internal,
                            "the daemon finished the run without a result for this host",
                        ))
                    })
                }
                Some(Event::Error { message }) => {
                    return StepOutcome::Failed(HostError::new(ErrorKind::Internal, message))
                }
                Some(_) => {}
            }
        }
    }

    async fn read_file(
        &self,
        host: &Host,
        path: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, HostError> {
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
            FileResult::Written { .. } => Err(HostError::new(
                ErrorKind::Internal,
                "the daemon answered a read with a write",
            )),
        }
    }

    async fn write_file(
        &self,
        host: &Host,
        path: &str,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<u64, HostError> {
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
            FileResult::Read { .. } => Err(HostError::new(
                ErrorKind::Internal,
                "the daemon answered a write with a read",
            )),
        }
    }
}
