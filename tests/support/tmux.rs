//! A detached tmux session running the built `crew` binary: keys go in with send-keys, the
//! screen comes back with capture-pane, and every wait is a bounded poll of the screen until
//! it shows what the test expects (no fixed sleeps). Each session has its own temp
//! `CREW_HOME`; on drop the tmux session is killed and any daemon started under that home is
//! asked to stop.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::proc::{run_quietly, Bounded};

/// How long one tmux command may take.
const TMUX_WAIT: Duration = Duration::from_secs(20);

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
        // Tests start sessions in parallel; when no tmux server runs yet, two clients racing
        // to start one can lose ("server exited unexpectedly"): try again, a bounded number of
        // times, and fail with tmux's own words.
        let mut errors = Vec::new();
        for attempt in 0..5 {
            let out = Command::new("tmux")
                .args(["new-session", "-d", "-s", &name, "-x", &cols, "-y", &rows])
                .arg(&script)
                .output_within(TMUX_WAIT);
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            // A retry may find the session the lost attempt made after all.
            if out.status.success() || (attempt > 0 && err.starts_with("duplicate session")) {
                break;
            }
            errors.push(err);
            assert!(attempt < 4, "tmux new-session {name} failed: {errors:?}");
            std::thread::sleep(Duration::from_millis(100 << attempt));
        }
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

    /// Press `keys` (tmux key names: `Enter`, `C-k`, `j`, …), in one send-keys. A key read
    /// right after Escape would be taken for Alt-<key>: Escape may only come last, and the
    /// caller waits for the screen to show its effect before pressing more.
    pub fn keys(&self, keys: &[&str]) {
        if let Some(i) = keys.iter().position(|k| *k == "Escape") {
            assert_eq!(
                i + 1,
                keys.len(),
                "Escape must be the last key of a send: {keys:?}"
            );
        }
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status_within(TMUX_WAIT)
            .success();
        assert!(ok, "send-keys {keys:?}");
    }

    /// Type `s` literally.
    pub fn text(&self, s: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", s])
            .status_within(TMUX_WAIT)
            .success();
        assert!(ok, "send-keys -l {s}");
    }

    /// Press `keys`, then wait (at most `secs`) until the screen shows `needle`.
    pub fn press(&self, keys: &[&str], needle: &str, secs: u64) -> String {
        self.keys(keys);
        self.wait_for(needle, secs)
    }

    /// Type `s`, then wait (at most `secs`) until the screen shows `needle`.
    pub fn type_and_wait(&self, s: &str, needle: &str, secs: u64) -> String {
        self.text(s);
        self.wait_for(needle, secs)
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output_within(TMUX_WAIT);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's whole history, scrolled-off lines included.
    pub fn scrollback(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.name])
            .output_within(TMUX_WAIT);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pid of the program the pane's shell runs (crew), within `secs`.
    pub fn program_pid(&self, program: &str, secs: u64) -> u32 {
        let out = Command::new("tmux")
            .args(["list-panes", "-t", &self.name, "-F", "#{pane_pid}"])
            .output_within(TMUX_WAIT);
        let shell: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the pane's shell pid");
        let mut found = None;
        super::proc::wait_until(
            &format!("a {program} child of the pane's shell {shell}"),
            Duration::from_secs(secs),
            || {
                found = children_named(shell, program).first().copied();
                found.is_some()
            },
        );
        found.expect("found")
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
    /// The screen returned is settled: two captures in a row were the same, so a frame that
    /// was still being drawn when `pred` first held is not what the caller looks at.
    pub fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last: Option<String> = None;
        loop {
            let s = self.screen();
            if pred(&s) {
                if last.as_deref() == Some(s.as_str()) {
                    return s;
                }
                last = Some(s);
                continue;
            }
            last = None;
            if Instant::now() > deadline {
                if self.logs_on_timeout {
                    panic!(
                        "timed out waiting for {what}; screen:\n{s}\nlogs:\n{}",
                        self.logs()
                    );
                }
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(30));
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

/// Live children of `parent` whose command name is `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |x| x.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            comm == name && f.get(1) == Some(&parent.to_string().as_str()) && f[0] != "Z"
        })
        .collect()
}

impl Drop for Session {
    fn drop(&mut self) {
        run_quietly(
            Command::new("tmux").args(["kill-session", "-t", &self.name]),
            TMUX_WAIT,
        );
        // a daemon this test started (if any) stops on its own idle timeout; ask it now
        run_quietly(
            Command::new(env!("CARGO_BIN_EXE_crew"))
                .args(["daemon", "stop"])
                .env("CREW_HOME", self.home.path()),
            TMUX_WAIT,
        );
    }
}
