//! `KexAlgorithms` as OpenSSH assembles it (`kex.c` `kex_assemble_names`): an explicit
//! list, or `+names` appended to / `-patterns` removed from / `^names` put in front of the
//! default list.

use super::pattern::match_pattern_list;

/// The client's default `KexAlgorithms` of OpenSSH 9.2p1 as Debian 12 ships it
/// (`OpenSSH_9.2p1 Debian-2+deb12u10`; `ssh -G` of an empty config prints this list). Upstream
/// 9.2p1 lacks the first name; Debian adds it from 9.9. Newer OpenSSH (10.0) puts
/// `mlkem768x25519-sha256` first.
pub const DEFAULT_KEX: &[&str] = &[
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// Every key exchange name OpenSSH knows (9.2's `ssh -Q kex` plus the ML-KEM hybrids of 10.x),
/// in OpenSSH's table order. A name outside it makes the line an error, as in `ssh`.
const ALL_KEX: &[&str] = &[
    "diffie-hellman-group1-sha1",
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group-exchange-sha256",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "mlkem768nistp256-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "mlkem768x25519-sha256",
];

/// `kex_names_valid` on the argument (after its `+`/`^`; a `-` list is not checked): every
/// name up to the first empty one must be known. `Err` names the first unknown one.
pub(super) fn validate(arg: &str) -> Result<(), String> {
    if arg.starts_with('-') {
        return Ok(());
    }
    let list = arg.strip_prefix(['+', '^']).unwrap_or(arg);
    if list.is_empty() {
        return Err(String::new());
    }
    for name in list.split(',') {
        if name.is_empty() {
            break;
        }
        if !ALL_KEX.contains(&name) {
            return Err(name.to_string());
        }
    }
    Ok(())
}

/// `kex_names_cat`: `a` then the names of `b` (up to its first empty name) not yet in it.
fn cat(a: &[String], b: &str) -> Vec<String> {
    let mut out = a.to_vec();
    for name in b.split(',') {
        if name.is_empty() {
            break;
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The list OpenSSH offers for a `KexAlgorithms` value (validated by [`validate`]).
pub(super) fn assemble(value: &str) -> Vec<String> {
    let def: Vec<String> = DEFAULT_KEX.iter().map(|s| s.to_string()).collect();
    let list: Vec<String> = if let Some(rest) = value.strip_prefix('+') {
        cat(&def, rest)
    } else if let Some(rest) = value.strip_prefix('-') {
        return def
            .into_iter()
            .filter(|n| match_pattern_list(n, rest, false) != 1)
            .collect();
    } else if let Some(rest) = value.strip_prefix('^') {
        let head: Vec<String> = rest.split(',').map(str::to_string).collect();
        cat(&head, &DEFAULT_KEX.join(","))
    } else {
        value.split(',').map(str::to_string).collect()
    };
    // Each name (a pattern, in principle) picks the known names it matches, in table order.
    let mut out: Vec<String> = Vec::new();
    for pat in &list {
        for name in ALL_KEX {
            if match_pattern_list(name, pat, false) == 1 && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_apply_to_the_default_list() {
        let plus = assemble("+diffie-hellman-group14-sha1");
        assert_eq!(plus[..DEFAULT_KEX.len()], DEFAULT_KEX[..]);
        assert_eq!(
            plus.last().map(String::as_str),
            Some("diffie-hellman-group14-sha1")
        );
        let minus = assemble("-curve25519-sha256*,ecdh-*");
        assert!(!minus
            .iter()
            .any(|k| k.starts_with("curve") || k.starts_with("ecdh")));
        assert_eq!(minus.len(), DEFAULT_KEX.len() - 5);
        let head = assemble("^ecdh-sha2-nistp256");
        assert_eq!(head[0], "ecdh-sha2-nistp256");
        assert_eq!(head.len(), DEFAULT_KEX.len(), "{head:?}");
        assert_eq!(
            assemble("ecdh-sha2-nistp384,curve25519-sha256,ecdh-sha2-nistp384"),
            ["ecdh-sha2-nistp384", "curve25519-sha256"]
        );
    }

    #[test]
    fn unknown_names_are_refused_except_in_a_removal() {
        assert_eq!(validate("curve25519-sha256,nope"), Err("nope".into()));
        assert_eq!(validate("+nope"), Err("nope".into()));
        assert_eq!(validate("-nope*"), Ok(()));
        assert_eq!(
            validate("curve25519-sha256,,nope"),
            Ok(()),
            "stops at an empty name"
        );
    }
}
