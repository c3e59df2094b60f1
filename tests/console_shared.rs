//! Two consoles on one daemon, through real terminals (tmux): a heist started in one shows up
//! live in the other (`R` lists what the daemon holds, Enter follows it), its ask is answered
//! from the second, and both show the result. The repository's demo fleet and heists (local
//! transport); both consoles share one `CREW_HOME`, hence one daemon.

use std::path::{Path, PathBuf};

mod support;
use support::require_tool;
use support::tmux::Session;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `crew --hosts <demo hosts.toml>` in a detached 150×40 tmux session on `home`.
fn console(tag: &str, home: &Path) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    let hosts = repo().join("hosts.toml");
    let home = home.to_path_buf();
    Session::start(
        format!("crew-shared-{tag}-{}", std::process::id()),
        150,
        40,
        move |_| {
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' '{exe}' --hosts '{}'; \
                 echo \"EXITED $?\"; sleep 60",
                home.display(),
                home.join("config").display(),
                hosts.display()
            )
        },
    )
}

#[test]
fn a_heist_started_in_one_console_is_followed_and_answered_in_another() {
    if !require_tool("tmux") {
        return;
    }
    let home = tempfile::tempdir().expect("shared CREW_HOME");
    let a = console("a", home.path());
    a.wait_for("Hosts 10 shown", 20);
    // Console A starts `careful`: its check fails on the canary (demo7), which then asks.
    a.keys(&["h"]);
    a.wait("the picker lists the demo heists", 20, |t| {
        t.contains("hello")
    });
    for _ in 0..10 {
        if a.screen().contains("heist careful (") {
            break;
        }
        a.keys(&["j"]);
    }
    a.wait_for("heist careful (", 10);
    a.keys(&["Enter"]);
    a.wait_for("a step failed, your call", 60);

    // Console B, on the same daemon, finds it in flight and follows it.
    let b = console("b", home.path());
    b.wait_for("Hosts 10 shown", 20);
    b.keys(&["R"]);
    let list = b.wait("the live heist in the list", 20, |t| {
        t.contains("heist asking") && t.contains("careful")
    });
    assert!(list.contains("1 asking"), "{list}");
    b.keys(&["Enter"]);
    // B replays the heist from its start and sees the open ask: it answers (advance).
    let screen = b.wait_for("a step failed, your call", 30);
    assert!(screen.contains("demo7"), "{screen}");
    b.keys(&["a"]);

    // Both show the result: completed everywhere, the canary's failure let through.
    for s in [&b, &a] {
        let screen = s.wait("the final summary", 60, |t| t.contains("heist completed:"));
        assert!(screen.contains("7 completed"), "{screen}");
        let canary = screen
            .lines()
            .find(|l| l.contains("│demo7 ") || l.contains("┃demo7 "))
            .unwrap_or_else(|| panic!("no step-view row for demo7:\n{screen}"));
        assert!(canary.contains("✗ failed*"), "{canary}");
    }
    // The answer is in the audit log, with who gave it.
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).expect("audit log");
    let who = crew::paths::whoami();
    assert!(
        audit.lines().any(|l| l.contains("\"answer\"")
            && l.contains("\"advance\"")
            && l.contains(&format!("\"who\":\"{who}\""))),
        "{audit}"
    );
    for s in [&a, &b] {
        s.keys(&["q"]);
        s.wait_for("EXITED 0", 10);
    }
}
