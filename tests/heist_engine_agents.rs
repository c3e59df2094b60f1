//! Engine policies over real agents: a daemon served in-process (`crew::daemon::serve`) with
//! `local`-transport hosts, so every step is a `Run` through the daemon to a `crew agent`
//! child, and put/fetch are the agent's WriteFile/ReadFile.

mod support;

use std::sync::Arc;
use std::time::Duration;

use crew::heist::daemon_exec::DaemonExecutor;
use crew::heist::events::StepRef;
use crew::heist::view_model::CellState;
use support::daemon::Daemon;
use support::heist::{hosts, run, scenarios, scratch};

/// A daemon in-process and the heist executor that goes through it.
async fn daemon() -> (Daemon, Arc<DaemonExecutor>) {
    let (d, client) = Daemon::start_connected().await;
    (d, Arc::new(DaemonExecutor::new(client, false)))
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
