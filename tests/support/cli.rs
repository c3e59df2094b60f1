//! The `crew` binary as a user runs it: a temp dir holding `hosts.toml`, `heists/`, a
//! `CREW_HOME` (`home/`) and a config dir (`config/`); every run bounded; the daemon the
//! runs started is stopped when the env is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::proc::{Bounded, COMMAND_WAIT};

/// `crew` with its state under `home` and its config under `config`: no `CREW_HOSTS`, no
/// `NO_COLOR`, the agent is this build's binary.
pub fn crew_command(home: &Path, config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crew"));
    c.env("CREW_HOME", home)
        .env("CREW_CONFIG_DIR", config)
        .env("CREW_AGENT_EXE", env!("CARGO_BIN_EXE_crew"))
        .env_remove("CREW_HOSTS")
        .env_remove("NO_COLOR");
    c
}

/// A hosts.toml of `local` hosts (agents run as children of the daemon): one `[[host]]` per
/// (name or nodeset, tags).
pub fn local_hosts(entries: &[(&str, &[&str])]) -> String {
    let mut toml = String::from("[defaults]\ntransport = \"local\"\n");
    for (name, tags) in entries {
        toml += &format!("\n[[host]]\nname = {name:?}\ntags = {tags:?}\n");
    }
    toml
}

/// stdout and stderr of a run, with its exit status, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp dir with `hosts.toml`, `heists/`, `home/` (CREW_HOME) and `config/`.
pub struct CliEnv {
    pub dir: tempfile::TempDir,
}

impl CliEnv {
    pub fn new(hosts_toml: &str) -> CliEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts.toml"), hosts_toml).expect("hosts.toml");
        for d in ["heists", "home", "config", "tmp"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("env dir");
        }
        CliEnv { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `CREW_HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn hosts_file(&self) -> PathBuf {
        self.dir.path().join("hosts.toml")
    }

    /// Write `heists/<name>` beside hosts.toml.
    pub fn heist_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join("heists").join(name);
        std::fs::write(&p, text).expect("heist file");
        p
    }

    /// `crew --hosts <hosts.toml> ARGS…` in the env's dir, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = crew_command(&self.home(), &self.dir.path().join("config"));
        // The daemon's local agents keep their dirs here: another test's agents (same user)
        // would otherwise reap this test's dead agents' leftovers.
        c.env("TMPDIR", self.dir.path().join("tmp"));
        c.arg("--hosts")
            .arg(self.hosts_file())
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// Run `crew ARGS…` to completion (stdin not a terminal), within [`COMMAND_WAIT`].
    pub fn crew(&self, args: &[&str]) -> Output {
        self.command(args).output_within(COMMAND_WAIT)
    }

    /// Run directories of the store (plain runs and heist runs), sorted by name.
    pub fn runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.home().join("runs"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        runs.sort();
        runs
    }

    /// Heist runs of the store, oldest first.
    pub fn heist_runs(&self) -> Vec<PathBuf> {
        self.runs()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("heist-"))
            })
            .collect()
    }

    /// Plain (`crew run`) runs of the store, oldest first (by id).
    pub fn plain_runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<(u64, PathBuf)> = self
            .runs()
            .into_iter()
            .filter_map(|p| Some((p.file_name()?.to_str()?.parse().ok()?, p)))
            .collect();
        runs.sort();
        runs.into_iter().map(|(_, p)| p).collect()
    }
}

impl Drop for CliEnv {
    fn drop(&mut self) {
        // The daemon a run started stays resident; ask it to stop (bounded, never panics).
        super::proc::run_quietly(
            &mut self.command(&["daemon", "stop"]),
            Duration::from_secs(30),
        );
    }
}
