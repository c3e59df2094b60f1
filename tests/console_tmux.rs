//! End-to-end tests of the console through a real terminal: tmux runs the built `crew`
//! binary against the repository's demo hosts.toml; keys go in with send-keys and the
//! screen comes back with capture-pane.

use std::path::{Path, PathBuf};
use std::process::Command;

use crew::model::Verdict;
use crew::store::{HostRecord, RunMeta};

mod support;
use support::require_tool;
use support::tmux::{Session, REPORT_EXIT};

/// Start `crew --hosts <demo hosts.toml>` in a detached 120×32 tmux session; after crew
/// exits the pane prints its exit status and the terminal's canonical-mode flag.
fn start(tag: &str) -> Session {
    start_with(tag, |_| {})
}

/// [`start`], after `prepare` has set up the fresh `CREW_HOME`.
fn start_with(tag: &str, prepare: impl FnOnce(&Path)) -> Session {
    let exe = env!("CARGO_BIN_EXE_crew");
    let hosts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hosts.toml");
    Session::start(
        format!("crew-e2e-{tag}-{}", std::process::id()),
        120,
        32,
        |home| {
            prepare(home);
            format!(
                "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' '{exe}' --hosts '{}'{REPORT_EXIT}",
                home.display(),
                home.join("config").display(),
                hosts.display()
            )
        },
    )
}

#[test]
fn filter_by_tag_mark_help_and_quit_restores_terminal() {
    if !require_tool("tmux") {
        return;
    }
    let s = start("filter");
    s.wait_for("Hosts 10 shown · 0 marked · 10 total", 20);
    s.keys(&["/"]);
    s.text("role=db");
    let screen = s.wait_for("Hosts 2 shown", 10);
    assert!(screen.contains("db1") && screen.contains("db2"), "{screen}");
    assert!(!screen.contains("demo1 "), "{screen}");
    // a bad expression shows where it went wrong, and keeps the last good filter
    s.text(" &");
    let screen = s.wait_for("^ expected", 10);
    assert!(screen.contains("Hosts 2 shown"), "{screen}");
    s.keys(&["BSpace", "BSpace", "Enter", "a"]);
    let screen = s.wait_for("2 marked", 10);
    assert!(screen.contains("→ 2 marked hosts: db[1-2]"), "{screen}");
    s.keys(&["?"]);
    s.wait_for("Mark all shown hosts", 10);
    s.keys(&["Escape"]);
    s.wait("help closed", 10, |t| !t.contains("Mark all shown hosts"));
    s.keys(&["q"]);
    s.assert_restored("Hosts 2 shown");
}

/// A run in the store the way the daemon leaves it (`meta.json`, `hosts.jsonl`).
fn stored_run(home: &Path, id: u64, hosts: &[(&str, Verdict)]) {
    let names: Vec<&str> = hosts.iter().map(|(h, _)| *h).collect();
    let mut meta = RunMeta::command(id, "me", "role=demo", "false", &names);
    meta.when = "2025-01-01T00:00:00.000Z".into();
    let records: Vec<HostRecord> = hosts
        .iter()
        .map(|(h, v)| {
            let mut r = HostRecord::new(h);
            r.verdict = *v;
            r
        })
        .collect();
    crew::store::write_run_blocking(&home.join("runs"), &meta, &records).expect("stored run");
}

#[test]
fn failed_selects_the_stored_last_run_before_any_run_of_the_session() {
    if !require_tool("tmux") {
        return;
    }
    let s = start_with("stored", |home| {
        stored_run(
            home,
            1,
            &[("demo1", Verdict::Failed), ("demo2", Verdict::Ok)],
        );
        stored_run(
            home,
            2,
            &[
                ("demo3", Verdict::Failed),
                ("demo4", Verdict::Ok),
                ("demo6", Verdict::Failed),
            ],
        );
    });
    s.wait_for("Hosts 10 shown", 20);
    s.keys(&["/"]);
    s.text("?failed");
    let screen = s.wait_for("Hosts 2 shown", 10);
    // The newest run counts: demo3 and demo6 (demo1 failed in an older run).
    assert!(
        screen.contains("demo3") && screen.contains("demo6"),
        "{screen}"
    );
    assert!(!screen.contains("demo1 "), "{screen}");
    s.keys(&["Enter"]);
    s.wait_for("→ 2 shown hosts: demo[3,6]", 10);
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
    let out = Command::new("tmux")
        .args(["list-panes", "-t", &s.name, "-F", "#{pane_pid}"])
        .output()
        .expect("tmux list-panes");
    let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = Command::new("pgrep")
        .args(["-P", &shell, "-x", "crew"])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no crew child of the pane's shell {shell}");
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -TERM {pid}");
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
    s.keys(&["Enter"]);
    s.wait_for("→ 7 shown hosts: demo[1-7]", 10);
    s.keys(&[":"]);
    s.text("hostname");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #1 done", 60);
    let host = Command::new("hostname")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("hostname");
    assert!(screen.contains("7 ok"), "{screen}");
    assert!(screen.contains(&host), "{screen}");
    assert!(screen.contains("demo4 ✓ ok"), "{screen}");
    // gathered: one group of 7
    s.keys(&["g"]);
    let screen = s.wait_for("Gathered 1 groups · 7 hosts", 10);
    assert!(screen.contains("demo[1-7]"), "{screen}");
    s.keys(&["Escape"]);
    // a failing command on demo2 and demo5
    s.keys(&["Tab", "Home", "j", "Space", "j", "j", "Space"]);
    s.wait_for("→ 2 marked hosts: demo[2,5]", 10);
    s.keys(&[":"]);
    s.text("echo boom >&2; exit 3");
    s.keys(&["Enter"]);
    let screen = s.wait_for("run #2 done: 2 failed", 60);
    assert!(screen.contains("demo2 ✗ exit 3"), "{screen}");
    assert!(screen.contains("boom"), "{screen}");
    // mark by outcome, then re-run on exactly that set
    s.keys(&["C-\\"]);
    s.wait_for("0 marked", 10);
    s.keys(&["F"]);
    s.wait_for("marked 2 failed: demo[2,5]", 10);
    s.keys(&["r"]);
    let screen = s.wait_for("run #3 done: 2 failed", 60);
    assert!(screen.contains("→ 2 marked hosts: demo[2,5]"), "{screen}");
    // kill a long sleep on every host of the run
    let sleep = format!("sleep 1000.{}", std::process::id() % 10_000);
    s.keys(&["C-\\"]);
    s.keys(&[":"]);
    s.text(&sleep);
    s.keys(&["Enter"]);
    s.wait_for("7 running", 60);
    s.keys(&["C-k"]);
    s.wait_for("7 killed", 30);
    let left = Command::new("pgrep")
        .args(["-f", "-x", &sleep])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{sleep} still running after kill"
    );
    s.keys(&["q"]);
    s.wait_for("EXITED 0", 10);
}
