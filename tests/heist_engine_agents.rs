//! Engine policies over real agents, through the executor the daemon runs heists with
//! (`crew::daemon::heist::PoolExecutor`) on `local`-transport hosts: every step is a run of
//! the daemon to a `crew agent` child, and put/fetch are the agent's WriteFile/ReadFile.

mod heist_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crew::daemon::heist::PoolExecutor;
use crew::daemon::DaemonOptions;
use crew::heist::events::StepRef;
use crew::heist::view_model::CellState;
use heist_support::{crew_home, hosts, run, scenarios, scratch};
use tokio_util::sync::CancellationToken;

/// The daemon's state without its socket, and the executor the daemon runs heists with.
struct Daemon {
    _home: tempfile::TempDir,
    daemon: Arc<crew::daemon::Daemon>,
    exec: Arc<PoolExecutor>,
}

async fn daemon() -> Daemon {
    crew_home();
    let home = tempfile::tempdir().expect("tempdir");
    let opts = DaemonOptions::in_home(home.path(), PathBuf::from(env!("CARGO_BIN_EXE_crew")));
    let daemon = crew::daemon::open(opts, CancellationToken::new())
        .await
        .expect("daemon state");
    Daemon {
        _home: home,
        exec: Arc::new(PoolExecutor::new(daemon.clone(), false, "tester")),
        daemon,
    }
}

impl Daemon {
    async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.daemon.close()).await;
    }
}

macro_rules! agent_tests {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let d = daemon().await;
            scenarios::$name(d.exec.clone(), false).await;
            d.stop().await;
        }
    )*};
}

agent_tests!(
    retry_then_succeeds,
    rollback_only_where_the_failing_step_was_reached,
    failed_wave_stops_later_waves,
    accepted_exit_codes_and_continue,
    captures_feed_later_steps,
    timeout_kills_the_process_group,
    ask_waits_for_the_operator,
    journal_rebuilds_the_view
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_fetch_go_through_the_agent() {
    let d = daemon().await;
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
        d.exec.clone(),
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
    d.stop().await;
}
