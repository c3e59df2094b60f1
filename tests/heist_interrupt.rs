//! `crew heist run` (the real binary, its own daemon, local hosts) interrupted by Ctrl-C
//! typed on its terminal: the remote jobs in flight are killed (TERM, then KILL for one that
//! ignores TERM), the journal records the interruption, the summary is printed and the exit
//! status is 1. And `--json`: one HeistEvent per line.

mod support;

use std::time::Duration;

use crew::heist::events::{Decision, HeistEvent, HostOutcome, Outcome, StepRef};
use support::cli::{local_hosts, text, CliEnv};
use support::proc::{marker, processes_with, sleeps_with, wait_until};
use support::pty::{Io, PtyChild};

const WAIT: Duration = Duration::from_secs(60);

fn env(heists: &str) -> CliEnv {
    let env = CliEnv::new(&local_hosts(&[("n[1-3]", &["role=demo"])]));
    env.heist_file("h.toml", heists);
    env
}

/// The one heist run of the store.
fn heist_run_dir(env: &CliEnv) -> std::path::PathBuf {
    let mut runs = env.heist_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.remove(0)
}

#[test]
fn ctrl_c_kills_the_steps_in_flight_and_journals_the_interruption() {
    // A sleep nobody else runs: its argument is the marker we look for in /proc.
    let marker = marker();
    let heists = format!(
        r#"
[heist.slow]
select = "role=demo"
params = ["dir"]

[[heist.slow.step]]
name = "start"
run = "echo started ${{host}}"

[[heist.slow.step]]
name = "wait"
# n2 ignores TERM: it takes the KILL that follows.
run = "if [ ${{host}} = n2 ]; then trap '' TERM; fi; sleep {marker}; echo slept"
on_fail = {{ retry = 3, backoff = "1s" }}

[[heist.slow.step]]
name = "after"
run = "touch ${{dir}}/${{host}}-after"
"#
    );
    let env = env(&heists);
    let set = format!("dir={}", env.path().display());
    let mut tty = PtyChild::spawn(
        &mut env.command(&["heist", "run", "slow", "--set", &set]),
        Io::ALL,
    );
    wait_until("the three sleeps", WAIT, || sleeps_with(&marker).len() == 3);
    tty.ctrl_c();
    let status = tty.wait_exit(WAIT);
    let all = tty.wait_for("== heist slow", WAIT);
    assert_eq!(status.code(), Some(1), "{all}");
    wait_until("no sleep left", WAIT, || processes_with(&marker).is_empty());
    assert!(all.contains("interrupted: stopping the heist"), "{all}");
    assert!(
        all.contains("== heist slow INTERRUPTED: completed on 0/3 host(s)"),
        "{all}"
    );
    for h in ["n1", "n2", "n3"] {
        assert!(all.contains(&format!("{h}  interrupted at wait")), "{all}");
        assert!(!env.path().join(format!("{h}-after")).exists(), "{h}");
    }

    // The journal says what happened: each host's `wait` was killed (n2 by KILL, after
    // ignoring TERM), not retried, and the heist ended interrupted.
    let dir = heist_run_dir(&env);
    let events = crew::heist::journal::read(&dir).expect("journal");
    for h in ["n1", "n2", "n3"] {
        let results: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HeistEvent::StepFinished {
                    host, step, result, ..
                } if host == h && *step == StepRef::main(1) => Some(result.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1, "{h}: one attempt, no retry: {results:?}");
        let want = if h == "n2" {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        assert_eq!(results[0].signal, Some(want), "{h}: {:?}", results[0]);
        assert!(events.iter().any(|e| matches!(e,
            HeistEvent::Decision { host, decision: Decision::Interrupted, .. } if host == h)));
        assert!(events.iter().any(|e| matches!(e,
            HeistEvent::HostDone { host, outcome: HostOutcome::Interrupted { step } }
                if host == h && step == "wait")));
    }
    match events.last() {
        Some(HeistEvent::Finished { summary }) => {
            assert_eq!(summary.outcome, Outcome::Interrupted)
        }
        other => panic!("journal ends with {other:?}"),
    }
    let meta = crew::heist::journal::read_meta(&dir).expect("meta");
    assert_eq!(meta.outcome.as_deref(), Some("interrupted"));
}

#[test]
fn json_prints_one_heist_event_per_line() {
    let env = env(
        "[heist.two]\nselect = \"role=demo\"\n[[heist.two.step]]\nname = \"a\"\nrun = \"echo a-${host}\"\n\
         [[heist.two.step]]\nname = \"b\"\nrun = \"test ${host} != n3\"\n",
    );
    let o = env.crew(&["heist", "run", "two", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let events: Vec<HeistEvent> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a HeistEvent: {l}: {e}")))
        .collect();
    assert!(matches!(events.first(), Some(HeistEvent::Started { hosts, .. }) if hosts.len() == 3));
    let Some(HeistEvent::Finished { summary }) = events.last() else {
        panic!("last line is not Finished: {out}");
    };
    assert_eq!(summary.outcome, Outcome::Failed);
    assert_eq!(
        summary.hosts,
        vec![
            ("n1".into(), HostOutcome::Completed { ignored: 0 }),
            ("n2".into(), HostOutcome::Completed { ignored: 0 }),
            ("n3".into(), HostOutcome::Failed { step: "b".into() }),
        ]
    );
    let a_out: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            HeistEvent::StepFinished { step, result, .. } if *step == StepRef::main(0) => {
                Some(result.stdout.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(a_out.len(), 3);
    assert!(a_out.contains(&"a-n2\n"), "{a_out:?}");
    // The same records as the journal (which has no live Output events; hosts running at
    // once may interleave differently).
    let journal = crew::heist::journal::read(&heist_run_dir(&env)).expect("journal");
    let lines = |evs: Vec<&HeistEvent>| {
        let mut v: Vec<String> = evs
            .into_iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        v.sort();
        v
    };
    let printed = events
        .iter()
        .filter(|e| !matches!(e, HeistEvent::Output { .. }))
        .collect();
    assert_eq!(lines(printed), lines(journal.iter().collect()));
}
