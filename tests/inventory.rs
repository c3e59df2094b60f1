//! hosts.toml: valid files, ssh_config fill-in, and every invalid file with its exact
//! `file:line:col: message`. (`crew hosts` as a binary: tests/hosts_cmd.rs.)

use std::path::{Path, PathBuf};

use crew::inventory::{Inventory, InventoryError};
use crew::model::{Host, Transport};
use crew::pick::Selection;
use crew::select::NoContext;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, text).expect("write");
    p
}

/// Load `text` as `<tmp>/hosts.toml`, with an empty ssh_config so the operator's own
/// `~/.ssh/config` never leaks into a test.
fn load(dir: &Path, text: &str) -> Inventory {
    let ssh = write(dir, "empty_ssh_config", "");
    let text = text.replace("@SSH@", &ssh.display().to_string());
    let p = write(dir, "hosts.toml", &text);
    Inventory::load(&p).unwrap_or_else(|e| panic!("load failed: {e}"))
}

fn get<'a>(inv: &'a Inventory, name: &str) -> &'a Host {
    inv.host(name)
        .unwrap_or_else(|| panic!("no host {name} in {:?}", names(inv)))
}

fn names(inv: &Inventory) -> Vec<&str> {
    inv.hosts.iter().map(|h| h.name.as_str()).collect()
}

#[test]
fn nodeset_names_and_addresses_expand_in_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = load(
        dir.path(),
        r#"
[defaults]
ssh_config = "@SSH@"

[[host]]
name = "web[01-03]"
address = "10.0.0.[11-13]"
port = 2222

[[host]]
name = "db[1-2],solo"
"#,
    );
    assert_eq!(
        names(&inv),
        ["web01", "web02", "web03", "db1", "db2", "solo"]
    );
    let addr: Vec<(&str, u16)> = inv
        .hosts
        .iter()
        .map(|h| (h.address.as_str(), h.port))
        .collect();
    assert_eq!(
        addr,
        [
            ("10.0.0.11", 2222),
            ("10.0.0.12", 2222),
            ("10.0.0.13", 2222),
            ("db1", 22),
            ("db2", 22),
            ("solo", 22)
        ]
    );
}

#[test]
fn defaults_and_per_host_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = load(
        dir.path(),
        r#"
[defaults]
ssh_config = "@SSH@"
user = "deploy"
port = 2200
identity_file = "keys/fleet"
known_hosts = ["kh/one", "/abs/two"]
connect_timeout = "1500ms"
agent_dir = "/opt/crew"
tags = ["env=staging", "managed"]

[[host]]
name = "a1"
user = "root"
identity_files = ["~/.ssh/special", "/k/second"]
identities_only = true
connect_timeout = 3
tags = ["env=prod", "canary"]
proxy_jump = "bastion"
identity_agent = "/run/agent.sock"

[[host]]
name = "b1"

[[host]]
name = "loc1"
transport = "local"
tags = ["role=demo"]
"#,
    );
    let home = dirs::home_dir().expect("home");
    let a = get(&inv, "a1");
    assert_eq!(a.user.as_deref(), Some("root"));
    assert_eq!(a.port, 2200);
    assert_eq!(
        a.identity_files,
        [home.join(".ssh/special"), PathBuf::from("/k/second")]
    );
    assert!(a.identities_only);
    assert_eq!(a.connect_timeout_ms, 3000);
    assert_eq!(a.tags, ["managed", "env=prod", "canary"]);
    assert_eq!(a.proxy_jump.as_deref(), Some("bastion"));
    assert_eq!(a.identity_agent, Some(PathBuf::from("/run/agent.sock")));
    assert_eq!(a.agent_dir, "/opt/crew");

    let b = get(&inv, "b1");
    assert_eq!(b.user.as_deref(), Some("deploy"));
    assert_eq!(b.transport, Transport::Ssh);
    // Relative paths are relative to hosts.toml's directory.
    assert_eq!(b.identity_files, [dir.path().join("keys/fleet")]);
    assert_eq!(
        b.known_hosts,
        [dir.path().join("kh/one"), PathBuf::from("/abs/two")]
    );
    assert_eq!(b.connect_timeout_ms, 1500);
    assert!(!b.identities_only);
    assert_eq!(b.tags, ["env=staging", "managed"]);

    let l = get(&inv, "loc1");
    assert_eq!(l.transport, Transport::Local);
    assert_eq!(l.tags, ["env=staging", "managed", "role=demo"]);
    assert!(
        l.identity_files.is_empty(),
        "a local host ignores ssh settings"
    );
    assert_eq!(l.user, None);
}

#[test]
fn ssh_config_fills_what_hosts_toml_leaves_unset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    // A fake home: <tmp>/.ssh/config, so `~` and relative Includes resolve inside it.
    write(home, ".ssh/id_ed25519", "not a real key");
    write(
        home,
        ".ssh/config",
        "Include conf.d/*.conf\n\
         \n\
         Host web*\n\
         \x20   User sshuser\n\
         \x20   Port 2200\n\
         \x20   IdentityFile ~/.ssh/web_key\n\
         \n\
         Host *.example.org db*\n\
         \x20   ConnectTimeout 7\n\
         \n\
         Host *\n\
         \x20   UserKnownHostsFile ~/.ssh/kh_all /etc/other_kh\n\
         \x20   ForwardX11 no\n\
         \x20   SomethingUnknown yes\n",
    );
    write(
        home,
        ".ssh/conf.d/db.conf",
        "Host db1\n\
         \x20   HostName 192.0.2.10\n\
         \x20   User dbadmin\n\
         \x20   IdentityAgent ~/.ssh/agent.sock\n\
         \x20   ProxyJump jump1,jump2\n\
         \x20   IdentitiesOnly yes\n\
         \x20   IdentityFile ~/.ssh/db_key\n",
    );
    let cfg = home.join(".ssh/config");
    let text = format!(
        r#"
[defaults]
ssh_config = "{}"

[[host]]
name = "web[1-2]"

[[host]]
name = "web3"
user = "tomluser"
port = 2022
identity_file = "/keys/toml_key"

[[host]]
name = "db1"

[[host]]
name = "other"
address = "10.9.9.9"
"#,
        cfg.display()
    );
    let p = write(home, "hosts.toml", &text);
    let inv = Inventory::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let ssh = home.join(".ssh");

    let w1 = get(&inv, "web1");
    assert_eq!(w1.address, "web1");
    assert_eq!(w1.user.as_deref(), Some("sshuser"));
    assert_eq!(w1.port, 2200);
    assert_eq!(w1.identity_files, [ssh.join("web_key")]);
    // UserKnownHostsFile, then the global files ssh also checks (GlobalKnownHostsFile unset).
    assert_eq!(
        w1.known_hosts,
        [
            ssh.join("kh_all"),
            PathBuf::from("/etc/other_kh"),
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2")
        ]
    );
    assert_eq!(w1.connect_timeout_ms, 10_000);

    // hosts.toml wins; ssh_config's IdentityFile comes after hosts.toml's.
    let w3 = get(&inv, "web3");
    assert_eq!(w3.user.as_deref(), Some("tomluser"));
    assert_eq!(w3.port, 2022);
    assert_eq!(
        w3.identity_files,
        [PathBuf::from("/keys/toml_key"), ssh.join("web_key")]
    );

    // From the Included file, plus `Host *.example.org db*`.
    let db = get(&inv, "db1");
    assert_eq!(db.address, "192.0.2.10");
    assert_eq!(db.user.as_deref(), Some("dbadmin"));
    assert_eq!(db.port, 22);
    assert_eq!(db.identity_agent, Some(ssh.join("agent.sock")));
    assert_eq!(db.proxy_jump.as_deref(), Some("jump1,jump2"));
    assert!(db.identities_only);
    assert_eq!(db.identity_files, [ssh.join("db_key")]);
    assert_eq!(db.connect_timeout_ms, 7000);

    // Nothing anywhere: the standard key files that exist, the address as written.
    let o = get(&inv, "other");
    assert_eq!(o.address, "10.9.9.9");
    assert_eq!(o.user, None);
    assert_eq!(o.identity_files, [ssh.join("id_ed25519")]);
    assert!(!o.identities_only);
    assert_eq!(o.proxy_jump, None);
}

#[test]
fn groups_load_and_select() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = load(
        dir.path(),
        r#"
[defaults]
transport = "local"

[[host]]
name = "web[1-3]"
tags = ["role=web"]

[[host]]
name = "cache1"
tags = ["role=cache", "canary"]

[groups]
frontend = "role=web | role=cache"
safe = "@frontend & !canary"
"#,
    );
    let pick = |t: &str| -> Vec<String> {
        let sel = Selection::parse(t, &inv.groups).expect("parses");
        sel.pick(&inv.hosts, &NoContext)
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    assert_eq!(pick("@safe"), ["web1", "web2", "web3"]);
    assert_eq!(pick("@frontend & canary"), ["cache1"]);
    let err = Selection::parse("@missing", &inv.groups).expect_err("unknown group");
    assert_eq!(
        err.message,
        "unknown group `@missing` (known groups: @frontend, @safe)"
    );
}

/// Every file in tests/configs/invalid with its exact error. The ssh_config file is
/// reported at the hosts.toml value that names it.
const INVALID: &[(&str, &str)] = &[
    ("address_count.toml", "3:12: `address` expands to 2 address(es) but `name` to 3 name(s); they must pair up one to one"),
    ("bad_connect_timeout.toml", "2:19: `connect_timeout`: bad duration \"ten seconds\": expected number at 0 (try 30s, 2m, 1h)"),
    ("bad_group_expression.toml", "5:23: bad group expression: expected a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`, found end of input"),
    ("bad_nodeset.toml", "2:12: bad nodeset \"web[01-\": expected `]` to close this `[`"),
    ("bad_tag.toml", "3:19: bad tag \"role = web\": ' ' is not allowed in a tag name"),
    ("duplicate_host.toml", "5:9: duplicate host `web02` (first defined at line 2, column 9)"),
    ("group_cycle.toml", "5:13: bad group expression: group cycle: @a -> @b -> @c -> @a"),
    ("missing_name.toml", "4:1: expected `name` in this [[host]] entry"),
    ("name_in_defaults.toml", "2:8: `name` belongs in a [[host]] entry, not in [defaults]"),
    ("port_out_of_range.toml", "6:8: port 70000 out of range: expected 1-65535"),
    ("reversed_range.toml", "2:18: bad nodeset \"web[09-02]\": range end 2 is below its start 9"),
    ("ssh_config_missing.toml", "2:14: cannot use ssh config tests/configs/invalid/does-not-exist/config: cannot open: No such file or directory (os error 2)"),
    ("toml_syntax.toml", "2:13: invalid basic string"),
    ("unknown_group.toml", "5:10: bad group expression: unknown group `@backend` (known groups: @front)"),
    ("unknown_key.toml", "3:1: unknown field `prot`, expected one of `name`, `address`, `user`, `port`, `transport`, `identity_file`, `identity_files`, `identities_only`, `known_hosts`, `identity_agent`, `jump`, `proxy_jump`, `connect_timeout`, `agent_dir`, `tags`, `ssh_config`"),
    ("unknown_section.toml", "1:2: unknown field `default`, expected one of `defaults`, `host`, `groups`"),
    ("unknown_transport.toml", "3:13: unknown transport `telnet`: expected \"ssh\" or \"local\""),
    ("wrong_type.toml", "3:8: invalid type: string \"22\", expected i64"),
];

#[test]
fn invalid_files_name_file_line_col_and_what_is_wrong() {
    let dir = Path::new("tests/configs/invalid");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("invalid configs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    assert_eq!(on_disk, listed, "every invalid config has an expectation");
    for (file, want) in INVALID {
        let path = dir.join(file);
        let err = Inventory::load(&path).expect_err(file);
        assert!(matches!(err, InventoryError::At { .. }), "{file}: {err:?}");
        assert_eq!(err.to_string(), format!("{}:{want}", path.display()));
    }
}

#[test]
fn find_default_reports_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let err = Inventory::find_default(Some(&missing)).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!("no hosts.toml found; looked for {}", missing.display())
    );
    let p = write(dir.path(), "h.toml", "");
    assert_eq!(Inventory::find_default(Some(&p)).expect("found"), p);
}

/// `user@address:port` of each hop.
fn via(h: &Host) -> Vec<String> {
    h.jumps
        .iter()
        .map(|j| {
            format!(
                "{}@{}:{}",
                j.user.as_deref().unwrap_or("-"),
                j.address,
                j.port
            )
        })
        .collect()
}

#[test]
fn jump_hosts_resolve_hop_by_hop_as_ssh_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "ssh_config",
        "Host bastion\n  HostName 10.0.0.1\n  User jumper\n  Port 2200\n  IdentityFile /k/jump\n\
         Host inner\n  HostName 10.0.0.2\n  ProxyJump bastion\n  User inneruser\n\
         Host viacfg\n  HostName 10.1.0.9\n  ProxyJump bastion\n\
         Host proxied\n  ProxyCommand nc %h %p\n\
         Match user override\n  Port 2999\n\
         Host *\n  User fallback\n",
    );
    let text = format!(
        "[defaults]\nssh_config = \"{}\"\nuser = \"deploy\"\n\n\
         [[host]]\nname = \"web[1-2]\"\naddress = \"10.1.0.[1-2]\"\njump = \"bastion\"\n\n\
         [[host]]\nname = \"deep\"\naddress = \"10.1.0.3\"\njump = \"inner,override@bastion:2201\"\n\n\
         [[host]]\nname = \"viacfg\"\n\n\
         [[host]]\nname = \"straight\"\naddress = \"10.1.0.4\"\njump = \"none\"\n\n\
         [[host]]\nname = \"proxied\"\njump = \"bastion\"\n\n\
         [[host]]\nname = \"hop\"\naddress = \"10.5.5.5\"\nuser = \"hopper\"\n\n\
         [[host]]\nname = \"behindhop\"\naddress = \"10.1.0.6\"\njump = \"hop\"\n",
        cfg.display()
    );
    let p = write(dir.path(), "hosts.toml", &text);
    let inv = Inventory::load(&p).unwrap_or_else(|e| panic!("load failed: {e}"));

    // A hop is resolved through the ssh config alone (not [defaults]): its own user, port, key.
    let w = get(&inv, "web1");
    assert_eq!(via(w), ["jumper@10.0.0.1:2200"]);
    assert_eq!(w.jumps[0].identity_files, [PathBuf::from("/k/jump")]);
    assert_eq!(w.user.as_deref(), Some("deploy"));
    // First hop's own ProxyJump applies (its chain comes first); later hops act as
    // `ssh -l override -p 2201 -J inner bastion`: the user wins, and `Match user` sees it.
    assert_eq!(
        via(get(&inv, "deep")),
        [
            "jumper@10.0.0.1:2200",
            "inneruser@10.0.0.2:22",
            "override@10.0.0.1:2201"
        ]
    );
    assert_eq!(via(get(&inv, "viacfg")), ["jumper@10.0.0.1:2200"]);
    // `jump = "none"` overrides the ssh config; `jump` replaces a ProxyCommand.
    let s = get(&inv, "straight");
    assert!(s.jumps.is_empty() && s.proxy_jump.is_none() && s.proxy_command.is_none());
    let pr = get(&inv, "proxied");
    assert_eq!(pr.proxy_command, None);
    assert_eq!(via(pr), ["jumper@10.0.0.1:2200"]);
    // A hop that is an inventory host is that host.
    assert_eq!(via(get(&inv, "behindhop")), ["hopper@10.5.5.5:22"]);

    // `[defaults] jump` does not make the jump host jump through itself.
    let p = write(
        dir.path(),
        "defaults_jump.toml",
        &format!(
            "[defaults]\nssh_config = \"{}\"\njump = \"gw\"\n\n\
             [[host]]\nname = \"gw\"\naddress = \"10.9.0.1\"\n\n\
             [[host]]\nname = \"app\"\naddress = \"10.9.0.2\"\n",
            cfg.display()
        ),
    );
    let inv = Inventory::load(&p).unwrap_or_else(|e| panic!("load failed: {e}"));
    assert!(get(&inv, "gw").jumps.is_empty() && get(&inv, "gw").proxy_jump.is_none());
    assert_eq!(via(get(&inv, "app")), ["fallback@10.9.0.1:22"]);
}

#[test]
fn jump_loops_and_bad_jumps_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "ssh_config",
        "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n",
    );
    let text = format!(
        "[defaults]\nssh_config = \"{}\"\n[[host]]\nname = \"t\"\njump = \"a\"\n",
        cfg.display()
    );
    let p = write(dir.path(), "hosts.toml", &text);
    let e = Inventory::load(&p).expect_err("loop").to_string();
    assert!(
        e.contains("host t: ProxyJump a: jump hosts loop: t → a → b → a"),
        "{e}"
    );

    let p = write(
        dir.path(),
        "bad.toml",
        "[[host]]\nname = \"t\"\njump = \"u@h:0\"\n",
    );
    let e = Inventory::load(&p).expect_err("bad jump").to_string();
    assert!(
        e.ends_with("bad.toml:3:9: `jump`: bad jump host \"u@h:0\" in \"u@h:0\""),
        "{e}"
    );
}
