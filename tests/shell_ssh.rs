//! Dropping into a host, through real terminals (tmux) and real SSH (an sshd fleet on
//! loopback): `crew shell HOST -- COMMAND` runs with the terminal's size and passes the exit
//! status through; the console's `s` opens a login shell on the focused host over the pooled
//! connection (no new SSH connection), with a PTY and the terminal's `TERM`, and `exit` brings
//! the console back as it was, with a run started before the shell complete.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod support;
use support::require_tool;
use support::sshd::SshdFleet;
use support::tmux::{Session, REPORT_EXIT};

const NAMES: [&str; 3] = ["node1", "node2", "node3"];

fn write_hosts_toml(fleet: &SshdFleet) -> PathBuf {
    let ssh_config = fleet.file("ssh_config", "");
    let hosts = fleet.hosts();
    let mut toml = format!(
        "[defaults]\ntransport = \"ssh\"\nuser = \"{}\"\nport = {}\nidentity_file = \"{}\"\n\
         identities_only = true\nknown_hosts = \"{}\"\nagent_dir = \"{}\"\n\
         connect_timeout = \"20s\"\nssh_config = \"{}\"\n",
        hosts[0].user.clone().unwrap_or_default(),
        fleet.port,
        fleet.client_key.display(),
        fleet.known_hosts.display(),
        fleet.agent_dir().display(),
        ssh_config.display(),
    );
    for (name, h) in NAMES.iter().zip(&hosts) {
        let _ = write!(
            toml,
            "\n[[host]]\nname = \"{name}\"\naddress = \"{}\"\n",
            h.address
        );
    }
    fleet.file("hosts.toml", &toml)
}

/// `crew --hosts H ARGS` in a detached tmux session of `cols`×`rows`.
fn start(tag: &str, hosts: &Path, cols: u16, rows: u16, args: &str) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    Session::start(
        format!("crew-shell-{tag}-{}", std::process::id()),
        cols,
        rows,
        |home| {
            format!(
                "env CREW_HOME='{home}' CREW_CONFIG_DIR='{home}/config' CREW_AGENT_EXE='{exe}' \
                 '{exe}' --hosts '{}' {args}{REPORT_EXIT}",
                hosts.display(),
                home = home.display(),
            )
        },
    )
    .with_logs_on_timeout()
}

#[test]
fn crew_shell_runs_a_command_with_the_terminals_size_and_its_exit_status() {
    if !require_tool("sshd") || !require_tool("tmux") {
        return;
    }
    let fleet = SshdFleet::start(1);
    let hosts = write_hosts_toml(&fleet);
    let s = start(
        "cmd",
        &hosts,
        100,
        30,
        "shell node1 -- 'stty size; tty; exit 7'",
    );
    // The terminal came back cooked (`icanon`, not `-icanon`).
    let screen = s.wait("the exit status and the terminal's mode", 60, |t| {
        t.contains("EXITED") && t.lines().any(|l| l.trim_end().ends_with("icanon"))
    });
    assert!(screen.contains("EXITED 7"), "{screen}");
    assert!(screen.lines().any(|l| l.trim_end() == "icanon"), "{screen}");
    assert!(
        screen.contains("30 100"),
        "the PTY has the pane's size:\n{screen}"
    );
    assert!(screen.contains("/dev/pts/"), "a PTY:\n{screen}");
}

#[test]
fn the_console_opens_a_shell_on_the_pooled_connection_and_comes_back() {
    if !require_tool("sshd") || !require_tool("tmux") {
        return;
    }
    let fleet = SshdFleet::start(NAMES.len());
    let hosts = write_hosts_toml(&fleet);
    let s = start("console", &hosts, 120, 36, "");
    s.wait_for("Hosts 3 shown", 30);
    // A run that streams while the shell is open: it must be complete when we come back.
    s.keys(&[":"]);
    s.text("for i in $(seq 1 40); do echo tick $i; sleep 0.1; done; echo done-$CREW_HOST");
    s.keys(&["Enter"]);
    s.wait_for("tick 1", 60);
    let before = support::daemon::accepted(&fleet);
    // Focus node2 in the host list (Tab: from the output panes to the list) and open a
    // shell there.
    s.keys(&["Tab", "j", "s"]);
    s.wait_for("shell on node2 (exit it to return to the console)", 20);
    s.text("echo \"at $SSH_CONNECTION with $TERM on $(tty)\"");
    s.keys(&["Enter"]);
    let node2 = fleet.hosts()[1].address.clone();
    let screen = s.wait("the shell's answer", 30, |t| {
        t.lines()
            .any(|l| l.starts_with("at ") && l.contains("/dev/pts/"))
    });
    let line = screen
        .lines()
        .find(|l| l.starts_with("at ") && l.contains("/dev/pts/"))
        .unwrap_or_default();
    assert!(line.contains(&node2), "on node2 ({node2}): {line}");
    assert!(!line.contains("with  on"), "TERM is set: {line}");
    s.text("exit");
    s.keys(&["Enter"]);
    let screen = s.wait("the console again", 30, |t| t.contains("back from node2"));
    assert!(screen.contains("Hosts 3 shown"), "{screen}");
    // The run went on meanwhile, to its end on every host.
    s.wait("the run's end", 60, |t| t.contains("done: 3 ok"));
    assert_eq!(
        support::daemon::accepted(&fleet),
        before,
        "the shell rode the pooled connection: no new SSH login"
    );
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn a_local_hosts_shell_is_a_pty_on_this_machine() {
    if !require_tool("tmux") {
        return;
    }
    let hosts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hosts.toml");
    let s = start(
        "local",
        &hosts,
        90,
        20,
        "shell demo1 -- 'stty size; tty; exit 5'",
    );
    let screen = s.wait("the exit status and the terminal's mode", 60, |t| {
        t.contains("EXITED") && t.lines().any(|l| l.trim_end().ends_with("icanon"))
    });
    assert!(screen.contains("EXITED 5"), "{screen}");
    assert!(screen.contains("20 90"), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen}");
}
