//! Where crew keeps things. `CREW_HOME` relocates everything (socket, logs, run store,
//! caches) so tests and several users never collide.

use std::io::Read;
use std::path::PathBuf;
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
        file_hash(std::path::Path::new("/proc/self/exe"))
            .or_else(|_| std::env::current_exe().and_then(|p| file_hash(&p)))
            .unwrap_or_else(|_| format!("v{}", env!("CARGO_PKG_VERSION")))
    })
}

/// The build hash in our own executable's name when it is an installed agent
/// (`…/agent-<16 hex digits>`).
fn installed_agent_hash() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let hash = exe.file_name()?.to_str()?.strip_prefix("agent-")?;
    let ok = hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| hash.to_string())
}

/// First 16 hex digits of the sha256 of a file (the build hash of an executable).
pub fn file_hash(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(&h.finalize()[..8]))
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
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
