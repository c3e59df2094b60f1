//! Console settings: `<config dir>/console.toml` (all keys optional).
//!
//! ```toml
//! theme = "light"                 # or a path to a .toml theme
//! scrollback = 10000              # lines kept in memory per host
//! timeout = "10m"                 # per-host command timeout for runs from the console
//! dangerous = ['\brm\s+-rf\b']    # regexes: commands matching one ask for confirmation
//! ```
//! `dangerous` replaces the built-in list; `extra_dangerous` adds to it.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

/// Commands that ask for confirmation unless the config says otherwise.
pub const DEFAULT_DANGEROUS: &[&str] = &[
    r"\brm\s+(-[a-zA-Z]*[rRf][a-zA-Z]*\s+)+",
    r"\b(reboot|shutdown|halt|poweroff)\b",
    r"\binit\s+[06]\b",
    r"\bmkfs(\.\w+)?\b",
    r"\bdd\b.*\bof=/dev/",
    r"\bsystemctl\s+(stop|restart|disable|mask|isolate)\b",
    r"\b(kill|pkill|killall)\b",
    r">\s*/dev/(sd|nvme|vd|xvd)",
    r"\b(userdel|groupdel|wipefs|sgdisk|fdisk|parted)\b",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub theme: Option<String>,
    pub scrollback: Option<usize>,
    pub timeout: Option<String>,
    pub dangerous: Option<Vec<String>>,
    #[serde(default)]
    pub extra_dangerous: Vec<String>,
}

impl ConsoleConfig {
    pub fn load(path: &Path) -> Result<ConsoleConfig, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConsoleConfig::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn dangerous(&self) -> Result<Vec<Regex>, String> {
        let base: Vec<String> = match &self.dangerous {
            Some(list) => list.clone(),
            None => DEFAULT_DANGEROUS.iter().map(|s| s.to_string()).collect(),
        };
        base.iter()
            .chain(&self.extra_dangerous)
            .map(|p| {
                Regex::new(p).map_err(|e| format!("console.toml: dangerous pattern {p:?}: {e}"))
            })
            .collect()
    }

    pub fn timeout_ms(&self) -> Result<Option<u64>, String> {
        self.timeout
            .as_deref()
            .map(|t| crate::duration::parse(t).map(|d| d.as_millis() as u64))
            .transpose()
            .map_err(|e| format!("console.toml: timeout: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_catch_the_obvious() {
        let res = ConsoleConfig::default().dangerous().expect("regexes");
        let hit = |c: &str| res.iter().any(|r| r.is_match(c));
        assert!(hit("rm -rf /var/lib/x"));
        assert!(hit("sudo reboot"));
        assert!(hit("systemctl restart nginx"));
        assert!(!hit("hostname"));
        assert!(!hit("uptime"));
        assert!(!hit("ls -l /tmp"));
    }

    #[test]
    fn bad_pattern_is_reported() {
        let c: ConsoleConfig = toml::from_str("dangerous = ['(']").expect("toml");
        let err = c.dangerous().expect_err("bad regex");
        assert!(
            err.contains("console.toml") && err.contains("\"(\""),
            "{err}"
        );
    }
}
