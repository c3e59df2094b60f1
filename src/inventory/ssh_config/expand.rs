//! Values as OpenSSH 9.2 reads and expands them: `%` tokens and `${VAR}` (`misc.c`
//! `vdollar_percent_expand`), `~` (`tilde_expand`), numbers, times and ports, and numeric
//! addresses (`ssh.c` `is_addr` / `resolve_addr`).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Expand `%x` tokens from `keys` (`%%` is `%`; no `%` processing at all when `keys` is
/// `None`) and, when `dollar`, `${VAR}` from the environment. `Err` says what OpenSSH would
/// refuse: an unknown token, a lone `%` at the end, an unset or malformed variable.
pub(super) fn expand(
    s: &str,
    keys: Option<&[(char, &str)]>,
    dollar: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if dollar && c == '$' && s[i + 1..].starts_with('{') {
            let body = &s[i + 2..];
            let Some(end) = body.find('}') else {
                return Err(format!(
                    "environment variable '{body}' missing closing '}}'"
                ));
            };
            let name = &body[..end];
            if name.is_empty() {
                return Err("zero-length environment variable".into());
            }
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => return Err(format!("env var ${{{name}}} has no value")),
            }
            // Skip `{`, the name and `}`.
            for _ in 0..name.chars().count() + 2 {
                chars.next();
            }
            continue;
        }
        let Some(keys) = keys.filter(|_| c == '%') else {
            out.push(c);
            continue;
        };
        match chars.next() {
            None => return Err("invalid format: `%` at the end".into()),
            Some((_, '%')) => out.push('%'),
            Some((_, k)) => match keys.iter().find(|(key, _)| *key == k) {
                Some((_, v)) => out.push_str(v),
                None => return Err(format!("unknown key %{k}")),
            },
        }
    }
    Ok(out)
}

/// `%` tokens only (`percent_expand`).
pub(super) fn percent_expand(s: &str, keys: &[(char, &str)]) -> Result<String, String> {
    expand(s, Some(keys), false)
}

/// `%` tokens and `${VAR}` (`percent_dollar_expand`).
pub(super) fn percent_dollar_expand(s: &str, keys: &[(char, &str)]) -> Result<String, String> {
    expand(s, Some(keys), true)
}

/// `${VAR}` only (`dollar_expand`).
pub(super) fn dollar_expand(s: &str) -> Result<String, String> {
    expand(s, None, true)
}

/// `tilde_expand`: `~` and `~/path` against `home`, `~user/path` against that user's home
/// from the password database. `Err`: no such user.
pub(super) fn tilde_expand(s: &str, home: &std::path::Path) -> Result<String, String> {
    let Some(after) = s.strip_prefix('~') else {
        return Ok(s.to_string());
    };
    let (dir, path) = if after.is_empty() || after.starts_with('/') {
        (
            home.to_string_lossy().into_owned(),
            after.trim_start_matches('/'),
        )
    } else {
        let (user, path) = match after.find('/') {
            Some(p) => (&after[..p], after[p + 1..].trim_start_matches('/')),
            None => (after, ""),
        };
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => (u.dir.to_string_lossy().into_owned(), path),
            _ => return Err(format!("no such user {user}")),
        }
    };
    let slash = if dir.ends_with('/') { "" } else { "/" };
    Ok(format!("{dir}{slash}{path}"))
}

/// OpenBSD `strtonum(s, min, max)` on top of `strtoll` base 10 (leading blanks and a sign
/// allowed, nothing after the digits).
pub(super) fn strtonum(s: &str, min: i64, max: i64) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    let v = if neg { -v } else { v };
    (min..=max).contains(&v).then_some(v)
}

/// `a2port`: 0–65535 as a number, else a service name from `/etc/services`; `None` when
/// neither (OpenSSH then refuses anything `<= 0`, so callers treat 0 as bad too).
pub(super) fn a2port(s: &str) -> Option<u16> {
    if let Some(v) = strtonum(s, 0, 65535) {
        return u16::try_from(v).ok();
    }
    service_port(s)
}

/// The TCP port of a service name in `/etc/services` (what `getservbyname(name, "tcp")`
/// reads on a system without NSS services plugins).
fn service_port(name: &str) -> Option<u16> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(svc), Some(port_proto)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        if proto == "tcp" && (svc == name || f.any(|alias| alias == name)) {
            return port.parse().ok();
        }
    }
    None
}

/// `convtime`: `90`, `90s`, `2m`, `1h30m`, `1w`… in seconds; `None` when malformed or
/// beyond `INT_MAX`.
pub(super) fn convtime(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        // strtol: leading whitespace, an optional sign, then digits.
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c') {
            i += 1;
        }
        let neg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let d0 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d0 {
            return None;
        }
        let secs: i64 = s[d0..i].parse().ok()?;
        if neg && secs != 0 {
            return None;
        }
        let mult: i64 = match b.get(i) {
            None => 1,
            Some(c) => {
                i += 1;
                match c {
                    b's' | b'S' => 1,
                    b'm' | b'M' => 60,
                    b'h' | b'H' => 3600,
                    b'd' | b'D' => 86_400,
                    b'w' | b'W' => 604_800,
                    _ => return None,
                }
            }
        };
        let max = i64::from(i32::MAX);
        if secs > max / mult {
            return None;
        }
        total += secs * mult;
        if total > max {
            return None;
        }
    }
    u32::try_from(total).ok()
}

/// glibc `inet_aton` as `getaddrinfo(AI_NUMERICHOST)` uses it: `a`, `a.b`, `a.b.c`,
/// `a.b.c.d`, each part decimal, octal (`0…`) or hex (`0x…`), the last part filling the
/// remaining bytes; nothing may follow.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut parts: Vec<u32> = Vec::with_capacity(4);
    let mut i = 0;
    loop {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        // strtoul base 0.
        let (radix, mut j) = if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
            (16, i + 2)
        } else if b[i] == b'0' {
            (8, i)
        } else {
            (10, i)
        };
        let d0 = j;
        while j < b.len() && (b[j] as char).is_digit(radix) {
            j += 1;
        }
        let val: u64 = if j == d0 {
            // "0x" with no hex digit: strtoul parses the "0" and stops at the x.
            j = i + 1;
            0
        } else {
            u64::from_str_radix(&s[d0..j], radix).ok()?
        };
        if val > 0xffff_ffff {
            return None;
        }
        i = j;
        if b.get(i) == Some(&b'.') {
            if parts.len() > 2 || val > 0xff {
                return None;
            }
            parts.push(val as u32);
            i += 1;
        } else {
            parts.push(val as u32);
            break;
        }
    }
    if i != b.len() {
        return None;
    }
    let last = *parts.last()?;
    let max = [0xffff_ffffu32, 0xff_ffff, 0xffff, 0xff][parts.len() - 1];
    if last > max {
        return None;
    }
    let mut word: u32 = 0;
    for (k, p) in parts[..parts.len() - 1].iter().enumerate() {
        word |= p << (24 - 8 * k as u32);
    }
    Some(Ipv4Addr::from(word | last))
}

/// glibc `inet_ntop` for IPv6: the longest run (two or more) of zero groups as `::`, and
/// the last 32 bits dotted for IPv4-compatible and IPv4-mapped addresses.
fn ntop6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    let (mut best, mut cur): ((i32, usize), (i32, usize)) = ((-1, 0), (-1, 0));
    for (i, &x) in w.iter().enumerate() {
        if x == 0 {
            if cur.0 == -1 {
                cur = (i as i32, 1);
            } else {
                cur.1 += 1;
            }
        } else if cur.0 != -1 {
            if best.0 == -1 || cur.1 > best.1 {
                best = cur;
            }
            cur.0 = -1;
        }
    }
    if cur.0 != -1 && (best.0 == -1 || cur.1 > best.1) {
        best = cur;
    }
    if best.0 != -1 && best.1 < 2 {
        best.0 = -1;
    }
    let mut s = String::new();
    let in_best =
        |i: usize| best.0 != -1 && i as i32 >= best.0 && (i as i32) < best.0 + best.1 as i32;
    for i in 0..8 {
        if in_best(i) {
            if i as i32 == best.0 {
                s.push(':');
            }
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best.0 == 0 && (best.1 == 6 || (best.1 == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            s.push_str(&format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
            return s;
        }
        s.push_str(&format!("{:x}", w[i]));
    }
    if best.0 != -1 && best.0 as usize + best.1 == 8 {
        s.push(':');
    }
    s
}

/// `is_addr_fast`: looks like an address (a `%` or `:`, or only digits and dots).
pub(super) fn is_addr_fast(s: &str) -> bool {
    s.contains('%') || s.contains(':') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The canonical text of a numeric address (`getaddrinfo(AI_NUMERICHOST)` then
/// `getnameinfo(NI_NUMERICHOST)`), or `None` when `s` is not one. Scoped IPv6 addresses
/// (`fe80::1%eth0`) are left to the caller (`None`).
pub(super) fn canonical_addr(s: &str) -> Option<String> {
    if let Some(v4) = inet_aton(s) {
        return Some(v4.to_string());
    }
    s.parse::<Ipv6Addr>().ok().map(|a| ntop6(&a))
}

/// `is_addr`: [`is_addr_fast`] or parses as one numeric address.
pub(super) fn is_addr(s: &str) -> bool {
    is_addr_fast(s) || canonical_addr(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_tokens() {
        let keys = [('h', "host"), ('p', "22"), ('r', "me")];
        assert_eq!(
            percent_expand("%h-%p-%r-%%", &keys).as_deref(),
            Ok("host-22-me-%")
        );
        assert!(percent_expand("%x", &keys)
            .expect_err("unknown token")
            .contains("%x"));
        assert!(percent_expand("a%", &keys).is_err());
        assert_eq!(
            percent_expand("${X}", &keys).as_deref(),
            Ok("${X}"),
            "no $ expansion"
        );
        assert_eq!(
            dollar_expand("100%x").as_deref(),
            Ok("100%x"),
            "no % expansion"
        );
    }

    #[test]
    fn dollar_variables() {
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(
            percent_dollar_expand("${PATH}/%%", &[]),
            Ok(format!("{path}/%"))
        );
        assert!(dollar_expand("${CREW_SURELY_UNSET_VAR_X}").is_err());
        assert!(dollar_expand("${}").is_err());
        assert!(dollar_expand("${PATH").is_err());
        assert_eq!(dollar_expand("$PATH").as_deref(), Ok("$PATH"));
    }

    #[test]
    fn tilde() {
        let h = std::path::Path::new("/home/u");
        assert_eq!(
            tilde_expand("~/.ssh/id", h).as_deref(),
            Ok("/home/u/.ssh/id")
        );
        assert_eq!(tilde_expand("~//x", h).as_deref(), Ok("/home/u/x"));
        assert_eq!(tilde_expand("~", h).as_deref(), Ok("/home/u/"));
        assert_eq!(tilde_expand("/a/~", h).as_deref(), Ok("/a/~"));
        assert_eq!(tilde_expand("~root/x", h).as_deref(), Ok("/root/x"));
        assert!(tilde_expand("~no_such_user_crew/x", h).is_err());
    }

    #[test]
    fn numbers_times_ports() {
        assert_eq!(convtime("90"), Some(90));
        assert_eq!(convtime("1h30m"), Some(5400));
        assert_eq!(convtime("2W"), Some(1_209_600));
        assert_eq!(convtime("5x"), None);
        assert_eq!(convtime(""), None);
        assert_eq!(convtime("-1"), None);
        assert_eq!(convtime("99999999999"), None);
        assert_eq!(a2port("2222"), Some(2222));
        assert_eq!(a2port("70000"), None);
        assert_eq!(strtonum("+5", 0, 10), Some(5));
        assert_eq!(strtonum("5a", 0, 10), None);
    }

    #[test]
    fn addresses() {
        assert_eq!(canonical_addr("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(canonical_addr("0x7f.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(canonical_addr("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(canonical_addr("1.2.3.256"), None);
        assert_eq!(canonical_addr("08.1.1.1"), None);
        assert_eq!(canonical_addr("FE80:0:0:0::1").as_deref(), Some("fe80::1"));
        assert_eq!(
            canonical_addr("::ffff:1.2.3.4").as_deref(),
            Some("::ffff:1.2.3.4")
        );
        assert_eq!(canonical_addr("::1.2.3.4").as_deref(), Some("::1.2.3.4"));
        assert_eq!(
            canonical_addr("1:0:0:2:0:0:0:3").as_deref(),
            Some("1:0:0:2::3")
        );
        assert_eq!(canonical_addr("app.prod"), None);
        assert!(is_addr("10.0.0.999"), "looks like one: not lowercased");
        assert!(!is_addr("web1"));
    }
}
