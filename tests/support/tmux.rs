//! A detached tmux session running the built `crew` binary: keys go in with send-keys, the
//! screen comes back with capture-pane, and every wait is a bounded poll. Each session has
//! its own temp `CREW_HOME`; on drop the tmux session is killed and any daemon started under
//! that home is asked to stop.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Shell tail for a session's command: after crew exits, print its exit status and the
/// terminal's canonical-mode flag (`icanon` when cooked, `-icanon` when left raw), then stay.
pub const REPORT_EXIT: &str =
    "; echo \"EXITED $?\"; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon'; sleep 60";

pub struct Session {
    pub name: String,
    home: tempfile::TempDir,
    /// Append the tail of `<CREW_HOME>/logs/*` to the panic message of a timed-out wait.
    logs_on_timeout: bool,
}

impl Session {
    /// Start a detached `cols`×`rows` tmux session named `name` running the shell command
    /// `script(home)`, where `home` is a fresh temp dir meant as the session's `CREW_HOME`.
    pub fn start(
        name: String,
        cols: u16,
        rows: u16,
        script: impl FnOnce(&Path) -> String,
    ) -> Session {
        let home = tempfile::tempdir().expect("temp CREW_HOME");
        let script = script(home.path());
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", &cols, "-y", &rows])
            .arg(&script)
            .status()
            .expect("tmux new-session")
            .success();
        assert!(ok, "tmux new-session failed");
        Session {
            name,
            home,
            logs_on_timeout: false,
        }
    }

    /// Show the console's log files when a wait times out.
    pub fn with_logs_on_timeout(mut self) -> Session {
        self.logs_on_timeout = true;
        self
    }

    /// The session's `CREW_HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn keys(&self, keys: &[&str]) {
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

    pub fn text(&self, s: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", s])
            .status()
            .expect("tmux send-keys -l")
            .success();
        assert!(ok, "send-keys -l {s}");
        std::thread::sleep(Duration::from_millis(80));
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The console's log files, last 30 lines of each (for failure messages).
    pub fn logs(&self) -> String {
        let dir = self.home.path().join("logs");
        let mut out = String::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let _ = writeln!(out, "== {}", e.path().display());
            for l in tail.into_iter().rev() {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    /// Wait (at most `secs`) until `pred` holds for the screen; panic with the screen (and
    /// the logs, if asked for) if not.
    pub fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                if self.logs_on_timeout {
                    panic!(
                        "timed out waiting for {what}; screen:\n{s}\nlogs:\n{}",
                        self.logs()
                    );
                }
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for(&self, needle: &str, secs: u64) -> String {
        self.wait(needle, secs, |s| s.contains(needle))
    }

    /// After crew has been told to exit (a session started with [`REPORT_EXIT`]): it exited 0,
    /// the alternate screen is gone (no `ui_text` left on screen) and the terminal is back in
    /// canonical mode.
    pub fn assert_restored(&self, ui_text: &str) {
        let screen = self.wait("the icanon flag", 10, |t| t.contains("icanon"));
        assert!(screen.contains("EXITED 0"), "{screen}");
        assert!(
            !screen.contains(ui_text),
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
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
        // a daemon this test started (if any) stops on its own idle timeout; ask it now
        let _ = Command::new(env!("CARGO_BIN_EXE_crew"))
            .args(["daemon", "stop"])
            .env("CREW_HOME", self.home.path())
            .output();
    }
}
