//! The sudo password, asked once: from the program `$CREW_ASKPASS` names (the SSH_ASKPASS
//! convention: the prompt is its argument, the password its first line of output), else
//! from the terminal without echo. Never from the command line or an environment variable's
//! value; it lives in a [`Secret`] (wiped when dropped) and goes to the daemon inside the
//! run request, nowhere else.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::model::Secret;

/// What `--sudo` / `--sudo-user USER` ask for on `hosts` hosts: None without either; else
/// the user (root by default) and its password, asked once ([`ask`]).
pub fn sudo_for(
    sudo_user: &Option<String>,
    sudo: bool,
    hosts: usize,
) -> anyhow::Result<Option<crate::model::Sudo>> {
    if sudo_user.is_none() && !sudo {
        return Ok(None);
    }
    let user = sudo_user.clone().unwrap_or_else(|| "root".to_string());
    let password = ask(&user, &format!("{hosts} host(s)"))?;
    Ok(Some(crate::model::Sudo { user, password }))
}

/// Ask for `user`'s sudo password (`why` says for what). `None` when there is no way to
/// ask (no `$CREW_ASKPASS`, no terminal) or the answer is empty: NOPASSWD hosts, and hosts
/// whose privileged agent is already running, need none.
pub fn ask(user: &str, why: &str) -> anyhow::Result<Option<Secret>> {
    let prompt = format!("[crew] sudo password on the hosts (to become {user}, {why}): ");
    if let Some(prog) = std::env::var_os("CREW_ASKPASS").filter(|p| !p.is_empty()) {
        let out = Command::new(&prog)
            .arg(&prompt)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running CREW_ASKPASS {}", prog.to_string_lossy()))?;
        anyhow::ensure!(
            out.status.success(),
            "CREW_ASKPASS {} failed ({})",
            prog.to_string_lossy(),
            out.status
        );
        let mut text = zeroize::Zeroizing::new(out.stdout);
        let line_end = text.iter().position(|b| *b == b'\n').unwrap_or(text.len());
        text.truncate(line_end);
        if text.last() == Some(&b'\r') {
            text.pop();
        }
        return Ok((!text.is_empty()).then(|| Secret::new(text.to_vec())));
    }
    if !std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        eprintln!(
            "crew: no terminal to ask the sudo password on, and no $CREW_ASKPASS: going on \
             without one (NOPASSWD hosts only)"
        );
        return Ok(None);
    }
    match rpassword::prompt_password(&prompt) {
        Ok(line) => {
            let s = Secret::from_line(line);
            Ok((!s.is_empty()).then_some(s))
        }
        Err(e) => {
            eprintln!(
                "crew: cannot read the sudo password from the terminal ({e}); going on without one"
            );
            Ok(None)
        }
    }
}
