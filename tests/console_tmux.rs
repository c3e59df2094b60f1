//! End-to-end tests of the console through a real terminal: tmux runs the built `crew`
//! binary against the repository's demo hosts.toml; keys go in with send-keys and the
//! screen comes back with capture-pane.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::require_tool;

struct Session {
    name: String,
    _home: tempfile::TempDir,
}

impl Session {
    /// Start `crew --hosts <demo hosts.toml>` in a detached 120×32 tmux session; after crew
    /// exits the pane prints its exit status and the terminal's canonical-mode flag.
    fn start(tag: &str) -> Session {
        let home = tempfile::tempdir().expect("temp CREW_HOME");
        let name = format!("crew-e2e-{tag}-{}", std::process::id());
        let exe = env!("CARGO_BIN_EXE_crew");
        let hosts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hosts.toml");
        let script = format!(
            "env CREW_HOME='{}' CREW_CONFIG_DIR='{}' '{exe}' --hosts '{}'; \
             echo \"EXITED $?\"; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon'; sleep 60",
            home.path().display(),
            home.path().join("config").display(),
            hosts.display()
        );
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "32",
                &script,
            ])
            .status()
            .expect("tmux new-session")
            .success();
        assert!(ok, "tmux new-session failed");
        Session { name, _home: home }
    }

    fn home(&self) -> &Path {
        self._home.path()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = Command::new("tmux")
                .args(["send-keys", "-t", &self.name, k])
                .status()
                .expect("tmux send-keys")
                .success();
            assert!(ok, "send-keys {k}");
            // Keys sent back to back after Escape would read as Alt-<key>.
            std::thread::sleep(Duration::from_millis(80));
        }
    }

    fn text(&self, s: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", s])
            .status()
            .expect("tmux send-keys -l")
            .success();
        assert!(ok, "send-keys -l {s}");
        std::thread::sleep(Duration::from_millis(80));
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait (at most `secs`) until `pred` holds for the screen; panic with the screen if not.
    fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, needle: &str, secs: u64) -> String {
        self.wait(needle, secs, |s| s.contains(needle))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
        // a daemon this test started (if any) stops on its own idle timeout; ask it now
        let _ = Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", self.home())
            .output();
    }
}

#[test]
fn filter_by_tag_mark_help_and_quit_restores_terminal() {
    if !require_tool("tmux") {
        return;
    }
    let s = Session::start("filter");
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
    let screen = s.wait_for("EXITED 0", 10);
    assert!(
        !screen.contains("Hosts 2 shown"),
        "alternate screen left behind:\n{screen}"
    );
    let flag = screen
        .lines()
        .find(|l| l.trim().ends_with("icanon"))
        .unwrap_or_default();
    assert_eq!(
        flag.trim(),
        "icanon",
        "terminal left in raw mode:\n{screen}"
    );
}

#[test]
fn sigterm_restores_terminal() {
    if !require_tool("tmux") {
        return;
    }
    let s = Session::start("term");
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
    let screen = s.wait("the icanon flag", 10, |t| t.contains("icanon"));
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(
        !screen.contains("Hosts 10 shown"),
        "alternate screen left behind:\n{screen}"
    );
    let flag = screen
        .lines()
        .find(|l| l.trim().ends_with("icanon"))
        .unwrap_or_default();
    assert_eq!(
        flag.trim(),
        "icanon",
        "terminal left in raw mode:\n{screen}"
    );
}
