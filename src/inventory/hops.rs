//! Jump hosts: every host's `ProxyJump` chain resolved into hosts of their own, hop by hop,
//! as OpenSSH resolves them. `ssh -J a,b,c T` reaches `c` with `ssh -l U -p P -J a,b -W T c`:
//! so the first hop is resolved like any name (its own ProxyJump or ProxyCommand apply, and
//! its chain comes before it), every later hop with `-J` given (its own ProxyJump and
//! ProxyCommand are ignored), and a hop's `user@` and `:port` act as `-l` and `-p` (they win
//! over the config and `Match user` sees them).
//!
//! A hop named like a host of the inventory is that host (its hosts.toml settings apply);
//! any other name is resolved through the ssh config alone, as `ssh` would.

use std::collections::HashMap;

use super::resolve::from_ssh;
use super::settings::Settings;
use super::ssh_config::{parse_hops, Hop, Preset, SshFile};
use crate::model::{Host, Transport};

/// Hops in one chain, all recursion included: far beyond any real fleet, and a bound on a
/// loop the names do not give away.
const MAX_HOPS: usize = 16;

/// Fill `jumps` of every host that has a `proxy_jump`. `Err`: the host and why (a loop, a
/// chain too long, a hop that does not parse).
pub(crate) fn fill(hosts: &mut [Host], file: &SshFile) -> Result<(), String> {
    // A jump host named in its own jump (`[defaults] jump = "bastion"` reaching the
    // bastion's own entry) is connected to directly.
    for h in hosts.iter_mut() {
        if let Some(spec) = &h.proxy_jump {
            let hops = parse_hops(spec).map_err(|e| format!("host {}: {e}", h.name))?;
            if hops.is_some_and(|hops| hops.iter().any(|x| x.host == h.name)) {
                h.proxy_jump = None;
                h.proxy_command = None;
            }
        }
    }
    let known: HashMap<String, Host> = hosts
        .iter()
        .filter(|h| h.transport == Transport::Ssh)
        .map(|h| (h.name.clone(), h.clone()))
        .collect();
    let r = Resolver { known, file };
    for h in hosts.iter_mut() {
        if h.transport != Transport::Ssh {
            continue;
        }
        if let Some(spec) = h.proxy_jump.clone() {
            let mut path = vec![h.name.clone()];
            h.jumps = r
                .chain(&spec, &mut path)
                .map_err(|e| format!("host {}: ProxyJump {spec}: {e}", h.name))?;
        }
    }
    Ok(())
}

/// The hops to reach `name` as `ssh NAME` would (for a name in no inventory), with its own
/// `jumps` filled in.
pub(crate) fn adhoc(name: &str, known: &[Host], file: &SshFile) -> Result<Host, String> {
    let r = Resolver {
        known: known
            .iter()
            .filter(|h| h.transport == Transport::Ssh)
            .map(|h| (h.name.clone(), h.clone()))
            .collect(),
        file,
    };
    let mut h = from_ssh(name, None, &Settings::default(), file, file.query(name));
    if let Some(spec) = h.proxy_jump.clone() {
        let mut path = vec![name.to_string()];
        h.jumps = r
            .chain(&spec, &mut path)
            .map_err(|e| format!("host {name}: ProxyJump {spec}: {e}"))?;
    }
    Ok(h)
}

struct Resolver<'a> {
    known: HashMap<String, Host>,
    file: &'a SshFile,
}

impl Resolver<'_> {
    /// The hops of `spec`, each with the hops it needs before it; `path` holds the names
    /// being resolved (to name a loop).
    fn chain(&self, spec: &str, path: &mut Vec<String>) -> Result<Vec<Host>, String> {
        let Some(hops) = parse_hops(spec)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, hop) in hops.iter().enumerate() {
            let mut h = self.hop(hop, i > 0);
            if i == 0 {
                if let Some(inner) = h.proxy_jump.clone() {
                    if path.contains(&hop.host) {
                        path.push(hop.host.clone());
                        return Err(format!("jump hosts loop: {}", path.join(" → ")));
                    }
                    path.push(hop.host.clone());
                    out.extend(self.chain(&inner, path)?);
                    path.pop();
                }
            }
            h.proxy_jump = None;
            h.jumps = Vec::new();
            out.push(h);
            if out.len() > MAX_HOPS {
                return Err(format!(
                    "more than {MAX_HOPS} jump hosts (a loop through {}?)",
                    path.join(" → ")
                ));
            }
        }
        Ok(out)
    }

    /// One hop as a host: the inventory's entry of that name, else the ssh config's; `-l`
    /// and `-p` from the hop win; `jumped`: reached through earlier hops of the same
    /// value, so its own proxy settings do not apply.
    fn hop(&self, hop: &Hop, jumped: bool) -> Host {
        let mut h = match self.known.get(&hop.host) {
            Some(known) => {
                let mut h = known.clone();
                if let Some(u) = &hop.user {
                    h.user = Some(u.clone());
                }
                if let Some(p) = hop.port {
                    h.port = p;
                }
                h
            }
            None => {
                let preset = Preset {
                    user: hop.user.clone(),
                    port: hop.port,
                    jumped,
                };
                let p = self.file.query_preset(&hop.host, &preset);
                from_ssh(&hop.host, None, &Settings::default(), self.file, p)
            }
        };
        if jumped {
            h.proxy_jump = None;
            h.proxy_command = None;
        }
        h.tags = Vec::new();
        h
    }
}
