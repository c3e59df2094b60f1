//! What a `put` sends: the local sources walked once, before any host is contacted, into an
//! ordered list of entries (directories before their contents, each directory again after
//! them for its mtime, as `cp -a` does) and the files whose bytes the passes read.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::proto::daemon::PutSource;
use crate::proto::files::Meta;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSrc {
    Path(PathBuf),
    Bytes(Arc<[u8]>),
}

#[derive(Debug, Clone)]
pub struct FileRef {
    pub src: FileSrc,
    pub size: u64,
    /// (mtime seconds, nanoseconds) as planned: a file changed since is refused.
    pub mtime: Option<(i64, u32)>,
}

#[derive(Debug, Clone)]
pub enum What {
    Dir,
    /// Set the directory's metadata again, after its contents.
    DirEnd,
    Link(String),
    /// Index into [`PutPlan::files`].
    File(usize),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the source's destination ("" for the destination itself).
    pub rel: String,
    pub what: What,
    pub meta: Meta,
}

#[derive(Debug, Clone)]
pub struct Source {
    /// The name it goes by inside a destination directory.
    pub name: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub struct PutPlan {
    pub sources: Vec<Source>,
    pub files: Vec<FileRef>,
    pub remote: String,
    pub exact: bool,
    /// Bytes of all files.
    pub total: u64,
    pub dirs: usize,
    pub links: usize,
}

impl PutPlan {
    /// Where source `i` goes on a host: inside `remote` (`into_dir`) or as `remote`.
    pub fn dest(&self, i: usize, into_dir: bool) -> String {
        match (into_dir, self.sources.get(i)) {
            (true, Some(s)) => join(&self.remote, &s.name),
            _ => self.remote.clone(),
        }
    }

    /// `remote` must be a directory whatever is there: several sources, or a trailing `/`.
    pub fn remote_is_dir(&self) -> bool {
        !self.exact && (self.sources.len() > 1 || self.remote.ends_with('/'))
    }
}

/// `dir/name` without doubled slashes.
pub fn join(dir: &str, name: &str) -> String {
    if name.is_empty() {
        return dir.to_string();
    }
    let d = dir.trim_end_matches('/');
    if d.is_empty() && dir.starts_with('/') {
        return format!("/{name}");
    }
    format!("{d}/{name}")
}

fn mtime(m: &fs::Metadata) -> (i64, u32) {
    (m.mtime(), m.mtime_nsec().clamp(0, 999_999_999) as u32)
}

/// The owner is kept (as `cp -a` run by root would) only when we are root here: a copy by
/// another user through `--sudo` (or to a root login) belongs to the user on the host who
/// writes it, as `sudo cp` or `scp` would leave it, not to a uid of this machine.
fn meta_of(m: &fs::Metadata, mode: Option<u32>) -> Meta {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    Meta {
        mode: mode.unwrap_or(m.mode() & 0o7777),
        mtime: Some(mtime(m)),
        owner: root.then(|| (m.uid(), m.gid())),
    }
}

/// Walk the sources (blocking). Errors name the path and why (a directory without `-r`, a
/// special file, a name that is not UTF-8).
pub fn put_plan(
    sources: Vec<PutSource>,
    remote: String,
    recursive: bool,
    mode: Option<u32>,
    exact: bool,
) -> Result<PutPlan, String> {
    if sources.is_empty() {
        return Err("nothing to copy".into());
    }
    if remote.is_empty() {
        return Err("the remote path is empty".into());
    }
    if exact && sources.len() != 1 {
        return Err("an exact target takes exactly one source".into());
    }
    let mut plan = PutPlan {
        sources: Vec::new(),
        files: Vec::new(),
        remote,
        exact,
        total: 0,
        dirs: 0,
        links: 0,
    };
    let mut names = std::collections::BTreeSet::new();
    for src in sources {
        let source = match src {
            PutSource::Content { name, data } => {
                let size = data.len() as u64;
                plan.total += size;
                plan.files.push(FileRef {
                    src: FileSrc::Bytes(Arc::from(data)),
                    size,
                    mtime: None,
                });
                Source {
                    name,
                    entries: vec![Entry {
                        rel: String::new(),
                        what: What::File(plan.files.len() - 1),
                        meta: Meta {
                            mode: mode.unwrap_or(0o644),
                            mtime: None,
                            owner: None,
                        },
                    }],
                }
            }
            PutSource::Path(p) => {
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("{}: no file name (or not UTF-8)", p.display()))?;
                let mut entries = Vec::new();
                walk(
                    &p,
                    String::new(),
                    recursive,
                    mode,
                    true,
                    &mut plan,
                    &mut entries,
                )?;
                Source { name, entries }
            }
        };
        if !exact && !names.insert(source.name.clone()) {
            return Err(format!(
                "two sources are named `{}`: one would overwrite the other",
                source.name
            ));
        }
        plan.sources.push(source);
    }
    Ok(plan)
}

fn walk(
    p: &Path,
    rel: String,
    recursive: bool,
    mode: Option<u32>,
    top: bool,
    plan: &mut PutPlan,
    out: &mut Vec<Entry>,
) -> Result<(), String> {
    // Without -r a named symlink is followed (cp); with -r links are copied as links (cp -a).
    let m = if top && !recursive {
        fs::metadata(p)
    } else {
        fs::symlink_metadata(p)
    }
    .map_err(|e| format!("{}: {e}", p.display()))?;
    let ft = m.file_type();
    if ft.is_file() {
        plan.total += m.len();
        plan.files.push(FileRef {
            src: FileSrc::Path(p.to_path_buf()),
            size: m.len(),
            mtime: Some(mtime(&m)),
        });
        out.push(Entry {
            rel,
            what: What::File(plan.files.len() - 1),
            meta: meta_of(&m, mode),
        });
        return Ok(());
    }
    if ft.is_symlink() {
        let target = fs::read_link(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let target = target
            .to_str()
            .ok_or_else(|| format!("{}: its target is not UTF-8", p.display()))?
            .to_string();
        plan.links += 1;
        out.push(Entry {
            rel,
            what: What::Link(target),
            meta: meta_of(&m, None),
        });
        return Ok(());
    }
    if ft.is_dir() {
        if !recursive {
            return Err(format!(
                "{}: is a directory (use -r to copy it and what it holds)",
                p.display()
            ));
        }
        plan.dirs += 1;
        let meta = meta_of(&m, None);
        out.push(Entry {
            rel: rel.clone(),
            what: What::Dir,
            meta: meta.clone(),
        });
        let mut names: Vec<_> = fs::read_dir(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", p.display()))?;
        names.sort();
        for name in names {
            let n = name.to_str().ok_or_else(|| {
                format!(
                    "{}: a name that is not UTF-8 ({})",
                    p.display(),
                    name.to_string_lossy()
                )
            })?;
            let child = if rel.is_empty() {
                n.to_string()
            } else {
                format!("{rel}/{n}")
            };
            walk(&p.join(n), child, recursive, mode, false, plan, out)?;
        }
        out.push(Entry {
            rel,
            what: What::DirEnd,
            meta,
        });
        return Ok(());
    }
    let kind = if ft_is(&m, libc::S_IFIFO) {
        "a fifo"
    } else if ft_is(&m, libc::S_IFSOCK) {
        "a socket"
    } else {
        "a device file"
    };
    Err(format!(
        "{}: {kind}: special files are not copied",
        p.display()
    ))
}

fn ft_is(m: &fs::Metadata, fmt: libc::mode_t) -> bool {
    m.mode() & libc::S_IFMT == fmt
}

/// `1.5 MiB`, `200 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_sizes() {
        assert_eq!(join("/tmp/", "a"), "/tmp/a");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("d", "a"), "d/a");
        assert_eq!(join("d", ""), "d");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn walks_a_tree_with_dirs_around_their_contents_and_refuses_special_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("tree");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(root.join("a"), "aa").expect("write");
        fs::write(root.join("sub/b"), "bbb").expect("write");
        std::os::unix::fs::symlink("a", root.join("ln")).expect("symlink");
        let plan = put_plan(
            vec![PutSource::Path(root.clone())],
            "/x".into(),
            true,
            None,
            false,
        )
        .expect("plan");
        let rels: Vec<String> = plan.sources[0]
            .entries
            .iter()
            .map(|e| {
                let k = match e.what {
                    What::Dir => "d",
                    What::DirEnd => "e",
                    What::Link(_) => "l",
                    What::File(_) => "f",
                };
                format!("{k}:{}", e.rel)
            })
            .collect();
        assert_eq!(
            rels,
            ["d:", "f:a", "l:ln", "d:sub", "f:sub/b", "e:sub", "e:"]
        );
        assert_eq!(plan.total, 5);
        let e = put_plan(
            vec![PutSource::Path(root.clone())],
            "/x".into(),
            false,
            None,
            false,
        )
        .expect_err("a directory without -r");
        assert!(e.contains("use -r"), "{e}");
        let fifo = root.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstring");
        // SAFETY: c is a valid path string for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = put_plan(vec![PutSource::Path(root)], "/x".into(), true, None, false)
            .expect_err("a fifo");
        assert!(e.contains("fifo: special files are not copied"), "{e}");
    }
}
