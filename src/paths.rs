//! Where crew keeps things. `CREW_HOME` relocates everything (socket, logs, run store,
//! caches) so tests and several users never collide.

use std::io::{Read, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Root of crew's per-user state: `$CREW_HOME`, else `$XDG_STATE_HOME/crew` (or
/// `~/.local/state/crew`).
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("CREW_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("crew")
}

/// The daemon's Unix socket.
pub fn socket() -> PathBuf {
    home().join("daemon.sock")
}

/// Log files (`daemon.log`, `console.log`, `client.log`).
pub fn log_dir() -> PathBuf {
    home().join("logs")
}

/// The run store: one directory per run.
pub fn runs_dir() -> PathBuf {
    home().join("runs")
}

/// JSON-lines audit log.
pub fn audit_log() -> PathBuf {
    home().join("audit.jsonl")
}

/// Console command history.
pub fn history_file() -> PathBuf {
    home().join("history")
}

/// The user's config dir for crew (`~/.config/crew`): hosts.toml, keymap.toml, theme, heists/.
pub fn config_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CREW_CONFIG_DIR").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::config_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(std::env::temp_dir)
        .join("crew")
}

/// Hash identifying this exact executable (first 16 hex digits of its sha256). The agent
/// installed on hosts is named after it, and a daemon of another build is replaced.
pub fn build_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        // An installed agent is `agent-<build>`, renamed into place only after its sha256 was
        // verified (and never renamed over): its name is its hash. Hashing 15+ MB at every
        // agent start costs ~10 ms of CPU per host, the largest part of a cold start.
        if let Some(h) = installed_agent_hash() {
            return h;
        }
        // /proc/self/exe names the inode we run from, even when an upload has since renamed
        // another file over our path (several hosts sharing one home, e.g. over NFS).
        // Hashing it costs ~10 ms at every `crew run`: the result is cached, keyed by the
        // inode's identity and mtime.
        cached_file_hash(&build_hash_cache(), Path::new("/proc/self/exe"))
            .or_else(|_| std::env::current_exe().and_then(|p| file_hash(&p)))
            .unwrap_or_else(|_| format!("v{}", env!("CARGO_PKG_VERSION")))
    })
}

/// The build hash in our own executable's name when it is an installed agent
/// (`…/agent-<16 hex digits>`).
fn installed_agent_hash() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let hash = exe.file_name()?.to_str()?.strip_prefix("agent-")?;
    is_hash(hash).then(|| hash.to_string())
}

/// Where [`build_hash`] keeps the hash of the executable it last hashed.
fn build_hash_cache() -> PathBuf {
    home().join("cache").join("build-hash")
}

/// What identifies a file's content without reading it: device, inode, size and mtime (ns).
/// An executable that is running cannot be written in place (ETXTBSY); a new build is a new
/// inode, or at least a new mtime.
fn file_key(path: &Path) -> std::io::Result<String> {
    let m = std::fs::metadata(path)?;
    let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Ok(format!("{} {} {} {mtime_ns}", m.dev(), m.ino(), m.size()))
}

fn is_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// [`file_hash`] of `path`, through the one-line cache file `cache` (`<key> <hash>`): a
/// missing, corrupt or stale cache is recomputed and replaced (tmp + rename); failing to
/// write it only costs the next caller a recompute.
pub fn cached_file_hash(cache: &Path, path: &Path) -> std::io::Result<String> {
    let key = file_key(path)?;
    if let Ok(text) = std::fs::read_to_string(cache) {
        let cached = text
            .trim_end()
            .rsplit_once(' ')
            .filter(|(k, h)| *k == key && is_hash(h));
        if let Some((_, h)) = cached {
            return Ok(h.to_string());
        }
    }
    let hash = file_hash(path)?;
    // Only a hash of content that did not change while it was read is worth keeping.
    if file_key(path).ok().as_deref() == Some(key.as_str()) {
        if let Err(e) = write_cache(cache, &format!("{key} {hash}\n")) {
            tracing::debug!("build hash cache {}: {e}", cache.display());
        }
    }
    Ok(hash)
}

fn write_cache(cache: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = cache.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut name = cache.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(name);
    let r = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, cache));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// First 16 hex digits of the sha256 of a file (the build hash of an executable).
pub fn file_hash(path: &Path) -> std::io::Result<String> {
    let (_, sha256) = sha256_file(path)?;
    Ok(sha256[..16].to_string())
}

/// Size and full sha256 (lowercase hex) of a file, read in chunks (never held whole). The
/// one routine that hashes executables: [`file_hash`] and the agent installer use it.
/// Blocking and CPU-bound: async callers run it on the blocking pool.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Expand a leading `~/` to the home directory.
pub fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = dirs::home_dir() {
            return h.join(rest);
        }
    } else if p == "~" {
        if let Some(h) = dirs::home_dir() {
            return h;
        }
    }
    PathBuf::from(p)
}

/// The operator's login name, for the audit log and as the default SSH user: `$USER`,
/// `$LOGNAME`, else the passwd entry of our uid (containers often set neither variable).
pub fn whoami() -> String {
    let uid = unsafe_free_uid();
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| passwd_name(uid))
        .unwrap_or_else(|| format!("uid{uid}"))
}

fn passwd_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_string())
    })
}

fn unsafe_free_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_file_gives_size_and_full_hash_and_file_hash_its_prefix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join("abc");
        std::fs::write(&f, b"abc").expect("write");
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&f).expect("hash"), (3, sha.to_string()));
        assert_eq!(file_hash(&f).expect("hash"), sha[..16]);
    }

    #[test]
    fn build_hash_cache_hits_misses_on_a_new_key_and_survives_corruption() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let exe = tmp.path().join("exe");
        let cache = tmp.path().join("cache/build-hash");
        std::fs::write(&exe, b"build one").expect("exe");
        let one = file_hash(&exe).expect("hash");
        // Miss: computed and cached.
        assert_eq!(cached_file_hash(&cache, &exe).expect("hash"), one);
        let text = std::fs::read_to_string(&cache).expect("cache written");
        assert!(text.ends_with(&format!(" {one}\n")), "{text}");
        // Hit: the cache is believed while the key matches (a planted hash proves it is read).
        let planted = text.replace(&one, "0123456789abcdef");
        std::fs::write(&cache, &planted).expect("plant");
        assert_eq!(
            cached_file_hash(&cache, &exe).expect("hash"),
            "0123456789abcdef"
        );
        // A new build (new inode, size and mtime): recomputed and the cache replaced.
        let new = tmp.path().join("exe.new");
        std::fs::write(&new, b"build number two").expect("exe");
        std::fs::rename(&new, &exe).expect("rename");
        let two = file_hash(&exe).expect("hash");
        assert_ne!(one, two);
        assert_eq!(cached_file_hash(&cache, &exe).expect("hash"), two);
        assert!(std::fs::read_to_string(&cache)
            .expect("cache")
            .ends_with(&format!(" {two}\n")));
        // Corrupt: garbage, a bad hash under the right key, an empty file: recomputed.
        let current = std::fs::read_to_string(&cache).expect("cache");
        for junk in ["garbage", &current.replace(&two, "NOTHEX!!NOTHEX!!"), ""] {
            std::fs::write(&cache, junk).expect("corrupt");
            assert_eq!(
                cached_file_hash(&cache, &exe).expect("hash"),
                two,
                "{junk:?}"
            );
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("cache"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["build-hash"]);
    }
}
