//! Engine scenarios, each run either with `local = true` steps (bash on this machine) or over
//! real agents through the daemon. `@L` in a heist text becomes `local = true` or nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crew::heist::events::{
    Choice, Decision, HeistEvent, HostOutcome, Outcome as HeistOutcome, StepRef,
};
use crew::heist::executor::Executor;
use crew::heist::journal;
use crew::heist::view_model::CellState;

use super::{gone, hosts, run, runs_dir, scratch};

const LIMIT: Duration = Duration::from_secs(60);

/// `$m!(a, b, …)` with every scenario of this file: each engine test file turns each into a
/// test run with its executor.
#[allow(unused_macros)]
macro_rules! every_scenario {
    ($m:ident) => {
        $m!(
            retry_then_succeeds,
            rollback_only_where_the_failing_step_was_reached,
            failed_wave_stops_later_waves,
            accepted_exit_codes_and_continue,
            captures_feed_later_steps,
            timeout_kills_the_process_group,
            ask_waits_for_the_operator,
            journal_rebuilds_the_view
        );
    };
}
#[allow(unused_imports)]
pub(crate) use every_scenario;

fn text(t: &str, local: bool) -> String {
    t.replace("@L", if local { "local = true" } else { "" })
}

fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

pub async fn retry_then_succeeds<E: Executor>(exec: Arc<E>, local: bool) {
    let dir = scratch(&format!("retry-{local}"));
    let t = text(
        r#"
[heist.flaky]
select = "*"
params = ["dir", "run"]
[[heist.flaky.step]]
name = "flaky"
@L
run = 'm=${dir}/${host}-${run}; if [ -e $m ]; then echo second; else touch $m; echo first >&2; exit 1; fi'
on_fail = { retry = 2, backoff = "100ms" }
[[heist.flaky.step]]
name = "after"
@L
run = "touch ${dir}/${host}.after"
"#,
        local,
    );
    let d = dir.display().to_string();
    let o = run(
        exec,
        &t,
        "flaky",
        hosts(&["r1", "r2"]),
        &[("dir", &d), ("run", "x1")],
        &[],
        LIMIT,
    )
    .await;
    assert!(o.summary.ok(), "{:?}", o.summary);
    for h in ["r1", "r2"] {
        let c = o.view.cell(StepRef::main(0), h).expect("cell");
        assert_eq!((c.state, c.attempts), (CellState::Ok, 2), "{h}: {c:?}");
        assert!(c.stdout.contains("second"), "{c:?}");
        assert!(
            exists(&dir, &format!("{h}.after")),
            "the next step ran on {h}"
        );
    }
    let retries = o
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                HeistEvent::Decision {
                    decision: Decision::Retry {
                        next_attempt: 2,
                        ..
                    },
                    ..
                }
            )
        })
        .count();
    assert_eq!(retries, 2, "one retry per host");
}

pub async fn rollback_only_where_the_failing_step_was_reached<E: Executor>(
    exec: Arc<E>,
    local: bool,
) {
    let dir = scratch(&format!("rollback-{local}"));
    // Waves of two: [w1 w2] complete; in [w3 w4] w3 fails `check` while w4 is still in `mark`:
    // w4 waits until the journal records that w3 is done (the engine has decided on the
    // rollback by then), so the heist has stopped before w4 could start `check`. w5's wave
    // never starts.
    let t = text(
        r#"
[heist.rb]
select = "*"
params = ["dir", "runs"]
batch = 2
[[heist.rb.step]]
name = "mark"
@L
run = '''
if [ ${host} = w4 ]; then
  seen=
  for i in $(seq 600); do
    grep -h '"host_done"' ${runs}/heist-*-rb/journal.jsonl 2>/dev/null | grep -q '"host":"w3"' && { seen=1; break; }
    sleep 0.05
  done
  [ -n "$seen" ] || touch ${dir}/w4.gave-up
fi
touch ${dir}/${host}.marked'''
[[heist.rb.step]]
name = "check"
@L
run = 'if [ ${host} = w3 ]; then exit 1; fi'
on_fail = { then = "rollback" }
[[heist.rb.rollback]]
name = "unmark"
undo = "mark"
@L
run = "rm ${dir}/${host}.marked && touch ${dir}/${host}.unmarked"
[[heist.rb.rollback]]
name = "note"
@L
run = "echo rolled >> ${dir}/${host}.notes"
"#,
        local,
    );
    let (d, runs) = (dir.display().to_string(), runs_dir().display().to_string());
    let o = run(
        exec,
        &t,
        "rb",
        hosts(&["w1", "w2", "w3", "w4", "w5"]),
        &[("dir", &d), ("runs", &runs)],
        &[],
        LIMIT,
    )
    .await;
    assert!(
        !exists(&dir, "w4.gave-up"),
        "w4 never saw w3's end in the journal under {runs}"
    );
    assert_eq!(o.summary.outcome, HeistOutcome::RolledBack);
    assert!(!o.summary.ok());
    for h in ["w1", "w2", "w3"] {
        assert!(
            exists(&dir, &format!("{h}.unmarked")) && !exists(&dir, &format!("{h}.marked")),
            "{h} rolled back"
        );
        let c = o.view.cell(StepRef::main(0), h).expect("cell");
        assert_eq!(c.state, CellState::RolledBack, "{h}");
        assert!(
            matches!(
                o.view.outcomes.get(h),
                Some(HostOutcome::RolledBack { clean: true, .. })
            ),
            "{h}: {:?}",
            o.view.outcomes.get(h)
        );
    }
    assert!(
        exists(&dir, "w4.marked") && !exists(&dir, "w4.unmarked") && !exists(&dir, "w4.notes"),
        "w4 never reached `check`"
    );
    assert!(
        matches!(o.view.outcomes.get("w4"), Some(HostOutcome::Stopped { .. })),
        "{:?}",
        o.view.outcomes.get("w4")
    );
    assert!(!exists(&dir, "w5.marked"), "w5's wave never started");
    assert_eq!(o.view.outcomes.get("w5"), Some(&HostOutcome::NotStarted));
    // Undo steps first (latest step first), then the rest in file order.
    let order: Vec<usize> = o
        .events
        .iter()
        .filter_map(|e| match e {
            HeistEvent::StepStarted { host, step, .. } if host == "w1" && step.rollback => {
                Some(step.index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(order, [0, 1]);
}

pub async fn failed_wave_stops_later_waves<E: Executor>(exec: Arc<E>, local: bool) {
    let dir = scratch(&format!("waves-{local}"));
    let t = text(
        r#"
[heist.w]
select = "*"
params = ["dir"]
batch = 1
[[heist.w.step]]
name = "touch"
@L
run = "touch ${dir}/${host}; test ${host} != v2"
"#,
        local,
    );
    let d = dir.display().to_string();
    let o = run(
        exec,
        &t,
        "w",
        hosts(&["v1", "v2", "v3"]),
        &[("dir", &d)],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(o.summary.outcome, HeistOutcome::Failed);
    assert!(exists(&dir, "v1") && exists(&dir, "v2") && !exists(&dir, "v3"));
    assert_eq!(
        o.view.outcomes.get("v2"),
        Some(&HostOutcome::Failed {
            step: "touch".into()
        })
    );
    assert_eq!(o.view.outcomes.get("v3"), Some(&HostOutcome::NotStarted));
    assert_eq!(
        o.view.cell(StepRef::main(0), "v3").map(|c| c.state),
        Some(CellState::Skipped)
    );
    assert!(!o
        .events
        .iter()
        .any(|e| matches!(e, HeistEvent::Wave { index: 2, .. })));
}

pub async fn accepted_exit_codes_and_continue<E: Executor>(exec: Arc<E>, local: bool) {
    let t = text(
        r#"
[heist.e]
select = "*"
[[heist.e.step]]
name = "three"
@L
run = "exit 3"
exits = [0, 3]
[[heist.e.step]]
name = "four"
@L
run = "exit 4"
exits = [0, 3]
on_fail = { then = "continue" }
[[heist.e.step]]
name = "last"
@L
run = "echo reached"
"#,
        local,
    );
    let o = run(exec, &t, "e", hosts(&["x1"]), &[], &[], LIMIT).await;
    let three = o.view.cell(StepRef::main(0), "x1").expect("cell");
    assert_eq!((three.state, three.exit_code), (CellState::Ok, Some(3)));
    let four = o.view.cell(StepRef::main(1), "x1").expect("cell");
    assert_eq!(
        (four.state, four.ignored, four.exit_code),
        (CellState::Failed, true, Some(4))
    );
    assert_eq!(four.reason.as_deref(), Some("exit 4 (accepted: 0, 3)"));
    assert_eq!(
        o.view.cell(StepRef::main(2), "x1").map(|c| c.state),
        Some(CellState::Ok)
    );
    assert_eq!(
        o.view.outcomes.get("x1"),
        Some(&HostOutcome::Completed { ignored: 1 })
    );
}

pub async fn captures_feed_later_steps<E: Executor>(exec: Arc<E>, local: bool) {
    let t = text(
        r#"
[heist.c]
select = "*"
[[heist.c.step]]
name = "probe"
@L
run = "echo version=1.2.${tag.id} build=77"
capture = { ver = 'version=(\S+)', b = 'build=(?P<build>\d+)' }
[[heist.c.step]]
name = "use"
@L
run = "echo using ${ver} build ${build}"
[[heist.c.step]]
name = "nomatch"
@L
run = "echo nothing here"
capture = { x = 'absent (\d+)' }
on_fail = { then = "continue" }
"#,
        local,
    );
    let o = run(exec, &t, "c", hosts(&["c1", "c2"]), &[], &[], LIMIT).await;
    for h in ["c1", "c2"] {
        let c = o.view.cell(StepRef::main(1), h).expect("cell");
        assert_eq!(c.stdout.trim(), format!("using 1.2.{h} build 77"));
        let n = o.view.cell(StepRef::main(2), h).expect("cell");
        assert_eq!(n.state, CellState::Failed);
        assert!(
            n.reason.as_deref().unwrap_or("").contains("did not match"),
            "{n:?}"
        );
    }
}

pub async fn timeout_kills_the_process_group<E: Executor>(exec: Arc<E>, local: bool) {
    let tag = format!(
        "{}{}",
        4000 + std::process::id() % 1000,
        if local { 1 } else { 2 }
    );
    let t = text(
        r#"
[heist.t]
select = "*"
params = ["n"]
[[heist.t.step]]
name = "hang"
@L
run = "bash -c 'sleep ${n}' & echo started; sleep ${n}; echo never"
timeout = "1s"
"#,
        local,
    );
    let o = run(exec, &t, "t", hosts(&["t1"]), &[("n", &tag)], &[], LIMIT).await;
    let c = o.view.cell(StepRef::main(0), "t1").expect("cell");
    assert_eq!(c.state, CellState::Failed);
    assert!(
        c.reason.as_deref().unwrap_or("").contains("timed out"),
        "{c:?}"
    );
    assert!(!c.stdout.contains("never"));
    // The background sleep was started before the timeout, so "none left" below means killed.
    assert!(c.stdout.contains("started"), "{c:?}");
    assert!(
        gone(&format!("sleep {tag}"), Duration::from_secs(10)).await,
        "a `sleep {tag}` survived the timeout"
    );
}

pub async fn ask_waits_for_the_operator<E: Executor>(exec: Arc<E>, local: bool) {
    let dir = scratch(&format!("ask-{local}"));
    let t = text(
        r#"
[heist.a]
select = "*"
params = ["dir"]
[[heist.a.step]]
name = "gate"
@L
run = 'm=${dir}/${host}; if [ -e $m ]; then echo open; else touch $m; exit 1; fi'
on_fail = { then = "ask" }
[[heist.a.step]]
name = "after"
@L
run = "echo after"
"#,
        local,
    );
    let d = dir.display().to_string();
    let o = run(
        exec.clone(),
        &t,
        "a",
        hosts(&["k1"]),
        &[("dir", &d)],
        &[Choice::Retry],
        LIMIT,
    )
    .await;
    assert_eq!(o.asks, 1);
    assert!(o.summary.ok(), "{:?}", o.summary);
    assert_eq!(
        o.view
            .cell(StepRef::main(0), "k1")
            .map(|c| (c.state, c.attempts)),
        Some((CellState::Ok, 2))
    );
    assert!(o.view.asks.is_empty());
    // Abort answers stop the host.
    let dir2 = scratch(&format!("ask2-{local}"));
    let d2 = dir2.display().to_string();
    let o = run(
        exec,
        &t,
        "a",
        hosts(&["k1"]),
        &[("dir", &d2)],
        &[Choice::Abort],
        LIMIT,
    )
    .await;
    assert_eq!(
        o.view.outcomes.get("k1"),
        Some(&HostOutcome::Failed {
            step: "gate".into()
        })
    );
    assert_eq!(
        o.view.cell(StepRef::main(1), "k1").map(|c| c.state),
        Some(CellState::Skipped)
    );
}

pub async fn journal_rebuilds_the_view<E: Executor>(exec: Arc<E>, local: bool) {
    let t = text(
        r#"
[heist.j]
select = "*"
[[heist.j.step]]
name = "one"
@L
run = "echo one ${host}"
[[heist.j.step]]
name = "two"
@L
run = "echo two; exit 2"
on_fail = { retry = 1 }
[[heist.j.step]]
name = "three"
@L
run = "echo three"
"#,
        local,
    );
    let o = run(exec, &t, "j", hosts(&["j1", "j2"]), &[], &[], LIMIT).await;
    let back = journal::reconstruct(&o.run_dir).expect("reconstruct");
    assert!(!back.interrupted);
    assert_eq!(back.cells, o.view.cells, "journal and live view agree");
    assert_eq!(back.outcomes, o.view.outcomes);
    assert_eq!(
        back.cell(StepRef::main(1), "j1")
            .map(|c| (c.state, c.attempts)),
        Some((CellState::Failed, 2))
    );
    let meta = journal::read_meta(&o.run_dir).expect("meta");
    assert_eq!(meta.outcome.as_deref(), Some("failed"));
    // A crash: keep the journal up to j1's start of `two`, plus a torn line. (Cut at j1's own
    // record: j2 may start `two` before j1 has finished `one`.)
    let text = std::fs::read_to_string(o.run_dir.join("journal.jsonl")).expect("journal");
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .position(|l| {
            l.contains("\"step_started\"")
                && l.contains("\"index\":1")
                && l.contains("\"host\":\"j1\"")
        })
        .expect("two started on j1");
    let crashed = o.run_dir.with_extension("crashed");
    std::fs::create_dir_all(&crashed).expect("dir");
    let mut kept = lines[..=cut].join("\n");
    kept.push_str("\n{\"event\":\"step_fini");
    std::fs::write(crashed.join("journal.jsonl"), kept).expect("write");
    let v = journal::reconstruct(&crashed).expect("reconstruct crashed");
    assert!(v.interrupted);
    let j1 = v
        .hosts
        .iter()
        .position(|h| h == "j1")
        .unwrap_or_else(|| panic!("j1 in the rebuilt view: {:?}", v.hosts));
    let states: Vec<CellState> = v.cells.iter().map(|row| row[j1].state).collect();
    // `one` done, `two` was running when the journal stopped (now interrupted), `three` never
    // started.
    assert_eq!(
        states,
        [CellState::Ok, CellState::Interrupted, CellState::Pending],
        "j1's cells after the crash"
    );
    let shown = v.render_text();
    assert!(shown.contains("INTERRUPTED"), "{shown}");
}
