//! Who may act over the bus, checked by the daemon that acts (a site daemon for runs and
//! kills, a heist's owner for answers and interrupts), never taken from the request's word.
//!
//! Every request is signed by the operator's user nkey (ed25519; the seed stays in a 0600
//! file on the operator's machine, `[nats] identity`). The acting daemon looks the public key
//! up in its operators file and acts with the name and rights written there:
//!
//! ```toml
//! [[operator]]
//! name = "alice"
//! key = "UAB…"        # `crew daemon keygen FILE` prints it
//! rights = "heist"    # read < run < heist < admin
//! ```
//!
//! `run` may run commands on the site's hosts; `heist` also heist steps, answers and
//! interrupts; `admin` also kills and interrupts other operators' jobs. `read` acts on
//! nothing (reading runs is NATS's permission on the stream's subjects). A request older
//! than [`MAX_AGE`] is refused; a run request's job is claimed once, so a replay runs nothing.

use std::path::Path;

use serde::Deserialize;

use crate::proto::bus::{self as pb, Action, Signable, Signed};

/// How old (or how far ahead, clocks differ) a signed request may be.
pub const MAX_AGE_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rights {
    Read,
    Run,
    Heist,
    Admin,
}

impl Rights {
    pub fn as_str(self) -> &'static str {
        match self {
            Rights::Read => "read",
            Rights::Run => "run",
            Rights::Heist => "heist",
            Rights::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: String,
    pub key: String,
    pub rights: Rights,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    #[serde(default, rename = "operator")]
    pub list: Vec<Operator>,
}

impl Operators {
    /// The operators file; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Operators, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ops: Operators = toml::from_str(&text).map_err(|e| {
            let (line, col) = crate::textpos::line_col(&text, e.span().map_or(0, |s| s.start));
            format!(
                "{}:{line}:{col}: {}",
                path.display(),
                e.message().trim_end()
            )
        })?;
        for o in &ops.list {
            if nkeys::KeyPair::from_public_key(&o.key).is_err() || !o.key.starts_with('U') {
                return Err(format!(
                    "{}: operator {}: key {:?} is not a public user nkey (U…)",
                    path.display(),
                    o.name,
                    o.key
                ));
            }
        }
        Ok(ops)
    }

    pub fn by_key(&self, key: &str) -> Option<&Operator> {
        self.list.iter().find(|o| o.key == key)
    }
}

/// The operator's signing key from a seed file (must not be readable by others).
pub fn load_identity(path: &Path) -> anyhow::Result<nkeys::KeyPair> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("[nats] identity {}: {e}", path.display()))?;
    anyhow::ensure!(
        meta.permissions().mode() & 0o077 == 0,
        "[nats] identity {}: readable by others (chmod 600 it)",
        path.display()
    );
    let seed = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("[nats] identity {}: {e}", path.display()))?;
    nkeys::KeyPair::from_seed(seed.trim())
        .map_err(|e| anyhow::anyhow!("[nats] identity {}: not an nkey seed: {e}", path.display()))
}

/// A new operator key: the seed written to `path` (0600, never overwritten); returns the
/// public key for the sites' operators files.
pub fn keygen(path: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let kp = nkeys::KeyPair::new_user();
    let seed = kp
        .seed()
        .map_err(|e| anyhow::anyhow!("making a seed: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    f.write_all(format!("{seed}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(kp.public_key())
}

/// Sign `action` as sent by daemon `from`.
pub fn sign(
    key: &nkeys::KeyPair,
    fleet: &str,
    from: &str,
    action: Action,
) -> Result<Vec<u8>, String> {
    let body = pb::encode(&Signable {
        proto: pb::BUS_PROTO,
        fleet: fleet.to_string(),
        sent_ms: super::now_ms(),
        from: from.to_string(),
        action,
    })?;
    let sig = key.sign(&body).map_err(|e| format!("signing: {e}"))?;
    pb::encode(&Signed {
        body,
        key: key.public_key(),
        sig,
    })
}

/// Check a signed request: a known key, a good signature, this fleet, recent. Returns who
/// signed it (as the operators file names them) and what they ask.
pub fn verify<'a>(
    ops: Option<&'a Operators>,
    fleet: &str,
    payload: &[u8],
) -> Result<(&'a Operator, Signable), String> {
    let ops = ops.ok_or_else(|| {
        "this daemon has no operators file ([nats] operators in its daemon.toml): it acts for nobody"
            .to_string()
    })?;
    let s: Signed = pb::decode(payload)?;
    let op = ops
        .by_key(&s.key)
        .ok_or_else(|| format!("key {} is not in this daemon's operators file", s.key))?;
    let pk = nkeys::KeyPair::from_public_key(&s.key).map_err(|e| format!("key {}: {e}", s.key))?;
    pk.verify(&s.body, &s.sig)
        .map_err(|_| format!("bad signature for key {} ({})", s.key, op.name))?;
    let body: Signable = pb::decode(&s.body)?;
    if body.proto != pb::BUS_PROTO {
        return Err(format!(
            "bus protocol {} (this daemon speaks {})",
            body.proto,
            pb::BUS_PROTO
        ));
    }
    if body.fleet != fleet {
        return Err(format!(
            "signed for fleet {}, this is fleet {fleet}",
            body.fleet
        ));
    }
    let now = super::now_ms();
    if body.sent_ms.abs_diff(now) > MAX_AGE_MS {
        return Err(format!(
            "request sent {} s from now: too old, or the clocks differ",
            (body.sent_ms as i64 - now as i64) / 1000
        ));
    }
    Ok((op, body))
}

/// The rights an action needs.
pub fn needs(action: &Action) -> Rights {
    match action {
        Action::Run(r) if r.origin.is_heist_step() => Rights::Heist,
        Action::Run(_) => Rights::Run,
        Action::Kill { .. } => Rights::Run,
        Action::Answer { .. } | Action::Interrupt { .. } => Rights::Heist,
    }
}

/// Refuse unless `op` has the rights `action` needs.
pub fn check(op: &Operator, action: &Action) -> Result<(), String> {
    let need = needs(action);
    if op.rights >= need {
        return Ok(());
    }
    Err(format!(
        "{} may not do this here: it needs `{}`, {} has `{}`",
        op.name,
        need.as_str(),
        op.name,
        op.rights.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunOrigin;
    use crate::proto::bus::SiteRun;

    fn run(origin: RunOrigin) -> Action {
        Action::Run(SiteRun {
            job: "j".into(),
            run: "r".into(),
            site: "eu".into(),
            hosts: vec!["h".into()],
            selection: "h".into(),
            command: "true".into(),
            env: vec![],
            timeout_ms: None,
            fanout: None,
            operator: "x".into(),
            origin,
        })
    }

    #[test]
    fn signatures_and_rights_are_checked_by_the_acting_side() {
        let alice = nkeys::KeyPair::new_user();
        let mallory = nkeys::KeyPair::new_user();
        let ops = Operators {
            list: vec![Operator {
                name: "alice".into(),
                key: alice.public_key(),
                rights: Rights::Run,
            }],
        };
        let ok = sign(&alice, "f", "r1", run(RunOrigin::Command)).expect("sign");
        let (op, body) = verify(Some(&ops), "f", &ok).expect("verifies");
        assert_eq!(op.name, "alice");
        check(op, &body.action).expect("run may run");
        let step = run(RunOrigin::HeistStep {
            run: "1".into(),
            heist: "h".into(),
            step: "s".into(),
        });
        assert!(check(op, &step).is_err(), "run may not run heist steps");
        // Another fleet, an unknown key, a forged signature: refused.
        assert!(verify(Some(&ops), "g", &ok).is_err());
        let stranger = sign(&mallory, "f", "r1", run(RunOrigin::Command)).expect("sign");
        assert!(verify(Some(&ops), "f", &stranger).is_err());
        let mut forged: Signed = pb::decode(&stranger).expect("decode");
        forged.key = alice.public_key();
        let forged = pb::encode(&forged).expect("encode");
        let e = verify(Some(&ops), "f", &forged).expect_err("forged");
        assert!(e.contains("bad signature"), "{e}");
        assert!(verify(None, "f", &ok).is_err(), "no operators file: nobody");
    }
}
