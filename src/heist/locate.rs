//! Where heists live, first match wins:
//! 1. `--file FILE` (one file);
//! 2. `heists/*.toml` in the directory of the hosts.toml in use;
//! 3. `<config dir>/heists/*.toml` (`~/.config/crew/heists/`, or `$CREW_CONFIG_DIR/heists/`).

use std::path::{Path, PathBuf};

use super::def::HeistDef;
use super::diag::Diagnostics;
use super::validate;

/// The heist files to read, and where they were looked for (for messages).
pub fn heist_files(
    explicit: Option<&Path>,
    hosts_file: Option<&Path>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    if let Some(f) = explicit {
        return (vec![f.to_path_buf()], vec![f.to_path_buf()]);
    }
    let mut looked = Vec::new();
    let beside = hosts_file.map(|h| h.parent().unwrap_or(Path::new("")).join("heists"));
    for dir in beside
        .into_iter()
        .chain([crate::paths::config_dir().join("heists")])
    {
        looked.push(dir.clone());
        if dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .collect();
            files.sort();
            return (files, looked);
        }
    }
    (Vec::new(), looked)
}

/// Every heist of `files`; files that do not check out come back as diagnostics.
pub fn load_all(files: &[PathBuf]) -> (Vec<HeistDef>, Vec<Diagnostics>) {
    let mut heists = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match validate::load_file(f) {
            Ok(hs) => heists.extend(hs),
            Err(d) => errors.push(d),
        }
    }
    (heists, errors)
}

/// The heist called `name`, or a message saying what exists and what is broken.
pub fn find(name: &str, files: &[PathBuf], looked: &[PathBuf]) -> anyhow::Result<HeistDef> {
    let (heists, errors) = load_all(files);
    let matching: Vec<&HeistDef> = heists.iter().filter(|h| h.name == name).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let mut msg = if files.is_empty() {
                let dirs: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "no heist files found (looked in {}; or pass --file FILE)",
                    dirs.join(", ")
                )
            } else {
                let names: Vec<&str> = heists.iter().map(|h| h.name.as_str()).collect();
                format!(
                    "no heist named `{name}` (known: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            };
            for e in errors {
                msg.push_str(&format!("\n{e}"));
            }
            anyhow::bail!(msg)
        }
        many => {
            let locs: Vec<String> = many.iter().map(|h| h.loc.to_string()).collect();
            anyhow::bail!(
                "heist `{name}` is defined more than once: {}",
                locs.join(", ")
            )
        }
    }
}
