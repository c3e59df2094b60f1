//! known_hosts checking as OpenSSH does it, because russh's helper ignores `@revoked` lines,
//! wildcards and tabs. Handles hashed `|1|salt|hash` entries, `[host]:port`, `*`/`?`
//! wildcards, `!negated` patterns, `@revoked` (always refuses) and `@cert-authority` (skipped).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::{HashAlg, PublicKey};

use super::SshError;

/// Where a key was found: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The result of looking a host key up in known_hosts files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Known(Place),
    /// No line for this host records this key; `other_types` lists places recording keys of
    /// other algorithms for it.
    Unknown {
        other_types: Vec<Place>,
    },
    /// A line for this host records another key of the same algorithm.
    Changed(Place),
    /// An `@revoked` line lists this key.
    Revoked(Place),
}

/// The name OpenSSH looks up: `host` on port 22, else `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Look `key` up for `host:port` in `files` (missing files count as empty). Blocking: reads
/// the files (async callers go through [`verify`]).
pub fn lookup(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> Lookup {
    let name = lookup_name(host, port);
    let mut changed = None;
    let mut known = None;
    let mut other_types = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if entry.marker == Some("@cert-authority") || !host_matches(&name, entry.hosts) {
                continue;
            }
            let place = Place {
                file: file.clone(),
                line: i + 1,
            };
            let Ok(recorded) = PublicKey::from_openssh(&format!("{} {}", entry.kind, entry.b64))
            else {
                tracing::debug!("{place}: unparsable key, ignored");
                continue;
            };
            let same = recorded.key_data() == key.key_data();
            if entry.marker == Some("@revoked") {
                if same {
                    return Lookup::Revoked(place);
                }
            } else if same {
                known.get_or_insert(place);
            } else if recorded.algorithm() == key.algorithm() {
                changed.get_or_insert(place);
            } else {
                other_types.push(place);
            }
        }
    }
    match (known, changed) {
        (Some(p), _) => Lookup::Known(p),
        (None, Some(p)) => Lookup::Changed(p),
        (None, None) => Lookup::Unknown { other_types },
    }
}

/// What [`decide`] concluded for a key that may be trusted.
enum Decision {
    Known(Place),
    /// Unknown, and `accept_new`: record it in this file.
    Learn(PathBuf),
}

/// Turn a lookup into a decision, or the `HostKey` error naming the file and line.
fn decide(
    found: Lookup,
    files: &[PathBuf],
    name: &str,
    key: &PublicKey,
    accept_new: bool,
) -> Result<Decision, SshError> {
    let fp = key.fingerprint(HashAlg::Sha256);
    let alg = key.algorithm();
    match found {
        Lookup::Known(place) => Ok(Decision::Known(place)),
        Lookup::Revoked(place) => Err(SshError::HostKey(format!(
            "host key for {name} ({alg} {fp}) is REVOKED by known_hosts {place}; refusing"
        ))),
        Lookup::Changed(place) => Err(SshError::HostKey(format!(
            "host key for {name} has CHANGED: server offers {alg} {fp} but known_hosts \
             {place} records another key; refusing (possible man-in-the-middle; if the host \
             was reinstalled, remove that line)"
        ))),
        Lookup::Unknown { other_types } => {
            if let Some(first) = files.first().filter(|_| accept_new) {
                return Ok(Decision::Learn(first.clone()));
            }
            let list = if files.is_empty() {
                "no known_hosts file configured".to_string()
            } else {
                format!(
                    "not in known_hosts {}",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let others = match other_types.first() {
                Some(p) => format!(" (a key of another type is recorded at {p})"),
                None => String::new(),
            };
            Err(SshError::HostKey(format!(
                "host key for {name} is unknown ({alg} {fp}), {list}{others}; refusing. \
                 Verify the key and add it, or use --accept-new-host-keys"
            )))
        }
    }
}

/// Run blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, SshError> + Send + 'static,
) -> Result<T, SshError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SshError::HostKey(format!("{what}: {e}")))?
}

/// Serialises every append to known_hosts files in this process: two hosts learned at once
/// must not write interleaved lines, nor one host twice (aliases of one address).
static LEARNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Decide whether to trust `key` for `host:port`: Ok when known (or unknown and
/// `accept_new`, in which case it is learned into the first file); a `HostKey` error naming
/// the file and line otherwise. The files are read on the blocking pool; learning re-reads
/// them under a process-wide lock first, so a key another connection just recorded is not
/// written again.
pub async fn verify(
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PublicKey,
    accept_new: bool,
) -> Result<(), SshError> {
    let name = lookup_name(host, port);
    let (files, host, key) = (files.to_vec(), host.to_string(), key.clone());
    let checked = {
        let (files, host, key, name) = (files.clone(), host.clone(), key.clone(), name.clone());
        blocking("reading known_hosts", move || {
            decide(
                lookup(&files, &host, port, &key),
                &files,
                &name,
                &key,
                accept_new,
            )
        })
        .await?
    };
    if let Decision::Known(place) = checked {
        tracing::debug!("host key for {name} known at {place}");
        return Ok(());
    }
    let _learning = LEARNING.lock().await;
    let learned = {
        let name = name.clone();
        let key = key.clone();
        blocking("recording a host key", move || {
            match decide(
                lookup(&files, &host, port, &key),
                &files,
                &name,
                &key,
                accept_new,
            )? {
                Decision::Known(place) => Ok(Err(place)),
                Decision::Learn(first) => learn(&first, &host, port, &key)
                    .map(|()| Ok(first.clone()))
                    .map_err(|e| {
                        SshError::HostKey(format!(
                            "cannot record new host key for {name} in {}: {e}",
                            first.display()
                        ))
                    }),
            }
        })
        .await?
    };
    match learned {
        Ok(file) => tracing::info!(
            "learned new host key for {name} ({} {}) into {}",
            key.algorithm(),
            key.fingerprint(HashAlg::Sha256),
            file.display()
        ),
        Err(place) => tracing::debug!("host key for {name} was just recorded at {place}"),
    }
    Ok(())
}

/// Append `[host]:port key` (unhashed) to `file`, creating it and its directory. One
/// `write` of the whole line (O_APPEND), after a newline if the file does not end in one.
/// Blocking: callers hold [`LEARNING`] and run it on the blocking pool.
pub fn learn(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = key.clone();
    key.set_comment("");
    let text = key.to_openssh().map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .open(file)?;
    let len = f.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        f.read_exact_at(&mut last, len - 1)?;
    }
    let nl = if last[0] == b'\n' { "" } else { "\n" };
    let line = format!("{nl}{} {}\n", lookup_name(host, port), text.trim());
    f.write_all(line.as_bytes())
}

struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    kind: &'a str,
    b64: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut it = line.split_whitespace();
    let mut first = it.next()?;
    let marker = if first.starts_with('@') {
        let m = first;
        first = it.next()?;
        Some(m)
    } else {
        None
    };
    Some(Entry {
        marker,
        hosts: first,
        kind: it.next()?,
        b64: it.next()?,
    })
}

/// True when `name` matches the comma-separated pattern list (a negated match vetoes).
fn host_matches(name: &str, patterns: &str) -> bool {
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if pattern_matches(name, neg) {
                return false;
            }
        } else if pattern_matches(name, p) {
            hit = true;
        }
    }
    hit
}

fn pattern_matches(name: &str, pattern: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        return hashed_matches(name, hashed);
    }
    glob(
        &name.to_ascii_lowercase().into_bytes(),
        &pattern.to_ascii_lowercase().into_bytes(),
    )
}

fn hashed_matches(name: &str, salt_hash: &str) -> bool {
    let Some((salt, hash)) = salt_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` wildcard match, iterative with one backtrack point (linear-ish, no recursion).
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKljagKt1SfOH3230Cjr6IrgQ+Z4ikFAx+h0maYUJuvl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKKLqUO0F+Xo6FV4SmhhjD3yw1omMqyHGDgIpcytO20A";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    fn file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("kh");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn glob_and_patterns() {
        assert!(glob(b"[127.0.0.5]:2222", b"[127.0.0.*]:2222"));
        assert!(glob(b"web01", b"web0?"));
        assert!(!glob(b"web10", b"web0?"));
        assert!(host_matches("db1", "web*,db1"));
        assert!(!host_matches("db1", "*,!db1"));
        assert!(host_matches("Db1", "db1"));
    }

    #[tokio::test]
    async fn known_changed_revoked_unknown_with_file_and_line() {
        let d = tempfile::tempdir().expect("tmp");
        let kh = file(
            &d,
            &format!("# comment\n[h]:2222\t{KEY_B}\nother {KEY_A}\nh  {KEY_A}\n"),
        );
        let files = vec![kh.clone()];
        assert_eq!(
            lookup(&files, "h", 2222, &key(KEY_A)),
            Lookup::Changed(Place {
                file: kh.clone(),
                line: 2
            })
        );
        assert_eq!(
            lookup(&files, "h", 22, &key(KEY_A)),
            Lookup::Known(Place {
                file: kh.clone(),
                line: 4
            })
        );
        assert!(matches!(
            lookup(&files, "nobody", 22, &key(KEY_A)),
            Lookup::Unknown { .. }
        ));
        let revoked = file(&d, &format!("@revoked * {KEY_A}\nh {KEY_A}\n"));
        let err = verify(&[revoked], "h", 22, &key(KEY_A), true)
            .await
            .expect_err("revoked");
        assert!(err.to_string().contains("REVOKED"), "{err}");
        assert!(err.to_string().contains("kh:1"), "{err}");
    }

    #[test]
    fn hashed_entry_matches() {
        // `|1|` salt/hash computed here the way ssh-keygen -H does.
        let salt = [7u8; 20];
        let mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)
            .expect("hmac")
            .chain_update(b"[10.0.0.1]:2200")
            .finalize()
            .into_bytes();
        let line = format!(
            "|1|{}|{} {KEY_A}\n",
            Base64::encode_string(&salt),
            Base64::encode_string(&mac)
        );
        let d = tempfile::tempdir().expect("tmp");
        let files = vec![file(&d, &line)];
        assert!(matches!(
            lookup(&files, "10.0.0.1", 2200, &key(KEY_A)),
            Lookup::Known(_)
        ));
        assert!(matches!(
            lookup(&files, "10.0.0.2", 2200, &key(KEY_A)),
            Lookup::Unknown { .. }
        ));
    }

    #[tokio::test]
    async fn accept_new_learns_into_first_file() {
        let d = tempfile::tempdir().expect("tmp");
        let kh = d.path().join("sub/known_hosts");
        let files = vec![kh.clone()];
        let err = verify(&files, "h", 2222, &key(KEY_A), false)
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("unknown"), "{err}");
        verify(&files, "h", 2222, &key(KEY_A), true)
            .await
            .expect("learned");
        assert!(matches!(
            lookup(&files, "h", 2222, &key(KEY_A)),
            Lookup::Known(_)
        ));
    }

    #[test]
    fn learn_starts_a_new_line_after_an_unterminated_one() {
        let d = tempfile::tempdir().expect("tmp");
        let kh = file(&d, &format!("a {KEY_B}"));
        learn(&kh, "h", 22, &key(KEY_A)).expect("learn");
        let text = std::fs::read_to_string(&kh).expect("read");
        assert_eq!(text, format!("a {KEY_B}\nh {KEY_A}\n"));
    }

    /// Many connections learning at once: every host once, no torn or doubled line, even
    /// when several connections reach the same `host:port` (aliases).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_learns_write_each_host_once() {
        let d = tempfile::tempdir().expect("tmp");
        let files = vec![d.path().join("known_hosts")];
        let mut tasks = Vec::new();
        for i in 0..100u16 {
            let files = files.clone();
            // 20 distinct ports, each learned by five connections started together.
            let port = 2200 + i / 5;
            tasks.push(tokio::spawn(async move {
                verify(&files, "10.0.0.1", port, &key(KEY_A), true).await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("learned");
        }
        let text = std::fs::read_to_string(&files[0]).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20, "{text}");
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 20, "each host once: {text}");
        for port in 2200..2220 {
            assert!(
                lines.contains(&format!("[10.0.0.1]:{port} {KEY_A}").as_str()),
                "{port}: {text}"
            );
        }
    }
}
