//! End-to-end test of the console through a real terminal against real SSH: tmux runs the
//! built `crew` binary with a hosts.toml describing an OpenSSH sshd fleet on loopback
//! (tests/support/sshd.rs); keys go in with send-keys and the screen comes back with
//! capture-pane. Filter by tag, marks, per-host output, exit codes in pane titles, gathered
//! counts, kill of a remote `sleep`, and a restored terminal on quit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod support;
use support::proc::{marker, processes_with, sleeps_with, wait_until};
use support::require_tools;
use support::sshd::SshdFleet;
use support::tmux::{Session, REPORT_EXIT};

/// Loopback hosts of the fleet: four `role=web`, two `role=db`.
const NAMES: [(&str, &str); 6] = [
    ("web1", "role=web"),
    ("web2", "role=web"),
    ("web3", "role=web"),
    ("web4", "role=web"),
    ("db1", "role=db"),
    ("db2", "role=db"),
];

/// hosts.toml for the fleet: every host over SSH with the fleet's client key and
/// known_hosts, an empty ssh_config (the user's ~/.ssh/config stays out of the test).
fn write_hosts_toml(fleet: &SshdFleet) -> PathBuf {
    let ssh_config = fleet.file("ssh_config", "");
    let hosts = fleet.hosts();
    assert!(hosts.len() >= NAMES.len(), "fleet too small");
    let mut toml = fleet.inventory_defaults(&ssh_config) + "tags = [\"env=e2e\"]\n";
    for ((name, tag), h) in NAMES.iter().zip(&hosts) {
        let _ = write!(
            toml,
            "\n[[host]]\nname = \"{name}\"\naddress = \"{}\"\ntags = [\"{tag}\"]\n",
            h.address
        );
    }
    fleet.file("hosts.toml", &toml)
}

/// Start `crew --hosts <hosts.toml>` in a detached 120×32 tmux session; after crew exits the
/// pane prints its exit status and the terminal's canonical-mode flag.
fn start(hosts: &Path) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    Session::start(
        format!("crew-ssh-e2e-{}", std::process::id()),
        120,
        32,
        |home| {
            format!(
                "env CREW_HOME='{home}' CREW_CONFIG_DIR='{home}/config' CREW_AGENT_EXE='{exe}' \
             '{exe}' --hosts '{}'{REPORT_EXIT}",
                hosts.display(),
                home = home.display(),
            )
        },
    )
    .with_logs_on_timeout()
}

/// The text drawn inside the pane whose title contains `title`: the lines below the title
/// row, from the title's column to the pane's right border.
fn pane_text(screen: &str, title: &str) -> String {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let needle: Vec<char> = title.chars().collect();
    for (r, line) in lines.iter().enumerate() {
        let Some(c) = line
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        else {
            continue;
        };
        // The pane's left border is the corner before the title.
        let left = line[..c]
            .iter()
            .rposition(|ch| "┌┏".contains(*ch))
            .unwrap_or(c);
        let right = line[c..]
            .iter()
            .position(|ch| "┐┓".contains(*ch))
            .map_or(line.len(), |i| c + i);
        let mut out = String::new();
        for below in lines.iter().skip(r + 1) {
            let cell: String = below
                .get(left + 1..right.min(below.len()))
                .unwrap_or_default()
                .iter()
                .collect();
            if below.get(left).is_some_and(|ch| "└┗".contains(*ch)) {
                break;
            }
            out += cell.trim();
            out += "\n";
        }
        return out;
    }
    panic!("no pane titled {title:?} on screen:\n{screen}");
}

#[test]
fn ssh_fleet_filter_mark_run_gather_kill_and_quit() {
    if !require_tools(&["sshd", "ssh-keygen", "tmux"]) {
        return;
    }
    let fleet = SshdFleet::start(NAMES.len());
    fleet.preinstall_agent();
    let hosts = write_hosts_toml(&fleet);
    let s = start(&hosts);
    s.wait_for("Hosts 6 shown · 0 marked · 6 total", 30);

    // Filter by tag: the four web hosts.
    s.keys(&["/"]);
    s.text("role=web");
    let screen = s.wait_for("Hosts 4 shown", 10);
    assert!(!screen.contains("db1"), "{screen}");
    s.keys(&["Enter"]);
    s.wait_for("→ 4 shown hosts: web[1-4]", 10);

    // `hostname` on every shown host: the same machine answers on every loopback address.
    s.keys(&[":"]);
    s.text("hostname");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 120);
    assert!(
        screen.contains("run #1 done: 4 ok"),
        "{screen}\n{}",
        fleet.logs()
    );
    let host = support::proc::hostname();
    for h in ["web1", "web2", "web3", "web4"] {
        let pane = pane_text(&screen, &format!("{h} ✓ ok"));
        assert!(pane.contains(&host), "{h}'s pane lacks {host}:\n{screen}");
    }
    s.keys(&["g"]);
    let screen = s.wait_for("Gathered 1 groups · 4 hosts", 10);
    assert!(screen.contains("4 ok"), "{screen}");
    assert!(screen.contains("web[1-4]"), "{screen}");
    s.keys(&["Escape"]);
    s.wait("the gathered view closed", 10, |t| {
        !t.contains("Gathered 1 groups")
    });

    // Mark web1..web3 in the host list; a command that prints the host's name and fails
    // with exit 3 on web2 and web3 runs on exactly the marked hosts.
    s.keys(&["Tab", "Home", "Space", "Space", "Space"]);
    s.wait_for("→ 3 marked hosts: web[1-3]", 10);
    s.keys(&[":"]);
    s.text("echo \"id=$CREW_HOST\"; case $CREW_HOST in web2|web3) echo bad >&2; exit 3;; esac");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #2 done", 60);
    assert!(screen.contains("run #2 done: 1 ok, 2 failed"), "{screen}");
    let p1 = pane_text(&screen, "web1 ✓ ok");
    assert!(p1.contains("id=web1") && !p1.contains("bad"), "{screen}");
    for h in ["web2", "web3"] {
        let p = pane_text(&screen, &format!("{h} ✗ exit 3"));
        assert!(p.contains(&format!("id={h}")), "{h}:\n{screen}");
        assert!(p.contains("bad"), "{h} stderr:\n{screen}");
    }
    // Three panes, no more: web4 was not marked.
    assert_eq!(screen.matches("✓ ok").count(), 1, "{screen}");
    assert_eq!(screen.matches("✗ exit 3").count(), 2, "{screen}");

    // Gathered counts: on the four web hosts, web4 fails alone.
    s.keys(&["C-\\"]);
    s.wait_for("0 marked", 10);
    s.keys(&[":"]);
    s.text("echo gathered; [ $CREW_HOST = web4 ] && exit 3; true");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #3 done", 60);
    assert!(screen.contains("run #3 done: 3 ok, 1 failed"), "{screen}");
    assert!(screen.contains("web4 ✗ exit 3"), "{screen}");
    s.keys(&["g"]);
    let screen = s.wait_for("Gathered 2 groups · 4 hosts", 10);
    // Group rows read `   3 ok          web[1-3]`: count, status, folded nodeset.
    let row = |count: &str, status: &str, set: &str| {
        screen.lines().any(|l| {
            let w: Vec<&str> = l.split(['│', '┃', ' ']).filter(|w| !w.is_empty()).collect();
            let status: Vec<&str> = status.split(' ').collect();
            w.windows(2 + status.len()).any(|x| {
                x[0] == count && x[1..=status.len()] == status[..] && x[status.len() + 1] == set
            })
        })
    };
    assert!(row("3", "ok", "web[1-3]"), "group of 3:\n{screen}");
    assert!(row("1", "exit 3", "web4"), "group of 1:\n{screen}");
    s.keys(&["Escape"]);
    s.wait("the gathered view closed", 10, |t| {
        !t.contains("Gathered 2 groups")
    });

    // A long sleep on every web host, killed with ctrl-k: no such process is left.
    let mark = marker();
    s.keys(&[":"]);
    s.text(&format!("sleep {mark}"));
    s.keys(&["Enter"]);
    s.wait_for("4 running", 60);
    // The sleeps run before the kill, or "none left" below proves nothing.
    wait_until(
        "the sleep on the 4 web hosts",
        Duration::from_secs(30),
        || sleeps_with(&mark).len() == 4,
    );
    s.keys(&["C-k"]);
    s.wait("run #4 done with 4 killed", 30, |t| {
        t.contains("4 killed") && t.contains("run #4 done")
    });
    wait_until(
        "no sleep left after ctrl-k",
        Duration::from_secs(30),
        || processes_with(&mark).is_empty(),
    );

    // Quit: the shell gets its screen and cooked mode back.
    s.keys(&["q"]);
    s.assert_restored("Hosts 4 shown");
}
