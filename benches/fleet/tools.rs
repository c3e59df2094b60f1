//! The comparison tools (pdsh, clush, bssh): where they are and the exact command line that
//! runs `true` on every fleet host with the fleet's port, client key and known_hosts, host key
//! checking on (never StrictHostKeyChecking=no), non-interactive, at a given fanout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use crew::model::Host;

use super::support::find_tool;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tool {
    Pdsh,
    Clush,
    Bssh,
}

pub const ALL: [Tool; 3] = [Tool::Pdsh, Tool::Clush, Tool::Bssh];

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pdsh => "pdsh",
            Tool::Clush => "clush",
            Tool::Bssh => "bssh",
        }
    }

    /// How to install it, for the "not installed" note.
    pub fn install_hint(self) -> &'static str {
        match self {
            Tool::Pdsh => "apt-get install pdsh",
            Tool::Clush => "apt-get install clustershell",
            Tool::Bssh => "cargo install bssh --version 2.2.3 --locked",
        }
    }

    /// The executable: `$PATH`, sbin dirs, then cargo's bin dir for bssh.
    pub fn find(self) -> Option<PathBuf> {
        find_tool(self.name()).or_else(|| {
            let cargo_home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))?;
            let p = cargo_home.join("bin").join(self.name());
            p.is_file().then_some(p)
        })
    }
}

/// What every tool needs to know about the fleet.
pub struct Target {
    pub addresses: Vec<String>,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// A HOME for bssh, whose `~/.ssh/known_hosts` is the fleet's (bssh has no option for it).
    pub bssh_home: PathBuf,
}

impl Target {
    pub fn new(hosts: &[Host], scratch: &Path) -> anyhow::Result<Target> {
        let first = hosts.first().context("a fleet with no hosts")?;
        let key = first.identity_files.first().context("fleet client key")?;
        let known_hosts = first.known_hosts.first().context("fleet known_hosts")?;
        let bssh_home = scratch.join("bssh-home");
        fs::create_dir_all(bssh_home.join(".ssh")).context("bssh HOME")?;
        fs::copy(known_hosts, bssh_home.join(".ssh/known_hosts"))
            .context("copy known_hosts for bssh")?;
        Ok(Target {
            addresses: hosts.iter().map(|h| h.address.clone()).collect(),
            port: first.port,
            user: first.user.clone().unwrap_or_else(crew::paths::whoami),
            key: key.clone(),
            known_hosts: known_hosts.clone(),
            bssh_home,
        })
    }

    /// OpenSSH client options shared by pdsh and clush: no ssh_config, the fleet's key only,
    /// strict checking against the fleet's known_hosts, never a prompt.
    pub fn ssh_opts(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=30".into(),
        ]
    }

    /// `addr:port,…` for tools that take the port in the host list.
    pub fn with_ports(&self) -> String {
        let l: Vec<String> = self
            .addresses
            .iter()
            .map(|a| format!("{a}:{}", self.port))
            .collect();
        l.join(",")
    }

    /// A printed command line with the host list shortened to `$HOSTS`.
    pub fn redact(&self, line: &str) -> String {
        line.replace(&self.with_ports(), "$HOSTS_WITH_PORT")
            .replace(&self.addresses.join(","), "$HOSTS")
    }

    /// The command line running `true` on every host at `fanout`. Each exits non-zero when
    /// any host fails (pdsh -S, clush -S, bssh --require-all-success).
    pub fn command(&self, tool: Tool, exe: &Path, fanout: usize) -> Command {
        let list = self.addresses.join(",");
        let mut c = Command::new(exe);
        match tool {
            Tool::Pdsh => {
                let mut args = self.ssh_opts();
                args.push("-l%u".into());
                args.push("%h".into());
                c.env("PDSH_SSH_ARGS", args.join(" "));
                c.args(["-S", "-R", "ssh", "-f", &fanout.to_string(), "-l"])
                    .arg(&self.user)
                    .args(["-w", &list, "true"]);
            }
            Tool::Clush => {
                c.args(["-S", "-f", &fanout.to_string(), "-l", &self.user])
                    .args(["-o", &self.ssh_opts().join(" ")])
                    .args(["-w", &list, "true"]);
            }
            Tool::Bssh => {
                c.env("HOME", &self.bssh_home);
                c.args(["--strict-host-key-checking", "yes", "--require-all-success"])
                    .args(["--parallel", &fanout.to_string()])
                    // bssh ignores `-p` for `-H` hosts (it connects to 22): ports go in the list.
                    .args(["-l", &self.user, "-i"])
                    .arg(&self.key)
                    .args(["--connect-timeout", "30", "-H", &self.with_ports(), "true"]);
            }
        }
        c
    }
}
