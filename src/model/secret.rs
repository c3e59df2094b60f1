//! A secret (the sudo password) and how a job asks for privileges.
//!
//! A [`Secret`] lives only in memory: its bytes are wiped when it is dropped (every copy),
//! `Debug` never shows them, and a human-readable serializer (JSON: the run store, logs,
//! the audit log) gets `null`, so it cannot land in a file by accident. Only the binary
//! client protocol (postcard) carries the bytes, from the client that read them to the
//! daemon, which answers sudo's own prompt with them and nothing else.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// From text read from a terminal or an askpass program: without its line ending.
    pub fn from_line(mut s: String) -> Secret {
        let trimmed = s.trim_end_matches(['\r', '\n']).len();
        let bytes = s.as_bytes()[..trimmed].to_vec();
        zeroize::Zeroize::zeroize(&mut s);
        Secret::new(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.serialize_none();
        }
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        if d.is_human_readable() {
            return Err(serde::de::Error::custom(
                "a secret is never read from a human-readable format",
            ));
        }
        let v: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Ok(Secret::new(v.into_vec()))
    }
}

/// Run as another user through sudo on the host (`crew run --sudo`, `become` in a heist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sudo {
    /// The user to become (`root` by default).
    pub user: String,
    /// The answer to sudo's password prompt, when one was given (NOPASSWD needs none).
    pub password: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_never_in_json_only_on_the_binary_wire() {
        let s = Sudo {
            user: "root".into(),
            password: Some(Secret::from_line("hunter2\n".into())),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("104"), "{json}"); // not even as numbers
        let wire = postcard::to_stdvec(&s).expect("postcard");
        let back: Sudo = postcard::from_bytes(&wire).expect("decode");
        assert_eq!(
            back.password.as_ref().map(Secret::expose),
            Some(&b"hunter2"[..])
        );
    }
}
