//! `crew heist run` (the real binary, its own daemon) against a fleet of 20 real OpenSSH sshd
//! hosts on loopback: three steps in rolling waves of five, one host made to fail by its name.
//! Checked as a user would: per-host marker files the steps leave, the exit status, the printed
//! summary and the run's journal.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use crew::heist::events::{Decision, HeistEvent, HostOutcome, Outcome, StepRef};
use support::cli::{text, CliEnv};
use support::require_sshd;
use support::sshd::SshdFleet;

const HOSTS: usize = 20;

/// The CLI env (hosts.toml of the fleet's 20 hosts, all `role=web`) and the fleet.
fn env() -> (CliEnv, SshdFleet) {
    let fleet = SshdFleet::start(HOSTS);
    fleet.preinstall_agent();
    let ssh_config = fleet.file("ssh_config", "");
    let mut toml = fleet.inventory_defaults(&ssh_config);
    for h in fleet.hosts() {
        toml += &format!(
            "\n[[host]]\nname = {:?}\naddress = {:?}\ntags = [\"role=web\"]\n",
            h.name, h.address
        );
    }
    (CliEnv::new(&toml), fleet)
}

/// Connect one host, then the whole fleet (the agent is preinstalled: the upload has its
/// own tests), so the heist's first step is not also 20 handshakes at once on a loaded
/// machine. A host that timed out connecting gets one more try.
fn warm_up(env: &CliEnv, fleet: &SshdFleet) {
    let one = env.crew(&["run", "h001", "--", "true"]);
    assert_eq!(
        one.status.code(),
        Some(0),
        "{}\n{}",
        text(&one),
        fleet.logs()
    );
    let mut all = env.crew(&["run", "role=web", "--", "true"]);
    if all.status.code() != Some(0) {
        all = env.crew(&["run", "role=web", "--", "true"]);
    }
    assert_eq!(
        all.status.code(),
        Some(0),
        "{}\n{}",
        text(&all),
        fleet.logs()
    );
}

fn name(i: usize) -> String {
    format!("h{i:03}")
}

/// Per host, the summary outcome; and per (host, step), how many attempts started.
fn digest(
    events: &[HeistEvent],
) -> (
    BTreeMap<String, HostOutcome>,
    BTreeMap<(String, StepRef), u32>,
) {
    let mut outcomes = BTreeMap::new();
    let mut attempts = BTreeMap::new();
    for ev in events {
        match ev {
            HeistEvent::StepStarted { host, step, .. } => {
                *attempts.entry((host.clone(), *step)).or_insert(0) += 1
            }
            HeistEvent::Finished { summary } => {
                outcomes = summary.hosts.iter().cloned().collect();
            }
            _ => {}
        }
    }
    (outcomes, attempts)
}

const HEISTS: &str = r#"
# Three steps over the fleet in waves of five; `victim` fails the deploy.
[heist.roll]
select = "role=web"
batch = 5
vars = { victim = "h007" }
params = ["dir"]

[[heist.roll.step]]
name = "prepare"
run = "mkdir -p ${dir}/${host} && echo prepared > ${dir}/${host}/prepare"

[[heist.roll.step]]
name = "deploy"
run = "test ${host} != ${victim} || { echo 'deploy refused on ${host}' >&2; exit 3; }; touch ${dir}/${host}/deploy"
on_fail = { retry = 1, backoff = "200ms", then = "abort" }

[[heist.roll.step]]
name = "verify"
run = "test -e ${dir}/${host}/deploy && touch ${dir}/${host}/verify && echo verified ${host}"

# The same shape, rolled back when the check fails on h012.
[heist.release]
select = "role=web"
batch = "25%"
params = ["dir"]

[[heist.release.step]]
name = "stage"
run = "mkdir -p ${dir}/${host} && touch ${dir}/${host}/staged"

[[heist.release.step]]
name = "switch"
run = "touch ${dir}/${host}/switched"

[[heist.release.step]]
name = "check"
run = "test ${host} != h012 || { sleep 1; echo 'check failed on ${host}' >&2; exit 1; }"
on_fail = { then = "rollback" }

[[heist.release.rollback]]
name = "unswitch"
undo = "switch"
run = "rm ${dir}/${host}/switched && touch ${dir}/${host}/unswitched"
"#;

fn exists(dir: &Path, host: &str, file: &str) -> bool {
    dir.join(host).join(file).exists()
}

#[test]
fn three_steps_over_twenty_ssh_hosts_with_one_failing() {
    if !require_sshd() {
        return;
    }
    let (env, fleet) = env();
    env.heist_file("fleet.toml", HEISTS);
    let logs = || fleet.logs();
    warm_up(&env, &fleet);

    // 1. Abort: h007 (wave 2) fails `deploy` twice (one retry) and stops; the rest of its wave
    //    finishes; waves 3 and 4 never start.
    let state = env.path().join("roll");
    let set = format!("dir={}", state.display());
    let o = env.crew(&["heist", "run", "roll", "--set", &set]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", logs());
    assert!(out.contains("h007  [2/3 deploy] FAILED: exit 3"), "{out}");
    assert!(
        out.contains("deploy refused on h007"),
        "stderr tail shown: {out}"
    );
    assert!(
        out.contains("== heist roll FAILED: completed on 9/20 host(s)"),
        "{out}"
    );
    assert!(out.contains("h007  failed at deploy"), "{out}");
    assert!(out.contains("h011  not started"), "{out}");
    for i in 1..=HOSTS {
        let h = name(i);
        let started = i <= 10;
        assert_eq!(
            exists(&state, &h, "prepare"),
            started,
            "{h}: prepare\n{out}"
        );
        let completed = started && h != "h007";
        assert_eq!(
            exists(&state, &h, "deploy"),
            completed,
            "{h}: deploy\n{out}"
        );
        assert_eq!(
            exists(&state, &h, "verify"),
            completed,
            "{h}: verify\n{out}"
        );
    }
    let runs = env.heist_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let events = crew::heist::journal::read(&runs[0]).expect("journal");
    let (outcomes, attempts) = digest(&events);
    assert_eq!(outcomes.len(), HOSTS, "{outcomes:?}");
    for i in 1..=HOSTS {
        let h = name(i);
        let want = match i {
            7 => HostOutcome::Failed {
                step: "deploy".into(),
            },
            1..=10 => HostOutcome::Completed { ignored: 0 },
            _ => HostOutcome::NotStarted,
        };
        assert_eq!(outcomes[&h], want, "{h}");
    }
    assert_eq!(
        attempts[&("h007".into(), StepRef::main(1))],
        2,
        "retried once"
    );
    assert!(!attempts.contains_key(&("h007".into(), StepRef::main(2))));
    assert!(
        !attempts.keys().any(|(h, _)| h.as_str() > "h010"),
        "{attempts:?}"
    );
    let decisions: Vec<Decision> = events
        .iter()
        .filter_map(|e| match e {
            HeistEvent::Decision { host, decision, .. } if host == "h007" => Some(*decision),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            Decision::Advance,
            Decision::Retry {
                next_attempt: 2,
                delay_ms: 200
            },
            Decision::Abort
        ]
    );
    let failed = events.iter().find_map(|e| match e {
        HeistEvent::StepFinished {
            host, step, result, ..
        } if host == "h007" && *step == StepRef::main(1) => Some(result.clone()),
        _ => None,
    });
    let failed = failed.expect("h007's deploy is journaled");
    assert_eq!(failed.exit_code, Some(3));
    assert!(
        failed.stderr.contains("deploy refused on h007"),
        "{failed:?}"
    );
    let meta = crew::heist::journal::read_meta(&runs[0]).expect("meta");
    assert_eq!(meta.outcome.as_deref(), Some("failed"));
    assert_eq!(
        meta.vars,
        vec![("dir".to_string(), state.display().to_string())]
    );

    // `crew heist show` rebuilds the same from the journal.
    let show = env.crew(&["heist", "show"]);
    let shown = text(&show);
    assert_eq!(show.status.code(), Some(1), "{shown}");
    assert!(shown.contains("h007 [deploy]: exit 3"), "{shown}");
    assert!(shown.contains("h007  ok            failed×2"), "{shown}");
    assert!(shown.contains("h011  skipped"), "{shown}");

    // 2. Nobody to fail: exit 0, every host did all three steps.
    let clean = env.path().join("clean");
    let set = format!("dir={}", clean.display());
    let o = env.crew(&[
        "heist",
        "run",
        "roll",
        "--set",
        &set,
        "--set",
        "victim=none",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("== heist roll completed: completed on 20/20 host(s)"),
        "{out}"
    );
    for i in 1..=HOSTS {
        assert!(exists(&clean, &name(i), "verify"), "{}\n{out}", name(i));
    }

    // 3. Rollback: `check` fails on h012 (wave 3); every host that reached `check` undoes
    //    `switch`; wave 4 never starts.
    let rel = env.path().join("release");
    let set = format!("dir={}", rel.display());
    let o = env.crew(&["heist", "run", "release", "--set", &set]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("== heist release ROLLED BACK"), "{out}");
    assert!(out.contains("rollback: `check` failed on h012"), "{out}");
    let runs = env.heist_runs();
    let events = crew::heist::journal::read(runs.last().expect("a third run")).expect("journal");
    let (outcomes, attempts) = digest(&events);
    for i in 1..=HOSTS {
        let h = name(i);
        let reached_check = attempts.contains_key(&(h.clone(), StepRef::main(2)));
        if i <= 10 || i == 12 {
            assert!(reached_check, "{h} ran check");
        }
        if i > 15 {
            assert_eq!(outcomes[&h], HostOutcome::NotStarted, "{h}");
            assert!(!rel.join(&h).exists(), "{h} untouched");
        } else if reached_check {
            assert_eq!(
                outcomes[&h],
                HostOutcome::RolledBack {
                    step: "check".into(),
                    clean: true
                },
                "{h}"
            );
            assert_eq!(attempts[&(h.clone(), StepRef::rollback(0))], 1, "{h}");
            assert!(!exists(&rel, &h, "switched"), "{h}: switch undone");
            assert!(exists(&rel, &h, "unswitched"), "{h}");
        } else {
            // In wave 3 but still before `check` when h012 failed: stopped, not rolled back.
            assert!(
                matches!(outcomes[&h], HostOutcome::Stopped { .. }),
                "{h}: {:?}",
                outcomes[&h]
            );
            assert!(!exists(&rel, &h, "unswitched"), "{h}");
        }
    }
    let summary = events.iter().find_map(|e| match e {
        HeistEvent::Finished { summary } => Some(summary.clone()),
        _ => None,
    });
    assert_eq!(summary.expect("finished").outcome, Outcome::RolledBack);
}
