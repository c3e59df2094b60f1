//! Sites on NATS, end to end with real parts: a 3-node `nats-server` cluster (JetStream) on
//! loopback, real OpenSSH fleets, site daemons as `crew daemon --site … --nats …` processes,
//! operators' crews on other "machines" (own CREW_HOME and config).

mod support;

use std::time::Duration;

use support::nats::NatsCluster;
use support::require_tool;
use support::sites::{self, BusSettings, Machine, SiteDaemon};
use support::sshd::SshdFleet;

#[test]
fn a_run_over_two_sites_is_one_run() {
    if !require_tool("sshd") || !require_tool("nats-server") {
        return;
    }
    let nats = NatsCluster::start(3);
    let (fa, fb) = (SshdFleet::start(3), SshdFleet::start(3));
    let root = tempfile::tempdir().expect("root");
    let op = Machine::new(root.path(), "op");
    let (seed, public) = sites::keygen(&op, "alice");
    let operators = root.path().join("operators.toml");
    std::fs::write(
        &operators,
        format!("[[operator]]\nname = \"alice\"\nkey = {public:?}\nrights = \"heist\"\n"),
    )
    .expect("operators");
    let (_, ea) = sites::host_entries(&fa, "a", "a");
    let (_, eb) = sites::host_entries(&fb, "b", "b");
    let site_bus = BusSettings {
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        ..Default::default()
    };
    let ma = Machine::new(root.path(), "site-a");
    ma.write_hosts(&ea);
    ma.write_daemon_toml(Some(&site_bus));
    let mb = Machine::new(root.path(), "site-b");
    mb.write_hosts(&eb);
    mb.write_daemon_toml(Some(&site_bus));
    let _da = SiteDaemon::start(ma, &nats, "a");
    let _db = SiteDaemon::start(mb, &nats, "b");
    op.write_hosts(&format!("{ea}{eb}"));
    op.write_daemon_toml(Some(&BusSettings {
        url: Some(nats.url()),
        password_file: Some(nats.password_file.clone()),
        operators: Some(operators.clone()),
        identity: Some(seed),
    }));
    let op = SiteDaemon::start(op, &nats, "");
    let op = &op.machine;
    sites::wait_status(op, "both sites up", Duration::from_secs(60), |t| {
        t.lines().filter(|l| l.starts_with("a ") || l.starts_with("b ")).count() == 2
    });
    let o = op.run(&["run", "role=web", "--", "echo hi from $CREW_HOST"]);
    let out = sites::text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}\n{}", op.log_tail(50), nats.logs());
    for h in ["a01", "a02", "a03", "b01", "b02", "b03"] {
        assert!(out.contains(&format!("hi from {h}")), "{h}: {out}");
    }
}
