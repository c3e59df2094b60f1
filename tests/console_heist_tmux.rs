//! Heists in the console, through a real terminal: tmux runs the built `crew` binary on the
//! repository's demo hosts.toml and heists (local transport, `CREW_HOME` a temp dir); keys go
//! in with send-keys and the screen comes back with capture-pane.

use std::path::{Path, PathBuf};

mod support;
use support::cli::crew_command;
use support::require_tool;
use support::tmux::Session;
use support::Bounded;

/// `crew --hosts HOSTS` in a detached 140×40 tmux session.
fn start(tag: &str, hosts: &Path) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    Session::start(
        format!("crew-heist-{tag}-{}", std::process::id()),
        140,
        40,
        |home| {
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The grid line of `host` in the step view.
fn row<'a>(screen: &'a str, host: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!("│{host} ")) || l.contains(&format!("┃{host} ")))
        .unwrap_or_else(|| panic!("no step-view row for {host}:\n{screen}"))
}

#[test]
fn careful_heist_asks_then_advances_and_the_step_view_shows_it() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("ask", &repo().join("hosts.toml"));
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["h"]);
    // the picker lists the demo heists, `careful` first, with its plan
    let screen = s.wait("the picker with the plan of `careful`", 20, |t| {
        t.contains("hello") && t.contains("heist careful (") && t.contains("then ask")
    });
    assert!(screen.contains("7 host(s)"), "{screen}");
    s.keys(&["Enter"]);
    // the check fails on the canary (demo7, env=production): the prompt names it
    s.wait("the prompt naming demo7", 60, |t| {
        t.contains("a step failed, your call") && t.contains("demo7") && t.contains("advance")
    });
    // the canary's cell asks while the others go on (they run in the same wave)
    let screen = s.wait("demo7 asking, demo1 past its first step", 30, |t| {
        t.contains("waits for you:")
            && t.lines()
                .any(|l| l.contains("demo7 ") && l.contains("? asking"))
            && t.lines()
                .any(|l| l.contains("demo1 ") && l.contains("✓ ok"))
    });
    assert!(row(&screen, "demo7").contains("? asking"), "{screen}");
    s.keys(&["a"]);
    let screen = s.wait("the final summary", 60, |t| {
        t.contains("heist completed:") && t.contains("7 completed")
    });
    // demo7: the check's failure was let through (advance), then it finished
    let canary = row(&screen, "demo7");
    assert!(canary.contains("✗ failed*"), "{canary}");
    assert!(canary.matches("✓ ok").count() == 2, "{canary}");
    let other = row(&screen, "demo3");
    assert_eq!(other.matches("✓ ok").count(), 3, "{other}");
    // the focused cell's output: move to demo7's check
    s.keys(&["G", "l"]);
    s.wait("demo7's check and its output", 10, |t| {
        t.contains("demo7 · check · failed") && t.contains("the canary objects")
    });
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn ctrl_s_saves_the_command_as_a_heist_that_heist_list_shows() {
    if !require_tool("tmux") {
        return;
    }
    // a copy of the demo fleet and its heists: saving writes to the first heist file
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(repo().join("hosts.toml"), dir.path().join("hosts.toml")).expect("copy hosts");
    std::fs::create_dir(dir.path().join("heists")).expect("mkdir heists");
    let demo = dir.path().join("heists").join("demo.toml");
    std::fs::copy(repo().join("heists").join("demo.toml"), &demo).expect("copy demo.toml");
    let before = std::fs::read_to_string(&demo).expect("read demo.toml");
    let hosts = dir.path().join("hosts.toml");
    let s = start("save", &hosts);
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    s.text("role=db");
    s.keys(&["Enter"]);
    s.wait_for("→ 2 shown hosts: db[1-2]", 10);
    s.keys(&[":"]);
    s.text("uptime");
    s.keys(&["C-s"]);
    s.wait("the save prompt with selection and command", 10, |t| {
        t.contains("Save as heist")
            && t.contains("select:  role=db")
            && t.contains("run:     uptime")
    });
    // a name that exists is refused, the file is left alone
    s.text("hello");
    s.keys(&["Enter"]);
    s.wait_for("already exists", 20);
    assert_eq!(std::fs::read_to_string(&demo).expect("read"), before);
    s.keys(&[":", "C-s"]);
    s.wait_for("Save as heist", 10);
    s.text("db-uptime");
    s.keys(&["Enter"]);
    s.wait_for("saved heist db-uptime", 20);
    let after = std::fs::read_to_string(&demo).expect("read demo.toml");
    assert!(
        after.starts_with(&before),
        "existing heists or comments changed:\n{after}"
    );
    let crew = |args: &[&str]| {
        crew_command(s.home(), &s.home().join("config"))
            .arg("--hosts")
            .arg(&hosts)
            .args(args)
            .output_bounded()
    };
    let out = crew(&["heist", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = listed
        .lines()
        .find(|l| l.trim_start().starts_with("db-uptime"))
        .unwrap_or_else(|| panic!("db-uptime not listed:\n{listed}"));
    assert!(line.contains("select role=db"), "{line}");
    // the saved heist plans on exactly the filtered hosts
    let out = crew(&["heist", "plan", "db-uptime"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("2 host(s)") && plan.contains("run: uptime"),
        "{plan}"
    );
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}
