//! Tried as a new user would: a fresh machine account with only `~/.ssh/config` (HOME is a
//! temp dir), no hosts.toml anywhere, a fresh CREW_HOME. `crew run -w 'node[01-05]' --
//! hostname` reaches the five nodes the config names (sshd on loopback), and the console
//! opens on the config's concrete host names and runs a command on them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod support;
use support::netns::bounded;
use support::require_tool;
use support::sshd::SshdFleet;
use support::tmux::{Session, REPORT_EXIT};

/// `~/.ssh/config` for the fleet: five named nodes (and patterns, which are no hosts).
fn write_home(fleet: &SshdFleet, home: &Path) {
    let mut cfg = String::new();
    for (i, h) in fleet.hosts().iter().enumerate() {
        cfg += &format!("Host node{:02}\n  HostName {}\n", i + 1, h.address);
    }
    cfg += &format!(
        "Host node*\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        fleet.port,
        support::daemon::login(),
        fleet.client_key.display(),
        fleet.known_hosts.display()
    );
    std::fs::create_dir_all(home.join(".ssh")).expect("~/.ssh");
    std::fs::write(home.join(".ssh/config"), cfg).expect("~/.ssh/config");
}

#[test]
fn no_hosts_toml_run_by_nodeset_and_the_console_on_the_ssh_config() {
    if !require_tool("sshd") {
        return;
    }
    let fleet = SshdFleet::start(5);
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    write_home(&fleet, &home);
    let crew_home = tmp.path().join("crew");
    let machine = Command::new("hostname")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("hostname");

    let crew = |args: &[&str]| {
        bounded(
            Command::new(env!("CARGO_BIN_EXE_crew"))
                .args(args)
                .current_dir(tmp.path())
                .env("HOME", &home)
                .env("CREW_HOME", &crew_home)
                .env("CREW_CONFIG_DIR", tmp.path().join("config"))
                .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
                .env_remove("CREW_HOSTS")
                .env_remove("CREW_SSH_CONFIG")
                .env_remove("SSH_AUTH_SOCK"),
            Duration::from_secs(180),
        )
    };
    let out = crew(&["run", "-w", "node[01-05]", "--", "hostname"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for i in 1..=5 {
        assert!(
            stdout.contains(&format!("node{i:02} | {machine}")),
            "node{i:02}:\n{stdout}\n{stderr}"
        );
    }
    assert!(stderr.contains("ok:          node[01-05] (5)"), "{stderr}");
    let _ = crew(&["daemon", "stop"]);

    // The console, in a terminal, on the same account: the config's five nodes are the
    // inventory; a command runs on all of them.
    if !require_tool("tmux") {
        return;
    }
    let exe = env!("CARGO_BIN_EXE_crew");
    let s = Session::start(
        format!("crew-new-user-{}", std::process::id()),
        120,
        32,
        |session_home| {
            format!(
                "cd '{dir}' && env HOME='{home}' CREW_HOME='{ch}' CREW_CONFIG_DIR='{ch}/config' \
                 CREW_AGENT_EXE='{exe}' '{exe}'{REPORT_EXIT}",
                dir = tmp.path().display(),
                home = home.display(),
                ch = session_home.display(),
            )
        },
    )
    .with_logs_on_timeout();
    s.wait_for("Hosts 5 shown · 0 marked · 5 total", 30);
    s.keys(&[":"]);
    s.text("hostname");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(screen.contains("run #1 done: 5 ok"), "{screen}");
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 20);
}
