//! known_hosts checking as OpenSSH does it, because russh's helper ignores `@revoked` lines,
//! wildcards and tabs. Handles hashed `|1|salt|hash` entries, `[host]:port`, `*`/`?`
//! wildcards, `!negated` patterns, `@revoked` (always refuses) and `@cert-authority` (read by
//! [`marked`] for host certificates: see `host_cert.rs`).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::{HashAlg, PublicKey};

use super::error::UnknownKey;
use super::SshError;

/// The refusal of a changed key, as ssh words it: the line recording the old key and the
/// command that removes it.
pub fn changed_message(name: &str, key: &PublicKey, place: &Place) -> String {
    format!(
        "host key for {name} has CHANGED: server offers {} {} but known_hosts {place} \
         records another key; refusing (possible man-in-the-middle; if the host was \
         reinstalled, remove the old key: ssh-keygen -R '{name}' -f '{}')",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256),
        place.file.display()
    )
}

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

/// A marked line (`@cert-authority` or `@revoked`) that applies to a host.
#[derive(Debug, Clone)]
pub struct Marked {
    pub place: Place,
    pub key: PublicKey,
}

/// The `@cert-authority` and `@revoked` lines whose patterns match `host:port`, in file
/// order: (authorities, revoked). Blocking: reads the files.
pub fn marked(files: &[PathBuf], host: &str, port: u16) -> (Vec<Marked>, Vec<Marked>) {
    let name = lookup_name(host, port);
    let (mut cas, mut revoked) = (Vec::new(), Vec::new());
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            let list = match entry.marker {
                Some("@cert-authority") => &mut cas,
                Some("@revoked") => &mut revoked,
                _ => continue,
            };
            if !host_matches(&name, entry.hosts) {
                continue;
            }
            let place = Place {
                file: file.clone(),
                line: i + 1,
            };
            match PublicKey::from_openssh(&format!("{} {}", entry.kind, entry.b64)) {
                Ok(key) => list.push(Marked { place, key }),
                Err(_) => tracing::debug!("{place}: unparsable key, ignored"),
            }
        }
    }
    (cas, revoked)
}

/// What [`decide`] concluded for a key that may be trusted.
enum Decision {
    Known(Place),
    /// Unknown, and `accept_new`: record it in this file.
    Learn(PathBuf),
}

/// Turn a lookup into a decision, or the `HostKey` error naming the file and line.
pub(super) fn decide_plain(
    found: Lookup,
    files: &[PathBuf],
    name: &str,
    key: &PublicKey,
) -> Result<Place, SshError> {
    // A certificate's plain key is never asked about: its certificate failed a check.
    match decide(found, files, name, "", 0, key, false) {
        Ok(Decision::Known(p)) => Ok(p),
        Ok(Decision::Learn(_)) => Err(SshError::HostKey(format!("{name}: key not known"))),
        Err(SshError::UnknownKey(u)) => Err(SshError::HostKey(u.message)),
        Err(e) => Err(e),
    }
}

fn decide(
    found: Lookup,
    files: &[PathBuf],
    name: &str,
    host: &str,
    port: u16,
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
        Lookup::Changed(place) => Err(SshError::HostKey(changed_message(name, key, &place))),
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
            Err(SshError::UnknownKey(Box::new(UnknownKey {
                message: format!(
                    "host key for {name} is unknown ({alg} {fp}), {list}{others}; refusing. \
                     Verify the key and add it, or use --accept-new-host-keys"
                ),
                address: host.to_string(),
                port,
                jump: None,
                key: key.clone(),
                files: files.to_vec(),
            })))
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
                &host,
                port,
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
                &host,
                port,
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

/// Record a key an operator accepted for `host:port` in the first of `files` (under the
/// same lock as learning, after looking again: a key recorded meanwhile is not written
/// twice). A changed or revoked key found on the second look is refused as always.
pub async fn accept(
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), SshError> {
    let name = lookup_name(host, port);
    let what = format!(
        "{name} ({} {})",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256)
    );
    let _learning = LEARNING.lock().await;
    let (files, host, key) = (files.to_vec(), host.to_string(), key.clone());
    blocking("recording an accepted host key", move || {
        let Some(first) = files.first() else {
            return Err(SshError::HostKey(format!(
                "{name}: no known_hosts file to record the accepted key in"
            )));
        };
        match decide(
            lookup(&files, &host, port, &key),
            &files,
            &name,
            &host,
            port,
            &key,
            true,
        )? {
            Decision::Known(place) => {
                tracing::debug!("accepted host key for {name} already recorded at {place}");
                Ok(())
            }
            Decision::Learn(_) => learn(first, &host, port, &key).map_err(|e| {
                SshError::HostKey(format!(
                    "cannot record the accepted host key for {name} in {}: {e}",
                    first.display()
                ))
            }),
        }
    })
    .await?;
    tracing::info!("accepted host key for {what} is in known_hosts");
    Ok(())
}

/// True when `text` records some host under a hashed name (`|1|salt|hash`): ssh's
/// HashKnownHosts was on when it was written, so new lines are hashed too.
fn uses_hashed_names(text: &[u8]) -> bool {
    text.split(|b| *b == b'\n').any(|l| {
        let l = l.trim_ascii_start();
        let l = match l.strip_prefix(b"@") {
            Some(rest) => rest
                .splitn(2, |b| b.is_ascii_whitespace())
                .nth(1)
                .unwrap_or_default()
                .trim_ascii_start(),
            None => l,
        };
        l.starts_with(b"|1|")
    })
}

/// `name` hashed as ssh's HashKnownHosts writes it: `|1|base64(salt)|base64(HMAC-SHA1)`.
fn hashed_name(name: &str) -> std::io::Result<String> {
    let mut salt = [0u8; 20];
    getrandom::getrandom(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)
        .map_err(std::io::Error::other)?
        .chain_update(name.as_bytes())
        .finalize()
        .into_bytes();
    Ok(format!(
        "|1|{}|{}",
        Base64::encode_string(&salt),
        Base64::encode_string(&mac)
    ))
}

/// Append `[host]:port key` to `file`, creating it and its directory; the name is hashed
/// when the file already holds hashed names. One `write` of the whole line (O_APPEND),
/// after a newline if the file does not end in one. Blocking: callers hold [`LEARNING`] and
/// run it on the blocking pool.
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
    let mut existing = Vec::new();
    if len > 0 {
        use std::io::Read;
        (&f).read_to_end(&mut existing)?;
    }
    let name = if uses_hashed_names(&existing) {
        hashed_name(&lookup_name(host, port))?
    } else {
        lookup_name(host, port)
    };
    let line = format!("{nl}{name} {}\n", text.trim());
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
#[path = "known_hosts_tests.rs"]
mod tests;
