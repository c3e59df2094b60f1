//! End-to-end tests of the console through a real terminal: tmux runs the built `crew`
//! binary against the repository's demo hosts.toml; keys go in with send-keys and the
//! screen comes back with capture-pane, each step waiting for the screen to show its effect.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crew::model::Verdict;

mod support;
use support::proc::{marker, processes_with, sleeps_with, wait_until};
use support::require_tool;
use support::store::stored_run;
use support::tmux::{Session, REPORT_EXIT};

/// Start `crew --hosts <demo hosts.toml> ARGS` in a detached 120×32 tmux session, after
/// `prepare` has set up the fresh `CREW_HOME`; after crew exits the pane prints its exit
/// status and the terminal's canonical-mode flag.
fn start_with(tag: &str, args: &str, prepare: impl FnOnce(&Path)) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    let hosts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hosts.toml");
    Session::start(
        format!("crew-e2e-{tag}-{}", std::process::id()),
        120,
        32,
        |home| {
            prepare(home);
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' '{exe}' --hosts '{}' {args}{REPORT_EXIT}",
                home.display(),
                home.join("config").display(),
                hosts.display()
            )
        },
    )
}

fn start(tag: &str) -> Session {
    start_with(tag, "", |_| {})
}

/// Run directories in the session's store.
fn runs(s: &Session) -> usize {
    std::fs::read_dir(s.home().join("runs"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn filter_by_tag_mark_help_and_quit_restores_terminal() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("filter");
    s.wait_for("Hosts 10 shown · 0 marked · 10 total", 20);
    s.keys(&["/"]);
    let screen = s.type_and_wait("role=db", "Hosts 2 shown", 10);
    assert!(screen.contains("db1") && screen.contains("db2"), "{screen}");
    assert!(!screen.contains("demo1 "), "{screen}");
    // a bad expression shows where it went wrong, and keeps the last good filter
    let screen = s.type_and_wait(" &", "^ expected", 10);
    assert!(screen.contains("Hosts 2 shown"), "{screen}");
    let screen = s.press(&["BSpace", "BSpace", "Enter", "a"], "2 marked", 10);
    assert!(screen.contains("→ 2 marked hosts: db[1-2]"), "{screen}");
    s.press(&["?"], "Mark all shown hosts", 10);
    s.keys(&["Escape"]);
    s.wait("help closed", 10, |t| !t.contains("Mark all shown hosts"));
    s.keys(&["q"]);
    s.assert_restored("Hosts 2 shown");
}

#[test]
fn failed_selects_the_stored_last_run_before_any_run_of_the_session() {
    if !require_tool("tmux") {
        return;
    }
    let s = start_with("stored", "", |home| {
        stored_run(
            home,
            1,
            "false",
            &[("demo1", Verdict::Failed), ("demo2", Verdict::Ok)],
        );
        stored_run(
            home,
            2,
            "false",
            &[
                ("demo3", Verdict::Failed),
                ("demo4", Verdict::Ok),
                ("demo6", Verdict::Failed),
            ],
        );
    });
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    let screen = s.type_and_wait("?failed", "Hosts 2 shown", 10);
    // The newest run counts: demo3 and demo6 (demo1 failed in an older run).
    assert!(
        screen.contains("demo3") && screen.contains("demo6"),
        "{screen}"
    );
    assert!(!screen.contains("demo1 "), "{screen}");
    s.press(&["Enter"], "→ 2 shown hosts: demo[3,6]", 10);
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn sigterm_restores_terminal() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("term");
    s.wait_for("Hosts 10 shown", 20);
    let pid = s.program_pid("crew", 10);
    // SAFETY: kill(2) has no memory-safety preconditions.
    let sent = unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill -TERM {pid}");
    s.wait_for("EXITED", 10);
    s.assert_restored("Hosts 10 shown");
}

#[test]
fn run_mark_failed_rerun_gather_and_kill() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("run");
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    s.text("role=demo");
    s.press(&["Enter"], "→ 7 shown hosts: demo[1-7]", 10);
    s.keys(&[":"]);
    s.text("hostname");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 60);
    let host = support::proc::hostname();
    assert!(screen.contains("7 ok"), "{screen}");
    assert!(screen.contains(&host), "{screen}");
    assert!(screen.contains("demo4 ✓ ok"), "{screen}");
    // gathered: one group of 7
    let screen = s.press(&["g"], "Gathered 1 groups · 7 hosts", 10);
    assert!(screen.contains("demo[1-7]"), "{screen}");
    s.keys(&["Escape"]);
    s.wait("the gathered view closed", 10, |t| {
        !t.contains("Gathered 1 groups")
    });
    // a failing command on demo2 and demo5
    s.press(
        &["Tab", "Home", "j", "Space", "j", "j", "Space"],
        "→ 2 marked hosts: demo[2,5]",
        10,
    );
    s.keys(&[":"]);
    s.text("echo boom >&2; exit 3");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #2 done: 2 failed", 60);
    assert!(screen.contains("demo2 ✗ exit 3"), "{screen}");
    assert!(screen.contains("boom"), "{screen}");
    // mark by outcome, then re-run on exactly that set
    s.press(&["C-\\"], "0 marked", 10);
    s.press(&["F"], "marked 2 failed: demo[2,5]", 10);
    let screen = s.press(&["r"], "run #3 done: 2 failed", 60);
    assert!(screen.contains("→ 2 marked hosts: demo[2,5]"), "{screen}");
    // kill a long sleep on every host of the run
    let mark = marker();
    s.press(&["C-\\"], "0 marked", 10);
    s.keys(&[":"]);
    s.text(&format!("sleep {mark}"));
    s.keys(&["Enter"]);
    s.wait_for("7 running", 60);
    // The sleeps run before the kill, or "none left" below proves nothing.
    wait_until("the sleep on all 7 hosts", Duration::from_secs(30), || {
        sleeps_with(&mark).len() == 7
    });
    s.press(&["C-k"], "7 killed", 30);
    wait_until(
        "no sleep left after ctrl-k",
        Duration::from_secs(30),
        || processes_with(&mark).is_empty(),
    );
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn dangerous_commands_ask_first_with_the_default_list() {
    if !require_tool("tmux") {
        return;
    }
    // No console.toml: the built-in list of dangerous patterns applies.
    let s = start("danger");
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    s.text("demo1");
    s.press(&["Enter"], "→ 1 shown host", 10);
    s.keys(&[":"]);
    s.text("echo reboot");
    let screen = s.press(&["Enter"], "Run a dangerous command?", 10);
    assert!(screen.contains("echo reboot"), "{screen}");
    assert!(screen.contains("on 1 hosts: demo1"), "{screen}");
    s.keys(&["n"]);
    s.wait("the dialog closed", 10, |t| {
        !t.contains("Run a dangerous command?")
    });
    // Nothing ran.
    assert_eq!(runs(&s), 0, "a run despite the no");
    // Confirmed, it runs.
    s.keys(&[":"]);
    s.text("echo reboot");
    s.press(&["Enter"], "Run a dangerous command?", 10);
    let screen = s.press(&["y"], "run #1 done", 60);
    assert!(screen.contains("demo1 ✓ ok"), "{screen}");
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn read_only_refuses_commands_and_heists() {
    if !require_tool("tmux") {
        return;
    }
    let s = start_with("ro", "--read-only", |_| {});
    s.wait("the console, read-only", 20, |t| {
        t.contains("Hosts 10 shown") && t.contains("[read-only]")
    });
    s.keys(&[":"]);
    s.text("touch should-not-exist");
    s.press(&["Enter"], "read-only console: refusing to run", 10);
    // The command stays on the line; Escape leaves it.
    s.keys(&["Escape"]);
    // (Back in normal mode, the status bar shows its keys again.)
    s.wait("normal mode", 10, |t| t.contains("q quit"));
    // The heist picker shows plans but starts nothing.
    s.keys(&["h"]);
    s.wait("the picker's plan of `careful`", 20, |t| {
        t.contains("heist careful (")
    });
    s.press(&["Enter"], "refusing to start a heist", 10);
    assert_eq!(runs(&s), 0, "something ran on a read-only console");
    s.keys(&["Escape"]);
    s.wait("the picker closed", 10, |t| !t.contains("heist careful ("));
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}

#[test]
fn a_line_of_input_answers_a_prompt_on_three_marked_hosts_at_once() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("input");
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    s.text("role=demo");
    s.press(&["Enter"], "→ 7 shown hosts: demo[1-7]", 10);
    s.press(
        &["Home", "Space", "Space", "Space"],
        "→ 3 marked hosts: demo[1-3]",
        10,
    );
    s.keys(&[":"]);
    s.text("read -p 'go? ' a; echo got $a");
    s.keys(&["Enter"]);
    // The jobs wait for their input (a pipe: `read -p` shows no prompt there); silent with
    // stdin open, the focused pane says so.
    s.wait_for("3 running", 60);
    s.wait_for("waiting for input?", 30);
    let screen = s.press(&[">"], "> input for the job", 10);
    assert!(screen.contains("→ 3 marked hosts: demo[1-3]"), "{screen}");
    s.text("y");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done: 3 ok", 60);
    assert!(
        screen.contains("sent a line to 3 host(s)") || screen.contains("got y"),
        "{screen}"
    );
    for h in ["demo1", "demo2", "demo3"] {
        let out = std::fs::read_to_string(s.home().join("runs/1").join(format!("{h}.out")))
            .unwrap_or_else(|e| panic!("{h}'s stored output: {e}"));
        assert_eq!(out, "got y\n", "{h}");
    }
    // ctrl-d: EOF ends a job that reads to the end of its input.
    s.keys(&[":"]);
    s.text("cat; echo eof seen");
    s.keys(&["Enter"]);
    s.wait_for("3 running", 60);
    s.press(&[">"], "> input for the job", 10);
    s.text("one");
    s.keys(&["Enter"]);
    s.press(&[">"], "> input for the job", 10);
    s.keys(&["C-d"]);
    s.wait_for("run #2 done: 3 ok", 60);
    for h in ["demo1", "demo2", "demo3"] {
        let out = std::fs::read_to_string(s.home().join("runs/2").join(format!("{h}.out")))
            .unwrap_or_else(|e| panic!("{h}'s stored output: {e}"));
        assert_eq!(out, "one\neof seen\n", "{h}");
    }
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}
