//! Command-line history: loaded once at start, appended by an effect (off the UI thread),
//! walked with up/down and searched with ctrl-r.

use std::io::Write;
use std::path::Path;

/// Entries kept in memory (the file keeps growing; only its tail is loaded).
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct History {
    entries: Vec<String>,
    /// Position while walking: index into `entries`; None = at the draft.
    pos: Option<usize>,
    draft: String,
}

impl History {
    pub fn new(entries: Vec<String>) -> History {
        let skip = entries.len().saturating_sub(MAX_ENTRIES);
        History {
            entries: entries.into_iter().skip(skip).collect(),
            ..History::default()
        }
    }

    pub fn load(path: &Path) -> History {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        History::new(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect(),
        )
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Record a command just run (no consecutive duplicates); resets the walk.
    pub fn push(&mut self, cmd: &str) {
        if self.entries.last().map(String::as_str) != Some(cmd) {
            self.entries.push(cmd.to_string());
            if self.entries.len() > MAX_ENTRIES {
                self.entries.remove(0);
            }
        }
        self.reset();
    }

    pub fn reset(&mut self) {
        self.pos = None;
        self.draft.clear();
    }

    /// Older entry; `current` is what is typed now (kept as the draft).
    pub fn older(&mut self, current: &str) -> Option<&str> {
        let next = match self.pos {
            None => {
                self.draft = current.to_string();
                self.entries.len().checked_sub(1)?
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.pos = Some(next);
        self.entries.get(next).map(String::as_str)
    }

    /// Newer entry, or the draft past the newest.
    pub fn newer(&mut self) -> Option<&str> {
        match self.pos {
            None => None,
            Some(i) if i + 1 < self.entries.len() => {
                self.pos = Some(i + 1);
                self.entries.get(i + 1).map(String::as_str)
            }
            Some(_) => {
                self.pos = None;
                Some(self.draft.as_str())
            }
        }
    }

    /// Newest entry containing `needle`, older than the current position (ctrl-r again
    /// finds the next older match).
    pub fn search(&mut self, needle: &str) -> Option<&str> {
        let end = self.pos.unwrap_or(self.entries.len());
        let i = self.entries[..end]
            .iter()
            .rposition(|e| e.contains(needle))?;
        if self.pos.is_none() {
            self.draft = needle.to_string();
        }
        self.pos = Some(i);
        self.entries.get(i).map(String::as_str)
    }
}

/// Append one command to the history file (creating its directory, mode 0600).
pub fn append(path: &Path, cmd: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let one_line = cmd.replace('\n', " ");
    writeln!(f, "{one_line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_and_search() {
        let mut h = History::new(vec!["uptime".into(), "df -h".into(), "uname -a".into()]);
        assert_eq!(h.older("dra"), Some("uname -a"));
        assert_eq!(h.older(""), Some("df -h"));
        assert_eq!(h.newer(), Some("uname -a"));
        assert_eq!(h.newer(), Some("dra"));
        assert_eq!(h.search("u"), Some("uname -a"));
        assert_eq!(h.search("u"), Some("uptime"));
        assert_eq!(h.search("u"), None);
    }

    #[test]
    fn persists_to_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/history");
        append(&p, "echo one").expect("append");
        append(&p, "echo\ntwo").expect("append");
        let h = History::load(&p);
        assert_eq!(h.entries(), ["echo one", "echo two"]);
    }
}
