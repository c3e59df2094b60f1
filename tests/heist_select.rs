//! Heist selections that ask more than the inventory, through the real binary: last-run
//! outcomes (`?failed`, `?ok`: the newest `crew run` or heist run in the run store; a heist's
//! own per-step runs do not count) and agent facts (`fact.kernel=…`, asked of the daemon).

mod support;

use std::process::Command;
use std::time::Duration;

use support::cli::{local_hosts, CliEnv};
use support::Bounded;

/// The hosts `crew heist plan pick --profile P` would run on (its wave lines).
fn picked(env: &CliEnv, profile: &str) -> String {
    let o = env.crew(&["heist", "plan", "pick", "--profile", profile]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(0) {
        return format!("error: {err}");
    }
    out.lines()
        .filter_map(|l| l.strip_prefix("wave "))
        .map(|l| l.split_once(": ").map_or(l, |(_, hosts)| hosts).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn kernel() -> String {
    let o = Command::new("uname")
        .arg("-r")
        .output_within(Duration::from_secs(30));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn outcomes_of_the_last_run_and_facts_pick_hosts() {
    let env = CliEnv::new(&local_hosts(&[("n[1-3]", &["role=demo"])]));
    let heists = format!(
        r#"
[heist.pick]
select = "role=demo"
[[heist.pick.step]]
name = "s"
run = "true"
[heist.pick.profile.failed]
select = "?failed"
[heist.pick.profile.ok]
select = "role=demo & ?ok"
[heist.pick.profile.kernel]
select = "role=demo & fact.kernel={k}"
[heist.pick.profile.nokernel]
select = "fact.kernel=no-such-kernel"

[heist.fail3]
select = "role=demo"
[[heist.fail3.step]]
name = "a"
run = "test ${{host}} != n3"
"#,
        k = kernel()
    );
    env.heist_file("pick.toml", &heists);

    // Nothing ran yet: no host has an outcome.
    assert!(
        picked(&env, "failed").contains("matches no host"),
        "{}",
        picked(&env, "failed")
    );

    // A plain run where n2 fails.
    let o = env.crew(&["run", "role=demo", "--", "test $CREW_HOST != n2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(picked(&env, "failed"), "n2");
    assert_eq!(picked(&env, "ok"), "n[1,3]");

    // A heist run is newer: n3 failed there (its one-host step runs are not "the last run").
    let o = env.crew(&["heist", "run", "fail3"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(picked(&env, "failed"), "n3");
    assert_eq!(picked(&env, "ok"), "n[1-2]");

    // A newer plain run wins again.
    let o = env.crew(&["run", "n1", "--", "false"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(picked(&env, "failed"), "n1");
    assert!(
        picked(&env, "ok").contains("matches no host"),
        "only n1 ran"
    );

    // Facts come from the agents through the daemon.
    assert_eq!(picked(&env, "kernel"), "n[1-3]");
    assert!(picked(&env, "nokernel").contains("matches no host"));
}
