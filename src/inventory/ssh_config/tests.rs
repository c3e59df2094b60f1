//! Resolution as `ssh -G` does it, case by case (the differential test against the installed
//! `ssh -G` is tests/ssh_config_diff.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A config directory with its own `~/.ssh` for includes, and a fixed resolver.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn env(&self) -> Env {
        Env {
            home: PathBuf::from("/home/alice"),
            include_home: self.dir.path().to_path_buf(),
            local_user: "alice".into(),
            uid: 1000,
            local_host: "work.example.org".into(),
        }
    }

    /// Write `rel` (relative to the temp dir) and return its path.
    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    fn load(&self, text: &str) -> SshFile {
        let p = self.file("config", text);
        SshFile::load_with(&p, self.env()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(&self, text: &str) -> String {
        let p = self.file("config", text);
        match SshFile::load_with(&p, self.env()) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e
                .strip_prefix(&format!("{}:", p.display()))
                .unwrap_or(&e)
                .to_string(),
        }
    }
}

fn q(text: &str, host: &str) -> SshParams {
    Case::new().load(text).query(host)
}

fn user(text: &str, host: &str) -> Option<String> {
    q(text, host).user
}

const ISSUE_10: &str = "Host *.prod !bastion.prod\n  ProxyJump bastion.prod\n  User produser\n\
                        Match host db*\n  User matcher\nHost *\n  User fallback\n";

#[test]
fn issue_example_first_value_wins_across_host_and_match() {
    let p = q(ISSUE_10, "app.prod");
    assert_eq!(p.user.as_deref(), Some("produser"));
    assert_eq!(p.proxy_jump.as_deref(), Some("bastion.prod"));
    assert_eq!(user(ISSUE_10, "db1").as_deref(), Some("matcher"));
    assert_eq!(user(ISSUE_10, "web").as_deref(), Some("fallback"));
    let b = q(ISSUE_10, "bastion.prod");
    assert_eq!(b.user.as_deref(), Some("fallback"), "negated pattern");
    assert_eq!(b.proxy_jump, None);
}

#[test]
fn host_patterns_are_case_sensitive_negation_anywhere_on_the_line() {
    let cfg = "Host Web\n  User upper\nHost !db* *\n  Port 2200\nHost *\n  User low\n";
    assert_eq!(user(cfg, "Web").as_deref(), Some("upper"));
    assert_eq!(user(cfg, "web").as_deref(), Some("low"));
    assert_eq!(q(cfg, "db1").port, None);
    assert_eq!(q(cfg, "x").port, Some(2200));
    // `Host` patterns are not comma lists.
    assert_eq!(user("Host a,b\n User x\n", "a"), None);
    assert_eq!(user("Host a,b\n User x\n", "a,b").as_deref(), Some("x"));
}

#[test]
fn keywords_case_insensitive_equals_and_quotes() {
    let cfg = "HOST=web\n\tUSER = \"john smith\"\n  hostname=10.0.0.5\n  PORT  2222 # c\n";
    let p = q(cfg, "web");
    assert_eq!(p.user.as_deref(), Some("john smith"));
    assert_eq!(p.host_name.as_deref(), Some("10.0.0.5"));
    assert_eq!(p.port, Some(2222));
    assert_eq!(
        user("Host \"web\"\n User 'q'\n", "web").as_deref(),
        Some("q")
    );
}

#[test]
fn hostname_tokens_lowercase_and_addresses() {
    assert_eq!(
        q("Host *\n HostName %h.Internal\n", "Db1")
            .host_name
            .as_deref(),
        Some("db1.internal")
    );
    // A `%` makes it look like a (scoped) address: not lowercased, as in ssh.
    assert_eq!(
        q("Host *\n HostName %h.X%%\n", "Db1").host_name.as_deref(),
        Some("Db1.X%")
    );
    assert_eq!(q("", "APP").host_name.as_deref(), Some("app"));
    assert_eq!(
        q("Host x\n HostName 127.1\n", "x").host_name.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        q("Host x\n HostName FE80:0::1\n", "x").host_name.as_deref(),
        Some("fe80::1")
    );
    let bad = q("Host x\n HostName %p.x\n", "x");
    assert!(
        bad.notes.iter().any(|n| n.contains("unknown key %p")),
        "{:?}",
        bad.notes
    );
}

#[test]
fn identity_files_accumulate_with_tokens_and_tilde() {
    let cfg = "Host web\n  IdentityFile ~/.ssh/%h_%r_%p\n  User deploy\n  Port 2200\n\
               Host *\n  IdentityFile /keys/%u/%n-%l-%L-%d-%i\n  IdentityFile ~/.ssh/%h_%r_%p\n\
               IdentityFile %%literal\n";
    let p = q(cfg, "web");
    assert_eq!(
        p.identity_files,
        [
            PathBuf::from("/home/alice/.ssh/web_deploy_2200"),
            PathBuf::from("/keys/alice/web-work.example.org-work-/home/alice-1000"),
            PathBuf::from("%literal"),
        ],
        "duplicates dropped, order kept"
    );
    let none = q("Host *\n IdentityFile none\n IdentityFile ~/k\n", "h");
    assert_eq!(none.identity_files, [PathBuf::from("/home/alice/k")]);
}

#[test]
fn key_file_tokens_use_the_final_host_port_and_user() {
    let p = q(
        "Host a\n HostName Real.Example\n Port 2\n User u\n IdentityFile ~/%h-%p-%r-%n\n",
        "a",
    );
    assert_eq!(
        p.identity_files,
        [PathBuf::from("/home/alice/real.example-2-u-a")]
    );
}

#[test]
fn connection_hash_token() {
    let p = q("IdentityFile /k/%C\n", "h");
    // sha1("work.example.org" "h" "22" "alice")
    let want = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(b"work.example.orgh22alice"))
    };
    assert_eq!(p.identity_files, [PathBuf::from(format!("/k/{want}"))]);
}

#[test]
fn known_hosts_agent_strict_timeouts() {
    let cfg = "Host a\n  UserKnownHostsFile ~/kh/%h /etc/kh2\n  GlobalKnownHostsFile /g/%h\n\
               IdentityAgent ~/agent.%h\n  StrictHostKeyChecking accept-new\n  ConnectTimeout none\n\
               ServerAliveInterval 1m\n  ServerAliveCountMax 5\n  IdentitiesOnly YES\n\
               Host *\n  UserKnownHostsFile /never\n  ConnectTimeout 7\n  ServerAliveInterval 9\n";
    let p = q(cfg, "a");
    assert_eq!(
        p.known_hosts,
        Some(vec![
            PathBuf::from("/home/alice/kh/a"),
            PathBuf::from("/etc/kh2")
        ])
    );
    assert_eq!(
        p.global_known_hosts,
        Some(vec![PathBuf::from("/g/%h")]),
        "not expanded"
    );
    assert_eq!(
        p.identity_agent,
        Some(IdentityAgent::Socket(PathBuf::from("/home/alice/agent.a")))
    );
    assert_eq!(
        p.strict_host_key_checking,
        Some(StrictHostKeyChecking::AcceptNew)
    );
    assert_eq!(
        p.connect_timeout,
        Some(Duration::from_secs(7)),
        "`none` leaves it unset"
    );
    assert_eq!(p.server_alive_interval, Some(Duration::from_secs(60)));
    assert_eq!(p.server_alive_count_max, Some(5));
    assert_eq!(p.identities_only, Some(true));
    let none = q(
        "UserKnownHostsFile none\nIdentityAgent none\nGlobalKnownHostsFile none\n",
        "h",
    );
    assert_eq!(none.known_hosts, Some(vec![]));
    assert_eq!(none.global_known_hosts, Some(vec![]));
    assert_eq!(none.identity_agent, Some(IdentityAgent::Disabled));
    assert_eq!(
        q("IdentityAgent SSH_AUTH_SOCK\n", "h").identity_agent,
        Some(IdentityAgent::Environment)
    );
}

#[test]
fn proxy_jump_and_proxy_command_first_wins_and_none() {
    let p = q(
        "Host *\n ProxyJump u@j1:2200,j2\n ProxyCommand nc %h %p\n",
        "t",
    );
    assert_eq!(p.proxy_jump.as_deref(), Some("u@j1:2200,j2"));
    assert_eq!(p.proxy_command, None);
    let p = q(
        "Host t\n ProxyCommand ssh -W %h:%p b # note\nHost *\n ProxyJump j\n",
        "t",
    );
    assert_eq!(p.proxy_jump, None);
    assert_eq!(p.proxy_command.as_deref(), Some("ssh -W %h:%p b # note"));
    let p = q(
        "Host t\n ProxyJump none\nHost *\n ProxyJump j\n ProxyCommand x\n",
        "t",
    );
    assert_eq!(p.proxy_jump, None);
    assert_eq!(
        p.proxy_command.as_deref(),
        Some("x"),
        "`none` only blocks later jumps"
    );
    assert_eq!(
        q("ProxyCommand none\nProxyJump j\n", "t").proxy_jump,
        None,
        "ProxyCommand none still blocks a later ProxyJump"
    );
    let loop_ = q("Host j\n ProxyJump j\n", "j");
    assert!(
        loop_.notes.iter().any(|n| n.contains("jumphost loop")),
        "{:?}",
        loop_.notes
    );
}

#[test]
fn match_criteria() {
    let cfg = "Match originalhost web* user root\n  Port 1\n\
               Match localuser alice host !db*,*.prod\n  Port 2\n\
               Match !localuser alice\n  Port 3\n\
               Match user alice\n  Port 4\n";
    assert_eq!(
        q(cfg, "web1").port,
        Some(4),
        "user is alice (local) here, not root"
    );
    assert_eq!(q(cfg, "app.prod").port, Some(2));
    assert_eq!(q(cfg, "db.prod").port, Some(4), "negated host pattern");
    assert_eq!(
        q(
            "User root\nMatch originalhost web* user root\n Port 1\n",
            "web1"
        )
        .port,
        Some(1)
    );
    assert_eq!(q("Match all\n Port 5\n", "x").port, Some(5));
    assert_eq!(q("Match !all\n Port 5\n", "x").port, None);
    assert_eq!(q("Match host=\"x\"\n Port 6\n", "x").port, Some(6));
    // `Match host` sees HostName (with %h) set so far; `originalhost` the name as given.
    let cfg = "Host short\n HostName %h.example.com\nMatch host *.example.com\n User full\n";
    assert_eq!(user(cfg, "short").as_deref(), Some("full"));
}

#[test]
fn match_final_reparses_with_the_final_host_name() {
    let cfg = "Host alias\n  HostName real.example\nHost real.example\n  User second\n\
               Match final host real.example\n  Port 2022\nMatch canonical\n  IdentityFile /k\n";
    let p = q(cfg, "alias");
    assert_eq!(
        p.user.as_deref(),
        Some("second"),
        "Host matches the final name"
    );
    assert_eq!(p.port, Some(2022));
    assert_eq!(p.identity_files, [PathBuf::from("/k")]);
    // Without `final` anywhere, there is one pass.
    let cfg = "Host alias\n  HostName real.example\nHost real.example\n  User second\n";
    assert_eq!(user(cfg, "alias"), None);
    // CanonicalizeHostname on: a second pass too; DNS needed is noted, not guessed.
    let cfg = "CanonicalizeHostname yes\nCanonicalDomains example.com\nHost web\n User w\n";
    let p = q(cfg, "web");
    assert_eq!(p.user.as_deref(), Some("w"));
    assert!(p.notes.iter().any(|n| n.contains("DNS")), "{:?}", p.notes);
}

#[test]
fn match_exec_is_noted_not_guessed() {
    let cfg = "Match host web* exec \"test -e /tmp/x\"\n  User e\nHost *\n  User d\n";
    let p = q(cfg, "web1");
    assert_eq!(p.user.as_deref(), Some("d"));
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(
        p.notes[0].contains(":1: `Match exec \"test -e /tmp/x\"`"),
        "{:?}",
        p.notes
    );
    // Decided by another criterion: no note.
    assert!(q(cfg, "db1").notes.is_empty());
    let p = q("Match tagged x\n User t\n", "h");
    assert_eq!(p.user, None);
    assert!(p.notes[0].contains("tagged"), "{:?}", p.notes);
}

#[test]
fn includes_relative_absolute_globbed_with_their_own_blocks() {
    let c = Case::new();
    c.file(".ssh/conf.d/b.conf", "Host b*\n  User from-b\n");
    c.file(
        ".ssh/conf.d/a.conf",
        "Match host a*\n  User from-a\nHost *\n  Port 2000\n",
    );
    c.file(".ssh/conf.d/.hidden.conf", "User hidden\n");
    let abs = c.file("abs/inc", "User abs\n");
    let cfg = format!(
        "Include conf.d/*.conf\nUser top\nHost inc-only\n  Include {}\nHost *\n  User star\n",
        abs.display()
    );
    let f = c.load(&cfg);
    assert_eq!(f.query("a1").user.as_deref(), Some("from-a"));
    assert_eq!(f.query("a1").port, Some(2000));
    assert_eq!(f.query("b1").user.as_deref(), Some("from-b"));
    // After the include, the including file's own state (active) is back: `User top`
    // applies, though the included files ended inside `Match`/`Host` blocks.
    assert_eq!(f.query("zz").user.as_deref(), Some("top"));
    assert_eq!(f.query("zz").port, Some(2000), "`Host *` in a.conf");
    let inc = c.load(&format!(
        "Host inc-only\n  Include {}\nHost *\n  User star\n",
        abs.display()
    ));
    assert_eq!(inc.query("inc-only").user.as_deref(), Some("abs"));
    assert_eq!(inc.query("other").user.as_deref(), Some("star"));
}

#[test]
fn include_inside_an_inactive_block_applies_nothing() {
    let c = Case::new();
    c.file(".ssh/x.conf", "User inc\nHost *\n  Port 7\n");
    let f = c.load("Host only\n  Include x.conf\nHost *\n  User d\n");
    let p = f.query("other");
    assert_eq!((p.user.as_deref(), p.port), (Some("d"), None));
    let p = f.query("only");
    assert_eq!((p.user.as_deref(), p.port), (Some("inc"), Some(7)));
}

#[test]
fn include_loops_and_permissions_are_errors() {
    let c = Case::new();
    c.file(".ssh/self.conf", "Include self.conf\n");
    let e = c.error("Include self.conf\n");
    assert!(
        e.contains("Too many recursive configuration includes"),
        "{e}"
    );
    let p = c.file(".ssh/open.conf", "User x\n");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    let e = c.error("Include open.conf\n");
    assert!(e.contains("Bad owner or permissions"), "{e}");
    // No match is no file.
    assert_eq!(
        c.load("Include nothing-*.conf\nUser u\n")
            .query("h")
            .user
            .as_deref(),
        Some("u")
    );
}

#[test]
fn bad_lines_name_line_and_column() {
    let c = Case::new();
    assert_eq!(c.error("Host x\n  Port 99999\n"), "2:8: Bad port '99999'");
    assert_eq!(c.error("User\n"), "1:1: no argument after keyword \"user\"");
    assert_eq!(c.error("User \"a\n"), "1:6: invalid quotes");
    assert_eq!(
        c.error("User a b\n"),
        "1:6: keyword user extra arguments at end of line"
    );
    assert_eq!(
        c.error("Match nope x\n"),
        "1:7: Unsupported Match attribute nope"
    );
    assert_eq!(
        c.error("Match host\n"),
        "1:7: Missing Match criteria for host"
    );
    assert_eq!(
        c.error("Match host a host b all\n"),
        "1:7: 'all' cannot be combined with other Match attributes"
    );
    assert_eq!(c.error("ProxyJump @h\n"), "1:11: Invalid ProxyJump \"@h\"");
    assert_eq!(
        c.error("KexAlgorithms +nope\n"),
        "1:15: Bad SSH2 KexAlgorithms '+nope' (unsupported: \"nope\")"
    );
    assert_eq!(
        c.error("ConnectTimeout 5x\n"),
        "1:16: connecttimeout: invalid time value \"5x\""
    );
    assert_eq!(
        c.error("StrictHostKeyChecking maybe\n"),
        "1:23: stricthostkeychecking: unsupported option \"maybe\""
    );
    // Unknown keywords are skipped (ssh refuses them), with a warning.
    let f = c.load("NoSuchKeyword 1\nUser u\n");
    assert_eq!(f.query("h").user.as_deref(), Some("u"));
    assert_eq!(f.warnings().len(), 1);
}

#[test]
fn kex_algorithms_as_written_first_match_wins() {
    let cfg = "Host fast\n  KexAlgorithms curve25519-sha256,ecdh-sha2-nistp256\n\
               Host *\n  KexAlgorithms ecdh-sha2-nistp384\n";
    assert_eq!(
        q(cfg, "fast").kex,
        Some(vec![
            "curve25519-sha256".to_string(),
            "ecdh-sha2-nistp256".to_string()
        ])
    );
    assert_eq!(
        q(cfg, "other").kex,
        Some(vec!["ecdh-sha2-nistp384".to_string()])
    );
    assert_eq!(
        q("Host x\n  User me\n", "x").kex,
        None,
        "unset: crew's order"
    );
    let plus = q("KexAlgorithms +diffie-hellman-group14-sha1\n", "h")
        .kex
        .expect("set");
    assert_eq!(plus[..kex::DEFAULT_KEX.len()], kex::DEFAULT_KEX[..]);
}

#[test]
fn system_config_follows_the_user_config_and_includes_relative_to_etc_ssh() {
    let c = Case::new();
    let user = c.file("user_config", "Host *\n  User u\n");
    let f = SshFile::load_default(Some(&user)).expect("loads");
    assert_eq!(f.query("h").user.as_deref(), Some("u"), "user config first");
    let missing = c.dir.path().join("absent");
    assert!(SshFile::load_default(Some(&missing)).is_ok());
    // A `~` include is refused in the system config.
    let env = c.env();
    let sys =
        parse::Parser::new(&env, false).parse(Path::new("/etc/ssh/ssh_config"), "Include ~/x\n");
    assert!(sys
        .err()
        .is_some_and(|e| e.contains("bad include path ~/x")));
}

#[test]
fn config_in_another_homes_ssh_dir_takes_that_home() {
    let c = Case::new();
    let p = c.file("other/.ssh/config", "IdentityFile ~/.ssh/k\n");
    let f = SshFile::load(&p).expect("loads");
    assert_eq!(
        f.query("h").identity_files,
        [c.dir.path().join("other/.ssh/k")]
    );
    let q = c.file("plain/config", "IdentityFile ~/.ssh/k\n");
    let f = SshFile::load(&q).expect("loads");
    assert_eq!(
        f.query("h").identity_files,
        [Env::system().home.join(".ssh/k")]
    );
}
