//! Shell integration: `crew completions bash|zsh|fish` prints the line that registers crew's
//! completions with the shell, and `crew man` prints the manual page (roff, from the same clap
//! definitions as `--help`).
//!
//! Completions are computed by crew itself when the shell asks (clap_complete's environment
//! completer: the shell calls `COMPLETE=<shell> crew -- <words>`), so a selection argument
//! completes from the inventory: host names, `key=value` and bare tags, `@groups` and the
//! `?outcome` atoms, after whatever the expression already holds (`role=web & db<Tab>`).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write as _;

use clap::{Args, ValueEnum};
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::EnvCompleter;

use crate::inventory::Inventory;

/// The environment variable the shell sets when it asks crew for completions.
pub const COMPLETE_VAR: &str = "COMPLETE";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    pub shell: Shell,
}

/// Print the shell's registration script (add `source <(crew completions bash)` to
/// `~/.bashrc`, `source <(crew completions zsh)` to `~/.zshrc`,
/// `crew completions fish | source` to fish's config).
pub fn completions(args: CompletionsArgs) -> anyhow::Result<i32> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "crew".to_string());
    let mut out = Vec::new();
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &clap_complete::env::Bash,
        Shell::Zsh => &clap_complete::env::Zsh,
        Shell::Fish => &clap_complete::env::Fish,
    };
    shell.write_registration(COMPLETE_VAR, "crew", "crew", &bin, &mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(0)
}

/// Print the manual page: crew's own sections, then one section per command with its
/// synopsis, description and options.
pub fn man(command: clap::Command) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    for sub in command.get_subcommands() {
        let name = format!("crew {}", sub.get_name());
        let sub = sub.clone().bin_name(name.clone());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let page = clap_mangen::Man::new(sub);
        page.render_synopsis_section(&mut out)?;
        page.render_description_section(&mut out)?;
        page.render_options_section(&mut out)?;
    }
    std::io::stdout().write_all(&out)?;
    Ok(0)
}

/// Characters that end an atom in a selection: what comes after the last of them is the
/// word being completed.
const OPERATORS: &[char] = &['&', '|', ',', '!', '(', ')', ' '];

/// Completion candidates for a selection argument: the inventory's words that continue the
/// last atom of `current` (the inventory of `CREW_HOSTS`, else `./hosts.toml`, else the
/// config dir's; none when it cannot be read).
pub fn selection_candidates(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let explicit = std::env::var_os("CREW_HOSTS").map(std::path::PathBuf::from);
    let Ok(inv) = Inventory::load_default(explicit.as_deref()) else {
        return Vec::new();
    };
    let cut = current.rfind(OPERATORS).map_or(0, |i| i + 1);
    let (head, word) = current.split_at(cut);
    words(&inv)
        .into_iter()
        .filter(|w| w.starts_with(word))
        .map(|w| CompletionCandidate::new(format!("{head}{w}")))
        .collect()
}

/// Every word a selection may name in this inventory.
fn words(inv: &Inventory) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for h in &inv.hosts {
        out.insert(h.name.clone());
        out.extend(h.tags.iter().cloned());
    }
    out.extend(inv.groups.keys().map(|g| format!("@{g}")));
    for v in ["ok", "failed", "timeout", "unreachable", "killed"] {
        out.insert(format!("?{v}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_atom_completes_from_the_inventory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("hosts.toml");
        std::fs::write(
            &p,
            "[[host]]\nname = \"web[1-2]\"\ntransport = \"local\"\ntags = [\"role=web\", \"canary\"]\n\
             [groups]\nfront = \"role=web\"\n",
        )
        .expect("hosts.toml");
        let inv = Inventory::load(&p).expect("inventory");
        let w = words(&inv);
        for expected in ["web1", "web2", "role=web", "canary", "@front", "?failed"] {
            assert!(w.contains(expected), "{expected} in {w:?}");
        }
    }
}
