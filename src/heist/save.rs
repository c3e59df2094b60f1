//! Saving a command as a heist (the console's `ctrl-s`): append `[heist.NAME]` with its
//! `select` and one `[[heist.NAME.step]]` to a heist file, editing it with `toml_edit` so its
//! comments and formatting stay as they were. An existing name is never overwritten; the file
//! is replaced atomically (temp file + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

/// What to save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRequest {
    pub name: String,
    /// The selection (selection language), e.g. `role=demo` or `demo[2,5]`.
    pub select: String,
    /// The shell command, as typed (a literal `${` is escaped as `$${`).
    pub command: String,
    pub description: Option<String>,
}

/// Where a saved heist goes: the first heist file found, else `heists/saved.toml` beside
/// the hosts.toml in use, else `<config dir>/heists/saved.toml`.
pub fn target_file(found: &[PathBuf], hosts_file: Option<&Path>) -> PathBuf {
    if let Some(first) = found.first() {
        return first.clone();
    }
    match hosts_file {
        Some(h) => h
            .parent()
            .unwrap_or(Path::new(""))
            .join("heists")
            .join("saved.toml"),
        None => crate::paths::config_dir().join("heists").join("saved.toml"),
    }
}

/// A heist name: letters, digits, `_` and `-`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut cs = name.chars();
    let ok = cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad heist name {name:?}: use letters, digits, `_` and `-`, starting with a letter"
        ))
    }
}

/// `text` with the heist appended (pure; `path` names the file in messages).
pub fn append(text: &str, path: &Path, req: &SaveRequest) -> Result<String, String> {
    check_name(&req.name)?;
    if req.command.trim().is_empty() {
        return Err("nothing to save: the command line is empty".into());
    }
    if req.select.trim().is_empty() {
        return Err("nothing to save: the selection is empty".into());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let root = doc
        .entry("heist")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| format!("{}: `heist` is not a table", path.display()))?;
    if root.contains_key(&req.name) {
        return Err(format!(
            "{}: a heist named `{}` already exists (pick another name)",
            path.display(),
            req.name
        ));
    }
    let mut heist = Table::new();
    if let Some(d) = req.description.as_deref().filter(|d| !d.trim().is_empty()) {
        heist.insert("description", value(d));
    }
    heist.insert("select", value(req.select.trim()));
    let mut step = Table::new();
    step.insert("name", value("run"));
    step.insert("run", value(req.command.trim().replace("${", "$${")));
    let mut steps = ArrayOfTables::new();
    steps.push(step);
    heist.insert("step", Item::ArrayOfTables(steps));
    root.insert(&req.name, Item::Table(heist));
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Append the heist to `path` (created with its folder when missing), atomically.
pub fn save(path: &Path, req: &SaveRequest) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let new = append(&text, path, req)?;
    // What we write must read back as a valid heist file.
    super::validate::load_str(&new, path).map_err(|d| format!("{d}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "heists.toml".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str) -> SaveRequest {
        SaveRequest {
            name: name.into(),
            select: "role=demo & env=staging".into(),
            command: "uptime && echo ${HOME}".into(),
            description: Some("saved from the console".into()),
        }
    }

    const FILE: &str = "# my heists\n\n[heist.hello]   # the first one\nselect = \"role=demo\"   # all demo hosts\n\n# greet them\n[[heist.hello.step]]\nname = \"greet\"\nrun = \"echo hi\"\n";

    #[test]
    fn comments_and_formatting_are_kept() {
        let out = append(FILE, Path::new("h.toml"), &req("up")).expect("append");
        assert!(out.starts_with(FILE), "existing text changed:\n{out}");
        assert!(out.contains("[heist.up]"), "{out}");
        assert!(out.contains("[[heist.up.step]]"), "{out}");
        let defs = crate::heist::validate::load_str(&out, Path::new("h.toml")).expect("valid");
        let up = defs.iter().find(|h| h.name == "up").expect("up");
        assert_eq!(up.select, "role=demo & env=staging");
        assert_eq!(up.steps.len(), 1);
        assert_eq!(up.description.as_deref(), Some("saved from the console"));
        // `${HOME}` went in escaped, so it reaches the shell as `${HOME}`, not a heist variable
        assert!(out.contains("$${HOME}"), "{out}");
    }

    #[test]
    fn an_existing_name_is_refused() {
        let err = append(FILE, Path::new("h.toml"), &req("hello")).expect_err("clash");
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains("h.toml"), "{err}");
    }

    #[test]
    fn bad_names_and_empty_commands_are_refused() {
        assert!(append(FILE, Path::new("h.toml"), &req("9lives")).is_err());
        assert!(append(FILE, Path::new("h.toml"), &req("a b")).is_err());
        let mut r = req("ok");
        r.command = "  ".into();
        assert!(append(FILE, Path::new("h.toml"), &r).is_err());
    }

    #[test]
    fn save_creates_the_file_then_appends_and_keeps_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heists").join("saved.toml");
        save(&path, &req("first")).expect("create");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.insert_str(0, "# kept comment\n");
        std::fs::write(&path, &text).expect("write");
        save(&path, &req("second")).expect("append");
        let after = std::fs::read_to_string(&path).expect("read");
        assert!(after.starts_with(&text), "{after}");
        let names: Vec<String> = crate::heist::validate::load_file(&path)
            .expect("valid")
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["first", "second"]);
        let err = save(&path, &req("first")).expect_err("clash");
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), after);
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .count();
        assert_eq!(leftovers, 1, "temp file left behind");
    }

    #[test]
    fn target_is_the_first_file_else_beside_hosts() {
        let found = vec![
            PathBuf::from("/a/heists/a.toml"),
            PathBuf::from("/a/b.toml"),
        ];
        assert_eq!(target_file(&found, None), found[0]);
        assert_eq!(
            target_file(&[], Some(Path::new("/x/hosts.toml"))),
            PathBuf::from("/x/heists/saved.toml")
        );
    }
}
