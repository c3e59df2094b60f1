//! Webhooks: `POST /hooks/NAME` starts a heist for a monitoring system (mastermind's case).
//!
//! Hooks live in `hooks.toml` beside the inventory (next to its `heists/` directory), or the
//! file `hooks = "…"` in daemon.toml names:
//!
//! ```toml
//! [hook.restart-web]
//! heist = "restart"                 # the heist to start
//! profile = "production"            # optional
//! vars = { reason = "alert" }       # fixed vars (a request cannot change them)
//! allow_vars = ["service"]          # vars taken from the request's JSON body (strings, numbers, booleans)
//! secret_file = "restart-web.secret" # or secret = "…" (at least 16 bytes); never logged
//! concurrency = "skip"              # or "queue": what to do while a run of this hook is in flight
//! ```
//!
//! A request carries `X-Crew-Timestamp: <unix seconds>` and
//! `X-Crew-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (GitHub's
//! header form; the timestamp is inside the signed material, as Stripe and Slack do it).
//! Replays are refused two ways: a timestamp more than [`WINDOW`] from the daemon's clock is
//! refused, and a signature already seen within the window is refused (a nonce cache that only
//! needs to remember one window's worth).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// How far a request's timestamp may be from the daemon's clock, either way.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Requests of one `queue` hook waiting for the one in flight.
pub const QUEUE_MAX: usize = 16;
/// Shortest secret accepted.
const SECRET_MIN: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Refuse (409) while a run of this hook is in flight.
    #[default]
    Skip,
    /// Start it once the one in flight is over.
    Queue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    heist: String,
    profile: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    allow_vars: Vec<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    concurrency: Concurrency,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    hook: BTreeMap<String, toml::Spanned<RawHook>>,
}

/// One hook, its secret read.
#[derive(Clone)]
pub struct Hook {
    pub name: String,
    pub heist: String,
    pub profile: Option<String>,
    pub vars: BTreeMap<String, String>,
    pub allow_vars: Vec<String>,
    pub concurrency: Concurrency,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("heist", &self.heist)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// Read the hooks file; a missing file means no hooks. Errors say file:line:col.
pub fn load(path: &Path) -> Result<BTreeMap<String, Hook>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let at = |offset: usize, msg: &str| {
        let (line, col) = crate::textpos::line_col(&text, offset);
        format!("{}:{line}:{col}: {msg}", path.display())
    };
    let raw: RawFile = toml::from_str(&text)
        .map_err(|e| at(e.span().map_or(0, |s| s.start), e.message().trim_end()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, spanned) in raw.hook {
        let start = spanned.span().start;
        let h = spanned.into_inner();
        let secret = match (&h.secret, &h.secret_file) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(f)) => {
                let p = dir.join(f);
                let s = std::fs::read_to_string(&p).map_err(|e| {
                    at(
                        start,
                        &format!("hook `{name}`: secret_file {}: {e}", p.display()),
                    )
                })?;
                s.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
            }
            _ => {
                return Err(at(
                    start,
                    &format!("hook `{name}`: give `secret` or `secret_file` (one of them)"),
                ))
            }
        };
        if secret.len() < SECRET_MIN {
            return Err(at(
                start,
                &format!("hook `{name}`: the secret is shorter than {SECRET_MIN} bytes"),
            ));
        }
        if let Some(k) = h.allow_vars.iter().find(|k| h.vars.contains_key(*k)) {
            return Err(at(
                start,
                &format!("hook `{name}`: `{k}` is both fixed (vars) and allowed from the request"),
            ));
        }
        out.insert(
            name.clone(),
            Hook {
                name,
                heist: h.heist,
                profile: h.profile,
                vars: h.vars,
                allow_vars: h.allow_vars,
                concurrency: h.concurrency,
                secret,
            },
        );
    }
    Ok(out)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or malformed headers, or a signature that does not match (401).
    Unsigned(String),
    /// Outside the window, or seen before (409).
    Replayed(String),
}

/// The hooks' shared state: signatures seen, and each hook's run slot.
#[derive(Default)]
pub struct State {
    seen: Mutex<HashMap<Vec<u8>, SystemTime>>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    waiting: Mutex<HashMap<String, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hook {
    /// Check a request's signature and freshness (and remember it, so it is not taken twice).
    pub fn verify(
        &self,
        state: &State,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let ts = timestamp.ok_or_else(|| Refusal::Unsigned("no X-Crew-Timestamp header".into()))?;
        let sig =
            signature.ok_or_else(|| Refusal::Unsigned("no X-Crew-Signature header".into()))?;
        let tag = sig
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h.trim()).ok())
            .ok_or_else(|| Refusal::Unsigned("X-Crew-Signature is not `sha256=<hex>`".into()))?;
        let mut msg = Vec::with_capacity(ts.len() + 1 + body.len());
        msg.extend_from_slice(ts.as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(body);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        // Constant-time comparison inside ring.
        ring::hmac::verify(&key, &msg, &tag).map_err(|_| {
            Refusal::Unsigned("the signature does not match the body and timestamp".into())
        })?;
        let secs: u64 = ts
            .trim()
            .parse()
            .map_err(|_| Refusal::Unsigned("X-Crew-Timestamp is not unix seconds".into()))?;
        let when = UNIX_EPOCH + Duration::from_secs(secs);
        let skew = now
            .duration_since(when)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or_default();
        if skew > WINDOW {
            return Err(Refusal::Replayed(format!(
                "the timestamp is {}s from the daemon's clock (window {}s)",
                skew.as_secs(),
                WINDOW.as_secs()
            )));
        }
        let mut seen = lock(&state.seen);
        seen.retain(|_, t| now.duration_since(*t).unwrap_or_default() <= WINDOW * 2);
        if seen.contains_key(&tag) {
            return Err(Refusal::Replayed(
                "this request was already taken (replay)".into(),
            ));
        }
        seen.insert(tag, now);
        Ok(())
    }

    /// The heist's vars: the fixed ones, then the allowed ones found in the body.
    pub fn vars(&self, body: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for k in &self.allow_vars {
            let v = match body.get(k) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                Some(_) => return Err(format!("`{k}` must be a string, number or boolean")),
            };
            out.push((k.clone(), v));
        }
        Ok(out)
    }
}

impl State {
    /// This hook's run slot (one run at a time).
    pub fn slot(&self, hook: &str) -> Arc<tokio::sync::Semaphore> {
        lock(&self.slots)
            .entry(hook.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
            .clone()
    }

    /// Count a queued request; false when the queue is full.
    pub fn enqueue(&self, hook: &str) -> bool {
        let mut w = lock(&self.waiting);
        let n = w.entry(hook.to_string()).or_default();
        if *n >= QUEUE_MAX {
            return false;
        }
        *n += 1;
        true
    }

    pub fn dequeue(&self, hook: &str) {
        if let Some(n) = lock(&self.waiting).get_mut(hook) {
            *n = n.saturating_sub(1);
        }
    }
}

/// `X-Crew-Signature` for a body (what a sender computes; tests and the README use it).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, &msg).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_read_with_positions_and_requests_are_signed_and_fresh() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("hooks.toml");
        std::fs::write(tmp.path().join("s.secret"), "0123456789abcdef0123\n").expect("secret");
        std::fs::write(
            &p,
            "[hook.a]\nheist = \"hello\"\nsecret_file = \"s.secret\"\nallow_vars = [\"who\"]\nvars = { x = \"1\" }\n\n[hook.b]\nheist = \"hello\"\nsecret = \"short\"\n",
        )
        .expect("write");
        let e = load(&p).expect_err("short secret");
        assert!(e.contains("hooks.toml:7:1") && e.contains("shorter"), "{e}");
        std::fs::write(&p, "[hook.a]\nheist = \"hello\"\nsecrte = 1\n").expect("write");
        let e = load(&p).expect_err("unknown key");
        assert!(e.contains("hooks.toml:3:1") && e.contains("secrte"), "{e}");
        std::fs::write(
            &p,
            "[hook.a]\nheist = \"hello\"\nsecret_file = \"s.secret\"\nallow_vars = [\"who\"]\nvars = { x = \"1\" }\nconcurrency = \"queue\"\n",
        )
        .expect("write");
        let hooks = load(&p).expect("loads");
        let h = &hooks["a"];
        assert_eq!(h.concurrency, Concurrency::Queue);
        assert!(
            !format!("{h:?}").contains("0123456789"),
            "secret not printed"
        );
        let state = State::default();
        let now = SystemTime::now();
        let ts = now.duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let body = br#"{"who":"nagios","x":"evil"}"#;
        let sig = sign(b"0123456789abcdef0123", ts, body);
        let tss = ts.to_string();
        let bad = sign(b"0123456789abcdef0124", ts, body);
        assert!(matches!(
            h.verify(&state, Some(&tss), Some(&bad), body, now),
            Err(Refusal::Unsigned(_))
        ));
        assert!(matches!(
            h.verify(&state, Some(&tss), Some(&sig), b"{}", now),
            Err(Refusal::Unsigned(_))
        ));
        assert_eq!(h.verify(&state, Some(&tss), Some(&sig), body, now), Ok(()));
        assert!(matches!(
            h.verify(&state, Some(&tss), Some(&sig), body, now),
            Err(Refusal::Replayed(_))
        ));
        let old = (ts - 301).to_string();
        let sig_old = sign(b"0123456789abcdef0123", ts - 301, body);
        assert!(matches!(
            h.verify(&state, Some(&old), Some(&sig_old), body, now),
            Err(Refusal::Replayed(_))
        ));
        let v: serde_json::Value = serde_json::from_slice(body).expect("json");
        assert_eq!(
            h.vars(&v).expect("vars"),
            vec![("x".into(), "1".into()), ("who".into(), "nagios".into())]
        );
    }
}
