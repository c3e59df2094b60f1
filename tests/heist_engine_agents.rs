//! Engine policies over real agents, through the executor the daemon runs heists with
//! (`crew::daemon::heist::PoolExecutor`) on `local`-transport hosts: every step is a run of
//! the daemon to a `crew agent` child, and put/fetch are the agent's WriteFile/ReadFile.

mod support;

use std::sync::Arc;
use std::time::Duration;

use crew::daemon::heist::PoolExecutor;
use crew::daemon::DaemonOptions;
use crew::heist::events::StepRef;
use crew::heist::view_model::CellState;
use support::heist::{hosts, run, scenarios, scratch};

/// The daemon's state without its socket (under a temp home), and the executor the daemon
/// runs heists with.
struct Daemon {
    _home: tempfile::TempDir,
    daemon: Arc<crew::daemon::Daemon>,
}

impl Daemon {
    async fn stop_within(self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.daemon.close()).await;
    }
}

async fn daemon() -> (Daemon, Arc<PoolExecutor>) {
    let home = tempfile::tempdir().expect("tempdir");
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_crew"));
    let opts = DaemonOptions::in_home(home.path(), exe);
    let daemon = crew::daemon::open(opts, tokio_util::sync::CancellationToken::new())
        .await
        .expect("daemon state");
    let exec = Arc::new(PoolExecutor::new(daemon.clone(), false, "tester"));
    (
        Daemon {
            _home: home,
            daemon,
        },
        exec,
    )
}

macro_rules! agent_tests {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (d, exec) = daemon().await;
            scenarios::$name(exec.clone(), false).await;
            drop(exec);
            d.stop_within(Duration::from_secs(20)).await;
        }
    )*};
}

scenarios::every_scenario!(agent_tests);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_fetch_go_through_the_agent() {
    let (d, exec) = daemon().await;
    let dir = scratch("putfetch");
    let text = r#"
[heist.pf]
select = "*"
params = ["dir"]
[[heist.pf.step]]
name = "put"
put = { to = "${dir}/${host}.conf", content = "name=${host}\n", mode = 0o600 }
[[heist.pf.step]]
name = "show"
run = "cat ${dir}/${host}.conf; stat -c %a ${dir}/${host}.conf"
capture = { mode = '(\d{3})\s*$' }
[[heist.pf.step]]
name = "fetch"
fetch = { from = "${dir}/${host}.conf", to = "${dir}/fetched/${host}-${mode}" }
"#;
    let ds = dir.display().to_string();
    let o = run(
        exec.clone(),
        text,
        "pf",
        hosts(&["p1", "p2"]),
        &[("dir", &ds)],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(o.summary.ok(), "{:?}", o.summary);
    for h in ["p1", "p2"] {
        let fetched =
            std::fs::read_to_string(dir.join(format!("fetched/{h}-600"))).expect("fetched file");
        assert_eq!(fetched, format!("name={h}\n"));
        assert_eq!(
            o.view.cell(StepRef::main(0), h).map(|c| c.state),
            Some(CellState::Ok)
        );
    }
    drop(exec);
    d.stop_within(Duration::from_secs(20)).await;
}
