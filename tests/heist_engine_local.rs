//! Engine policies with `local = true` steps: real bash processes on this machine, no daemon.
//! The same scenarios run over real agents in `heist_engine_agents.rs`.

mod support;

use std::sync::Arc;

use crew::heist::executor::{Executor, OutputSink, PutData, RunSpec, StepOutcome};
use crew::model::{Host, HostError, RunOrigin};
use support::heist::scenarios;

/// Local steps never reach an executor; this one fails the test if they do.
struct NoRemote;

impl Executor for NoRemote {
    async fn run(&self, host: &Host, spec: RunSpec, _: OutputSink) -> StepOutcome {
        panic!(
            "a local step reached the executor: {} on {}",
            spec.command, host.name
        )
    }
    async fn read_file(
        &self,
        host: &Host,
        path: &str,
        _: &std::path::Path,
        _: u64,
        _: RunOrigin,
        _: Option<String>,
    ) -> Result<u64, HostError> {
        panic!("read_file {path} on {}", host.name)
    }
    async fn write_file(
        &self,
        host: &Host,
        path: &str,
        _: PutData,
        _: u32,
        _: RunOrigin,
        _: Option<String>,
    ) -> Result<u64, HostError> {
        panic!("write_file {path} on {}", host.name)
    }
}

macro_rules! local_tests {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenarios::$name(Arc::new(NoRemote), true).await;
        }
    )*};
}

scenarios::every_scenario!(local_tests);
