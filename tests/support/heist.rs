//! The heist engine in-process: run a heist text on hosts through an executor, collect every
//! event, answer `ask`s with a scripted list, rebuild the view model. The engine journals
//! into a run store of its own (a temp dir for the test process), named explicitly: no
//! `CREW_HOME` is set in the test process.

pub mod scenarios;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crew::heist::engine::{self, AskReply};
use crew::heist::events::{Choice, HeistEvent, HeistSummary};
use crew::heist::executor::Executor;
use crew::heist::view_model::ViewModel;
use crew::heist::{plan, validate};
use crew::model::Host;

/// A temp dir for the whole test process: the engine's run store (`runs/`) and the tests'
/// scratch directories (`scratch/`).
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("crew-heist-test")
            .tempdir()
            .expect("temp dir")
    })
    .path()
}

/// The run store the engine journals into.
pub fn runs_dir() -> PathBuf {
    root().join("runs")
}

/// A fresh scratch directory for one test's marker files.
pub fn scratch(name: &str) -> PathBuf {
    let d = root()
        .join("scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

pub fn hosts(names: &[&str]) -> Vec<Host> {
    names
        .iter()
        .map(|n| {
            let mut h = Host::local(n);
            h.tags = vec!["role=test".into(), format!("id={n}")];
            h
        })
        .collect()
}

pub struct Outcome {
    pub summary: HeistSummary,
    pub events: Vec<HeistEvent>,
    pub view: ViewModel,
    pub run_dir: PathBuf,
    pub asks: usize,
}

/// Run the heist `name` of `text` on `hosts`; `answers` are given to `ask`s in order
/// (Abort once they run out). Bounded: the whole heist must end within `limit`.
pub async fn run<E: Executor>(
    exec: Arc<E>,
    text: &str,
    name: &str,
    hosts: Vec<Host>,
    sets: &[(&str, &str)],
    answers: &[Choice],
    limit: Duration,
) -> Outcome {
    let defs = validate::load_str(text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("heist text: {e}"));
    let def = defs.iter().find(|h| h.name == name).expect("heist by name");
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let plan = plan::build(def, None, &sets, hosts).unwrap_or_else(|e| panic!("plan: {e}"));
    let mut running = engine::start_in(&runs_dir(), exec, plan, sets).expect("engine start");
    let mut events = Vec::new();
    let mut view = ViewModel::default();
    let mut answers = answers.iter().copied();
    let mut asks = 0;
    // Bounded as a whole: `limit` below.
    let collect = async {
        while let Some(ev) = running.events.recv().await {
            view.apply(&ev);
            if let HeistEvent::Ask { ask_id, .. } = &ev {
                asks += 1;
                let choice = answers.next().unwrap_or(Choice::Abort);
                running
                    .asks
                    .send(AskReply {
                        ask_id: *ask_id,
                        choice,
                    })
                    .await
                    .expect("answer");
            }
            events.push(ev);
        }
    };
    tokio::time::timeout(limit, collect)
        .await
        .expect("heist finished in time");
    let summary = tokio::time::timeout(limit, running.task)
        .await
        .expect("the engine task ends after its last event")
        .expect("engine task");
    Outcome {
        summary,
        events,
        view,
        run_dir: running.run_dir,
        asks,
    }
}

/// Wait (bounded) until no process has `needle` on its command line.
pub async fn gone(needle: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if super::processes_with(needle).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    super::processes_with(needle).is_empty()
}
