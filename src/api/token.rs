//! API tokens: `crew token create NAME --scope S` prints a token once; only its salted hash
//! is kept, in `CREW_HOME/api/tokens.json` (0600, directory 0700).
//!
//! A token is 32 random bytes (256 bits, from the OS) written as `crew_` + 64 hex digits. It
//! is stored as SHA-256(salt ‖ token) with a 16-byte random salt per token. A slow password
//! hash (argon2) protects guessable secrets; these are not guessable, so it would only add
//! tens of milliseconds to every request. The salt keeps two stores (or two tokens) from
//! sharing a hash. A presented token is hashed with every entry's salt and compared in
//! constant time (`subtle`), every entry, with no early exit.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::daemon::server::Scope;

/// One stored token (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub scope: String,
    /// Hex.
    pub salt: String,
    /// Hex SHA-256(salt ‖ token).
    pub hash: String,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    tokens: Vec<Entry>,
}

/// The token store of one daemon home.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: PathBuf,
}

/// A token that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub scope: Scope,
}

fn random(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(b)
}

fn digest(salt: &[u8], token: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(token);
    h.finalize().to_vec()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Tokens {
    /// The store under `dir` (`CREW_HOME/api`).
    pub fn at(dir: &Path) -> Tokens {
        Tokens {
            path: dir.join("tokens.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> anyhow::Result<File> {
        match std::fs::read(&self.path) {
            Ok(t) => serde_json::from_slice(&t)
                .with_context(|| format!("{}: not a token store", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, f: &File) -> anyhow::Result<()> {
        let dir = self.path.parent().context("token store has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut out = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let text = serde_json::to_vec_pretty(f).context("encoding tokens")?;
        out.write_all(&text)
            .and_then(|_| out.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("moving {} into place", self.path.display()))
    }

    /// Serialise changes between concurrent `crew token` commands.
    fn lock(&self) -> anyhow::Result<std::fs::File> {
        let dir = self.path.parent().context("token store has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = self.path.with_extension("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        f.lock()
            .with_context(|| format!("locking {}", p.display()))?;
        Ok(f)
    }

    /// Make a token; returns its secret (shown once, never stored).
    pub fn create(&self, name: &str, scope: Scope) -> anyhow::Result<String> {
        if !valid_name(name) {
            bail!("token name `{name}`: use 1-64 letters, digits, `-`, `_` or `.`");
        }
        let _lock = self.lock()?;
        let mut f = self.read()?;
        if f.tokens.iter().any(|t| t.name == name) {
            bail!("a token named `{name}` exists (`crew token revoke {name}` first)");
        }
        let secret = format!("crew_{}", hex::encode(random(32)?));
        let salt = random(16)?;
        f.tokens.push(Entry {
            name: name.to_string(),
            scope: scope.as_str().to_string(),
            salt: hex::encode(&salt),
            hash: hex::encode(digest(&salt, secret.as_bytes())),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
        self.write(&f)?;
        Ok(secret)
    }

    pub fn list(&self) -> anyhow::Result<Vec<Entry>> {
        Ok(self.read()?.tokens)
    }

    /// Remove a token; false when there is none of that name.
    pub fn revoke(&self, name: &str) -> anyhow::Result<bool> {
        let _lock = self.lock()?;
        let mut f = self.read()?;
        let before = f.tokens.len();
        f.tokens.retain(|t| t.name != name);
        if f.tokens.len() == before {
            return Ok(false);
        }
        self.write(&f)?;
        Ok(true)
    }

    /// Who holds this token, if anyone. Read from the file each time: a revoked token stops
    /// working at once.
    pub fn check(&self, presented: &str) -> anyhow::Result<Option<Holder>> {
        let f = self.read()?;
        let mut found: Option<Holder> = None;
        for t in &f.tokens {
            let (Ok(salt), Ok(want)) = (hex::decode(&t.salt), hex::decode(&t.hash)) else {
                continue;
            };
            let got = digest(&salt, presented.as_bytes());
            // Every entry is hashed and compared, whatever matched before.
            let same: bool = got.ct_eq(&want).into();
            if same && found.is_none() {
                if let Some(scope) = Scope::parse(&t.scope) {
                    found = Some(Holder {
                        name: t.name.clone(),
                        scope,
                    });
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_shown_once_stored_hashed_checked_and_revoked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Tokens::at(&tmp.path().join("api"));
        let secret = store.create("ci", Scope::Heist).expect("create");
        let other = store.create("viewer", Scope::Read).expect("create");
        assert!(secret.starts_with("crew_") && secret.len() == 5 + 64);
        let text = std::fs::read_to_string(store.path()).expect("store");
        assert!(!text.contains(&secret[5..]), "the secret is not stored");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            store.check(&secret).expect("check"),
            Some(Holder {
                name: "ci".into(),
                scope: Scope::Heist
            })
        );
        assert_eq!(
            store.check(&other).expect("check").map(|h| h.scope),
            Some(Scope::Read)
        );
        assert_eq!(store.check("crew_nope").expect("check"), None);
        assert!(store.create("ci", Scope::Read).is_err(), "names are unique");
        assert!(store.create("bad name", Scope::Read).is_err());
        assert!(store.revoke("ci").expect("revoke"));
        assert_eq!(store.check(&secret).expect("check"), None);
        assert!(!store.revoke("ci").expect("revoke twice"));
    }
}
