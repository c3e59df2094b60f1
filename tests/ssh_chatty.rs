//! The daemon against sshd hosts whose logins are chatty (a banner on stdout and stderr
//! before every command, like a noisy `.bashrc` or a motd): the agent still installs and
//! links, runs see exactly their command's output, the skipped login output is reported in
//! `crew status`, and agentless runs are exact too.

mod support;

use std::time::Duration;

use crew::client::Client;
use crew::model::Host;
use crew::proto::daemon::RunRequest;
use support::daemon::{accepted, fleet_hosts as hosts, run_req, status, Daemon, Outcome};
use support::require_sshd;
use support::sshd::{FleetOptions, SshdFleet, CHATTY_STDERR, CHATTY_STDOUT};

const WAIT: Duration = Duration::from_secs(120);

fn chatty_fleet(n: usize) -> SshdFleet {
    SshdFleet::start_with(
        n,
        FleetOptions {
            chatty: true,
            ..Default::default()
        },
    )
}

/// A run that must succeed on every host (a failure shows the sshd logs).
async fn run(c: &Client, req: RunRequest, fleet: &SshdFleet) -> Outcome {
    let o = support::daemon::run(c, req, WAIT).await;
    assert!(o.failed.is_empty(), "{:?}\n{}", o.failed, fleet.logs());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_links_through_a_chatty_login() {
    if !require_sshd() {
        return;
    }
    let fleet = chatty_fleet(2);
    let hosts = hosts(&fleet);
    let (d, c) = Daemon::start_connected().await;
    let cmd = "printf 'out-%s\\n' \"$CREW_HOST\"; printf 'err\\n' >&2";
    let o = run(&c, run_req(hosts.clone(), cmd), &fleet).await;
    for h in &hosts {
        assert_eq!(o.exits.get(&h.name), Some(&Some(0)), "{o:?}");
        assert!(!o.started[&h.name].1, "served by an agent, not agentless");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout[&h.name]),
            format!("out-{}\n", h.name),
            "stdout is the command's alone"
        );
        assert_eq!(String::from_utf8_lossy(&o.stderr[&h.name]), "err\n");
    }
    let st = status(&c, WAIT).await;
    let want = format!("skipped {} bytes of login output", CHATTY_STDOUT.len());
    assert_eq!(
        st.hosts.len(),
        hosts.len(),
        "every host is in the pool: {st:?}"
    );
    for h in &st.hosts {
        assert_eq!(h.state, "ready", "{st:?}");
        assert_eq!(h.reason.as_deref(), Some(want.as_str()), "{st:?}");
    }
    let pids: Vec<Option<u32>> = st.hosts.iter().map(|h| h.agent_pid).collect();
    assert!(pids.iter().all(Option::is_some), "{st:?}");
    let logins = accepted(&fleet);

    let o = run(&c, run_req(hosts.clone(), "echo again"), &fleet).await;
    for h in &hosts {
        assert_eq!(o.stdout[&h.name], b"again\n");
    }
    assert_eq!(accepted(&fleet), logins, "the second run reused the links");
    let again: Vec<Option<u32>> = status(&c, WAIT)
        .await
        .hosts
        .iter()
        .map(|h| h.agent_pid)
        .collect();
    assert_eq!(again, pids, "the same agents served the second run");
    drop(c);
    d.stop_within(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentless_on_a_chatty_login_is_exact() {
    if !require_sshd() {
        return;
    }
    let fleet = chatty_fleet(1);
    // The agent directory is a regular file: the install fails, the host goes agentless.
    let blocker = fleet.file("not-a-dir", "");
    let host = Host {
        agent_dir: blocker.display().to_string(),
        ..hosts(&fleet).remove(0)
    };
    let (d, c) = Daemon::start_connected().await;
    let cmd = "printf 'a\\nb'; printf 'e' >&2; exit 3";
    let o = run(&c, run_req(vec![host.clone()], cmd), &fleet).await;
    assert_eq!(o.started.get(&host.name).map(|s| s.1), Some(true), "{o:?}");
    assert_eq!(o.exits.get(&host.name), Some(&Some(3)), "{o:?}");
    assert_eq!(
        o.stdout.get(&host.name).map(Vec::as_slice),
        Some(&b"a\nb"[..])
    );
    assert_eq!(o.stderr.get(&host.name).map(Vec::as_slice), Some(&b"e"[..]));

    let st = status(&c, WAIT).await;
    let reason = st.hosts[0].reason.clone().unwrap_or_default();
    assert!(st.hosts[0].agentless, "{st:?}");
    assert!(
        reason.contains("cannot install the agent"),
        "status says why it is agentless: {reason}"
    );
    let banner = CHATTY_STDERR.trim();
    assert!(
        !reason.contains(banner),
        "the login's stderr is not taken for the installer's error: {reason}"
    );

    // Output that only a shell reading the whole stream gets right: no newline, binary.
    let o = run(
        &c,
        run_req(vec![host.clone()], "printf '\\000\\001x'"),
        &fleet,
    )
    .await;
    assert_eq!(
        o.stdout.get(&host.name).map(Vec::as_slice),
        Some(&b"\0\x01x"[..])
    );
    drop(c);
    d.stop_within(WAIT).await;
}
