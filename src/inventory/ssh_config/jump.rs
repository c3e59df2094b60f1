//! `ProxyJump` as OpenSSH parses it (`readconf.c` `parse_jump` as of 10.3, which Debian's
//! 9.2p1-2+deb12u10 backports; `misc.c` `parse_user_host_port` and `parse_uri`) and prints it
//! (`ssh -G`).

use super::expand::a2port;

/// What one `ProxyJump` line sets when it applies.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Jump {
    /// `ProxyJump none`: no jump host (and later ProxyJump/ProxyCommand lines are ignored).
    None,
    /// The last hop (the one that reaches the target), and the hops before it as written.
    Via {
        user: Option<String>,
        host: String,
        /// `-1` when not given.
        port: i32,
        extra: Option<String>,
    },
}

impl Jump {
    /// The value as `ssh -G` prints it: `[extra,][user@]host[:port]`, a numeric host in
    /// brackets.
    pub fn display(&self) -> Option<String> {
        let Jump::Via {
            user,
            host,
            port,
            extra,
        } = self
        else {
            return None;
        };
        let numeric = host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let mut s = String::new();
        if let Some(e) = extra {
            s.push_str(e);
            s.push(',');
        }
        if let Some(u) = user {
            s.push_str(u);
            s.push('@');
        }
        if numeric {
            s.push('[');
        }
        s.push_str(host);
        if numeric {
            s.push(']');
        }
        if *port > 0 {
            s.push_str(&format!(":{port}"));
        }
        Some(s)
    }
}

/// The value `ProxyJump` sets, after checking every hop's syntax. `s` is the rest of the
/// line as written: OpenSSH compares it, comment and all, with `none`, and cuts a `#`
/// comment before reading the hops.
pub(super) fn parse_jump(s: &str) -> Result<Jump, ()> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Jump::None);
    }
    let cut = s.split('#').next().unwrap_or("").trim_end();
    let mut hops = cut.rsplit(',');
    // The last hop is parsed for its parts, the earlier ones only checked.
    let last = hops.next().unwrap_or("");
    let (user, host, port) = user_host_port(last)?;
    for hop in hops {
        user_host_port(hop)?;
    }
    let extra = cut.rfind(',').map(|p| cut[..p].to_string());
    Ok(Jump::Via {
        user,
        host,
        port,
        extra,
    })
}

/// Every hop of a `ProxyJump` value, first to last; `None` for `none`.
pub(super) fn hops(s: &str) -> Result<Option<Vec<super::Hop>>, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let cut = s.split('#').next().unwrap_or("").trim();
    let mut out = Vec::new();
    for hop in cut.split(',') {
        let hop = hop.trim();
        let (user, host, port) =
            user_host_port(hop).map_err(|()| format!("bad jump host {hop:?} in {s:?}"))?;
        out.push(super::Hop {
            user,
            host,
            port: u16::try_from(port).ok().filter(|p| *p > 0),
        });
    }
    Ok(Some(out))
}

type UserHostPort = (Option<String>, String, i32);

/// One hop: an `ssh://` URI, else `[user@]host[:port]`.
fn user_host_port(hop: &str) -> Result<UserHostPort, ()> {
    match parse_ssh_uri(hop) {
        Some(r) => r,
        None => parse_user_host_port(hop),
    }
}

/// `hpdelim2`: the host part up to `:` or `/` (a `[…]` host may hold colons), the delimiter
/// and what follows it. `None`: a `[` without `]`, or junk after `]`.
fn hpdelim2(s: &str) -> Option<(&str, Option<char>, Option<&str>)> {
    let end = if s.starts_with('[') {
        s.find(']')? + 1
    } else {
        s.find([':', '/']).unwrap_or(s.len())
    };
    match s[end..].chars().next() {
        None => Some((s, None, None)),
        Some(c @ (':' | '/')) => Some((&s[..end], Some(c), Some(&s[end + 1..]))),
        Some(_) => None,
    }
}

/// `cleanhostname`: `[host]` without its brackets.
fn clean(host: &str) -> &str {
    if host.len() >= 2 && host.starts_with('[') && host.ends_with(']') {
        &host[1..host.len() - 1]
    } else {
        host
    }
}

/// `parse_user_host_port`.
fn parse_user_host_port(s: &str) -> Result<UserHostPort, ()> {
    let (user, rest) = match s.rfind('@') {
        Some(0) => return Err(()),
        Some(p) => (Some(s[..p].to_string()), &s[p + 1..]),
        None => (None, s),
    };
    let (host, delim, after) = hpdelim2(rest).ok_or(())?;
    if delim == Some('/') || host.is_empty() {
        return Err(());
    }
    let host = clean(host).to_string();
    let port = match after {
        Some(p) if !p.is_empty() => match a2port(p) {
            Some(n) if n > 0 => i32::from(n),
            _ => return Err(()),
        },
        _ => -1,
    };
    Ok((user, host, port))
}

/// `%XX` and `+` decoding; `None` on a bad escape.
fn urldecode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `valid_domain(name, 0)`, returning the name without a trailing dot.
fn valid_domain(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut last = 0u8;
    for &c in b {
        let c = c.to_ascii_lowercase();
        if last == b'.' && c == b'.' {
            return None;
        }
        if c != b'.' && c != b'-' && c != b'_' && !c.is_ascii_alphanumeric() {
            return None;
        }
        last = c;
    }
    Some(name.strip_suffix('.').unwrap_or(name))
}

/// `parse_ssh_uri`: `None` when `s` is not an `ssh://` URI, else its parts or `Err`.
fn parse_ssh_uri(s: &str) -> Option<Result<UserHostPort, ()>> {
    let rest = s.strip_prefix("ssh://")?;
    Some((|| {
        let (user, rest) = match rest.find('@') {
            Some(p) => {
                let info = &rest[..p];
                let name = info.split(';').next().unwrap_or("");
                if name.is_empty() {
                    return Err(());
                }
                (Some(urldecode(name).ok_or(())?), &rest[p + 1..])
            }
            None => (None, rest),
        };
        let (host, delim, after) = hpdelim2(rest).ok_or(())?;
        if host.is_empty() {
            return Err(());
        }
        let host = valid_domain(clean(host)).ok_or(())?.to_string();
        let mut port = -1;
        let mut path = after;
        if let Some(a) = after.filter(|a| !a.is_empty()) {
            path = Some(a);
            if delim == Some(':') {
                let (p, tail) = match a.find('/') {
                    Some(i) => (&a[..i], Some(&a[i + 1..])),
                    None => (a, None),
                };
                port = match a2port(p) {
                    Some(n) if n > 0 => i32::from(n),
                    _ => return Err(()),
                };
                path = tail;
            }
        }
        // A path is not allowed in an ssh:// URI here (and must at least decode).
        if let Some(p) = path.filter(|p| !p.is_empty()) {
            urldecode(p).ok_or(())?;
            return Err(());
        }
        Ok((user, host, port))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &str) -> Option<String> {
        parse_jump(s).expect("valid").display()
    }

    #[test]
    fn hops_and_display() {
        assert_eq!(shown("bastion").as_deref(), Some("bastion"));
        assert_eq!(shown("u@b:2222").as_deref(), Some("u@b:2222"));
        assert_eq!(shown("a,u@b").as_deref(), Some("a,u@b"));
        assert_eq!(shown("a,b,c").as_deref(), Some("a,b,c"));
        assert_eq!(shown("10.0.0.1").as_deref(), Some("[10.0.0.1]"));
        assert_eq!(shown("[::1]:22").as_deref(), Some("[::1]:22"));
        assert_eq!(
            shown("ssh://u@h.example.:2200").as_deref(),
            Some("u@h.example:2200")
        );
        assert_eq!(shown("b # via b").as_deref(), Some("b"));
        assert_eq!(shown("a,b # x,y").as_deref(), Some("a,b"));
        // Compared with its comment, this is not `none`: a host named "none".
        assert_eq!(shown("none # c").as_deref(), Some("none"));
        assert_eq!(parse_jump("NONE"), Ok(Jump::None));
        assert_eq!(shown("none"), None);
    }

    #[test]
    fn bad_hops_are_refused() {
        for bad in [
            "@h",
            "h:0",
            "h:x",
            "h/x",
            "a,h:99999",
            "ssh://h/path",
            "ssh://[::1]",
            "[::1",
        ] {
            assert_eq!(parse_jump(bad), Err(()), "{bad}");
        }
    }
}
