//! An `ask` nobody answers: with `ask_timeout` the heist file's `ask_default` decides once it
//! elapses (here `advance`: the failure is let through and the host goes on); without it the
//! ask waits. Local steps (real bash on this machine), no daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crew::heist::engine::{self, StartOptions};
use crew::heist::events::{Choice, HeistEvent, HostOutcome};
use crew::heist::executor::{Executor, OutputSink, PutData, RunSpec, StepOutcome};
use crew::heist::{plan, validate};
use crew::model::{Host, HostError, RunOrigin};

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
        p: &str,
        _: PutData,
        _: u32,
        _: RunOrigin,
        _: Option<String>,
    ) -> Result<u64, HostError> {
        panic!("write_file {p} on {}", host.name)
    }
}

fn heist(timeout: Option<&str>) -> String {
    let t = timeout
        .map(|t| format!("ask_timeout = \"{t}\"\nask_default = \"advance\"\n"))
        .unwrap_or_default();
    format!(
        "[heist.h]\nselect = \"*\"\n{t}\n[[heist.h.step]]\nname = \"check\"\nlocal = true\n\
         run = \"exit 3\"\non_fail = {{ then = \"ask\" }}\n\n[[heist.h.step]]\nname = \"after\"\n\
         local = true\nrun = \"true\"\n"
    )
}

/// Events of the heist until it ends, or until `limit` passes (None: it did not end).
async fn events(text: &str, limit: Duration) -> (Vec<HeistEvent>, bool) {
    let runs = tempfile::tempdir().expect("tempdir");
    let defs = validate::load_str(text, Path::new("t.toml")).expect("heist");
    let plan = plan::build(&defs[0], None, &[], vec![Host::local("h1")]).expect("plan");
    let opts = StartOptions {
        who: "tester".into(),
        runs_dir: runs.path().to_path_buf(),
    };
    let mut running = engine::start_with(Arc::new(NoRemote), plan, vec![], opts).expect("start");
    let mut out = Vec::new();
    let ended = tokio::time::timeout(limit, async {
        while let Some(ev) = running.events.recv().await {
            out.push(ev);
        }
    })
    .await
    .is_ok();
    if !ended {
        running.interrupt();
    }
    (out, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ask_takes_the_default_after_the_timeout() {
    let (evs, ended) = events(&heist(Some("300ms")), Duration::from_secs(30)).await;
    assert!(ended, "the heist ended without an answer: {evs:?}");
    assert!(evs.iter().any(|e| matches!(e, HeistEvent::Ask { .. })));
    assert!(
        evs.iter().any(|e| matches!(
            e,
            HeistEvent::AskClosed {
                choice: Some(Choice::Advance),
                ..
            }
        )),
        "{evs:?}"
    );
    let done = evs.iter().find_map(|e| match e {
        HeistEvent::HostDone { outcome, .. } => Some(outcome.clone()),
        _ => None,
    });
    assert_eq!(done, Some(HostOutcome::Completed { ignored: 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_timeout_the_ask_waits() {
    let (evs, ended) = events(&heist(None), Duration::from_secs(2)).await;
    assert!(!ended, "it went on without an answer: {evs:?}");
    assert!(
        matches!(evs.last(), Some(HeistEvent::Ask { .. })),
        "{evs:?}"
    );
}

#[test]
fn a_default_that_is_not_a_decision_is_an_error_with_its_place() {
    let text = "[heist.h]\nselect = \"*\"\nask_timeout = \"1m\"\nask_default = \"maybe\"\n\
                [[heist.h.step]]\nname = \"a\"\nrun = \"true\"\n";
    let e = validate::load_str(text, Path::new("t.toml")).expect_err("refused");
    let e = e.to_string();
    assert!(e.contains("t.toml:4:15") && e.contains("maybe"), "{e}");
}
