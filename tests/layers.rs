//! The layering rule, read from the source: every `crate::…` reference in `src/` points to a
//! module of the same layer or a lower one, the top-level modules import each other without a
//! circle, only `console/` uses ratatui/crossterm/tui-textarea and only `daemon/ssh/` uses
//! russh. README's Development section states the same rule; this keeps it true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom: a module may use modules of its own layer or below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "ground floor",
        &[
            "paths",
            "textpos",
            "sanitize_class",
            "duration",
            "nodeset",
            "logging",
            "model",
            "proto",
            "select",
            "inventory",
        ],
    ),
    ("domain", &["store", "heist", "pick"]),
    ("roles", &["client", "daemon", "agent", "api"]),
    ("front-ends", &["cmd", "console", "cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Code without comments (line comments, doc comments and block comments); strings are kept,
/// which only matters if a string spells a `crate::` path (none does).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// (top-level module of a file, file path relative to src/, code).
fn sources() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .to_string();
            let top = rel
                .split('/')
                .next()
                .expect("a path")
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&p).expect("read source");
            (top, rel, code_of(&text))
        })
        .collect()
}

/// The top-level modules a piece of code names through `crate::X`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `crate::` preceded by an identifier character is another path (`mycrate::`).
        if code[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = code[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn every_import_points_down_or_across_never_up() {
    let mut bad = Vec::new();
    for (top, rel, code) in sources() {
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(mine) = layer_of(&top) else {
            bad.push(format!(
                "{rel}: module `{top}` has no layer in tests/layers.rs"
            ));
            continue;
        };
        for target in crate_refs(&code) {
            if target == top {
                continue;
            }
            match layer_of(&target) {
                None => bad.push(format!("{rel}: uses `crate::{target}`, which has no layer")),
                Some(l) if l > mine => bad.push(format!(
                    "{rel}: `{top}` ({}) imports `{target}` ({}), a higher layer",
                    LAYERS[mine].0, LAYERS[l].0
                )),
                Some(_) => {}
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (top, _, code) in sources() {
        let deps = graph.entry(top.clone()).or_default();
        for t in crate_refs(&code) {
            if t != top {
                deps.insert(t);
            }
        }
    }
    // Depth-first search for a back edge; report the circle it closes.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut circle = stack[i..].to_vec();
            circle.push(n.to_string());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn only_the_console_draws_and_only_daemon_ssh_speaks_ssh() {
    let mut bad = Vec::new();
    for (_, rel, code) in sources() {
        let uses = |name: &str| {
            code.match_indices(name).any(|(i, _)| {
                let before = code[..i].chars().last();
                let after = code[i + name.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after == Some(':')
            })
        };
        for lib in ["ratatui", "crossterm", "tui_textarea"] {
            if uses(lib) && !rel.starts_with("console/") {
                bad.push(format!("{rel} uses {lib}"));
            }
        }
        if uses("russh") && !rel.starts_with("daemon/ssh/") {
            bad.push(format!("{rel} uses russh"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_through_comments_and_groups() {
    let code =
        code_of("use crate::a::{b, c};\n// crate::hidden\n/* crate::gone */ x = crate::d::e;");
    let refs: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(refs, ["a", "d"]);
}
